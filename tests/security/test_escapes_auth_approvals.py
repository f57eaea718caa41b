"""Security: path escapes through the tools, server auth and binds, API keys at rest, approvals."""

from __future__ import annotations

import asyncio
import json
import logging
import traceback
from pathlib import Path
from typing import Any

import pytest

from app.adapters.project_fs import ProjectFS
from app.adapters.secrets import SecretStore
from app.adapters.store import HistoryStore
from app.adapters.ws_client import TransportError, WsTransport
from app.server import cli
from app.server.app import run_server
from app.server.engines.scripted import Script, ScriptedEngine
from app.server.ws_server import run_ws_server
from app.services.agent import Agent, AgentConfig
from app.services.approvals import ApprovalDecision
from app.services.session import Endpoint, ResponsesSession
from app.services.settings import Settings, SettingsError, load_settings, save_settings
from app.services.workspace import ContextSync, Workspace
from app.tools.fileops import ToolContext, execute
from app.tools.specs import CommandPolicy
from tests.adapters.test_secrets import MemoryKeyring
from tests.security.escapes import run_escapes

# WebSocket mode has two servers: aiohttp's (`slipstream serve`) and websockets' (the app's own
# scripted engine, in process); the auth and key-leak checks run against both.
SERVERS: dict[str, Any] = {"aiohttp": run_server, "websockets": run_ws_server}
both_servers = pytest.mark.parametrize("backend", sorted(SERVERS))


def test_fifty_path_escape_attempts_zero_escapes(tmp_path: Path) -> None:
    """Traversal, absolute, Windows, NUL, long paths, symlinks and hard links: nothing leaves the root."""
    report = run_escapes(tmp_path)
    assert report.attempts >= 50
    assert report.escapes == []
    assert report.refused >= report.attempts - 12  # the rest are harmless no-ops (e.g. searching the root)


class LeakyFS:
    """A file view that follows symlinks anywhere: what the confinement must prevent."""

    def __init__(self, root: Path, state: Path) -> None:
        self.root = root

    def read_bytes(self, path: str, limit: int | None = None) -> bytes | None:
        try:
            return (self.root / path).read_bytes()
        except OSError:
            return None

    def walk(self, under: str = "") -> list[Any]:
        return []


def test_the_escape_detector_catches_a_leak(tmp_path: Path) -> None:
    """Run against a view that follows symlinks out, the same attempts do report escapes."""
    assert run_escapes(tmp_path, make_fs=LeakyFS).escapes


# ---- the server ------------------------------------------------------------------------------


@pytest.mark.asyncio
@both_servers
async def test_server_refuses_missing_and_wrong_tokens(backend: str) -> None:
    """The upgrade and the POST need exactly `Bearer <token>`: anything else is a 401."""
    async with SERVERS[backend](ScriptedEngine(rate_tps=0), token="right-token") as srv:
        for token, headers in [
            (None, {}),
            ("wrong-token", {}),
            ("right-tokenX", {}),
            ("right-toke", {}),
            (None, {"Authorization": "Basic right-token"}),
            (None, {"Authorization": "right-token"}),
            (None, {"Authorization": "Bearer"}),
        ]:
            with pytest.raises(TransportError) as info:
                await WsTransport.open(srv.url, token=token, headers=headers)
            assert info.value.status == 401, (token, headers)
        ok = await WsTransport.open(srv.url, token="right-token")
        await ok.aclose()
        if backend == "websockets":
            return  # WebSocket mode only
        import httpx

        async with httpx.AsyncClient() as http:
            body = json.dumps({"model": "m", "input": "hi"})
            assert (await http.post(srv.http_url, content=body)).status_code == 401
            bad = await http.post(srv.http_url, content=body, headers={"Authorization": "Bearer nope"})
            assert bad.status_code == 401


