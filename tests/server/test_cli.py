"""`slipstream serve` from the command line: refusals, and a real child process on port 0."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from app.server.cli import main

FIRST_LINE = re.compile(
    r"^slipstream serve: listening on ws://127\.0\.0\.1:(\d+)/v1/responses \(token file: (.+)\)$"
)


@pytest.mark.parametrize(
    "argv",
    [
        ["--host", "0.0.0.0"],
        ["--host", "192.168.1.10", "--allow-remote"],
        ["--host", "0.0.0.0", "--token", "secret"],
    ],
)
def test_non_loopback_needs_allow_remote_and_token(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Binding a routable address without --allow-remote AND --token exits 2 with a clear message."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "non-loopback" in err and "--allow-remote" in err and "--token" in err


def test_bad_settings_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A broken script file, a negative rate and a bad port are refused before binding."""
    script = tmp_path / "s.json"
    script.write_text('{"not": "a list"}')
    assert main(["--port", "0", "--script", str(script)]) == 2
    assert "list of turns" in capsys.readouterr().err
    assert main(["--port", "0", "--rate", "-5"]) == 2
    assert "--rate" in capsys.readouterr().err
    assert main(["--port", "70000"]) == 2
    assert main(["--nope"]) == 2


@pytest.mark.skipif(os.name != "posix", reason="SIGTERM and permission bits")
def test_child_process_prints_port_and_private_token_file(tmp_path: Path) -> None:
    """The first stdout line names the real port and a 0600 token file; the token works; SIGTERM stops it."""
    env = dict(os.environ, SLIPSTREAM_PROFILE_DIR=str(tmp_path), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--port", "0", "--rate", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().rstrip("\n")
        match = FIRST_LINE.match(line)
        assert match, (line, proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
        port, token_file = int(match.group(1)), Path(match.group(2))
        assert not token_file.is_relative_to(Path.home())  # the throwaway profile's private runtime folder
        assert stat.S_IMODE(token_file.parent.stat().st_mode) == 0o700
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        base = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(f"{base}/healthz", timeout=10) as resp:
            assert json.load(resp) == {"ok": True, "engine": "scripted"}
        body = json.dumps({"model": "scripted", "input": "ping"}).encode()
        request = urllib.request.Request(
            f"{base}/v1/responses", data=body, headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert json.load(resp)["status"] == "completed"
        wrong = urllib.request.Request(
            f"{base}/v1/responses", data=body, headers={"Authorization": "Bearer x"}
        )
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(wrong, timeout=10)
        assert info.value.code == 401
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert not token_file.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
