"""`slipstream ask` end to end: it starts its own scripted server and streams the answer."""

from __future__ import annotations

import subprocess
import sys


def test_ask_streams_an_answer_from_a_server_it_starts() -> None:
    """The answer restates the question and holds a code block; exit 0."""
    proc = subprocess.run([sys.executable, "-m", "app", "ask", "what is in the repo?"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "what is in the repo?" in proc.stdout and "```python" in proc.stdout


def test_ask_against_nothing_fails_with_words() -> None:
    """An endpoint where nothing listens: exit 1 and the reason on stderr."""
    proc = subprocess.run([sys.executable, "-m", "app", "ask", "hi", "--endpoint", "ws://127.0.0.1:9/v1/responses",
                           "--token", "x"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "127.0.0.1:9" in proc.stderr
