"""What the desktop app imports before anyone chats: the idle memory target (issue 13) depends on it.

Each check runs in a fresh interpreter (this test process has imported everything already). Modules
here are loaded later, when their feature is used: `requests` never (detect-secrets' verify step, not
run), keyring with the first key lookup, markdown-it and the pygments lexers when a conversation may
show them, httpx with the HTTP/SSE transport. aiohttp never: the in-process scripted server is served
with websockets (app.server.ws_server), which the client has loaded anyway.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The modules a started app has imported (app.main's GUI route, the window, the services behind it).
STARTUP = [
    "app.main",
    "app.ui.app",
    "app.ui.controller",
    "app.ui.main_window",
    "app.services.app",
    "app.context.secrets_scan",
]
NOT_AT_IDLE = [
    "requests",
    "urllib3",
    "charset_normalizer",
    "keyring",
    "aiohttp",
    "httpx",
    "markdown_it",
    "pygments.lexers.python",
    # the dialogs, the smoke run and the patch engine load when first used
    "app.tools.patch",
    "app.ui.diff_review",
    "app.ui.inspector",
    "app.ui.settings_dialog",
    "app.ui.smoke",
]


def _run(code: str) -> object:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_startup_modules_leave_the_later_features_unloaded() -> None:
    code = f"""
import importlib, json, sys
for name in {STARTUP!r}:
    importlib.import_module(name)
import app.main
app.main.prepare_gui()  # installs the in-process host; the server itself starts with the services
from app.context.secrets_scan import scan
found = scan("password = 'Xk8#pq2vLm9zT4'\\nAKIAIOSFODNN7EXAMPLA = 1\\n")[1]
print(json.dumps({{"loaded": sorted(m for m in {NOT_AT_IDLE!r} if m in sys.modules), "found": len(found)}}))
"""
    result = _run(code)
    assert result == {"loaded": [], "found": 2}


def test_detect_secrets_gets_the_real_requests_when_it_uses_it() -> None:
    """The stand-in forwards: anything of `requests` that detect-secrets touches loads the real one."""
    code = """
import json, sys
import app.context.secrets_scan
import detect_secrets.plugins.base as base
before = "requests" in sys.modules
exc = base.requests.exceptions.RequestException
import requests
print(json.dumps([before, exc is requests.exceptions.RequestException, sys.modules["requests"] is requests]))
"""
    assert _run(code) == [False, True, True]


def test_the_in_process_scripted_server_serves_a_turn_without_aiohttp() -> None:
    """aiohttp's imports (~0.2 s with the GIL held, at every start) and memory stay out of the app."""
    code = """
import asyncio, json, sys
import app.main
app.main.prepare_gui()
from app.server.inprocess import start_scripted
from app.services.session import Endpoint, ResponsesSession

async def main():
    server = await start_scripted("idle-imports-token")
    try:
        session = ResponsesSession(Endpoint(server.url, server.token))
        user = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}
        ok = (await session.run_turn([user])).ok
        await session.aclose()
    finally:
        await server.aclose()
    return ok

ok = asyncio.run(main())
print(json.dumps({"ok": ok, "aiohttp": sorted(m for m in sys.modules if m.split(".")[0] == "aiohttp")}))
"""
    assert _run(code) == {"ok": True, "aiohttp": []}
