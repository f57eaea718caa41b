"""The Tests panel: a live tree of the project's tests fed by the services' `test_event` stream.

Rows are grouped by file (the part of the node id before "::"); each test row shows its outcome and
duration, each file row its counts. Selecting a failed test shows its traceback below, highlighted
(file:line locations, `E` lines, the exception line). Output lines of the run go to the same pane
when nothing is selected. Events are applied one by one and touch one or two rows each.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from PySide6.QtCore import Qt, Signal
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

from app.services.api import TestEvent

OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed")
SYMBOL = {"passed": "✓", "failed": "✗", "error": "!", "skipped": "↷", "xfailed": "✗", "running": "…", "pending": "·"}
COLOUR = {"passed": "#16a34a", "failed": "#dc2626", "error": "#dc2626", "skipped": "#ca8a04", "xfailed": "#7c3aed",
          "running": "#2563eb", "pending": "#6b7280"}
MAX_OUTPUT_LINES = 5000


@dataclass(slots=True)
class TestCase:
    __test__ = False
    nodeid: str
    outcome: str = "pending"  # pending | running | passed | failed | error | skipped | xfailed
    duration: float = 0.0
    text: str = ""


@dataclass(slots=True)
class TestRun:
    """Qt-free state of one run, built from TestEvents; the widget renders it."""

    __test__ = False
    cases: dict[str, TestCase] = field(default_factory=dict)
    collected: int = 0
    running: bool = False
    summary: str = ""
    output: list[str] = field(default_factory=list)

    def apply(self, ev: TestEvent) -> TestCase | None:
        """Apply one event; return the case it touched, if any."""
        if ev.kind == "run_started":
            self.cases.clear()
            self.output.clear()
            self.collected, self.running, self.summary = 0, True, ""
            return None
        if ev.kind == "collected":
            if ev.nodeid:
                self.collected += 1
                return self.cases.setdefault(ev.nodeid, TestCase(ev.nodeid))
            self.collected = int(ev.data.get("count", self.collected))
            return None
        if ev.kind == "started" and ev.nodeid:
            case = self.cases.setdefault(ev.nodeid, TestCase(ev.nodeid))
            case.outcome = "running"
            return case
        if ev.kind in OUTCOMES and ev.nodeid:
            case = self.cases.setdefault(ev.nodeid, TestCase(ev.nodeid))
            # A teardown error after a pass still counts as an error; a pass never hides a failure.
            if not (case.outcome in ("failed", "error") and ev.kind == "passed"):
                case.outcome = ev.kind
            case.duration += ev.duration
            if ev.text:
                case.text = (case.text + "\n" + ev.text).strip("\n")
            return case
        if ev.kind == "output":
            self.output.append(ev.text)
            del self.output[:-MAX_OUTPUT_LINES]
            return None
        if ev.kind == "run_finished":
            self.running = False
            self.summary = ev.text
            for case in self.cases.values():
                if case.outcome == "running":
                    case.outcome = "error"
                    case.text = case.text or "the run ended before this test finished"
        return None

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys((*OUTCOMES, "running", "pending"), 0)
        for case in self.cases.values():
            out[case.outcome] += 1
        return out

    def duration(self) -> float:
        return sum(c.duration for c in self.cases.values())


def counts_text(run: TestRun) -> str:
    """E.g. "12 passed · 1 failed · 2 skipped · 0.84 s"; words for the header."""
    c = run.counts()
    if not run.cases and not run.running:
        return "No test run yet"
    parts = [f"{c[k]} {k}" for k in ("passed", "failed", "error", "skipped", "xfailed") if c[k]]
    left = c["running"] + c["pending"]
    if run.running:
        total = max(run.collected, len(run.cases))
        done = total - left if total >= left else 0
        parts.insert(0, f"running {done}/{total}")
    elif left:
        parts.append(f"{left} not run")
    parts.append(f"{run.duration():.2f} s")
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
    """`apply(event)` per TestEvent; emits `run_requested` when the user presses Run tests."""

    __test__ = False
    run_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.run = TestRun()
        self.header = QLabel("No test run yet", self)
        self.header.setObjectName("panelSummary")
        self.run_button = QPushButton("Run tests", self)
        self.run_button.clicked.connect(self.run_requested)
        top = QHBoxLayout()
        top.addWidget(self.header, 1)
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
        self.tree.currentItemChanged.connect(self._show_detail)

    def apply(self, ev: TestEvent) -> None:
        if ev.kind == "run_started":
            self.tree.clear()
            self._files.clear()
            self._rows.clear()
            self.detail.clear()
        case = self.run.apply(ev)
        if case is not None:
            self._update_row(case)
        if ev.kind == "output" and self.tree.currentItem() is None:
            self.detail.appendPlainText(ev.text)
        if ev.kind == "run_finished" and self.run.summary and self.tree.currentItem() is None:
            first_failure = next((c for c in self.run.cases.values() if c.outcome in ("failed", "error")), None)
            if first_failure is not None:
                self.tree.setCurrentItem(self._rows[first_failure.nodeid])
        if ev.kind == "run_finished":
            for c in self.run.cases.values():
                self._update_row(c)
        self.header.setText(counts_text(self.run))
        self.run_button.setEnabled(not self.run.running)

    def row(self, nodeid: str) -> QTreeWidgetItem | None:
        return self._rows.get(nodeid)

    def file_row(self, file: str) -> QTreeWidgetItem | None:
        return self._files.get(file)

    def _update_row(self, case: TestCase) -> None:
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
        item.setText(1, f"{SYMBOL[case.outcome]} {case.outcome}")
        item.setForeground(1, QColor(COLOUR[case.outcome]))
        item.setText(2, f"{case.duration * 1000:.0f} ms" if case.duration < 1 else f"{case.duration:.2f} s")
        if case.outcome in ("pending", "running"):
            item.setText(2, "")
        self._update_file_row(file, parent)
        if self.tree.currentItem() is item:
            self._show_detail(item)

    def _update_file_row(self, file: str, parent: QTreeWidgetItem) -> None:
        children = (parent.child(i) for i in range(parent.childCount()))
        cases = [self.run.cases[c.data(0, Qt.ItemDataRole.UserRole)] for c in children if c is not None]
        failed = sum(c.outcome in ("failed", "error") for c in cases)
        passed = sum(c.outcome == "passed" for c in cases)
        running = any(c.outcome in ("running", "pending") for c in cases)
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
        text = case.text or f"{case.nodeid}: {case.outcome}"
        if self.detail.toPlainText() != text:
            self.detail.setPlainText(text)
