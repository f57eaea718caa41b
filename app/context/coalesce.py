"""Fold a burst of file events into one settled batch: a quiet period plus a maximum window.

The clock is injected: every call takes `now` (seconds, float). A batch is ready when no event came
for `quiet` seconds, or when `max_window` seconds passed since its first event, so a storm (a git
checkout, a formatter over the tree) still yields a batch a second at most.

Events are folded per path (set-based dedupe) and say only *which* paths to look at again; whether a
path was created, modified or deleted is decided later against the ledger, from what is on disk.
That makes editors' tricks harmless:

- atomic replace (delete + create of the same path)       -> the path, re-read: a modification
- save-by-rename (write `x.tmp`, move `x.tmp` -> `x`)     -> only `x`; the temp file never existed
- a real rename (`a` moved to `b`, chains `a`->`b`->`c`)   -> a move pair (a, c)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Batch", "Change", "ChangeKind", "Coalescer"]

ChangeKind = Literal["created", "modified", "deleted", "moved"]


@dataclass(frozen=True, slots=True)
class Change:
    """One raw event, root-relative. For `moved`, `path` is the source and `dest` the target."""

    kind: ChangeKind
    path: str
    dest: str | None = None
    is_dir: bool = False

    def __post_init__(self) -> None:
        if self.kind == "moved" and not self.dest:
            raise ValueError("a moved change needs dest")


@dataclass(frozen=True, slots=True)
class Batch:
    """What to look at again: files to re-read, directories to rescan, and rename pairs."""

    paths: frozenset[str]
    dirs: frozenset[str]
    moves: tuple[tuple[str, str], ...]
    events: int
    first: float
    last: float


class Coalescer:
    """Quiet-period / max-window batching with an injected clock. Not thread-safe: one loop owns it."""

    def __init__(self, quiet: float = 0.05, max_window: float = 1.0) -> None:
        if quiet <= 0 or max_window < quiet:
            raise ValueError("need 0 < quiet <= max_window")
        self.quiet = quiet
        self.max_window = max_window
        self._reset()

    def _reset(self) -> None:
        self._first_at: float | None = None
        self._last_at = 0.0
        self._events = 0
        self._existed: dict[str, bool] = {}  # path -> did it exist before this batch (best guess)
        self._exists: dict[str, bool] = {}  # path -> does it exist now, per the events
        self._origin: dict[str, str] = {}  # dst -> src that existed before the batch
        self._dirs: set[str] = set()

    def __len__(self) -> int:
        return self._events

    def _touch(self, path: str, *, first_means_existed: bool, exists: bool) -> None:
        self._existed.setdefault(path, first_means_existed)
        self._exists[path] = exists

    def add(self, change: Change, now: float) -> None:
        """Fold one event in."""
        if change.is_dir:
            if change.kind == "modified":
                return  # a child changed; the child's own event says which
            self._dirs.add(change.path)
            if change.dest:
                self._dirs.add(change.dest)
        elif change.kind == "created":
            self._touch(change.path, first_means_existed=False, exists=True)
        elif change.kind == "modified":
            self._touch(change.path, first_means_existed=True, exists=True)
        elif change.kind == "deleted":
            self._touch(change.path, first_means_existed=True, exists=False)
            self._origin.pop(change.path, None)
        else:
            src, dst = change.path, change.dest
            assert dst is not None
            self._touch(src, first_means_existed=True, exists=False)
            origin = self._origin.pop(src, src if self._existed.get(src, True) else None)
            self._touch(dst, first_means_existed=True, exists=True)
            self._origin.pop(dst, None)
            if origin is not None and origin != dst:
                self._origin[dst] = origin
        if self._first_at is None:
            self._first_at = now
        self._last_at = now
        self._events += 1

    def next_deadline(self) -> float | None:
        """When `poll` may next return a batch; None when nothing is waiting."""
        if self._first_at is None:
            return None
        return min(self._last_at + self.quiet, self._first_at + self.max_window)

    def poll(self, now: float) -> Batch | None:
        """The settled batch, if its quiet period or maximum window has passed; else None."""
        deadline = self.next_deadline()
        if deadline is None or now < deadline:
            return None
        return self.flush(now)

    def flush(self, now: float) -> Batch | None:
        """Take whatever is waiting now (shutdown, tests); None when empty."""
        if self._first_at is None:
            return None
        paths = frozenset(p for p, ex in self._exists.items() if ex or self._existed.get(p, True))
        moves = tuple(
            sorted(
                (src, dst)
                for dst, src in self._origin.items()
                if self._exists.get(dst) and not self._exists.get(src, False)
            )
        )
        batch = Batch(paths, frozenset(self._dirs), moves, self._events, self._first_at, self._last_at)
        self._reset()
        return batch
