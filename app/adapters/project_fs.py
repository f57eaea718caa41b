"""The one owner of the project's files: rules, confinement, reads, hashes, writes and checkpoints.

The context sync (app.services.workspace: scan, batches, snapshots) and the tools (read_file,
list_files, search, apply_patch) both go through one `ProjectFS`, so a change of the ignore rules
(`.slipstreamignore`, a `.gitignore`, the user's Settings) applies to both at once.

One confinement rule for every read and write:

- `app.tools.paths.confine` refuses `..`, absolute and home paths; where Windows name semantics
  apply, 8.3 short names and NTFS streams are refused too.
- The real path (symlinks resolved) must stay under the real root.
- The protected-path and secret rules are applied to the path as requested *and* to the resolved
  path, in every Windows spelling (`.git.`, `.git `, `.env:x`), case-insensitively for secrets and
  `.git` always and for the other rules where the root's file system is (detected per root,
  injectable for tests). So `docs/notes.cfg -> ../.git/config` and `notes.txt -> .env` are refused.
- The resolved path is then opened component by component from a descriptor of the root with
  `O_NOFOLLOW` (app.adapters.fs_read), so a link swapped in after the check fails the open.
- Only regular files and folders are served; nothing under `.git/` (any spelling) is ever written.

Writes go through `apply()`: all or nothing, its checkpoint recorded before the first file is
touched (app.adapters.checkpoints), a lock around every apply and undo, and recovery of a change
set a killed process left half-applied when the project is opened again.

Checkpoints live outside the project, under platformdirs' user_state_dir/checkpoints/<hash of
root>/ (0700), so nothing lands in the user's working tree or git index.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import threading
import time
from collections.abc import Callable, Container, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from app import profile
from app.adapters.checkpoints import Checkpoint, CheckpointStore
from app.adapters.fs_read import (
    DIRFD,
    BatchRead,
    LinkRaceError,
    RootMissingError,
    check_root,
    detect_case_insensitive,
    digest,
    open_dir,
    open_file_at,
    open_subdir,
    read_file,
    read_open,
    rel_path,
    remove_file,
    stat_digest,
    stray_temp_files,
    write_file,
)
from app.context.coalesce import Batch
from app.context.ignore import Exclusion, IgnoreRules, normalise_rel
from app.context.secrets_scan import redact_for_model
from app.context.snapshot import DEFAULT_MAX_FILE_BYTES, FileVersion, make_version
from app.tools.fileops import Entry
from app.tools.paths import PathRefused, confine, rule_spellings, touches_protected, windows_refusal

if TYPE_CHECKING:  # app.tools.patch (~850 lines) loads with the first apply, undo or recovery
    from app.tools.patch import ChangeSet

__all__ = [
    "AppliedChange",
    "Checkpoint",
    "CheckpointStore",
    "ProjectFS",
    "RootMissingError",
    "Target",
    "UndoError",
    "default_state_dir",
]

_REFUSE_REASONS = ("secret", "protected", "settings", "slipstreamignore")
IGNORE_FILES = (".gitignore", ".slipstreamignore")
MAX_PATH_CHARS = 4096
MAX_PATH_DEPTH = 256


class UndoError(Exception):
    """An undo that would lose the user's later edits, or has nothing to undo."""


def default_state_dir(root: Path) -> Path:
    """Per-project state folder outside the project: user_state_dir/checkpoints/<sha256(root)[:16]>."""
    h = hashlib.sha256(str(root.resolve()).encode("utf-8")).hexdigest()[:16]
    return profile.state_dir() / "checkpoints" / h


