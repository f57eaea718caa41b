"""Composer keys: Enter sends, Shift+Enter newline, Up/Down history, Esc, Stop."""

from __future__ import annotations

from PySide6.QtCore import Qt

from app.ui.composer import Composer


def _composer(qtbot) -> Composer:  # type: ignore[no-untyped-def]
    c = Composer()
    qtbot.addWidget(c)
    c.show()
    return c


def test_enter_sends_and_clears(qtbot) -> None:  # type: ignore[no-untyped-def]
    """Enter emits the text and empties the field; an empty field sends nothing."""
    c = _composer(qtbot)
    sent: list[str] = []
    c.send_requested.connect(sent.append)
    qtbot.keyClick(c.edit, Qt.Key.Key_Return)
    assert sent == []
    qtbot.keyClicks(c.edit, "hello")
    qtbot.keyClick(c.edit, Qt.Key.Key_Return)
    assert sent == ["hello"]
    assert c.edit.toPlainText() == ""


def test_shift_enter_adds_a_line(qtbot) -> None:  # type: ignore[no-untyped-def]
    """Shift+Enter inserts a newline and does not send."""
    c = _composer(qtbot)
    sent: list[str] = []
    c.send_requested.connect(sent.append)
    qtbot.keyClicks(c.edit, "a")
    qtbot.keyClick(c.edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClicks(c.edit, "b")
    assert sent == []
    assert c.edit.toPlainText() == "a\nb"
    qtbot.keyClick(c.edit, Qt.Key.Key_Enter)
    assert sent == ["a\nb"]


def test_up_recalls_history_and_down_restores_draft(qtbot) -> None:  # type: ignore[no-untyped-def]
    """Up walks back through sent messages; Down returns to the unsent draft."""
    c = _composer(qtbot)
    for text in ("first", "second"):
        qtbot.keyClicks(c.edit, text)
        qtbot.keyClick(c.edit, Qt.Key.Key_Return)
    qtbot.keyClicks(c.edit, "draft")
    qtbot.keyClick(c.edit, Qt.Key.Key_Up)
    assert c.edit.toPlainText() == "second"
    qtbot.keyClick(c.edit, Qt.Key.Key_Up)
    assert c.edit.toPlainText() == "first"
    qtbot.keyClick(c.edit, Qt.Key.Key_Up)  # stays at the oldest
    assert c.edit.toPlainText() == "first"
    qtbot.keyClick(c.edit, Qt.Key.Key_Down)
    assert c.edit.toPlainText() == "second"
    qtbot.keyClick(c.edit, Qt.Key.Key_Down)
    assert c.edit.toPlainText() == "draft"


def test_up_inside_multiline_text_moves_the_cursor(qtbot) -> None:  # type: ignore[no-untyped-def]
    """Up on the second line moves up a line instead of recalling history."""
    c = _composer(qtbot)
    c.edit.history.append("old")
    qtbot.keyClicks(c.edit, "one")
    qtbot.keyClick(c.edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClicks(c.edit, "two")
    qtbot.keyClick(c.edit, Qt.Key.Key_Up)
    assert c.edit.toPlainText() == "one\ntwo"
    assert c.edit.textCursor().blockNumber() == 0


def test_escape_and_stop(qtbot) -> None:  # type: ignore[no-untyped-def]
    """Esc asks to stop following; Stop is live only while busy."""
    c = _composer(qtbot)
    with qtbot.waitSignal(c.stop_following, timeout=1000):
        qtbot.keyClick(c.edit, Qt.Key.Key_Escape)
    assert not c.stop_button.isEnabled()
    c.set_busy(True)
    with qtbot.waitSignal(c.stop_requested, timeout=1000):
        qtbot.mouseClick(c.stop_button, Qt.MouseButton.LeftButton)
    c.set_busy(False)
    assert not c.stop_button.isEnabled()


def test_ctrl_shift_enter_and_the_side_toggle_ask_aside(qtbot) -> None:  # type: ignore[no-untyped-def]
    """Ctrl+Shift+Enter sends a side question; with "Side" on, Enter does too; off again, Enter sends."""
    c = _composer(qtbot)
    sent: list[str] = []
    side: list[str] = []
    c.send_requested.connect(sent.append)
    c.side_requested.connect(side.append)
    both = Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier
    qtbot.keyClicks(c.edit, "what is foo?")
    qtbot.keyClick(c.edit, Qt.Key.Key_Return, both)
    assert side == ["what is foo?"] and sent == [] and c.edit.toPlainText() == ""
    c.side_toggle.setChecked(True)
    assert c.send_button.text() == "Ask aside"
    qtbot.keyClicks(c.edit, "and bar?")
    qtbot.keyClick(c.edit, Qt.Key.Key_Return)
    assert side == ["what is foo?", "and bar?"] and sent == []
    c.side_toggle.setChecked(False)
    qtbot.keyClicks(c.edit, "main")
    qtbot.keyClick(c.edit, Qt.Key.Key_Return)
    assert sent == ["main"] and c.send_button.text() == "Send"
