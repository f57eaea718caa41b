"""Live context sync: watch -> coalesce -> read -> ledger -> push, on one chain.

The workspace owns the `Ledger` and the watcher. It plugs into the session in two places:

- `rebuild(lane, items)` is `ClientSession`'s fresh-chain hook: every time a chain starts (first
  connection, `previous_response_not_found`, age limit, dropped socket, restarted server) it swaps the
  transcript's old context messages for one snapshot of the disk as it is *now*. So no change is lost
  and none is sent twice into one chain.
- `take_update()` gives the pending changes as one message for the next request: pushed at once
  with `generate:false` while the session is idle (`push()`), or carried by the next turn.

An update counts as acknowledged only when the response that carried it completed (`turn_done`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.adapters.fs_read import RootMissingError
from app.adapters.fs_watch import BatchPump, FsWatcher
from app.adapters.project_fs import ProjectFS
from app.context.coalesce import Batch, Coalescer
from app.context.ledger import ContextUpdate, FileStatus, Ledger, PathChange, is_context_item
from app.services.session import ResponsesSession, TurnResult
from app.services.signals import Signal

log = logging.getLogger(__name__)
Item = Mapping[str, Any]


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
        self.ledger = Ledger()
        self._watcher: FsWatcher | None = None
        self._pump: BatchPump | None = None
        self._chain = 0
        self._carried: list[str] = []  # update ids carried by the request in flight
        self._batches: asyncio.Queue[Batch] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self._resync_task: asyncio.Task[None] | None = None
        self.files_changed: Signal[[list[FileStatus]]] = Signal("files_changed")
        self.notice: Signal[[str, str]] = Signal("notice")  # kind, text
        self.changed: Signal[[]] = Signal("changed")  # the ledger has something new to push
        self.root_missing: Signal[[]] = Signal("root_missing")  # the project folder is gone
        self.watch_mode = ""
        self.last_snapshot: ContextUpdate | None = None

    # ---- start / stop --------------------------------------------------------------------------

    async def start(self, *, watch: bool = True) -> None:
        """Index the tree (off the loop) and start watching."""
        loop = asyncio.get_running_loop()
        for note in self.files.recovered:  # a patch a crash interrupted was rolled back on open
            self.notice.emit("warning", note)
        errors: list[str] = []
        index = await loop.run_in_executor(
            None, lambda: self.files.scan_tree(on_error=lambda p, e: errors.append(f"{p}: {e}"))
        )
        for e in errors[:5]:
            self.notice.emit("warning", f"Cannot read {e}")
        self.ledger.observe_many(index)
        self._publish()
        if watch:
            self._pump = BatchPump(Coalescer(self._quiet, self._window), self._batches.put_nowait, loop)
            self._watcher = FsWatcher(self.root, self.files, self._pump.feed, loop, on_notice=self.notice.emit,
                                      force_polling=self._force_polling)
            self.watch_mode = self._watcher.start()
            self._reader = asyncio.ensure_future(self._read_batches())

    async def aclose(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
        if self._pump is not None:
            self._pump.close()
        for task in (self._reader, self._resync_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

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
                self.notice.emit("error", f"The project folder {self.root} was deleted or moved; watching stopped. "
                                          "Reopen the project when it is back.")
                self.root_missing.emit()
                return
            except Exception:
                log.exception("reading a batch of changes failed")
                self.notice.emit("error", "Reading changed files failed; see the log. Resyncing.")
                await self.resync()

    async def _apply(self, batch: Batch) -> None:
        loop = asyncio.get_running_loop()
        read = await loop.run_in_executor(None, self.files.read_batch, batch, self.ledger.known_paths)
        for src, dst in read.moves:
            self.ledger.rename(src, dst)
        self.ledger.observe_many(read.versions)
        if read.rules_changed:  # the files object reloaded its rules: the tools see them already
            await self.resync()
        self._publish()
        self.changed.emit()

    async def resync(self) -> None:
        """A full rescan (ignore rules changed, a read failed)."""
        loop = asyncio.get_running_loop()
        found = await loop.run_in_executor(None, self.files.resync, self.ledger.known_paths())
        self.ledger.observe_many(found)
        self._publish()

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

    def _publish(self) -> None:
        self.files_changed.emit(self.ledger.status())

    # ---- the session hooks ---------------------------------------------------------------------

    def rebuild(self, lane: str | None, items: list[Item]) -> list[Item]:
        """ClientSession's fresh-chain hook: a snapshot of the disk now + the non-context transcript."""
        self.ledger.chain_lost()
        self._chain += 1
        cands = self.ledger.snapshot_candidates(self.budget, self.pins, self._clock())
        contents = self.files.read_many(cands)  # bounded by the token budget
        snap = self.ledger.build_snapshot(self.budget, self._clock(), self.pins, contents)
        self.ledger.mark_sent(snap.id, self.chain_id)
        self._carried = [snap.id]
        self.last_snapshot = snap
        for text in snap.notices:
            self.notice.emit("warning", text)
        self._publish()
        return [snap.item, *(i for i in items if not is_context_item(i))]

    @property
    def chain_id(self) -> str:
        return f"chain-{self._chain}"

    def has_pending(self) -> bool:
        return self.ledger.has_pending()

    def take_update(self) -> ContextUpdate | None:
        """The pending changes as one message for the next request (None: nothing, or a fresh chain
        is due, in which case the rebuild hook will describe the disk instead)."""
        if self.ledger.needs_snapshot:
            return None
        update = self.ledger.build_update(self.update_budget)
        if update is None:
            return None
        self.ledger.mark_sent(update.id, self.chain_id)
        self._carried.append(update.id)
        for text in update.notices:
            self.notice.emit("warning", text)
        return update

    def turn_done(self, ok: bool) -> None:
        """The request that carried the pending updates ended: acknowledge them, or roll them back."""
        carried, self._carried = self._carried, []
        for uid in carried:
            if ok:
                self.ledger.acknowledge(uid)
            else:
                self.ledger.fail(uid)
        self._publish()

    def status(self) -> list[FileStatus]:
        return self.ledger.status()


