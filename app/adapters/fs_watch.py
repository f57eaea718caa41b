"""watchdog observer -> `Change` values on the asyncio loop, plus a pump that feeds the coalescer.

watchdog calls us on its own thread; the handler only converts the event and hops to the loop with
`loop.call_soon_threadsafe`. Ignore rules are consulted on the loop thread, never concurrently.
inotify limits (ENOSPC: watch limit, EMFILE: instance limit) switch to a PollingObserver with a
clear notice; a root that disappears is reported through `on_notice`, not raised.
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Protocol

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from app.adapters.fs_read import rel_path
from app.context.coalesce import Batch, Change, Coalescer

__all__ = ["BatchPump", "Excludes", "FsWatcher", "NoticeKind", "WatchMode"]


class Excludes(Protocol):
    """What the watcher asks of the rules' owner (app.adapters.project_fs.ProjectFS, or IgnoreRules)."""

    def is_excluded(self, path: str, *, is_dir: bool = False) -> bool: ...


NoticeKind = Literal["info", "warning", "error"]
WatchMode = Literal["native", "polling"]
_LIMIT_ERRNOS = {errno.ENOSPC, errno.EMFILE}

INOTIFY_LIMIT_TEXT = (
    "The system's file-watch limit is exhausted ({detail}); Slipstream falls back to polling the folder "
    "every {interval:.1f} s, so changes show up a little later. To fix it on Linux raise "
    "fs.inotify.max_user_watches (and max_user_instances), e.g. "
    "`sudo sysctl fs.inotify.max_user_watches=524288`."
)


# The events `FsWatcher._convert` turns into changes. Asked of the kernel by type, so reads are not
# events at all: with every type, each file the app reads (an index, a search, hashing a big tree)
# came back as an "opened" and a "closed" event, each a hop to the loop only to be dropped there.
WATCHED_EVENTS: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
]


class _Handler(FileSystemEventHandler):
    """Runs on watchdog's thread: cheap filtering, then a hop to the loop."""

    def __init__(self, watcher: FsWatcher) -> None:
        self._w = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        src = os.fsdecode(event.src_path)
        dest = os.fsdecode(event.dest_path) if event.dest_path else ""
        if f"{os.sep}.git{os.sep}" in src + os.sep and (not dest or f"{os.sep}.git{os.sep}" in dest + os.sep):
            return  # git's own churn: never shown, and a checkout writes a lot of it
        self._w._hop(event, src, dest)


