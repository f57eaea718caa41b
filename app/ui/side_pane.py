"""Side conversations beside the main transcript, and the one frame clock all transcripts share.

`SidePane` holds one tab per side conversation (`app.services.api.SideConversation`): a header
saying where it runs (a lane of the agent's socket, or a second connection when the server has no
lanes), its own `TranscriptView` on the conversation model the services own, a field to continue
it, and Promote / Close. The pane hides itself when no side conversation is open. It only emits
intents (`ask_requested`, `close_requested`, `promote_requested`); the controller calls the services.

`FrameTicker` is one frame timer for every transcript view (the agent's and each side's): each tick
runs `app.render.pacer.PacerGroup`, which gives every view with work a share of one frame's budget
and runs a slice of each in every round (one eviction pass a round over all of them), so two
streams at once cost the GUI thread what one did and both keep the full frame rate.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.render.pacer import PacerGroup
from app.services.api import SideConversation
from app.ui.theme import Theme
from app.ui.transcript_view import FRAME_MS, TranscriptView

__all__ = ["FrameTicker", "SidePane", "SideTab", "transport_words"]


class FrameTicker(QObject):
    """One frame clock for several `TranscriptView`s (see the module docstring)."""

    def __init__(self, parent: QObject | None = None, clock: Callable[[], float] = time.perf_counter) -> None:
        super().__init__(parent)
        self.group = PacerGroup(frame_s=FRAME_MS / 1000)
        self.views: list[TranscriptView] = []
        self.clock = clock
        self._timer = QTimer(self)
        self._timer.setInterval(FRAME_MS)
        self._timer.timeout.connect(self._on_frame)
        self._slice = QTimer(self)  # the next slice, after the event loop turned
        self._slice.setSingleShot(True)
        self._slice.setInterval(0)
        self._slice.timeout.connect(self._on_slice)
        self.frames = 0
        self.shared_frames = 0  # frames that paced more than one view (both lanes streaming)
        self.on_frame: Callable[[int], None] | None = None  # probes: views paced in each frame

    def add(self, view: TranscriptView) -> None:
        if view not in self.views:
            self.views.append(view)
            self.group.add(view.pacer, view.model, view)
            view.set_frame_ticker(self)

    def remove(self, view: TranscriptView) -> None:
        if view in self.views:
            self.views.remove(view)
            self.group.remove(view)
            view.set_frame_ticker(None)

    def wake(self) -> None:
        if not self._timer.isActive():
            self._timer.start()

    def run_frame(self) -> int:
        """One whole frame now, its slices back to back (tests, screenshots); views paced."""
        self._slice.stop()
        n = self._start()
        while self.group.run_slice():
            pass
        return n

    def _sync_models(self) -> None:
        for view in self.views:  # a view may have been handed another model (set_model)
            self.group.set_model(view, view.model)

    def _start(self) -> int:
        self._sync_models()
        n = self.group.start_frame(self.clock())
        self.frames += 1
        self.shared_frames += n > 1
        if self.on_frame is not None:
            self.on_frame(n)
        return n

    def _on_frame(self) -> None:
        self._sync_models()
        if not self.group.pending:  # an idle frame: sleep until the next wake
            self._timer.stop()
            return
        self._start()
        # The first round after the event loop turned: Qt fires every due timer in one pass, and the
        # slice timer (the last frame's round) is often due with this one; a round here ran back to
        # back with that one, no paint or input between (two lanes: 18-20 ms stalls).
        self._slice.start()

    def _on_slice(self) -> None:
        if self.group.run_slice():
            self._slice.start()


def transport_words(side: SideConversation) -> tuple[str, str]:
    """(badge, tooltip) for where a side conversation runs."""
    if side.transport == "connection":
        return (
            "second connection",
            "This server has no lanes (it refused stream_id), so side questions use a second connection.",
        )
    if side.transport == "http":
        return "HTTP", "The WebSocket is unavailable: this side question went over HTTP."
    return (
        f"lane {side.id}",
        f"Runs on stream_id “{side.id}” of the agent's own WebSocket, beside the agent's lane.",
    )


class SideTab(QWidget):
    """One side conversation: header (where it runs, state, Promote, Close), transcript, continue
    field; its title is the tab's."""

    def __init__(
        self,
        side: SideConversation,
        ticker: FrameTicker,
        parent: QWidget | None = None,
        theme: Theme | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("sideTab")
        self.side = side
        self.badge = QLabel(self)
        self.badge.setObjectName("sideBadge")
        self.badge.setStyleSheet(
            "QLabel { border: 1px solid palette(mid); border-radius: 8px; padding: 1px 8px; }"
        )
        self.state = QLabel(self)
        self.state.setObjectName("sideState")
        self.promote_button = QPushButton("Promote", self)
        self.promote_button.setToolTip("Make this side conversation a session of its own (in Sessions)")
        self.close_button = QPushButton("Close", self)
        self.close_button.setToolTip("Close this side conversation (the agent is not disturbed)")
        head = QHBoxLayout()
        head.setContentsMargins(8, 6, 8, 4)
        head.setSpacing(8)
        head.addWidget(self.badge)
        head.addWidget(self.state)
        head.addStretch(1)
        head.addWidget(self.promote_button)
        head.addWidget(self.close_button)
        self.view = TranscriptView(side.conversation, self, theme)
        self.view.setObjectName("sideTranscript")
        ticker.add(self.view)
        self.edit = QLineEdit(self)
        self.edit.setObjectName("sideEdit")
        self.edit.setPlaceholderText("Continue this side conversation…  Enter to send")
        self.send_button = QPushButton("Ask", self)
        row = QHBoxLayout()
        row.setContentsMargins(8, 4, 8, 8)
        row.setSpacing(6)
        row.addWidget(self.edit, 1)
        row.addWidget(self.send_button)
        col = QVBoxLayout(self)
        col.setContentsMargins(0, 0, 0, 0)
        col.setSpacing(0)
        col.addLayout(head)
        col.addWidget(self.view, 1)
        col.addLayout(row)
        self.refresh()

    def refresh(self) -> None:
        badge, tip = transport_words(self.side)
        self.badge.setText(badge if self.side.transport else "")
        self.badge.setToolTip(tip)
        self.state.setText("● streaming" if self.side.busy else "")
        self.promote_button.setEnabled(not self.side.busy)
        self.send_button.setEnabled(not self.side.busy)


class SidePane(QWidget):
    """Tabs of side conversations (see the module docstring); hidden while there is none."""

    ask_requested = Signal(str, str)  # text, side id
    close_requested = Signal(str)
    promote_requested = Signal(str)

    def __init__(self, ticker: FrameTicker, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("sidePane")
        self.ticker = ticker
        self.theme: Theme | None = None
        self.tabs = QTabWidget(self)
        self.tabs.setDocumentMode(True)
        self.caption = QLabel("Side questions · the agent keeps working on its own lane", self)
        self.caption.setObjectName("sideCaption")
        self.caption.setContentsMargins(10, 6, 10, 2)
        font = self.caption.font()
        font.setBold(True)
        self.caption.setFont(font)
        col = QVBoxLayout(self)
        col.setContentsMargins(0, 0, 0, 0)
        col.setSpacing(0)
        col.addWidget(self.caption)
        col.addWidget(self.tabs, 1)
        self._unlinks: dict[str, Callable[[], None]] = {}
        self.hide()

    def tab_at(self, index: int) -> SideTab | None:
        w = self.tabs.widget(index)
        return w if isinstance(w, SideTab) else None

    def tab_for(self, side_id: str) -> SideTab | None:
        for i in range(self.tabs.count()):
            tab = self.tab_at(i)
            if tab is not None and tab.side.id == side_id:
                return tab
        return None

    def add_side(self, side: SideConversation) -> SideTab:
        """A tab for a new side conversation, made current; the pane shows."""
        tab = SideTab(side, self.ticker, self, self.theme)
        sid = side.id
        tab.edit.returnPressed.connect(lambda: self._ask(tab))
        tab.send_button.clicked.connect(lambda: self._ask(tab))
        tab.close_button.clicked.connect(lambda: self._close(tab))
        tab.promote_button.clicked.connect(lambda: self.promote_requested.emit(sid))
        refresh = tab.refresh
        side.changed.connect(refresh)
        self._unlinks[sid] = lambda: side.changed.disconnect(refresh)
        index = self.tabs.addTab(tab, _short(side.title))
        self.tabs.setTabToolTip(index, side.title)
        self.tabs.setCurrentIndex(index)
        if self.isHidden():
            self.show()
            splitter = self.parentWidget()
            if isinstance(splitter, QSplitter) and splitter.count() == 2:  # the agent keeps the wider part
                total = sum(splitter.sizes())
                splitter.setSizes([total * 3 // 5, total - total * 3 // 5])
        return tab

    def remove_side(self, side: SideConversation) -> None:
        tab = self.tab_for(side.id)
        unlink = self._unlinks.pop(side.id, None)
        if unlink is not None:
            unlink()
        if tab is not None:
            side.conversation.set_waker(None)  # the model is the services'; this view is going away
            self.ticker.remove(tab.view)
            self.tabs.removeTab(self.tabs.indexOf(tab))
            tab.deleteLater()
        self.setVisible(self.tabs.count() > 0)

    def clear(self) -> None:
        """Another project: every tab goes (its services are gone)."""
        for i in reversed(range(self.tabs.count())):
            tab = self.tab_at(i)
            if tab is not None:
                self.remove_side(tab.side)

    def set_theme(self, theme: Theme) -> None:
        self.theme = theme
        for i in range(self.tabs.count()):
            tab = self.tab_at(i)
            if tab is not None:
                tab.view.set_theme(theme)

    def _ask(self, tab: SideTab) -> None:
        text = tab.edit.text().strip()
        if text and not tab.side.busy:
            tab.edit.clear()
            tab.view.follow()
            self.ask_requested.emit(text, tab.side.id)

    def _close(self, tab: SideTab | None) -> None:
        if tab is not None:
            self.close_requested.emit(tab.side.id)


def _short(title: str) -> str:
    return title if len(title) <= 24 else title[:23] + "…"
