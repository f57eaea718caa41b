"""Composition root: parse the command line, build objects, run the GUI or a headless command.

Subcommands live in their own modules (each exposes ``main(argv) -> int``) and are imported
lazily, so `slipstream serve` and the other headless commands never load Qt.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from importlib import import_module

# name -> (module, one-line help). Each module has `main(argv: list[str]) -> int`.
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("app.server.cli", "run the local Responses server (WebSocket + HTTP/SSE)"),
    "ask": ("app.cli.ask", "run one turn and stream the answer to stdout"),
    "watch": ("app.cli.watch", "sync a folder headless, one JSON line per push"),
    "test": ("app.cli.test", "run the project's tests headless, streaming events"),
    "apply-patch": ("app.cli.patch", "apply a patch read from stdin"),
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
    return _gui(args)


# A quit still wedged this long after it was asked for dumps every stack and exits (app.ui.lifecycle).
WATCHDOG_S = 10.0


# glibc's mallopt(M_ARENA_MAX): by default every thread that allocates may get a malloc arena of its own
# (up to 8 per core), each keeping its freed memory; the app's ~10 threads (Qt, the watcher, workers, the
# server thread) need no more than 2 (the GIL serialises most allocation anyway). Measured on the idle
# app: RSS -3.7 MB. MALLOC_ARENA_MAX in the environment still wins.
M_ARENA_MAX = -8
MALLOC_ARENAS = 2


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas for threads started from now on; False where that does not apply."""
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    return bool(mallopt(M_ARENA_MAX, arenas))


def prepare_gui() -> None:
    """What the desktop process sets up before its window (before any thread starts): the scripted
    engine (no model configured) is served on a thread of this process (app.server.inprocess), not by a
    second interpreter: ~11 MB instead of a ~42 MB child; and malloc keeps few arenas. The headless
    commands keep their child. The benchmarks that run the real window call this too, so they measure
    what `slipstream` runs."""
    from app.adapters.local_server import host_scripted_here
    from app.server.inprocess import start_scripted

    limit_malloc_arenas()
    host_scripted_here(start_scripted)


def _gui(args: list[str]) -> int:
    """The desktop app, then the last-resort cleanup: no child server outlives it, and no stuck worker
    thread holds the process at exit (the interpreter would join it without a limit)."""
    import faulthandler
    import logging
    import os
    import threading

    from app.adapters.local_server import kill_all_sync
    from app.ui.app import run_gui  # Qt is imported only on the GUI path

    log = logging.getLogger("app.main")
    prepare_gui()
    try:
        rc = int(run_gui(args, watchdog_s=WATCHDOG_S))
    finally:
        left = kill_all_sync()
        if left:
            log.warning("killed %d child server(s) still running at exit: %s", len(left), left)
    stuck = [
        t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon and t.is_alive()
    ]
    if stuck:
        log.warning("exiting past busy threads: %s", ", ".join(t.name for t in stuck))
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    faulthandler.cancel_dump_traceback_later()
    return rc


if __name__ == "__main__":
    sys.exit(main())
