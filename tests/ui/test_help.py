"""In-app help and the empty-session view: derived from the engine's commands and the window's actions."""

from __future__ import annotations

import re

import pytest
from PySide6.QtGui import QAction, QTextDocument

import app.ui.help as help_mod
from app.tools.demo import DEMO_COMMANDS, DemoCommand
from app.tools.specs import TOOL_SPECS
from app.ui.help import EmptyView, HelpDialog, action_shortcuts, help_html
from app.ui.transcript_view import TranscriptView


def _plain(html: str) -> str:
    doc = QTextDocument()
    doc.setHtml(html)
    return doc.toPlainText()


def test_help_lists_every_scripted_command_and_tool(qapp) -> None:  # type: ignore[no-untyped-def]
    """Every command in the engine's dispatch table, with its summary and example, and every tool."""
    text = _plain(help_html([]))
    assert DEMO_COMMANDS
    for cmd in DEMO_COMMANDS:
        assert cmd.usage in text and cmd.example in text and cmd.summary.split(";")[0] in text
        assert cmd.pattern.match(cmd.example), f"{cmd.example!r} does not run {cmd.usage}"
    for spec in TOOL_SPECS:
        assert spec.name in text


def test_a_new_engine_command_shows_up_in_the_help(qapp, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """The help is derived: a command added to the engine's table appears without touching the help."""
    extra = DemoCommand("/echo TEXT", "Say TEXT back.", "/echo hi", re.compile(r"^/echo\s+(.*)$"))
    commands = (*DEMO_COMMANDS, extra)
    assert "/echo TEXT" in _plain(help_html([], commands))
    monkeypatch.setattr(help_mod, "DEMO_COMMANDS", commands)
    view = EmptyView()
    view.set_engine("scripted — no model")
    assert "/echo hi" in view.text()


def test_action_shortcuts_come_from_the_actions(qapp) -> None:  # type: ignore[no-untyped-def]
    """Actions with shortcuts are listed once each, with their text; actions without are not."""
    a = QAction("Open folder…")
    a.setShortcut("Ctrl+O")
    b = QAction("About")
    assert action_shortcuts([a, b, a]) == [("Ctrl+O", "Open folder")]


def test_f1_opens_help_with_every_shortcut(window) -> None:  # type: ignore[no-untyped-def]
    """The help action (F1, the "?" button) opens one help window listing the window's shortcuts, the
    transcript's keys and the demo commands; the empty view points to it."""
    assert window.help_action.shortcut().toString() == "F1"
    window.help_action.trigger()
    dlg = window.help_dialog
    assert isinstance(dlg, HelpDialog) and dlg.isVisible()
    text = dlg.browser.toPlainText()
    for act in (
        window.new_session_action,
        window.run_tests_action,
        window.open_action,
        window.settings_action,
    ):
        assert act.shortcut().toString() in text
    for keys, what in TranscriptView.KEYS:
        assert keys in text and what in text
    assert all(c.usage in text for c in DEMO_COMMANDS)
    window.help_action.trigger()
    assert window.help_dialog is dlg  # one window, raised again
    dlg.close()
    empty = window.transcript.empty_view
    assert "F1" in empty.text() and "Ctrl+N" in empty.text()


def test_empty_view_follows_the_project_and_the_engine(window, fake) -> None:  # type: ignore[no-untyped-def]
    """The empty view names the watched project and the model in use (from the connection status)."""
    from app.services.api import ConnectionStatus
    from app.ui.controller import Controller

    empty = window.transcript.empty_view
    ctl = window.findChild(Controller)
    assert isinstance(ctl, Controller)
    assert str(fake.project_root) in empty.text()
    ctl.show_connection(ConnectionStatus("warm", "connected", "gpt-5.3-codex via OpenAI"))
    assert "gpt-5.3-codex via OpenAI" in empty.text() and "/long" not in empty.text()
    empty.help_requested.emit()
    assert window.help_dialog is not None and window.help_dialog.isVisible()
    window.help_dialog.close()
