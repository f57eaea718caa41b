"""Approval dialogs: the diff review for patches and the prompt for commands.

Each dialog resolves its `ApprovalRequest` exactly once, whatever way it closes (a button, Esc, the
window's close box, or the main window going away), so the agent loop never waits forever.
Dialogs are opened non-modally (`open()`), which keeps the event loop and the stream running.

Patch decision: `ApprovalDecision(accept, hunks={path: [bool per hunk]})`.
Command decision: `ApprovalDecision(accept, always=...)`.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import (
    QCloseEvent,
    QColor,
    QFontDatabase,
    QSyntaxHighlighter,
    QTextCharFormat,
    QTextCursor,
    QTextDocument,
    QTextFormat,
)
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QTextEdit,
    QVBoxLayout,
    QWidget,
)

from app.services.api import ApprovalDecision, ApprovalRequest


class DiffHighlighter(QSyntaxHighlighter):
    """Colours the text of +/- lines and hunk headers (the tints come from _line_backgrounds)."""

    def __init__(self, doc: QTextDocument) -> None:
        super().__init__(doc)
        self._add, self._del, self._meta = QTextCharFormat(), QTextCharFormat(), QTextCharFormat()
        self._add.setForeground(QColor("#16a34a"))
        self._del.setForeground(QColor("#dc2626"))
        self._meta.setForeground(QColor("#6b7280"))

    def highlightBlock(self, text: str) -> None:
        fmt = {"+": self._add, "-": self._del, "@": self._meta, "\\": self._meta}.get(text[:1])
        if fmt is not None:
            self.setFormat(0, len(text), fmt)


def _line_backgrounds(view: QPlainTextEdit) -> list[QTextEdit.ExtraSelection]:
    """Full-width tints for added/removed lines (a highlighter only paints behind the text)."""
    tints = {"+": QColor(34, 197, 94, 40), "-": QColor(239, 68, 68, 40)}
    out = []
    block = view.document().firstBlock()
    while block.isValid():
        tint = tints.get(block.text()[:1])
        if tint is not None:
            sel = QTextEdit.ExtraSelection()
            sel.format.setBackground(tint)
            sel.format.setProperty(QTextFormat.Property.FullWidthSelection, True)
            sel.cursor = QTextCursor(block)
            out.append(sel)
        block = block.next()
    return out


class _Resolving(QDialog):
    """Resolves once: the first decision wins; closing without one counts as a refusal."""

    def __init__(self, request: ApprovalRequest, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.request = request
        self.decision: ApprovalDecision | None = None
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

    def _resolve(self, decision: ApprovalDecision) -> None:
        if self.decision is not None:
            return
        self.decision = decision
        self.request.resolve(decision)

    def _refusal(self) -> ApprovalDecision:
        return ApprovalDecision(False)

    def reject(self) -> None:
        self._resolve(self._refusal())
        super().reject()

    def closeEvent(self, event: QCloseEvent) -> None:
        self._resolve(self._refusal())
        super().closeEvent(event)


class DiffReviewDialog(_Resolving):
    """Each file's hunks with a checkbox each; Accept selected / Reject all."""

    def __init__(self, request: ApprovalRequest, parent: QWidget | None = None) -> None:
        super().__init__(request, parent)
        self.setWindowTitle(request.title or "Review patch")
        self.setObjectName("diffReview")
        self.resize(900, 640)
        files: list[dict[str, Any]] = list(request.payload.get("files", []))
        self.checks: dict[str, list[QCheckBox]] = {}
        self._highlighters: list[DiffHighlighter] = []  # kept alive with the dialog
        mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)

        body = QWidget()
        col = QVBoxLayout(body)
        col.setContentsMargins(12, 12, 12, 12)
        col.setSpacing(10)
        n_hunks = sum(len(f.get("hunks", [])) for f in files)
        intro = QLabel(
            f"{len(files)} file{'s' * (len(files) != 1)}, {n_hunks} hunk{'s' * (n_hunks != 1)}. "
            "Untick the hunks you do not want applied."
        )
        intro.setObjectName("panelSummary")
        col.addWidget(intro)
        for f in files:
            path = str(f.get("path", "?"))
            op = str(f.get("op", "update"))
            card = QFrame()
            card.setObjectName("diffCard")
            card.setFrameShape(QFrame.Shape.StyledPanel)
            lay = QVBoxLayout(card)
            lay.setContentsMargins(10, 8, 10, 10)
            lay.setSpacing(6)
            resolved = f.get("resolved")  # a link: the file that is really written
            via = (
                f" &nbsp;<span style='color:#b45309'>→ writes {_esc(str(resolved))} (the link's target)</span>"
                if resolved
                else ""
            )
            title = QLabel(f"<b>{_esc(path)}</b> &nbsp;<span style='color:#6b7280'>{_esc(op)}</span>{via}")
            title.setFont(mono)
            lay.addWidget(title)
            boxes: list[QCheckBox] = []
            for i, hunk in enumerate(f.get("hunks", [])):
                lines = hunk.get("lines", [])
                text = "\n".join(lines) if isinstance(lines, list) else str(lines)
                box = QCheckBox(str(hunk.get("header") or f"hunk {i + 1}"))
                box.setChecked(True)
                box.setFont(mono)
                view = QPlainTextEdit(text)
                view.setReadOnly(True)
                view.setFont(mono)
                view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
                view.setObjectName("diffView")
                self._highlighters.append(DiffHighlighter(view.document()))
                view.setExtraSelections(_line_backgrounds(view))
                n = max(1, min(text.count("\n") + 1, 18))
                view.setFixedHeight(n * view.fontMetrics().lineSpacing() + 16)
                box.toggled.connect(view.setEnabled)
                lay.addWidget(box)
                lay.addWidget(view)
                boxes.append(box)
            if not boxes:
                lay.addWidget(QLabel("(no content changes — e.g. a delete or a rename)"))
            self.checks[path] = boxes
            col.addWidget(card)
        col.addStretch(1)
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setWidget(body)

        self.accept_button = QPushButton("Accept selected")
        self.accept_button.setObjectName("primaryButton")
        self.accept_button.setDefault(True)
        self.reject_button = QPushButton("Reject all")
        self.accept_button.clicked.connect(self.accept_selected)
        self.reject_button.clicked.connect(self.reject)
        buttons = QHBoxLayout()
        buttons.setContentsMargins(12, 0, 12, 12)
        buttons.addStretch(1)
        buttons.addWidget(self.reject_button)
        buttons.addWidget(self.accept_button)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll, 1)
        outer.addLayout(buttons)

    def selected(self) -> dict[str, list[bool]]:
        return {path: [b.isChecked() for b in boxes] for path, boxes in self.checks.items()}

    def accept_selected(self) -> None:
        hunks = self.selected()
        anything = any(any(v) for v in hunks.values()) or any(not v for v in hunks.values())
        self._resolve(ApprovalDecision(anything, hunks=hunks))
        self.accept()

    def _refusal(self) -> ApprovalDecision:
        return ApprovalDecision(False, hunks={path: [False] * len(b) for path, b in self.checks.items()})


