"""Live context sync end to end: a real folder, the real watcher, a real server with a recording engine."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from app.server.app import run_server
from app.server.engines.base import EngineOutput, TextDelta, Turn
from app.services.session import Endpoint, ResponsesSession
from app.services.workspace import ContextSync, Push, Workspace
from tests.conftest import wait_until

pytestmark = pytest.mark.asyncio


class Recorder:
    """An engine that records every turn the server ran (shared across restarts)."""

    name = "recorder"

    def __init__(self) -> None:
        self.turns: list[Turn] = []

    def connect(self) -> Recorder:
        return self

    async def run(self, turn: Turn) -> AsyncIterator[EngineOutput]:
        self.turns.append(turn)
        yield TextDelta("ok")

    async def aclose(self) -> None:
        pass


def texts(items: Any) -> list[str]:
    out = []
    for item in items:
        content = item.get("content")
        if isinstance(content, list):
            out += [c.get("text", "") for c in content if isinstance(c, dict)]
        elif isinstance(content, str):
            out.append(content)
    return out


def chain_text(turn: Turn) -> str:
    """Everything the server holds for this chain, as one string."""
    return "\n".join(texts(list(turn.history) + list(turn.new_input)))


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


async def probe(sync: ContextSync, rec: Recorder) -> str:
    """Warm-ups never reach an engine: run a generating turn and return the chain the server holds."""
    result = await sync.turn([user("probe")])
    assert result.ok, result.error
    return chain_text(rec.turns[-1])


async def make(tmp_path: Path, srv: Any) -> tuple[Workspace, ResponsesSession, ContextSync, list[Push]]:
    ws = Workspace(tmp_path, quiet_s=0.03, max_window_s=0.3)
    session = ResponsesSession(Endpoint(srv.url, srv.token), rebuild=ws.rebuild, initial_delay=0.01)
    pushes: list[Push] = []
    sync = ContextSync(ws, session, on_push=pushes.append)
    await ws.start()
    return ws, session, sync, pushes


async def test_edits_reach_the_server_as_diffs_in_order_once_per_chain(tmp_path: Path) -> None:
    """Snapshot first, then one diff per settled edit; no edit appears twice in the chain."""
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / ".env").write_text("TOKEN=abc\n")
    rec = Recorder()
    async with run_server(rec) as srv:
        ws, session, sync, pushes = await make(tmp_path, srv)
        assert await sync.push()
        first = await probe(sync, rec)
        assert "x = 1" in first and "TOKEN=abc" not in first
        for i in range(2, 5):
            n = len(pushes)
            (tmp_path / "a.py").write_text(f"x = {i}\n")

            def grew(n: int = n) -> bool:
                return len(pushes) > n

            await wait_until(grew, 10)
        final = await probe(sync, rec)
        for i in range(2, 5):
            assert final.count(f"+x = {i}") == 1
        assert final.index("+x = 2") < final.index("+x = 3") < final.index("+x = 4")
        assert all(p.ok for p in pushes) and pushes[0].kind == "snapshot"
        await wait_until(lambda: all(s.state == "in_view" for s in ws.status() if s.path == "a.py"))
        assert {s.path: s.state for s in ws.status()}[".env"] == "excluded"
        await sync.aclose()
        await ws.aclose()
        await session.aclose()


async def test_server_restart_rebuilds_from_disk_and_loses_nothing(tmp_path: Path) -> None:
    """Killed and restarted mid-session: the next push is a fresh snapshot holding the latest disk state."""
    (tmp_path / "a.py").write_text("v = 'one'\n")
    rec = Recorder()
    async with run_server(rec) as srv:
        port, token = srv.port, srv.token
        ws, session, sync, _pushes = await make(tmp_path, srv)
        assert await sync.push()
    # the server is gone: edits made now must not be lost
    (tmp_path / "a.py").write_text("v = 'two'\n")
    (tmp_path / "b.py").write_text("new = True\n")
    await asyncio.sleep(0.5)
    async with run_server(rec, port=port, token=token):
        text = await probe(sync, rec)
        assert "v = 'two'" in text
        assert "v = 'one'" not in text  # the new chain starts from the disk as it is now
        assert text.count("new = True") == 1
        await sync.aclose()
        await ws.aclose()
        await session.aclose()


async def test_change_during_a_turn_waits_then_goes_out_once(tmp_path: Path) -> None:
    """While a turn is in flight an edit is not pushed; it goes out right after, exactly once."""
    (tmp_path / "m.py").write_text("a = 0\n")
    rec = Recorder()
    gate = asyncio.Event()
    base_run = rec.run

    async def gated(turn: Turn) -> AsyncIterator[EngineOutput]:
        await gate.wait()
        async for out in base_run(turn):
            yield out

    rec.run = gated  # type: ignore[method-assign]
    async with run_server(rec) as srv:
        ws, session, sync, pushes = await make(tmp_path, srv)
        await sync.push()
        turn = asyncio.ensure_future(sync.turn([user("hello")]))
        await wait_until(lambda: session.busy and rec.turns == [] and session.state == "streaming", 5)
        (tmp_path / "m.py").write_text("a = 1\n")
        await wait_until(lambda: ws.has_pending(), 5)
        await asyncio.sleep(0.2)
        assert len(pushes) == 1  # nothing pushed while the response is in flight
        gate.set()
        assert (await turn).ok
        await wait_until(lambda: len(pushes) == 2, 5)
        assert pushes[1].kind == "update" and pushes[1].ok
        text = await probe(sync, rec)
        assert text.count("+a = 1") == 1 and text.index("hello") < text.index("+a = 1")
        await sync.aclose()
        await ws.aclose()
        await session.aclose()


async def test_turn_after_a_push_stays_incremental(tmp_path: Path) -> None:
    """Pushes carry the turns' settings, so the next turn continues the chain instead of resending it."""
    (tmp_path / "big.py").write_text("data = 1\n" * 500)
    rec = Recorder()
    async with run_server(rec) as srv:
        ws, session, sync, _pushes = await make(tmp_path, srv)
        settings = {
            "instructions": "be brief",
            "tools": [
                {"type": "function", "name": "noop", "parameters": {"type": "object", "properties": {}}}
            ],
        }
        sync.settings = settings
        assert await sync.push()
        result = await sync.turn([user("hi")], settings=settings)
        assert result.ok
        turn = rec.turns[-1]
        assert turn.previous_response_id is not None  # chained on the warm-up
        assert texts(turn.new_input) == ["hi"]  # only the new item crossed the wire
        assert result.usage["input_tokens_details"]["cached_tokens"] > 1000
        assert result.bytes_sent < 2000
        await sync.aclose()
        await ws.aclose()
        await session.aclose()


