"""Id factories for responses and items (`resp_`, `msg_`, `fc_`, `rs_`, `steer_`).

An id factory is any `Callable[[str], str]` taking the prefix (without underscore). Production
uses random ids; tests use `sequential_ids()` so transcripts are predictable.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable

__all__ = ["IdFactory", "random_id", "sequential_ids"]

IdFactory = Callable[[str], str]


def random_id(prefix: str) -> str:
    """`<prefix>_<24 hex chars>`: unique without coordination."""
    return f"{prefix}_{secrets.token_hex(12)}"


def sequential_ids() -> IdFactory:
    """`resp_1`, `msg_1`, `resp_2`, ...: one counter per prefix."""
    counters: dict[str, itertools.count[int]] = {}

    def make(prefix: str) -> str:
        counter = counters.setdefault(prefix, itertools.count(1))
        return f"{prefix}_{next(counter)}"

    return make
