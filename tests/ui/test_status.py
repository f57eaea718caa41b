"""Status bar texts for each connection state and the stream statistics."""

from __future__ import annotations

import pytest

from app.services.api import ConnectionStatus, StreamStats
from app.services.inspector import compact
from app.ui.status import (
    STATE_COLOUR,
    StatusBar,
    cache_text,
    cache_tooltip,
    connection_text,
    first_token_text,
    rate_text,
    sent_text,
    sent_tooltip,
)


@pytest.mark.parametrize(
    ("state", "detail", "expected"),
    [
        ("connecting", "ws://127.0.0.1:8765", "Connecting…"),
        ("warm", "", "Connected"),
        (
            "warm",
            "stopped; the connection and the conversation are kept",
            "Connected — stopped; the connection and the conversation are kept",
        ),
        ("streaming", "", "Working…"),
        ("reconnecting", "connection lost (code 1006)", "Reconnecting… — connection lost (code 1006)"),
        ("rotating", "before its 60-min limit", "Renewing the connection… — before its 60-min limit"),
        (
            "idle",
            "stopped; the next message opens a new connection",
            "Not connected — stopped; the next message opens a new connection",
        ),
        ("offline", "endpoint unreachable", "Offline — endpoint unreachable"),
        ("error", "401: wrong API key", "Problem — 401: wrong API key"),
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
    assert cache_text(stats) == "1.2k new · 89% cached · session 88%"
    assert cache_tooltip(stats) == "last turn 9.8k cached / 1.2k new · session 88% cached (88k / 12k)"
    bar = StatusBar()
    qtbot.addWidget(bar)
    bar.set_stats(stats)
    assert bar.context.text() == "context 12.4k tok"
    assert bar.rate.text() == rate_text(stats)


def test_compact_and_empty_session() -> None:
    """Number formatting and a session with no input yet."""
    assert [compact(n) for n in (0, 999, 1000, 1500, 2_000_000)] == ["0", "999", "1k", "1.5k", "2M"]
    assert "session –" in cache_text(StreamStats())


def test_connection_text_tells_transport_attempt_renewal_and_first_token() -> None:
    """The whole truth in words: WebSocket or HTTP, which reconnect attempt, when the socket is renewed
    early, the last turn's time to first token; a stopped turn reads as connected, not offline."""
    warm = ConnectionStatus(
        "warm",
        "connected to ws://127.0.0.1:8765/v1/responses",
        transport="websocket",
        rotate_at=1000.0 + 3240,
        ttft_ms=118.4,
    )
    assert connection_text(warm, now=1000.0) == "Connected · WebSocket · renews in 54 min"
    assert connection_text(warm, now=1000.0 + 3200) == "Connected · WebSocket · renews in 40 s"
    assert first_token_text(warm) == "first token 118 ms"
    http = ConnectionStatus(
        "streaming", "over HTTP: the WebSocket is unavailable (HTTP 426)", transport="http"
    )
    assert connection_text(http) == "Working… · HTTP — over HTTP: the WebSocket is unavailable (HTTP 426)"
    again = ConnectionStatus("reconnecting", "connection lost (code 1006)", attempt=2, max_attempts=6)
    assert connection_text(again) == "Reconnecting, attempt 2 of 6… — connection lost (code 1006)"


def test_sent_figure_and_rebuild_causes(qtbot) -> None:  # type: ignore[no-untyped-def]
    """Bytes sent against a full resend; resends counted with their causes; a click asks for the inspector."""
    status = ConnectionStatus(
        "warm",
        sent_ratio=0.042,
        rebuilds=2,
        rebuild_causes=(("connection lost (code 1006)", 1), ("renewed early", 1)),
    )
    assert sent_text(status) == "sent 4% of full · 2 resends"
    assert "connection lost (code 1006) (×1)" in sent_tooltip(status)
    assert sent_text(ConnectionStatus("warm")) == "nothing sent yet"
    bar = StatusBar()
    qtbot.addWidget(bar)
    bar.set_connection(status)
    assert bar.sent.text() == "sent 4% of full · 2 resends"
    with qtbot.waitSignal(bar.inspect_requested, timeout=1000):
        bar.sent.click()
