"""The context panel: every project file with a badge saying where it stands with the model.

Badges: "in view" (the model has the current content), "pending" (changed on disk, the diff is
not yet acknowledged), "excluded" and "summarised" with the reason (secret, gitignored, binary, too
large...). Right-click pins or unpins a file.

Built for 100,000 files: a model/view table (`FileTableModel`) fed the rows that changed
(`FileChanges`), never the whole list. Rows stay sorted by path, so a badge that changes touches one
row and moves none; a fresh chain's 100,000 badges (its snapshot acknowledged) arrive as a new base
badge plus the few rows that differ (`BadgeTable`), and are one `dataChanged` for the visible range.
Row heights are uniform and no column sizes itself to its contents, so the view never measures rows
it does not show. A text filter and a state filter
narrow the rows; the summary line counts every state from the totals the services send.
"""

from __future__ import annotations

import bisect
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    QPoint,
    QRect,
    QSize,
    Qt,
    Signal,
)
from PySide6.QtGui import QColor, QFontDatabase, QPainter
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QSizePolicy,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.services.api import BadgeTable, FileBadge, FileChanges, SnapshotSummary

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
STATE_ROLE = Qt.ItemDataRole.UserRole + 1
PATH_ROLE = Qt.ItemDataRole.UserRole
PIN = "★ "  # DejaVu has it; emoji fonts are often missing on Linux
SMALL_CHANGE = 64  # up to this many added/removed rows: row-by-row inserts; above, one reset
STATE_FILTERS = (
    ("All states", ""),
    ("Pending", "pending"),
    ("In view", "in_view"),
    ("Summarised", "summarised"),
    ("Excluded", "excluded"),
)
_Index = QModelIndex | QPersistentModelIndex


def is_dark(widget: QWidget) -> bool:
    return widget.palette().window().color().lightness() < 128