class _GatedSession:
    """A stand-in ResponsesSession: pushes wait on a gate; every request is recorded."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.sent: list[tuple[bool, list[Any]]] = []
        self.stops = 0
        self.busy = False
        self.draining = False  # no stopped response ending in the background
        self.rebuild: Any = None
        self.chained = False

    async def run_turn(self, items: Any, *, generate: bool = True, **kw: Any) -> Any:
        from app.services.session import TurnResult

        if not self.chained:  # the first request starts the chain: the real session calls the hook here
            items = await self.rebuild(None, list(items))
            self.chained = True
        self.sent.append((generate, list(items)))
        self.busy = True
        try:
            if not generate:
                await self.gate.wait()
            return TurnResult("completed", "resp_x")
        finally:
            self.busy = False

    def stop(self) -> None:
        self.stops += 1


async def test_stop_while_a_turn_waits_behind_a_push_sends_nothing(tmp_path: Path) -> None:
    """Stop pressed during the push a turn waits for: the turn is not sent, the push is not cut."""
    (tmp_path / "a.py").write_text("x = 1\n")
    ws = Workspace(tmp_path)
    await ws.start(watch=False)
    fake = _GatedSession()
    fake.rebuild = ws.rebuild
    sync = ContextSync(ws, fake)  # type: ignore[arg-type]
    sync.push_soon()
    await wait_until(lambda: fake.sent, 5)
    turn = asyncio.ensure_future(sync.turn([user("hello")]))
    await asyncio.sleep(0.05)
    sync.stop()
    fake.gate.set()
    result = await asyncio.wait_for(turn, 5)
    assert result.status == "cancelled"
    assert [g for g, _ in fake.sent] == [False]  # only the push went out
    assert fake.stops == 0  # the push itself was not cut
    await sync.aclose()
    await ws.aclose()


async def test_a_deleted_project_root_is_said_not_silent(tmp_path: Path) -> None:
    """Deleting the project folder while watched ends in an error notice that names it (the batch reader
    used to die on RootMissingError with nothing shown), and `root_missing` fires once the reader sees it."""
    root = tmp_path / "proj"
    (root / "src").mkdir(parents=True)
    (root / "src" / "a.py").write_text("a = 1\n")
    ws = Workspace(root, quiet_s=0.02, max_window_s=0.2, force_polling=False)
    notices: list[tuple[str, str]] = []
    ws.notice.connect(lambda kind, text: notices.append((kind, text)))
    await ws.start(watch=True)
    try:
        import shutil

        (root / "src" / "a.py").write_text("a = 2\n")
        shutil.rmtree(root)
        await wait_until(lambda: any(k == "error" and str(root) in t for k, t in notices), timeout=10)
    finally:
        await ws.aclose()
    assert not any("Reading changed files failed" in t for _, t in notices)


async def test_root_missing_in_a_batch_stops_with_words(tmp_path: Path) -> None:
    """The batch reader meeting a vanished root says so and stops; it does not loop on resyncs."""
    from app.context.coalesce import Batch

    root = tmp_path / "proj"
    root.mkdir()
    (root / "a.py").write_text("a = 1\n")
    ws = Workspace(root)
    notices: list[str] = []
    gone: list[bool] = []
    ws.notice.connect(lambda kind, text: notices.append(text))
    ws.root_missing.connect(lambda: gone.append(True))
    await ws.start(watch=False)
    root.joinpath("a.py").unlink()
    root.rmdir()
    ws._batches.put_nowait(Batch(frozenset({"a.py"}), frozenset(), (), 1, 0.0, 0.1))
    reader = asyncio.ensure_future(ws._read_batches())
    await asyncio.wait_for(reader, 10)
    await ws.aclose()
    assert gone == [True] and any("was deleted or moved" in t for t in notices)


async def test_project_sized_work_runs_off_the_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Indexing and building a snapshot run on the workspace's worker thread, never the loop's;
    the UI gets rows that changed, the first batch resetting the table."""
    import threading

    from app.adapters.project_fs import ProjectFS
    from app.context.ledger import Ledger

    for i in range(3):
        (tmp_path / f"m{i}.py").write_text(f"x = {i}\n")
    threads: dict[str, str] = {}
    real_walk, real_snapshot = ProjectFS.iter_tree, Ledger.build_snapshot

    def walk(*a: Any, **k: Any) -> Any:
        threads["index"] = threading.current_thread().name
        return real_walk(*a, **k)

    def snapshot(self: Ledger, *a: Any, **k: Any) -> Any:
        threads["snapshot"] = threading.current_thread().name
        return real_snapshot(self, *a, **k)

    monkeypatch.setattr(ProjectFS, "iter_tree", walk)
    monkeypatch.setattr(Ledger, "build_snapshot", snapshot)
    ws = Workspace(tmp_path)
    got: list[Any] = []
    ws.files_changed.connect(got.append)
    try:
        await ws.start(watch=False)
        items = await ws.rebuild(None, [user("hi")])
        assert texts(items)[-1] == "hi" and "[slipstream project snapshot]" in texts(items)[0]
    finally:
        await ws.aclose()
    loop_thread = threading.current_thread().name
    assert threads["index"] != loop_thread and threads["snapshot"] == threads["index"]
    assert got[0].reset and not any(c.reset for c in got[1:])
    assert sorted(got[0].added) == ["m0.py", "m1.py", "m2.py"]
    assert all(not c.added for c in got[1:])  # later changes are badges, not new rows


