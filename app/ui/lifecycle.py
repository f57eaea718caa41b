"""How the GUI process runs and stops: one qasync loop, quit by any route, a shutdown that cannot hang.

`asyncio.run` is not used on purpose: at its end it cancels every task left on the loop and waits for
all of them without a limit, so a single task that will not finish (a foreign one, see
app.services.lifetime) wedged the app for ever. Here:

- every route to quit (window close, Ctrl+Q, SIGTERM, SIGINT, SIGHUP, `app.quit()`/session end via
  `aboutToQuit`) sets one `QuitRequest`; the GUI coroutine then closes what it owns, in order, each
  step bounded (`close_within`);
- if Qt's own loop ends first (someone called `QApplication.quit()`), the loop is driven again, with a
  time limit, so the orderly close still runs: no "Event loop stopped before Future completed";
- tasks left on the loop (ours or foreign) are cancelled, given `LEFTOVER_GRACE_S`, and the ones
  that still will not end are logged by name and abandoned; worker threads likewise;
- with `watchdog_s`, a shutdown still wedged after that long (a blocking call on the GUI thread)
  dumps every thread's stack to stderr and exits (faulthandler), so the process never hangs.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import logging
import signal
import sys
import threading
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from app.services.lifetime import LEFTOVER_GRACE_S, QuitRequest, abandon, close_loop, run_for

log = logging.getLogger(__name__)

QT_QUIT_GRACE_S = 3.0  # Qt's loop ended under us: the orderly close gets this long
QUIT_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)
_STOPPED = "Event loop stopped before Future completed"


def run_app_loop(
    app: Any,
    main: Coroutine[Any, Any, int],
    quit_request: QuitRequest,
    *,
    watchdog_s: float | None = None,
    signals: tuple[int, ...] = QUIT_SIGNALS,
) -> int:
    """Run `main` on a qasync loop over `app` and close everything after it, whatever happens."""
    loop = _loop_class()(app)
    executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="slipstream-worker")
    loop.set_default_executor(executor)
    asyncio.set_event_loop(loop)
    installed = _install_signals(loop, quit_request, signals)
    if watchdog_s is not None:
        # A wedged shutdown (a blocking call on this thread) dumps the stacks and exits the process.
        quit_request.on_request(lambda: faulthandler.dump_traceback_later(watchdog_s, exit=True))
    about_to_quit = app.aboutToQuit.connect(lambda: quit_request.request("the application is quitting"))
    task = loop.create_task(main, name="gui main")
    try:
        try:
            loop.run_until_complete(task)
        except RuntimeError as exc:
            if task.done() or _STOPPED not in str(exc):
                raise
            # Qt's loop ended under us (QApplication.quit(), the session ending): close in order anyway.
            quit_request.request("Qt's event loop ended")
            run_for(loop, {task}, QT_QUIT_GRACE_S)
            if not task.done():
                log.error("the window did not close within %.1f s: cancelling it", QT_QUIT_GRACE_S)
                task.cancel()
                run_for(loop, {task}, LEFTOVER_GRACE_S)
        if not task.done():
            abandon(task)
            return 1
        return int(task.result())
    finally:
        with contextlib.suppress(RuntimeError, TypeError):
            app.aboutToQuit.disconnect(about_to_quit)
        _remove_signals(loop, installed)
        loop.set_default_executor(None)  # qasync's close() would join the threads without a limit
        close_loop(loop, executor)
        asyncio.set_event_loop(None)


def _loop_class() -> type[Any]:
    import qasync

    class Loop(qasync.QEventLoop):  # type: ignore[misc]
        """qasync's loop, but task steps that run in the one pass of pending events qasync makes after
        Qt's loop ended (QApplication.quit()) still see a running loop, as asyncio code expects."""

        def run_forever(self) -> Any:
            try:
                return super().run_forever()
            finally:
                asyncio.events._set_running_loop(self)

        def run_until_complete(self, future: Any) -> Any:
            try:
                return super().run_until_complete(future)
            finally:
                asyncio.events._set_running_loop(None)

    return Loop


def _install_signals(
    loop: asyncio.AbstractEventLoop, quit_request: QuitRequest, signals: tuple[int, ...]
) -> dict[int, Any]:
    """SIGINT/SIGTERM/SIGHUP ask to quit (through the loop's wakeup fd, so Qt's idle loop hears them)."""
    saved: dict[int, Any] = {}
    if threading.current_thread() is not threading.main_thread() or sys.platform == "win32":
        return saved
    for sig in signals:
        try:
            previous = signal.getsignal(sig)
            loop.add_signal_handler(sig, quit_request.request, f"signal {signal.Signals(sig).name}")
        except (NotImplementedError, RuntimeError, ValueError, OSError):
            continue
        saved[sig] = previous
    return saved


def _remove_signals(loop: asyncio.AbstractEventLoop, saved: dict[int, Any]) -> None:
    for sig, previous in saved.items():
        with contextlib.suppress(Exception):
            loop.remove_signal_handler(sig)
        with contextlib.suppress(Exception):
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