def _sha(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class Target:
    """A checked path: as requested (`rel`) and as it resolves on disk (`real`, root-relative)."""

    rel: str
    real: str

    @property
    def via_link(self) -> bool:
        return self.rel != self.real


def _plain(rel: str) -> bool:
    """No part of `rel` has a Windows spelling of another name (a stream, a trailing dot or space)."""
    return ":" not in rel and " /" not in rel and "./" not in rel and not rel.endswith((" ", "."))


class _ScanPlan:
    """Which regular files a walk reads and hashes (see `ProjectFS.iter_tree`)."""

    __slots__ = ("folder", "judge", "left", "only")

    def __init__(self, hash_first: int | None, only: Container[str] | None) -> None:
        self.left = hash_first  # files still to read before listing by metadata (None: all)
        self.only = only
        self.folder: str | None = None  # the folder `judge` answers for
        self.judge: Callable[[str], Exclusion | None] | None = None


class ProjectFS:
    """The project's files, confined to `root` (see module docstring); implements ProjectAccess."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        user_patterns: Iterable[str] = (),
        state_dir: Path | None = None,
        case_insensitive: bool | None = None,
        windows_names: bool | None = None,
        recover: bool = True,
    ) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise NotADirectoryError(f"project root is not a folder: {self.root}")
        self.case_insensitive = (
            detect_case_insensitive(self.root) if case_insensitive is None else case_insensitive
        )
        self.windows_names = os.name == "nt" if windows_names is None else windows_names
        self._lock = threading.RLock()
        self._user_patterns = list(user_patterns)
        self.rules_version = 0
        self.rules = IgnoreRules(casefold=self.case_insensitive)
        self._loaded: set[str] = set()  # folders whose .gitignore is in self.rules
        self.reload_rules()
        self.checkpoints = CheckpointStore(state_dir or default_state_dir(self.root))
        self.recovered: list[str] = []  # what recover() did at start-up, for a notice
        if recover:
            self.recovered = self.recover()

    # -- rules -----------------------------------------------------------------------------------

    @property
    def user_patterns(self) -> list[str]:
        return list(self._user_patterns)

    def reload_rules(self, user_patterns: Iterable[str] | None = None) -> None:
        """Re-read `.slipstreamignore` (and later each `.gitignore`), optionally with new Settings
        patterns; every reader and writer sees the new rules from the next call on."""
        if user_patterns is not None:
            self._user_patterns = list(user_patterns)
        try:
            project = self._read_plain(".slipstreamignore").decode("utf-8", "replace")
        except OSError:
            project = ""
        with self._lock:
            self.rules = IgnoreRules(
                user_patterns=self._user_patterns, slipstreamignore=project, casefold=self.case_insensitive
            )
            self._loaded = set()
            self.rules_version += 1

    def _read_plain(self, rel: str) -> bytes:
        """An ignore file's bytes, through the same link-safe open (a link out of the root fails)."""
        real = os.path.realpath(self.root / rel)
        real_rel = rel_path(self.root, real)
        if real_rel is None:
            raise PermissionError(errno.EACCES, f"{rel} leads outside the project")
        return read_file(self.root, real_rel, 1 << 20)[0]

    def _load_gitignore(self, rel_dir: str) -> None:
        if rel_dir in self._loaded:
            return
        self._loaded.add(rel_dir)
        try:
            text = self._read_plain(f"{rel_dir}/.gitignore" if rel_dir else ".gitignore").decode(
                "utf-8", "replace"
            )
        except OSError:
            return
        self.rules.add_gitignore(rel_dir, text)

    def exclusion(self, rel: str, *, is_dir: bool = False) -> Exclusion | None:
        """Why `rel` is excluded (every Windows spelling checked), or None; loads .gitignore files."""
        if not rel:
            return None
        with self._lock:
            self._load_gitignores_for(rel)
            plain = _plain(rel)
            for spelling in (rel,) if plain else rule_spellings(rel):
                try:
                    excl = self.rules.exclusion(spelling, is_dir=is_dir)
                except ValueError:
                    return Exclusion("protected", "defaults")
                if excl is not None:
                    return excl
        return None

    def _load_gitignores_for(self, rel: str) -> None:
        """Load the .gitignore of each folder above `rel` (under the lock)."""
        # a folder is only ever loaded after all of its ancestors: a loaded parent means all are
        if rel.rpartition("/")[0] not in self._loaded:
            parts = rel.split("/")
            for i in range(len(parts)):
                d = "/".join(parts[:i])
                if d not in self._loaded and i and not os.path.isdir(self.root / d):
                    break  # folders that do not exist hold no .gitignore
                self._load_gitignore(d)

    def _folder_judge(self, d: str) -> Callable[[str], Exclusion | None]:
        """`exclusion(rel)` for the files listed in folder `d`, the folder's share decided once (an
        index asks it of every file: half the cost of listing one by its metadata). Same answers:
        a path the rules' fast way cannot take, or rules reloaded meanwhile, go the whole way."""
        with self._lock:
            self._load_gitignores_for(f"{d}/-" if d else "-")
            version, judge = self.rules_version, self.rules.file_judge(d)
        slow, lock = self.exclusion, self._lock

        def exclusion(rel: str) -> Exclusion | None:
            if "\\" in rel or not _plain(rel):
                return slow(rel)
            with lock:
                if self.rules_version == version:
                    return judge(rel)
            return slow(rel)

        return exclusion

    def is_excluded(self, rel: str, *, is_dir: bool = False) -> bool:
        """For the watcher: the same rules, so a rule change reaches it too."""
        return self.exclusion(rel, is_dir=is_dir) is not None

    # -- confinement -----------------------------------------------------------------------------

    def target(self, raw: object, *, write: bool = False, allow_root: bool = False) -> Target:
        """The checked `Target` for a tool path, or PathRefused with words for the model."""
        rel = confine(raw, allow_root=allow_root)
        if len(rel) > MAX_PATH_CHARS or rel.count("/") >= MAX_PATH_DEPTH:
            raise PathRefused(
                f"path too long ({len(rel):,} characters, {rel.count('/') + 1} levels); refused"
            )
        if self.windows_names and rel:
            why = windows_refusal(rel)
            if why:
                raise PathRefused(why)
        if not rel:
            return Target("", "")
        real_abs = os.path.realpath(self.root / rel)
        real = rel_path(self.root, real_abs)
        if real is None:
            if os.path.normcase(real_abs) == os.path.normcase(str(self.root)):
                real = ""
            else:
                raise PathRefused(f"{rel} is a symlink that leads outside the project; refused")
        t = Target(rel, real)
        for spelling in {rel, real} - {""}:
            self._check_rules(
                spelling, write=write, shown=rel if spelling == rel else f"{rel} (a link to {real})"
            )
        try:
            st = os.stat(real_abs)
        except FileNotFoundError:
            return t
        except OSError as exc:
            raise PathRefused(f"{rel}: {exc.strerror}") from None
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            raise PathRefused(f"{rel} is not a regular file (device, FIFO or socket); refused")
        return t

    def _check_rules(self, rel: str, *, write: bool, shown: str) -> None:
        if write and touches_protected(rel):
            raise PathRefused(f"{shown} is inside .git (or another VCS folder); the tools never write there")
        excl = self.exclusion(rel)
        if excl is not None and excl.reason in _REFUSE_REASONS:
            what = {"secret": "a secret", "protected": "a protected version-control file"}.get(
                excl.reason, f"excluded by {excl.source}"
            )
            raise PathRefused(f"{shown} is {what}; the tools may not {'write' if write else 'read'} it")

    def describe(self, payload: dict[str, object]) -> dict[str, object]:
        """The review payload with each file's resolved target where it differs (`resolved`)."""
        files = payload.get("files")
        if isinstance(files, list):
            for f in files:
                if isinstance(f, dict):
                    try:
                        t = self.target(f.get("path"), write=True)
                    except PathRefused:
                        continue
                    if t.via_link:
                        f["resolved"] = t.real
        return payload

    # -- ProjectAccess: the tools ----------------------------------------------------------------

    def read_bytes(self, path: str, limit: int | None = None) -> bytes | None:
        """The file's bytes (at most `limit`), None when it does not exist; PathRefused otherwise."""
        t = self.target(path)
        try:
            return read_file(self.root, t.real, limit)[0]
        except (FileNotFoundError, NotADirectoryError):
            return None
        except IsADirectoryError:
            raise PathRefused(f"{t.rel} is a folder; use list_files") from None
        except LinkRaceError:
            raise PathRefused(f"{t.rel}: a link on the way changed while reading; refused") from None
        except OSError as exc:
            raise PathRefused(f"{t.rel}: {exc.strerror or exc}") from None

    def redact(self, text: str) -> tuple[str, list[str]]:
        """Tool output with credential-looking lines withheld, and what was withheld (for a notice)."""
        return redact_for_model(text)

    def walk(self, under: str = "") -> Iterator[Entry]:
        """Every visible file and folder below `under`, rules applied, sorted per folder."""
        t = self.target(under, allow_root=True)
        if not (self.root / t.real).is_dir():
            raise PathRefused(f"{t.rel or '.'} is not a folder")
        stack = [t.real]
        while stack:
            d = stack.pop()
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
                real = rel
                if is_link:
                    real_ = rel_path(self.root, os.path.realpath(e.path))
                    if real_ is None:
                        continue
                    real = real_
                is_dir = stat.S_ISDIR(st.st_mode)
                if not is_dir and not stat.S_ISREG(st.st_mode):
                    continue
                if self.is_excluded(rel, is_dir=is_dir) or (
                    is_link and self.is_excluded(real, is_dir=is_dir)
                ):
                    continue
                yield Entry(rel, is_dir, 0 if is_dir else st.st_size)
                if is_dir and not is_link:
                    subdirs.append(rel)
            stack.extend(reversed(subdirs))

    # -- the context sync ------------------------------------------------------------------------

    def read_version(
        self,
        rel: str,
        *,
        max_bytes: int = DEFAULT_MAX_FILE_BYTES,
        keep_text: bool = True,
        parent_clean: bool = False,
    ) -> FileVersion:
        """One file as the context sees it now: gone -> "missing", I/O trouble -> "unreadable",
        excluded (also through a link) -> "excluded"; never raises."""
        rel = normalise_rel(rel)
        full = self.root / rel
        try:
            st = os.lstat(full)
        except (FileNotFoundError, NotADirectoryError):
            return FileVersion(rel, "missing")
        except OSError as exc:
            return FileVersion(rel, "unreadable", reason=exc.strerror or str(exc))
        real = rel
        if stat.S_ISLNK(st.st_mode) or not parent_clean:
            real_ = rel_path(self.root, os.path.realpath(full))
            if real_ is None:
                return FileVersion(rel, "excluded", 0, st.st_mtime, reason="link outside the project")
            real = real_
            if real != rel:
                try:
                    st = os.stat(full)
                except (FileNotFoundError, NotADirectoryError):
                    return FileVersion(rel, "missing")
                except OSError as exc:
                    return FileVersion(rel, "unreadable", reason=exc.strerror or str(exc))
        if stat.S_ISDIR(st.st_mode):
            return FileVersion(rel, "missing")  # a directory now: not a file any more
        if not stat.S_ISREG(st.st_mode):
            return FileVersion(rel, "excluded", 0, st.st_mtime, reason="not a regular file")
        excl = self.exclusion(rel) or (self.exclusion(real) if real != rel else None)
        if excl is not None:
            return make_version(rel, None, size=st.st_size, mtime=st.st_mtime, exclusion=excl)
        if st.st_size > max_bytes:
            dig = stat_digest(st)
            return make_version(
                rel, None, size=st.st_size, mtime=st.st_mtime, digest=dig, max_bytes=max_bytes
            )
        try:
            data, st = read_file(self.root, real, max_bytes + 1)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return FileVersion(rel, "missing")
        except OSError as exc:  # permission denied, I/O error, a link swapped in (ELOOP)
            return FileVersion(rel, "unreadable", reason=exc.strerror or str(exc))
        return make_version(
            rel,
            data,
            size=len(data),
            mtime=st.st_mtime,
            digest=digest(data),
            max_bytes=max_bytes,
            keep_text=keep_text,
        )

    def read_many(
        self, rels: Iterable[str], *, max_bytes: int = DEFAULT_MAX_FILE_BYTES
    ) -> dict[str, FileVersion]:
        """`read_version` with text for each path (the snapshot's candidates)."""
        return {r: self.read_version(r, max_bytes=max_bytes) for r in rels}

    def scan_tree(
        self,
        *,
        under: str = "",
        max_bytes: int = DEFAULT_MAX_FILE_BYTES,
        on_error: Callable[[str, OSError], None] | None = None,
    ) -> list[FileVersion]:
        """The whole `iter_tree` as a list."""
        return list(self.iter_tree(under=under, max_bytes=max_bytes, on_error=on_error))

    def iter_tree(
        self,
        *,
        under: str = "",
        max_bytes: int = DEFAULT_MAX_FILE_BYTES,
        on_error: Callable[[str, OSError], None] | None = None,
        hash_first: int | None = None,
        only: Container[str] | None = None,
    ) -> Generator[FileVersion, None, None]:
        """Index the tree (path, size, hash, kind; no text kept).

        `hash_first`: read and hash only that many regular files; the rest are listed by their
        metadata (`FileVersion.hashed` False), so a huge tree is known in a fraction of the time and
        hashed later. `only`: read just these paths (other regular files are skipped unread).

        Excluded directories are not entered; excluded files are listed as excluded so the UI can
        show why; directory links are never followed. Unreadable directories go to `on_error`.
        One file at a time, so a caller can hand out progress (and stop) while it runs.

        Each folder is listed through a descriptor opened relative to its parent's with O_NOFOLLOW,
        and each file opened relative to its folder's descriptor (O_NOFOLLOW too): one open per
        file instead of one per path component, with the same guarantee as `read_version`. Files
        that are links, or that fail that one open, get `read_version`'s own answer.
        """
        check_root(self.root)
        start = normalise_rel(under) if under else ""
        plan = _ScanPlan(hash_first, only)
        if not DIRFD:
            yield from self._iter_tree_paths(start, max_bytes, on_error, plan)
            return
        try:
            with open_dir(self.root, start) as start_fd:
                top = os.dup(start_fd)
        except OSError as exc:
            if on_error is not None:
                on_error(start or ".", exc)
            return
        # (folder, its descriptor, sub-folders still to enter: the last popped first, as before)
        stack: list[tuple[str, int, list[str] | None]] = [(start, top, None)]
        try:
            while stack:
                d, dfd, subs = stack[-1]
                if subs is None:
                    subs = []
                    stack[-1] = (d, dfd, subs)
                    try:
                        with os.scandir(dfd) as it:
                            entries = sorted(it, key=lambda e: e.name)
                    except OSError as exc:
                        if on_error is not None:
                            on_error(d or ".", exc)
                        entries = []
                    for entry in entries:
                        v = self._entry(entry, d, dfd, subs, max_bytes, on_error, plan)
                        if v is not None:
                            yield v
                elif subs:
                    name = subs.pop()
                    rel = f"{d}/{name}" if d else name
                    try:
                        stack.append((rel, open_subdir(dfd, name, rel), None))
                    except OSError as exc:  # gone, unreadable, or swapped for a link since listed
                        if on_error is not None:
                            on_error(rel, exc)
                else:
                    stack.pop()
                    os.close(dfd)
        finally:
            for _d, dfd, _subs in stack:
                os.close(dfd)

    def _stat_file(
        self, rel: str, entry: os.DirEntry[str], max_bytes: int, d: str, plan: _ScanPlan
    ) -> FileVersion:
        """A regular file of folder `d` listed by its metadata only (not opened: `FileVersion.hashed`
        is False). Most of a big tree's files come this way: the folder's share of the ignore rules
        is decided once (`_folder_judge`), and a plain file's version is built directly."""
        if plan.folder != d or plan.judge is None:
            plan.folder, plan.judge = d, self._folder_judge(d)
        excl = plan.judge(rel)
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:  # gone since it was listed: the careful path decides
            return self.read_version(rel, max_bytes=max_bytes, keep_text=False, parent_clean=True)
        if excl is not None:
            return make_version(rel, None, size=st.st_size, mtime=st.st_mtime, exclusion=excl)
        if st.st_size > max_bytes:
            dig = stat_digest(st)
            return make_version(
                rel, None, size=st.st_size, mtime=st.st_mtime, digest=dig, max_bytes=max_bytes
            )
        return FileVersion(rel, "text", st.st_size, st.st_mtime)  # what make_version makes of it

    def _scan_file(
        self, dfd: int, name: str, rel: str, entry: os.DirEntry[str], max_bytes: int
    ) -> FileVersion:
        """`read_version(rel, keep_text=False, parent_clean=True)` for a regular file just listed in
        folder descriptor `dfd`: one open, relative to `dfd`, with O_NOFOLLOW."""
        excl = self.exclusion(rel)
        if excl is not None:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                return self.read_version(rel, max_bytes=max_bytes, keep_text=False, parent_clean=True)
            return make_version(rel, None, size=st.st_size, mtime=st.st_mtime, exclusion=excl)
        try:
            fd, st = open_file_at(dfd, name, rel)
        except OSError:  # gone, swapped for a link or a folder, no permission: the careful path decides
            return self.read_version(rel, max_bytes=max_bytes, keep_text=False, parent_clean=True)
        try:
            if st.st_size > max_bytes:
                dig = stat_digest(st)
                return make_version(
                    rel, None, size=st.st_size, mtime=st.st_mtime, digest=dig, max_bytes=max_bytes
                )
            try:
                data = read_open(fd, st, max_bytes + 1)
            except OSError as exc:
                return FileVersion(rel, "unreadable", reason=exc.strerror or str(exc))
        finally:
            os.close(fd)
        return make_version(
            rel,
            data,
            size=len(data),
            mtime=st.st_mtime,
            digest=digest(data),
            max_bytes=max_bytes,
            keep_text=False,
        )

    def _iter_tree_paths(
        self,
        start: str,
        max_bytes: int,
        on_error: Callable[[str, OSError], None] | None,
        plan: _ScanPlan,
    ) -> Iterator[FileVersion]:
        """`iter_tree` where folders cannot be opened as descriptors (Windows): by path."""
        stack = [start]
        while stack:
            d = stack.pop()
            try:
                with os.scandir(self.root / d if d else self.root) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as exc:
                if on_error is not None:
                    on_error(d or ".", exc)
                continue
            subs: list[str] = []
            for entry in entries:
                v = self._entry(entry, d, -1, subs, max_bytes, on_error, plan)
                if v is not None:
                    yield v
            stack.extend(f"{d}/{name}" if d else name for name in subs)

    def _entry(
        self,
        entry: os.DirEntry[str],
        d: str,
        dfd: int,
        subs: list[str],
        max_bytes: int,
        on_error: Callable[[str, OSError], None] | None,
        plan: _ScanPlan,
    ) -> FileVersion | None:
        """One listed entry of folder `d` (descriptor `dfd`, -1: none): a file's version, a secret
        folder's row, or None (a folder to enter is appended to `subs`; links to folders are skipped;
        a file `plan` leaves out)."""
        rel = f"{d}/{entry.name}" if d else entry.name
        if plan.only is not None and rel not in plan.only and not entry.is_dir(follow_symlinks=False):
            return None
        try:
            if entry.is_symlink():
                if entry.is_dir():
                    return None  # never follow directory links: loops and escapes
                return self.read_version(rel, max_bytes=max_bytes, keep_text=False, parent_clean=True)
            if entry.is_dir(follow_symlinks=False):
                excl = self.exclusion(rel, is_dir=True)
                if excl is None:
                    subs.append(entry.name)
                elif excl.reason == "secret":
                    return FileVersion(rel + "/", "excluded", reason=excl.reason)
                return None
            if entry.is_file(follow_symlinks=False):
                if plan.left is not None and plan.left <= 0:
                    return self._stat_file(rel, entry, max_bytes, d, plan)
                if dfd < 0:
                    v = self.read_version(rel, max_bytes=max_bytes, keep_text=False, parent_clean=True)
                else:
                    v = self._scan_file(dfd, entry.name, rel, entry, max_bytes)
                if plan.left is not None and v.kind in ("text", "binary"):
                    plan.left -= 1  # one more file read and hashed
                return v
        except OSError as exc:  # a link loop, a permission problem: listed, never silently dropped
            if on_error is not None:
                on_error(rel, exc)
            return FileVersion(rel, "unreadable", reason=exc.strerror or str(exc))
        return None

    def read_batch(
        self, batch: Batch, known: Callable[[str], list[str]], *, max_bytes: int = DEFAULT_MAX_FILE_BYTES
    ) -> BatchRead:
        """Read every path a batch names; rescan its directories; known files that vanished -> missing.

        An ignore file among the paths reloads the rules first (for the tools too) and says so.
        """
        check_root(self.root)
        rules_changed = any(p.rsplit("/", 1)[-1] in IGNORE_FILES for p in batch.paths)
        if rules_changed:
            self.reload_rules()
        versions: dict[str, FileVersion] = {}
        for rel in sorted(batch.paths):
            versions[rel] = self.read_version(rel, max_bytes=max_bytes)
        for d in sorted(batch.dirs):
            if self.is_excluded(d, is_dir=True):
                continue
            found = self.scan_tree(under=d, max_bytes=max_bytes) if (self.root / d).is_dir() else []
            for v in found:
                versions.setdefault(v.path, v)
            for p in known(d):
                versions.setdefault(p, self.read_version(p, max_bytes=max_bytes))
        for rel, v in versions.items():  # a rescanned directory gives metadata only: re-read with text
            if v.kind == "text" and v.text is None:
                versions[rel] = self.read_version(rel, max_bytes=max_bytes)
        return BatchRead(batch.moves, list(versions.values()), rules_changed)

    def resync(self, known: Iterable[str], *, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> list[FileVersion]:
        """A full rescan (rules changed, watcher restarted): known files not found -> missing or excluded.
        The rules are re-read first, so an ignore file edited behind the watcher's back counts too."""
        self.reload_rules()
        found = self.scan_tree(max_bytes=max_bytes)
        seen = {v.path for v in found}
        return found + [
            self.read_version(p, max_bytes=max_bytes, keep_text=False) for p in known if p not in seen
        ]

    # -- writing ---------------------------------------------------------------------------------

    def write_atomic(self, path: str, data: bytes) -> None:
        """Replace the file in one step (unique temp file, fsync, rename); keeps its mode; never via a link."""
        t = self.target(path, write=True)
        self._write_real(t, data)

    def _write_real(self, t: Target, data: bytes) -> None:
        try:
            write_file(self.root, t.real, data)
        except LinkRaceError:
            raise PathRefused(f"{t.rel}: a folder on the way is (or became) a link; refused") from None

    def delete(self, path: str) -> None:
        t = self.target(path, write=True)
        self._delete(t)

    def _delete(self, t: Target) -> None:
        """Remove the entry as named: a link itself, never the file it points to."""
        try:
            os.lstat(self.root / t.rel)
            is_link = os.path.islink(self.root / t.rel)
        except OSError:
            is_link = False
        try:
            remove_file(self.root, t.rel if is_link else t.real)
        except LinkRaceError:
            raise PathRefused(f"{t.rel}: a folder on the way is (or became) a link; refused") from None

    def _current(self, t: Target) -> bytes | None:
        try:
            return read_file(self.root, t.real)[0]
        except (FileNotFoundError, NotADirectoryError):
            return None
        except IsADirectoryError:
            from app.tools.patch import PatchApplyError

            raise PatchApplyError(f"{t.rel} is a folder; nothing was written") from None
        except OSError as exc:
            from app.tools.patch import PatchApplyError

            raise PatchApplyError(f"{t.rel}: {exc.strerror or exc}; nothing was written") from None

    def apply(
        self,
        change_set: ChangeSet,
        accepted: Mapping[str, Sequence[bool]] | None = None,
        *,
        turn: int = 0,
        now: float | None = None,
    ) -> AppliedChange:
        """Write the accepted hunks of `change_set` and record a checkpoint; all or nothing.

        `accepted` maps a file (its payload path) to one bool per hunk; missing files are accepted whole.
        A file that changed on disk since the change set was planned is merged three-way, or the whole
        apply is refused with PatchConflict. Two sections naming one file on disk (two spellings, a
        link and its target, two letter cases on a case-insensitive disk) are refused.
        """
        with self.checkpoints.locked():
            return self._apply_locked(
                change_set, accepted, turn=turn, now=time.time() if now is None else now
            )

    def _apply_locked(
        self, change_set: ChangeSet, accepted: Mapping[str, Sequence[bool]] | None, *, turn: int, now: float
    ) -> AppliedChange:
        from app.tools.patch import PatchApplyError, PatchConflict, decode_text, merge3

        writes: list[tuple[Target, bytes | None]] = []  # new bytes, or None to delete
        pre: dict[str, bytes | None] = {}
        skipped: list[str] = []
        owners: dict[str, str] = {}  # folded real path -> the spelling that claimed it

        def claim(t: Target) -> Target:
            key = t.real.lower() if self.case_insensitive else t.real
            prior = owners.get(key)
            if prior is not None and prior != t.rel:
                raise PatchApplyError(
                    f"{prior} and {t.rel} are the same file on disk; a patch may change a file "
                    "once; nothing was written"
                )
            owners[key] = t.rel
            return t

        for plan in change_set.files:
            key = plan.target if plan.move_to else plan.path
            sel = None if accepted is None else accepted.get(key, accepted.get(plan.path))
            if sel is not None and len(sel) != plan.hunk_count:
                raise PatchApplyError(f"{key}: {len(sel)} hunk decisions for {plan.hunk_count} hunks")
            if sel is not None and not any(sel):
                skipped.append(key)
                continue
            try:
                src = claim(self.target(plan.path, write=True))
            except PathRefused as exc:
                raise PatchApplyError(f"{exc}; nothing was written") from None
            new_text = plan.render(sel)
            current = self._current(src)
            pre[src.rel] = current
            if plan.op == "add":
                if current is not None:
                    raise PatchApplyError(f"{plan.path} was created on disk meanwhile; nothing was written")
                writes.append((src, (new_text or "").encode("utf-8")))
                continue
            if current is None:
                raise PatchApplyError(f"{plan.path} was deleted on disk meanwhile; nothing was written")
            if plan.op == "delete":
                if plan.disk_bytes is not None and current != plan.disk_bytes:
                    raise PatchApplyError(
                        f"{plan.path} changed on disk meanwhile; not deleted, nothing was written"
                    )
                writes.append((src, None))
                continue
            cur_text = decode_text(current, plan.path)
            assert new_text is not None and plan.disk is not None
            if cur_text != plan.disk:
                merged = merge3(plan.disk, cur_text, new_text)
                if not merged.clean:
                    raise PatchConflict(plan.path, merged.conflicts)
                new_text = merged.text
            if plan.move_to:
                try:
                    dst = claim(self.target(plan.move_to, write=True))
                except PathRefused as exc:
                    raise PatchApplyError(f"{exc}; nothing was written") from None
                there = self._current(dst)
                if there != plan.target_bytes:
                    raise PatchApplyError(
                        f"{plan.move_to} changed on disk meanwhile; {plan.path} was not moved, "
                        "nothing was written"
                    )
                pre[dst.rel] = there
                writes.append((dst, new_text.encode("utf-8")))
                writes.append((src, None))
            else:
                writes.append((src, new_text.encode("utf-8")))
        if not writes:
            return AppliedChange([], skipped, None)
        post = {t.rel: d for t, d in writes}
        cp = self.checkpoints.begin(
            turn=turn, now=now, pre={p: pre.get(p) for p in post}, post=post, summary=change_set.summary()
        )
        done: list[Target] = []
        try:
            for t, data in writes:
                self._write_one(t, data)
                done.append(t)
        except (OSError, PathRefused) as exc:
            for t in reversed(done):  # roll back what was written
                self._restore(t, pre.get(t.rel))
            self.checkpoints.set_state(cp, "rolled_back")
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise PatchApplyError(f"writing {t.rel} failed ({why}); nothing was changed") from None
        self.checkpoints.set_state(cp, "applied")
        self.checkpoints.prune(now=now)
        links = {t.rel: t.real for t, _ in writes if t.via_link}
        return AppliedChange([t.rel for t, _ in writes], skipped, cp, links)

    def _write_one(self, t: Target, data: bytes | None) -> None:
        """One file of an apply (a seam the crash tests slow down)."""
        if data is None:
            self._delete(t)
        else:
            self._write_real(t, data)

    def _restore(self, t: Target, data: bytes | None) -> None:
        if data is None:
            self._delete(t)
        else:
            self._write_real(t, data)

    # -- recovery --------------------------------------------------------------------------------

    def recover(self) -> list[str]:
        """Roll back change sets a killed process left pending; remove its temp files. Notes for the user."""
        notes: list[str] = []
        if not (self.checkpoints.folder / "index.json").exists():
            return notes  # nothing was ever applied here: do not even create the folder
        from app.tools.patch import PatchError

        try:
            with self.checkpoints.locked():
                pending = self.checkpoints.pending()
                for cp in pending:
                    kept: list[str] = []
                    for path, post_sha in cp.post.items():
                        try:
                            t = self.target(path, write=True)
                            current = self._current(t)
                        except (PathRefused, PatchError):
                            kept.append(path)
                            continue
                        pre = self.checkpoints.pre_image(cp, path)
                        if _sha(current) == _sha(pre):
                            continue
                        if _sha(current) == post_sha:
                            self._restore(t, pre)
                        else:
                            kept.append(path)  # changed since by someone else: left as it is
                    dirs = {p.rsplit("/", 1)[0] if "/" in p else "" for p in cp.post}
                    for stray in stray_temp_files(self.root, dirs):
                        remove_file(self.root, stray)
                    self.checkpoints.set_state(cp, "rolled_back")
                    extra = f" ({', '.join(kept)} changed since and left alone)" if kept else ""
                    files = list(cp.post)
                    shown = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
                    notes.append(f"A change set a crash interrupted was rolled back ({shown}){extra}.")
        except OSError as exc:
            notes.append(f"Checking for interrupted changes failed: {exc}")
        return notes

    # -- undo ------------------------------------------------------------------------------------

    def undo(self, checkpoint_id: str | None = None) -> list[Checkpoint]:
        """Undo the last checkpoint, or `checkpoint_id` and every later one; newest first.

        Refuses (UndoError) when a file was edited after the patch in a way that cannot be merged.
        """
        with self.checkpoints.locked():
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
        from app.tools.patch import PatchError, decode_text, merge3

        plan: list[tuple[Target, bytes | None]] = []
        for path, post_sha in cp.post.items():
            try:
                t = self.target(path, write=True)
            except PathRefused as exc:
                raise UndoError(f"cannot undo {cp.id}: {exc}") from None
            pre = self.checkpoints.pre_image(cp, path)
            if pre is None and cp.pre.get(path) is not None:
                raise UndoError(
                    f"cannot undo {cp.id}: the saved copy of {path} is gone (pruned?); undo refused"
                )
            current = self._current(t)
            if _sha(current) == post_sha:
                plan.append((t, pre))
                continue
            # The user edited the file after the patch: take the patch back out of their version.
            if current is None or pre is None or post_sha is None:
                raise UndoError(
                    f"cannot undo {cp.id}: {path} was created, deleted or replaced since; undo refused"
                )
            post = self.checkpoints.post_image(cp, path)
            if post is None:
                raise UndoError(
                    f"cannot undo {cp.id}: {path} changed since and its patched copy was not kept"
                )
            try:
                merged = merge3(decode_text(post, path), decode_text(current, path), decode_text(pre, path))
            except PatchError:
                raise UndoError(
                    f"cannot undo {cp.id}: {path} changed since and is not text; undo refused"
                ) from None
            if not merged.clean:
                raise UndoError(
                    f"cannot undo {cp.id}: {path} was edited after the patch and the edits overlap; undo refused\n"
                    + merged.conflicts[0].render()
                )
            plan.append((t, merged.text.encode("utf-8")))
        for t, data in plan:
            self._restore(t, data)
        self.checkpoints.mark_undone(cp)


@dataclass(slots=True)
class AppliedChange:
    written: list[str]
    skipped: list[str]  # files whose every hunk was rejected
    checkpoint: Checkpoint | None
    links: dict[str, str] | None = None  # requested path -> the file it resolved to, where different

    def for_model(self) -> str:
        shown = [
            f"{p} (written to {self.links[p]})" if self.links and p in self.links else p for p in self.written
        ]
        parts = [f"applied: {', '.join(shown)}" if self.written else "nothing was applied"]
        if self.skipped:
            parts.append(f"rejected by the user: {', '.join(self.skipped)}")
        return "; ".join(parts)
