"""OpenAI's Codex CLI on a local model: `codex exec` -> `slipstream serve --engine chat` (WebSocket
mode) -> llama-cpp-python's own OpenAI-compatible server -> a tiny GGUF model this test writes.

The recipe is the one in README ("Codex CLI on a local model"). Codex is installed from npm into
`~/.cache/slipstream-codex/<version>` once (about 420 MB) and reused; without the cache, the test
installs it when npm and its registry answer, and is skipped otherwise. The native binary needs no
network at run time: the config turns off update checks, analytics and feedback, and the only
connection it opens is to the server on 127.0.0.1.

How the model calls a tool: `write_scripted` builds a model whose next token depends only on the
current one. After the prompt's last newline it prefers the text "codex-bridge-ok", then a tool
call's JSON (split over a few tokens). The server is run with `--force-tool NAME`, so the first
step after the user's message goes upstream with `tool_choice` naming that tool; llama-cpp-python
turns the tool's JSON schema into a grammar, which rules out the plain text, so the model writes
the call. After the tool's result the client's `tool_choice` ("auto") goes up unchanged, no grammar
applies, and the model answers "codex-bridge-ok": the turn ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "llama_cpp.server",
    reason="llama-cpp-python[server] is not installed (optional extra slipstream[local]; built from source)",
)
pytest.importorskip("gguf", reason="the gguf package is not installed (optional extra slipstream[local])")

from app.server.app import run_server
from app.server.cli import build_engine, build_parser
from app.server.engines.base import Engine, EngineConnection, EngineOutput, Turn
from tests.server.fixtures.llama_server import llama_cpp_server
from tests.server.fixtures.make_tiny_gguf import write_scripted

pytestmark = pytest.mark.codex

CODEX_VERSION = "0.171.0"
CACHE = Path(os.environ.get("SLIPSTREAM_CODEX_CACHE", Path.home() / ".cache" / "slipstream-codex"))
TOKEN = "codex-test-token"
DONE = "codex-bridge-ok"
EXEC = ('{"cmd":"echo slipstream-ok', ' | tee proof.txt"}')
PATCH = ('{"input":"*** Begin Patch\\n', "*** Add File: hello.txt\\n+hi\\n", '*** End Patch\\n"}')

# What README shows, with the port, the instructions file and the catalog filled in by the test.
CONFIG = """\
model = "tiny"
model_provider = "slipstream"
model_catalog_json = "{catalog}"
model_instructions_file = "{instructions}"
approval_policy = "never"
sandbox_mode = "workspace-write"
check_for_update_on_startup = false
web_search = "disabled"

[features]
apps = false
plugins = false
goals = false
shell_snapshot = false

[agents]
enabled = false

[analytics]
enabled = false

[feedback]
enabled = false

[model_providers.slipstream]
name = "slipstream serve"
base_url = "http://127.0.0.1:{port}/v1"
wire_api = "responses"
supports_websockets = true
env_key = "SLIPSTREAM_TOKEN"
request_max_retries = 0
stream_max_retries = 0
"""
# Codex's model metadata for "tiny": short base instructions, apply_patch as a freeform tool.
CATALOG = {
    "models": [
        {
            "slug": "tiny",
            "display_name": "tiny",
            "description": "a local model behind slipstream serve",
            "default_reasoning_level": None,
            "supported_reasoning_levels": [],
            "shell_type": "unified_exec",
            "visibility": "list",
            "supported_in_api": True,
            "priority": 1,
            "availability_nux": None,
            "upgrade": None,
            "base_instructions": "You are a coding agent.",
            "model_messages": None,
            "supports_reasoning_summaries": False,
            "default_reasoning_summary": "none",
            "support_verbosity": False,
            "default_verbosity": None,
            "apply_patch_tool_type": "freeform",
            "truncation_policy": {"mode": "bytes", "limit": 10000},
            "supports_parallel_tool_calls": False,
            "supports_image_detail_original": False,
            "context_window": 16384,
            "auto_compact_token_limit": None,
            "effective_context_window_percent": 95,
            "experimental_supported_tools": [],
            "input_modalities": ["text"],
            "supports_search_tool": False,
            "include_skills_usage_instructions": False,
        }
    ]
}


# --------------------------------------------------------------------------------------------------
# Codex from npm, cached


def _npm(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["npm", *args, "--no-audit", "--no-fund", "--loglevel=error"],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def codex_binary() -> Path:
    """The cached `codex` launcher; installs it first when npm and the registry answer, else skips."""
    home = CACHE / CODEX_VERSION
    launcher = home / "node_modules" / ".bin" / "codex"
    if launcher.exists():
        return launcher
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.skip(f"Codex {CODEX_VERSION} is not cached in {home} and npm/node are not installed")
    package = f"@openai/codex@{CODEX_VERSION}"
    try:
        probe = _npm("view", package, "version", timeout=30)
    except subprocess.TimeoutExpired:
        pytest.skip(f"Codex {CODEX_VERSION} is not cached in {home} and the npm registry did not answer")
    if probe.returncode != 0:
        pytest.skip(
            f"Codex {CODEX_VERSION} is not cached and npm cannot reach it: {probe.stderr.strip()[:300]}"
        )
    CACHE.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{CODEX_VERSION}-", dir=CACHE))
    try:
        done = _npm("install", "--prefix", str(staging), package, timeout=1200)
        if done.returncode != 0:
            pytest.skip(f"npm install {package} failed: {done.stderr.strip()[:300]}")
        with contextlib.suppress(OSError):  # another run may have finished first: keep its copy
            staging.rename(home)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return launcher


# --------------------------------------------------------------------------------------------------
# the server side, watched


class WatchedConnection:
    """Passes everything to the real connection, noting each warm-up and turn in order."""

    def __init__(self, inner: EngineConnection, seen: list[Turn]) -> None:
        self._inner = inner
        self._seen = seen

    def prefill(self, turn: Turn) -> None:
        self._seen.append(turn)
        getattr(self._inner, "prefill", lambda t: None)(turn)

    def run(self, turn: Turn) -> AsyncIterator[EngineOutput]:
        self._seen.append(turn)
        return self._inner.run(turn)

    async def aclose(self) -> None:
        await self._inner.aclose()


class WatchedEngine:
    """The real engine; `connections` holds what each client connection's engine state saw."""

    def __init__(self, inner: Engine) -> None:
        self._inner = inner
        self.name = inner.name
        self.connections: list[list[Turn]] = []

    def connect(self) -> WatchedConnection:
        seen: list[Turn] = []
        self.connections.append(seen)
        return WatchedConnection(self._inner.connect(), seen)

    async def aclose(self) -> None:
        await self._inner.aclose()


