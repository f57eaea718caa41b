"""What every entry point needs to stop cleanly: one quit flag, bounded closes, and a loop's last rites.

Shared by the GUI (app.ui.lifecycle) and the headless commands (app.cli.common), so both end the same
way: what the program owns is closed in order, each step with a time limit; whatever is still on the
loop after that (our tasks or foreign ones, e.g. openai's `AsyncHttpxClientWrapper.__del__`, which
schedules `aclose()` on whatever loop runs) is cancelled, given a moment, then logged by name and
abandoned — never awaited without a limit, as `asyncio.run` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

log = logging.getLogger(__name__)

LEFTOVER_GRACE_S = 0.3  # tasks still on the loop at the end get this long after being cancelled
THREAD_GRACE_S = 0.3  # worker threads get this long to finish their job at the end
_STOPPED = "Event loop stopped before Future completed"


class QuitRequest:
    """Set once, by whichever route asks first; `reason` says which (for the log and the tests)."""

    def __init__(self) -> None:
        self.reason = ""
        self.at = 0.0  # time.monotonic() of the request
        self._event = asyncio.Event()
        self._callbacks: list[Callable[[], None]] = []

    @property
    def requested(self) -> bool:
        return bool(self.reason)

    def request(self, reason: str) -> None:
        if self.reason:
            return
        self.reason, self.at = reason or "quit", time.monotonic()
        log.info("quitting: %s", self.reason)
        self._event.set()
        for cb in self._callbacks:
            try:
                cb()
            except Exception:
                log.exception("a quit callback failed")

    def on_request(self, cb: Callable[[], None]) -> None:
        self._callbacks.append(cb)

    async def wait(self) -> None:
        await self._event.wait()


async def close_within(aw: Awaitable[Any], timeout: float, what: str) -> bool:
    """Await `aw` for at most `timeout` s; then cancel it and give it 0.2 s more. Never hangs.

    True when it finished by itself without an error; failures and timeouts are logged.
    """
    task = asyncio.ensure_future(aw)
    done, _ = await asyncio.wait({task}, timeout=max(timeout, 0.0))
    if task in done:
        if task.cancelled():
            return False
        exc = task.exception()
        if exc is not None:
            log.error("closing %s failed", what, exc_info=exc)
            return False
        return True
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=0.2)
    if task in done:
        log.warning("closing %s took over %.1f s: cancelled", what, timeout)
    else:
        log.error("closing %s took over %.1f s and ignored its cancellation: abandoned", what, timeout)
        abandon(task)
    return False


def describe(task: asyncio.Task[Any]) -> str:
    coro = task.get_coro()
    name = getattr(coro, "__qualname__", None) or repr(coro)
    return f"{task.get_name()} ({name})"


def abandon(task: asyncio.Task[Any]) -> None:
    """Give up on a task that ignores its cancellation: nothing waits for it any more.

    It leaves `asyncio.all_tasks()`, so a later "cancel everything and wait" (asyncio.run's, a test
    runner's) cannot hang on it; and it was logged already, so no second "Task was destroyed but it
    is pending!" at collection.
    """
    with contextlib.suppress(AttributeError):
        task._log_destroy_pending = False  # type: ignore[attr-defined]
    unregister = getattr(asyncio.tasks, "_unregister_task", None)  # CPython's registry of live tasks
    if unregister is not None:
        with contextlib.suppress(Exception):
            unregister(task)


def run_for(loop: asyncio.AbstractEventLoop, aws: set[asyncio.Task[Any]], seconds: float) -> None:
    """Drive the loop until every task in `aws` is done or `seconds` passed (also if Qt quits again)."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0 and not all(t.done() for t in aws):
        try:
            loop.run_until_complete(asyncio.wait(aws, timeout=left))
        except RuntimeError as exc:
            if _STOPPED not in str(exc):
                raise


def cancel_leftovers(loop: asyncio.AbstractEventLoop, grace: float = LEFTOVER_GRACE_S) -> list[str]:
    """Cancel every task still on `loop`, drive it up to `grace` s; return those that would not end."""
    pending = {t for t in asyncio.all_tasks(loop) if not t.done()}
    if not pending:
        return []
    for t in pending:
        log.debug("cancelling a task left at shutdown: %s", describe(t))
        t.cancel()
    run_for(loop, pending, grace)
    stuck = [t for t in pending if not t.done()]
    for t in stuck:
        log.warning("a task ignored its cancellation at shutdown and was abandoned: %s", describe(t))
        abandon(t)
    for t in pending:  # retrieve results so none is reported as "never retrieved"
        if t.done() and not t.cancelled():
            t.exception()
    return [describe(t) for t in stuck]


def stop_executor(executor: ThreadPoolExecutor, grace: float) -> list[str]:
    executor.shutdown(wait=False, cancel_futures=True)
    threads = list(getattr(executor, "_threads", ()))
    end = time.monotonic() + grace
    for th in threads:
        th.join(max(end - time.monotonic(), 0.0))
    stuck = [th.name for th in threads if th.is_alive()]
    if stuck:
        log.warning("worker threads still busy at shutdown (left to the process exit): %s", ", ".join(stuck))
    return stuck


def close_loop(loop: asyncio.AbstractEventLoop, executor: ThreadPoolExecutor | None) -> list[str]:
    """The loop's last rites, each bounded: leftover tasks, async generators, worker threads.

    Returns the tasks that would not end (already logged). The loop is closed afterwards.
    """
    stuck = cancel_leftovers(loop)
    gens = loop.create_task(loop.shutdown_asyncgens(), name="shutdown asyncgens")
    run_for(loop, {gens}, LEFTOVER_GRACE_S)
    if not gens.done():
        gens.cancel()
        abandon(gens)
    if executor is not None:
        stop_executor(executor, THREAD_GRACE_S)
    loop.close()
    return stuck
