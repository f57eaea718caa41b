"""`slipstream ask` end to end: it starts its own scripted server and streams the answer."""

from __future__ import annotations

import subprocess
import sys


def test_ask_streams_an_answer_from_a_server_it_starts() -> None:
    """The answer restates the question and holds a code block; exit 0."""
    proc = subprocess.run(
        [sys.executable, "-m", "app", "ask", "what is in the repo?"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "what is in the repo?" in proc.stdout and "```python" in proc.stdout


def test_ask_against_nothing_fails_with_words() -> None:
    """An endpoint where nothing listens: exit 1 and the reason on stderr."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "app",
            "ask",
            "hi",
            "--endpoint",
            "ws://127.0.0.1:9/v1/responses",
            "--token",
            "x",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and "127.0.0.1:9" in proc.stderr


def _serve(*flags: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--port", "0", "--token", "tk", "--rate", "0", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().split("listening on ", 1)[1].split()[0]
    return proc, url


def test_ask_over_an_http_endpoint_and_a_server_without_websocket_mode() -> None:
    """`--endpoint http://…` goes straight over HTTP; a ws:// endpoint whose server answers the upgrade
    with 426 still answers, with a notice that the server has no WebSocket mode."""
    proc, ws_url = _serve("--no-websocket")
    try:
        http_url = "http://" + ws_url.removeprefix("ws://")
        direct = subprocess.run(
            [sys.executable, "-m", "app", "ask", "hi there", "--endpoint", http_url, "--token", "tk"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert direct.returncode == 0, direct.stderr
        assert "hi there" in direct.stdout and "WebSocket" not in direct.stderr
        fallback = subprocess.run(
            [sys.executable, "-m", "app", "ask", "hello", "--endpoint", ws_url, "--token", "tk"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert fallback.returncode == 0, fallback.stderr
        assert (
            "no WebSocket mode" in fallback.stderr and "426" in fallback.stderr and "hello" in fallback.stdout
        )
    finally:
        proc.terminate()
        proc.wait(10)