class FsWatcher:
    """Watch `root`; call `on_change(Change)` on the loop for each event that is not ignored."""

    def __init__(
        self,
        root: Path | str,
        rules: Excludes,
        on_change: Callable[[Change], None],
        loop: asyncio.AbstractEventLoop,
        *,
        on_notice: Callable[[NoticeKind, str], None] | None = None,
        force_polling: bool = False,
        polling_interval: float = 1.0,
        observer_factory: Callable[[], BaseObserver] | None = None,
    ) -> None:
        self.root = Path(root).resolve()
        self.rules = rules
        self._on_change = on_change
        self._on_notice = on_notice or (lambda kind, text: None)
        self._loop = loop
        self._force_polling = force_polling
        self._polling_interval = polling_interval
        self._factory = observer_factory or Observer
        self._observer: BaseObserver | None = None
        self.mode: WatchMode | None = None
        self.root_lost = False

    def start(self) -> WatchMode:
        """Start watching; returns "native" or "polling". Raises FileNotFoundError if root is missing."""
        if not self.root.is_dir():
            raise FileNotFoundError(f"cannot watch {self.root}: not a folder")
        if not self._force_polling:
            try:
                self._observer = self._start_observer(self._factory())
                self.mode = "native"
                return self.mode
            except OSError as exc:
                if exc.errno not in _LIMIT_ERRNOS:
                    raise
                detail = exc.strerror or str(exc)
                self._on_notice(
                    "warning", INOTIFY_LIMIT_TEXT.format(detail=detail, interval=self._polling_interval)
                )
        self._observer = self._start_observer(PollingObserver(timeout=self._polling_interval))
        self.mode = "polling"
        return self.mode

    def _start_observer(self, observer: BaseObserver) -> BaseObserver:
        try:
            observer.schedule(
                _Handler(self), os.fspath(self.root), recursive=True, event_filter=WATCHED_EVENTS
            )
            observer.start()
        except BaseException:
            try:
                observer.stop()
            except Exception:
                pass
            raise
        return observer

    def stop(self) -> None:
        """Stop the observer thread and wait for it (a second at most)."""
        obs, self._observer = self._observer, None
        if obs is not None:
            obs.stop()
            if obs.is_alive():
                obs.join(timeout=2.0)

    # ---- thread -> loop --------------------------------------------------------------------------

    def _hop(self, event: FileSystemEvent, src: str, dest: str) -> None:
        try:
            self._loop.call_soon_threadsafe(self._deliver, event, src, dest)
        except RuntimeError:
            pass  # the loop is closed: we are shutting down

    def _deliver(self, event: FileSystemEvent, src: str, dest: str) -> None:
        if self._observer is None:
            return
        root = os.fspath(self.root)
        if src == root and isinstance(event, DirDeletedEvent | DirMovedEvent) and not self.root_lost:
            self.root_lost = True
            self._on_notice("error", f"The project folder {root} was removed or moved; watching stopped.")
            return
        change = self._convert(event, src, dest)
        if change is None:
            return
        paths = [change.path] + ([change.dest] if change.dest else [])
        if all(self.rules.is_excluded(p, is_dir=change.is_dir) for p in paths):
            return
        self._on_change(change)

    def _convert(self, event: FileSystemEvent, src: str, dest: str) -> Change | None:
        rs = rel_path(self.root, src)
        if isinstance(event, FileMovedEvent | DirMovedEvent):
            rd = rel_path(self.root, dest)
            is_dir = isinstance(event, DirMovedEvent)
            if rs and rd:
                return Change("moved", rs, rd, is_dir=is_dir)
            if rd:  # moved in from outside
                return Change("created", rd, is_dir=is_dir)
            if rs:  # moved out of the project
                return Change("deleted", rs, is_dir=is_dir)
            return None
        if not rs:
            return None
        if isinstance(event, FileCreatedEvent):
            return Change("created", rs)
        if isinstance(event, FileModifiedEvent):
            return Change("modified", rs)
        if isinstance(event, FileDeletedEvent):
            return Change("deleted", rs)
        if isinstance(event, DirCreatedEvent):
            return Change("created", rs, is_dir=True)
        if isinstance(event, DirDeletedEvent):
            return Change("deleted", rs, is_dir=True)
        return None  # opened/closed/attrib and directory "modified": the child events say more


class BatchPump:
    """Feeds changes into a `Coalescer` on loop time and calls `on_batch` when a batch settles."""

    def __init__(
        self,
        coalescer: Coalescer,
        on_batch: Callable[[Batch], Any],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.coalescer = coalescer
        self._on_batch = on_batch
        self._loop = loop
        self._timer: asyncio.Handle | None = None
        self._timer_at = 0.0

    def feed(self, change: Change) -> None:
        """Call on the loop thread (e.g. as FsWatcher's `on_change`)."""
        self.coalescer.add(change, self._loop.time())
        self._arm()

    def _arm(self) -> None:
        deadline = self.coalescer.next_deadline()
        if deadline is None:
            return
        if self._timer is not None:
            if self._timer_at <= deadline:
                return  # already due earlier; _fire re-arms if it is too early
            self._timer.cancel()
        # Remember the deadline ourselves: qasync's call_at returns a Handle without .when().
        self._timer_at = deadline
        self._timer = self._loop.call_at(deadline, self._fire)

    def _fire(self) -> None:
        self._timer = None
        batch = self.coalescer.poll(self._loop.time())
        if batch is not None:
            self._on_batch(batch)
        self._arm()

    def flush(self) -> Batch | None:
        """Take whatever is waiting now (shutdown)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        return self.coalescer.flush(self._loop.time())

    def close(self) -> None:
        """Drop the timer; pending changes stay in the coalescer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
