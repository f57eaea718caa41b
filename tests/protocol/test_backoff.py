"""Backoff: delays grow, cap and jitter deterministically; close codes classify."""

from __future__ import annotations

import itertools
from typing import TypedDict

import pytest

from app.protocol.backoff import backoff, classify_close


def test_delays_grow_and_cap_without_jitter() -> None:
    """jitter()=1 gives the raw schedule: 0.5, 1, 2, 4, 8, 8, ..."""
    delays = list(itertools.islice(backoff(jitter=lambda: 1.0), 7))
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_jitter_scales_into_half_to_full() -> None:
    """jitter()=0 halves each delay; custom parameters are honoured."""
    delays = list(itertools.islice(backoff(initial=1, factor=3, max_delay=5, jitter=lambda: 0.0), 4))
    assert delays == [0.5, 1.5, 2.5, 2.5]


class _Schedule(TypedDict, total=False):
    initial: float
    factor: float
    max_delay: float


@pytest.mark.parametrize("kwargs", [{"initial": 0}, {"factor": 0.5}, {"initial": 10, "max_delay": 1}])
def test_bad_parameters_are_refused(kwargs: _Schedule) -> None:
    """Nonsense schedules raise at the first next()."""
    with pytest.raises(ValueError):
        next(backoff(**kwargs))


def test_bad_jitter_is_refused() -> None:
    """A jitter source outside [0, 1] is a bug, not a delay."""
    with pytest.raises(ValueError, match="jitter"):
        next(backoff(jitter=lambda: 2.0))


@pytest.mark.parametrize("code", [1001, 1005, 1006, 1011, 1012, 1013, 1015, None])
def test_recoverable_codes_retry(code: int | None) -> None:
    """The SDK's recoverable set (and a missing close frame) retries."""
    assert classify_close(code) == "retry"


@pytest.mark.parametrize("code", [1000, 1002, 1003, 1008, 1009, 4000])
def test_other_codes_are_fatal(code: int) -> None:
    """Normal closure, protocol/policy errors and app codes do not retry."""
    assert classify_close(code) == "fatal"
