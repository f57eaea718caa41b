"""The session list: switch to an earlier session of this project or start a new one."""

from __future__ import annotations

import time

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.services.api import SessionInfo


def ago(then: float, now: float) -> str:
    """A short relative time: "just now", "5 min ago", "3 h ago", "2 d ago"."""
    s = max(now - then, 0.0)
    if s < 60:
        return "just now"
    if s < 3600:
        return f"{s // 60:.0f} min ago"
    if s < 86400:
        return f"{s // 3600:.0f} h ago"
    return f"{s // 86400:.0f} d ago"


class SessionsPanel(QWidget):
    """`set_sessions(list, current_id)`; emits `open_requested(id)` and `new_requested()`."""

    open_requested = Signal(str)
    new_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.summary = QLabel("No sessions yet", self)
        self.summary.setObjectName("panelSummary")
        self.list = QListWidget(self)
        self.list.setObjectName("sessionList")
        self.list.setSpacing(2)
        self.open_button = QPushButton("Open", self)
        self.new_button = QPushButton("New session", self)
        self.new_button.setObjectName("primaryButton")
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.open_button)
        row.addWidget(self.new_button)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 8, 8, 8)
        lay.setSpacing(6)
        lay.addWidget(self.summary)
        lay.addWidget(self.list, 1)
        lay.addLayout(row)
        self.current_id = ""
        self.open_button.clicked.connect(self._open_selected)
        self.new_button.clicked.connect(self.new_requested)
        self.list.itemActivated.connect(lambda _item: self._open_selected())
        self.list.currentItemChanged.connect(self._update_buttons)
        self._update_buttons()

    def set_sessions(
        self, sessions: list[SessionInfo], current_id: str = "", now: float | None = None
    ) -> None:
        now = time.time() if now is None else now
        self.current_id = current_id
        self.list.clear()
        for info in sorted(sessions, key=lambda s: s.updated_at, reverse=True):
            title = info.title or "Untitled session"
            mark = "● " if info.id == current_id else ""
            turns = f"{info.turns} turn{'s' * (info.turns != 1)}"
            item = QListWidgetItem(f"{mark}{title}\n{turns} · {ago(info.updated_at, now)}")
            item.setData(Qt.ItemDataRole.UserRole, info.id)
            item.setToolTip(title)
            self.list.addItem(item)
        n = len(sessions)
        self.summary.setText(f"{n} session{'s' * (n != 1)} in this project" if n else "No sessions yet")
        self._update_buttons()

    def _selected_id(self) -> str:
        item = self.list.currentItem()
        return str(item.data(Qt.ItemDataRole.UserRole)) if item is not None else ""

    def _open_selected(self) -> None:
        sid = self._selected_id()
        if sid and sid != self.current_id:
            self.open_requested.emit(sid)

    def _update_buttons(self, *_: object) -> None:
        sid = self._selected_id()
        self.open_button.setEnabled(bool(sid) and sid != self.current_id)
