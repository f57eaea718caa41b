"""Stream statistics for the status bar: output rate, context size, cache hits, session totals.

`Stats.on_event` is on the hot path (one call per delta): it only adds the characters up; every
`SAMPLE_EVERY` deltas they go into the one-second rate window with the time (one clock read per batch,
not per token), and the figures are published at most every `PUBLISH_S` (and always at a response's
end), on an injected clock.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from app.protocol import events as ev
from app.protocol.tokens import CHARS_PER_TOKEN
from app.services.api import StreamStats
from app.services.signals import Signal

__all__ = ["Stats"]

PUBLISH_S = 0.25
SAMPLE_EVERY = 64


class _Rate:
    """Output tokens per second over the last second (≈4 characters a token)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._window: deque[tuple[float, int]] = deque()
        self._sum = 0
        self.peak = 0.0

    def add(self, chars: int, now: float) -> None:
        self._window.append((now, chars))
        self._sum += chars
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self._window and now - self._window[0][0] > 1.0:
            self._sum -= self._window.popleft()[1]

    def now(self) -> float:
        self._trim(self._clock())
        rate = self._sum / CHARS_PER_TOKEN
        self.peak = max(self.peak, rate)
        return rate


class Stats:
    """Counts what streams by and publishes `StreamStats` on `changed`."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._rate = _Rate(clock)
        self._stats = StreamStats()
        self._due = 0.0
        self._batch_chars = 0  # characters since the last sample
        self._batch = 0  # deltas since the last sample
        self.chars_total = 0  # output characters streamed (text and tool arguments) in this session
        self.changed: Signal[[StreamStats]] = Signal("stats_changed")

    @property
    def current(self) -> StreamStats:
        return self._stats

    def on_event(self, e: ev.ServerEvent) -> None:
        if isinstance(e, (ev.OutputTextDelta, ev.FunctionCallArgumentsDelta)):
            n = len(e.delta)
            self.chars_total += n
            self._batch_chars += n
            self._batch += 1
            if self._batch >= SAMPLE_EVERY:
                self._sample()
        elif isinstance(e, (ev.ResponseCompleted, ev.ResponseIncomplete, ev.ResponseFailed)):
            usage = e.response.get("usage")
            self.account(usage if isinstance(usage, Mapping) else {})

    def _sample(self) -> None:
        now = self._clock()
        self._rate.add(self._batch_chars, now)
        self._batch_chars = self._batch = 0
        if now >= self._due:
            self.publish()

    def account(self, usage: Mapping[str, Any]) -> None:
        """One response's usage, counted once (from its terminal event)."""
        if not usage:
            return
        details = usage.get("input_tokens_details") or {}
        inp = int(usage.get("input_tokens") or 0)
        cached = int(details.get("cached_tokens") or 0)
        s = self._stats
        self._stats = StreamStats(
            s.tokens_per_s_now,
            s.tokens_per_s_peak,
            inp,
            inp,
            cached,
            s.session_input_tokens + inp,
            s.session_cached_tokens + cached,
        )
        self.publish()

    def publish(self) -> None:
        if self._batch:
            self._rate.add(self._batch_chars, self._clock())
            self._batch_chars = self._batch = 0
        self._due = self._clock() + PUBLISH_S
        s = self._stats
        rate = self._rate.now()
        self._stats = StreamStats(
            rate,
            self._rate.peak,
            s.context_tokens,
            s.last_turn_input_tokens,
            s.last_turn_cached_tokens,
            s.session_input_tokens,
            s.session_cached_tokens,
        )
        self.changed.emit(self._stats)
