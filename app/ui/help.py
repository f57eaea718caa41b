"""In-app help (F1) and the empty-session view: what to do, the demo commands and the shortcuts.

Everything listed comes from where it is defined, so the help cannot drift from the app:
- the scripted engine's commands from its dispatch table (`DEMO_COMMANDS`),
- the tools from the specs the app offers (`TOOL_SPECS`),
- the window's shortcuts from its actions (`action_shortcuts`), the transcript's keys from
  `TranscriptView.KEYS`; only the composer's keys are restated here (the composer handles them in code).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QTextBrowser, QVBoxLayout, QWidget

from app.tools.demo import DEMO_COMMANDS, DemoCommand
from app.tools.specs import TOOL_SPECS
from app.ui.theme import Theme

__all__ = ["COMPOSER_KEYS", "EmptyView", "HelpDialog", "action_shortcuts", "help_html"]

Shortcut = tuple[str, str]  # keys as the platform shows them, what they do

COMPOSER_KEYS: tuple[Shortcut, ...] = (
    ("Enter", "send the message"),
    ("Shift+Enter", "new line in the message"),
    ("↑ / ↓", "earlier / later messages you sent"),
    ("Esc", "in the message box: stop following the stream"),
)


def action_shortcuts(actions: Iterable[QAction]) -> list[Shortcut]:
    """(keys, what) for every action that has a shortcut, in the order given, each action once."""
    out: list[Shortcut] = []
    seen: set[int] = set()
    for act in actions:
        keys = [k for k in act.shortcuts() if not k.isEmpty()]
        if not keys or id(act) in seen:
            continue
        seen.add(id(act))
        text = act.text().replace("&", "").rstrip("…").strip()
        out.append((" or ".join(k.toString(QKeySequence.SequenceFormat.NativeText) for k in keys), text))
    return out


def _rows(pairs: Iterable[Shortcut]) -> str:
    return "".join(
        f"<tr><td style='padding:2px 14px 2px 0'><b>{html.escape(k)}</b></td>"
        f"<td style='padding:2px 0'>{html.escape(v)}</td></tr>"
        for k, v in pairs
    )


def help_html(shortcuts: Sequence[Shortcut], commands: Sequence[DemoCommand] = DEMO_COMMANDS) -> str:
    """The help page: how to ask, the demo engine's commands, the tools, the shortcuts."""
    cmd_rows = "".join(
        f"<tr><td style='padding:4px 14px 4px 0'><code>{html.escape(c.usage)}</code></td>"
        f"<td style='padding:4px 0'>{html.escape(c.summary)}<br>"
        f"<span style='color:gray'>e.g.</span> <code>{html.escape(c.example)}</code></td></tr>"
        for c in commands
    )
    tools = ", ".join(f"<code>{html.escape(s.name)}</code>" for s in TOOL_SPECS)
    return (
        "<h2>Slipstream</h2>"
        "<p>Slipstream watches a project folder and keeps a model's view of it current: the files it "
        "sent, then only what changed, over one session. Type a question in the box at the bottom and "
        "press Enter; the answer streams into the transcript. The <b>Context</b> tab shows which files "
        "the model sees, <b>Tests</b> runs the project's tests live.</p>"
        "<h3>Demo commands</h3>"
        "<p>With no model configured, the <i>scripted demo engine</i> answers. It restates what it was "
        "sent, and understands these commands (type them as the whole message):</p>"
        f"<table>{cmd_rows}</table>"
        f"<p>Asking in words for a tool works too (“read the README”). Tools the model may call: {tools}. "
        "Patches and commands wait for your approval.</p>"
        "<h3>Keyboard shortcuts</h3>"
        f"<table>{_rows(shortcuts)}</table>"
    )


class HelpDialog(QDialog):
    """The help page in a non-modal window (F1 or the "?" button)."""

    def __init__(self, shortcuts: Sequence[Shortcut], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("helpDialog")
        self.setWindowTitle("Slipstream help")
        self.resize(640, 600)
        self.browser = QTextBrowser(self)
        self.browser.setOpenExternalLinks(True)
        self.browser.setHtml(help_html(shortcuts))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        col = QVBoxLayout(self)
        col.addWidget(self.browser, 1)
        col.addWidget(buttons)


class EmptyView(QWidget):
    """What a new session shows instead of a blank pane: what is watched, how to ask, the model in
    use, a demo command to try and the main shortcuts. The transcript view shows it while its
    conversation has no blocks."""

    help_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("emptyView")
        self.project = ""
        self.engine = ""
        self.shortcuts: list[Shortcut] = []
        self.label = QLabel(self)
        self.label.setObjectName("emptyViewText")
        self.label.setWordWrap(True)
        self.label.setTextFormat(Qt.TextFormat.RichText)
        self.label.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.LinksAccessibleByMouse)
        self.label.linkActivated.connect(lambda href: self.help_requested.emit() if href == "help" else None)
        self.label.setMaximumWidth(620)
        col = QVBoxLayout(self)
        col.setContentsMargins(32, 40, 32, 24)
        col.addWidget(self.label, 0, Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
        col.addStretch(1)
        self._theme: Theme | None = None
        self._update()

    def set_project(self, project: str) -> None:
        self.project = project
        self._update()

    def set_engine(self, engine: str) -> None:
        self.engine = engine
        self._update()

    def set_shortcuts(self, shortcuts: Sequence[Shortcut]) -> None:
        self.shortcuts = list(shortcuts)
        self._update()

    def set_theme(self, theme: Theme) -> None:
        self._theme = theme
        self._update()

    def text(self) -> str:
        """The view's words, without markup (for tests and accessibility)."""
        from PySide6.QtGui import QTextDocument

        doc = QTextDocument()
        doc.setHtml(self.label.text())
        return doc.toPlainText()

    def _update(self) -> None:
        th = self._theme
        muted = th.muted if th else "gray"
        link = th.link if th else "#0969da"
        watching = (
            f"Slipstream is watching <b>{html.escape(self.project)}</b>: the model sees its files, "
            "then only what changed as you edit."
            if self.project
            else "No project is open: open a folder (Ctrl+O) for Slipstream to watch."
        )
        engine = html.escape(self.engine) if self.engine else "not connected yet"
        demo = ""
        if "scripted" in self.engine or not self.engine:
            ex = DEMO_COMMANDS[0].example if DEMO_COMMANDS else ""
            demo = (
                f"<p>No model is configured, so the scripted demo engine answers. Try "
                f"<code>{html.escape(ex)}</code> to watch a fast stream, or "
                f"<code>{html.escape(DEMO_COMMANDS[-1].example)}</code> to see a tool call. "
                "Connect a model in <b>Settings</b>.</p>"
                if ex
                else ""
            )
        keys = "".join(
            f"<tr><td style='padding:1px 12px 1px 0; color:{muted}'>{html.escape(k)}</td>"
            f"<td style='padding:1px 0'>{html.escape(v)}</td></tr>"
            for k, v in self.shortcuts[:6]
        )
        self.label.setText(
            "<h2 style='margin-bottom:4px'>Ask about your project</h2>"
            f"<p>{watching}</p>"
            "<p>Type a question in the box below and press <b>Enter</b>. Ask it to explain code, find a bug, "
            "write a patch (you review it before anything is written) or run the tests.</p>"
            f"<p><span style='color:{muted}'>Model:</span> {engine}</p>"
            f"{demo}"
            f"<table style='margin-top:10px'>{keys}</table>"
            f"<p><a href='help' style='color:{link}'>All commands and shortcuts (F1)</a></p>"
        )
