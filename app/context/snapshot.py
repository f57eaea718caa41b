"""File index values and the budgeted initial snapshot sent with the warm-up.

The adapter stats, reads and hashes; this module only turns those values into `FileVersion`s and
decides what the model sees first: the tree listing, then file contents by what matters (`rank_key`:
pinned, touched by the user since the project opened, README, entry points, recently committed,
sources, then docs and config, and last tests, fixtures and generated files) until the token budget is
spent. Modification times are not used: on a fresh clone every file is "recent". Facts the file index
lacks (entry points named in manifests, git history, the user's edits) come in as `RankFacts`, plain
data the adapters gathered. New text passes the secret scanner.
"""

from __future__ import annotations

import configparser
import json
import posixpath
import re
import tomllib
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
    "RankFacts",
    "build_initial_context",
    "decode_text",
    "entry_points",
    "fence",
    "is_binary",
    "make_version",
    "message_item",
    "rank_key",
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


@dataclass(frozen=True, slots=True)
class RankFacts:
    """What the adapters know that the index does not, for ranking the first context."""

    entry_points: frozenset[str] = frozenset()  # paths named by manifests (see `entry_points`)
    touched: tuple[str, ...] = ()  # changed on disk since the project was opened, latest last
    committed: tuple[str, ...] = ()  # in recent commits (git log), most recent first


# Tiers of `rank_key`, best first.
PINNED, TOUCHED, README, ENTRY, COMMITTED, SOURCE, OTHER, TESTS = range(8)
_CONVENTIONAL_ENTRIES = frozenset(
    {
        "__main__.py",
        "main.py",
        "app.py",
        "cli.py",
        "manage.py",
        "wsgi.py",
        "asgi.py",
        "main.go",
        "main.rs",
        "lib.rs",
        "index.js",
        "index.ts",
        "index.mjs",
        "main.js",
        "main.ts",
        "server.js",
        "server.ts",
        "main.c",
        "main.cpp",
    }
)
_MANIFESTS = frozenset(
    {
        "pyproject.toml",
        "setup.cfg",
        "setup.py",
        "package.json",
        "Cargo.toml",
        "go.mod",
        "Makefile",
        "CMakeLists.txt",
        "pom.xml",
        "build.gradle",
        "Gemfile",
        "composer.json",
    }
)
_TEST_DIRS = frozenset(
    {
        "tests",
        "test",
        "testing",
        "spec",
        "specs",
        "__tests__",
        "fixtures",
        "testdata",
        "__snapshots__",
        "snapshots",
        "e2e",
        "benchmarks",
        "bench",
    }
)
_GENERATED_DIRS = frozenset(
    {
        "dist",
        "build",
        "out",
        "generated",
        "gen",
        "vendor",
        "third_party",
        "node_modules",
        "migrations",
        "site-packages",
        "coverage",
        "htmlcov",
    }
)
_GENERATED_FILES = re.compile(
    r"(^|/)(package-lock\.json|yarn\.lock|pnpm-lock\.yaml|poetry\.lock|uv\.lock|Cargo\.lock|Pipfile\.lock"
    r"|go\.sum|composer\.lock|Gemfile\.lock)$|\.min\.(js|css)$|\.map$|_pb2(_grpc)?\.pyi?$|\.pb\.go$"
    r"|\.generated\.\w+$|\.snap$"
)
_TEST_FILES = re.compile(r"(^|/)(test_[^/]*|[^/]*_test\.\w+|[^/]*\.(test|spec)\.\w+|conftest\.py)$")


def _is_test_or_generated(path: str) -> bool:
    parts = path.split("/")
    dirs = {d.lower() for d in parts[:-1]}
    return bool(
        dirs & _TEST_DIRS
        or dirs & _GENERATED_DIRS
        or _TEST_FILES.search(path)
        or _GENERATED_FILES.search(path)
    )


def _is_readme(path: str) -> bool:
    name = posixpath.basename(path).lower()
    return (
        name.startswith("readme")
        and path.count("/") <= 1
        and not path.lower().startswith(("tests/", "test/"))
    )


