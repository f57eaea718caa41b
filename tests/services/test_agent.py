"""The tool loop against `slipstream serve` with a scripted rollout: read, patch (reviewed), test, undo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.adapters.project_fs import ProjectFS
from app.server.app import run_server
from app.server.engines.scripted import Script, ScriptedEngine, Step
from app.services.agent import Agent, AgentConfig
from app.services.approvals import ApprovalDecision
from app.services.session import Endpoint, ResponsesSession
from app.services.workspace import ContextSync, Workspace
from app.tools.specs import CommandPolicy

pytestmark = pytest.mark.asyncio

PATCH = """*** Begin Patch
*** Update File: calc.py
@@
 def add(a, b):
-    return a - b
+    return a + b
*** End Patch
"""

SCRIPT: Script = [
    [{"text": "Let me look."}, {"tool_call": {"name": "read_file", "arguments": {"path": "calc.py"}}}],
    [{"tool_call": {"name": "apply_patch", "arguments": {"patch": PATCH}}}],
    [{"tool_call": {"name": "run_tests", "arguments": {}}}],
    [{"text": "Fixed: `add` now adds. All tests pass."}],
]


def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    (root / "test_calc.py").write_text(
        "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"
    )
    (root / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
    return root


async def build(
    root: Path, srv: Any, tmp_path: Path, **cfg: Any
) -> tuple[Agent, list[tuple[str, dict[str, Any]]], list[dict[str, Any]], Workspace]:
    ws = Workspace(root)
    session = ResponsesSession(Endpoint(srv.url, srv.token), rebuild=ws.rebuild)
    sync = ContextSync(ws, session)
    await ws.start(watch=False)
    asked: list[tuple[str, dict[str, Any]]] = []
    tests: list[dict[str, Any]] = []

    async def approve(kind: str, title: str, payload: dict[str, Any]) -> ApprovalDecision:
        asked.append((kind, payload))
        return ApprovalDecision(True)

    agent = Agent(
        sync,
        ProjectFS(root, state_dir=tmp_path / "state"),
        config=AgentConfig(**cfg),
        approve=approve,
        on_test_event=tests.append,
    )
    return agent, asked, tests, ws


async def test_scripted_rollout_reads_patches_tests_and_undoes(tmp_path: Path) -> None:
    """Four turns: the patch is reviewed then applied, tests run live and pass, undo restores the file."""
    root = project(tmp_path)
    async with run_server(ScriptedEngine(rate_tps=0, script=SCRIPT)) as srv:
        agent, asked, tests, ws = await build(root, srv, tmp_path)
        outcome = await agent.run("add() is broken, please fix it")
        assert outcome.status == "completed", outcome.message
        assert outcome.turns == 4 and outcome.tool_calls == 3
        assert "return a + b" in (root / "calc.py").read_text()
        assert [k for k, _ in asked] == ["patch", "command"]  # the patch review, then the test run
        assert asked[0][1]["files"][0]["path"] == "calc.py"
        kinds = [e.get("kind") for e in tests]
        assert "run_started" in kinds and "run_finished" in kinds
        assert agent.last_test_run is not None and agent.last_test_run.ok
        transcript = agent.sync.session.client.transcript()
        outputs = [i for i in transcript if i.get("type") == "function_call_output"]
        assert len(outputs) == 3 and "def add" in outputs[0]["output"]
        assert agent.undo_last() == ["calc.py"]
        assert "return a - b" in (root / "calc.py").read_text()
        await agent.sync.session.aclose()
        await ws.aclose()


async def test_rejected_patch_leaves_the_disk_alone_and_tells_the_model(tmp_path: Path) -> None:
    """A rejected review writes nothing; the model reads why in the tool output."""
    root = project(tmp_path)
    async with run_server(ScriptedEngine(rate_tps=0, script=[*SCRIPT[1:2], [{"text": "ok"}]])) as srv:
        agent, _, _, ws = await build(root, srv, tmp_path)

        async def reject(kind: str, title: str, payload: dict[str, Any]) -> ApprovalDecision:
            return ApprovalDecision(False)

        agent._approve = reject
        outcome = await agent.run("fix it")
        assert outcome.status == "completed"
        assert "return a - b" in (root / "calc.py").read_text()
        out = [i for i in agent.sync.session.client.transcript() if i.get("type") == "function_call_output"]
        assert "not applied" in out[0]["output"]
        await agent.sync.session.aclose()
        await ws.aclose()


async def test_commands_never_run_without_approval(tmp_path: Path) -> None:
    """Policy 'never' refuses; 'ask' with a refusal does not start the process."""
    root = project(tmp_path)
    marker = root / "ran.txt"
    script: Script = [
        [{"tool_call": {"name": "run_command", "arguments": {"command": f"touch {marker}"}}}],
        [{"text": "done"}],
    ]
    for policy, answer in ((CommandPolicy("never"), True), (CommandPolicy("ask"), False)):
        async with run_server(ScriptedEngine(rate_tps=0, script=script)) as srv:
            agent, asked, _, ws = await build(root, srv, tmp_path, command_policy=policy)

            async def approve(
                kind: str,
                title: str,
                payload: dict[str, Any],
                answer: bool = answer,
                asked: list[tuple[str, dict[str, Any]]] = asked,
            ) -> ApprovalDecision:
                asked.append((kind, payload))
                return ApprovalDecision(answer)

            agent._approve = approve
            assert (await agent.run("touch it")).status == "completed"
            assert not marker.exists()
            out = [
                i for i in agent.sync.session.client.transcript() if i.get("type") == "function_call_output"
            ]
            assert "refused" in out[0]["output"] or "did not allow" in out[0]["output"]
            await agent.sync.session.aclose()
            await ws.aclose()


async def test_tool_turn_cap_stops_a_runaway_loop(tmp_path: Path) -> None:
    """A model that calls tools forever is stopped at the cap with words."""
    root = project(tmp_path)
    loop_turn: list[Step] = [{"tool_call": {"name": "list_files", "arguments": {}}}]
    async with run_server(ScriptedEngine(rate_tps=0, script=[loop_turn] * 50)) as srv:
        agent, _, _, ws = await build(root, srv, tmp_path, max_tool_turns=3)
        outcome = await agent.run("list forever")
        assert outcome.status == "cap" and "3" in outcome.message
        await agent.sync.session.aclose()
        await ws.aclose()


async def test_bad_tool_arguments_come_back_as_a_tool_error(tmp_path: Path) -> None:
    """Invalid arguments never crash the loop: the model gets an error it can act on."""
    root = project(tmp_path)
    script: Script = [
        [{"tool_call": {"name": "read_file", "arguments": {"path": "../../etc/passwd"}}}],
        [{"text": "sorry"}],
    ]
    async with run_server(ScriptedEngine(rate_tps=0, script=script)) as srv:
        agent, _, _, ws = await build(root, srv, tmp_path)
        assert (await agent.run("read outside")).status == "completed"
        out = [i for i in agent.sync.session.client.transcript() if i.get("type") == "function_call_output"]
        assert out[0]["output"].startswith("error:") and "root" in json.dumps(out[0]["output"]).lower()
        await agent.sync.session.aclose()
        await ws.aclose()


async def test_stop_while_a_patch_waits_for_review_refuses_it(tmp_path: Path) -> None:
    """Stop pressed with the review still open: the loop ends, nothing is written."""
    import asyncio

    root = project(tmp_path)
    async with run_server(ScriptedEngine(rate_tps=0, script=[*SCRIPT[1:2], [{"text": "ok"}]])) as srv:
        agent, _, _, ws = await build(root, srv, tmp_path)
        never: asyncio.Future[ApprovalDecision] = asyncio.get_running_loop().create_future()

        async def forever(kind: str, title: str, payload: dict[str, Any]) -> ApprovalDecision:
            agent.stop()  # the user presses Stop while the dialog is open
            return await never

        agent._approve = forever
        outcome = await asyncio.wait_for(agent.run("fix it"), 10)
        assert outcome.status == "cancelled"
        assert "return a - b" in (root / "calc.py").read_text()
        await agent.sync.session.aclose()
        await ws.aclose()


def _unanswered_calls(transcript: Any) -> list[str]:
    answered = {i.get("call_id") for i in transcript if i.get("type") == "function_call_output"}
    return [
        i["call_id"] for i in transcript if i.get("type") == "function_call" and i["call_id"] not in answered
    ]


async def test_calls_left_by_the_cap_are_answered_by_the_next_request(tmp_path: Path) -> None:
    """A loop ended at the cap owes outputs for its last calls; the next request pays them (no 400 upstream)."""
    root = project(tmp_path)
    loop_turn: list[Step] = [{"tool_call": {"name": "list_files", "arguments": {}}}]
    async with run_server(ScriptedEngine(rate_tps=0, script=[loop_turn, loop_turn, [{"text": "ok"}]])) as srv:
        agent, _, _, ws = await build(root, srv, tmp_path, max_tool_turns=1)
        assert (await agent.run("list forever")).status == "cap"
        assert (await agent.run("now just answer")).status == "completed"
        transcript = agent.sync.session.client.transcript()
        assert _unanswered_calls(transcript) == []
        outputs = [i for i in transcript if i.get("type") == "function_call_output"]
        assert "cap" in outputs[-1]["output"]
        await agent.sync.session.aclose()
        await ws.aclose()


async def test_calls_cut_by_stop_are_answered_by_the_next_request(tmp_path: Path) -> None:
    """Stop during a patch review: the refusal still reaches the model with the next request."""
    import asyncio

    root = project(tmp_path)
    async with run_server(ScriptedEngine(rate_tps=0, script=[*SCRIPT[1:2], [{"text": "ok"}]])) as srv:
        agent, _, _, ws = await build(root, srv, tmp_path)
        never: asyncio.Future[ApprovalDecision] = asyncio.get_running_loop().create_future()

        async def forever(kind: str, title: str, payload: dict[str, Any]) -> ApprovalDecision:
            agent.stop()
            return await never

        agent._approve = forever
        assert (await asyncio.wait_for(agent.run("fix it"), 10)).status == "cancelled"
        assert (await agent.run("never mind")).status == "completed"
        transcript = agent.sync.session.client.transcript()
        assert _unanswered_calls(transcript) == []
        assert "Stop" in next(i for i in transcript if i.get("type") == "function_call_output")["output"]
        await agent.sync.session.aclose()
        await ws.aclose()
