"""AppServices (the UI's façade) without a UI: scripted first start, a turn, badges, history across restarts."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from app.adapters.store import HistoryStore
from app.render.transcript import Block, BlockKind
from app.services.api import BadgeTable
from app.services.app import AppServices
from app.services.endpoints import SCRIPTED_LABEL
from app.services.settings import Settings
from tests.conftest import wait_until
from tests.render.stream import drain

pytestmark = pytest.mark.asyncio


def blocks(svc: AppServices) -> list[Block]:
    """The conversation the services fed, worked through as a view's frames would."""
    drain(svc.conversation)
    return svc.conversation.blocks


def answer(svc: AppServices) -> str:
    return "".join(
        b.text
        for b in blocks(svc)
        if b.kind not in (BlockKind.USER, BlockKind.NOTICE, BlockKind.TOOL_CALL, BlockKind.TOOL_OUTPUT)
    )


def of_kind(svc: AppServices, kind: BlockKind) -> list[str]:
    return [b.text for b in blocks(svc) if b.kind is kind]


def ended(svc: AppServices, responses: int = 1) -> bool:
    """`responses` responses ended (completed or not) and the tool loop is idle."""
    drain(svc.conversation)
    return not svc.busy and bool(svc.conversation.status) and answers(svc) >= responses


def answers(svc: AppServices) -> int:
    return sum(1 for b in blocks(svc) if b.kind is BlockKind.USER)


class Recorder:
    def __init__(self, svc: AppServices) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        for name in (
            "connection_changed",
            "files_changed",
            "banner_changed",
            "busy_changed",
            "stats_changed",
        ):
            getattr(svc, name).connect(lambda *a, n=name: self.calls.append((n, a)))

    def of(self, name: str) -> list[tuple[Any, ...]]:
        return [a for n, a in self.calls if n == name]

    def states(self) -> dict[str, str]:
        """The badges as the Context panel has them: every `files_changed` folded in, in order."""
        return fold([a[0] for a in self.of("files_changed")])


def fold(changes: list[Any]) -> dict[str, str]:
    """The rows a UI holds after taking `changes` (FileChanges) in order."""
    table = BadgeTable()
    for ch in changes:
        table.take(ch)
    return {b.path: b.state for b in table.rows()}


def make(tmp_path: Path, root: Path, settings: Settings | None = None) -> AppServices:
    """Services on `root` with a private history database and no settings file written."""
    return AppServices(
        root, settings or Settings(), store=HistoryStore(tmp_path / "history.db"), persist_settings=False
    )


async def test_first_start_runs_scripted_answers_and_syncs_edits(tmp_path: Path) -> None:
    """No model configured: a scripted server, a banner, a streamed answer, badges that follow edits."""
    root = tmp_path / "p"
    root.mkdir()
    (root / "main.py").write_text("print('hi')\n")
    svc = make(tmp_path, root)
    rec = Recorder(svc)
    await svc.start()
    try:
        assert rec.of("banner_changed")[-1][0].startswith("No model is configured")
        await wait_until(lambda: rec.states().get("main.py") == "in_view", 15)
        svc.send_message("what does main.py do?")
        await wait_until(lambda: ended(svc), 15)
        assert svc.conversation.status == "completed" and of_kind(svc, BlockKind.USER) == [
            "what does main.py do?"
        ]
        assert "what does main.py do?" in answer(svc) and of_kind(svc, BlockKind.CODE)
        statuses = [a[0] for a in rec.of("connection_changed")]
        assert statuses[-1].engine == SCRIPTED_LABEL and statuses[-1].state in ("warm", "streaming")
        assert rec.of("stats_changed")[-1][0].last_turn_input_tokens > 0
        (root / "main.py").write_text("print('hello')\n")
        await wait_until(
            lambda: (
                rec.states().get("main.py") == "pending" or (svc.sync is not None and svc.sync.pushes >= 2)
            ),
            10,
        )
        await wait_until(lambda: rec.states().get("main.py") == "in_view", 10)
    finally:
        await svc.aclose()


async def test_reopening_restores_the_last_session(tmp_path: Path) -> None:
    """After a restart the transcript is replayed and the conversation continues on a rebuilt chain."""
    root = tmp_path / "p"
    root.mkdir()
    (root / "a.txt").write_text("alpha\n")
    svc = make(tmp_path, root)
    await svc.start()
    svc.send_message("remember the word pineapple")
    await wait_until(lambda: not svc.busy and svc.session is not None and svc.session.client.head(), 15)
    await asyncio.sleep(0.1)
    await svc.aclose()

    svc2 = make(tmp_path, root)
    await svc2.start()
    try:
        assert of_kind(svc2, BlockKind.USER) == ["remember the word pineapple"]
        assert answer(svc2)  # the restored answer is shown again
        assert any("Restored the session" in t for t in of_kind(svc2, BlockKind.NOTICE))
        assert svc2.list_sessions()[0].title.startswith("remember the word")
        svc2.send_message("and now?")
        await wait_until(lambda: ended(svc2, 2), 15)
        assert svc2.session is not None
        users = [i for i in svc2.session.client.transcript() if i.get("role") == "user"]
        texts = [str(i["content"]) for i in users]
        assert any("pineapple" in t for t in texts) and any("and now?" in t for t in texts)
    finally:
        await svc2.aclose()