def rank_key(
    v: FileVersion,
    pins: Sequence[str],
    facts: RankFacts,
    *,
    touched_at: Mapping[str, int] | None = None,
    committed_at: Mapping[str, int] | None = None,
) -> tuple[int, float, float]:
    """Sort key of one file for the first context: (tier, order within the tier, size).

    Within a tier: pins in their order, the latest edit first, shallow READMEs first, commits newest
    first, otherwise shallow and small first. `touched_at`/`committed_at` are the facts as position maps
    (pass them when ranking many files; built here otherwise)."""
    path = v.path
    if path in pins:
        return (PINNED, float(list(pins).index(path)), 0.0)
    touched_at = touched_at if touched_at is not None else {p: i for i, p in enumerate(facts.touched)}
    committed_at = committed_at if committed_at is not None else {p: i for i, p in enumerate(facts.committed)}
    depth = float(path.count("/"))
    size = float(v.size)
    if path in touched_at:
        return (TOUCHED, -float(touched_at[path]), size)
    if _is_readme(path):
        return (README, depth, size)
    base = posixpath.basename(path)
    test_like = _is_test_or_generated(path)
    if path in facts.entry_points or (
        not test_like
        and ((base in _CONVENTIONAL_ENTRIES and depth <= 2) or (base in _MANIFESTS and depth == 0))
    ):
        return (ENTRY, depth, size)
    if test_like:
        return (TESTS, depth, size)
    if path in committed_at:
        return (COMMITTED, float(committed_at[path]), size)
    ext = posixpath.splitext(path)[1] or base
    if ext in SOURCE_EXTENSIONS and ext not in _DOC_OR_DATA:
        return (SOURCE, depth, size)
    return (OTHER, depth, size)


_DOC_OR_DATA = frozenset({".md", ".rst", ".txt", ".json", ".yaml", ".yml", ".ini", ".cfg", ".toml"})


def rank(
    index: Iterable[FileVersion], pins: Sequence[str], facts: RankFacts | None = None
) -> list[FileVersion]:
    """The text files of `index`, best first (`rank_key`)."""
    facts = facts or RankFacts()
    touched_at = {p: i for i, p in enumerate(facts.touched)}
    committed_at = {p: i for i, p in enumerate(facts.committed)}
    return sorted(
        (v for v in index if v.kind == "text"),
        key=lambda v: (*rank_key(v, pins, facts, touched_at=touched_at, committed_at=committed_at), v.path),
    )


def entry_points(manifests: Mapping[str, str], paths: Iterable[str]) -> frozenset[str]:
    """Project files that manifests name as entry points: pyproject.toml `[project.scripts]` /
    `[project.gui-scripts]` / `[tool.poetry.scripts]`, setup.cfg `console_scripts`, package.json `main`
    / `bin` / `module`. `manifests`: path -> text (any missing or unreadable is skipped); `paths`: the
    project's files, to map a module name onto one. Bad manifests are ignored (never an error here)."""
    known = set(paths)
    targets: list[str] = []  # module names ("app.main") or paths ("bin/cli.js")
    text = manifests.get("pyproject.toml")
    if text:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            data = {}
        project = data.get("project", {}) if isinstance(data.get("project"), dict) else {}
        poetry = data.get("tool", {}).get("poetry", {}) if isinstance(data.get("tool"), dict) else {}
        for table in (
            project.get("scripts"),
            project.get("gui-scripts"),
            poetry.get("scripts") if isinstance(poetry, dict) else None,
        ):
            if isinstance(table, dict):
                targets += [str(t).split(":")[0].strip() for t in table.values() if isinstance(t, str)]
    text = manifests.get("setup.cfg")
    if text:
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read_string(text)
            scripts = parser.get("options.entry_points", "console_scripts", fallback="")
        except configparser.Error:
            scripts = ""
        targets += [
            line.split("=", 1)[1].split(":")[0].strip() for line in scripts.splitlines() if "=" in line
        ]
    text = manifests.get("package.json")
    if text:
        try:
            pkg = json.loads(text)
        except ValueError:
            pkg = {}
        if isinstance(pkg, dict):
            for key in ("main", "module"):
                if isinstance(pkg.get(key), str):
                    targets.append(pkg[key])
            binaries = pkg.get("bin")
            if isinstance(binaries, str):
                targets.append(binaries)
            elif isinstance(binaries, dict):
                targets += [b for b in binaries.values() if isinstance(b, str)]
    found: set[str] = set()
    for t in targets:
        as_path = posixpath.normpath(t.removeprefix("./"))
        mod = t.replace(".", "/")
        for cand in (
            as_path,
            mod + ".py",
            mod + "/__init__.py",
            mod + "/__main__.py",
            "src/" + mod + ".py",
            "src/" + mod + "/__init__.py",
            as_path + ".js",
            as_path + "/index.js",
        ):
            if cand in known:
                found.add(cand)
    return frozenset(found)


def snapshot_candidates(
    index: Iterable[FileVersion],
    budget_tokens: int,
    pins: Sequence[str],
    now: float = 0.0,
    facts: RankFacts | None = None,
) -> list[str]:
    """Paths worth reading for the snapshot, best first, sized (by bytes) to roughly fill the budget.
    (`now` is kept for callers; modification times no longer rank files.)"""
    out: list[str] = []
    room = budget_tokens * 4 * 1.5  # bytes; a little slack because decoding and fences change sizes
    per_file = budget_tokens * 4 // 4  # bytes; a file over a quarter of the budget is not sent in full
    for v in rank(index, pins, facts):
        if (v.size <= room and v.size <= per_file * 1.5) or v.path in pins:
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
    facts: RankFacts | None = None,
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
    for meta in rank(index, pins, facts):
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
