"""SingleInstance: the first process on a project listens, a later one asks it to come forward."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from PySide6.QtNetwork import QLocalServer

from app.ui.single_instance import SingleInstance, server_name

ROOT = Path(__file__).resolve().parents[2]


def test_server_name_depends_on_real_path(tmp_path: Path) -> None:
    """The same folder reached through a symlink maps to the same name; another folder does not."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    os.symlink(tmp_path / "a", tmp_path / "link")
    assert server_name(tmp_path / "a") == server_name(tmp_path / "link")
    assert server_name(tmp_path / "a") != server_name(tmp_path / "b")
    assert server_name(tmp_path / "a").startswith("slipstream-")


def test_second_instance_activates_first(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The first is primary; the second is not, and the first emits `activated`."""
    first = SingleInstance(tmp_path)
    try:
        assert first.try_primary()
        assert first.is_primary
        second = SingleInstance(tmp_path)
        with qtbot.waitSignal(first.activated, timeout=5000):
            assert second.try_primary() is False
        assert not second.is_primary
    finally:
        first.close()


def test_other_project_is_independent(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Two different projects each get their own primary."""
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    a, b = SingleInstance(tmp_path / "one"), SingleInstance(tmp_path / "two")
    try:
        assert a.try_primary()
        assert b.try_primary()
    finally:
        a.close()
        b.close()


def test_primary_again_after_close(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Once the owner closes, the next instance becomes primary."""
    first = SingleInstance(tmp_path)
    assert first.try_primary()
    first.close()
    second = SingleInstance(tmp_path)
    try:
        assert second.try_primary()
    finally:
        second.close()


def test_stale_socket_file_is_replaced(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A socket file left by a crashed owner does not block the next start."""
    inst = SingleInstance(tmp_path)
    probe = QLocalServer()
    assert probe.listen(inst.name)
    path = probe.fullServerName()
    probe.close()
    Path(path).write_bytes(b"")  # what a killed process leaves: a path nobody listens on
    try:
        assert inst.try_primary()
    finally:
        inst.close()


def test_second_process_exits_after_activating(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A real second process hands over to this one and reports it is not primary."""
    first = SingleInstance(tmp_path)
    assert first.try_primary()
    code = (
        "import sys\n"
        "from PySide6.QtCore import QCoreApplication\n"
        "from app.ui.single_instance import SingleInstance\n"
        "app = QCoreApplication([])\n"
        "sys.exit(0 if SingleInstance(sys.argv[1]).try_primary() is False else 3)\n"
    )
    try:
        with qtbot.waitSignal(first.activated, timeout=20000):
            proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT)
        assert proc.wait(timeout=30) == 0
    finally:
        first.close()
