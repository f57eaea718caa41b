"""Confinement of tool paths to the project root, as pure string logic.

The model names files with root-relative POSIX paths. `confine()` refuses what can be refused
without touching the disk (absolute paths, drive letters, `~`, `..`, NUL bytes); the file-system
adapter then resolves symlinks and checks the real path with `is_within()`, and refuses device
files. Every refusal is a `PathRefused` whose message is written for the model to read.

Windows name equivalences: NTFS drops trailing dots and spaces (`.git.` and `.git ` are `.git`),
reads `name:stream` as a stream of `name` (`.env:x`, `.git::$INDEX_ALLOCATION`), and answers to
8.3 short names (`GIT~1`). `rule_spellings()` gives every spelling the ignore and secret rules must
see; `windows_refusal()` refuses short names and streams outright where those semantics apply.
"""

from __future__ import annotations

import re
from pathlib import PurePath, PurePosixPath

__all__ = [
    "PROTECTED_DIRS",
    "PathRefused",
    "confine",
    "is_within",
    "rule_spellings",
    "touches_protected",
    "windows_refusal",
]

# Folders the tools never write into, in any letter case or Windows spelling.
PROTECTED_DIRS = frozenset({".git", ".hg", ".svn", ".jj"})
_SHORT_NAME = re.compile(r"[^~.]{1,6}~[0-9]{1,6}(\.[^.]{0,3})?")


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
        raise PathRefused(
            f"home-relative paths are refused; give a path relative to the project root: {raw!r}"
        )
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


def _windows_name(name: str) -> str:
    """How NTFS reads one path component: a stream suffix dropped, trailing dots and spaces dropped."""
    base = name.split(":", 1)[0]
    stripped = base.rstrip(" .")
    return stripped or base


def rule_spellings(rel: str) -> list[str]:
    """`rel`, plus its Windows reading when that differs: the rules are applied to each."""
    if not rel:
        return [rel]
    folded = "/".join(_windows_name(c) for c in rel.split("/"))
    return [rel] if folded == rel or not folded.strip("/") else [rel, folded]


def touches_protected(rel: str) -> bool:
    """True when any component is a VCS folder in any letter case or Windows spelling."""
    return any(_windows_name(c).lower() in PROTECTED_DIRS for c in rel.split("/") if c)


def windows_refusal(rel: str) -> str | None:
    """Why `rel` is refused where Windows name semantics apply (8.3 short names, streams), else None."""
    for c in rel.split("/"):
        if ":" in c:
            return f"{rel}: ':' (an NTFS stream) is refused in paths"
        if _SHORT_NAME.fullmatch(c):
            return f"{rel}: {c!r} looks like an 8.3 short name; give the file's full name"
    return None
