"""Status bar texts for each connection state and the stream statistics."""

from __future__ import annotations

import pytest

from app.services.api import ConnectionStatus, StreamStats
from app.ui.status import STATE_COLOUR, StatusBar, cache_text, compact, connection_text, rate_text


@pytest.mark.parametrize(
    ("state", "detail", "expected"),
    [
        ("connecting", "ws://127.0.0.1:8765", "Connecting… — ws://127.0.0.1:8765"),
        ("warm", "", "Ready"),
        ("streaming", "", "Streaming"),
        ("reconnecting", "attempt 2 in 1.5 s", "Reconnecting… — attempt 2 in 1.5 s"),
        ("offline", "endpoint unreachable", "Offline — endpoint unreachable"),
        ("error", "401: wrong API key", "Error — 401: wrong API key"),
    ],
)
def test_connection_texts(qtbot, state: str, detail: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    """Each state reads as words, with the detail after it, and gets its own dot colour."""
    status = ConnectionStatus(state, detail, "scripted — no model")  # type: ignore[arg-type]
    assert connection_text(status) == expected
    bar = StatusBar()
    qtbot.addWidget(bar)
    bar.set_connection(status)
    assert bar.connection.text() == expected
    assert bar.engine.text() == "scripted — no model"
    assert STATE_COLOUR[state] in bar.dot.styleSheet()


def test_stats_texts(qtbot) -> None:  # type: ignore[no-untyped-def]
    """Rate now/peak, context size and cached vs uncached input for turn and session."""
    stats = StreamStats(
        tokens_per_s_now=312.4,
        tokens_per_s_peak=2410,
        context_tokens=12_400,
        last_turn_input_tokens=11_000,
        last_turn_cached_tokens=9_800,
        session_input_tokens=100_000,
        session_cached_tokens=88_000,
    )
    assert rate_text(stats) == "312 tok/s · peak 2.4k"
    assert cache_text(stats) == "last turn 9.8k cached / 1.2k new · session 88% cached (88k / 12k)"
    bar = StatusBar()
    qtbot.addWidget(bar)
    bar.set_stats(stats)
    assert bar.context.text() == "context 12.4k tok"
    assert bar.rate.text() == rate_text(stats)


def test_compact_and_empty_session() -> None:
    """Number formatting and a session with no input yet."""
    assert [compact(n) for n in (0, 999, 1000, 1500, 2_000_000)] == ["0", "999", "1k", "1.5k", "2M"]
    assert "session – cached" in cache_text(StreamStats())