async def _index_900_files(root: Path) -> list[Any]:
    """Index three folders of 300 files; what the UI was handed, batch by batch."""
    for d in range(3):
        (root / f"d{d}").mkdir()
        for i in range(300):
            (root / f"d{d}" / f"f{i}.txt").write_text("x\n")
    ws = Workspace(root)
    got: list[Any] = []
    ws.files_changed.connect(got.append)
    try:
        await ws.start(watch=False)
    finally:
        await ws.aclose()
    return got


async def test_index_rows_reach_the_ui_in_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While the first index runs, rows arrive in sorted batches marked `indexing`, then the rest."""
    from app.services import workspace as wsm

    monkeypatch.setattr(wsm, "INDEX_BATCH_S", 0.0)
    monkeypatch.setattr(wsm, "INDEX_ROWS_PER_S", 10**9)
    got = await _index_900_files(tmp_path)
    assert len(got) >= 3 and all(c.indexing for c in got[:-1]) and not got[-1].indexing
    assert all(list(c.added) == sorted(c.added) for c in got)
    rows = [p for c in got for p in c.added]
    assert len(rows) == len(set(rows)) == 900 and got[-1].counts == {"pending": 900}


async def test_first_context_ranks_readme_entry_points_and_edits_before_tests(tmp_path: Path) -> None:
    """A fresh clone (every file just written): README and the entry point first, tests last; a file
    the user edits after opening leads the next fresh chain; the panel is told the choices."""
    (tmp_path / "README.md").write_text("# demo\n")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "d"\n[project.scripts]\nd = "pkg.cli:main"\n')
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "cli.py").write_text("def main(): pass\n")
    (tmp_path / "pkg" / "core.py").write_text("x = 1\n")
    (tmp_path / "tests").mkdir()
    for i in range(5):
        (tmp_path / "tests" / f"test_{i}.py").write_text(f"def test_{i}(): pass\n")
    ws = Workspace(tmp_path, quiet_s=0.03, max_window_s=0.3)
    seen: list[Any] = []
    ws.files_changed.connect(seen.append)
    try:
        await ws.start()
        await ws.rebuild(None, [])
        assert ws.last_snapshot is not None
        paths = list(ws.last_snapshot.paths)
        assert paths[:4] == ["README.md", "pyproject.toml", "pkg/cli.py", "pkg/core.py"], paths
        summary = [c.snapshot for c in seen if c.snapshot is not None][-1]
        assert summary.full == tuple(paths) and summary.budget_tokens == ws.budget
        (tmp_path / "pkg" / "core.py").write_text("x = 2\n")
        await wait_until(lambda: ws.has_pending(), 10)
        await ws.rebuild(None, [])
        assert ws.last_snapshot.paths[0] == "pkg/core.py"
    finally:
        await ws.aclose()


async def test_index_batches_are_bounded_however_fast_the_walk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A walk faster than the batch clock still hands rows over in bounded batches, never the
    whole tree at the end."""
    from app.services import workspace as wsm

    monkeypatch.setattr(wsm, "INDEX_BATCH_S", 3600.0)  # the clock alone would never hand rows over
    monkeypatch.setattr(wsm, "INDEX_MAX_ROWS", 256)
    got = await _index_900_files(tmp_path)
    assert sum(len(c.added) for c in got) == 900
    assert len(got) >= 3 and max(len(c.added) for c in got) <= 256 + 256