class ContextSync:
    """Joins a Workspace and a ResponsesSession: idle pushes, and updates carried by turns.

    `push_soon()` (connected to `workspace.changed`) pushes pending changes with `generate:false`
    while the session is idle; while a turn is in flight they wait and ride along with the next
    request (`turn()`), or are pushed as soon as the session is idle again.
    """

    def __init__(
        self, workspace: Workspace, session: ResponsesSession, *, on_push: Callable[[Push], None] | None = None
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
        first = ws.ledger.needs_snapshot
        update = ws.take_update()
        if update is None and not first:
            return False
        items = [update.item] if update is not None else []
        t0 = time.perf_counter()
        result = await self.session.run_turn(items, generate=False, settings=self.settings)
        ws.turn_done(result.ok)
        self.pushes += 1
        sent = result.bytes_sent
        snap = ws.last_snapshot
        files = len(update.paths) if update is not None else (len(snap.paths) if snap else 0)
        self.on_push(Push("update" if update is not None else "snapshot", files, sent, result.response_id,
                          (time.perf_counter() - t0) * 1000, result.ok, result.error,
                          update.paths if update is not None else (snap.paths if snap else ()),
                          update.changes if update is not None else ()))
        return result.ok

    async def turn(self, items: Sequence[Item], **kwargs: Any) -> TurnResult:
        """A generating turn; pending context changes ride along in the same request."""
        self._holds += 1
        self._stopped = False
        try:
            if self._task is not None and not self._task.done():
                with contextlib.suppress(Exception):  # its own failure is logged by the push loop
                    await asyncio.shield(self._task)  # let an idle push that already started finish first
            if self._stopped:  # Stop pressed while the push finished: send nothing
                return TurnResult("cancelled", error="stopped by the user")
            update = self.workspace.take_update()
            sent = ([update.item] if update is not None else []) + list(items)
            self._in_turn = True
            try:
                result = await self.session.run_turn(sent, **kwargs)
            finally:
                self._in_turn = False
            self.workspace.turn_done(result.ok)
            return result
        finally:
            self._holds -= 1
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
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