@pytest.mark.parametrize(
    "argv",
    [
        ["--host", "0.0.0.0", "--port", "0"],
        ["--host", "::", "--port", "0"],
        ["--host", "example.com", "--port", "0"],
        ["--host", "0.0.0.0", "--port", "0", "--allow-remote"],  # the flag alone is not enough: needs --token
        ["--host", "192.168.1.5", "--port", "0", "--token", "t"],  # a token alone is not enough either
    ],
)
def test_non_loopback_bind_refused_without_the_flag(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """`slipstream serve` refuses a non-loopback address before binding anything."""
    assert cli.main(argv) == 2
    assert "refusing to bind non-loopback" in capsys.readouterr().err


# ---- API keys --------------------------------------------------------------------------------

PLANTED = "sk-planted-" + "Q7" * 20


async def _planted_key_leaks(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, level: int, backend: str
) -> list[str]:
    """Plant a key, use it for a session (settings, transcript store, logs, a crash); where does it show?"""
    caplog.set_level(level)
    keychain = MemoryKeyring()
    secrets = SecretStore(keychain, environ={})
    secrets.set("openai", PLANTED)
    config = tmp_path / "config" / "settings.json"
    save_settings(Settings(provider="openai", endpoint="ws://127.0.0.1:1/v1/responses", model="m"), config)
    with pytest.raises(SettingsError):
        save_settings(Settings(provider="openai", model=PLANTED), config)  # pasted into the wrong field
    config.write_text(config.read_text()[:-2] + f',\n  "api_key": "{PLANTED}"\n}}\n')  # a hand-edited file
    loaded = load_settings(config)
    save_settings(loaded.settings, config)  # the unknown field is dropped on the next save
    project = tmp_path / "project"
    project.mkdir()
    (project / "a.py").write_text("x = 1\n")
    history = HistoryStore(tmp_path / "data" / "history.sqlite3")
    key = secrets.get("openai")
    crash = ""
    async with SERVERS[backend](ScriptedEngine(rate_tps=0), token=key) as srv:
        ws = Workspace(project)
        endpoint = Endpoint(srv.url, key, model="m")
        session = ResponsesSession(endpoint, rebuild=ws.rebuild)
        sync = ContextSync(ws, session)
        await ws.start(watch=False)
        result = await sync.turn(
            [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello"}]}]
        )
        assert result.ok, result.error
        logging.getLogger("slipstream.test").info("session %r on %r", session.endpoint, endpoint)

        def explode(event: Any) -> None:
            raise RuntimeError(f"renderer crashed on {type(event).__name__} from {endpoint!r}")

        try:
            await session.run_turn(
                [{"type": "message", "role": "user", "content": "again"}], on_event=explode
            )
        except RuntimeError as exc:
            crash = "".join(traceback.format_exception(exc))
        rec = history.create_session(project, "chat")
        for item in session.client.transcript():
            history.append_item(rec.id, "item", dict(item))
        wrong = await ResponsesSession(Endpoint(srv.url, "sk-wrong-" + "x" * 20)).run_turn([])
        crash += wrong.error
        await sync.aclose()
        await ws.aclose()
        await session.aclose()
    history.close()
    assert "renderer crashed" in crash and "RuntimeError" in crash
    artefacts = {"log": caplog.text, "crash report": crash, "repr": repr(secrets) + repr(endpoint)}
    for path in tmp_path.rglob("*"):
        if path.is_file():
            artefacts[str(path)] = path.read_bytes().decode("utf-8", "replace")
    assert any(str(config) == k for k in artefacts) and any("history" in k for k in artefacts)
    return [where for where, text in artefacts.items() if PLANTED in text or PLANTED[:24] in text]


@pytest.mark.asyncio
@both_servers
async def test_planted_api_key_appears_in_no_file_log_transcript_or_crash_report(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, backend: str
) -> None:
    """The key goes keychain -> Authorization header only; config, history, INFO logs and crash text are clean."""
    assert await _planted_key_leaks(tmp_path, caplog, logging.INFO, backend) == []


@pytest.mark.asyncio
@both_servers
async def test_planted_api_key_stays_out_of_debug_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, backend: str
) -> None:
    """Even with every logger at DEBUG, the key never reaches a log record."""
    assert await _planted_key_leaks(tmp_path, caplog, logging.DEBUG, backend) == []


# ---- approvals -------------------------------------------------------------------------------


def test_command_policy_asks_unless_configured() -> None:
    """ask: always ask; never: deny; allow_list: exact argv or an explicit pattern, never with shell operators."""
    assert CommandPolicy().decide("pytest") == "ask"
    assert CommandPolicy("never", ("pytest",)).decide("pytest") == "deny"
    allow = CommandPolicy("allow_list", ("pytest", "git status", "pytest -q *"))
    assert allow.decide("pytest -q tests") == "allow"  # the explicit pattern the user wrote
    assert allow.decide("git status") == "allow"
    assert allow.decide("pytest --basetemp=/tmp/x") == "ask"  # no word-prefix match
    for cmd in [
        "pytest; rm -rf /",
        "pytest && curl x",
        "pytest | sh",
        "pytest $(id)",
        "pytest `id`",
        "pytest > /etc/x",
        "git statusx",
        "git",
        "rm -rf /",
        "pytest\nrm -rf /",
        "pytest 'unclosed",
    ]:
        assert allow.decide(cmd) == "ask", cmd
    assert CommandPolicy().with_allowed("npm test").decide("npm test") == "allow"


def test_tools_never_run_commands_or_write_patches_themselves(tmp_path: Path) -> None:
    """execute() defers run_command/run_tests and only proposes patches: nothing runs, nothing is written."""
    fs = ProjectFS(tmp_path, state_dir=tmp_path.parent / f"{tmp_path.name}-state")
    (tmp_path / "a.py").write_text("x = 1\n")
    ctx = ToolContext(fs)
    marker = tmp_path / "ran"
    for name, args in [("run_command", {"command": f"touch {marker}"}), ("run_tests", {"path": ""})]:
        result = execute(name, args, ctx)
        assert result.ok and result.deferred is not None
    patch = "*** Begin Patch\n*** Update File: a.py\n@@\n-x = 1\n+x = 2\n*** End Patch"
    proposed = execute("apply_patch", {"patch": patch}, ctx)
    assert proposed.ok and "waiting for the user's review" in proposed.output_text
    assert not marker.exists() and (tmp_path / "a.py").read_text() == "x = 1\n"


def _agent_script(marker: Path) -> Script:
    patch = "*** Begin Patch\n*** Update File: a.py\n@@\n-x = 1\n+x = 2\n*** End Patch"
    return [
        [{"tool_call": {"name": "run_command", "arguments": {"command": f"touch {marker}"}}}],
        [{"tool_call": {"name": "apply_patch", "arguments": {"patch": patch}}}],
        [{"text": "done"}],
    ]


async def _run_agent(
    tmp_path: Path, config: AgentConfig, answer: ApprovalDecision | None, script: Script
) -> list[str]:
    """One request through the real Agent; returns the approval kinds asked."""
    asked: list[str] = []

    async def approve(kind: str, title: str, payload: dict[str, Any]) -> ApprovalDecision:
        asked.append(kind)
        return answer or ApprovalDecision(False)

    project = tmp_path / "project"
    async with run_server(ScriptedEngine(rate_tps=0, script=script)) as srv:
        ws = Workspace(project)
        session = ResponsesSession(Endpoint(srv.url, srv.token), rebuild=ws.rebuild)
        sync = ContextSync(ws, session)
        await ws.start(watch=False)
        agent = Agent(
            sync,
            ProjectFS(project, state_dir=tmp_path / "state"),
            config=config,
            approve=approve if answer is not None else None,
        )
        outcome = await asyncio.wait_for(agent.run("go"), 60)
        assert outcome.status == "completed", outcome.message
        await sync.aclose()
        await ws.aclose()
        await session.aclose()
    return asked


@pytest.mark.asyncio
@pytest.mark.parametrize("answer", [None, ApprovalDecision(False)], ids=["no-approver", "user-refuses"])
async def test_agent_runs_no_command_and_no_patch_without_approval(tmp_path: Path, answer: Any) -> None:
    """Policy "ask": refused (or nobody to ask) means the command never starts and no file changes."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "a.py").write_text("x = 1\n")
    marker = tmp_path / "command-ran"
    asked = await _run_agent(tmp_path, AgentConfig(approval_policy="ask"), answer, _agent_script(marker))
    assert asked == ([] if answer is None else ["command", "patch"])
    assert not marker.exists()
    assert (project / "a.py").read_text() == "x = 1\n"


@pytest.mark.asyncio
async def test_agent_runs_the_command_once_approved(tmp_path: Path) -> None:
    """The same script with the user accepting: the command runs and the patch lands (the test can fail)."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "a.py").write_text("x = 1\n")
    marker = tmp_path / "command-ran"
    asked = await _run_agent(
        tmp_path, AgentConfig(approval_policy="ask"), ApprovalDecision(True), _agent_script(marker)
    )
    assert asked == ["command", "patch"]
    assert marker.exists() and (project / "a.py").read_text() == "x = 2\n"


@pytest.mark.asyncio
async def test_agent_asks_before_a_test_run(tmp_path: Path) -> None:
    """Policy "ask": a run_tests call is approved before any test process starts."""
    project = tmp_path / "project"
    project.mkdir()
    marker = tmp_path / "tests-ran"
    (project / "test_x.py").write_text(f"def test_x():\n    open({str(marker)!r}, 'w').close()\n")
    script: Script = [[{"tool_call": {"name": "run_tests", "arguments": {}}}], [{"text": "done"}]]
    asked = await _run_agent(tmp_path, AgentConfig(approval_policy="ask"), ApprovalDecision(False), script)
    assert not marker.exists() and asked == ["command"]
