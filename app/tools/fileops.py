"""read_file / list_files / search / apply_patch over an injected project view, and `execute()`.

Pure: the I/O arrives through `ProjectAccess` (app.adapters.project_fs.ProjectFS implements it;
tests use a dict). `execute(name, arguments_json, ctx)` never raises for bad input: invalid JSON,
missing fields, refused paths, binary files and malformed patches all come back as
`ToolResult(ok=False, output_text=<what to fix>)`. apply_patch does not write: it returns the
proposed change set (`change_set`, typed) for the user's review; the agent then calls
`ProjectFS.apply()`. run_tests, rerun_failed and run_command are async and run by the agent: `execute`
only validates them and returns their checked arguments as `deferred`. `data` carries diagnostics
only (error kind, search hit counts), never something a caller acts on.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import re2

from app.tools.paths import PathRefused, confine
from app.tools.specs import ToolArgumentError, parse_arguments

if TYPE_CHECKING:  # app.tools.patch (~850 lines) loads with the first apply_patch, not at startup
    from app.tools.patch import ChangeSet

__all__ = [
    "Entry",
    "ProjectAccess",
    "SearchHit",
    "ToolContext",
    "ToolResult",
    "compile_query",
    "execute",
    "format_list",
    "format_read",
    "search_text",
]

MAX_READ_BYTES = 2 * 1024 * 1024
MAX_READ_LINES = 2000
MAX_READ_CHARS = 120_000
MAX_SEARCH_FILE = 1024 * 1024
MAX_LINE_SHOWN = 300
MAX_SEARCH_BYTES = 64 * 1024 * 1024  # a work budget for one search over the whole tree
DEFERRED = frozenset({"run_tests", "rerun_failed", "run_command"})


@dataclass(frozen=True, slots=True)
class Entry:
    path: str  # root-relative POSIX
    is_dir: bool
    size: int = 0


class ProjectAccess(Protocol):
    """What the file tools need from the project; every method confines paths (PathRefused)."""

    def read_bytes(self, path: str, limit: int | None = None) -> bytes | None: ...

    def walk(self, under: str = "") -> Iterable[Entry]: ...


@dataclass(slots=True)
class ToolContext:
    fs: ProjectAccess
    seen: Callable[[str], str | None] | None = None  # the text the model last saw of a file, if known
    # Withholds credential-looking lines from outputs bound for the model: (text, notices).
    # The agent passes ProjectFS.redact; without it outputs go out as read.
    redact: Callable[[str], tuple[str, list[str]]] | None = None


@dataclass(frozen=True, slots=True)
class ToolResult:
    ok: bool
    output_text: str
    data: dict[str, Any] = field(default_factory=dict)  # diagnostics: {"error": kind}, {"hits": n}, ...
    change_set: ChangeSet | None = None  # apply_patch: the planned change, for the user's review
    deferred: dict[str, Any] | None = None  # run_tests / run_command: checked arguments, run by the agent


def _is_binary(data: bytes) -> bool:
    return b"\x00" in data[:8192]


def format_read(
    path: str, data: bytes, start: int | None = None, end: int | None = None, *, truncated_bytes: bool = False
) -> str:
    """Numbered lines `start..end` of a text file; ValueError for binary files or a start past the end."""
    if _is_binary(data):
        raise ValueError(f"{path} is a binary file ({len(data):,} bytes); read_file shows text files only")
    text = data.decode("utf-8", errors="replace")
    lines = text.splitlines()
    total = len(lines)
    first = start or 1
    if total == 0:
        return f"{path}: empty file"
    if first > total:
        raise ValueError(f"{path} has {total} lines; start_line {first} is past the end")
    last = min(end or total, total)
    if last < first:
        raise ValueError(f"end_line {end} is before start_line {first}")
    last = min(last, first + MAX_READ_LINES - 1)
    width = len(str(last))
    out: list[str] = []
    size = 0
    for n in range(first, last + 1):
        line = f"{n:>{width}}\t{lines[n - 1]}"
        size += len(line) + 1
        if size > MAX_READ_CHARS:
            last = n - 1
            break
        out.append(line)
    header = (
        f"{path} (lines {first}-{last} of {total}{', file truncated at 2 MB' if truncated_bytes else ''})"
    )
    more = ""
    if last < min(end or total, total):
        more = f"\n... {total - last} more lines; call read_file with start_line={last + 1}"
    return header + "\n" + "\n".join(out) + more


def _glob_match(path: str, pattern: str) -> bool:
    if "/" not in pattern:  # '*.py' matches at any depth
        return fnmatch.fnmatchcase(path.rsplit("/", 1)[-1], pattern)
    return fnmatch.fnmatchcase(path, pattern) or fnmatch.fnmatchcase(path, pattern.replace("**/", ""))


def format_list(entries: Iterable[Entry], *, glob: str | None = None, max_entries: int = 500) -> str:
    """One path a line (folders end with '/'), capped with a note."""
    out: list[str] = []
    count = 0
    for e in entries:
        if glob and not _glob_match(e.path, glob):
            continue
        count += 1
        if len(out) < max_entries:
            out.append(e.path + "/" if e.is_dir else f"{e.path}  ({e.size:,} B)")
    if not out:
        return "no files" + (f" match {glob!r}" if glob else "")
    if count > len(out):
        out.append(f"... {count - len(out)} more entries not shown; narrow with path or glob")
    return "\n".join(out)


@dataclass(frozen=True, slots=True)
class SearchHit:
    path: str
    line: int
    text: str


def compile_query(query: str, *, regex: bool = False, case_sensitive: bool = False) -> Any:
    """A linear-time (RE2) matcher for the query: a model's pattern cannot backtrack for minutes.

    ValueError for a bad pattern, or one using what RE2 lacks (backreferences, lookaround)."""
    pattern = query if regex else re.escape(query)
    try:
        re.compile(pattern)  # Python's own message is the clearer one for plain syntax errors
    except re.error as exc:
        raise ValueError(f"invalid regular expression {query!r}: {exc}") from None
    options = re2.Options()
    options.case_sensitive = case_sensitive
    options.log_errors = False
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        raise ValueError(
            f"regular expression {query!r} is not supported ({exc}); search runs in linear time and has no "
            "backreferences or lookaround: rewrite the pattern without them"
        ) from None


def search_text(
    files: Iterable[tuple[str, str]],
    query: str,
    *,
    regex: bool = False,
    case_sensitive: bool = False,
    max_results: int = 200,
    max_bytes: int = MAX_SEARCH_BYTES,
    clean: Callable[[str], str] | None = None,
) -> tuple[list[SearchHit], bool]:
    """Hits over (path, text) pairs, and whether a cap (results or bytes scanned) cut them; ValueError
    on a bad regex. `clean` (secret redaction) is applied to each matching file as a whole before its
    lines are searched, so a hit inside a private key block or a secret value is never shown."""
    rx = compile_query(query, regex=regex, case_sensitive=case_sensitive)
    hits: list[SearchHit] = []
    scanned = 0
    for path, text in files:
        scanned += len(text)
        if scanned > max_bytes:
            return hits, True
        if not rx.search(text):
            continue
        if clean is not None:
            text = clean(text)
        for n, line in enumerate(text.splitlines(), 1):
            if rx.search(line):
                if len(hits) >= max_results:
                    return hits, True
                shown = line.strip()
                if len(shown) > MAX_LINE_SHOWN:
                    shown = shown[:MAX_LINE_SHOWN] + " ..."
                hits.append(SearchHit(path, n, shown))
    return hits, False


def _search_files(fs: ProjectAccess, under: str, glob: str | None) -> Iterator[tuple[str, str]]:
    for e in fs.walk(under):
        if e.is_dir or e.size > MAX_SEARCH_FILE or (glob and not _glob_match(e.path, glob)):
            continue
        try:
            data = fs.read_bytes(e.path, MAX_SEARCH_FILE)
        except PathRefused:
            continue
        if data is None or _is_binary(data):
            continue
        yield e.path, data.decode("utf-8", errors="replace")


def _single_file(fs: ProjectAccess, rel: str) -> list[tuple[str, str]] | None:
    """When `rel` is a file, [(rel, text)]; None when it is a folder (or missing)."""
    try:
        data = fs.read_bytes(rel, MAX_SEARCH_FILE)
    except PathRefused as exc:
        if "is a folder" in str(exc):
            return None
        raise
    if data is None:
        return None
    return [] if _is_binary(data) else [(rel, data.decode("utf-8", errors="replace"))]


def execute(name: str, arguments_json: str | dict[str, Any] | None, ctx: ToolContext) -> ToolResult:
    """Run a file tool; every failure is a ToolResult(ok=False) with a message for the model."""
    try:
        args = parse_arguments(name, arguments_json)
    except ToolArgumentError as exc:
        return ToolResult(False, f"error: {exc}", {"error": "arguments"})
    try:
        if name in DEFERRED:
            return ToolResult(True, "", deferred=args)
        if name == "read_file":
            return _read_file(ctx, args)
        if name == "list_files":
            rel = confine(args.get("path", ""), allow_root=True)
            text = format_list(
                ctx.fs.walk(rel), glob=args.get("glob"), max_entries=args.get("max_entries", 500)
            )
            return ToolResult(True, text)
        if name == "search":
            return _search(ctx, args)
        if name == "apply_patch":
            from app.tools.patch import PatchError, plan_patch

            try:
                cs = plan_patch(args["patch"], ctx.fs.read_bytes, ctx.seen)
            except PatchError as exc:  # a ValueError: answered before the generic ValueError below
                return ToolResult(False, f"error: patch not applied: {exc}", {"error": "patch"})
            text = "proposed change, waiting for the user's review:\n" + cs.summary()
            return ToolResult(True, text, change_set=cs)
    except PathRefused as exc:
        return ToolResult(False, f"error: {exc}", {"error": "path"})
    except ValueError as exc:
        return ToolResult(False, f"error: {exc}", {"error": "value"})
    return ToolResult(False, f"error: {name} has no executor here", {"error": "unknown"})


def _read_file(ctx: ToolContext, args: dict[str, Any]) -> ToolResult:
    rel = confine(args["path"])
    data = ctx.fs.read_bytes(rel, MAX_READ_BYTES + 1)
    if data is None:
        return ToolResult(
            False, f"error: no such file: {rel} (use list_files or search to find it)", {"error": "missing"}
        )
    truncated = len(data) > MAX_READ_BYTES
    text = format_read(
        rel, data[:MAX_READ_BYTES], args.get("start_line"), args.get("end_line"), truncated_bytes=truncated
    )
    text, withheld = _redact(ctx, text)
    return ToolResult(True, text, {"path": rel, "withheld": withheld})


def _redact(ctx: ToolContext, text: str) -> tuple[str, list[str]]:
    return ctx.redact(text) if ctx.redact is not None else (text, [])


def _search(ctx: ToolContext, args: dict[str, Any]) -> ToolResult:
    rel = confine(args.get("path", ""), allow_root=True)
    glob = args.get("glob")
    files: Iterable[tuple[str, str]] | None = _single_file(ctx.fs, rel) if rel else None
    if files is None:
        files = _search_files(ctx.fs, rel, glob)
    cap = args.get("max_results", 200)
    redact = ctx.redact
    hits, capped = search_text(
        files,
        args["query"],
        regex=args.get("regex", False),
        case_sensitive=args.get("case_sensitive", False),
        max_results=cap,
        clean=None if redact is None else (lambda t: redact(t)[0]),
    )
    if not hits:
        return ToolResult(True, f"no matches for {args['query']!r}", {"hits": 0})
    lines = [f"{h.path}:{h.line}: {h.text}" for h in hits]
    if capped:
        lines.append(
            f"... results capped at {cap} (or at {MAX_SEARCH_BYTES // 2**20} MB scanned); narrow the "
            "query, path or glob"
        )
    text, withheld = _redact(ctx, "\n".join(lines))
    return ToolResult(True, text, {"hits": len(hits), "capped": capped, "withheld": withheld})
