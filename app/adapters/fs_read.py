"""Low-level, link-safe file access beneath a project root: the primitives `ProjectFS` is built on.

Every open walks the path one component at a time from a descriptor of the root, each step with
`O_NOFOLLOW` (`openat`-style, through `dir_fd`), so a component that is, or is swapped for, a
symlink between our check and our use fails the open instead of leading elsewhere. Callers resolve
and check the real path first, then open that real path through these functions. Where the platform
has no `dir_fd` support (Windows), the same calls fall back to plain paths checked with `realpath`
after the open.

Also here: the project's content hash, root-relative path conversion, and whether a root's file
system compares names case-insensitively (detected per root: a sibling spelling in another case
names the same file).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from app.context.snapshot import FileVersion

__all__ = [
    "BatchRead",
    "LinkRaceError",
    "RootMissingError",
    "detect_case_insensitive",
    "digest",
    "open_dir",
    "open_file_at",
    "open_subdir",
    "read_file",
    "read_open",
    "rel_path",
    "remove_file",
    "stat_digest",
    "write_file",
]

DIRFD = os.name == "posix" and os.open in os.supports_dir_fd and hasattr(os, "O_NOFOLLOW")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_BINARY = getattr(os, "O_BINARY", 0)
TMP_SUFFIX = ".slipstream-tmp"


class RootMissingError(OSError):
    """The project root no longer exists (deleted, unmounted, renamed)."""


class LinkRaceError(OSError):
    """A path component is (or became) a symlink or not a folder while we walked it."""


def check_root(root: Path) -> None:
    if not root.is_dir():
        raise RootMissingError(f"the project folder {root} no longer exists")


def digest(data: bytes) -> str:
    """The content hash the context uses (blake2b, 128 bits)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def stat_digest(st: os.stat_result) -> str:
    """The digest of a file too large to read: its size and modification time stand for the content."""
    return f"size:{st.st_size}:mtime:{st.st_mtime_ns}"


def rel_path(root: Path, path: str | os.PathLike[str]) -> str | None:
    """The root-relative POSIX path of an absolute path, or None when it is outside (or is) the root."""
    try:
        rel = os.path.relpath(os.fspath(path), os.fspath(root))
    except ValueError:  # different drive on Windows
        return None
    if rel == "." or rel.startswith(".." + os.sep) or rel == ".." or os.path.isabs(rel):
        return None
    return rel.replace(os.sep, "/")


def detect_case_insensitive(root: Path) -> bool:
    """Does the file system under `root` treat `A` and `a` as one name? Probed, never written.

    Looks for a name with letters at the root or among its first entries, and stats the same name
    in swapped case: the same file means case-insensitive. Falls back to the platform default
    (macOS and Windows: yes) when no such name exists.
    """
    candidates: list[Path] = [root]
    with contextlib.suppress(OSError), os.scandir(root) as it:
        for n, entry in enumerate(it):
            candidates.append(Path(entry.path))
            if n >= 32:
                break
    for cand in candidates:
        name = cand.name
        swapped = name.swapcase()
        if swapped == name:
            continue
        try:
            a = os.lstat(cand)
            b = os.lstat(cand.with_name(swapped))
        except FileNotFoundError:
            return False
        except OSError:
            continue
        return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
    return sys.platform in ("darwin", "win32")


def _parts(rel: str) -> list[str]:
    return [p for p in rel.split("/") if p]


@contextlib.contextmanager
def open_dir(root: Path, rel_dir: str, *, create: bool = False) -> Iterator[int]:
    """A descriptor of folder `rel_dir` beneath `root`, reached without following any link.

    `create` makes missing folders on the way (mode 0o777 less the umask). LinkRaceError when a
    component is a link or not a folder. Yields -1 where dir_fd is unsupported (use paths).
    """
    if not DIRFD:
        target = root.joinpath(*_parts(rel_dir))
        if create:
            target.mkdir(parents=True, exist_ok=True)
        yield -1
        return
    fd = os.open(root, os.O_RDONLY | _DIRECTORY | _CLOEXEC)
    try:
        for part in _parts(rel_dir):
            try:
                nfd = open_subdir(fd, part, rel_dir)
            except FileNotFoundError:
                if not create:
                    raise
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o777, dir_fd=fd)
                nfd = open_subdir(fd, part, rel_dir)
            os.close(fd)
            fd = nfd
        yield fd
    finally:
        os.close(fd)


def _split(rel: str) -> tuple[str, str]:
    parts = _parts(rel)
    return "/".join(parts[:-1]), parts[-1]


def read_file(root: Path, rel: str, limit: int | None = None) -> tuple[bytes, os.stat_result]:
    """The bytes (at most `limit`) of regular file `rel`, opened without following links.

    IsADirectoryError for a folder; LinkRaceError for a link on the way; OSError("not a regular
    file") for FIFOs, sockets and devices (opened non-blocking, so a FIFO cannot hang us).
    """
    parent, name = _split(rel)
    with open_dir(root, parent) as dfd:
        fd, st = open_file_at(dfd, name, rel) if dfd >= 0 else open_file_at(-1, os.fspath(root / rel), rel)
    try:
        return read_open(fd, st, limit), st
    finally:
        os.close(fd)


