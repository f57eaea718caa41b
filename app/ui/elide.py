"""A label that elides its text to the width it is given and never asks for more.

A plain QLabel's minimum width is its whole text: in the status bar a long detail ("Reconnecting —
attempt 3: …") raised the window's minimum size and the window widened itself (1280 → 1330 px),
pushing Settings off a 1280-px screen. This one paints "Reconnecting — attem…" instead; the full
text is its tooltip unless one is set.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QPainter, QPaintEvent
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget


class ElidedLabel(QLabel):
    """`QLabel` with a small minimum width; the text is elided at the right to fit."""

    MIN_WIDTH = 24

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(text, parent)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        self.setWordWrap(False)

    def minimumSizeHint(self) -> QSize:
        return QSize(self.MIN_WIDTH, super().minimumSizeHint().height())

    def elided_text(self) -> str:
        """The text as painted at the current width."""
        room = self.contentsRect().width()
        return self.fontMetrics().elidedText(self.text(), Qt.TextElideMode.ElideRight, max(room, 0))

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setPen(self.palette().color(self.foregroundRole()))
        painter.drawText(
            self.contentsRect(), int(self.alignment() | Qt.AlignmentFlag.AlignVCenter), self.elided_text()
        )
        painter.end()