class CommandApprovalDialog(_Resolving):
    """Run once / Always allow / Deny for a command the model wants to run."""

    def __init__(self, request: ApprovalRequest, parent: QWidget | None = None) -> None:
        super().__init__(request, parent)
        self.setWindowTitle(request.title or "Run a command?")
        self.setObjectName("commandApproval")
        mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        command = str(request.payload.get("command", ""))
        cwd = str(request.payload.get("cwd", ""))
        head = QLabel("The model wants to run this command:")
        cmd = QPlainTextEdit(command)
        cmd.setReadOnly(True)
        cmd.setFont(mono)
        cmd.setObjectName("commandView")
        cmd.setFixedHeight(min(max(command.count("\n") + 1, 2), 8) * cmd.fontMetrics().lineSpacing() + 16)
        where = QLabel(f"in <code>{_esc(cwd)}</code>" if cwd else "")
        where.setObjectName("panelSummary")
        self.run_button = QPushButton("Run once")
        self.run_button.setObjectName("primaryButton")
        self.always_button = QPushButton("Always allow")
        self.always_button.setToolTip("Run it, and run this exact command without asking from now on")
        self.deny_button = QPushButton("Deny")
        self.deny_button.setDefault(True)
        self.run_button.clicked.connect(lambda: self._choose(True, False))
        self.always_button.clicked.connect(lambda: self._choose(True, True))
        self.deny_button.clicked.connect(self.reject)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.deny_button)
        buttons.addWidget(self.always_button)
        buttons.addWidget(self.run_button)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(16, 16, 16, 16)
        lay.setSpacing(10)
        lay.addWidget(head)
        lay.addWidget(cmd)
        lay.addWidget(where)
        lay.addLayout(buttons)
        self.resize(560, self.sizeHint().height())

    def _choose(self, accept: bool, always: bool) -> None:
        self._resolve(ApprovalDecision(accept, always=always))
        self.accept()

    def _refusal(self) -> ApprovalDecision:
        return ApprovalDecision(False)


def approval_dialog(request: ApprovalRequest, parent: QWidget | None = None) -> _Resolving:
    """The dialog for a request's kind ("patch" or "command")."""
    if request.kind == "patch":
        return DiffReviewDialog(request, parent)
    return CommandApprovalDialog(request, parent)


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
