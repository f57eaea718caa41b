"""Blocking file reads for the context core: stat, read, hash (blake2b) and hand values over.

Everything here may run in an executor thread. Errors become values (`FileVersion` kind
"missing" / "unreadable"), never exceptions, except a project root that is gone (`RootMissingError`).
Symlinked directories are never followed (no loops, no escaping the root); symlinked files count
only when they resolve inside the root.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from app.context.coalesce import Batch
from app.context.ignore import IgnoreRules, normalise_rel
from app.context.snapshot import DEFAULT_MAX_FILE_BYTES, FileVersion, make_version

__all__ = [
    "BatchRead",
    "RootMissingError",
    "iter_tree",
    "load_rules",
    "read_batch",
    "read_many",
    "read_version",
    "rel_path",
    "resync",
    "scan_tree",
]

_IGNORE_FILES = (".gitignore", ".slipstreamignore")


class RootMissingError(OSError):
    """The project root no longer exists (deleted, unmounted, renamed)."""


def _check_root(root: Path) -> None:
    if not root.is_dir():
        raise RootMissingError(f"the project folder {root} no longer exists")


def rel_path(root: Path, path: str | os.PathLike[str]) -> str | None:
    """The root-relative POSIX path of an absolute path, or None when it is outside the root."""
    try:
        rel = os.path.relpath(os.fspath(path), os.fspath(root))
    except ValueError:  # different drive on Windows
        return None
    if rel == "." or rel.startswith(".." + os.sep) or rel == ".." or os.path.isabs(rel):
        return None
    return rel.replace(os.sep, "/")


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def load_rules(root: Path, user_patterns: Iterable[str] = ()) -> IgnoreRules:
    """Rules from settings and the root's .slipstreamignore; .gitignore files are added by the scan."""
    root = Path(root)
    _check_root(root)
    try:
        project = (root / ".slipstreamignore").read_text("utf-8", errors="replace")
    except OSError:
        project = ""
    return IgnoreRules(user_patterns=list(user_patterns), slipstreamignore=project)


def _inside(root: Path, target: str) -> bool:
    try:
        real_root = os.path.realpath(root)
        return os.path.commonpath([real_root, os.path.realpath(target)]) == real_root
    except ValueError:
        return False


def read_version(
    root: Path,
    rel: str,
    rules: IgnoreRules,
    *,
    max_bytes: int = DEFAULT_MAX_FILE_BYTES,
    keep_text: bool = True,
) -> FileVersion:
    """Read one file now. Gone -> kind "missing"; permission or I/O error -> "unreadable"."""
    rel = normalise_rel(rel)
    excl = rules.exclusion(rel)
    full = os.path.join(root, rel)  # plain strings: pathlib was a fifth of the cost of indexing a tree
    try:
        st = os.lstat(full)
        if stat.S_ISLNK(st.st_mode):
            if not _inside(root, full):
                return FileVersion(rel, "excluded", 0, st.st_mtime, reason="link outside the project")
            st = os.stat(full)
        if stat.S_ISDIR(st.st_mode):
            return FileVersion(rel, "missing")  # a directory now: not a file any more
        if not stat.S_ISREG(st.st_mode):
            return FileVersion(rel, "excluded", 0, st.st_mtime, reason="not a regular file")
        if excl is not None:
            return make_version(rel, None, size=st.st_size, mtime=st.st_mtime, exclusion=excl)
        if st.st_size > max_bytes:
            digest = f"size:{st.st_size}:mtime:{st.st_mtime_ns}"
            return make_version(rel, None, size=st.st_size, mtime=st.st_mtime, digest=digest, max_bytes=max_bytes)
        with open(full, "rb") as fh:
            # Ask for the size we saw (+1 to notice growth): a fixed max_bytes+1 request makes every
            # read allocate and shrink a 256 KB buffer, which doubled the cost of indexing a tree.
            data = fh.read(st.st_size + 1)
            if len(data) > st.st_size:
                data += fh.read(max_bytes + 1 - len(data))
    except (FileNotFoundError, NotADirectoryError):
        return FileVersion(rel, "missing")
    except OSError as exc:  # permission denied, I/O error, a symlink loop (ELOOP)
        return FileVersion(rel, "unreadable", reason=exc.strerror or str(exc))
    return make_version(rel, data, size=len(data), mtime=st.st_mtime, digest=_digest(data),
                        max_bytes=max_bytes, keep_text=keep_text)


