"""Composition root: parse the command line, build objects, run the GUI or a headless command.

Subcommands live in their own modules (each exposes ``main(argv) -> int``) and are imported
lazily, so `slipstream serve` and the other headless commands never load Qt.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from importlib import import_module

# name -> (module, one-line help). Each module has `main(argv: list[str]) -> int`.
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("app.server.cli", "run the local Responses server (WebSocket + HTTP/SSE)"),
    "ask": ("app.services.cli_ask", "run one turn and stream the answer to stdout"),
    "watch": ("app.services.cli_watch", "sync a folder headless, one JSON line per push"),
    "test": ("app.services.cli_test", "run the project's tests headless, streaming events"),
    "apply-patch": ("app.services.cli_patch", "apply a patch read from stdin"),
}

USAGE = """usage: slipstream [PATH] [--smoke] [--screenshot PNG] [--version]
       slipstream COMMAND [ARGS...]

commands:
{commands}

With no command, opens the desktop app on PATH (default: the current folder)."""


def _usage() -> str:
    lines = [f"  {name:<12} {help_}" for name, (_, help_) in COMMANDS.items()]
    return USAGE.format(commands="\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `slipstream` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if args and args[0] in ("-V", "--version"):
        from app import __version__

        print(f"slipstream {__version__}")
        return 0
    if args and args[0] in COMMANDS:
        module_name, _ = COMMANDS[args[0]]
        entry: Callable[[list[str]], int] = import_module(module_name).main
        return entry(args[1:])
    from app.ui.app import run_gui  # Qt is imported only on the GUI path

    return int(run_gui(args))


if __name__ == "__main__":
    sys.exit(main())
