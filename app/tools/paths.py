"""Confinement of tool paths to the project root, as pure string logic.

The model names files with root-relative POSIX paths. `confine()` refuses what can be refused
without touching the disk (absolute paths, drive letters, `~`, `..`, NUL bytes); the file-system
adapter then resolves symlinks and checks the real path with `is_within()`, and refuses device
files. Every refusal is a `PathRefused` whose message is written for the model to read.
"""

from __future__ import annotations

from pathlib import PurePath, PurePosixPath

__all__ = ["PathRefused", "confine", "is_within"]


class PathRefused(ValueError):
    """A tool path outside the project or otherwise not allowed; the message is for the model."""


def confine(raw: object, *, allow_root: bool = False) -> str:
    """The normalised root-relative POSIX path for `raw`, or PathRefused.

    `allow_root` lets "", "." and "/"-free equivalents mean the project root (returned as "").
    """
    if not isinstance(raw, str):
        raise PathRefused(f"path must be a string, got {type(raw).__name__}")
    if "\x00" in raw:
        raise PathRefused(f"path contains a NUL byte: {raw!r}")
    p = raw.strip().replace("\\", "/")
    if p.startswith("/") or (len(p) >= 2 and p[1] == ":" and p[0].isalpha()):
        raise PathRefused(f"absolute paths are refused; give a path relative to the project root: {raw!r}")
    if p.startswith("~"):
        raise PathRefused(f"home-relative paths are refused; give a path relative to the project root: {raw!r}")
    parts = [s for s in p.split("/") if s not in ("", ".")]
    if any(s == ".." for s in parts):
        raise PathRefused(f"'..' is refused: paths must stay inside the project root: {raw!r}")
    if not parts:
        if allow_root:
            return ""
        raise PathRefused(f"a file path is required, got {raw!r}")
    return "/".join(parts)


def is_within(root: str | PurePath, target: str | PurePath) -> bool:
    """True when absolute `target` is `root` or lies below it (both already resolved)."""
    r, t = PurePath(root), PurePath(target)
    return t == r or r in t.parents


def join(rel_dir: str, name: str) -> str:
    """Root-relative child path ("" is the root)."""
    return str(PurePosixPath(rel_dir) / name) if rel_dir else name
