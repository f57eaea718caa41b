"""FsWatcher on a real temp dir: events on the loop, ignore rules, polling fallback, root loss."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import shutil
from pathlib import Path

import pytest

from app.adapters.fs_watch import BatchPump, FsWatcher
from app.adapters.project_fs import ProjectFS
from app.context.coalesce import Batch, Change, Coalescer
from app.context.ledger import Ledger
from tests.conftest import wait_until

pytestmark = pytest.mark.asyncio


class _Recorder:
    def __init__(self) -> None:
        self.changes: list[Change] = []
        self.notices: list[tuple[str, str]] = []

    def paths(self) -> set[str]:
        return {c.dest or c.path for c in self.changes}


def _fs(root: Path) -> ProjectFS:
    return ProjectFS(root, state_dir=root.parent / f"{root.name}-state")


def _watch(root: Path, rec: _Recorder, **kw: object) -> FsWatcher:
    w = FsWatcher(
        root,
        _fs(root),
        rec.changes.append,
        asyncio.get_running_loop(),
        on_notice=lambda k, t: rec.notices.append((k, t)),
        **kw,  # type: ignore[arg-type]
    )
    w.start()
    return w


async def test_native_events_arrive_on_the_loop_and_ignored_paths_do_not(tmp_path: Path) -> None:
    """A write to a source file is delivered; node_modules and .git churn are not."""
    (tmp_path / "node_modules").mkdir()
    (tmp_path / ".git").mkdir()
    rec = _Recorder()
    w = _watch(tmp_path, rec)
    try:
        assert w.mode == "native"
        (tmp_path / "node_modules" / "x.js").write_text("x")
        (tmp_path / ".git" / "index").write_text("x")
        (tmp_path / "a.py").write_text("print(1)\n")
        await wait_until(lambda: "a.py" in rec.paths())
        await asyncio.sleep(0.1)
        assert not any(p.startswith(("node_modules", ".git")) for p in rec.paths())
    finally:
        w.stop()


async def test_inotify_limit_falls_back_to_polling_with_a_notice(tmp_path: Path) -> None:
    """ENOSPC from the native observer: a clear message, then polling still sees changes."""

    def exhausted() -> object:
        raise OSError(errno.ENOSPC, "inotify watch limit reached")

    rec = _Recorder()
    w = _watch(tmp_path, rec, observer_factory=exhausted, polling_interval=0.1)
    try:
        assert w.mode == "polling"
        assert rec.notices and rec.notices[0][0] == "warning" and "max_user_watches" in rec.notices[0][1]
        (tmp_path / "b.py").write_text("x\n")
        await wait_until(lambda: "b.py" in rec.paths())
    finally:
        w.stop()


async def test_other_observer_errors_are_not_swallowed(tmp_path: Path) -> None:
    """Only the limit errors fall back; anything else is raised to the caller."""

    def broken() -> object:
        raise OSError(errno.EACCES, "denied")

    with pytest.raises(OSError, match="denied"):
        _watch(tmp_path, _Recorder(), observer_factory=broken)


async def test_root_that_disappears_is_reported(tmp_path: Path) -> None:
    """Removing the watched folder yields an error notice, not a crash."""
    root = tmp_path / "proj"
    root.mkdir()
    (root / "a.py").write_text("a\n")
    rec = _Recorder()
    w = _watch(root, rec)
    try:
        shutil.rmtree(root)
        await wait_until(lambda: w.root_lost)
        assert any(k == "error" and "removed or moved" in t for k, t in rec.notices)
    finally:
        w.stop()


async def test_missing_root_cannot_start(tmp_path: Path) -> None:
    """Starting on a folder that does not exist is a clear error."""
    w = FsWatcher(tmp_path / "nope", _fs(tmp_path), lambda c: None, asyncio.get_running_loop())
    with pytest.raises(FileNotFoundError):
        w.start()


async def test_save_to_update_message_end_to_end(tmp_path: Path) -> None:
    """watchdog -> pump -> coalescer -> read_batch -> ledger: an editor's save-by-rename is one diff."""
    (tmp_path / "m.py").write_text("a = 1\n")
    rules = _fs(tmp_path)
    ledger = Ledger()
    ledger.observe_many(rules.scan_tree())
    contents = rules.read_many(ledger.snapshot_candidates(1000))
    snap = ledger.build_snapshot(1000, now=0.0, contents=contents)
    ledger.mark_sent(snap.id, "c1")
    ledger.acknowledge(snap.id)
    batches: list[Batch] = []
    loop = asyncio.get_running_loop()
    pump = BatchPump(Coalescer(quiet=0.05, max_window=1.0), batches.append, loop)
    w = FsWatcher(tmp_path, rules, pump.feed, loop)
    w.start()
    try:
        tmp = tmp_path / ".m.py.tmp"
        tmp.write_text("a = 2\n")
        tmp.replace(tmp_path / "m.py")
        await wait_until(lambda: any("m.py" in b.paths for b in batches))
    finally:
        w.stop()
        pump.close()
    for b in batches:
        got = rules.read_batch(b, ledger.known_paths)
        for src, dst in got.moves:
            ledger.rename(src, dst)
        ledger.observe_many(got.versions)
    up = ledger.build_update(4000)
    assert up is not None and "-a = 1\n+a = 2" in up.text and ".m.py.tmp" not in up.text
    assert hashlib.blake2b(b"a = 2\n", digest_size=16).hexdigest() == ledger.disk_version("m.py").digest  # type: ignore[union-attr]


async def test_reading_files_is_not_an_event(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The app reads whole trees (index, search, hashing): the kernel is asked only for the events
    that are changes, so reads never reach the watcher's thread or the loop."""
    for i in range(30):
        (tmp_path / f"f{i}.py").write_text(f"x = {i}\n")
    seen: list[str] = []
    real_hop = FsWatcher._hop

    def hop(self: FsWatcher, event: object, src: str, dest: str) -> None:
        seen.append(type(event).__name__)
        real_hop(self, event, src, dest)  # type: ignore[arg-type]

    monkeypatch.setattr(FsWatcher, "_hop", hop)
    rec = _Recorder()
    w = _watch(tmp_path, rec)
    try:
        assert w.mode == "native"
        fs = _fs(tmp_path)
        assert len(fs.scan_tree()) == 30 and len(fs.read_many([f"f{i}.py" for i in range(30)])) == 30
        (tmp_path / "f0.py").write_text("x = 100\n")  # a real change, to know the reads' events are in
        await wait_until(lambda: "f0.py" in rec.paths())
        assert seen and not [t for t in seen if "Opened" in t or "Closed" in t], seen
    finally:
        w.stop()
