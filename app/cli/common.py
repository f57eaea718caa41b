"""What the headless commands share: one-line errors, exit statuses, stdout/stdin, and how they run.

Every command runs through `run_command`: its own loop (not `asyncio.run`, which waits without a limit
for tasks that will not end), SIGINT/SIGTERM cancel the command so its `finally` blocks close what it
opened (each bounded), then the loop's leftovers are cancelled and any child server still registered
is killed. A user never sees a traceback: bad input is one line on stderr and a documented status.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NoReturn

from app.adapters.local_server import kill_all_sync
from app.services.lifetime import close_loop

log = logging.getLogger(__name__)

# Exit statuses, the same for every command (each command's --help lists the ones it uses).
OK = 0
FAILED = 1  # the work failed: the turn, the push, the tests, the patch
USAGE = 2  # bad options or input: a value out of range, a missing folder, stdin not UTF-8
GONE = 3  # the folder being watched was moved or deleted
INTERRUPTED = 130  # Ctrl-C (SIGINT)
TERMINATED = 143  # SIGTERM
PIPE_CLOSED = 141  # stdout was closed by its reader (`| head`): the command stopped quietly

STATUS_HELP = (
    "Exit status: 0 done; 1 the work failed; 2 bad options or input; 130 Ctrl-C; 143 SIGTERM; "
    "141 stdout closed by its reader (e.g. `| head`)."
)


class CliError(Exception):
    """Bad input or a failure in words: the runner prints `slipstream CMD: <message>` and exits `status`."""

    def __init__(self, message: str, status: int = FAILED) -> None:
        super().__init__(message)
        self.status = status


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage dump) and status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE, f"{self.prog}: error: {message} (see --help)\n")


def parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace | int:
    """The parsed arguments, or the exit status argparse chose (--help: 0, an error: 2)."""
    try:
        return parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else USAGE


def int_at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer >= low, with the reason in words."""

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, not {value}")
        return value

    return convert


def number_at_least(low: float, *, above: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number >= low (> low with `above`)."""

    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"must be a finite number, not {text}")
        if value < low or (above and value == low):
            raise argparse.ArgumentTypeError(
                f"must be {'above' if above else 'at least'} {low:g}, not {text}"
            )
        return value

    return convert


def read_stdin_text(what: str = "stdin") -> str:
    """All of stdin as UTF-8 text (a BOM is dropped); CliError(status 2) when it is not UTF-8."""
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is None:  # already text (a test's StringIO)
        return str(sys.stdin.read())
    data: bytes = buffer.read()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CliError(
            f"{what} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})", USAGE
        ) from None


class Output:
    """stdout that stops the command when its reader goes away (`slipstream ask ... | head`)."""

    def __init__(self, on_closed: Callable[[], None]) -> None:
        self.closed = False
        self._on_closed = on_closed

    def write(self, text: str, *, flush: bool = True) -> None:
        if self.closed:
            return
        try:
            sys.stdout.write(text)
            if flush:
                sys.stdout.flush()
        except (BrokenPipeError, ValueError):
            self._close()
        except OSError as exc:
            if exc.errno != getattr(os, "EPIPE", 32):
                raise
            self._close()

    def write_bytes(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            sys.stdout.flush()
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        except (BrokenPipeError, ValueError):
            self._close()

    def _close(self) -> None:
        self.closed = True
        silence_stdout()
        self._on_closed()


def silence_stdout() -> None:
    """Point fd 1 at /dev/null, so the interpreter's last flush at exit cannot fail loudly."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


class Command:
    """One run of a headless command: `interrupt(status)` cancels it; the runner returns that status."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.status: int | None = None  # why it was interrupted
        self._task: asyncio.Task[int] | None = None
        self.out = Output(lambda: self.interrupt(PIPE_CLOSED))

    def interrupt(self, status: int) -> None:
        if self.status is None:
            self.status = status
        if self._task is not None:
            self._task.cancel()

    def error(self, message: str) -> None:
        """One line on stderr, prefixed with the command."""
        with contextlib.suppress(OSError, ValueError):
            print(f"slipstream {self.name}: {message}", file=sys.stderr, flush=True)


def run_command(
    name: str,
    main: Callable[[Command], Coroutine[Any, Any, int]],
    *,
    on_signal: dict[int, int] | None = None,
) -> int:
    """Run `main(command)` to its status. SIGINT/SIGTERM interrupt it with `on_signal`'s status
    (default 130/143); nothing is left running afterwards, and no traceback reaches the user."""
    cmd = Command(name)
    statuses = {int(signal.SIGINT): INTERRUPTED, int(signal.SIGTERM): TERMINATED} | (on_signal or {})
    loop = asyncio.new_event_loop()
    executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix=f"slipstream-{name}")
    loop.set_default_executor(executor)
    asyncio.set_event_loop(loop)
    installed: dict[int, Any] = {}
    for sig, status in statuses.items():
        try:
            previous = signal.getsignal(sig)
            loop.add_signal_handler(sig, cmd.interrupt, status)
            installed[sig] = previous
        except (NotImplementedError, RuntimeError, ValueError):
            pass
    try:
        cmd._task = loop.create_task(main(cmd), name=f"slipstream {name}")
        try:
            rc = loop.run_until_complete(cmd._task)
        except asyncio.CancelledError:
            rc = cmd.status if cmd.status is not None else INTERRUPTED
        except CliError as exc:
            cmd.error(str(exc))
            rc = exc.status
        except KeyboardInterrupt:
            rc = INTERRUPTED
        except Exception as exc:  # a bug: one line for the user, the traceback only in the log
            log.debug("slipstream %s failed", name, exc_info=True)
            cmd.error(f"internal error: {type(exc).__name__}: {exc}")
            rc = FAILED
        if cmd.status is not None:  # interrupted while finishing: the interruption decides
            rc = cmd.status
        if rc in (INTERRUPTED, TERMINATED):
            cmd.error("interrupted" if rc == INTERRUPTED else "terminated")
        return rc
    finally:
        for sig, previous in installed.items():  # as they were (a caller's, e.g. pytest's, handlers)
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
            with contextlib.suppress(Exception):
                signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        close_loop(loop, executor)
        asyncio.set_event_loop(None)
        left = kill_all_sync()
        if left:
            log.warning("killed child server(s) still running at exit: %s", left)
