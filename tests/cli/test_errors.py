"""Bad input to every command: one line on stderr, a documented exit status, never a traceback.

`CASES` is also the table in the issue's closing note (run with -s to print it).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# (id, arguments, stdin bytes, exit status, words the one line must hold). {dir}: an existing folder.
CASES: list[tuple[str, list[str], bytes, int, str]] = [
    ("watch --budget 0", ["watch", "--budget", "0", "{dir}"], b"", 2, "--budget: must be at least 1, not 0"),
    ("watch --quiet-ms -1", ["watch", "--quiet-ms", "-1", "{dir}"], b"", 2, "--quiet-ms: must be at least 0"),
    ("watch --quiet-ms abc", ["watch", "--quiet-ms", "abc", "{dir}"], b"", 2, "'abc' is not a number"),
    ("watch --max-window-ms 0", ["watch", "--max-window-ms", "0", "{dir}"], b"", 2, "must be above 0"),
    (
        "watch window < quiet",
        ["watch", "--quiet-ms", "50", "--max-window-ms", "10", "{dir}"],
        b"",
        2,
        "must not be shorter than --quiet-ms",
    ),
    ("watch missing folder", ["watch", "{dir}/nope"], b"", 2, "is not a folder"),
    ("watch a file", ["watch", "{dir}/file.txt"], b"", 2, "is not a folder"),
    ("ask no text", ["ask"], b"", 2, "the following arguments are required: text"),
    (
        "ask - (not UTF-8)",
        ["ask", "-"],
        b"hi \xff there",
        2,
        "stdin is not UTF-8 text (byte 0xff at offset 3)",
    ),
    ("ask - (empty)", ["ask", "-"], b"", 2, "nothing to ask"),
    ("ask --bogus", ["ask", "hi", "--bogus"], b"", 2, "unrecognized arguments: --bogus"),
    ("test --timeout -5", ["test", "--timeout", "-5", "{dir}"], b"", 2, "--timeout: must be above 0"),
    ("test missing path", ["test", "{dir}/nope"], b"", 2, "no such file or folder"),
    ("apply-patch missing root", ["apply-patch", "--root", "{dir}/nope"], b"", 2, "is not a folder"),
    ("apply-patch not UTF-8", ["apply-patch", "--root", "{dir}"], b"\xff\xfe", 2, "stdin is not UTF-8 text"),
    ("apply-patch garbage", ["apply-patch", "--root", "{dir}"], b"nonsense", 1, "Begin Patch"),
    ("serve --port abc", ["serve", "--port", "abc"], b"", 2, "invalid int value: 'abc'"),
    ("serve --port 99999", ["serve", "--port", "99999"], b"", 2, "--port must be in 0..65535"),
    ("serve --rate -1", ["serve", "--rate", "-1"], b"", 2, "--rate must be >= 0"),
    ("serve --host 0.0.0.0", ["serve", "--host", "0.0.0.0"], b"", 2, "refusing to bind non-loopback"),
    ("gui: missing folder", ["{dir}/nope"], b"", 2, "is not a folder"),
]


def run_cli(
    args: list[str], stdin: bytes, folder: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    argv = [a.replace("{dir}", str(folder)) for a in args]
    proc = subprocess.run(
        [sys.executable, "-m", "app", *argv], input=stdin, capture_output=True, timeout=timeout, cwd=ROOT
    )
    return subprocess.CompletedProcess(
        proc.args, proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "file.txt").write_text("x\n", encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize(
    ("args", "stdin", "status", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_is_one_line_and_a_status(
    args: list[str], stdin: bytes, status: int, words: str, folder: Path
) -> None:
    """The message is one line naming the problem; the status is the documented one."""
    proc = run_cli(args, stdin, folder)
    print(f"\n| `slipstream {' '.join(args)}` | {proc.stderr.strip()} | {proc.returncode} |")
    assert proc.returncode == status, proc.stderr
    assert words in proc.stderr
    assert "Traceback" not in proc.stderr
    if status == 2:
        assert proc.stderr.count("\n") == 1, proc.stderr


def test_every_command_documents_its_exit_statuses(folder: Path) -> None:
    """--help of each command lists its exit statuses."""
    for cmd in ("ask", "watch", "test", "apply-patch", "serve"):
        proc = run_cli([cmd, "--help"], b"", folder)
        assert proc.returncode == 0 and "Exit status" in proc.stdout.replace("\n", " "), (cmd, proc.stdout)


@pytest.mark.parametrize(
    "args", [["ask", "/long 30000"], ["test", str(ROOT / "tests" / "test_profile.py"), "--json"]]
)
def test_a_closed_pipe_stops_quietly_with_141(args: list[str], folder: Path) -> None:
    """`slipstream ask ... | head`: the command stops at once, no traceback, status 141, no child left."""
    shell = f"{sys.executable} -m app {' '.join(repr(a) for a in args)} | head -c 20 >/dev/null; echo $?"
    proc = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {shell}"], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert proc.stdout.strip() == "141", proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr, proc.stderr


def test_watch_once_fails_when_the_push_fails(folder: Path) -> None:
    """--once against an endpoint where nothing listens: the JSON line says ok false, status 1."""
    proc = run_cli(
        ["watch", "--once", "--endpoint", "ws://127.0.0.1:9/v1/responses", "--token", "x", "{dir}"],
        b"",
        folder,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert '"ok": false' in proc.stdout and "Traceback" not in proc.stderr
