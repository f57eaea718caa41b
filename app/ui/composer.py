"""The message composer: multi-line input with chat-style keys, history recall and a Stop button.

Keys: Enter sends, Shift+Enter inserts a newline, Ctrl+Shift+Enter asks a side question (a second
lane beside the agent's, which keeps working; the "Side" toggle makes Enter do that too), Esc stops following the stream (the transcript
keeps its scroll position), Up on the first line recalls older messages and Down walks back to the
draft. The composer only emits signals; the main window wires them to the services.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFontDatabase, QKeyEvent, QTextCursor
from PySide6.QtWidgets import QHBoxLayout, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

HISTORY_MAX = 200


class ComposerEdit(QPlainTextEdit):
    """The text field; keys are handled here so they work wherever the composer is embedded."""

    submitted = Signal(str)
    side_submitted = Signal(str)  # Ctrl+Shift+Enter
    escape_pressed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("composerEdit")
        self.setPlaceholderText(
            "Ask about the project…   Enter to send · Shift+Enter for a new line · ↑ for history"
        )
        self.setTabChangesFocus(True)
        font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        self.setFont(font)
        self.history: list[str] = []
        self._recall: int | None = None  # index into history while recalling, None = editing the draft
        self._draft = ""
        self.document().contentsChanged.connect(self._fit_height)
        self._fit_height()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key, mods = event.key(), event.modifiers()
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            side = Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier
            if mods & side == side:
                self.submit(side=True)
            elif mods & Qt.KeyboardModifier.ShiftModifier:
                self.textCursor().insertText("\n")
            else:
                self.submit()
            return
        if key == Qt.Key.Key_Escape:
            self.escape_pressed.emit()
            return
        if key == Qt.Key.Key_Up and self._on_first_line() and self.history:
            self._step_history(-1)
            return
        if key == Qt.Key.Key_Down and self._recall is not None and self._on_last_line():
            self._step_history(+1)
            return
        super().keyPressEvent(event)

    def submit(self, side: bool = False) -> None:
        """Send the text (if any; `side`: as a side question), remember it, clear the field."""
        text = self.toPlainText().strip()
        if not text:
            return
        if not self.history or self.history[-1] != text:
            self.history.append(text)
            del self.history[:-HISTORY_MAX]
        self._recall = None
        self._draft = ""
        self.clear()
        (self.side_submitted if side else self.submitted).emit(text)

    def _step_history(self, step: int) -> None:
        if self._recall is None:
            if step > 0:
                return
            self._draft = self.toPlainText()
            index = len(self.history) - 1
        else:
            index = self._recall + step
        if index < 0:
            return
        if index >= len(self.history):
            self._recall = None
            self.setPlainText(self._draft)
        else:
            self._recall = index
            self.setPlainText(self.history[index])
        self.moveCursor(QTextCursor.MoveOperation.End)

    def _on_first_line(self) -> bool:
        return self.textCursor().blockNumber() == 0

    def _on_last_line(self) -> bool:
        return self.textCursor().blockNumber() == self.document().blockCount() - 1

    def _fit_height(self) -> None:
        """Grow with the text from 2 to 10 lines, then scroll."""
        lines = min(max(self.document().blockCount(), 2), 10)
        line_h = self.fontMetrics().lineSpacing()
        margins = self.contentsMargins()
        self.setFixedHeight(
            lines * line_h + 2 * int(self.document().documentMargin()) + margins.top() + margins.bottom() + 4
        )


class Composer(QWidget):
    """Text field plus Send/Stop. `set_busy(True)` while a turn runs turns Send into Stop."""

    send_requested = Signal(str)
    side_requested = Signal(str)  # a side question: its own lane, the agent is not disturbed
    stop_requested = Signal()
    stop_following = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("composer")
        self.edit = ComposerEdit(self)
        self.send_button = QPushButton("Send", self)
        self.send_button.setObjectName("primaryButton")
        self.send_button.setToolTip("Send (Enter)")
        self.stop_button = QPushButton("Stop", self)
        self.stop_button.setObjectName("stopButton")
        self.stop_button.setToolTip("Stop the running turn")
        self.stop_button.setEnabled(False)
        self.side_toggle = QPushButton("Side", self)
        self.side_toggle.setObjectName("sideToggle")
        self.side_toggle.setCheckable(True)
        self.side_toggle.setToolTip(
            "Ask on a side lane while the agent works: it streams in its own pane "
            "and never enters the agent's conversation (Ctrl+Shift+Enter)"
        )
        buttons = QVBoxLayout()
        buttons.setSpacing(6)
        buttons.addWidget(self.send_button)
        buttons.addWidget(self.stop_button)
        buttons.addWidget(self.side_toggle)
        buttons.addStretch(1)
        row = QHBoxLayout(self)
        row.setContentsMargins(10, 8, 10, 10)
        row.setSpacing(8)
        row.addWidget(self.edit, 1)
        row.addLayout(buttons)
        self.edit.submitted.connect(self._submitted)
        self.edit.side_submitted.connect(self.side_requested)
        self.side_toggle.toggled.connect(self._side_mode)
        self.edit.escape_pressed.connect(self.stop_following)
        self.send_button.clicked.connect(self.edit.submit)
        self.stop_button.clicked.connect(self.stop_requested)
        self._busy = False

    def _submitted(self, text: str) -> None:
        (self.side_requested if self.side_toggle.isChecked() else self.send_requested).emit(text)

    def _side_mode(self, on: bool) -> None:
        self.send_button.setText("Ask aside" if on else "Send")
        self.send_button.setToolTip("Ask a side question (Enter)" if on else "Send (Enter)")

    @property
    def busy(self) -> bool:
        return self._busy

    def set_busy(self, busy: bool) -> None:
        """While busy the user may still type and queue; Stop is live."""
        self._busy = busy
        self.stop_button.setEnabled(busy)
