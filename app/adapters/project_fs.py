"""The project folder as the tools see it: confined reads, listing with ignore rules, atomic writes,
applying reviewed change sets, and checkpoints that undo them without git.

Confinement: `app.tools.paths.confine` refuses `..`, absolute and home paths; here the real path
(symlinks resolved) must stay under the real root, and only regular files and folders are served
(device files, FIFOs and sockets are refused). Secret and user-excluded files are never read or
written, and nothing under `.git/` is ever written.

Checkpoints live outside the project, under platformdirs' user_state_dir/checkpoints/<hash of root>/,
so nothing lands in the user's working tree or git index. Each applied change set stores the
pre-image of every file it touched and the hash of what it wrote; undo restores the pre-images,
and merges three-way when the user edited a file after the patch (a conflict refuses the undo).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app import profile
from app.context.ignore import IgnoreRules
from app.tools.fileops import Entry
from app.tools.patch import ChangeSet, PatchApplyError, PatchConflict, PatchError, decode_text, merge3
from app.tools.paths import PathRefused, confine, is_within

__all__ = ["AppliedChange", "Checkpoint", "CheckpointStore", "ProjectFS", "UndoError", "default_state_dir"]

_REFUSE_REASONS = ("secret", "settings", "slipstreamignore")


class UndoError(Exception):
    """An undo that would lose the user's later edits, or has nothing to undo."""


def default_state_dir(root: Path) -> Path:
    """Per-project state folder outside the project: user_state_dir/checkpoints/<sha256(root)[:16]>."""
    digest = hashlib.sha256(str(root.resolve()).encode("utf-8")).hexdigest()[:16]
    return profile.state_dir() / "checkpoints" / digest