async def test_a_big_tree_is_ready_before_it_is_hashed_and_loses_nothing(tmp_path: Path) -> None:
    """`hash_first=2`: the index reads two files and lists the rest by metadata; the snapshot goes
    out, then the rest is hashed on the worker. Hashing pushes nothing (nothing changed), every file
    ends up hashed, and an edit to a file that was only listed reaches the model in full."""
    for i in range(8):  # m4-m7 are too big for this budget: listed, never read for the snapshot
        (tmp_path / f"m{i}.py").write_text(f"v = {i}\n" + ("# padding\n" * 300 if i >= 4 else ""))
    rec = Recorder()
    async with run_server(rec) as srv:
        ws = Workspace(tmp_path, budget_tokens=1000, quiet_s=0.03, max_window_s=0.3, hash_first=2)
        session = ResponsesSession(Endpoint(srv.url, srv.token), rebuild=ws.rebuild, initial_delay=0.01)
        pushes: list[Push] = []
        sync = ContextSync(ws, session, on_push=pushes.append)
        await ws.start()
        assert len(await ws._job(ws.ledger.unhashed_paths)) == 6
        assert await sync.push()
        assert ws._hasher is not None  # the snapshot settled: hashing started
        await ws._hasher
        assert await ws._job(ws.ledger.unhashed_paths) == [] and not ws.has_pending()
        assert [p.kind for p in pushes] == ["snapshot"] and "m6.py" not in pushes[0].paths
        (tmp_path / "m6.py").write_text("v = 60\n")
        await wait_until(lambda: len(pushes) > 1, 10)
        assert pushes[1].ok and [c.path for c in pushes[1].changes] == ["m6.py"]
        assert "v = 60" in await probe(sync, rec)
        await sync.aclose()
        await ws.aclose()
        await session.aclose()


