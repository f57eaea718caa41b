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

__all__ = [
    "NO_WEBSOCKET_STATUSES",
    "RETRYABLE_CLOSE_CODES",
    "UpgradeVerdict",
    "backoff",
    "classify_close",
    "classify_upgrade",
]

RETRYABLE_CLOSE_CODES: Final = frozenset({1001, 1005, 1006, 1011, 1012, 1013, 1015})
# An upgrade answered with one of these means "no WebSocket mode here" (uvicorn answers 403 without
# looking at the key, others 404/405, Codex's convention is 426, 501 "not implemented").
NO_WEBSOCKET_STATUSES: Final = frozenset({403, 404, 405, 426, 501})
UpgradeVerdict = Literal["auth", "no_websocket", "retry"]


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


def classify_upgrade(status: int | None) -> UpgradeVerdict:
    """What a failed WebSocket upgrade means. `status`: the HTTP status that refused it, None when
    the connection itself failed. "auth": the key was refused (401); "no_websocket": use HTTP for this
    turn (the server has no WebSocket mode); "retry": back off and try the socket again."""
    if status == 401:
        return "auth"
    if status is not None and (status in NO_WEBSOCKET_STATUSES or 400 <= status < 500):
        return "no_websocket"
    return "retry"
