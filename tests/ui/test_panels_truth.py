"""Panels that tell the truth (issue 15): the live session is listed once it has a turn, the window
never widens itself as status text grows, and the banner's fix is one click away."""

from __future__ import annotations

from PySide6.QtWidgets import QApplication

from app.services.api import ConnectionStatus, SessionInfo, StreamStats
from app.ui.main_window import MainWindow
from tests.ui.fakes import FakeServices


def test_live_session_is_listed_after_its_first_turn(qtbot, window: MainWindow, fake: FakeServices) -> None:  # type: ignore[no-untyped-def]
    panel = window.sessions_panel
    assert panel.summary.text() == "No sessions yet"
    # The services saved the first turn of the session they opened at start (after the window bound them).
    fake.session_id = "s1"
    fake.sessions = [SessionInfo("s1", "fix the parser", str(fake.project_root), 0.0, 1)]
    fake.scripted_reply = "done"
    window.composer.edit.setPlainText("fix the parser")
    window.composer.send_requested.emit("fix the parser")
    assert panel.summary.text() == "1 session in this project"
    assert panel.list.item(0).text().startswith("● fix the parser\n1 turn")


def test_status_text_never_widens_the_window(qtbot, window: MainWindow) -> None:  # type: ignore[no-untyped-def]
    window.resize(1280, 800)
    qtbot.waitUntil(lambda: window.width() == 1280)
    long = "attempt 7 of many: " + "the endpoint closed the connection without a reason " * 6
    window.status.set_connection(
        ConnectionStatus(
            "reconnecting", long, "gpt-5.3-codex via openai " * 4, "wss://api.openai.com/v1/responses"
        )
    )
    window.status.set_stats(
        StreamStats(123_456.0, 987_654.0, 12_345_678, 9_876_543, 1_234_567, 98_765_432, 7)
    )
    QApplication.processEvents()
    assert window.minimumSizeHint().width() <= 1280
    assert window.width() == 1280
    assert window.status.connection.elided_text().endswith("…")


def test_banner_offers_settings(qtbot, window: MainWindow, fake: FakeServices) -> None:  # type: ignore[no-untyped-def]
    fake.banner_changed.emit("**Settings not applied: OpenAI cannot be used.** No API key for OpenAI.")
    assert window.banner.isVisible() and window.banner.settings_button.isVisible()
    with qtbot.waitSignal(window.settings_requested):
        window.banner.settings_button.click()
    fake.banner_changed.emit("")
    assert not window.banner.isVisible()
