"""File index values and the budgeted initial snapshot sent with the warm-up.

The adapter stats, reads and hashes; this module only turns those values into `FileVersion`s and
decides what the model sees first: the tree listing, then file contents by priority (pinned, recently
modified, small source files) until the token budget is spent. New text passes the secret scanner.
"""

from __future__ import annotations

import posixpath
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from app.context.ignore import Exclusion
from app.context.secrets_scan import Finding, scan
from app.context.tokens import estimate_tokens

__all__ = [
    "DEFAULT_MAX_FILE_BYTES",
    "SNAPSHOT_MARKER",
    "FileKind",
    "FileVersion",
    "InitialContext",
    "build_initial_context",
    "decode_text",
    "fence",
    "is_binary",
    "make_version",
    "message_item",
    "snapshot_candidates",
    "tree_listing",
]

SNAPSHOT_MARKER = "[slipstream project snapshot]"
_BACKTICKS = re.compile("`+")
DEFAULT_MAX_FILE_BYTES = 256 * 1024
RECENT_SECONDS = 24 * 3600.0
_SOURCE_EXTS = (
    ".py .pyi .js .jsx .ts .tsx .mjs .cjs .go .rs .java .kt .kts .scala .c .h .cc .cpp .hpp .cxx .cs .rb .php"
    " .swift .m .mm .lua .sh .bash .zsh .ps1 .sql .r .jl .ex .exs .erl .hs .ml .clj .dart .vue .svelte"
    " .html .css .scss .toml .yaml .yml .json .ini .cfg .md .rst .txt .proto .graphql .tf Makefile Dockerfile"
)
SOURCE_EXTENSIONS = frozenset(_SOURCE_EXTS.split(" "))

FileKind = Literal["text", "binary", "oversized", "excluded", "unreadable", "missing"]


@dataclass(frozen=True, slots=True)
class FileVersion:
    """One file as it is on disk at one moment. `text` is None when the content was not read or sent."""

    path: str
    kind: FileKind
    size: int = 0
    mtime: float = 0.0
    digest: str = ""
    text: str | None = None
    lossy: bool = False  # not valid UTF-8: decoded with replacement characters
    reason: str = ""  # exclusion reason or read error, for the UI

    @property
    def present(self) -> bool:
        """False when the file is gone (deleted, or vanished before it could be read)."""
        return self.kind != "missing"


def is_binary(data: bytes) -> bool:
    """Git's heuristic: a NUL byte in the first 8 KB."""
    return b"\0" in data[:8192]


def decode_text(data: bytes) -> tuple[str, bool]:
    """UTF-8 text, or the same with replacement characters and `lossy=True`."""
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        return data.decode("utf-8", errors="replace"), True


def make_version(
    path: str,
    data: bytes | None,
    *,
    size: int,
    mtime: float,
    digest: str = "",
    error: str | None = None,
    exclusion: Exclusion | None = None,
    max_bytes: int = DEFAULT_MAX_FILE_BYTES,
    binary: bool | None = None,
    keep_text: bool = True,
) -> FileVersion:
    """Classify what the adapter read. `binary` is a hint when only the head was read (`data` None)."""
    if exclusion is not None:
        return FileVersion(path, "excluded", size, mtime, "", None, False, exclusion.reason)
    if error is not None:
        return FileVersion(path, "unreadable", size, mtime, digest, None, False, error)
    if size > max_bytes:
        return FileVersion(path, "oversized", size, mtime, digest, None, False, f"over {max_bytes} bytes")
    if data is None:
        return FileVersion(path, "binary" if binary else "text", size, mtime, digest)
    if is_binary(data):
        return FileVersion(path, "binary", size, mtime, digest)
    if not keep_text:
        return FileVersion(path, "text", size, mtime, digest, None, False)
    text, lossy = decode_text(data)
    return FileVersion(path, "text", size, mtime, digest, text, lossy)


def message_item(text: str) -> dict[str, Any]:
    """A Responses input item carrying `text` as a user message."""
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def fence(path: str, text: str, note: str = "") -> str:
    """A fenced block labelled by path; the fence is longer than any backtick run inside."""
    longest = max(map(len, _BACKTICKS.findall(text)), default=0)  # a regex: a loop per character was
    ticks = "`" * max(3, longest + 1)  # half of building a snapshot
    body = text if text.endswith("\n") or not text else text + "\n"
    return f"{ticks}{path}{'  ' + note if note else ''}\n{body}{ticks}\n"


def _badge(v: FileVersion) -> str:
    if v.kind == "text":
        return ""
    if v.kind == "excluded":
        return f"  [excluded: {v.reason}]"
    if v.kind == "oversized":
        return f"  [too large: {v.size} bytes, content not sent]"
    if v.kind == "binary":
        return f"  [binary: {v.size} bytes, content not sent]"
    if v.kind == "unreadable":
        return f"  [unreadable: {v.reason}]"
    return ""


