"""Stats on a fake clock: the rate over the last second, publishing throttled, usage counted once."""

from __future__ import annotations

from app.protocol import events as ev
from app.services.api import StreamStats
from app.services.stats import Stats


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rate_publishing_and_usage() -> None:
    clock = Clock()
    stats = Stats(clock)
    seen: list[StreamStats] = []
    stats.changed.connect(seen.append)
    for _ in range(10):  # 1,000 tokens a second for a second, in 100 ms steps
        for _ in range(100):
            stats.on_event(ev.OutputTextDelta(item_id="m", output_index=0, delta="abcd"))
        clock.now += 0.1
    assert 2 <= len(seen) <= 5  # at most every 0.25 s, not per token
    stats.publish()
    assert 900 <= seen[-1].tokens_per_s_now <= 1000 and stats.chars_total == 4000
    usage = {"input_tokens": 120, "input_tokens_details": {"cached_tokens": 100}}
    stats.on_event(ev.ResponseCompleted(response={"id": "r", "usage": usage}))
    last = seen[-1]
    assert (last.last_turn_input_tokens, last.last_turn_cached_tokens, last.session_input_tokens) == (
        120,
        100,
        120,
    )
    clock.now += 5
    stats.publish()
    assert seen[-1].tokens_per_s_now == 0 and seen[-1].tokens_per_s_peak >= 900
