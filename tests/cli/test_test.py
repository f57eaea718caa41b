"""Tests for `slipstream test`: same counts as plain pytest, JSON events, clear failures."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from app.cli import test as cli_test
from app.tools.testrun import parse_summary_line

SUITE = """
import pytest
def test_a(): pass
def test_b(): assert 0
@pytest.mark.skip
def test_c(): pass
@pytest.mark.parametrize("n", [1, 2, 3])
def test_p(n): assert n < 3
"""


def _project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "tests").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'demo'\n", encoding="utf-8")
    (root / "tests" / "test_demo.py").write_text(textwrap.dedent(SUITE), encoding="utf-8")
    return root


def test_json_counts_match_plain_pytest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The summary event's counts equal plain pytest's closing line."""
    root = _project(tmp_path)
    plain = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    want = parse_summary_line(plain.stdout.splitlines()[-1:])
    code = cli_test.main([str(root), "--json", "--python", sys.executable])
    events = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    summary = events[-1]
    assert summary["kind"] == "summary" and summary["counts"] == want == {
        "failed": 2,
        "passed": 3,
        "skipped": 1,
    }
    assert code == 1
    assert sum(1 for e in events if e["kind"] == "started") == 6
    # The text is the digest the model gets: each failing id with its message, no raw report.
    assert "FAILED tests/test_demo.py::test_b - assert 0" in summary["text"]
    assert (
        "FAILED tests/test_demo.py::test_p[3] - assert 3 < 3" in summary["text"]
        and "=====" not in summary["text"]
    )


def test_human_output_and_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A test file as PATH runs only it, from the project root; the output ends with the model summary."""
    root = _project(tmp_path)
    (root / "tests" / "test_other.py").write_text("def test_x(): pass\n", encoding="utf-8")
    code = cli_test.main([str(root / "tests" / "test_other.py"), "--python", sys.executable])
    out = capsys.readouterr().out
    assert code == 0 and "PASSED   tests/test_other.py::test_x" in out and "PASSED: 1 passed" in out


def test_no_suite_and_missing_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No test suite, or a path that does not exist, exits 2 with the reason."""
    assert cli_test.main([str(tmp_path)]) == 2
    assert "no test suite found" in capsys.readouterr().out
    assert cli_test.main([str(tmp_path / "nope")]) == 2
    assert "no such file" in capsys.readouterr().err
