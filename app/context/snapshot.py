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
import heapq
import json
import posixpath
import re
import tomllib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from app.context.ignore import Exclusion
from app.context.secrets_scan import Finding, scan
from app.context.tokens import estimate_tokens, tokens_for_chars

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
    "ranked",
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


class FileVersion(NamedTuple):
    """One file as it is on disk at one moment. `text` is None when the content was not read or sent.
    A named tuple: an index makes one per file, and a tuple is built three times faster than a dataclass."""

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

    @property
    def hashed(self) -> bool:
        """False for a file listed by its metadata only (a huge tree is indexed that way first and
        hashed afterwards): its kind may still turn out binary, and it has no digest to compare."""
        return bool(self.digest) or self.kind not in ("text", "binary")


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
    present = [v for v in index if v.kind != "missing"]  # `present`, without a property call per file
    # The paths alone over the budget: the full listing cannot fit, so the tree is not sorted for it
    # (a 100,000-path sort holds the GIL, and so the window, for tens of milliseconds).
    if tokens_for_chars(sum(len(v.path) + 1 for v in present)) <= budget_tokens:
        present.sort(key=lambda v: v.path)
        full = "".join(f"{v.path}{_badge(v)}\n" for v in present)
        if estimate_tokens(full) <= budget_tokens:
            return full
    # Too many files: top-level files, then every directory with its file count, cut at the budget.
    dirs: Counter[str] = Counter()
    top: list[FileVersion] = []
    for v in present:
        d = v.path.rpartition("/")[0]
        if d:
            dirs[d] += 1
        else:
            top.append(v)
    lines = [f"{v.path}{_badge(v)}\n" for v in sorted(top, key=lambda v: v.path)]
    lines += [f"{d}/  ({n} files)\n" for d, n in sorted(dirs.items())]
    out: list[str] = []
    used = 0
    for i, ln in enumerate(lines):
        cost = estimate_tokens(ln)
        if used + cost > budget_tokens:
            out.append(f"... {len(lines) - i} more entries not listed ({len(present)} files in total)\n")
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
# One search each instead of a set of folder names per path (ranking runs over every file of the tree).
_TEST_OR_GENERATED_DIR = re.compile(
    "(?:^|/)(?:" + "|".join(re.escape(d) for d in sorted(_TEST_DIRS | _GENERATED_DIRS)) + ")/"
)
_GENERATED_NAMES = frozenset(
    [
        "package-lock.json",
        "yarn.lock",
        "pnpm-lock.yaml",
        "poetry.lock",
        "uv.lock",
        "Cargo.lock",
        "Pipfile.lock",
        "go.sum",
        "composer.lock",
        "Gemfile.lock",
    ]
)
_GENERATED_ENDINGS = (".map", ".snap", ".min.js", ".min.css", ".pb.go", "_pb2.py", "_pb2.pyi", "_pb2_grpc.py",
                      "_pb2_grpc.pyi")  # fmt: skip
_NAME_PATTERNS = re.compile(r"[^/]*(_test|\.test|\.spec|\.generated)\.\w+")


def _is_test_or_generated_name(base: str) -> bool:
    """A test file (test_*, *_test.x, *.test.x, *.spec.x, conftest.py) or a generated one (lock files,
    minified, source maps, protobuf output, *.generated.x, snapshots), by string tests first: a regex
    search over every name of a 100,000-file tree cost 0.15 s."""
    return (
        base.startswith("test_")
        or base == "conftest.py"
        or base in _GENERATED_NAMES
        or base.endswith(_GENERATED_ENDINGS)
        or (
            ("_test." in base or ".test." in base or ".spec." in base or ".generated." in base)
            and _NAME_PATTERNS.fullmatch(base) is not None
        )
    )


_FolderFacts = tuple[float, bool, bool]  # (depth, a test/generated folder, a README in it ranks as one)


def _folder_facts(folder: str) -> _FolderFacts:
    """What `_path_tier` needs of a folder (with its trailing "/", "" at the top), once per folder."""
    depth = float(folder.count("/"))
    low = folder.lower()
    test_dir = bool(folder and _TEST_OR_GENERATED_DIR.search(low))
    return depth, test_dir, depth <= 1 and not low.startswith(("tests/", "test/"))


def _path_tier(path: str, folders: dict[str, _FolderFacts]) -> tuple[int, float]:
    """The tier a path earns by its name alone (README, ENTRY, TESTS, SOURCE or OTHER) and its depth.
    `folders` caches `_folder_facts` per folder (ranking asks this of every file of the tree)."""
    slash = path.rfind("/")
    folder = path[: slash + 1]  # with its trailing "/" ("" at the top)
    facts = folders.get(folder)
    if facts is None:
        facts = folders[folder] = _folder_facts(folder)
    depth, test_dir, readme_here = facts
    base = path[slash + 1 :]
    if readme_here and base.lower().startswith("readme"):
        return (README, depth)
    if test_dir or _is_test_or_generated_name(base):
        return (TESTS, depth)
    if (base in _CONVENTIONAL_ENTRIES and depth <= 2) or (base in _MANIFESTS and depth == 0):
        return (ENTRY, depth)
    bare = base.lstrip(".")
    dot = bare.rfind(".")
    ext = bare[dot:] if dot > 0 else base  # posixpath.splitext's extension, else the whole name
    if ext in SOURCE_EXTENSIONS and ext not in _DOC_OR_DATA:
        return (SOURCE, depth)
    return (OTHER, depth)