async def test_rerun_tests_on_save(tmp_path: Path) -> None:
    """With the setting on, saving a file reruns the project's tests and their events stream out."""
    root = tmp_path / "p"
    root.mkdir()
    (root / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
    (root / "test_a.py").write_text("def test_a():\n    assert True\n")
    svc = make(tmp_path, root, Settings(rerun_tests_on_save=True))
    run = svc.test_run
    await svc.start()
    try:
        await asyncio.sleep(0.3)
        (root / "test_a.py").write_text("def test_a():\n    assert 1 == 2\n")
        await wait_until(lambda: run.finished, 30)
        assert [c.nodeid for c in run.failures()] == ["test_a.py::test_a"]
    finally:
        await svc.aclose()


async def test_run_then_rerun_failed_and_the_digest_rides_on_the_next_request(tmp_path: Path) -> None:
    """Run tests, then Rerun failed (only the failed id runs); the model's next request carries the
    digest of the last run, not its raw output."""
    root = tmp_path / "p"
    root.mkdir()
    (root / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
    (root / "test_a.py").write_text("def test_ok():\n    pass\n\n\ndef test_bad():\n    assert 1 == 2\n")
    svc = make(tmp_path, root)
    run = svc.test_run  # the Tests panel's model: every run's events, a new run starts it over
    await svc.start()
    try:
        svc.rerun_failed()  # nothing ran yet: said, nothing runs
        await wait_until(lambda: any("Nothing to rerun" in t for t in of_kind(svc, BlockKind.NOTICE)), 10)
        assert not run.started
        svc.run_tests()
        await wait_until(lambda: run.finished and not svc.tests.running, 30)
        assert run.collected == 2 and run.generation == 0
        svc.rerun_failed()
        await wait_until(lambda: run.generation == 1 and run.finished and not svc.tests.running, 30)
        assert run.collected == 1 and list(run.cases) == ["test_a.py::test_bad"]
        svc.send_message("why?")
        await wait_until(lambda: ended(svc), 15)
        assert svc.session is not None
        sent = [
            c["text"]
            for i in svc.session.client.transcript()
            if i.get("role") == "user"
            for c in i.get("content", [])
        ]
        assert sent[-2].startswith("[slipstream test run] The user reran the 1 failed test (")
        assert "FAILED test_a.py::test_bad - assert 1 == 2" in sent[-2] and "=====" not in sent[-2]
        assert sent[-1] == "why?"
    finally:
        await svc.aclose()


async def test_user_ignore_patterns_keep_files_out_of_the_model_view(tmp_path: Path) -> None:
    """A pattern from the settings excludes matching files (shown as excluded), like .gitignore would."""
    root = tmp_path / "p"
    root.mkdir()
    (root / "keep.py").write_text("x = 1\n")
    (root / "huge.log").write_text("noise\n")
    svc = make(tmp_path, root, Settings(ignore_patterns=["*.log"]))
    badges: list[Any] = []
    svc.files_changed.connect(badges.append)
    await svc.start()
    try:
        await wait_until(lambda: fold(badges).get("keep.py") == "in_view", 15)
        states = fold(badges)
        assert states.get("huge.log") in (None, "excluded")
        assert svc.workspace is not None and svc.workspace.last_snapshot is not None
        assert "noise" not in svc.workspace.last_snapshot.text
    finally:
        await svc.aclose()


async def test_local_chat_server_is_bridged_and_detected(tmp_path: Path) -> None:
    """Provider 'local' with an http:// Chat Completions URL: the app starts its own bridge in front of it."""
    from tests.server.engines.test_chat_completions import upstream

    root = tmp_path / "p"
    root.mkdir()
    (root / "a.py").write_text("x = 1\n")
    async with upstream() as up:
        svc = make(tmp_path, root, Settings(provider="local", endpoint=up.url + "/v1", model="m.gguf"))
        await svc.start()
        try:
            assert "(bridge)" in svc._engine_label and svc.endpoint is not None
            assert svc.endpoint.url.startswith("ws://127.0.0.1:")
            svc.send_message("hello")
            await wait_until(lambda: ended(svc), 20)
            assert svc.conversation.status == "completed"
            assert answer(svc)  # the upstream's recorded answer
            assert up.requests and up.requests[-1]["model"] == "m.gguf"
            sent = json.dumps(up.requests[-1]["messages"])
            assert "hello" in sent and "x = 1" in sent  # the snapshot and the question reached the model
        finally:
            await svc.aclose()


async def test_a_turn_is_counted_once_in_the_session_totals(tmp_path: Path) -> None:
    """One answered message: the session's input tokens are that turn's, not twice them."""
    root = tmp_path / "p"
    root.mkdir()
    (root / "main.py").write_text("print('hi')\n")
    svc = make(tmp_path, root)
    rec = Recorder(svc)
    await svc.start()
    try:
        await wait_until(
            lambda: (
                svc.sync is not None
                and svc.sync.pushes >= 1
                and svc.session is not None
                and not svc.session.busy
            ),
            15,
        )
        svc.send_message("hello")
        await wait_until(lambda: ended(svc), 15)
        stats = rec.of("stats_changed")[-1][0]
        assert stats.last_turn_input_tokens > 0
        assert stats.session_input_tokens == stats.last_turn_input_tokens
    finally:
        await svc.aclose()


async def test_new_session_while_the_warm_up_is_in_flight_keeps_history_consistent(tmp_path: Path) -> None:
    """New session pressed during a context push: refused with words, or done fully, never half done."""
    root = tmp_path / "p"
    root.mkdir()
    (root / "a.txt").write_text("alpha\n")
    svc = make(tmp_path, root)
    await svc.start()
    svc.send_message("remember the word pineapple")
    await wait_until(lambda: not svc.busy and svc.session is not None and svc.session.client.head(), 15)
    await svc.aclose()

    svc2 = make(tmp_path, root)
    await svc2.start()
    try:
        old = svc2.session_id
        await asyncio.sleep(0)  # the warm-up push has started: its request is in flight
        assert svc2.session is not None and svc2.session.client.in_flight()
        svc2.new_session()
        kept = [i for i in svc2.session.client.transcript() if i.get("role") == "user"]
        if svc2.session_id != old:
            assert kept == []
        else:
            assert kept and any(
                "try again" in t.lower() or "first" in t for t in of_kind(svc2, BlockKind.NOTICE)
            )
    finally:
        await svc2.aclose()


async def test_closing_cancels_a_scheduled_test_rerun(tmp_path: Path) -> None:
    """A save just before the window closes must not start the test suite after the services are gone."""
    root = tmp_path / "p"
    root.mkdir()
    svc = make(tmp_path, root, Settings(rerun_tests_on_save=True))
    await svc.start()
    svc.tests.on_disk_changed()  # a settled batch of changes: the rerun is due shortly
    handle = svc.tests._rerun_handle
    assert handle is not None
    await svc.aclose()
    assert handle.cancelled()


async def test_start_cancelled_while_the_scripted_server_boots_leaves_no_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Closing the app while its local server starts must not leave the child process running."""
    import os
    import sys

    import app.adapters.local_server as local_server

    pid_file = tmp_path / "pid"
    code = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    monkeypatch.setattr(local_server, "serve_command", lambda: [sys.executable, "-c", code])
    root = tmp_path / "p"
    root.mkdir()
    svc = make(tmp_path, root)
    task = asyncio.ensure_future(svc.start())
    await wait_until(lambda: pid_file.exists() and pid_file.read_text(), 15)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await svc.aclose()
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)


async def test_restored_calls_without_outputs_get_stub_outputs() -> None:
    """A history that ends mid tool loop is paired up, so the rebuilt chain is valid upstream."""
    from app.services.history import pair_calls as _pair_calls

    items = [
        {"type": "message", "role": "user", "content": "go"},
        {"type": "function_call", "call_id": "a", "name": "read_file", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "a", "output": "ok"},
        {"type": "function_call", "call_id": "b", "name": "run_tests", "arguments": "{}"},
    ]
    paired = _pair_calls(items)
    assert [i["type"] for i in paired][-2:] == ["function_call", "function_call_output"]
    assert paired[-1]["call_id"] == "b" and "not run" in paired[-1]["output"]
    assert _pair_calls(paired) == paired  # already paired: unchanged


async def test_stop_withdraws_an_open_approval(tmp_path: Path) -> None:
    """Stop while a command waits for the user: the request is withdrawn, so the UI can close its prompt."""
    root = tmp_path / "p"
    root.mkdir()
    svc = make(tmp_path, root, Settings())
    requests: list[Any] = []
    withdrawn: list[bool] = []

    def on_request(req: Any) -> None:
        requests.append(req)
        req.withdrawn.connect(lambda: withdrawn.append(True))

    svc.approval_requested.connect(on_request)
    await svc.start()
    try:
        svc.send_message('/call run_command {"command": "echo hi"}')
        await wait_until(lambda: requests, 15)
        svc.stop()
        await wait_until(lambda: not svc.busy, 10)
        assert withdrawn == [True]
    finally:
        await svc.aclose()
