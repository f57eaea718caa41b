"""Main window + controller on FakeServices: every façade signal reaches its widget and back."""

from __future__ import annotations

from PySide6.QtCore import Qt

from app.services.api import (
    ApprovalDecision,
    ApprovalRequest,
    ConnectionStatus,
    FileBadge,
    FileChanges,
    SessionInfo,
    StreamStats,
)
from app.ui.controller import Controller
from app.ui.diff_review import CommandApprovalDialog
from app.ui.main_window import MainWindow
from tests.ui.fakes import FakeServices


def _text(win: MainWindow) -> str:
    while win.transcript.pending:
        win.transcript.flush()
    return win.transcript.toPlainText()


def _controller(window: MainWindow) -> Controller:
    """The Controller the `window` fixture bound: a child of the window."""
    ctl = window.findChild(Controller)
    assert ctl is not None
    return ctl


def test_send_stream_and_status(qtbot, window: MainWindow, fake: FakeServices) -> None:  # type: ignore[no-untyped-def]
    """Enter in the composer calls send_message; the streamed reply lands in the transcript."""
    fake.scripted_reply = "Hello from the scripted engine"
    qtbot.keyClicks(window.composer.edit, "hi there")
    qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
    assert fake.calls[0] == ("send_message", ("hi there",))
    text = _text(window)
    assert "hi there" in text and "Hello from the scripted engine" in text
    fake.connection_changed.emit(ConnectionStatus("streaming", "", "scripted — no model"))
    fake.stats_changed.emit(StreamStats(tokens_per_s_now=1500, tokens_per_s_peak=3000))
    assert window.status.connection.text() == "Working…"
    assert window.status.engine.text() == "scripted — no model"
    assert window.status.rate.text() == "1.5k tok/s · peak 3k"


def test_busy_stop_and_escape(qtbot, window: MainWindow, fake: FakeServices) -> None:  # type: ignore[no-untyped-def]
    """busy_changed drives Stop; Stop calls services.stop; Esc stops following."""
    fake.busy_changed.emit(True)
    assert window.composer.stop_button.isEnabled()
    qtbot.mouseClick(window.composer.stop_button, Qt.MouseButton.LeftButton)
    assert fake.names() == ["stop"]
    qtbot.keyClick(window.composer.edit, Qt.Key.Key_Escape)
    assert window.transcript.following is False


def test_panels_banner_tests_and_sessions(qtbot, window: MainWindow, fake: FakeServices) -> None:  # type: ignore[no-untyped-def]
    """Files, tests, banner and session actions are wired both ways."""
    fake.files_changed.emit(FileChanges.listing([FileBadge("a.py", "pending")]))
    assert window.context_panel.badge("a.py") == FileBadge("a.py", "pending")
    window.context_panel.toggle_pin("a.py")
    assert ("pin", ("a.py", True)) in fake.calls
    fake.banner_changed.emit("**No model configured.** Connect one in Settings.")
    assert window.banner.isVisible() and "No model configured" in window.banner.label.text()
    fake.banner_changed.emit("")
    assert not window.banner.isVisible()
    assert window.tests_panel.run is fake.test_run and window.transcript.model is fake.conversation
    fake.test_run.apply({"kind": "run_started"})
    fake.test_run.apply(
        {
            "kind": "phase",
            "nodeid": "t.py::x",
            "when": "call",
            "category": "failed",
            "duration": 0.1,
            "text": "E boom",
        }
    )
    fake.test_run.apply({"kind": "run_finished", "exitstatus": 1})
    qtbot.waitUntil(lambda: "✗" in window.side.tabText(window.side.indexOf(window.tests_panel)), timeout=3000)
    assert window.side.tabText(window.side.indexOf(window.tests_panel)) == "Tests · 1 ✗"
    window.run_tests_action.trigger()
    assert fake.names()[-1] == "run_tests"
    qtbot.mouseClick(window.tests_panel.rerun_button, Qt.MouseButton.LeftButton)
    assert fake.names()[-1] == "rerun_failed"
    fake.sessions = [SessionInfo("old", "Old chat", str(fake.project_root), 1.0, 2)]
    window.new_session_action.trigger()
    assert fake.names()[-1] == "new_session"
    assert window.sessions_panel.list.count() == 1
    window.sessions_panel.open_requested.emit("old")
    assert fake.names()[-1] == "open_session"


def test_approval_opens_dialog_and_unbind_refuses(qtbot, window: MainWindow, fake: FakeServices) -> None:  # type: ignore[no-untyped-def]
    """approval_requested shows the prompt; rebinding closes it as refused (never left hanging)."""
    got: list[ApprovalDecision] = []
    fake.approval_requested.emit(
        ApprovalRequest("command", "Run?", {"command": "ls", "cwd": "/"}, got.append)
    )
    ctl = _controller(window)
    assert len(ctl.dialogs) == 1 and isinstance(ctl.dialogs[0], CommandApprovalDialog)
    other = FakeServices(project_root=fake.project_root.parent)
    ctl.bind(other)
    assert got == [ApprovalDecision(False)]
    assert window.transcript.model is other.conversation
    fake.banner_changed.emit("from the old project")
    assert not window.banner.isVisible()


def test_withdrawn_approval_closes_its_dialog(qtbot, window: MainWindow, fake: FakeServices) -> None:  # type: ignore[no-untyped-def]
    """When the services stop waiting (Stop), the open prompt closes and resolves as refused, once."""
    got: list[ApprovalDecision] = []
    request = ApprovalRequest("command", "Run?", {"command": "ls", "cwd": "/"}, got.append)
    fake.approval_requested.emit(request)
    ctl = _controller(window)
    dlg = ctl.dialogs[0]
    assert dlg.isVisible()
    request.withdrawn.emit()
    assert not dlg.isVisible() and got == [ApprovalDecision(False)]


def test_failing_service_call_is_reported(qtbot, window: MainWindow, fake: FakeServices) -> None:  # type: ignore[no-untyped-def]
    """A façade method that raises becomes a notice in words; the window keeps working."""

    def boom(text: str) -> None:
        raise ConnectionError("endpoint unreachable: ws://127.0.0.1:9")

    fake.send_message = boom  # type: ignore[method-assign]
    window.composer.edit.setPlainText("hello")
    window.composer.edit.submit()
    assert "endpoint unreachable" in _text(window)
    fake.connection_changed.emit(ConnectionStatus("error", "401: wrong API key"))
    assert window.status.connection.text() == "Problem — 401: wrong API key"


def test_about_and_settings(qtbot, window: MainWindow, fake: FakeServices) -> None:  # type: ignore[no-untyped-def]
    """About shows the version; Settings opens on the services' settings."""
    from app import __version__

    ctl = _controller(window)
    box = ctl.show_about()
    assert __version__ in box.text()
    box.close()
    dlg = ctl.show_settings()
    assert dlg is not None and dlg.host is fake
    dlg.theme.setCurrentIndex(dlg.theme.findData("dark"))
    dlg.accept()
    assert fake.settings.theme == "dark"
    assert window.transcript.theme.dark
