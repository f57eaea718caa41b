"""Slipstream: keeps a model's view of a project current over one WebSocket session."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("slipstream")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"
