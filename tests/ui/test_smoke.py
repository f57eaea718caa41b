"""The --smoke flow on FakeServices: one turn through the composer, a screenshot, a one-line result."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QImage
from PySide6.QtWidgets import QDialog

from app.services.api import ApprovalDecision, ApprovalRequest, ConnectionStatus
from app.ui.main_window import MainWindow
from app.ui.smoke import run_smoke
from tests.ui.fakes import FakeServices


def test_smoke_ok_with_screenshot(  # type: ignore[no-untyped-def]
    qtbot, qloop, window: MainWindow, fake: FakeServices, tmp_path: Path
) -> None:
    """A completed turn gives exit 0, a PNG of the window, and a line naming the engine."""
    fake.scripted_reply = "hello world"
    qloop.run_until_complete(fake.start())
    shot = tmp_path / "shots" / "w.png"
    result = qloop.run_until_complete(run_smoke(window, fake, screenshot=shot, timeout=10))
    assert result.ok and result.exit_code == 0, result.line
    assert result.line.startswith("smoke: ok — response completed in ")
    assert "12 chars, file edit synced in " in result.line and "scripted — no model" in result.line
    image = QImage(str(shot))
    assert image.width() == window.width() and image.height() == window.height()
    assert fake.calls[0][0] == "send_message"


def test_smoke_times_out_with_reason(qtbot, qloop, window: MainWindow, fake: FakeServices) -> None:  # type: ignore[no-untyped-def]
    """No response end: a FAIL line saying what was missing and the connection state."""
    fake.connection_changed.emit(ConnectionStatus("offline", "endpoint unreachable"))
    result = qloop.run_until_complete(run_smoke(window, fake, timeout=0.2))
    assert not result.ok and result.exit_code == 1
    assert (
        result.line == "smoke: FAIL — no response end within 0.2 s (connection: offline endpoint unreachable)"
    )


def test_smoke_without_services(qtbot, qloop, window: MainWindow) -> None:  # type: ignore[no-untyped-def]
    """No services at all: a FAIL line with the reason, immediately."""
    result = qloop.run_until_complete(run_smoke(window, None, unavailable_reason="factory missing"))
    assert result.line == "smoke: FAIL — no services (factory missing)"


def test_smoke_waits_for_the_tool_loop(qtbot, qloop, window: MainWindow, fake: FakeServices) -> None:  # type: ignore[no-untyped-def]
    """A response's end while still busy (a tool loop continues) is not the end; staying busy times out."""

    def send(text: str) -> None:
        fake.busy_changed.emit(True)
        fake.reply("calling a tool")  # first response of the loop; busy stays on

    fake.send_message = send  # type: ignore[method-assign]
    result = qloop.run_until_complete(run_smoke(window, fake, timeout=0.2))
    assert result.line.startswith("smoke: FAIL — no end of the tool loop within 0.2 s")


def test_smoke_refuses_every_approval(qtbot, qloop, window: MainWindow, fake: FakeServices) -> None:  # type: ignore[no-untyped-def]
    """A tool loop that asks to run the project's tests: the smoke refuses (it never runs a project's
    code), the loop ends, the line says so, and the approval dialog is closed."""
    decisions: list[ApprovalDecision] = []

    def send(text: str) -> None:
        fake.busy_changed.emit(True)
        fake.reply("calling run_tests")

        def answered(d: ApprovalDecision) -> None:
            decisions.append(d)  # the dialog closing answers again; like Approvals, only the first counts
            if len(decisions) > 1:
                return
            fake.reply("the user refused", response_id="resp_2")
            fake.busy_changed.emit(False)

        fake.approval_requested.emit(
            ApprovalRequest("command", "Run this test command?", {"command": "pytest"}, answered)
        )

    qloop.run_until_complete(fake.start())
    fake.send_message = send  # type: ignore[method-assign]
    result = qloop.run_until_complete(run_smoke(window, fake, timeout=10))
    assert result.ok, result.line
    assert result.line.endswith("refused 1 approval(s)")
    assert decisions and not any(d.accept for d in decisions)
    assert not [w for w in window.findChildren(QDialog) if w.isVisible()]  # the dialog was closed
    qloop.run_until_complete(fake.aclose())
