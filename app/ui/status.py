"""The status bar: connection state, tokens/s now and peak, context size, cache use, the engine.

The texts are pure functions of the façade's value types, so tests check them without pixels.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QStatusBar, QWidget

from app.services.api import ConnectionStatus, StreamStats
from app.ui.elide import ElidedLabel

STATE_TEXT = {
    "connecting": "Connecting…",
    "warm": "Ready",
    "streaming": "Streaming",
    "reconnecting": "Reconnecting…",
    "offline": "Offline",
    "error": "Error",
}
STATE_COLOUR = {
    "connecting": "#f59e0b",
    "warm": "#22c55e",
    "streaming": "#3b82f6",
    "reconnecting": "#f59e0b",
    "offline": "#9ca3af",
    "error": "#ef4444",
}


def compact(n: float) -> str:
    """1234 -> "1.2k", 2_500_000 -> "2.5M"; small numbers stay exact."""
    if n < 1000:
        return f"{n:.0f}"
    if n < 1_000_000:
        return f"{n / 1000:.1f}k".replace(".0k", "k")
    return f"{n / 1_000_000:.1f}M".replace(".0M", "M")


def connection_text(status: ConnectionStatus) -> str:
    text = STATE_TEXT.get(status.state, status.state)
    return f"{text} — {status.detail}" if status.detail else text


def rate_text(stats: StreamStats) -> str:
    return f"{compact(stats.tokens_per_s_now)} tok/s · peak {compact(stats.tokens_per_s_peak)}"


def context_text(stats: StreamStats) -> str:
    return f"context {compact(stats.context_tokens)} tok"


def _share(cached: int, total: int) -> str:
    return f"{100 * cached / total:.0f}%" if total else "–"


def cache_text(stats: StreamStats) -> str:
    """Cached vs uncached input for the last turn and the session."""
    last_new = max(stats.last_turn_input_tokens - stats.last_turn_cached_tokens, 0)
    sess_new = max(stats.session_input_tokens - stats.session_cached_tokens, 0)
    return (
        f"last turn {compact(stats.last_turn_cached_tokens)} cached / {compact(last_new)} new · "
        f"session {_share(stats.session_cached_tokens, stats.session_input_tokens)} cached "
        f"({compact(stats.session_cached_tokens)} / {compact(sess_new)})"
    )


def engine_text(status: ConnectionStatus) -> str:
    return status.engine or "no engine"


class StatusBar(QStatusBar):
    """Permanent labels, left to right: connection, rate, context, cache, engine."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSizeGripEnabled(False)
        self.dot = QLabel("●", self)
        self.dot.setObjectName("statusDot")
        self.connection = ElidedLabel("", self)  # elided labels: a long text never widens the window
        self.connection.setObjectName("statusConnection")
        self.connection.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.rate = ElidedLabel("", self)
        self.context = ElidedLabel("", self)
        self.cache = ElidedLabel("", self)
        self.engine = ElidedLabel("", self)
        self.engine.setObjectName("statusEngine")
        self.addWidget(self.dot)
        self.addWidget(self.connection, 1)
        for label in (self.rate, self.context, self.cache, self.engine):
            label.setObjectName(label.objectName() or "statusItem")
            self.addPermanentWidget(label)
        self.status = ConnectionStatus("offline", "not connected")
        self.stats = StreamStats()
        self.set_connection(self.status)
        self.set_stats(self.stats)

    def set_connection(self, status: ConnectionStatus) -> None:
        self.status = status
        self.connection.setText(connection_text(status))
        self.connection.setToolTip(status.endpoint or status.detail)
        self.dot.setStyleSheet(f"color: {STATE_COLOUR.get(status.state, '#9ca3af')};")
        self.engine.setText(engine_text(status))
        self.engine.setToolTip(status.endpoint)

    def set_stats(self, stats: StreamStats) -> None:
        self.stats = stats
        self.rate.setText(rate_text(stats))
        self.context.setText(context_text(stats))
        self.cache.setText(cache_text(stats))
