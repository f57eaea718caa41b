"""The Tests panel: a live tree of the project's tests, painting the services' `TestRun` model.

The services own the test-run model (`app.tools.testrun.TestRun`, the same one whose summary goes to
the model) and feed it the pytest plugin's events; the panel is handed it (`set_model` when another
project's services are bound) and wakes on one queued `dirty` signal, then updates just the rows of
the tests that changed once per frame. Rows are grouped by file (the part of the node id before
"::"); each test row shows its outcome and duration, each file row its counts. Selecting a failed
test shows its traceback below, highlighted (file:line locations, `E` lines, the exception line).
"""

from __future__ import annotations

import re
from collections import Counter

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont, QFontDatabase, QSyntaxHighlighter, QTextCharFormat, QTextDocument
from PySide6.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.tools.testrun import CaseResult, TestRun

OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")
SYMBOL = {
    "passed": "✓",
    "failed": "✗",
    "error": "!",
    "skipped": "↷",
    "xfailed": "✗",
    "xpassed": "✓",
    "running": "…",
    "pending": "·",
}
COLOUR = {
    "passed": "#16a34a",
    "failed": "#dc2626",
    "error": "#dc2626",
    "skipped": "#ca8a04",
    "xfailed": "#7c3aed",
    "xpassed": "#ca8a04",
    "running": "#2563eb",
    "pending": "#6b7280",
}
FRAME_MS = 16
UNFINISHED = "the run ended before this test finished"


def shown_outcome(run: TestRun, case: CaseResult) -> str:
    """What a row says: a test still "running" when the run ended did not finish, an error."""
    if case.outcome == "running" and run.finished:
        return "error"
    return case.outcome


def outcome_counts(run: TestRun) -> Counter[str]:
    return Counter(shown_outcome(run, c) for c in run.cases.values())


def counts_text(run: TestRun) -> str:
    """E.g. "12 passed · 1 failed · 2 skipped · 0.84 s"; words for the header."""
    c = outcome_counts(run)
    if not run.cases and not run.running:
        return "No test run yet"
    parts = [f"{c[k]} {k}" for k in OUTCOMES if c[k]]
    left = c["running"] + c["pending"]
    if run.running:
        # Honest progress: "done" counts tests with an outcome (not the collected total minus the ones
        # seen running, which read "638/639" from the first test on), and before collection ends there
        # is no total yet.
        total = max(run.collected, len(run.cases))
        if not total:
            return "collecting…"
        bad = c["failed"] + c["error"]
        parts = [f"{sum(c[k] for k in OUTCOMES)}/{total} done" + (f", {bad} failed" if bad else "")]
        parts += [f"{c[k]} {k}" for k in OUTCOMES if c[k] and k not in ("failed", "error")]
    elif left:
        parts.append(f"{left} not run")
    parts.append(f"{sum(x.duration for x in run.cases.values()):.2f} s")
    return "  ·  ".join(parts)


class TracebackHighlighter(QSyntaxHighlighter):
    """Cheap per-line rules: locations, `E` lines, the final exception, `>` source lines."""

    _RULES = (
        (re.compile(r"^E\s.*$"), "#dc2626", True),
        (re.compile(r"^\w*(Error|Exception|Failed)\b.*$"), "#dc2626", True),
        (re.compile(r"[\w./\\-]+\.py:\d+"), "#2563eb", False),
        (re.compile(r'File "[^"]+", line \d+'), "#2563eb", False),
        (re.compile(r"^>.*$"), "#7c3aed", True),
    )

    def __init__(self, doc: QTextDocument) -> None:
        super().__init__(doc)
        self._formats = []
        for rx, colour, bold in self._RULES:
            fmt = QTextCharFormat()
            fmt.setForeground(QColor(colour))
            if bold:
                fmt.setFontWeight(QFont.Weight.DemiBold)
            self._formats.append((rx, fmt))

    def highlightBlock(self, text: str) -> None:
        for rx, fmt in self._formats:
            for m in rx.finditer(text):
                self.setFormat(m.start(), m.end() - m.start(), fmt)