async def test_the_watch_is_armed_before_the_index_walks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The watcher starts on the worker as the job before the index (not beside it on another thread,
    where the two fought over the GIL): when the walk lists its first folder, every change from then
    on already reaches the watcher, so no edit can fall between the walk and the watch."""
    from app.adapters.project_fs import ProjectFS

    (tmp_path / "m0.py").write_text("x = 0\n")
    real_walk = ProjectFS.iter_tree
    ws = Workspace(tmp_path, quiet_s=0.02, max_window_s=0.2)
    modes: list[str | None] = []

    def walk(*a: Any, **k: Any) -> Any:
        assert ws._watcher is not None
        modes.append(ws._watcher.mode)
        yield from real_walk(*a, **k)

    monkeypatch.setattr(ProjectFS, "iter_tree", walk)
    try:
        await ws.start()
        assert modes == [ws.watch_mode] and ws.watch_mode in ("native", "polling")
    finally:
        await ws.aclose()


async def test_a_file_changed_while_the_index_runs_is_not_missed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The watcher starts with the index, not after it: an edit made behind the walk (to a file it
    already read) arrives as a change once the index is done."""
    import time

    from app.adapters.project_fs import ProjectFS

    for i in range(3):
        (tmp_path / f"m{i}.py").write_text(f"x = {i}\n")
    real_walk = ProjectFS.iter_tree
    ws = Workspace(tmp_path, quiet_s=0.02, max_window_s=0.2)

    def walk(*a: Any, **k: Any) -> Any:
        for n, v in enumerate(real_walk(*a, **k)):
            yield v
            if n == 0:  # m0.py was read: wait for the watcher, then change it behind the walk
                deadline = time.monotonic() + 10
                while ws._watcher is not None and ws._watcher.mode is None and time.monotonic() < deadline:
                    time.sleep(0.01)
                (tmp_path / "m0.py").write_text("x = 'changed while indexing'\n")

    monkeypatch.setattr(ProjectFS, "iter_tree", walk)
    try:
        await ws.start()
        want = (await ws._job(lambda: ws.files.read_version("m0.py"))).digest
        for _ in range(200):  # the event's batch is applied after the index, through the pump
            await ws.settle()
            got = await ws._job(lambda: ws.ledger.disk_version("m0.py"))
            if got is not None and got.digest == want:
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the edit made while indexing never reached the ledger")
        assert ws.has_pending()
    finally:
        await ws.aclose()


async def _armed_after_gap(ws: Workspace, gap: Any) -> None:
    """Start a `watch_after_ready` workspace, make the changes of `gap` before the watch is armed,
    then let it arm (as the first snapshot settling does) and wait for the catch-up to end."""
    if ws._arming is None:
        await ws.start()
    assert ws._watcher is not None and ws._watcher.mode is None and ws._arming is not None  # not armed yet
    gap()
    ws._settled_once.set()
    await ws._arming
    assert ws._watcher is not None and ws._watcher.mode is not None


def _disk(ws: Workspace, path: str) -> Any:
    return ws._job(lambda: ws.ledger.disk_version(path))