def open_file_at(dfd: int, name: str, rel: str) -> tuple[int, os.stat_result]:
    """A descriptor and fstat of regular file `name` in folder descriptor `dfd` (-1: `name` is a
    path), opened with O_NOFOLLOW and non-blocking; `rel` names it in errors. The same errors as
    `read_file`; the caller closes the descriptor."""
    flags = os.O_RDONLY | _NOFOLLOW | _CLOEXEC | _NONBLOCK | _BINARY
    try:
        fd = os.open(name, flags, dir_fd=dfd) if dfd >= 0 else os.open(name, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise LinkRaceError(exc.errno, f"{rel} is a link") from None
        raise
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, f"{rel} is a folder")
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, f"{rel} is not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def read_open(fd: int, st: os.stat_result, limit: int | None = None) -> bytes:
    """At most `limit` bytes of the open file `fd` (whose fstat is `st`)."""
    chunks: list[bytes] = []
    left = limit if limit is not None else -1
    # The first read asks for the size fstat saw (+1 to notice growth): asking for the limit
    # makes every read allocate and shrink a large buffer, which doubled the cost of an index.
    step = st.st_size + 1
    while left != 0:
        chunk = os.read(fd, min(step, 1 << 20) if left < 0 else min(left, step, 1 << 20))
        step = 1 << 20
        if not chunk:
            break
        chunks.append(chunk)
        if left > 0:
            left -= len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def open_subdir(dfd: int, name: str, rel: str) -> int:
    """A descriptor of sub-folder `name` of folder descriptor `dfd`, never through a link
    (LinkRaceError when `name` is, or became, a link or not a folder); the caller closes it."""
    try:
        return os.open(name, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC, dir_fd=dfd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
            raise LinkRaceError(exc.errno, f"{rel}: '{name}' is a link or not a folder") from None
        raise


def write_file(root: Path, rel: str, data: bytes, *, mode: int | None = None) -> None:
    """Replace regular file `rel` in one step: a uniquely named temp file in the same folder, fsync,
    rename over the target, fsync the folder. Keeps the old file's mode; never writes through a link."""
    parent, name = _split(rel)
    with open_dir(root, parent, create=True) as dfd:

        def at(n: str) -> str | Path:
            return n if dfd >= 0 else root / parent / n

        kw = {"dir_fd": dfd} if dfd >= 0 else {}
        if mode is None:
            try:
                st = os.stat(at(name), follow_symlinks=False, **kw)  # type: ignore[arg-type,unused-ignore]
            except FileNotFoundError:
                st = None
            if st is not None:
                if stat.S_ISLNK(st.st_mode):
                    raise LinkRaceError(errno.ELOOP, f"{rel} became a link")
                if not stat.S_ISREG(st.st_mode):
                    raise OSError(errno.EINVAL, f"{rel} is not a regular file")
                mode = stat.S_IMODE(st.st_mode)
        tmp = f".{name[:64]}.{secrets.token_hex(6)}{TMP_SUFFIX}"
        fd = os.open(
            at(tmp),
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC | _BINARY,
            0o666 if mode is None else 0o600,
            **kw,
        )  # type: ignore[arg-type,unused-ignore]
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                if mode is not None and hasattr(os, "fchmod"):
                    os.fchmod(fd, mode)
                os.fsync(fd)
            finally:
                os.close(fd)
            if dfd >= 0:
                os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
                with contextlib.suppress(OSError):
                    os.fsync(dfd)
            else:
                os.replace(root / parent / tmp, root / parent / name)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(at(tmp), **kw)  # type: ignore[arg-type,unused-ignore]
            raise


def remove_file(root: Path, rel: str) -> None:
    """Unlink `rel` (a file or a link itself, never what a link points to); missing is fine."""
    parent, name = _split(rel)
    try:
        with open_dir(root, parent) as dfd:
            if dfd >= 0:
                os.unlink(name, dir_fd=dfd)
            else:
                os.unlink(root / rel)
    except FileNotFoundError:
        return


def stray_temp_files(root: Path, rel_dirs: set[str]) -> list[str]:
    """Our temp files left in these folders by a process that died mid-write."""
    out: list[str] = []
    for d in sorted(rel_dirs):
        with contextlib.suppress(OSError), os.scandir(root.joinpath(*_parts(d))) as it:
            for e in it:
                if (
                    e.name.startswith(".")
                    and e.name.endswith(TMP_SUFFIX)
                    and e.is_file(follow_symlinks=False)
                ):
                    out.append(f"{d}/{e.name}" if d else e.name)
    return out


@dataclass(frozen=True, slots=True)
class BatchRead:
    """What a settled batch looks like on disk: renames first, then versions to observe."""

    moves: tuple[tuple[str, str], ...]
    versions: list[FileVersion]
    rules_changed: bool  # an ignore file changed: the rules were reloaded; resync the whole tree