def read_many(root: Path, rels: Iterable[str], rules: IgnoreRules, *,
              max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> dict[str, FileVersion]:
    """`read_version` with text for each path (the snapshot's candidates)."""
    return {r: read_version(root, r, rules, max_bytes=max_bytes) for r in rels}


def scan_tree(
    root: Path,
    rules: IgnoreRules,
    *,
    under: str = "",
    max_bytes: int = DEFAULT_MAX_FILE_BYTES,
    on_error: Callable[[str, OSError], None] | None = None,
) -> list[FileVersion]:
    """Index the tree (path, size, hash, kind; no text kept), loading .gitignore files on the way.

    Excluded directories are not entered; excluded files are listed as excluded so the UI can show
    why. Unreadable directories are reported through `on_error` and skipped.
    """
    return list(iter_tree(root, rules, under=under, max_bytes=max_bytes, on_error=on_error))


def iter_tree(
    root: Path,
    rules: IgnoreRules,
    *,
    under: str = "",
    max_bytes: int = DEFAULT_MAX_FILE_BYTES,
    on_error: Callable[[str, OSError], None] | None = None,
) -> Iterator[FileVersion]:
    """`scan_tree`, one file at a time, so a caller can hand out progress (and stop) while it runs."""
    root = Path(root)
    _check_root(root)
    start = normalise_rel(under) if under else ""
    if start:
        parts = start.split("/")
        for i in range(len(parts)):  # .gitignore files above a subtree apply to it too
            d = "/".join(parts[:i])
            _load_gitignore(root, d, rules)
    stack = [start]
    while stack:
        d = stack.pop()
        abs_dir = root / d if d else root
        _load_gitignore(root, d, rules)
        try:
            with os.scandir(abs_dir) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            if on_error is not None:
                on_error(d or ".", exc)
            continue
        for entry in entries:
            rel = f"{d}/{entry.name}" if d else entry.name
            try:
                if entry.is_symlink():
                    if entry.is_dir():
                        continue  # never follow directory links: loops and escapes
                    yield read_version(root, rel, rules, max_bytes=max_bytes, keep_text=False)
                elif entry.is_dir(follow_symlinks=False):
                    excl = rules.exclusion(rel, is_dir=True)
                    if excl is None:
                        stack.append(rel)
                    elif excl.reason == "secret":
                        yield FileVersion(rel + "/", "excluded", reason=excl.reason)
                elif entry.is_file(follow_symlinks=False):
                    yield read_version(root, rel, rules, max_bytes=max_bytes, keep_text=False)
            except OSError as exc:  # a link loop, a permission problem: listed, never silently dropped
                yield FileVersion(rel, "unreadable", reason=exc.strerror or str(exc))
                if on_error is not None:
                    on_error(rel, exc)


def _load_gitignore(root: Path, d: str, rules: IgnoreRules) -> None:
    path = (root / d if d else root) / ".gitignore"
    try:
        text = path.read_text("utf-8", errors="replace")
    except OSError:
        return
    rules.add_gitignore(d, text)


@dataclass(frozen=True, slots=True)
class BatchRead:
    """What a settled batch looks like on disk: renames first, then versions to observe."""

    moves: tuple[tuple[str, str], ...]
    versions: list[FileVersion]
    rules_changed: bool  # an ignore file changed: call `resync` for the whole tree


def read_batch(
    root: Path,
    rules: IgnoreRules,
    batch: Batch,
    known: Callable[[str], list[str]],
    *,
    max_bytes: int = DEFAULT_MAX_FILE_BYTES,
) -> BatchRead:
    """Read every path a batch names; rescan its directories; known files that vanished -> missing.

    `known(dir)` lists the files the ledger believes exist under `dir` (`Ledger.known_paths`).
    """
    root = Path(root)
    _check_root(root)
    versions: dict[str, FileVersion] = {}
    rules_changed = False
    for rel in sorted(batch.paths):
        name = rel.rsplit("/", 1)[-1]
        if name in _IGNORE_FILES:
            rules_changed = True
        versions[rel] = read_version(root, rel, rules, max_bytes=max_bytes)
    for d in sorted(batch.dirs):
        if rules.is_excluded(d, is_dir=True):
            continue
        found = scan_tree(root, rules, under=d, max_bytes=max_bytes) if (root / d).is_dir() else []
        for v in found:
            versions.setdefault(v.path, v)
        for p in known(d):
            versions.setdefault(p, read_version(root, p, rules, max_bytes=max_bytes))
    # a rescanned directory gives metadata only; re-read with text what the batch itself named
    for rel, v in versions.items():
        if v.kind == "text" and v.text is None:
            versions[rel] = read_version(root, rel, rules, max_bytes=max_bytes)
    return BatchRead(batch.moves, list(versions.values()), rules_changed)


def resync(root: Path, rules: IgnoreRules, known: Iterable[str], *,
           max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> list[FileVersion]:
    """A full rescan (ignore rules changed, watcher restarted): known files not found -> missing."""
    found = scan_tree(root, rules, max_bytes=max_bytes)
    seen = {v.path for v in found}
    # not found by the walk: gone, or now inside an excluded directory (then say so, not "deleted")
    return found + [read_version(root, p, rules, max_bytes=max_bytes, keep_text=False)
                    for p in known if p not in seen]