async def test_watch_armed_after_ready_loses_no_change_made_before_it(tmp_path: Path) -> None:
    """`watch_after_ready`: whatever changed between the index and the watch (a file created, edited,
    deleted, renamed, an edit that kept the size and the modification time of a file the index had
    read, a file listed only) is found by the catch-up and pending for the model."""
    import os

    for i in range(6):
        (tmp_path / f"m{i}.py").write_text(f"x = {i}\n" + "# pad\n" * (200 if i >= 4 else 0))
    ws = Workspace(tmp_path, quiet_s=0.02, max_window_s=0.2, hash_first=4, watch_after_ready=True)

    def gap() -> None:
        (tmp_path / "new.py").write_text("fresh = 1\n")
        (tmp_path / "m0.py").write_text("x = 'edited, longer'\n")
        (tmp_path / "m1.py").unlink()
        (tmp_path / "m2.py").rename(tmp_path / "moved.py")
        same = tmp_path / "m3.py"  # read and hashed by the index: same size, same time, other bytes
        st = same.stat()
        same.write_text("x = 9\n")
        os.utime(same, ns=(st.st_atime_ns, st.st_mtime_ns))
        (tmp_path / "m5.py").write_text("listed only, now shorter\n")

    try:
        await ws.start()
        before = await _disk(ws, "m3.py")
        await _armed_after_gap(ws, gap)
        assert (await _disk(ws, "new.py")).kind == "text"
        assert (await _disk(ws, "moved.py")).kind == "text"
        assert (await _disk(ws, "m1.py")) is None or not (await _disk(ws, "m1.py")).present
        assert (await _disk(ws, "m2.py")) is None or not (await _disk(ws, "m2.py")).present
        want = await ws._job(lambda: ws.files.read_version("m0.py").digest)
        assert (await _disk(ws, "m0.py")).digest == want
        m3 = await _disk(ws, "m3.py")
        assert before is not None and before.digest and m3.digest != before.digest
        assert m3.digest == await ws._job(lambda: ws.files.read_version("m3.py").digest)
        assert (await _disk(ws, "m5.py")).size == len("listed only, now shorter\n")
        assert ws.has_pending()
        # and the watch is live from here on
        (tmp_path / "after.py").write_text("y = 1\n")
        for _ in range(200):
            await ws.settle()
            if await _disk(ws, "after.py") is not None:
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the watch armed after the catch-up never saw a later file")
    finally:
        await ws.aclose()


async def test_an_ignore_file_changed_before_the_watch_reloads_the_rules(tmp_path: Path) -> None:
    """A .gitignore edited between the index and the watch: the catch-up reloads the rules and rescans,
    as the watcher's batch would have."""
    (tmp_path / "a.log").write_text("log\n")
    (tmp_path / "b.py").write_text("b = 1\n")
    ws = Workspace(tmp_path, quiet_s=0.02, max_window_s=0.2, watch_after_ready=True)
    try:
        await _armed_after_gap(ws, lambda: (tmp_path / ".gitignore").write_text("*.log\n"))
        assert (await _disk(ws, "a.log")).kind == "excluded"
        assert (await _disk(ws, "b.py")).kind == "text"
    finally:
        await ws.aclose()


async def test_the_watch_is_armed_after_ready_even_without_an_acknowledgement(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No endpoint, no snapshot ever settles: the watch is armed `ARM_WAIT_S` after the index anyway."""
    from app.services import workspace

    monkeypatch.setattr(workspace, "ARM_WAIT_S", 0.05)
    (tmp_path / "a.py").write_text("a = 1\n")
    ws = Workspace(tmp_path, quiet_s=0.02, max_window_s=0.2, watch_after_ready=True)
    try:
        await ws.start()
        assert ws._arming is not None
        await ws._arming
        assert ws.watch_mode in ("native", "polling")
    finally:
        await ws.aclose()


async def test_closing_while_the_watch_is_being_armed_stops_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aclose() while the arming's watcher start runs on the worker: the start ends, then the watcher
    is stopped (none left running)."""
    import threading

    from app.adapters.fs_watch import FsWatcher

    (tmp_path / "a.py").write_text("a = 1\n")
    started, go = threading.Event(), threading.Event()
    real_start = FsWatcher.start

    def slow_start(self: FsWatcher) -> Any:
        started.set()
        go.wait(5)
        return real_start(self)

    monkeypatch.setattr(FsWatcher, "start", slow_start)
    ws = Workspace(tmp_path, quiet_s=0.02, max_window_s=0.2, watch_after_ready=True)
    await ws.start()
    watcher = ws._watcher
    ws._settled_once.set()
    await wait_until(started.is_set, 10)
    closing = asyncio.ensure_future(ws.aclose())
    await asyncio.sleep(0.05)
    go.set()
    await closing
    assert watcher is not None and watcher._observer is None