def tree_listing(index: Sequence[FileVersion], budget_tokens: int) -> str:
    """All paths with badges; when that is too long, directories with file counts instead."""
    entries = sorted((v for v in index if v.present), key=lambda v: v.path)
    full = "".join(f"{v.path}{_badge(v)}\n" for v in entries)
    if estimate_tokens(full) <= budget_tokens:
        return full
    # Too many files: top-level files, then every directory with its file count, cut at the budget.
    dirs: Counter[str] = Counter()
    lines = []
    for v in entries:
        d = posixpath.dirname(v.path)
        if d:
            dirs[d] += 1
        else:
            lines.append(f"{v.path}{_badge(v)}\n")
    lines += [f"{d}/  ({n} files)\n" for d, n in sorted(dirs.items())]
    out: list[str] = []
    used = 0
    for i, ln in enumerate(lines):
        cost = estimate_tokens(ln)
        if used + cost > budget_tokens:
            out.append(f"... {len(lines) - i} more entries not listed ({len(entries)} files in total)\n")
            break
        out.append(ln)
        used += cost
    return "".join(out)


def _priority(v: FileVersion, pins: Sequence[str], now: float) -> tuple[int, float]:
    if v.path in pins:
        return (0, float(list(pins).index(v.path)))
    if now - v.mtime <= RECENT_SECONDS:
        return (1, -v.mtime)
    ext = posixpath.splitext(v.path)[1] or posixpath.basename(v.path)
    return (2 if ext in SOURCE_EXTENSIONS else 3, float(v.size))


def snapshot_candidates(
    index: Iterable[FileVersion], budget_tokens: int, pins: Sequence[str], now: float
) -> list[str]:
    """Paths worth reading for the snapshot, best first, sized (by bytes) to roughly fill the budget."""
    ranked = sorted((v for v in index if v.kind == "text"), key=lambda v: _priority(v, pins, now))
    out: list[str] = []
    room = budget_tokens * 4 * 1.5  # bytes; a little slack because decoding and fences change sizes
    for v in ranked:
        if v.size <= room or v.path in pins:
            out.append(v.path)
            room -= v.size
        if room <= 0:
            break
    return out


@dataclass(slots=True)
class InitialContext:
    """The warm-up items plus what they carry, so the ledger can record the model's view."""

    items: list[dict[str, Any]]
    text: str
    included: dict[str, FileVersion]  # path -> version whose (scanned) text was sent
    listed_only: list[str] = field(default_factory=list)
    findings: dict[str, list[Finding]] = field(default_factory=dict)
    tokens: int = 0


def build_initial_context(
    index: Sequence[FileVersion],
    contents: Mapping[str, FileVersion],
    budget_tokens: int,
    pins: Sequence[str] = (),
    now: float = 0.0,
    *,
    listing_share: float = 0.3,
) -> InitialContext:
    """Tree listing plus prioritised file contents (fenced, labelled by path) within `budget_tokens`."""
    if budget_tokens <= 0:
        raise ValueError("budget_tokens must be positive")
    head = (
        f"{SNAPSHOT_MARKER}\nThe project as it is on disk now. Later messages starting with "
        "[slipstream context update] carry changes as unified diffs.\n\n## Files\n"
    )
    listing = tree_listing(index, int(budget_tokens * listing_share))
    parts = [head, listing, "\n## Contents\n"]
    used = estimate_tokens(head + listing) + 5
    included: dict[str, FileVersion] = {}
    findings: dict[str, list[Finding]] = {}
    per_file_cap = max(1, budget_tokens // 4)
    ranked = sorted((v for v in index if v.kind == "text"), key=lambda v: _priority(v, pins, now))
    for meta in ranked:
        v = contents.get(meta.path)
        if v is None or v.kind != "text" or v.text is None:
            continue
        clean, found = scan(v.text)
        note = "(not valid UTF-8: shown with replacement characters)" if v.lossy else ""
        block = fence(v.path, clean, note)
        cost = estimate_tokens(block)
        if used + cost > budget_tokens or (cost > per_file_cap and v.path not in pins):
            continue
        parts.append(block)
        used += cost
        included[v.path] = FileVersion(v.path, "text", v.size, v.mtime, v.digest, clean, v.lossy)
        if found:
            findings[v.path] = found
    listed_only = [v.path for v in index if v.present and v.kind != "excluded" and v.path not in included]
    text = "".join(parts)
    return InitialContext([message_item(text)], text, included, listed_only, findings, used)