def rank_key(
    v: FileVersion,
    pins: Sequence[str],
    facts: RankFacts,
    *,
    touched_at: Mapping[str, int] | None = None,
    committed_at: Mapping[str, int] | None = None,
    test_dirs: dict[str, _FolderFacts] | None = None,
) -> tuple[int, float, float]:
    """Sort key of one file for the first context: (tier, order within the tier, size).

    Within a tier: pins in their order, the latest edit first, shallow READMEs first, commits newest
    first, otherwise shallow and small first. `touched_at`/`committed_at` are the facts as position maps
    and `test_dirs` a cache for `_path_tier` (pass them when ranking many files; built here otherwise)."""
    path = v.path
    if path in pins:
        return (PINNED, float(list(pins).index(path)), 0.0)
    touched_at = touched_at if touched_at is not None else {p: i for i, p in enumerate(facts.touched)}
    size = float(v.size)
    if path in touched_at:
        return (TOUCHED, -float(touched_at[path]), size)
    tier, depth = _path_tier(path, test_dirs if test_dirs is not None else {})
    if tier == README:
        return (README, depth, size)
    if path in facts.entry_points:
        return (ENTRY, depth, size)
    if tier in (ENTRY, TESTS):
        return (tier, depth, size)
    committed_at = committed_at if committed_at is not None else {p: i for i, p in enumerate(facts.committed)}
    if path in committed_at:
        return (COMMITTED, float(committed_at[path]), size)
    return (tier, depth, size)


_DOC_OR_DATA = frozenset({".md", ".rst", ".txt", ".json", ".yaml", ".yml", ".ini", ".cfg", ".toml"})


def rank(
    index: Iterable[FileVersion], pins: Sequence[str], facts: RankFacts | None = None
) -> list[FileVersion]:
    """The text files of `index`, best first (`rank_key`)."""
    return list(ranked(index, pins, facts))


RANK_FIRST = 512  # files ranked by a partial sort first; the rest only when a caller reads past them
RANK_BATCH_MAX = 8192  # the most files one later partial sort ranks (a C sort of that many: ~3 ms)
CANDIDATES_FULL_SHARE = 0.02  # snapshot candidates stop when less than this share of the bytes is left
CANDIDATES_MISSES = 2048  # ... or when this many files in a row did not fit


def ranked(
    index: Iterable[FileVersion], pins: Sequence[str], facts: RankFacts | None = None
) -> Iterator[FileVersion]:
    """`rank`, lazily: the best `RANK_FIRST` by a partial sort, the rest in growing batches when asked for.

    A snapshot reads a few hundred files of a tree that may hold 100,000: a full sort of C-compared
    tuples would hold the GIL (and so the window) for tens of milliseconds and mostly be wasted."""
    facts = facts or RankFacts()
    touched_at = {p: i for i, p in enumerate(facts.touched)}
    committed_at = {p: i for i, p in enumerate(facts.committed)}
    named = {*pins, *touched_at, *committed_at, *facts.entry_points}  # the files the facts name
    test_dirs: dict[str, _FolderFacts] = {}
    tier = _path_tier
    # (tier, order, size, path, version); paths are unique, so a comparison never reaches the version
    keyed: list[tuple[int, float, float, str, FileVersion]] = []
    add = keyed.append
    for v in index:
        if v.kind != "text":
            continue
        p = v.path
        if p in named:
            add((*rank_key(v, pins, facts, touched_at=touched_at, committed_at=committed_at), p, v))
        else:
            add((*tier(p, test_dirs), float(v.size), p, v))
    n, rest = RANK_FIRST, keyed
    while rest:
        # A partial sort of the best n, then of the best n of the rest, n growing to a bound: each
        # C-level sort stays small (a full sort of 100,000 tuples held the GIL, and so the window,
        # 60 ms when a snapshot read past the first batch).
        if len(rest) <= n:
            rest.sort()
            yield from (k[-1] for k in rest)
            return
        best = heapq.nsmallest(n, rest)
        yield from (k[-1] for k in best)
        last = best[-1]
        rest = [k for k in rest if k > last]
        n = min(n * 4, RANK_BATCH_MAX)


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
    nearly_full = room * CANDIDATES_FULL_SHARE
    per_file = budget_tokens * 4 // 4  # bytes; a file over a quarter of the budget is not sent in full
    misses = 0  # files in a row that did not fit
    for v in ranked(index, pins, facts):
        if (v.size <= room and v.size <= per_file * 1.5) or v.path in pins:
            out.append(v.path)
            room -= v.size
            misses = 0
        else:
            misses += 1
        # Stop once the budget is (nearly) spent or nothing has fitted for a long run: a few hundred
        # bytes left over once made the ranking walk all 100,000 files of a tree looking for a tinier one.
        if room <= nearly_full or misses >= CANDIDATES_MISSES:
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
    # Only the files whose content is at hand can be sent: rank those, not the whole tree.
    for meta in rank([v for v in index if v.path in contents], pins, facts):
        v = contents[meta.path]
        if v.kind != "text" or v.text is None:
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
    listed_only = [v.path for v in index if v.kind not in ("missing", "excluded") and v.path not in included]
    text = "".join(parts)
    return InitialContext([message_item(text)], text, included, listed_only, findings, used)
