"""The status bar: connection state, tokens/s now and peak, context size, cache use, what was sent, the engine.

The texts are pure functions of the façade's value types (and `now` for the countdown to the socket's
early renewal), so tests check them without pixels. Clicking the connection or the "sent" figure
opens the context inspector (`inspect_requested`).
"""

from __future__ import annotations

import time

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QLabel, QStatusBar, QToolButton, QWidget

from app.services.api import ConnectionStatus, StreamStats
from app.services.inspector import compact
from app.ui.elide import ElidedLabel

STATE_TEXT = {
    "connecting": "Connecting…",
    "warm": "Connected",
    "streaming": "Working…",
    "reconnecting": "Reconnecting…",
    "rotating": "Renewing the connection…",
    "idle": "Not connected",
    "offline": "Offline",
    "error": "Problem",
}
STATE_COLOUR = {
    "connecting": "#f59e0b",
    "warm": "#22c55e",
    "streaming": "#3b82f6",
    "reconnecting": "#f59e0b",
    "rotating": "#a855f7",
    "idle": "#9ca3af",
    "offline": "#9ca3af",
    "error": "#ef4444",
}
TRANSPORT_TEXT = {"websocket": "WebSocket", "http": "HTTP"}


def duration(seconds: float) -> str:
    """3300 -> "55 min", 42 -> "42 s"."""
    if seconds < 60:
        return f"{max(seconds, 0):.0f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min"
    return f"{seconds // 3600:.0f} h {seconds % 3600 // 60:.0f} min"


def _is_address(detail: str) -> bool:
    return detail.startswith(("connected to ", "ws://", "wss://", "http://", "https://", "HTTP endpoint "))


def connection_text(status: ConnectionStatus, now: float | None = None) -> str:
    """The connection in plain words: state (transport, attempt), why, and when the socket is renewed
    early. `now`: time.monotonic() for the countdown."""
    text = STATE_TEXT.get(status.state, status.state)
    if status.state == "reconnecting" and status.attempt:
        of = f" of {status.max_attempts}" if status.max_attempts else ""
        text = f"Reconnecting, attempt {status.attempt}{of}…"
    elif status.state in ("warm", "streaming") and status.transport:
        text = f"{text} · {TRANSPORT_TEXT.get(status.transport, status.transport)}"
    detail = status.detail
    if status.state in ("warm", "streaming", "connecting") and _is_address(detail):
        detail = ""  # the address is in the tooltip: the bar says what is happening, not where
    parts = [f"{text} — {detail}" if detail else text]
    live = status.state in ("warm", "streaming")
    if live and status.rotate_at is not None and now is not None:
        parts.append(f"renews in {duration(status.rotate_at - now)}")
    return " · ".join(parts)


def first_token_text(status: ConnectionStatus) -> str:
    """The last turn's time to first token (next to the rate), while connected."""
    live = status.state in ("warm", "streaming")
    return f"first token {status.ttft_ms:.0f} ms" if live and status.ttft_ms is not None else ""


def connection_tooltip(status: ConnectionStatus) -> str:
    lines = [status.endpoint or status.detail]
    if status.detail and status.detail != lines[0]:
        lines.append(status.detail)
    lines.append("Click to see what was sent.")
    return "\n".join(x for x in lines if x)


def sent_text(status: ConnectionStatus) -> str:
    """Bytes sent against a full resend (what a client without the chain would send), and rebuilds."""
    if status.sent_ratio is None:
        return "nothing sent yet"
    text = f"sent {100 * status.sent_ratio:.0f}% of full"
    if status.rebuilds:
        text += f" · {status.rebuilds} resend" + ("s" if status.rebuilds > 1 else "")
    return text


def sent_tooltip(status: ConnectionStatus) -> str:
    lines = [
        "Bytes sent, against what a client without the conversation chain would have sent",
        "(the whole conversation with every message).",
    ]
    if status.rebuild_causes:
        lines.append("The whole conversation was sent again because:")
        lines += [f"  • {cause} (×{n})" for cause, n in status.rebuild_causes]
    lines.append("Click to see every request.")
    return "\n".join(lines)


def rate_text(stats: StreamStats) -> str:
    return f"{compact(stats.tokens_per_s_now)} tok/s · peak {compact(stats.tokens_per_s_peak)}"


def context_text(stats: StreamStats) -> str:
    return f"context {compact(stats.context_tokens)} tok"


def _share(cached: int, total: int) -> str:
    return f"{100 * cached / total:.0f}%" if total else "–"


