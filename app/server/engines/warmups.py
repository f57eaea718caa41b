"""A connection's warm-up prefills, run one after another behind the client's back.

A warm-up (`generate: false`) completes for the client at once; the engine then prepares its state
(evaluates the new tokens into the KV cache, or asks an upstream to) in the background. A turn that
arrives meanwhile waits for the prefills submitted before it, so it never redoes their work.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

__all__ = ["Prefills"]

log = logging.getLogger(__name__)


class Prefills:
    """Background prefills of one connection, in submission order."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._tail: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.done = 0  # prefills that ran to their end (failed ones included)

    @property
    def pending(self) -> bool:
        """A prefill is queued or running."""
        return self._tail is not None and not self._tail.done()

    def add(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run `work()` after the prefills already queued; returns at once. Failures are logged,
        never raised: a prefill only saves time, the turn redoes whatever it did not do."""
        prev = self._tail

        async def run() -> None:
            if prev is not None:
                await asyncio.wait({prev})
            try:
                await work()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("%s: warm-up prefill failed (the next turn does the work): %s", self.name, exc)
            self.done += 1

        task = asyncio.create_task(run(), name=f"{self.name} prefill")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._tail = task

    async def wait(self) -> None:
        """Until every prefill submitted so far has ended. Cancelling the waiter leaves them running."""
        tail = self._tail
        if tail is not None and not tail.done():
            await asyncio.wait({tail})

    async def aclose(self) -> None:
        """Cancel what is queued or running and wait for it to stop."""
        self._tail = None
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
