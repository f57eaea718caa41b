"""The GUI's run and quit, in process: no quit route can hang, whatever the tasks on the loop do."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from app.services.lifetime import QuitRequest, close_within
from app.ui import app as gui_app
from tests.ui.fakes import FakeServices


async def _stubborn(name: str) -> None:
    """Like httpx's `aclose()` scheduled by a collected openai client: it never ends, cancelled or not."""
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            continue


class HangingServices(FakeServices):
    """Services whose close never finishes and that leave a foreign-looking task on the loop."""

    async def start(self) -> None:
        await super().start()
        asyncio.ensure_future(_stubborn("foreign")).set_name("AsyncClient.aclose (foreign)")

    async def aclose(self) -> None:
        self.closed = True
        await _stubborn("aclose")


def _factory(cls: type[FakeServices], made: list[FakeServices]) -> Any:
    def make(root: Path, settings: Any) -> FakeServices:
        made.append(cls(project_root=root, settings=settings))
        return made[-1]

    return make


@pytest.mark.parametrize("route", ["close", "ctrl-q", "app-quit"])
def test_every_route_quits_with_0(
    qapp: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, route: str
) -> None:
    """Window close, the Quit action and QApplication.quit(): status 0, the services closed, no
    "Event loop stopped before Future completed"."""
    monkeypatch.setenv("SLIPSTREAM_LIFECYCLE_PROBE", route)
    made: list[FakeServices] = []
    assert gui_app.run_gui([str(tmp_path)], factory=_factory(FakeServices, made)) == 0
    assert made[0].started and made[0].closed


def test_a_hanging_close_and_a_task_that_ignores_cancel_cannot_wedge_the_quit(
    qapp: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The services' close never ends and a foreign task ignores its cancellation (what wedged
    `asyncio.run` in the suite): the quit still returns 0; both are logged by name and abandoned."""
    monkeypatch.setenv("SLIPSTREAM_LIFECYCLE_PROBE", "close")
    made: list[FakeServices] = []
    with caplog.at_level(logging.WARNING):
        assert gui_app.run_gui([str(tmp_path)], factory=_factory(HangingServices, made)) == 0
    assert made[0].closed
    text = caplog.text
    assert "closing the services took over" in text and "abandoned" in text
    assert "AsyncClient.aclose (foreign)" in text


def test_ctrl_q_is_bound(qtbot: Any) -> None:
    """Ctrl+Q typed into the window asks to quit, on every platform theme (offscreen has none)."""
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QWidget

    window = QWidget()
    qtbot.addWidget(window)
    window.show()
    quit_request = QuitRequest()
    gui_app._quit_action(window, quit_request)
    with qtbot.waitActive(window):
        window.activateWindow()
    QTest.keyClick(window, Qt.Key.Key_Q, Qt.KeyboardModifier.ControlModifier)
    assert quit_request.reason == "Quit (Ctrl+Q)"


def test_closing_the_window_asks_to_quit_once(qtbot: Any) -> None:
    """The close event asks for the orderly quit; the window still closes (hides) at once."""
    from PySide6.QtWidgets import QWidget

    window = QWidget()
    qtbot.addWidget(window)
    window.show()
    quit_request = QuitRequest()
    seen: list[str] = []
    quit_request.on_request(lambda: seen.append(quit_request.reason))
    gui_app._close_filter(window, quit_request)
    window.close()
    window.show()
    window.close()
    assert seen == ["the window was closed"] and not window.isVisible()


def test_close_within_bounds_a_close_that_never_ends(caplog: pytest.LogCaptureFixture) -> None:
    """A close that ignores its cancellation is abandoned after its budget: False, logged, no hang."""

    async def main() -> tuple[bool, bool]:
        never = close_within(_stubborn("x"), 0.05, "a stubborn thing")
        fine = close_within(asyncio.sleep(0), 1.0, "a quick thing")
        return await never, await fine

    loop = asyncio.new_event_loop()
    try:
        with caplog.at_level(logging.WARNING):
            assert loop.run_until_complete(main()) == (False, True)
    finally:
        loop.close()
    assert "closing a stubborn thing took over 0.1 s and ignored its cancellation: abandoned" in caplog.text
