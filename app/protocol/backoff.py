"""Reconnect policy as pure code: a delay generator and a close-code classifier.

The transport adapter injects these (as websockets does with `reconnect_delays=`), so the policy
is tested without sockets or clocks. The recoverable close codes are the official SDK's set
(PROTOCOL §1.2, §4.4): 1001 going away (also our age-limit close), 1005 no status, 1006 abnormal
closure, 1011 internal error, 1012 service restart, 1013 try again later, 1015 TLS failure.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Final, Literal

__all__ = ["RETRYABLE_CLOSE_CODES", "backoff", "classify_close"]

RETRYABLE_CLOSE_CODES: Final = frozenset({1001, 1005, 1006, 1011, 1012, 1013, 1015})


def backoff(
    initial: float = 0.5,
    factor: float = 2.0,
    max_delay: float = 8.0,
    jitter: Callable[[], float] = random.random,
) -> Iterator[float]:
    """Endless reconnect delays in seconds: initial·factor^n capped at max_delay, each scaled by
    `jitter()` ∈ [0, 1] into [delay/2, delay] so many clients do not retry in step."""
    if initial <= 0 or factor < 1 or max_delay < initial:
        raise ValueError("need 0 < initial <= max_delay and factor >= 1")
    delay = initial
    while True:
        j = jitter()
        if not 0.0 <= j <= 1.0:
            raise ValueError(f"jitter() must return a value in [0, 1], got {j}")
        yield delay * (0.5 + 0.5 * j)
        delay = min(delay * factor, max_delay)


def classify_close(code: int | None) -> Literal["retry", "fatal"]:
    """Whether a close code is worth a reconnect. None (no close frame) counts as 1006."""
    if code is None:
        return "retry"
    return "retry" if code in RETRYABLE_CLOSE_CODES else "fatal"