# --------------------------------------------------------------------------------------------------
# the test


@pytest.fixture(scope="module")
def codex() -> Path:
    return codex_binary()


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gguf") / "scripted.gguf"
    follows = {
        "\n": [(DONE, 40.0), (EXEC[0], 30.0), (PATCH[0], 30.0)],
        EXEC[0]: [(EXEC[1], 40.0)],
        PATCH[0]: [(PATCH[1], 40.0)],
        PATCH[1]: [(PATCH[2], 40.0)],
    }
    return write_scripted(path, [*EXEC, *PATCH, DONE], follows)


async def run_codex(codex: Path, home: Path, project: Path, port: int, prompt: str) -> list[dict[str, Any]]:
    (home / "catalog.json").write_text(json.dumps(CATALOG))
    (home / "instructions.md").write_text("You are a coding agent. Use the tools to do what the user asks.\n")
    config = CONFIG.format(catalog=home / "catalog.json", instructions=home / "instructions.md", port=port)
    (home / "config.toml").write_text(config)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home.parent),
        "CODEX_HOME": str(home),
        "SLIPSTREAM_TOKEN": TOKEN,
        "NO_COLOR": "1",
    }
    proc = await asyncio.create_subprocess_exec(
        str(codex),
        "exec",
        "--json",
        "--skip-git-repo-check",
        "--strict-config",
        "-C",
        str(project),
        prompt,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=project,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 90)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, f"codex exited {proc.returncode}: {err.decode()[-2000:]}"
    return [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]


@pytest.mark.asyncio
@pytest.mark.timeout(300)
@pytest.mark.parametrize("tool", ["exec_command", "apply_patch"])
async def test_codex_completes_a_turn_with_a_tool_call_over_websocket(
    codex: Path, model: Path, tmp_path: Path, tool: str
) -> None:
    """One `codex exec` turn: the model calls the tool (shell command, or a freeform apply_patch),
    Codex runs it in the project folder, sends the result on the same socket with
    previous_response_id, and the model's answer ends the turn."""
    project, codex_home = tmp_path / "project", tmp_path / "codex-home"
    project.mkdir()
    codex_home.mkdir()
    async with llama_cpp_server(
        model, "--n_ctx", "16384", "--model_alias", "tiny", "--n_threads", "1"
    ) as url:
        argv = ["--engine", "chat", "--upstream", url, "--force-tool", tool, "--port", "0", "--token", TOKEN]
        engine = WatchedEngine(build_engine(build_parser().parse_args(argv)))
        async with run_server(engine, token=TOKEN) as srv:
            events = await run_codex(codex, codex_home, project, srv.port, "do the task")
            stats = srv.stats

    done = [e["item"] for e in events if e["type"] == "item.completed"]
    assert events[-1]["type"] == "turn.completed", events
    assert not [i for i in done if i["type"] == "error"], done  # e.g. no missing-model-metadata warning
    if tool == "exec_command":
        (ran,) = [i for i in done if i["type"] == "command_execution"]
        assert ran["command"].endswith("'echo slipstream-ok | tee proof.txt'") and ran["exit_code"] == 0
        assert "slipstream-ok" in ran["aggregated_output"]
        assert (project / "proof.txt").read_text() == "slipstream-ok\n"
    else:
        (change,) = [i for i in done if i["type"] == "file_change"]
        assert change["status"] == "completed" and change["changes"][0]["kind"] == "add"
        assert (project / "hello.txt").read_text() == "hi\n"
    assert done[-1] == {"id": done[-1]["id"], "type": "agent_message", "text": DONE}

    # Server side: one WebSocket connection carried the warm-up and both turns (over HTTP each
    # request would get its own engine connection, and warm-ups would never reach the engine).
    assert stats.connections == 1 and stats.failed == 0
    (turns,) = engine.connections
    warm, first, second = turns
    assert not warm.generate and first.generate and second.generate
    assert first.previous_response_id == warm.response_id
    assert (
        first.new_input[-1]["role"] == "user" and first.new_input[-1]["content"][0]["text"] == "do the task"
    )
    assert second.previous_response_id == first.response_id
    kind = "function_call_output" if tool == "exec_command" else "custom_tool_call_output"
    assert [i["type"] for i in second.new_input] == [kind]