def _sha(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


class ProjectFS:
    """File access for tools, confined to `root`; implements app.tools.fileops.ProjectAccess."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        ignore: IgnoreRules | None = None,
        state_dir: Path | None = None,
    ) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise NotADirectoryError(f"project root is not a folder: {self.root}")
        self._own_rules = ignore is None
        self.ignore = ignore if ignore is not None else IgnoreRules()
        self._loaded_gitignores: set[str] = set()
        self.checkpoints = CheckpointStore(state_dir or default_state_dir(self.root))

    # -- confinement ---------------------------------------------------------------------------

    def resolve(self, raw: object, *, allow_root: bool = False) -> tuple[str, Path]:
        """(normalised relative path, real absolute path) or PathRefused."""
        rel = confine(raw, allow_root=allow_root)
        real = Path(os.path.realpath(self.root / rel)) if rel else self.root
        if not is_within(self.root, real):
            raise PathRefused(f"{rel} is a symlink that leads outside the project; refused")
        try:
            st = os.stat(real)
        except FileNotFoundError:
            return rel, real
        except OSError as exc:
            raise PathRefused(f"{rel}: {exc.strerror}") from None
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            raise PathRefused(f"{rel} is not a regular file (device, FIFO or socket); refused")
        return rel, real

    def _check_rules(self, rel: str, *, write: bool) -> None:
        if not rel:
            return
        self._load_gitignores_for(rel)
        excl = self.ignore.exclusion(rel)
        if excl is not None and excl.reason in _REFUSE_REASONS:
            what = "a secret" if excl.reason == "secret" else f"excluded by {excl.source}"
            raise PathRefused(f"{rel} is {what}; the tools may not {'write' if write else 'read'} it")
        if write and ".git" in rel.split("/"):
            raise PathRefused(f"{rel} is inside .git; the tools never write there")

    def _load_gitignores_for(self, rel: str) -> None:
        if not self._own_rules:
            return
        parts = rel.split("/")[:-1]
        for i in range(len(parts) + 1):
            self._load_gitignore("/".join(parts[:i]))

    def _load_gitignore(self, rel_dir: str) -> None:
        if not self._own_rules or rel_dir in self._loaded_gitignores:
            return
        self._loaded_gitignores.add(rel_dir)
        f = self.root / rel_dir / ".gitignore" if rel_dir else self.root / ".gitignore"
        try:
            if f.is_file():
                self.ignore.add_gitignore(rel_dir, f.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            pass

    # -- ProjectAccess -------------------------------------------------------------------------

    def read_bytes(self, path: str, limit: int | None = None) -> bytes | None:
        """The file's bytes (at most `limit`), None when it does not exist; PathRefused otherwise."""
        rel, real = self.resolve(path)
        self._check_rules(rel, write=False)
        if real.is_dir():
            raise PathRefused(f"{rel} is a folder; use list_files")
        try:
            with open(real, "rb") as fh:
                return fh.read() if limit is None else fh.read(limit)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise PathRefused(f"{rel}: {exc.strerror}") from None

    def walk(self, under: str = "") -> Iterator[Entry]:
        """Every visible file and folder below `under`, ignore rules applied, sorted per folder."""
        rel0, real0 = self.resolve(under, allow_root=True)
        if rel0:
            self._check_rules(rel0, write=False)
        if not real0.is_dir():
            raise PathRefused(f"{rel0 or '.'} is not a folder")
        stack = [rel0]
        while stack:
            d = stack.pop()
            self._load_gitignore(d)
            try:
                with os.scandir(self.root / d if d else self.root) as it:
                    items = sorted(it, key=lambda e: e.name)
            except OSError:
                continue
            subdirs: list[str] = []
            for e in items:
                rel = f"{d}/{e.name}" if d else e.name
                try:
                    is_link = e.is_symlink()
                    st = e.stat(follow_symlinks=True)
                except OSError:
                    continue  # dangling symlink
                if is_link and not is_within(self.root, os.path.realpath(e.path)):
                    continue
                is_dir = stat.S_ISDIR(st.st_mode)
                if not is_dir and not stat.S_ISREG(st.st_mode):
                    continue
                if self.ignore.is_excluded(rel, is_dir=is_dir):
                    continue
                yield Entry(rel, is_dir, 0 if is_dir else st.st_size)
                if is_dir and not is_link:
                    subdirs.append(rel)
            stack.extend(reversed(subdirs))

    # -- writing -------------------------------------------------------------------------------

    def write_atomic(self, path: str, data: bytes) -> None:
        """Replace the file in one step (temp file in the same folder, fsync, rename); keeps its mode."""
        rel, real = self.resolve(path)
        self._check_rules(rel, write=True)
        real.parent.mkdir(parents=True, exist_ok=True)
        if not is_within(self.root, os.path.realpath(real.parent)):
            raise PathRefused(f"{rel}: its folder leads outside the project; refused")
        mode = None
        with _suppress_missing():
            mode = stat.S_IMODE(os.stat(real).st_mode)
        fd, tmp = tempfile.mkstemp(dir=real.parent, prefix=f".{real.name}.", suffix=".slipstream-tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            if mode is not None:
                os.chmod(tmp, mode)
            os.replace(tmp, real)
        except BaseException:
            with _suppress_missing():
                os.unlink(tmp)
            raise

    def delete(self, path: str) -> None:
        rel, real = self.resolve(path)
        self._check_rules(rel, write=True)
        with _suppress_missing():
            os.unlink(self.root / rel if (self.root / rel).is_symlink() else real)

    def apply(
        self,
        change_set: ChangeSet,
        accepted: Mapping[str, Sequence[bool]] | None = None,
        *,
        turn: int = 0,
        now: float = 0.0,
    ) -> AppliedChange:
        """Write the accepted hunks of `change_set` and record a checkpoint; all or nothing.

        `accepted` maps a file (its payload path) to one bool per hunk; missing files are accepted whole.
        A file that changed on disk since the change set was planned is merged three-way, or the whole
        apply is refused with PatchConflict.
        """
        writes: list[tuple[str, bytes | None]] = []  # (path, new bytes or None to delete)
        pre: dict[str, bytes | None] = {}
        skipped: list[str] = []
        for plan in change_set.files:
            key = plan.target if plan.move_to else plan.path
            sel = None if accepted is None else accepted.get(key, accepted.get(plan.path))
            if sel is not None and len(sel) != plan.hunk_count:
                raise PatchApplyError(f"{key}: {len(sel)} hunk decisions for {plan.hunk_count} hunks")
            if sel is not None and not any(sel):
                skipped.append(key)
                continue
            new_text = plan.render(sel)
            current = self.read_bytes(plan.path)
            pre[plan.path] = current
            if plan.op == "add":
                if current is not None:
                    raise PatchApplyError(f"{plan.path} was created on disk meanwhile; nothing was written")
                writes.append((plan.path, (new_text or "").encode("utf-8")))
                continue
            if current is None:
                raise PatchApplyError(f"{plan.path} was deleted on disk meanwhile; nothing was written")
            if plan.op == "delete":
                if plan.disk_bytes is not None and current != plan.disk_bytes:
                    raise PatchApplyError(f"{plan.path} changed on disk meanwhile; not deleted, nothing was written")
                writes.append((plan.path, None))
                continue
            cur_text = decode_text(current, plan.path)
            assert new_text is not None and plan.disk is not None
            if cur_text != plan.disk:
                merged = merge3(plan.disk, cur_text, new_text)
                if not merged.clean:
                    raise PatchConflict(plan.path, merged.conflicts)
                new_text = merged.text
            if plan.move_to:
                if self.read_bytes(plan.move_to) is not None:
                    raise PatchApplyError(f"{plan.move_to} exists; {plan.path} was not moved, nothing was written")
                pre[plan.move_to] = None
                writes.append((plan.move_to, new_text.encode("utf-8")))
                writes.append((plan.path, None))
            else:
                writes.append((plan.path, new_text.encode("utf-8")))
        for path, _ in writes:  # refuse before anything is written
            rel, _real = self.resolve(path)
            self._check_rules(rel, write=True)
        done: list[str] = []
        try:
            for path, data in writes:
                if data is None:
                    self.delete(path)
                else:
                    self.write_atomic(path, data)
                done.append(path)
        except OSError as exc:
            for path in reversed(done):  # roll back what was written
                self._restore(path, pre.get(path))
            raise PatchApplyError(f"writing {path} failed ({exc.strerror or exc}); nothing was changed") from None
        post = {p: _sha(d) for p, d in writes}
        for _, data in writes:  # post-images make a three-way undo possible after later user edits
            if data is not None:
                self.checkpoints.store_post(data)
        cp = self.checkpoints.record(turn=turn, now=now, pre={p: pre.get(p) for p in post}, post=post,
                                     summary=change_set.summary()) if writes else None
        return AppliedChange([p for p, _ in writes], skipped, cp)

    def _restore(self, path: str, data: bytes | None) -> None:
        if data is None:
            self.delete(path)
        else:
            self.write_atomic(path, data)

    # -- undo ----------------------------------------------------------------------------------

    def undo(self, checkpoint_id: str | None = None) -> list[Checkpoint]:
        """Undo the last checkpoint, or `checkpoint_id` and every later one; newest first.

        Refuses (UndoError) when a file was edited after the patch in a way that cannot be merged.
        """
        active = self.checkpoints.active()
        if not active:
            raise UndoError("nothing to undo")
        if checkpoint_id is None:
            targets = [active[-1]]
        else:
            ids = [c.id for c in active]
            if checkpoint_id not in ids:
                raise UndoError(f"no active checkpoint {checkpoint_id!r}")
            targets = active[ids.index(checkpoint_id) :]
        for cp in reversed(targets):
            self._undo_one(cp)
        return list(reversed(targets))

    def undo_turn(self, turn: int) -> list[Checkpoint]:
        """Go back to the state before `turn`: undo its checkpoints and all later ones."""
        for cp in self.checkpoints.active():
            if cp.turn >= turn:
                return self.undo(cp.id)
        raise UndoError(f"no changes to undo from turn {turn} on")

    def _undo_one(self, cp: Checkpoint) -> None:
        plan: list[tuple[str, bytes | None]] = []
        for path, post_sha in cp.post.items():
            pre = self.checkpoints.pre_image(cp, path)
            current = self.read_bytes(path)
            if _sha(current) == post_sha:
                plan.append((path, pre))
                continue
            # The user edited the file after the patch: take the patch back out of their version.
            if current is None or pre is None or post_sha is None:
                raise UndoError(f"cannot undo {cp.id}: {path} was created, deleted or replaced since; undo refused")
            post = self.checkpoints.post_image(cp, path)
            try:
                merged = merge3(decode_text(post or b"", path), decode_text(current, path), decode_text(pre, path))
            except PatchError:
                raise UndoError(f"cannot undo {cp.id}: {path} changed since and is not text; undo refused") from None
            if not merged.clean:
                raise UndoError(
                    f"cannot undo {cp.id}: {path} was edited after the patch and the edits overlap; undo refused\n"
                    + merged.conflicts[0].render()
                )
            plan.append((path, merged.text.encode("utf-8")))
        for path, data in plan:
            self._restore(path, data)
        self.checkpoints.mark_undone(cp)


@dataclass(slots=True)
class Checkpoint:
    id: str
    turn: int
    time: float
    summary: str
    post: dict[str, str | None]  # path -> sha256 of what the patch left (None: deleted)
    pre: dict[str, str | None]  # path -> blob name of the pre-image (None: did not exist)
    undone: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "turn": self.turn, "time": self.time, "summary": self.summary,
                "post": self.post, "pre": self.pre, "undone": self.undone}  # fmt: skip


@dataclass(slots=True)
class AppliedChange:
    written: list[str]
    skipped: list[str]  # files whose every hunk was rejected
    checkpoint: Checkpoint | None

    def for_model(self) -> str:
        parts = [f"applied: {', '.join(self.written)}" if self.written else "nothing was applied"]
        if self.skipped:
            parts.append(f"rejected by the user: {', '.join(self.skipped)}")
        return "; ".join(parts)


@dataclass(slots=True)
class CheckpointStore:
    """Pre-images and post-images of applied patches, one folder per checkpoint."""

    folder: Path
    _cache: list[Checkpoint] | None = field(default=None, init=False)

    def _blobs(self) -> Path:
        return self.folder / "blobs"

    def _put(self, data: bytes) -> str:
        name = hashlib.sha256(data).hexdigest()
        p = self._blobs() / name
        if not p.exists():
            p.parent.mkdir(parents=True, exist_ok=True)
            tmp = p.with_suffix(".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, p)
        return name

    def record(
        self, *, turn: int, now: float, pre: Mapping[str, bytes | None], post: Mapping[str, str | None], summary: str
    ) -> Checkpoint:
        all_ = self.all()
        cp_id = f"cp{len(all_) + 1:05d}"
        pre_names = {p: (None if d is None else self._put(d)) for p, d in pre.items()}
        cp = Checkpoint(cp_id, turn, now, summary, dict(post), pre_names)
        all_.append(cp)
        self._write(all_)
        return cp

    def pre_image(self, cp: Checkpoint, path: str) -> bytes | None:
        name = cp.pre.get(path)
        return None if name is None else (self._blobs() / name).read_bytes()

    def post_image(self, cp: Checkpoint, path: str) -> bytes | None:
        sha = cp.post.get(path)
        if sha is None:
            return None
        p = self._blobs() / sha
        return p.read_bytes() if p.exists() else None

    def store_post(self, data: bytes) -> None:
        self._put(data)

    def all(self) -> list[Checkpoint]:
        if self._cache is None:
            index = self.folder / "index.json"
            try:
                raw = json.loads(index.read_text(encoding="utf-8"))
                self._cache = [Checkpoint(**c) for c in raw]
            except (OSError, ValueError, TypeError):
                self._cache = []
        return self._cache

    def active(self) -> list[Checkpoint]:
        return [c for c in self.all() if not c.undone]

    def mark_undone(self, cp: Checkpoint) -> None:
        cp.undone = True
        self._write(self.all())

    def _write(self, cps: list[Checkpoint]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / "index.json.tmp"
        tmp.write_text(json.dumps([c.to_json() for c in cps], indent=1), encoding="utf-8")
        os.replace(tmp, self.folder / "index.json")

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        self._cache = None


class _suppress_missing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, et: object, ev: object, tb: object) -> bool:
        return isinstance(ev, FileNotFoundError)
