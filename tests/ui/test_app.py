"""run_gui: argument parsing, the in-process smoke path, and the offline fallback."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from app.services.settings import Settings, load_settings
from app.ui import app as gui_app
from tests.ui.fakes import FakeServices


def test_parse_args(tmp_path: Path) -> None:
    """PATH, --smoke, --screenshot, --screen; a missing folder is an argparse error."""
    args = gui_app.parse_args([str(tmp_path), "--smoke", "--screenshot", "x.png", "--screen"])
    assert args == gui_app.GuiArgs(tmp_path.resolve(), True, Path("x.png"), True)
    with pytest.raises(SystemExit):
        gui_app.parse_args([str(tmp_path / "missing")])


def test_run_gui_smoke_in_process(qapp, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    """--smoke runs one turn on the given services, prints one line, exits 0, remembers the project."""
    made: list[FakeServices] = []

    def factory(root: Path, settings: Any) -> FakeServices:
        fake = FakeServices(project_root=root, settings=settings, scripted_reply="done")
        made.append(fake)
        return fake

    shot = tmp_path / "shot.png"
    project = tmp_path / "proj"
    project.mkdir()
    rc = gui_app.run_gui([str(project), "--smoke", "--screenshot", str(shot)], factory=factory)
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0, out
    assert out[-1].startswith("smoke: ok — response completed")
    assert shot.stat().st_size > 0
    assert made[0].started and made[0].closed
    assert made[0].settings.recent_projects[0] == str(project.resolve())


def test_run_gui_offline_when_factory_fails(  # type: ignore[no-untyped-def]
    qapp,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A failing factory: the window still opens offline; smoke says why and exits non-zero."""

    def factory(root: Path, settings: Settings) -> Any:
        raise RuntimeError("no engine configured")

    rc = gui_app.run_gui([str(tmp_path), "--smoke"], factory=factory)
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert rc == 1
    assert "no engine configured" in line and line.startswith("smoke: FAIL")


def test_bad_arguments_return_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A folder that does not exist: status 2 and a message, no window."""
    assert gui_app.run_gui([str(tmp_path / "nope")]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert load_settings().settings == Settings()


def test_pyside_source_check_keeps_its_answer_but_not_the_lines(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The wrapped PySide6 source check answers as before and leaves nothing in linecache."""
    import linecache
    import types

    src = tmp_path / "uses_qt.py"
    src.write_text("import PySide6\n")
    module = types.ModuleType("uses_qt")
    module.__file__ = str(src)

    def check(mod: types.ModuleType) -> bool:  # what PySide6's hook does: inspect.getsource
        return "PySide6" in "".join(linecache.getlines(str(mod.__file__)))

    feature = types.ModuleType("PySide6.support.feature")
    feature._mod_uses_pyside = check  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "PySide6.support.feature", feature)
    linecache.getlines(__file__)  # cached before: dropped once when the wrapper is installed
    gui_app._uncache_inspected_sources()
    gui_app._uncache_inspected_sources()  # idempotent: wrapped once
    assert __file__ not in linecache.cache
    wrapped = feature._mod_uses_pyside
    assert wrapped is not check and wrapped(module) is True
    assert str(src) not in linecache.cache
    # a source file answers from its bytes, without the check (False when it never spells PySide6,
    # True when it does); a module without a .py file (built in, compiled, gone) is asked as before
    plain = tmp_path / "plain.py"
    plain.write_text("import json  # pyside6, PySide 6: not the name\n")
    asked: list[str] = []

    def asking(mod: types.ModuleType) -> bool:
        asked.append(mod.__name__)
        return check(mod)

    feature._mod_uses_pyside = asking  # type: ignore[attr-defined]
    gui_app._uncache_inspected_sources()
    wrapped = feature._mod_uses_pyside
    other = types.ModuleType("plain")
    other.__file__ = str(plain)
    assert wrapped(other) is False and asked == []
    assert wrapped(module) is True and asked == []
    gone = types.ModuleType("gone")
    gone.__file__ = str(tmp_path / "gone.py")
    assert wrapped(gone) is False and asked == ["gone"]