def cache_text(stats: StreamStats) -> str:
    """Input tokens the last turn made the server read anew, and the cache's share (short: the bar)."""
    last_new = max(stats.last_turn_input_tokens - stats.last_turn_cached_tokens, 0)
    return (
        f"{compact(last_new)} new · {_share(stats.last_turn_cached_tokens, stats.last_turn_input_tokens)} cached"
        f" · session {_share(stats.session_cached_tokens, stats.session_input_tokens)}"
    )


def cache_tooltip(stats: StreamStats) -> str:
    """Cached vs uncached input for the last turn and the session, in tokens."""
    last_new = max(stats.last_turn_input_tokens - stats.last_turn_cached_tokens, 0)
    sess_new = max(stats.session_input_tokens - stats.session_cached_tokens, 0)
    return (
        f"last turn {compact(stats.last_turn_cached_tokens)} cached / {compact(last_new)} new · "
        f"session {_share(stats.session_cached_tokens, stats.session_input_tokens)} cached "
        f"({compact(stats.session_cached_tokens)} / {compact(sess_new)})"
    )


def engine_text(status: ConnectionStatus) -> str:
    return status.engine or "no engine"


class _ClickLabel(ElidedLabel):
    clicked = Signal()

    def mouseReleaseEvent(self, e: QMouseEvent) -> None:
        if e.button() == Qt.MouseButton.LeftButton:
            self.clicked.emit()
        super().mouseReleaseEvent(e)


class StatusBar(QStatusBar):
    """Permanent labels, left to right: connection, rate, context, cache, sent, engine."""

    inspect_requested = Signal()  # the user clicked the connection or the "sent" figure

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSizeGripEnabled(False)
        self.dot = QLabel("●", self)
        self.dot.setObjectName("statusDot")
        # elided labels: a long text is cut (its tooltip has it all), never widens the window
        self.connection = _ClickLabel("", self)
        self.connection.setObjectName("statusConnection")
        self.connection.setCursor(Qt.CursorShape.PointingHandCursor)
        self.connection.setMinimumWidth(390)  # the state and its reason come first
        self.connection.clicked.connect(self.inspect_requested)
        self.rate = ElidedLabel("", self)
        self.context = ElidedLabel("", self)
        self.cache = ElidedLabel("", self)
        self.sent = QToolButton(self)
        self.sent.setObjectName("statusSent")
        self.sent.setAutoRaise(True)
        self.sent.setCursor(Qt.CursorShape.PointingHandCursor)
        self.sent.clicked.connect(self.inspect_requested)
        self.engine = ElidedLabel("", self)
        self.engine.setObjectName("statusEngine")
        self.addWidget(self.dot)
        self.addWidget(self.connection, 1)
        for label in (self.rate, self.context, self.cache, self.sent, self.engine):
            label.setObjectName(label.objectName() or "statusItem")
            self.addPermanentWidget(label)
        self._tick = QTimer(self)  # the countdown to the socket's early renewal
        self._tick.setInterval(15_000)
        self._tick.timeout.connect(self._refresh_connection)
        self.status = ConnectionStatus("idle", "not connected")
        self.stats = StreamStats()
        self.set_connection(self.status)
        self.set_stats(self.stats)

    def set_connection(self, status: ConnectionStatus) -> None:
        self.status = status
        self._refresh_connection()
        self.connection.setToolTip(connection_tooltip(status))
        self.dot.setStyleSheet(f"color: {STATE_COLOUR.get(status.state, '#9ca3af')};")
        self.sent.setText(sent_text(status))
        self.sent.setToolTip(sent_tooltip(status))
        self.engine.setText(engine_text(status))
        self.engine.setToolTip(status.endpoint)
        if hasattr(self, "stats"):
            self._refresh_rate()
        if status.rotate_at is not None and not self._tick.isActive():
            self._tick.start()
        elif status.rotate_at is None:
            self._tick.stop()

    def _refresh_rate(self) -> None:
        first = first_token_text(self.status)
        self.rate.setText(rate_text(self.stats) + (f" · {first}" if first else ""))

    def _refresh_connection(self) -> None:
        self.connection.setText(connection_text(self.status, time.monotonic()))

    def set_stats(self, stats: StreamStats) -> None:
        self.stats = stats
        self._refresh_rate()
        self.context.setText(context_text(stats))
        self.cache.setText(cache_text(stats))
        self.cache.setToolTip(cache_tooltip(stats))
