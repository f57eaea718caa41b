"""The context panel: every project file with a badge saying where it stands with the model.

Badges: "in view" (the model has the current content), "pending" (changed on disk, the diff is
not yet acknowledged), "excluded" and "summarised" with the reason (secret, gitignored, binary, too
large...). The services send the whole list each time; the panel diffs it against its rows so a
change of one file touches one row. Right-click pins or unpins a file.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QPoint, QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFontDatabase, QPainter
from PySide6.QtWidgets import (
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.services.api import FileBadge

BADGE_TEXT = {"in_view": "in view", "pending": "pending", "excluded": "excluded", "summarised": "summarised"}
BADGE_TIP = {
    "in_view": "The model has the current content of this file.",
    "pending": "Changed on disk; the diff is queued and not yet acknowledged by the model.",
    "excluded": "Not sent to the model.",
    "summarised": "Sent as a summary only (not the full content).",
}
# (light, dark) colours per badge: background, text.
BADGE_COLOURS = {
    "in_view": (("#dcfce7", "#166534"), ("#14532d", "#bbf7d0")),
    "pending": (("#fef3c7", "#92400e"), ("#78350f", "#fde68a")),
    "excluded": (("#e5e7eb", "#374151"), ("#374151", "#d1d5db")),
    "summarised": (("#dbeafe", "#1e40af"), ("#1e3a8a", "#bfdbfe")),
}
ORDER = {"pending": 0, "in_view": 1, "summarised": 2, "excluded": 3}
STATE_ROLE = Qt.ItemDataRole.UserRole + 1
PIN = "★ "  # DejaVu has it; emoji fonts are often missing on Linux


def is_dark(widget: QWidget) -> bool:
    return widget.palette().window().color().lightness() < 128


class BadgeDelegate(QStyledItemDelegate):
    """Paints the state column as a rounded pill."""

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> None:
        state = index.data(STATE_ROLE)
        if state not in BADGE_COLOURS:
            super().paint(painter, option, index)
            return
        widget = option.widget
        if option.state & QStyle.StateFlag.State_Selected:
            painter.fillRect(option.rect, option.palette.highlight())
        dark = widget is not None and is_dark(widget)
        bg, fg = BADGE_COLOURS[state][1 if dark else 0]
        text = BADGE_TEXT[state]
        fm = option.fontMetrics
        rect: QRect = option.rect
        w, h = fm.horizontalAdvance(text) + 14, fm.height() + 4
        pill = QRect(rect.x() + 4, rect.y() + (rect.height() - h) // 2, w, h)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(bg))
        painter.drawRoundedRect(pill, h / 2, h / 2)
        painter.setPen(QColor(fg))
        painter.drawText(pill, Qt.AlignmentFlag.AlignCenter, text)
        painter.restore()

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> QSize:
        size = super().sizeHint(option, index)
        return QSize(max(size.width(), 96), max(size.height(), option.fontMetrics.height() + 8))


class ContextPanel(QWidget):
    """`update_files(badges)` with the whole list; emits `pin_requested(path, pinned)`."""

    pin_requested = Signal(str, bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.summary = QLabel("No files yet", self)
        self.summary.setObjectName("panelSummary")
        self.filter = QLineEdit(self)
        self.filter.setPlaceholderText("Filter files…")
        self.filter.setClearButtonEnabled(True)
        self.tree = QTreeWidget(self)
        self.tree.setColumnCount(3)
        self.tree.setHeaderLabels(["File", "State", "Why"])
        self.tree.setRootIsDecorated(False)
        self.tree.setUniformRowHeights(True)
        self.tree.setAlternatingRowColors(False)
        self.tree.setSortingEnabled(False)
        self.tree.setItemDelegateForColumn(1, BadgeDelegate(self.tree))
        self.tree.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        header = self.tree.header()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Fixed)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(False)
        header.resizeSection(1, 100)
        self._mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.setSpacing(6)
        layout.addWidget(self.summary)
        layout.addWidget(self.filter)
        layout.addWidget(self.tree, 1)
        self._rows: dict[str, QTreeWidgetItem] = {}
        self._badges: dict[str, FileBadge] = {}
        self.pinned: set[str] = set()
        self.filter.textChanged.connect(self._apply_filter)
        self.tree.customContextMenuRequested.connect(self._on_context_menu)

    def badge(self, path: str) -> FileBadge | None:
        return self._badges.get(path)

    def update_files(self, badges: Sequence[FileBadge]) -> None:
        new = {b.path: b for b in badges}
        for path in set(self._rows) - set(new):
            item = self._rows.pop(path)
            self.tree.takeTopLevelItem(self.tree.indexOfTopLevelItem(item))
            del self._badges[path]
        for path, b in new.items():
            if self._badges.get(path) == b:
                continue
            row = self._rows.get(path)
            if row is None:
                row = QTreeWidgetItem()
                row.setFont(0, self._mono)
                self._rows[path] = row
                self.tree.addTopLevelItem(row)
            self._badges[path] = b
            self._fill(row, b)
        order = sorted(self._rows, key=lambda p: (ORDER.get(self._badges[p].state, 9), p))
        if [self.tree.topLevelItem(i) for i in range(self.tree.topLevelItemCount())] != [self._rows[p] for p in order]:
            while self.tree.topLevelItemCount():
                self.tree.takeTopLevelItem(0)
            self.tree.addTopLevelItems([self._rows[p] for p in order])
        self._update_summary()
        self._apply_filter(self.filter.text())

    def set_pinned(self, paths: Sequence[str]) -> None:
        self.pinned = set(paths)
        for path, item in self._rows.items():
            self._fill(item, self._badges[path])

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(BADGE_TEXT, 0)
        for b in self._badges.values():
            out[b.state] = out.get(b.state, 0) + 1
        return out

    def _fill(self, item: QTreeWidgetItem, b: FileBadge) -> None:
        item.setData(0, Qt.ItemDataRole.UserRole, b.path)
        item.setText(0, (PIN if b.path in self.pinned else "") + b.path)
        item.setToolTip(0, b.path)
        item.setData(1, STATE_ROLE, b.state)
        item.setText(1, BADGE_TEXT.get(b.state, b.state))
        item.setToolTip(1, BADGE_TIP.get(b.state, ""))
        reason = b.reason or ("changed on disk" if b.state == "pending" else "")
        item.setText(2, reason)
        item.setToolTip(2, reason)

    def _update_summary(self) -> None:
        c = self.counts()
        total = sum(c.values())
        if not total:
            self.summary.setText("No files yet")
            return
        parts = [f"{total} files", f"{c['in_view']} in view"]
        if c["pending"]:
            parts.append(f"{c['pending']} pending")
        if c["summarised"]:
            parts.append(f"{c['summarised']} summarised")
        if c["excluded"]:
            parts.append(f"{c['excluded']} excluded")
        self.summary.setText("  ·  ".join(parts))

    def _apply_filter(self, text: str) -> None:
        needle = text.strip().lower()
        for path, item in self._rows.items():
            item.setHidden(bool(needle) and needle not in path.lower())

    def _on_context_menu(self, pos: QPoint) -> None:
        item = self.tree.itemAt(pos)
        if item is None:
            return
        path = item.data(0, Qt.ItemDataRole.UserRole)
        menu = QMenu(self)
        pinned = path in self.pinned
        action = menu.addAction("Unpin from context" if pinned else "Pin in context")
        action.triggered.connect(lambda: self.toggle_pin(path))
        menu.popup(self.tree.viewport().mapToGlobal(pos))

    def toggle_pin(self, path: str) -> None:
        pinned = path not in self.pinned
        if pinned:
            self.pinned.add(path)
        else:
            self.pinned.discard(path)
        if path in self._rows:
            self._fill(self._rows[path], self._badges[path])
        self.pin_requested.emit(path, pinned)
