"""The suite's own guard (tests/conftest.py): a test that leaves something running fails, by name."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LEAKY = """
import asyncio, subprocess, sys, threading, time
import pytest

def test_thread():
    threading.Thread(target=time.sleep, args=(30,), name="forgotten", daemon=True).start()

def test_child():
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])

@pytest.mark.asyncio
async def test_task():
    asyncio.ensure_future(asyncio.sleep(30), loop=None).set_name("forgotten-task")

@pytest.mark.asyncio
async def test_task_that_ignores_cancel():
    async def stubborn():
        while True:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                pass
    asyncio.ensure_future(stubborn()).set_name("stubborn")

def test_window(qapp):
    from PySide6.QtWidgets import QWidget
    w = QWidget()
    w.setObjectName("left-open")
    w.show()
    test_window.keep = w

def test_timer(qapp):
    from PySide6.QtCore import QTimer
    t = QTimer(qapp)
    t.setObjectName("ticking")
    t.start(1000)

def test_clean():
    threading.Thread(target=time.sleep, args=(0.05,)).start()  # ends by itself: fine
"""


def test_leaks_fail_the_test_that_made_them(tmp_path: Path) -> None:
    """A thread, a child process, a pending task (even one that ignores cancellation), a visible window
    and an active timer each fail their test with a message naming it; a thread that ends by itself is fine; and
    the run still ends (a stubborn task is abandoned, not awaited for ever)."""
    (tmp_path / "conftest.py").write_text(  # the suite's conftest, its private fixtures included
        "import tests.conftest as c\nglobals().update({k: v for k, v in vars(c).items() if not k.startswith('__')})\n",
        encoding="utf-8",
    )
    (tmp_path / "test_leaky.py").write_text(textwrap.dedent(LEAKY), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(tmp_path),
            "-c",
            str(ROOT / "pyproject.toml"),
            str(tmp_path / "test_leaky.py"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "thread 'forgotten'" in out
    assert "child process" in out and "time.sleep(30)" in out
    assert "forgotten-task" in out
    assert "stubborn" in out and "ignored its cancellation" in out
    assert "visible window QWidget 'left-open'" in out
    assert "active QTimer 'ticking'" in out
    assert "7 passed, 6 errors" in out, out  # each leaky test errors at its teardown; test_clean is clean
