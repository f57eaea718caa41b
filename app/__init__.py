"""Slipstream: keeps a model's view of a project current over one WebSocket session."""

from __future__ import annotations


def __getattr__(name: str) -> str:
    """`__version__`, looked up on first use: importlib.metadata costs every process (the GUI and each
    `slipstream serve` child) ~80 ms of start-up and ~2.5 MB when imported eagerly."""
    if name != "__version__":
        raise AttributeError(f"module 'app' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("slipstream")
    except PackageNotFoundError:  # running from a source tree that was not installed
        return "0.0.0+unknown"
