"""Tool arguments as data (run_tests, run_command) and another local user's traps (plugin folder, socket)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from app.adapters.proc import detect_test_command, plugin_dir
from app.adapters.project_fs import ProjectFS
from app.runtime import UnsafeRuntimeDir, runtime_dir
from app.server.app import run_server
from app.server.engines.scripted import Script, ScriptedEngine
from app.services.agent import Agent, AgentConfig
from app.services.approvals import ApprovalDecision
from app.services.session import Endpoint, ResponsesSession
from app.services.workspace import ContextSync, Workspace
from app.tools.specs import CommandPolicy


async def _agent_run(
    tmp_path: Path, project: Path, script: Script, config: AgentConfig
) -> tuple[list[str], list[str]]:
    """One request through the real agent; returns (approval kinds asked, tool outputs)."""
    asked: list[str] = []
    outputs: list[str] = []

    async def approve(kind: str, title: str, payload: dict[str, Any]) -> ApprovalDecision:
        asked.append(f"{kind}:{payload.get('command', '')}:{payload.get('shell', False)}")
        return ApprovalDecision(True)

    async with run_server(ScriptedEngine(rate_tps=0, script=script)) as srv:
        ws = Workspace(project, files=ProjectFS(project, state_dir=tmp_path / "state"))
        session = ResponsesSession(Endpoint(srv.url, srv.token), rebuild=ws.rebuild)
        sync = ContextSync(ws, session)
        await ws.start(watch=False)
        agent = Agent(
            sync,
            ws.files,
            config=config,
            approve=approve,
            on_tool_output=lambda call_id, text, ok: outputs.append(text),
        )
        outcome = await asyncio.wait_for(agent.run("go"), 120)
        assert outcome.status == "completed", outcome.message
        await sync.aclose()
        await ws.aclose()
        await session.aclose()
    return asked, outputs


@pytest.mark.asyncio
async def test_run_tests_arguments_cannot_become_pytest_options(tmp_path: Path) -> None:
    """`--basetemp=<dir>` and `--junitxml=<file>` as the path, or smuggled in the keyword, change nothing
    outside the project and the model is told the call was refused, not "PASSED"."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_ok.py").write_text("def test_ok():\n    pass\n")
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("keep\n")
    junit = tmp_path / "report.xml"
    junit.write_text("original\n")
    calls = [
        {"path": f"--basetemp={victim}"},
        {"path": f"--junitxml={junit}"},
        {"path": "-p no:cacheprovider"},
        {"keyword": f"x --basetemp={victim}"},
        {"keyword": f"--junitxml={junit}"},
        {"path": "../victim"},
    ]
    script: Script = [[{"tool_call": {"name": "run_tests", "arguments": a}}] for a in calls]
    script.append([{"text": "done"}])
    _asked, outputs = await _agent_run(tmp_path, project, script, AgentConfig(approval_policy="auto_all"))
    assert (victim / "keep.txt").read_text() == "keep\n"
    assert junit.read_text() == "original\n"
    assert len(outputs) == len(calls)
    assert sum("refused" in o or "error" in o for o in outputs[:3]) == 3
    assert "refused" in outputs[5] or "'..'" in outputs[5]


def test_test_command_keeps_targets_and_keyword_as_data(tmp_path: Path) -> None:
    """Targets follow `--`; the keyword is one argv element; a leading '-' is refused with words."""
    (tmp_path / "pyproject.toml").write_text("")
    cmd = detect_test_command(tmp_path, targets=["tests/test_a.py"], keyword="slow and not net", python="py")
    assert cmd.argv == [
        "py",
        "-m",
        "pytest",
        "-p",
        "slipstream_pytest_plugin",
        "-kslow and not net",
        "--",
        "tests/test_a.py",
    ]
    with pytest.raises(ValueError, match="not an option"):
        detect_test_command(tmp_path, targets=["--basetemp=/tmp/x"])


@pytest.mark.asyncio
async def test_run_command_runs_without_a_shell_and_asks_for_shell_lines(tmp_path: Path) -> None:
    """An allow-listed argv runs without asking and without a shell; extra words or shell syntax ask,
    and the approval says it is a shell line."""
    project = tmp_path / "project"
    project.mkdir()
    marker = tmp_path / "m"
    script: Script = [
        [{"tool_call": {"name": "run_command", "arguments": {"command": "echo hi"}}}],
        [{"tool_call": {"name": "run_command", "arguments": {"command": "echo hi; touch " + str(marker)}}}],
        [{"tool_call": {"name": "run_command", "arguments": {"command": "echo hi --extra"}}}],
        [{"text": "done"}],
    ]
    config = AgentConfig(approval_policy="ask", command_policy=CommandPolicy("allow_list", ("echo hi",)))
    asked, outputs = await _agent_run(tmp_path, project, script, config)
    assert asked == [f"command:echo hi; touch {marker}:True", "command:echo hi --extra:False"]
    assert outputs[0].startswith("$ echo hi") and "hi" in outputs[0]
    assert marker.exists()  # the user approved that shell line: it ran through the shell


@pytest.mark.skipif(
    os.name != "posix" or os.geteuid() != 0, reason="needs root to create another user's folder"
)
def test_a_runtime_folder_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    """A squatted runtime folder (another uid, or open to others) is refused, never used."""
    squat = tmp_path / "slipstream"
    squat.mkdir(mode=0o700)
    os.chown(squat, 4242, 4242)
    with pytest.raises(UnsafeRuntimeDir, match="another user"):
        runtime_dir(squat)
    with pytest.raises(UnsafeRuntimeDir, match="another user"):
        plugin_dir(squat)


def test_a_world_writable_runtime_folder_is_refused(tmp_path: Path) -> None:
    """A folder we own but others can write is refused too (mode checked on every use)."""
    loose = tmp_path / "loose"
    loose.mkdir()
    loose.chmod(0o777)
    with pytest.raises(UnsafeRuntimeDir, match="open to other users"):
        runtime_dir(loose)


def test_planted_modules_in_the_plugin_folder_are_removed(tmp_path: Path) -> None:
    """Anything but our plugin found in the private plugin folder (a planted pytest.py) is deleted, and
    the folder is 0700 under a 0700 runtime folder, not a predictable shared /tmp path."""
    base = tmp_path / "rt"
    folder = plugin_dir(base)
    (folder / "pytest.py").write_text("raise SystemExit('planted')\n")
    (folder / "conftest.py").write_text("x = 1\n")
    again = plugin_dir(base)
    assert again == folder and sorted(p.name for p in folder.iterdir()) == ["slipstream_pytest_plugin.py"]
    assert (folder.stat().st_mode & 0o777, base.stat().st_mode & 0o777) == (0o700, 0o700)