class BadgeDelegate(QStyledItemDelegate):
    """Paints the state column as a rounded pill."""

    def paint(
        self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> None:
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


class FileTableModel(QAbstractTableModel):
    """Rows sorted by path: File, State, Why. `apply(changes)` costs O(changed rows) plus, for big
    batches, list and dict operations that run in C; the view asks only for the rows it shows."""

    HEADERS = ("File", "State", "Why")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        # The badges: one per row that differs from the base badge, which every other row has (a
        # fresh chain's 100,000 badges arrive as a new base and the few rows that differ)
        self.table = BadgeTable()
        self._all: list[str] = []  # every path, sorted
        self._rows: list[str] = self._all  # the visible paths (the filtered subset), sorted
        self._needle = ""
        self._state = ""
        self.counts: dict[str, int] = {}
        self.pinned: set[str] = set()
        self.first_context: dict[str, int] = {}  # path -> rank in the last first context (sent in full)
        self._font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)

    # ---- Qt's side ---------------------------------------------------------------------------------

    def rowCount(self, parent: _Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else 3

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if (
            orientation == Qt.Orientation.Horizontal
            and role == Qt.ItemDataRole.DisplayRole
            and 0 <= section < 3
        ):
            return self.HEADERS[section]
        return None

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        row = index.row()
        if not index.isValid() or row >= len(self._rows):
            return None
        path = self._rows[row]
        b = self.table.get(path)
        if b is None:
            return None
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if col == 0:
                return PIN + path if path in self.pinned else path
            if col == 1:
                return BADGE_TEXT.get(b.state, b.state)
            return self._why(b)
        if role == Qt.ItemDataRole.ToolTipRole:
            return path if col == 0 else (BADGE_TIP.get(b.state, "") if col == 1 else self._why(b))
        if role == STATE_ROLE:
            return b.state
        if role == PATH_ROLE:
            return path
        if role == Qt.ItemDataRole.FontRole and col == 0:
            return self._font
        return None

    def _why(self, b: FileBadge) -> str:
        """The reason column; a file the first context sent in full says its place in the ranking."""
        rank = self.first_context.get(b.path)
        if b.state == "in_view" and rank is not None and not b.reason:
            return f"first context #{rank}"
        return _reason(b)

    # ---- the panel's side --------------------------------------------------------------------------

    def path_at(self, row: int) -> str:
        return self._rows[row]

    def row_of(self, path: str) -> int | None:
        """The visible row showing `path`, if any (a binary search: rows are sorted)."""
        i = bisect.bisect_left(self._rows, path)
        return i if i < len(self._rows) and self._rows[i] == path else None

    def _visible(self, path: str) -> bool:
        if self._needle and self._needle not in path.lower():
            return False
        return not self._state or self.table.state(path) == self._state

    def set_filter(self, text: str, state: str) -> None:
        """Show the rows whose path contains `text` (any case) and whose state is `state` ("" = all)."""
        needle = text.strip().lower()
        if (needle, state) == (self._needle, self._state):
            return
        self.beginResetModel()
        self._needle, self._state = needle, state
        self._refilter()
        self.endResetModel()

    def _refilter(self) -> None:
        if not self._needle and not self._state:
            self._rows = self._all
            return
        odd, base, needle, state = self.table.odd, self.table.base[0], self._needle, self._state
        self._rows = [
            p
            for p in self._all
            if (not needle or needle in p.lower())
            and (not state or (odd[p].state if p in odd else base) == state)
        ]

    def apply(self, changes: FileChanges) -> bool:
        """Take the rows that changed; True when the rows were reset (the view loses its place)."""
        if changes.reset:
            self.beginResetModel()
            self.table.clear()
            self._all.clear()
            self._rows = self._all
            self._take(changes)
            self._refilter()
            self.endResetModel()
            return True
        had = self.table.paths  # a set: no Python-level __contains__ per row
        removed = [p for p in changes.removed if p in had]
        added = [p for p in changes.added if p not in had]
        # a new base badge under a state filter: any row may come or go
        if len(removed) + len(added) > SMALL_CHANGE or (changes.rebased and self._state):
            self.beginResetModel()
            if changes.order is None:
                gone = set(removed)
                self._all[:] = [p for p in self._all if p not in gone]
            self._take(changes)
            self._refilter()
            self.endResetModel()
            return True
        for p in removed:
            self._remove(p)
        self._take(changes, insert=False)
        for p in added:
            self._insert(p)
        if self._state or self._needle:
            for p in changes.rows:
                if p not in added:
                    self._follow(p)
        self._changed(changes, set(added), every=changes.rebased)
        return False

    def _take(self, changes: FileChanges, *, insert: bool = True) -> None:
        table, had = self.table, self.table.paths
        fresh = [p for p in changes.added if p not in had] if insert and changes.order is None else []
        table.take(changes)
        self.counts = dict(changes.counts)
        if insert and changes.order is not None:
            self._all[:] = changes.order  # the services sorted every row already: a copy, no merge
        elif fresh:
            # two sorted runs: Timsort merges them in one linear pass, in C
            self._all[:] = sorted(self._all + fresh) if self._all else fresh

    def _remove(self, path: str) -> None:
        i = bisect.bisect_left(self._all, path)
        row = self.row_of(path)
        if self._rows is self._all:
            self.beginRemoveRows(QModelIndex(), i, i)
            del self._all[i]
            self.endRemoveRows()
            return
        del self._all[i]
        if row is not None:
            self.beginRemoveRows(QModelIndex(), row, row)
            del self._rows[row]
            self.endRemoveRows()

    def _insert(self, path: str) -> None:
        i = bisect.bisect_left(self._all, path)
        if self._rows is self._all:
            self.beginInsertRows(QModelIndex(), i, i)
            self._all.insert(i, path)
            self.endInsertRows()
            return
        self._all.insert(i, path)
        if self._visible(path):
            row = bisect.bisect_left(self._rows, path)
            self.beginInsertRows(QModelIndex(), row, row)
            self._rows.insert(row, path)
            self.endInsertRows()

    def _follow(self, path: str) -> None:
        """A filtered view: a changed badge may bring the row in or take it out."""
        row = self.row_of(path)
        if self._visible(path):
            if row is None:
                row = bisect.bisect_left(self._rows, path)
                self.beginInsertRows(QModelIndex(), row, row)
                self._rows.insert(row, path)
                self.endInsertRows()
        elif row is not None:
            self.beginRemoveRows(QModelIndex(), row, row)
            del self._rows[row]
            self.endRemoveRows()

    def _changed(self, changes: FileChanges, added: set[str], *, every: bool = False) -> None:
        n = len(self._rows)
        if not n or not (changes.rows or every):
            return
        if every or len(changes.rows) > SMALL_CHANGE:  # one signal; the view repaints what it shows
            self.dataChanged.emit(self.index(0, 0), self.index(n - 1, 2))
            return
        for p in changes.rows:
            row = self.row_of(p) if p not in added else None
            if row is not None:
                self.dataChanged.emit(self.index(row, 0), self.index(row, 2))

    def path_changed(self, path: str) -> None:
        """Repaint `path`'s row (it was pinned or unpinned)."""
        row = self.row_of(path)
        if row is not None:
            self.dataChanged.emit(self.index(row, 0), self.index(row, 0))

    def all_changed(self) -> None:
        if self._rows:
            self.dataChanged.emit(self.index(0, 0), self.index(len(self._rows) - 1, 0))


def budget_text(snap: SnapshotSummary, names: int = 4) -> str:
    """E.g. "32k budget, 30k used: 14 files in full, 120 listed; README.md, app/main.py, …"."""

    def k(n: int) -> str:
        return f"{n / 1000:.0f}k" if n >= 1000 else str(n)

    n = len(snap.full)
    head = (
        f"{k(snap.budget_tokens)} budget, {k(snap.tokens)} used: {n} file{'s' * (n != 1)} in full, "
        f"{snap.listed:,} listed"
    )
    if not n:
        return head
    # A word joiner after each "/": a wrapped header breaks between names, never inside a path.
    shown = ", ".join(posixpath_short(p).replace("/", "/\u2060") for p in snap.full[:names])
    return f"{head}; {shown}{', …' if n > names else ''}"


def posixpath_short(path: str, limit: int = 40) -> str:
    """A long path keeps its end: "…/handlers/upload.py"."""
    return path if len(path) <= limit else "…" + path[-(limit - 1) :]


def _reason(b: FileBadge) -> str:
    return b.reason or ("changed on disk" if b.state == "pending" else "")


class ContextPanel(QWidget):
    """`update_files(changes)` with the rows that changed; emits `pin_requested(path, pinned)`."""

    pin_requested = Signal(str, bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.summary = QLabel("No files yet", self)
        self.summary.setObjectName("panelSummary")
        # The budget and its choices ("32k budget: 14 files in full, 120 listed; README.md, app/main.py…"):
        # wraps within the panel, never widens it (Ignored width).
        self.budget_line = QLabel(self)
        self.budget_line.setObjectName("contextBudget")
        self.budget_line.setWordWrap(True)
        self.budget_line.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.budget_line.hide()
        self.filter = QLineEdit(self)
        self.filter.setPlaceholderText("Filter files…")
        self.filter.setClearButtonEnabled(True)
        self.state_filter = QComboBox(self)
        for label, state in STATE_FILTERS:
            self.state_filter.addItem(label, state)
        self.model = FileTableModel(self)
        # A table view, not a tree: a tree lays out every row after a reset (two calls into Python per
        # row: 150 ms for 100,000 files); a table's rows are uniform header sections, laid out in C++.
        self.tree = QTableView(self)
        self.tree.setModel(self.model)
        self.tree.setShowGrid(False)
        self.tree.setWordWrap(False)
        self.tree.setAlternatingRowColors(False)
        self.tree.setSortingEnabled(False)
        self.tree.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.tree.setHorizontalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        rows = self.tree.verticalHeader()
        rows.setVisible(False)
        rows.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)  # uniform rows: never measured
        rows.setDefaultSectionSize(self.fontMetrics().height() + 10)
        self.tree.setItemDelegateForColumn(1, BadgeDelegate(self.tree))
        self.tree.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        header = self.tree.horizontalHeader()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Fixed)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Interactive)  # never ResizeToContents
        header.resizeSection(1, 100)
        header.resizeSection(2, 130)
        filters = QHBoxLayout()
        filters.setContentsMargins(0, 0, 0, 0)
        filters.addWidget(self.filter, 1)
        filters.addWidget(self.state_filter)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.setSpacing(6)
        layout.addWidget(self.summary)
        layout.addWidget(self.budget_line)
        layout.addLayout(filters)
        layout.addWidget(self.tree, 1)
        self._indexing = False
        self.filter.textChanged.connect(self._apply_filter)
        self.state_filter.currentIndexChanged.connect(self._apply_filter)
        self.tree.customContextMenuRequested.connect(self._on_context_menu)

    @property
    def pinned(self) -> set[str]:
        return self.model.pinned

    def badge(self, path: str) -> FileBadge | None:
        return self.model.table.get(path)

    def update_files(self, changes: FileChanges) -> None:
        """Take the rows that changed (the services never send the whole list)."""
        top = self._top_path() if not changes.reset else None
        current = self._current_path() if not changes.reset else None
        if self.model.apply(changes):
            self._restore(top, current)
        self._indexing = changes.indexing
        if changes.snapshot is not None:
            self.set_first_context(changes.snapshot)
        self._update_summary()

    def set_first_context(self, snap: SnapshotSummary) -> None:
        """Show what a fresh chain's first context chose (the header line and the rows' ranks)."""
        self.budget_line.setText(budget_text(snap))
        self.budget_line.setToolTip(
            "Sent in full, best first:\n"
            + "\n".join(snap.full[:40])
            + (f"\n… {len(snap.full) - 40} more" if len(snap.full) > 40 else "")
        )
        self.budget_line.show()
        self.model.first_context = {p: i for i, p in enumerate(snap.full, 1)}
        self.model.all_changed()

    def set_pinned(self, paths: list[str] | tuple[str, ...] | set[str]) -> None:
        self.model.pinned = set(paths)
        self.model.all_changed()

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(BADGE_TEXT, 0)
        out.update(self.model.counts)
        return out

    def visible_paths(self) -> list[str]:
        """The paths of the rows shown now, in order (after the filters)."""
        return [self.model.path_at(i) for i in range(self.model.rowCount())]

    def _top_path(self) -> str | None:
        idx = self.tree.indexAt(QPoint(1, 1))
        return self.model.path_at(idx.row()) if idx.isValid() else None

    def _current_path(self) -> str | None:
        idx = self.tree.currentIndex()
        return self.model.path_at(idx.row()) if idx.isValid() and idx.row() < self.model.rowCount() else None

    def _restore(self, top: str | None, current: str | None) -> None:
        """After a reset: the same file stays at the top, the same row stays current."""
        self.tree.updateGeometries()  # the scroll range after the reset, before scrolling in it
        if current is not None and (row := self.model.row_of(current)) is not None:
            self.tree.setCurrentIndex(self.model.index(row, 0))
        if top is not None and (row := self.model.row_of(top)) is not None:
            self.tree.scrollTo(self.model.index(row, 0), QAbstractItemView.ScrollHint.PositionAtTop)

    def _update_summary(self) -> None:
        c = self.counts()
        total = sum(c.values())
        if not total:
            self.summary.setText("Indexing…" if self._indexing else "No files yet")
            return
        parts = [
            f"Indexing… {total:,} files so far" if self._indexing else f"{total:,} files",
            f"{c['in_view']:,} in view",
        ]
        if c["pending"]:
            parts.append(f"{c['pending']:,} pending")
        if c["summarised"]:
            parts.append(f"{c['summarised']:,} summarised")
        if c["excluded"]:
            parts.append(f"{c['excluded']:,} excluded")
        self.summary.setText("  ·  ".join(parts))

    def _apply_filter(self, *_: object) -> None:
        self.model.set_filter(self.filter.text(), str(self.state_filter.currentData() or ""))

    def _on_context_menu(self, pos: QPoint) -> None:
        idx = self.tree.indexAt(pos)
        if not idx.isValid():
            return
        path = self.model.path_at(idx.row())
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
        self.model.path_changed(path)
        self.pin_requested.emit(path, pinned)
