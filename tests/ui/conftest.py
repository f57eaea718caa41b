"""UI fixtures: a FakeServices and a main window bound to it through the real Controller."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.ui.fakes import FakeServices


@pytest.fixture
def fake(tmp_path: Path) -> FakeServices:
    root = tmp_path / "project"
    root.mkdir()
    return FakeServices(project_root=root)


@pytest.fixture
def window(qtbot, fake: FakeServices):  # type: ignore[no-untyped-def]
    from app.ui.controller import Controller
    from app.ui.main_window import MainWindow

    win = MainWindow()
    qtbot.addWidget(win)
    ctl = Controller(win)
    ctl.bind(fake)
    win.show()
    yield win
    ctl.unbind()
