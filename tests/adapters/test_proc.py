"""Tests for app.adapters.proc: streaming, caps, timeouts, group kill, test runs."""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from app.adapters.proc import OutputTail, ProcResult, detect_test_command, run_process, run_tests

PY = sys.executable


def test_output_tail_keeps_the_end() -> None:
    """The tail buffer keeps the last bytes and says how much was dropped."""
    t = OutputTail(10)
    for i in range(100):
        t.add(f"{i:03d}\n".encode())
    assert t.truncated and t.total == 400
    assert t.text().endswith("098\n099\n")
    assert "390 earlier bytes" in t.text()


def test_run_process_streams_and_exits(tmp_path: Path) -> None:
    """Output reaches the callback and the exit status is reported."""
    chunks: list[bytes] = []
    res = asyncio.run(
        run_process(
            [PY, "-c", "import sys; print('hi'); sys.stderr.write('err\\n'); sys.exit(3)"],
            cwd=tmp_path,
            on_output=chunks.append,
        )
    )
    assert res.exit_code == 3 and b"hi" in b"".join(chunks) and "err" in res.output
    assert res.status_line() == "exit status 3"


def test_run_process_100mb_output_is_capped(tmp_path: Path) -> None:
    """100 MB of output keeps only the tail, in bounded memory."""
    code = (
        "import sys\nb = b'x' * (1 << 20)\nfor _ in range(100): sys.stdout.buffer.write(b)\nprint('THE END')"
    )
    res = asyncio.run(run_process([PY, "-c", code], cwd=tmp_path, max_output=4096))
    assert res.exit_code == 0 and res.truncated
    assert res.total_bytes >= 100 * (1 << 20)
    assert res.output.rstrip().endswith("THE END") and len(res.output) < 5000
    assert "only the tail is kept" in res.for_model()


def test_timeout_kills_the_whole_group(tmp_path: Path) -> None:
    """A hanging command and its grandchild are killed on timeout."""
    pidfile = tmp_path / "child.pid"
    code = textwrap.dedent(f"""
        import subprocess, sys, time
        p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        open({str(pidfile)!r}, "w").write(str(p.pid))
        print("started", flush=True)
        time.sleep(60)
    """)
    res = asyncio.run(run_process([PY, "-c", code], cwd=tmp_path, timeout=1.5))
    assert res.timed_out and "started" in res.output
    child = int(pidfile.read_text())
    for _ in range(100):  # the kill is asynchronous: poll for the end (a zombie counts as dead)
        if not _alive(child):
            break
        time.sleep(0.05)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def test_stop_event_kills(tmp_path: Path) -> None:
    """Setting the stop event ends the run as cancelled."""

    async def go() -> ProcResult:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.3, stop.set)
        return await run_process("sleep 30", cwd=tmp_path, stop=stop)

    res = asyncio.run(go())
    assert res.cancelled and "stopped by the user" in res.status_line()


def test_missing_command(tmp_path: Path) -> None:
    """A command that does not exist is a clear error, not an exception."""
    res = asyncio.run(run_process(["no-such-cmd-xyz"], cwd=tmp_path))
    assert res.exit_code is None and "no such command" in res.error


def _write(root: Path, name: str, text: str) -> None:
    (root / name).write_text(textwrap.dedent(text), encoding="utf-8")


def test_pytest_hang_keeps_partial_results(tmp_path: Path) -> None:
    """A suite that hangs is killed at the timeout; finished tests are kept."""
    _write(
        tmp_path,
        "test_h.py",
        """
        import time
        def test_a(): pass
        def test_b(): time.sleep(60)
    """,
    )
    cmd = detect_test_command(tmp_path, python=PY)
    run = asyncio.run(run_tests(cmd, timeout=8))
    assert run.timed_out and run.cases["test_h.py::test_a"].outcome == "passed"
    assert run.cases["test_h.py::test_b"].outcome == "running"
    assert "TIMED OUT" in run.summary_for_model() and "test_h.py::test_b" in run.summary_for_model()


def test_pytest_interpreter_crash(tmp_path: Path) -> None:
    """A test that kills the interpreter gives a clear 'ended abruptly' result with partial results."""
    _write(
        tmp_path,
        "test_c.py",
        """
        import os
        def test_a(): pass
        def test_crash(): os._exit(7)
    """,
    )
    run = asyncio.run(run_tests(detect_test_command(tmp_path, python=PY), timeout=60))
    assert run.exit_status == 7 and not run.finished and not run.ok
    assert run.cases["test_c.py::test_a"].outcome == "passed"
    assert "ended abruptly" in run.note and run.summary_for_model().startswith("CRASHED")


def test_no_tests_and_no_runner(tmp_path: Path) -> None:
    """A pytest project without tests, and a folder with no suite at all, both say so."""
    (tmp_path / "pyproject.toml").write_text("[project]\nname='x'\n", encoding="utf-8")
    run = asyncio.run(run_tests(detect_test_command(tmp_path, python=PY), timeout=60))
    assert run.exit_status == 5 and run.summary_for_model().startswith("NO TESTS")
    empty = tmp_path / "empty"
    empty.mkdir()
    run = asyncio.run(run_tests(detect_test_command(empty)))
    assert not run.ok and "no test suite found" in run.summary_for_model()


def test_pytest_missing_in_interpreter(tmp_path: Path) -> None:
    """An interpreter without pytest gives an actionable note."""
    _write(tmp_path, "test_x.py", "def test_a(): pass\n")
    run = asyncio.run(
        run_tests(
            detect_test_command(
                tmp_path, python="/usr/bin/python3" if Path("/usr/bin/python3").exists() else PY
            ),
            timeout=60,
        )
    )
    if run.cases:  # that interpreter has pytest after all
        pytest.skip("system python has pytest")
    assert "pytest is not installed" in run.note


def test_custom_runner_summary_and_status(tmp_path: Path) -> None:
    """A custom command streams output; its plain summary line is parsed and its status decides."""
    out: list[bytes] = []
    cmd = detect_test_command(tmp_path, custom="echo 'result: 3 passed, 1 failed'; exit 1")
    run = asyncio.run(run_tests(cmd, on_output=out.append))
    assert run.runner == "custom" and run.exit_status == 1 and not run.ok
    assert run.counts_line() == "1 failed, 3 passed"
    assert b"3 passed" in b"".join(out)
