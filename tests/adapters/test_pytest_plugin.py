"""The plugin's counts match plain pytest's summary on a generated project (the issue's done-criterion)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from app.adapters.proc import detect_test_command, run_tests
from app.tools.testrun import parse_summary_line

SUITE = """
import os, sys, pytest

def test_pass(): pass
def test_fail(): assert [1, 2] == [1, 3]
@pytest.mark.skip(reason="later")
def test_skip(): pass
@pytest.mark.xfail(reason="known")
def test_xfail(): assert False
@pytest.mark.xfail(reason="fixed?")
def test_xpass(): pass
@pytest.mark.parametrize("n", range(5))
def test_param(n): assert n != 3
@pytest.fixture
def broken_setup(): raise RuntimeError("setup boom")
def test_setup_error(broken_setup): pass
@pytest.fixture
def broken_teardown():
    yield
    raise RuntimeError("teardown boom")
def test_teardown_error(broken_teardown): pass
def test_noisy(capsys):
    print('{"kind": "phase", "nodeid": "fake", "category": "failed"}')
    os.write(1, b'{"kind": "phase", "nodeid": "fake2", "category": "failed"}\\n')
def test_skip_inside(): pytest.skip("inside")
"""


def _plain_counts(root: Path) -> dict[str, int]:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    counts = parse_summary_line(proc.stdout.splitlines()[-1:])
    assert counts is not None, proc.stdout[-500:]
    return counts


def test_counts_equal_plain_pytest(tmp_path: Path) -> None:
    """`run_tests` reports the same passed/failed/skipped/error/xfail counts as plain pytest."""
    (tmp_path / "test_suite.py").write_text(textwrap.dedent(SUITE), encoding="utf-8")
    (tmp_path / "test_other.py").write_text("def test_more(): pass\n", encoding="utf-8")
    want = _plain_counts(tmp_path)
    events: list[dict[str, object]] = []
    run = asyncio.run(
        run_tests(detect_test_command(tmp_path, python=sys.executable), on_event=events.append, timeout=120)
    )
    got = {k: v for k, v in run.counts.items() if v}
    assert got == want
    assert not any(e.get("nodeid") in ("fake", "fake2") for e in events)  # test stdout never mixes in
    kinds = {e["kind"] for e in events}
    assert {"run_started", "collected", "started", "phase", "finished", "run_finished"} <= kinds
    fail = run.cases["test_suite.py::test_fail"]
    assert fail.outcome == "failed" and re.search(r"assert \[1, 2\] == \[1, 3\]", fail.text)
    assert run.cases["test_suite.py::test_skip"].text.endswith("later")


def test_plugin_inert_without_channel(tmp_path: Path) -> None:
    """Loaded without the env var, the plugin changes nothing."""
    from app.adapters.proc import plugin_dir

    (tmp_path / "test_a.py").write_text("def test_a(): pass\n", encoding="utf-8")
    env = {"PYTHONPATH": str(plugin_dir()), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "slipstream_pytest_plugin", "-q"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0 and "1 passed" in proc.stdout


def test_collection_error_counts_like_pytest(tmp_path: Path) -> None:
    """A module that fails to import is an error, as in pytest's interrupted summary."""
    (tmp_path / "test_ok.py").write_text("def test_a(): pass\n", encoding="utf-8")
    (tmp_path / "test_broken.py").write_text("import not_a_module_xyz\n", encoding="utf-8")
    want = _plain_counts(tmp_path)
    run = asyncio.run(run_tests(detect_test_command(tmp_path, python=sys.executable), timeout=120))
    assert {k: v for k, v in run.counts.items() if v} == want == {"error": 1}
    assert run.collect_errors[0][0] == "test_broken.py" and "not_a_module_xyz" in run.summary_for_model()
