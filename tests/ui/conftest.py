"""UI fixtures: a FakeServices and a main window bound to it through the real Controller."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.ui.fakes import FakeServices


@pytest.fixture(autouse=True)
def _private_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """platformdirs' config/data folders point into tmp_path: tests never touch the real ones."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))


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
    win.controller = ctl
    win.show()
    yield win
    ctl.unbind()
