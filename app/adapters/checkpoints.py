"""Checkpoints of applied change sets: pre- and post-images, one index, transactional.

Layout (one folder per project, 0700, every file 0600, outside the project):

    index.json       the checkpoints, oldest first, each "pending", "applied" or "undone"
    blobs/<sha256>   file contents, content-addressed (shared between checkpoints)
    lock             an advisory lock (flock / msvcrt) held for every apply, undo and recovery

The protocol that makes an apply all-or-nothing across crashes:

1. Under the lock, the pre- and post-images are stored (fsync'd) and the checkpoint is recorded as
   "pending" *before* any project file is touched.
2. The files are written, each by an atomic rename.
3. The checkpoint is marked "applied".

A process killed between 1 and 3 leaves a pending checkpoint; `recover()` (run when the project is
opened) puts every file of it back to its pre-image (where it still holds the post-image or a
half-written state of ours), removes our temp files, and marks it "rolled back". So a change set is
either entirely applied with a checkpoint that can undo it, or not applied at all.

Every write of the index goes to a uniquely named temp file and is renamed into place, so parallel
appliers never share a temp name, and ids are assigned under the lock from the index on disk, so
they never repeat. `prune()` drops the oldest checkpoints beyond an age and a total size, and the
blobs nobody references.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = ["Checkpoint", "CheckpointStore", "State"]

State = Literal["pending", "applied", "undone", "rolled_back"]
DEFAULT_MAX_AGE_S = 30 * 24 * 3600.0
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
MAX_POST_IMAGE = 16 * 1024 * 1024  # larger post-images are not kept (undo then needs the file untouched)


@dataclass(slots=True)
class Checkpoint:
    id: str
    turn: int
    time: float
    summary: str
    post: dict[str, str | None]  # path -> sha256 of what the patch left (None: deleted)
    pre: dict[str, str | None]  # path -> blob name of the pre-image (None: did not exist)
    state: State = "applied"

    @property
    def undone(self) -> bool:
        return self.state in ("undone", "rolled_back")

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "turn": self.turn, "time": self.time, "summary": self.summary,
                "post": self.post, "pre": self.pre, "state": self.state}  # fmt: skip

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Checkpoint:
        state: State = raw.get("state") or ("undone" if raw.get("undone") else "applied")
        if state not in ("pending", "applied", "undone", "rolled_back"):
            raise ValueError(f"unknown checkpoint state {state!r}")
        return cls(str(raw["id"]), int(raw["turn"]), float(raw["time"]), str(raw["summary"]),
                   dict(raw["post"]), dict(raw["pre"]), state)  # fmt: skip


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _FolderLock:
    """One per checkpoint folder in this process: a re-entrant thread lock around an OS file lock."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.rlock = threading.RLock()
        self.depth = 0
        self.fd = -1

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        with self.rlock:
            if self.depth == 0:
                _private_dir(self.folder)
                fd = os.open(self.folder / "lock", os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    _lock_file(fd)
                except BaseException:
                    os.close(fd)
                    raise
                self.fd = fd
            self.depth += 1
            try:
                yield
            finally:
                self.depth -= 1
                if self.depth == 0:
                    fd, self.fd = self.fd, -1
                    _unlock_file(fd)
                    os.close(fd)


_LOCKS: dict[str, _FolderLock] = {}
_LOCKS_GUARD = threading.Lock()


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if os.name == "posix":
        os.chmod(path, 0o700)


def _write_private(path: Path, data: bytes) -> None:
    """Write a 0600 file through a unique temp name and an atomic rename."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@dataclass(slots=True)
class CheckpointStore:
    """Pre-images and post-images of applied patches (see module docstring)."""

    folder: Path
    max_age_s: float = DEFAULT_MAX_AGE_S
    max_bytes: int = DEFAULT_MAX_BYTES
    _lock: _FolderLock | None = field(default=None, init=False)

    # -- the lock --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive across threads and processes; re-entrant within one thread."""
        if self._lock is None:
            key = os.path.abspath(self.folder)
            with _LOCKS_GUARD:
                self._lock = _LOCKS.setdefault(key, _FolderLock(Path(key)))
        with self._lock.hold():
            yield

    @property
    def held(self) -> bool:
        return self._lock is not None and self._lock.depth > 0 and self._lock.rlock._is_owned()  # type: ignore[attr-defined]

    # -- blobs -----------------------------------------------------------------------------------

    def _blobs(self) -> Path:
        return self.folder / "blobs"

    def put(self, data: bytes) -> str:
        name = _sha(data)
        p = self._blobs() / name
        if not p.exists():
            _private_dir(self._blobs())
            _write_private(p, data)
        return name

    def blob(self, name: str | None) -> bytes | None:
        if name is None:
            return None
        try:
            return (self._blobs() / name).read_bytes()
        except FileNotFoundError:
            return None

    def pre_image(self, cp: Checkpoint, path: str) -> bytes | None:
        return self.blob(cp.pre.get(path))

    def post_image(self, cp: Checkpoint, path: str) -> bytes | None:
        return self.blob(cp.post.get(path))

    # -- the index -------------------------------------------------------------------------------

    def all(self) -> list[Checkpoint]:
        """Every checkpoint, read from disk (other processes and threads may have written)."""
        try:
            raw = json.loads((self.folder / "index.json").read_text(encoding="utf-8"))
            return [Checkpoint.from_json(c) for c in raw]
        except FileNotFoundError:
            return []
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise OSError(f"the checkpoint index {self.folder / 'index.json'} is unreadable: {exc}") from None

    def active(self) -> list[Checkpoint]:
        return [c for c in self.all() if c.state == "applied"]

    def pending(self) -> list[Checkpoint]:
        return [c for c in self.all() if c.state == "pending"]

    def _write(self, cps: list[Checkpoint]) -> None:
        _private_dir(self.folder)
        _write_private(
            self.folder / "index.json", json.dumps([c.to_json() for c in cps], indent=1).encode("utf-8")
        )

    def begin(
        self,
        *,
        turn: int,
        now: float,
        pre: Mapping[str, bytes | None],
        post: Mapping[str, bytes | None],
        summary: str,
    ) -> Checkpoint:
        """Record a pending checkpoint with its images stored: step 1 of an apply (hold the lock)."""
        assert self.held, "begin() needs the lock"
        cps = self.all()
        last = max((int(c.id[2:]) for c in cps if c.id[2:].isdigit()), default=0)
        pre_names = {p: (None if d is None else self.put(d)) for p, d in pre.items()}
        post_shas: dict[str, str | None] = {}
        for p, d in post.items():
            post_shas[p] = None if d is None else (self.put(d) if len(d) <= MAX_POST_IMAGE else _sha(d))
        cp = Checkpoint(f"cp{last + 1:05d}", turn, now, summary, post_shas, pre_names, "pending")
        self._write([*cps, cp])
        return cp

    def set_state(self, cp: Checkpoint, state: State) -> None:
        with self.locked():
            cps = self.all()
            for c in cps:
                if c.id == cp.id:
                    c.state = state
            cp.state = state
            self._write(cps)

    def mark_undone(self, cp: Checkpoint) -> None:
        self.set_state(cp, "undone")

    # -- upkeep ----------------------------------------------------------------------------------

    def prune(self, *, now: float | None = None) -> int:
        """Drop checkpoints older than max_age_s, then the oldest until blobs fit max_bytes; GC blobs.
        Returns how many checkpoints were dropped. Pending ones are never dropped."""
        now = time.time() if now is None else now
        with self.locked():
            cps = self.all()
            keep = [c for c in cps if c.state == "pending" or now - c.time <= self.max_age_s]

            def referenced(cs: list[Checkpoint]) -> set[str]:
                return {n for c in cs for n in (*c.pre.values(), *c.post.values()) if n}

            sizes: dict[str, int] = {}
            with contextlib.suppress(OSError), os.scandir(self._blobs()) as it:
                for e in it:
                    if not e.name.startswith("."):
                        sizes[e.name] = e.stat().st_size
            while keep:
                total = sum(sizes.get(n, 0) for n in referenced(keep))
                if total <= self.max_bytes:
                    break
                oldest = next((c for c in keep if c.state != "pending"), None)
                if oldest is None:
                    break
                keep.remove(oldest)
            dropped = len(cps) - len(keep)
            if dropped:
                self._write(keep)
            live = referenced(keep)
            for name in sizes:
                if name not in live:
                    with contextlib.suppress(OSError):
                        (self._blobs() / name).unlink()
            return dropped

    def clear(self) -> None:
        import shutil

        shutil.rmtree(self.folder, ignore_errors=True)

    def size_bytes(self) -> int:
        total = 0
        with contextlib.suppress(OSError), os.scandir(self._blobs()) as it:
            for e in it:
                total += e.stat().st_size
        return total


if os.name == "posix":
    import fcntl

    def _lock_file(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)

    def _unlock_file(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)

else:  # pragma: no cover - Windows
    import msvcrt

    def _lock_file(fd: int) -> None:
        while True:
            try:
                msvcrt.locking(fd, msvcrt.LK_LOCK, 1)  # type: ignore[attr-defined,unused-ignore]
                return
            except OSError:
                continue

    def _unlock_file(fd: int) -> None:
        with contextlib.suppress(OSError):
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined,unused-ignore]