class TestsPanel(QWidget):
    """Paints a `TestRun`; emits `run_requested` (Run tests) and `rerun_failed_requested` (Rerun
    failed: enabled when the finished run has failures)."""

    __test__ = False
    run_requested = Signal()
    rerun_failed_requested = Signal()
    dirty = Signal()  # the model changed: once per frame, not per event
    updated = Signal()  # a frame's changes are on screen (the tab label follows it)

    def __init__(self, model: TestRun | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.run = model if model is not None else TestRun()
        self._generation = self.run.generation
        self.header = QLabel("No test run yet", self)
        self.header.setObjectName("panelSummary")
        self.run_button = QPushButton("Run tests", self)
        self.run_button.clicked.connect(self.run_requested)
        self.rerun_button = QPushButton("Rerun failed", self)
        self.rerun_button.setEnabled(False)
        self.rerun_button.clicked.connect(self.rerun_failed_requested)
        top = QHBoxLayout()
        top.addWidget(self.header, 1)
        top.addWidget(self.rerun_button)
        top.addWidget(self.run_button)
        self.tree = QTreeWidget(self)
        self.tree.setHeaderLabels(["Test", "Result", "Time"])
        self.tree.setUniformRowHeights(True)
        header = self.tree.header()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(False)
        mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        self.detail = QPlainTextEdit(self)
        self.detail.setObjectName("traceback")
        self.detail.setReadOnly(True)
        self.detail.setFont(mono)
        self.detail.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.detail.setPlaceholderText("Select a failed test to see its traceback.")
        self.detail.document().setUndoRedoEnabled(False)
        self._highlighter = TracebackHighlighter(self.detail.document())
        split = QSplitter(Qt.Orientation.Vertical, self)
        split.addWidget(self.tree)
        split.addWidget(self.detail)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.setSpacing(6)
        layout.addLayout(top)
        layout.addWidget(split, 1)
        self._files: dict[str, QTreeWidgetItem] = {}
        self._rows: dict[str, QTreeWidgetItem] = {}
        self._mono = mono
        self._was_running = False
        self.tree.currentItemChanged.connect(self._show_detail)
        self._frame = QTimer(self)
        self._frame.setSingleShot(True)
        self._frame.setInterval(FRAME_MS)
        self._frame.timeout.connect(self.refresh)
        self.dirty.connect(self._on_model_dirty, Qt.ConnectionType.QueuedConnection)
        self.run.set_waker(self.dirty.emit)
        self._clear_rows()
        self.refresh()

    def set_model(self, model: TestRun) -> None:
        """Paint another project's test run."""
        if model is self.run:
            return
        self.run.set_waker(None)
        self.run = model
        self._generation = model.generation
        model.set_waker(self.dirty.emit)
        self._clear_rows()
        self.refresh()

    @property
    def pending(self) -> bool:
        return self._frame.isActive()

    def _on_model_dirty(self) -> None:
        if not self._frame.isActive():
            self._frame.start()

    def refresh(self) -> None:
        """Show what changed in the model since the last frame (tests call it to skip the timer)."""
        self._frame.stop()
        run = self.run
        changed = run.take_changed()
        if run.generation != self._generation:  # a new run: start the tree over
            self._generation = run.generation
            self._clear_rows()
            changed = list(run.cases)
        files: dict[str, QTreeWidgetItem] = {}
        for nodeid in changed:
            case = run.cases.get(nodeid)
            if case is not None:
                self._update_row(case, files)
        if self._was_running and run.finished:
            for case in run.cases.values():  # unfinished tests turn into errors
                if case.outcome == "running":
                    self._update_row(case, files)
        for parent in files.values():  # each file row once a frame, however many of its tests changed
            self._update_file_row(parent)
            if self.tree.currentItem() is None:
                first_failure = next(
                    (c for c in run.cases.values() if shown_outcome(run, c) in ("failed", "error")), None
                )
                if first_failure is not None:
                    self.tree.setCurrentItem(self._rows[first_failure.nodeid])
        self._was_running = run.running
        self.header.setText(counts_text(run))
        self.run_button.setEnabled(not run.running)
        self.rerun_button.setEnabled(run.finished and bool(run.collect_errors or run.failures()))
        self.updated.emit()

    def row(self, nodeid: str) -> QTreeWidgetItem | None:
        return self._rows.get(nodeid)

    def file_row(self, file: str) -> QTreeWidgetItem | None:
        return self._files.get(file)

    def _clear_rows(self) -> None:
        self.tree.clear()
        self._files.clear()
        self._rows.clear()
        self.detail.clear()
        files: dict[str, QTreeWidgetItem] = {}
        for case in self.run.cases.values():
            self._update_row(case, files)
        for parent in files.values():
            self._update_file_row(parent)

    def _update_row(self, case: CaseResult, files: dict[str, QTreeWidgetItem]) -> None:
        file, _, name = case.nodeid.partition("::")
        parent = self._files.get(file)
        if parent is None:
            parent = QTreeWidgetItem(self.tree, [file])
            parent.setFont(0, self._mono)
            parent.setExpanded(True)
            self._files[file] = parent
        item = self._rows.get(case.nodeid)
        if item is None:
            item = QTreeWidgetItem(parent, [name or file])
            item.setData(0, Qt.ItemDataRole.UserRole, case.nodeid)
            item.setFont(0, self._mono)
            self._rows[case.nodeid] = item
        outcome = shown_outcome(self.run, case)
        item.setText(1, f"{SYMBOL.get(outcome, '?')} {outcome}")
        item.setForeground(1, QColor(COLOUR.get(outcome, COLOUR["pending"])))
        item.setText(2, f"{case.duration * 1000:.0f} ms" if case.duration < 1 else f"{case.duration:.2f} s")
        if outcome in ("pending", "running"):
            item.setText(2, "")
        files[file] = parent
        if self.tree.currentItem() is item:
            self._show_detail(item)

    def _update_file_row(self, parent: QTreeWidgetItem) -> None:
        children = (parent.child(i) for i in range(parent.childCount()))
        cases = [self.run.cases[c.data(0, Qt.ItemDataRole.UserRole)] for c in children if c is not None]
        outcomes = [shown_outcome(self.run, c) for c in cases]
        failed = sum(o in ("failed", "error") for o in outcomes)
        passed = sum(o == "passed" for o in outcomes)
        running = any(o in ("running", "pending") for o in outcomes)
        state = "failed" if failed else ("running" if running else "passed")
        text = f"{passed}/{len(cases)} passed" + (f", {failed} failed" if failed else "")
        parent.setText(1, text)
        parent.setForeground(1, QColor(COLOUR[state]))
        total = sum(c.duration for c in cases)
        parent.setText(2, f"{total:.2f} s")

    def _show_detail(self, item: QTreeWidgetItem | None, *_: object) -> None:
        if item is None:
            return
        nodeid = item.data(0, Qt.ItemDataRole.UserRole)
        case = self.run.cases.get(nodeid) if nodeid else None
        if case is None:
            return
        outcome = shown_outcome(self.run, case)
        text = case.text or (UNFINISHED if outcome != case.outcome else f"{case.nodeid}: {outcome}")
        if self.detail.toPlainText() != text:
            self.detail.setPlainText(text)
