"""Façade signals → Qt signals, delivered on the GUI thread.

The services emit their Qt-free `Signal`s on the event-loop thread, which under qasync is the GUI
thread, so delivery is direct. If a service ever emits from another thread, Qt's AutoConnection
queues the re-emitted signal to the receivers' (GUI) thread, so widgets are never touched from a
worker. `Bridge.close()` disconnects everything, so a replaced services object (another project
opened) cannot reach the window any more.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal

from app.services.api import Services

# Transcript operations, in the order of TranscriptSignals; each maps to TranscriptView.feed_<name>.
TRANSCRIPT_OPS: tuple[str, ...] = (
    "user_message",
    "assistant_begin",
    "text_delta",
    "reasoning_delta",
    "tool_call_begin",
    "tool_args_delta",
    "item_end",
    "tool_output",
    "notice",
    "response_end",
    "cleared",
)


class TranscriptBridge(QObject):
    user_message = Signal(str)
    assistant_begin = Signal(str)
    text_delta = Signal(str, str)
    reasoning_delta = Signal(str, str)
    tool_call_begin = Signal(str, str, str)
    tool_args_delta = Signal(str, str)
    item_end = Signal(str)
    tool_output = Signal(str, str, bool)
    notice = Signal(str, str)
    response_end = Signal(str)
    cleared = Signal()


class Bridge(QObject):
    """One Qt signal per façade signal; values are passed through unchanged."""

    connection_changed = Signal(object)  # ConnectionStatus
    stats_changed = Signal(object)  # StreamStats
    files_changed = Signal(object)  # Sequence[FileBadge]
    approval_requested = Signal(object)  # ApprovalRequest
    test_event = Signal(object)  # TestEvent
    busy_changed = Signal(bool)
    banner_changed = Signal(str)

    _SERVICE_SIGNALS = (
        "connection_changed",
        "stats_changed",
        "files_changed",
        "approval_requested",
        "test_event",
        "busy_changed",
        "banner_changed",
    )

    def __init__(self, services: Services, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.services = services
        self.transcript = TranscriptBridge(self)
        self._links: list[tuple[Any, Callable[..., object]]] = []
        for name in self._SERVICE_SIGNALS:
            self._link(getattr(services, name), getattr(self, name).emit)
        for name in TRANSCRIPT_OPS:
            self._link(getattr(services.transcript, name), getattr(self.transcript, name).emit)

    def _link(self, source: Any, emit: Callable[..., object]) -> None:
        source.connect(emit)
        self._links.append((source, emit))

    def close(self) -> None:
        """Stop forwarding: disconnect from every façade signal."""
        for source, emit in self._links:
            source.disconnect(emit)
        self._links.clear()
