"""Façade signals → Qt signals, delivered on the GUI thread.

The services emit their Qt-free `Signal`s on the event-loop thread, which under qasync is the GUI
thread, so delivery is direct. If a service ever emits from another thread, Qt's AutoConnection
queues the re-emitted signal to the receivers' (GUI) thread, so widgets are never touched from a
worker. `Bridge.close()` disconnects everything, so a replaced services object (another project
opened) cannot reach the window any more.

The conversation and the test run do not pass through here: they are models the views are handed
(`TranscriptView`, `TestsPanel`), which wake on their own queued `dirty` signal once per frame.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal

from app.services.api import Services
from app.services.signals import Signal as ServiceSignal


class Bridge(QObject):
    """One Qt signal per façade signal; values are passed through unchanged."""

    connection_changed = Signal(object)  # ConnectionStatus
    stats_changed = Signal(object)  # StreamStats
    files_changed = Signal(object)  # Sequence[FileBadge]
    approval_requested = Signal(object)  # ApprovalRequest
    busy_changed = Signal(bool)
    banner_changed = Signal(str)
    side_opened = Signal(object)  # SideConversation
    side_removed = Signal(object)  # SideConversation

    def __init__(self, services: Services, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.services = services
        self._links: list[tuple[ServiceSignal[Any], Callable[..., object]]] = []
        self._link(services.connection_changed, self.connection_changed.emit)
        self._link(services.stats_changed, self.stats_changed.emit)
        self._link(services.files_changed, self.files_changed.emit)
        self._link(services.approval_requested, self.approval_requested.emit)
        self._link(services.busy_changed, self.busy_changed.emit)
        self._link(services.banner_changed, self.banner_changed.emit)
        self._link(services.side_opened, self.side_opened.emit)
        self._link(services.side_removed, self.side_removed.emit)

    def _link(self, source: ServiceSignal[Any], emit: Callable[..., object]) -> None:
        source.connect(emit)
        self._links.append((source, emit))

    def close(self) -> None:
        """Stop forwarding: disconnect from every façade signal."""
        for source, emit in self._links:
            source.disconnect(emit)
        self._links.clear()
