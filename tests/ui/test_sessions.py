"""Session list: shows sessions newest first, opens another one, starts a new one."""

from __future__ import annotations

from PySide6.QtCore import Qt

from app.services.api import SessionInfo
from app.ui.sessions import SessionsPanel, ago


def test_list_and_open(qtbot) -> None:  # type: ignore[no-untyped-def]
    """Newest first; the current session is marked and cannot be reopened; another one can."""
    panel = SessionsPanel()
    qtbot.addWidget(panel)
    panel.set_sessions(
        [SessionInfo("s1", "Fix the parser", "/p", 100.0, 3), SessionInfo("s2", "", "/p", 4000.0, 1)],
        current_id="s2",
        now=4000.0 + 30,
    )
    assert panel.list.count() == 2
    assert panel.list.item(0).text() == "● Untitled session\n1 turn · just now"
    assert panel.list.item(1).text() == "Fix the parser\n3 turns · 1 h ago"
    panel.list.setCurrentRow(0)
    assert not panel.open_button.isEnabled()
    panel.list.setCurrentRow(1)
    with qtbot.waitSignal(panel.open_requested, timeout=1000) as sig:
        qtbot.mouseClick(panel.open_button, Qt.MouseButton.LeftButton)
    assert sig.args == ["s1"]
    with qtbot.waitSignal(panel.new_requested, timeout=1000):
        qtbot.mouseClick(panel.new_button, Qt.MouseButton.LeftButton)


def test_ago() -> None:
    """Relative times."""
    assert [ago(0, t) for t in (5, 300, 7200, 3 * 86400)] == ["just now", "5 min ago", "2 h ago", "3 d ago"]
