"""Live context sync: watch -> coalesce -> read -> ledger -> push, on one chain.

The workspace owns the `Ledger` and the watcher. It plugs into the session in two places:

- `rebuild(lane, items)` is `ResponsesSession`'s fresh-chain hook: every time a chain starts (first
  connection, `previous_response_not_found`, age limit, dropped socket, restarted server) it swaps the
  transcript's old context messages for one snapshot of the disk as it is *now*. So no change is lost
  and none is sent twice into one chain.
- `take_update()` gives the pending changes as one message for the next request: pushed at once
  with `generate:false` while the session is idle (`push()`), or carried by the next turn.

An update counts as acknowledged only when the response that carried it completed (`turn_done`).

Threads: work that scales with the project (indexing, reading, snapshots, badges of every file)
never runs on the event loop, which is the GUI thread in the app. One worker thread owns the ledger:
every ledger call is a job on it, in order, and the loop awaits the result. The loop only gets
values back: the pending flag, the rows whose badge changed (`files_changed` with `FileChanges`),
notices. While the first index runs, rows arrive in batches (`FileChanges.indexing`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from app.adapters.fs_read import RootMissingError
from app.adapters.fs_watch import BatchPump, FsWatcher
from app.adapters.git_facts import recent_commits
from app.adapters.project_fs import IGNORE_FILES, ProjectFS
from app.context.coalesce import Batch, Coalescer
from app.context.ledger import (
    BadgeTable,
    ContextUpdate,
    FileStatus,
    Ledger,
    PathChange,
    StatusChanges,
    is_context_item,
)
from app.context.snapshot import FileVersion, RankFacts, entry_points
from app.services.api import FileChanges, SnapshotSummary
from app.services.session import ResponsesSession, TurnResult
from app.services.signals import Signal

log = logging.getLogger(__name__)
Item = Mapping[str, Any]
T = TypeVar("T")
INDEX_BATCH_S = 0.25  # while indexing, hand rows to the UI at most this often
INDEX_ROWS_PER_S = 50_000  # and no more often than once per this many rows already indexed
# ... but never more rows at once than this: the GUI takes a batch in one go (~0.4 ms per 1,000 rows),
# and a fast walk left 90,000 rows for the last batch of a 100,000-file index (a 35-40 ms stall).
INDEX_MAX_ROWS = 16_384
BIG_PROJECT = (
    20_000  # files: from here a fresh chain's snapshot and its acknowledgement keep the collector off
)
GIL_SWITCH_S = 0.001  # see `_share_the_gil`
# Files read and hashed by the first index; the rest of a bigger tree is listed by its metadata and
# hashed after the first snapshot went out, so a 100,000-file project is ready in a fraction of the
# time. The listing of a tree this size is cut to folders anyway, so no badge there needs a read.
HASH_FIRST = 2_000
WATCH_START_WAIT_S = 10.0  # closing waits this long at most for a watcher still starting
HASH_CHUNK = 512  # files hashed per worker job afterwards: a save or an acknowledgement waits for one
# `watch_after_ready`: the watch is armed once the first snapshot settled, or this long after the
# index at the latest (no endpoint, a failed push): the catch-up finds what changed meanwhile anyway.
ARM_WAIT_S = 2.0
# The catch-up trusts an unchanged size and modification time, except for a file modified this close
# to the index (or later): a file system stamps times coarsely (a few ms; FAT: 2 s), so an edit of the
# same size right after the index read it can keep both. Those are read again and compared by digest.
RACY_S = 3.0


_indexing = 0  # indexes running now (another project may be opening)


@contextlib.contextmanager
def _settled_by_the_collector() -> Iterator[None]:
    """No automatic garbage collection while an index runs (or a job that touches every file), then
    its objects are frozen.

    An index creates a few objects per file; each automatic full collection on the way re-walked all
    of them with the GIL held, stalling the GUI thread 30-85 ms at a time (100,000 files). What the
    index built lives as long as the project, so it is moved out of the collector's sight afterwards
    (`gc.freeze`; reference counting still frees what is dropped later)."""
    global _indexing
    _indexing += 1
    gc.disable()
    try:
        yield
    finally:
        _indexing -= 1
        if not _indexing:
            gc.freeze()
            gc.enable()


def _share_the_gil() -> None:
    """While the worker computes, the GUI thread must get the GIL back within a millisecond, not
    CPython's default 5 ms: every Qt callback into Python waits for it, so a snapshot rebuilt on the
    worker stalled frames 11-25 ms at the default and 6-8 ms at 1 ms (bench_app, chain restart).
    Process-wide, so only ever lowered here."""
    if sys.getswitchinterval() > GIL_SWITCH_S:
        sys.setswitchinterval(GIL_SWITCH_S)


@dataclass(frozen=True, slots=True)
class Push:
    """One context message that went out (what `slipstream watch` prints)."""

    kind: str  # "snapshot" | "update"
    files: int
    bytes: int
    response_id: str | None
    latency_ms: float
    ok: bool
    error: str = ""
    paths: tuple[str, ...] = ()  # a snapshot's files
    changes: tuple[PathChange, ...] = ()  # an update's files and how each changed


class Workspace:
    """The model's view of one project folder (see module docstring)."""

    def __init__(
        self,
        root: Path,
        *,
        budget_tokens: int = 32_000,
        update_budget_tokens: int = 8_000,
        pins: Sequence[str] = (),
        user_ignores: Sequence[str] = (),
        quiet_s: float = 0.05,
        max_window_s: float = 1.0,
        force_polling: bool = False,
        clock: Callable[[], float] = time.time,
        files: ProjectFS | None = None,
        hash_first: int | None = HASH_FIRST,
        watch_after_ready: bool = False,
    ) -> None:
        self.root = Path(root).resolve()
        # The one owner of the project's files, shared with the tools: its rules apply to both.
        self.files = files if files is not None else ProjectFS(self.root, user_patterns=user_ignores)
        self.budget = budget_tokens
        self.update_budget = update_budget_tokens
        self.pins = list(pins)
        self._quiet, self._window = quiet_s, max_window_s
        self._force_polling = force_polling
        self._clock = clock
        self._hash_first = hash_first
        self._hasher: asyncio.Task[None] | None = None  # hashes what the index only listed
        self._watching: asyncio.Future[str] | None = None  # the watcher's start, on the worker
        # Arm the watch after the first snapshot settled, then catch up (see `_arm_after_ready`).
        self._watch_after_ready = watch_after_ready
        self._settled_once = asyncio.Event()  # the first snapshot was acknowledged (or failed)
        self._arming: asyncio.Task[None] | None = None
        self.ledger = Ledger()  # touched only on the worker thread (`_job`)
        _share_the_gil()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="slipstream-context")
        self._closing = threading.Event()
        self._watcher: FsWatcher | None = None
        self._pump: BatchPump | None = None
        self._chain = 0
        self._carried: list[str] = []  # update ids carried by the request in flight
        self._batches: asyncio.Queue[Batch] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self._resync_task: asyncio.Task[None] | None = None
        self._pending = False  # the ledger's has_pending() after the last job
        self._needs_snapshot = True
        self._rows = BadgeTable()  # the badges handed out so far (the loop's copy)
        self._emitted = False
        self.files_changed: Signal[[FileChanges]] = Signal("files_changed")
        self.notice: Signal[[str, str]] = Signal("notice")  # kind, text
        self.changed: Signal[[]] = Signal("changed")  # the ledger has something new to push
        self.root_missing: Signal[[]] = Signal("root_missing")  # the project folder is gone
        self.watch_mode = ""
        self.last_snapshot: ContextUpdate | None = None
        self._touched: dict[str, None] = {}  # changed since the project opened, oldest first (worker thread)
        self._committed: tuple[str, ...] | None = None  # git's recent files, read once (worker thread)

    # ---- the worker ------------------------------------------------------------------------------

    async def _job(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the ledger's thread; afterwards note the pending flag there too."""

        def run() -> T:
            out = fn()
            self._pending = self.ledger.has_pending()
            self._needs_snapshot = self.ledger.needs_snapshot
            return out

        return await asyncio.wrap_future(self._worker.submit(run))

    def _emit(
        self, changes: StatusChanges, *, indexing: bool = False, snapshot: SnapshotSummary | None = None
    ) -> None:
        """On the loop: hand the changed rows to the UI (and keep the loop's copy of them)."""
        if not changes and snapshot is None and (self._emitted or indexing):
            return
        self._rows.take(changes)
        reset = not self._emitted
        self._emitted = True
        self.files_changed.emit(
            FileChanges(
                changes.rows,
                changes.added,
                changes.removed,
                changes.counts,
                reset=reset,
                indexing=indexing,
                order=changes.order,
                snapshot=snapshot,
                base=changes.base,
                rebased=changes.rebased,
            )
        )

    def _emit_indexing(self, changes: StatusChanges, shown: threading.Event) -> None:
        try:
            self._emit(changes, indexing=True)
        finally:
            shown.set()

    # ---- start / stop --------------------------------------------------------------------------

    async def start(self, *, watch: bool = True) -> None:
        """Index the tree on the worker, rows reaching the UI as they are found, and start watching."""
        loop = asyncio.get_running_loop()
        for note in self.files.recovered:  # a patch a crash interrupted was rolled back on open
            self.notice.emit("warning", note)
        errors: list[str] = []

        def index() -> StatusChanges:
            led, last, shown = self.ledger, time.monotonic(), threading.Event()
            taken = 0  # files observed when the last batch went to the UI
            walk = self.files.iter_tree(
                on_error=lambda p, e: errors.append(f"{p}: {e}"), hash_first=self._hash_first
            )
            for n, v in enumerate(walk):
                led.observe(v)
                # Rows reach the UI in batches, less often as the table grows (each costs the GUI a
                # merge of sorted rows) but never too many at once; the walk waits while the GUI
                # takes one, so the two never fight over the GIL.
                if n % 256 == 0 and (
                    n - taken >= INDEX_MAX_ROWS
                    or time.monotonic() - last >= max(INDEX_BATCH_S, n / INDEX_ROWS_PER_S)
                ):
                    if self._closing.is_set():
                        break
                    shown.clear()
                    loop.call_soon_threadsafe(self._emit_indexing, led.take_changes(), shown)
                    shown.wait(1.0)
                    last, taken = time.monotonic(), n
            return led.take_changes()

        if watch and not self._closing.is_set():
            self._pump = BatchPump(Coalescer(self._quiet, self._window), self._batches.put_nowait, loop)
            self._watcher = FsWatcher(
                self.root,
                self.files,
                self._pump.feed,
                loop,
                on_notice=self.notice.emit,
                force_polling=self._force_polling,
            )
            # Watching starts before the index, not after it: a change made while the tree is walked
            # is not missed (its batch waits for the index). Started by the worker as the job before
            # the index: watchdog's own walk of the tree (a watch per folder) is Python under the GIL,
            # and run beside the index on another thread the two fought over it, the GUI as well.
            # Or, `watch_after_ready`, armed once the first snapshot settled, with a catch-up.
            if not self._watch_after_ready:
                self._watching = asyncio.wrap_future(self._worker.submit(self._watcher.start))
        try:
            listed_at = time.time()  # the file system's clock, for the catch-up's racy files
            with _settled_by_the_collector():
                changes = await self._job(index)
            for e in errors[:5]:
                self.notice.emit("warning", f"Cannot read {e}")
            self._emit(changes)
            if self._watcher is not None and self._watching is None and not self._closing.is_set():
                self._arming = asyncio.ensure_future(self._arm_after_ready(listed_at))
            elif self._watching is not None and not self._closing.is_set():
                self.watch_mode = await self._watching
                self._reader = asyncio.ensure_future(self._read_batches())
        except BaseException:
            await self._unwatch()
            raise

    async def _arm_after_ready(self, listed_at: float) -> None:
        """`watch_after_ready`: start the watcher once the first snapshot settled (its walk of the
        tree is not in the way of the first snapshot then), then compare the disk with what the index
        found, so that nothing changed between the index and the watch is lost: a new file, a changed
        size, modification time or exclusion, a file gone, and a file modified close to the index
        (`RACY_S`) read again and compared by digest. An ignore file among them: a full rescan."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._settled_once.wait(), ARM_WAIT_S)
        if self._closing.is_set() or self._watcher is None:
            return
        self._watching = asyncio.wrap_future(self._worker.submit(self._watcher.start))
        try:
            # shielded: closing meanwhile waits for the start to end, then stops it (`_unwatch`)
            self.watch_mode = await asyncio.shield(self._watching)
        except (FileNotFoundError, RootMissingError):
            self.root_missing.emit()
            return
        except Exception as exc:
            log.exception("starting the file watcher failed")
            self.notice.emit("error", f"Watching the project for changes failed: {exc}")
            return
        self._reader = asyncio.ensure_future(self._read_batches())
        walk = self.files.iter_tree(hash_first=0)
        seen: set[str] = set()
        rules_changed = False

        def changed(v: FileVersion, d: FileVersion | None) -> bool:
            if d is None or v.kind == "excluded" or d.kind == "excluded":
                return d is None or (v.kind, v.reason) != (d.kind, d.reason)
            return (
                d.kind not in ("text", "binary", "oversized")
                or v.kind not in ("text", "oversized")
                or (v.size, v.mtime) != (d.size, d.mtime)
            )

        def look(path: str, d: FileVersion | None, listed: FileVersion | None) -> None:
            """Read `path` again where the listing leaves a doubt, and observe what differs."""
            nonlocal rules_changed
            racy = d is not None and d.hashed and d.mtime >= listed_at - RACY_S
            if listed is not None and not changed(listed, d) and not racy:
                return
            now = self.files.read_version(path, keep_text=False)
            if d is None or (now.kind, now.size, now.mtime, now.digest, now.reason) != (
                d.kind,
                d.size,
                d.mtime,
                d.digest,
                d.reason,
            ):
                if listed is None and d is not None and not d.hashed and now.hashed and not changed(now, d):
                    return  # only listed, still the same size and time: the hasher will take it
                self.ledger.observe(now)
                rules_changed = rules_changed or path.rsplit("/", 1)[-1] in IGNORE_FILES

        def chunk() -> tuple[StatusChanges, bool]:
            led, n = self.ledger, 0
            for v in itertools.islice(walk, HASH_CHUNK):
                n += 1
                seen.add(v.path)
                look(v.path, led.disk_version(v.path), v)
            if n == HASH_CHUNK:
                return led.take_changes(), False
            for p in led.present_paths():  # the walk is over: what it did not find is gone (or excluded)
                if p not in seen and not p.endswith("/"):
                    look(p, led.disk_version(p), None)
            return led.take_changes(), True

        try:
            await self._chunks(chunk)
            if rules_changed and not self._closing.is_set():
                await self._resync_and_push()
        except (FileNotFoundError, RootMissingError):
            pass  # the folder went away: the watcher says so
        except Exception:
            log.exception("catching up with changes made before the watcher started failed")
            self.notice.emit("error", "Catching up with changes failed; see the log. Resyncing.")
            await self._resync_and_push()
        finally:
            with contextlib.suppress(RuntimeError):  # the worker is shut down: the walk dies with it
                self._worker.submit(walk.close)

    async def _chunks(self, chunk: Callable[[], tuple[StatusChanges, bool]]) -> None:
        """Run `chunk` as worker jobs until it says it is done (or the workspace closes), handing each
        job's changes on as it ends: a save or an acknowledgement waits for one chunk at most."""
        done = False
        while not done and not self._closing.is_set():
            changes, done = await self._job(chunk)
            self._emit(changes)
            if self._pending:
                self.changed.emit()

    async def _unwatch(self) -> None:
        """Stop the watcher, once its start (on another thread) is over: stopping one that is still
        starting would leave its thread running."""
        if self._watching is not None:
            await asyncio.wait([self._watching], timeout=WATCH_START_WAIT_S)
            if self._watching.done() and not self._watching.cancelled():
                self._watching.exception()  # retrieved: a failed start was said by start() already
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
        if self._pump is not None:
            self._pump.close()

    async def aclose(self) -> None:
        self._closing.set()
        await self._unwatch()
        if self._arming is not None:
            self._arming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._arming
            await self._unwatch()  # a watcher the arming started meanwhile
        for task in (self._reader, self._resync_task, self._hasher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._worker.shutdown(wait=False, cancel_futures=True)
        await asyncio.get_running_loop().run_in_executor(None, self._worker.shutdown)  # join the thread

    async def _hash_rest(self) -> None:
        """Read and hash the files the index listed by their metadata only (`Ledger.fill`), a chunk
        per worker job, so other jobs (a save, an acknowledgement) never wait for more than a chunk.
        A file that changed meanwhile is news like any change, and is pushed."""
        paths = await self._job(lambda: frozenset(self.ledger.unhashed_paths()))
        if not paths:
            return
        walk = self.files.iter_tree(only=paths)

        def chunk() -> tuple[StatusChanges, bool]:
            led, n = self.ledger, 0
            for v in itertools.islice(walk, HASH_CHUNK):
                led.fill(v)
                n += 1
            return led.take_changes(), n < HASH_CHUNK  # fewer: the walk is over

        try:
            await self._chunks(chunk)
        except (FileNotFoundError, RootMissingError):
            pass  # the folder went away: the watcher says so; files stay listed, unhashed
        except Exception:  # a file the walk could not take is listed as unreadable, so this is a bug
            log.exception("hashing the rest of the tree failed; its files stay listed, unhashed")
        finally:
            with contextlib.suppress(RuntimeError):  # the worker is shut down: the walk dies with it
                self._worker.submit(walk.close)

    async def settle(self) -> None:
        """Take a batch that is still in the coalescer now (tests, shutdown)."""
        if self._pump is not None:
            batch = self._pump.flush()
            if batch is not None:
                await self._apply(batch)
        while not self._batches.empty():
            await self._apply(self._batches.get_nowait())
        if self._resync_task is not None and not self._resync_task.done():
            await self._resync_task  # a Settings rule change still rescanning

    async def _read_batches(self) -> None:
        while True:
            batch = await self._batches.get()
            try:
                await self._apply(batch)
            except (FileNotFoundError, RootMissingError):
                self.notice.emit(
                    "error",
                    f"The project folder {self.root} was deleted or moved; watching stopped. "
                    "Reopen the project when it is back.",
                )
                self.root_missing.emit()
                return
            except Exception:
                log.exception("reading a batch of changes failed")
                self.notice.emit("error", "Reading changed files failed; see the log. Resyncing.")
                await self.resync()

    async def _apply(self, batch: Batch) -> None:
        def apply() -> tuple[StatusChanges, bool]:
            led = self.ledger
            read = self.files.read_batch(batch, led.known_paths)
            for src, dst in read.moves:
                led.rename(src, dst)
                self._touched.pop(src, None)
            led.observe_many(read.versions)
            for v in read.versions:  # the user's own edits lead the next snapshot
                self._touched.pop(v.path, None)
                if v.present:
                    self._touched[v.path] = None
            return led.take_changes(), read.rules_changed

        changes, rules_changed = await self._job(apply)
        if rules_changed:  # the files object reloaded its rules: the tools and the watcher see them already
            self._emit(changes)
            await self.resync()
        else:
            self._emit(changes)
        self.changed.emit()

    async def resync(self) -> None:
        """A full rescan (ignore rules changed, a read failed)."""

        def rescan() -> StatusChanges:
            led = self.ledger
            led.observe_many(self.files.resync(led.known_paths()))
            return led.take_changes()

        self._emit(await self._job(rescan))

    def set_user_ignores(self, patterns: Sequence[str]) -> None:
        """New ignore patterns from Settings: the tools follow at once, the context after a rescan."""
        if list(patterns) == self.files.user_patterns:
            return
        self.files.reload_rules(list(patterns))
        if self._resync_task is None or self._resync_task.done():
            self._resync_task = asyncio.ensure_future(self._resync_and_push())

    async def _resync_and_push(self) -> None:
        await self.resync()
        self.changed.emit()

    @property
    def rules(self) -> Any:
        """The current ignore rules (owned by `files`)."""
        return self.files.rules

    # ---- the session hooks ---------------------------------------------------------------------

    async def rebuild(self, lane: str | None, items: list[Item]) -> list[Item]:
        """The session's fresh-chain hook: a snapshot of the disk now + the non-context transcript.
        The snapshot (ranking every file, reading the chosen ones) is built on the worker."""
        self._chain += 1
        chain_id, pins, budget = self.chain_id, list(self.pins), self.budget

        def build() -> tuple[ContextUpdate, StatusChanges]:
            led = self.ledger
            led.chain_lost()
            facts = self._rank_facts()
            cands = led.snapshot_candidates(budget, pins, self._clock(), facts)
            contents = self.files.read_many(cands)  # bounded by the token budget
            snap = led.build_snapshot(budget, self._clock(), pins, contents, facts)
            led.mark_sent(snap.id, chain_id)
            return snap, led.take_changes()

        with self._collector_off():
            snap, changes = await self._job(build)
        self._carried = [snap.id]
        self.last_snapshot = snap
        for text in snap.notices:
            self.notice.emit("warning", text)
        self._emit(changes, snapshot=SnapshotSummary(budget, snap.tokens, snap.paths, len(snap.summarised)))
        return [snap.item, *(i for i in items if not is_context_item(i))]

    async def new_chain(self) -> None:
        """Turns go somewhere else now (Settings changed the endpoint): nothing was sent there, so the
        next request starts a chain with a snapshot, and the badges say so meanwhile."""

        def lose() -> StatusChanges:
            self.ledger.chain_lost()
            return self.ledger.take_changes()

        self._emit(await self._job(lose))

    def _rank_facts(self) -> RankFacts:
        """On the worker: what ranks the first context besides the index (manifests' entry points,
        the user's edits since open, git's recent commits), gathered through the adapters."""
        if self._committed is None:
            self._committed = recent_commits(self.root)
        known = set(self.ledger.known_paths())
        manifests = {
            name: v.text
            for name, v in self.files.read_many(
                [m for m in ("pyproject.toml", "setup.cfg", "package.json") if m in known]
            ).items()
            if v.text is not None
        }
        return RankFacts(entry_points(manifests, known), tuple(self._touched), self._committed)

    @property
    def chain_id(self) -> str:
        return f"chain-{self._chain}"

    @property
    def needs_snapshot(self) -> bool:
        """No chain yet (or it was lost): the next request starts one with a snapshot."""
        return self._needs_snapshot

    def has_pending(self) -> bool:
        """Changes not yet put into a message for this chain (as of the last finished job)."""
        return self._pending

    async def take_update(self) -> ContextUpdate | None:
        """The pending changes as one message for the next request (None: nothing, or a fresh chain
        is due, in which case the rebuild hook will describe the disk instead)."""
        if self._needs_snapshot:
            return None
        chain_id, budget = self.chain_id, self.update_budget

        def build() -> ContextUpdate | None:
            led = self.ledger
            if led.needs_snapshot:
                return None
            update = led.build_update(budget)
            if update is not None:
                led.mark_sent(update.id, chain_id)
            return update

        update = await self._job(build)
        if update is None:
            return None
        self._carried.append(update.id)
        for text in update.notices:
            self.notice.emit("warning", text)
        return update

    def take_carried(self) -> list[str]:
        """The update ids the request in flight carries, handed over (see `turn_done`'s `ids`)."""
        carried, self._carried = self._carried, []
        return carried

    async def turn_done(self, ok: bool, ids: Sequence[str] | None = None) -> None:
        """The request that carried the pending updates ended: acknowledge them, or roll them back.
        `ids`: the updates of an earlier request, taken with `take_carried` (a stopped response that
        ends later, after the next request may have carried others)."""
        carried = list(ids) if ids is not None else self.take_carried()

        def settle() -> StatusChanges:
            led = self.ledger
            for uid in carried:
                if ok:
                    led.acknowledge(uid)
                else:
                    led.fail(uid)
            return led.take_changes()

        snapshot = self.last_snapshot is not None and self.last_snapshot.id in carried
        if snapshot:
            self._settled_once.set()  # `watch_after_ready`: the watch may be armed now
        with self._collector_off() if snapshot else contextlib.nullcontext():
            self._emit(await self._job(settle))
        if snapshot and self._hasher is None and not self._closing.is_set():
            # the first snapshot went out (or failed): now the rest of a big tree is hashed
            self._hasher = asyncio.ensure_future(self._hash_rest())

    def _collector_off(self) -> contextlib.AbstractContextManager[None]:
        """A fresh chain touches every file: in a big project, no collections meanwhile (see above)."""
        return _settled_by_the_collector() if len(self._rows) >= BIG_PROJECT else contextlib.nullcontext()

    def status(self) -> list[FileStatus]:
        """Every badge handed out so far, sorted by path (O(files): listings and tests)."""
        return self._rows.rows()


class ContextSync:
    """Joins a Workspace and a ResponsesSession: idle pushes, and updates carried by turns.

    `push_soon()` (connected to `workspace.changed`) pushes pending changes with `generate:false`
    while the session is idle; while a turn is in flight they wait and ride along with the next
    request (`turn()`), or are pushed as soon as the session is idle again.
    """

    def __init__(
        self,
        workspace: Workspace,
        session: ResponsesSession,
        *,
        on_push: Callable[[Push], None] | None = None,
    ) -> None:
        self.workspace = workspace
        self.session = session
        self.on_push = on_push or (lambda p: None)
        # The request settings (instructions, tools, ...) of the turns this chain carries. Pushes
        # must send the same ones: any difference makes the next turn resend the whole history.
        self.settings: dict[str, Any] = {}
        self._task: asyncio.Task[None] | None = None
        self._holds = 0  # >0 while a caller is about to send a turn (the update rides along)
        self._stopped = False
        self._in_turn = False
        self._settling: asyncio.Task[None] | None = (
            None  # a stopped turn's updates, acknowledged once it ends
        )
        self._owe_calls = False  # a stopped response may have left function calls the next turn must answer
        self.pushes = 0
        workspace.changed.connect(self.push_soon)

    def push_soon(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._push_loop())

    async def _push_loop(self) -> None:
        try:
            while self.workspace.has_pending() and not self.session.busy and not self._holds:
                if not await self.push():
                    return
        except Exception:  # a failed push must never surface in a later, unrelated turn
            log.exception("pushing context changes failed; they stay pending")

    async def push(self) -> bool:
        """One generate:false request carrying what is pending (the snapshot on a fresh chain)."""
        ws = self.workspace
        first = ws.needs_snapshot
        update = await ws.take_update()
        if update is None and not first:
            return False
        items = self._answer_stopped_calls([update.item] if update is not None else [])
        t0 = time.perf_counter()
        result = await self.session.run_turn(items, generate=False, settings=self.settings)
        await ws.turn_done(result.ok)
        self.pushes += 1
        sent = result.bytes_sent
        snap = ws.last_snapshot
        files = len(update.paths) if update is not None else (len(snap.paths) if snap else 0)
        self.on_push(
            Push(
                "update" if update is not None else "snapshot",
                files,
                sent,
                result.response_id,
                (time.perf_counter() - t0) * 1000,
                result.ok,
                result.error,
                update.paths if update is not None else (snap.paths if snap else ()),
                update.changes if update is not None else (),
            )
        )
        return result.ok

    async def turn(self, items: Sequence[Item], **kwargs: Any) -> TurnResult:
        """A generating turn; pending context changes ride along in the same request."""
        self._holds += 1
        self._stopped = False
        try:
            if self._task is not None and not self._task.done():
                with contextlib.suppress(Exception):  # its own failure is logged by the push loop
                    await asyncio.shield(self._task)  # let an idle push that already started finish first
            if self.session.draining:
                await self.session.settled()  # a stopped response still ending: the chain continues from it
            if self._stopped:  # Stop pressed while the push finished: send nothing
                return TurnResult("cancelled", error="stopped by the user")
            update = await self.workspace.take_update()
            sent = ([update.item] if update is not None else []) + self._answer_stopped_calls(items)
            self._in_turn = True
            try:
                result = await self.session.run_turn(sent, **kwargs)
            finally:
                self._in_turn = False
            if result.kept_chain:  # stopped, the chain kept: its updates count once the response ended
                self._owe_calls = True
                self._settling = asyncio.ensure_future(self._settle_stopped(self.workspace.take_carried()))
            else:
                await self.workspace.turn_done(result.ok)
            return result
        finally:
            self._holds -= 1
            if self._holds == 0:
                self.push_soon()

    def _answer_stopped_calls(self, items: Sequence[Item]) -> list[Item]:
        """`items`, preceded by an output for each function call a stopped response left unanswered
        (the chain continues from it; a chain with an unanswered call is refused upstream)."""
        if not self._owe_calls:
            return list(items)
        self._owe_calls = False
        answered = {str(i.get("call_id")) for i in items if i.get("type") == "function_call_output"}
        owed = [
            {
                "type": "function_call_output",
                "call_id": str(c.get("call_id")),
                "output": "not run: the user pressed Stop",
            }
            for c in self.session.client.unanswered_calls()
            if str(c.get("call_id")) not in answered
        ]
        return [*owed, *items]

    async def _settle_stopped(self, ids: list[str]) -> None:
        """A stopped turn's context updates: delivered if its response ended on the chain, else pending again."""
        try:
            kept = await self.session.settled()
            await self.workspace.turn_done(kept, ids)
        except Exception:
            log.exception("settling a stopped turn's context failed")
        if self._holds == 0:
            self.push_soon()

    def stop(self) -> None:
        """The user pressed Stop: cut the user's turn, never a context push (its changes would just be
        pushed again); a turn still waiting behind a push is not sent at all."""
        self._stopped = True
        if self._in_turn:
            self.session.stop()

    async def aclose(self) -> None:
        self.workspace.changed.disconnect(self.push_soon)
        if self._settling is not None and not self._settling.done():
            self._settling.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._settling
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
