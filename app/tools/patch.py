"""The apply_patch format Codex uses: parse, plan against file contents, apply, merge three-way.

    *** Begin Patch
    *** Add File: path          every following line starts with "+"
    *** Delete File: path
    *** Update File: path
    *** Move to: new/path       optional, right after Update File
    @@ optional anchor line     one hunk ("chunk"); " " context, "-" removed, "+" added
    *** End of File             optional: the hunk above sits at the end of the file
    *** End Patch

Pure: bytes and text in, text out. A hunk's context is matched exactly, then ignoring trailing
whitespace, then ignoring all surrounding whitespace, then with typographic punctuation folded;
the first pass that finds it wins and the error names the hunk when none does. Each file keeps its
line endings (the dominant one for new lines) and whether it ended with a newline.

A file the user changed after the model last saw it is merged three-way (`merge3`): the model's
hunks are applied to the text it saw, then merged with the disk; overlapping edits are a
`PatchConflict` showing both sides, never an overwrite.

Errors: PatchError (ValueError) <- PatchParseError, PatchApplyError, PatchConflict.
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "ChangeSet",
    "Chunk",
    "FileOp",
    "FilePlan",
    "MergeResult",
    "Patch",
    "PatchApplyError",
    "PatchConflict",
    "PatchError",
    "PatchParseError",
    "apply_chunks",
    "decode_text",
    "merge3",
    "parse_patch",
    "path_key",
    "plan_patch",
]

BEGIN = "*** Begin Patch"
END = "*** End Patch"
ADD = "*** Add File: "
DELETE = "*** Delete File: "
UPDATE = "*** Update File: "
MOVE = "*** Move to: "
EOF_MARK = "*** End of File"

OpKind = Literal["add", "delete", "update"]


class PatchError(ValueError):
    """Any patch failure; the message is written for the model and the user."""


class PatchParseError(PatchError):
    """The patch text is not in the apply_patch format."""


class PatchApplyError(PatchError):
    """A hunk did not match the file, or the file is missing, binary or already exists."""


class PatchConflict(PatchError):
    """The user changed the file since the model saw it, and the edits overlap."""

    def __init__(self, path: str, conflicts: Sequence[Conflict]) -> None:
        shown = "\n".join(c.render() for c in conflicts[:3])
        more = f"\n... and {len(conflicts) - 3} more conflicts" if len(conflicts) > 3 else ""
        super().__init__(
            f"{path}: the file changed on disk since you read it, and your edit overlaps the user's "
            f"change; nothing was written. Read the file again and redo the edit.\n{shown}{more}"
        )
        self.path = path
        self.conflicts = list(conflicts)


# ---------------------------------------------------------------------------------------------
# Parsing


@dataclass(frozen=True, slots=True)
class Chunk:
    """One `@@` hunk: optional anchor line, the lines it replaces and the lines it writes."""

    anchor: str | None
    old_lines: tuple[str, ...]
    new_lines: tuple[str, ...]
    is_eof: bool = False
    diff_lines: tuple[str, ...] = ()  # the hunk as written (" ", "-", "+" prefixed), for review

    @property
    def header(self) -> str:
        return f"@@ {self.anchor}" if self.anchor else "@@"


@dataclass(frozen=True, slots=True)
class FileOp:
    """One file section of a patch."""

    kind: OpKind
    path: str
    move_to: str | None = None
    content: str = ""  # for "add": the whole new file
    chunks: tuple[Chunk, ...] = ()


@dataclass(frozen=True, slots=True)
class Patch:
    ops: tuple[FileOp, ...]
    text: str

    @property
    def paths(self) -> list[str]:
        out: list[str] = []
        for op in self.ops:
            out.append(op.path)
            if op.move_to:
                out.append(op.move_to)
        return out


# The grammar and its lenient cases follow the Codex CLI's own parser (openai/codex:
# codex-rs/apply-patch/src/parser.rs): the patch text is trimmed; the first and last lines are the
# Begin/End markers compared after trimming (so spaces or tabs around them are fine); a heredoc
# wrapper (`<<EOF`, `<<'EOF'`, `<<"EOF"`, also `apply_patch <<'EOF'`) is taken off; file headers are
# compared after trimming; an Add File takes every following line that starts with "+"; an Update
# File takes an optional Move to line, then hunks until a line that starts with "*"; blank lines
# between hunks are skipped; the first hunk may omit its "@@" line; a hunk ends at a line that is
# not " ", "+" or "-" (the next "@@") and an empty line inside a hunk is an empty context line.
# Beyond Codex we also skip blank lines between file sections and accept a Move to with no hunks
# (a plain rename). Every refusal names the line of the text as it was sent.


@dataclass(frozen=True, slots=True)
class _Line:
    no: int  # 1-based line number in the text as sent
    text: str


_HEREDOC_OPENERS = ("<<EOF", "<<'EOF'", '<<"EOF"')


def _split_lines(text: str) -> list[_Line]:
    raw = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    lines = [_Line(n, s) for n, s in enumerate(raw, 1)]
    while lines and not lines[0].text.strip():
        lines.pop(0)
    while lines and not lines[-1].text.strip():
        lines.pop()
    return lines


def _is_heredoc_opener(line: str) -> bool:
    s = line.strip()
    if s.startswith("apply_patch"):
        s = s[len("apply_patch") :].strip()
    return s in _HEREDOC_OPENERS


def _boundaries(lines: list[_Line]) -> list[_Line]:
    """The lines between the Begin and End markers (heredoc wrapper removed); PatchParseError."""

    def check(ls: list[_Line]) -> str | None:
        if not ls or ls[0].text.strip() != BEGIN:
            got = f", got {ls[0].text.strip()[:80]!r}" if ls else ""
            return f"line {ls[0].no if ls else 1}: the first line of the patch must be '{BEGIN}'{got}"
        if len(ls) < 2 or ls[-1].text.strip() != END:
            return f"line {ls[-1].no}: the last line of the patch must be '{END}', got {ls[-1].text.strip()[:80]!r}"
        return None

    error = check(lines)
    if error is None:
        return lines[1:-1]
    if len(lines) >= 4 and _is_heredoc_opener(lines[0].text) and lines[-1].text.strip().endswith("EOF"):
        inner = lines[1:-1]
        inner_error = check(inner)
        if inner_error is None:
            return inner[1:-1]
        error = inner_error
    raise PatchParseError(error)


def _header_path(line: _Line, marker: str) -> str:
    path = line.text.strip()[len(marker) :].strip()
    if not path:
        raise PatchParseError(f"line {line.no}: '{marker.strip()}' needs a path")
    return path


def _marker(text: str, marker: str) -> bool:
    s = text.strip()
    return s.startswith(marker) or s == marker.strip()


def parse_patch(text: str) -> Patch:
    """Parse apply_patch text; PatchParseError names the line that is wrong and why."""
    if not isinstance(text, str) or not text.strip():
        raise PatchParseError(f"empty patch: expected '{BEGIN}' ... '{END}'")
    body = _boundaries(_split_lines(text))
    ops: list[FileOp] = []
    lines_of: list[int] = []  # the header line of each op, for errors
    add_ended = -1  # where the last Add File section stopped
    i = 0
    while i < len(body):
        line = body[i]
        if not line.text.strip():
            i += 1
            continue
        if _marker(line.text, ADD):
            path = _header_path(line, ADD)
            i += 1
            content: list[str] = []
            while i < len(body) and body[i].text.startswith("+"):
                content.append(body[i].text[1:])
                i += 1
            ops.append(FileOp("add", path, content="".join(s + "\n" for s in content)))
            add_ended = i
        elif _marker(line.text, DELETE):
            ops.append(FileOp("delete", _header_path(line, DELETE)))
            i += 1
        elif _marker(line.text, UPDATE):
            path = _header_path(line, UPDATE)
            i += 1
            move_to = None
            if i < len(body) and _marker(body[i].text, MOVE):
                move_to = _header_path(body[i], MOVE)
                i += 1
            chunks, i = _parse_chunks(body, i, path)
            if not chunks and move_to is None:
                raise PatchParseError(f"line {line.no}: '*** Update File: {path}' has no hunks")
            ops.append(FileOp("update", path, move_to=move_to, chunks=tuple(chunks)))
        else:
            hint = ""
            if i == add_ended:
                hint = f" (in '*** Add File: {ops[-1].path}' every line must start with '+')"
            raise PatchParseError(
                f"line {line.no}: {line.text.strip()[:80]!r} is not a valid file header{hint}; expected "
                f"'*** Add File: path', '*** Delete File: path' or '*** Update File: path'"
            )
        lines_of.append(line.no)
    if not ops:
        raise PatchParseError("the patch changes no files")
    _check_repeats(ops, lines_of)
    return Patch(tuple(ops), text)


def path_key(path: str) -> str:
    """One spelling per path: backslashes, "./" and doubled slashes folded (`./src//a.py` -> `src/a.py`)."""
    return "/".join(s for s in path.strip().replace("\\", "/").split("/") if s not in ("", "."))


def _check_repeats(ops: Sequence[FileOp], lines_of: Sequence[int]) -> None:
    """A file may be named once per patch by any spelling; the one exception is Codex's
    "Delete File: p" followed by "Add File: p", which replaces the file."""
    seen: dict[str, tuple[int, str, OpKind, bool]] = {}  # key -> (line, spelling, kind, is a move target)
    for op, no in zip(ops, lines_of, strict=True):
        for p, is_target in ((op.path, False), (op.move_to, True)):
            if p is None:
                continue
            key = path_key(p)
            prior = seen.get(key)
            if prior is not None:
                pno, spelling, pkind, ptarget = prior
                if pkind == "delete" and op.kind == "add" and not ptarget and not is_target:
                    seen[key] = (no, p, "add", False)  # delete-then-add: one replacement
                    continue
                also = "" if spelling == p else f" (as {spelling!r})"
                raise PatchParseError(
                    f"line {no}: {p!r} is already changed at line {pno} of this patch{also}; put every "
                    "change to one file in one section"
                )
            seen[key] = (no, p, op.kind, is_target)


def _parse_chunks(body: list[_Line], i: int, path: str) -> tuple[list[Chunk], int]:
    chunks: list[Chunk] = []
    while i < len(body):
        text = body[i].text
        if not text.strip():  # blank lines between hunks
            i += 1
            continue
        if text.startswith("*"):
            break
        chunk, i = _parse_chunk(body, i, path, allow_missing_anchor=not chunks)
        chunks.append(chunk)
    return chunks, i


def _parse_chunk(body: list[_Line], i: int, path: str, *, allow_missing_anchor: bool) -> tuple[Chunk, int]:
    first = body[i]
    head = first.text.strip()
    anchor: str | None = None
    if head.startswith("@@"):
        rest = head[2:].strip()
        if rest.endswith("@@") and rest != "@@":
            rest = rest[:-2].rstrip()  # "@@ -1,2 +1,3 @@" (unified style): keep the text
        anchor = rest or None
        i += 1
    elif not allow_missing_anchor:
        raise PatchParseError(
            f"line {first.no}: in {path}, expected a hunk to start with '@@', got {first.text[:80]!r}"
        )
    old: list[str] = []
    new: list[str] = []
    diff: list[str] = []
    is_eof = False
    start_no = body[i].no if i < len(body) else first.no + 1
    while i < len(body):
        line = body[i]
        if line.text.strip() == EOF_MARK:
            if not diff:
                raise PatchParseError(f"line {line.no}: in {path}, the hunk before '{EOF_MARK}' has no lines")
            is_eof = True
            i += 1
            break
        text = line.text
        if text == "" or text[0] in " +-":
            tag, rest_text = (text[0], text[1:]) if text else (" ", "")
            diff.append(tag + rest_text)
            if tag in " -":
                old.append(rest_text)
            if tag in " +":
                new.append(rest_text)
            i += 1
            continue
        if not diff:
            raise PatchParseError(
                f"line {line.no}: in {path}, hunk lines must start with ' ', '-' or '+', got {text[:80]!r}"
            )
        break  # the next hunk ("@@") or file section
    if not diff:
        raise PatchParseError(f"line {start_no}: in {path}, hunk {anchor or '@@'} has no lines")
    return Chunk(anchor, tuple(old), tuple(new), is_eof, tuple(diff)), i


# ---------------------------------------------------------------------------------------------
# Text with its line endings


def decode_text(data: bytes, path: str) -> str:
    """UTF-8 text of a file, or PatchApplyError for binary content."""
    if b"\x00" in data[:8192]:
        raise PatchApplyError(f"{path} is a binary file; apply_patch edits text files only")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PatchApplyError(
            f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start}); not patched"
        ) from None


@dataclass(slots=True)
class _Lines:
    """A file as lines without endings, plus each line's ending."""

    body: list[str]
    ends: list[str]
    eol: str  # the dominant ending, used for new lines

    @classmethod
    def of(cls, text: str) -> _Lines:
        body: list[str] = []
        ends: list[str] = []
        for piece in text.splitlines(keepends=True):
            if piece.endswith("\r\n"):
                body.append(piece[:-2])
                ends.append("\r\n")
            elif piece.endswith("\n"):
                body.append(piece[:-1])
                ends.append("\n")
            else:  # "\r" alone or other separators stay inside the line; only \n splits
                body.append(piece)
                ends.append("")
        # splitlines also splits on \r, \v, \f, \u2028...: glue those back so only \n separates.
        merged_b: list[str] = []
        merged_e: list[str] = []
        for b, e in zip(body, ends, strict=True):
            if merged_e and merged_e[-1] == "":
                merged_b[-1] += b
                merged_e[-1] = e
            else:
                merged_b.append(b)
                merged_e.append(e)
        crlf = sum(1 for e in merged_e if e == "\r\n")
        lf = sum(1 for e in merged_e if e == "\n")
        return cls(merged_b, merged_e, "\r\n" if crlf > lf else "\n")

    def text(self, final_newline: bool) -> str:
        ends = [e or self.eol for e in self.ends]
        if ends:
            if final_newline and ends[-1] == "":
                ends[-1] = self.eol
            elif not final_newline:
                ends[-1] = ""
        return "".join(b + e for b, e in zip(self.body, ends, strict=True))


def _fold(s: str) -> str:
    table = {
        "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2212": "-",
        "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'",
        "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"',
        "\u00a0": " ", "\u2002": " ", "\u2003": " ", "\u2009": " ", "\u202f": " ",
    }  # fmt: skip
    return "".join(table.get(c, c) for c in s).strip()


_PASSES: tuple[Callable[[str], str], ...] = (lambda s: s, str.rstrip, str.strip, _fold)


MATCH_BUDGET = 4_000_000  # line comparisons one apply_chunks call may spend locating its hunks


class _Budget:
    """Counts line comparisons, so a huge hunk against a repetitive file fails fast, with words."""

    def __init__(self, limit: int) -> None:
        self.left = limit

    def spend(self, n: int, what: str) -> None:
        self.left -= n
        if self.left < 0:
            raise PatchApplyError(
                f"{what}: locating the hunk is too costly (the file repeats the hunk's lines many times); "
                "add an '@@' anchor line near the change and send only 3 context lines around each change"
            )


def _seek(
    lines: Sequence[str],
    pattern: Sequence[str],
    start: int,
    eof: bool,
    budget: _Budget | None = None,
    what: str = "hunk",
) -> int | None:
    """Index where `pattern` occurs at or after `start`, trying ever looser comparisons."""
    if not pattern:
        return start
    n, m = len(lines), len(pattern)
    if m > n:
        return None
    budget = budget or _Budget(MATCH_BUDGET)
    for norm in _PASSES:
        pat = [norm(p) for p in pattern]
        budget.spend(n, what)
        normed = [norm(line) for line in lines]
        first = pat[0]
        candidates: Iterator[int] = (i for i in range(start, n - m + 1) if normed[i] == first)
        if eof:  # prefer the end of the file
            candidates = itertools.chain(
                [n - m] if n - m >= start and normed[n - m] == first else [], candidates
            )
        for i in candidates:
            k = 1
            while k < m and normed[i + k] == pat[k]:
                k += 1
            budget.spend(k, what)
            if k == m:
                return i
    return None


def _keep_context(diff_lines: Sequence[str], matched: Sequence[str]) -> tuple[str, ...]:
    """The hunk's new lines, with context lines taken from the file as it is (fuzzy matches)."""
    out: list[str] = []
    k = 0
    for d in diff_lines:
        tag, text = d[:1], d[1:]
        if tag == " ":
            out.append(matched[k])
            k += 1
        elif tag == "-":
            k += 1
        else:
            out.append(text)
    return tuple(out)


def _describe(chunk: Chunk, index: int, total: int) -> str:
    return f"hunk {index + 1} of {total} ({chunk.header})"


def apply_chunks(
    text: str,
    chunks: Sequence[Chunk],
    path: str,
    *,
    selected: Sequence[bool] | None = None,
    budget: int = MATCH_BUDGET,
) -> str:
    """Apply `chunks` (those `selected`) to `text`; PatchApplyError names the hunk that failed.

    Locating the hunks may cost at most `budget` line comparisons (a work budget, not a clock)."""
    spent = _Budget(budget)
    had_final_nl = text.endswith("\n") or text == ""
    doc = _Lines.of(text)
    lines = doc.body
    replacements: list[tuple[int, int, tuple[str, ...]]] = []
    pos = 0
    total = len(chunks)
    for idx, chunk in enumerate(chunks):
        if selected is not None and not selected[idx]:
            continue
        if chunk.anchor is not None:
            at = _seek(lines, [chunk.anchor], pos, False, spent, f"{path}: {_describe(chunk, idx, total)}")
            if at is None:
                raise PatchApplyError(
                    f"{path}: {_describe(chunk, idx, total)} failed: the anchor line {chunk.anchor!r} was not "
                    f"found{' after the previous hunk' if pos else ''}. Read the file again and resend the patch."
                )
            pos = at + 1
        if not chunk.old_lines:
            at = pos if chunk.anchor is not None else len(lines)
            replacements.append((at, 0, chunk.new_lines))
            continue
        old, new = list(chunk.old_lines), chunk.new_lines
        at = _seek(lines, old, pos, chunk.is_eof, spent, f"{path}: {_describe(chunk, idx, total)}")
        if at is None and old and old[-1] == "":
            # A trailing blank context line is often the file's final newline, not a line.
            old = old[:-1]
            new = new[:-1] if new and new[-1] == "" else new
            at = _seek(lines, old, pos, chunk.is_eof, spent, f"{path}: {_describe(chunk, idx, total)}")
        if at is None:
            expected = "\n".join("  " + s for s in chunk.old_lines[:12])
            more = "\n  ..." if len(chunk.old_lines) > 12 else ""
            raise PatchApplyError(
                f"{path}: {_describe(chunk, idx, total)} failed: these lines were not found"
                f"{' after the previous hunk' if pos else ''} (also tried ignoring whitespace):\n"
                f"{expected}{more}\nRead the file again and resend the patch with its exact lines."
            )
        if len(old) == len(chunk.old_lines) and chunk.diff_lines:
            new = _keep_context(chunk.diff_lines, lines[at : at + len(old)])
        replacements.append((at, len(old), tuple(new)))
        pos = at + len(old)
    replacements.sort(key=lambda r: r[0])
    for (a0, alen, _), (b0, _, _) in itertools.pairwise(replacements):
        if a0 + alen > b0:
            raise PatchApplyError(f"{path}: two hunks overlap around line {b0 + 1}; merge them into one hunk")
    body, ends = doc.body, doc.ends
    for start, length, new_lines in reversed(replacements):
        old_ends = ends[start : start + length]
        new_ends = [doc.eol] * len(new_lines)
        # Keep the endings of replaced lines where a line stays in place.
        for k in range(min(len(old_ends), len(new_ends))):
            new_ends[k] = old_ends[k] or doc.eol
        body[start : start + length] = list(new_lines)
        ends[start : start + length] = new_ends
    if not body:
        return ""
    return doc.text(final_newline=had_final_nl)


# ---------------------------------------------------------------------------------------------
# Three-way merge


@dataclass(frozen=True, slots=True)
class Conflict:
    base: tuple[str, ...]
    ours: tuple[str, ...]  # the disk (the user's edit)
    theirs: tuple[str, ...]  # the model's edit
    line: int  # 1-based line in the merged output where it would start

    def render(self) -> str:
        def block(ls: tuple[str, ...]) -> str:
            return "".join(s if s.endswith("\n") else s + "\n" for s in ls)

        return (
            f"<<<<<<< on disk (user) — near line {self.line}\n{block(self.ours)}"
            f"||||||| what you read\n{block(self.base)}=======\n{block(self.theirs)}>>>>>>> your patch"
        )


@dataclass(frozen=True, slots=True)
class MergeResult:
    text: str
    conflicts: tuple[Conflict, ...]

    @property
    def clean(self) -> bool:
        return not self.conflicts


def _sync_regions(base: list[str], a: list[str], b: list[str]) -> list[tuple[int, int, int, int, int, int]]:
    am = difflib.SequenceMatcher(None, base, a, autojunk=False).get_matching_blocks()
    bm = difflib.SequenceMatcher(None, base, b, autojunk=False).get_matching_blocks()
    ia = ib = 0
    out: list[tuple[int, int, int, int, int, int]] = []
    while ia < len(am) and ib < len(bm):
        abase, amatch, alen = am[ia]
        bbase, bmatch, blen = bm[ib]
        lo, hi = max(abase, bbase), min(abase + alen, bbase + blen)
        if lo < hi:
            asub = amatch + (lo - abase)
            bsub = bmatch + (lo - bbase)
            out.append((lo, hi, asub, asub + hi - lo, bsub, bsub + hi - lo))
        if abase + alen < bbase + blen:
            ia += 1
        else:
            ib += 1
    out.append((len(base), len(base), len(a), len(a), len(b), len(b)))
    return out


def merge3(base: str, ours: str, theirs: str) -> MergeResult:
    """Line-based three-way merge (diff3): `ours` is the disk, `theirs` the model's edit of `base`."""
    if ours == base:
        return MergeResult(theirs, ())
    if theirs in (base, ours):
        return MergeResult(ours, ())
    zb, za, zt = (
        base.splitlines(keepends=True),
        ours.splitlines(keepends=True),
        theirs.splitlines(keepends=True),
    )
    out: list[str] = []
    conflicts: list[Conflict] = []
    iz = ia = ib = 0
    for zmatch, zend, amatch, aend, bmatch, bend in _sync_regions(zb, za, zt):
        if amatch > ia or bmatch > ib:
            a_part, b_part, z_part = za[ia:amatch], zt[ib:bmatch], zb[iz:zmatch]
            if a_part == b_part or b_part == z_part:
                out.extend(a_part)
            elif a_part == z_part:
                out.extend(b_part)
            else:
                conflicts.append(Conflict(tuple(z_part), tuple(a_part), tuple(b_part), len(out) + 1))
                out.extend(a_part)
        elif zmatch > iz:
            pass  # both sides deleted the same base lines
        ia, ib, iz = amatch, bmatch, zmatch
        if zend > zmatch:
            out.extend(zb[zmatch:zend])
            iz, ia, ib = zend, aend, bend
    return MergeResult("".join(out), tuple(conflicts))


# ---------------------------------------------------------------------------------------------
# Planning: a proposed change set for review


@dataclass(frozen=True, slots=True)
class FilePlan:
    """One file's proposed change.

    `disk` is the file on disk when planned (None: it did not exist); `base` is the text the hunks
    apply to (what the model saw, which may differ from `disk`); `new_text` is the result with every
    hunk accepted (None: the file is deleted).
    """

    path: str
    op: Literal["add", "delete", "update", "move"]
    move_to: str | None
    disk: str | None
    base: str | None
    new_text: str | None
    chunks: tuple[Chunk, ...] = ()
    disk_bytes: bytes | None = None  # for deletes of binary files: the pre-image as read
    merged: bool = False  # the user's disk change was merged in
    target_bytes: bytes | None = None  # a move's destination as it was when planned (None: absent)

    @property
    def target(self) -> str:
        return self.move_to or self.path

    @property
    def hunk_count(self) -> int:
        return len(self.chunks) if self.op in ("update", "move") and self.chunks else 1

    def render(self, accepted: Sequence[bool] | None = None) -> str | None:
        """The file's new text with only the `accepted` hunks (all when None); PatchConflict on overlap."""
        if self.op in ("add", "delete"):
            if accepted is not None and not all(accepted):
                return self.disk
            return self.new_text
        if accepted is None or all(accepted):
            return self.new_text
        assert self.base is not None and self.disk is not None
        if self.chunks and not any(accepted):
            return self.disk
        mine = (
            apply_chunks(self.base, self.chunks, self.path, selected=list(accepted))
            if self.chunks
            else self.base
        )
        if self.base == self.disk:
            return mine
        result = merge3(self.base, self.disk, mine)
        if not result.clean:
            raise PatchConflict(self.path, result.conflicts)
        return result.text

    def unified_diff(self, context: int = 3) -> str:
        old = self.disk or ""
        new = self.new_text or ""
        return "".join(
            difflib.unified_diff(
                old.splitlines(keepends=True),
                new.splitlines(keepends=True),
                fromfile=f"a/{self.path}" if self.disk is not None else "/dev/null",
                tofile=f"b/{self.target}" if self.new_text is not None else "/dev/null",
                n=context,
            )
        )

    def hunks_payload(self) -> list[dict[str, Any]]:
        """Per-hunk display for the review UI: [{"header", "lines"}]."""
        if self.op == "add":
            return [{"header": "new file", "lines": ["+" + s for s in (self.new_text or "").splitlines()]}]
        if self.op == "delete":
            return [{"header": "delete file", "lines": ["-" + s for s in (self.disk or "").splitlines()]}]
        if not self.chunks and self.move_to:
            return [{"header": f"rename to {self.move_to}", "lines": []}]
        if not self.chunks:  # a whole-file replacement (Add over an existing file, Delete then Add)
            body = self.unified_diff().splitlines()[2:]
            return [
                {"header": "replace the whole file", "lines": [ln for ln in body if not ln.startswith("@@")]}
            ]
        return [{"header": c.header, "lines": list(c.diff_lines)} for c in self.chunks]


@dataclass(frozen=True, slots=True)
class ChangeSet:
    """Everything one patch would change, computed before anything touches the disk."""

    files: tuple[FilePlan, ...]
    patch: str
    notes: tuple[str, ...] = field(default=())

    def payload(self) -> dict[str, Any]:
        """The ApprovalRequest payload for kind "patch"."""
        return {
            "files": [
                {"path": f.target if f.move_to else f.path, "op": f.op, "from": f.path if f.move_to else None,
                 "hunks": f.hunks_payload()}
                for f in self.files
            ],
            "patch": self.patch,
            "diff": self.diff(),
        }  # fmt: skip

    def diff(self) -> str:
        return "".join(f.unified_diff() for f in self.files)

    def summary(self) -> str:
        """One line per file: 'M src/a.py (+3 -1)'."""
        letters = {"add": "A", "delete": "D", "update": "M", "move": "R"}
        out = []
        for f in self.files:
            plus = minus = 0
            for line in f.unified_diff(context=0).splitlines():
                if line.startswith("+") and not line.startswith("+++"):
                    plus += 1
                elif line.startswith("-") and not line.startswith("---"):
                    minus += 1
            name = f"{f.path} -> {f.move_to}" if f.move_to else f.path
            merged = " (merged with the user's unsaved-to-you edits)" if f.merged else ""
            out.append(f"{letters[f.op]} {name} (+{plus} -{minus}){merged}")
        return "\n".join(out)


def plan_patch(
    patch: Patch | str,
    read: Callable[[str], bytes | None],
    seen: Callable[[str], str | None] | None = None,
) -> ChangeSet:
    """Compute the change set of `patch` against `read(path)` (None: missing).

    `seen(path)` gives the text the model last saw, when known; if it differs from the disk, the
    model's hunks are applied to it and merged three-way with the disk.
    """
    p = parse_patch(patch) if isinstance(patch, str) else patch
    plans: list[FilePlan] = []
    notes: list[str] = []
    later_adds = {path_key(o.path) for o in p.ops if o.kind == "add"}
    for op in p.ops:
        data = read(op.path)
        if op.kind == "delete" and path_key(op.path) in later_adds:
            if data is None:
                raise PatchApplyError(f"cannot delete {op.path}: no such file in the project")
            continue  # Delete then Add of one path: planned as one replacement at the Add
        if op.kind == "add":
            if data is None:
                plans.append(FilePlan(op.path, "add", None, None, None, op.content))
                continue
            disk = decode_text(data, op.path)  # Codex replaces an existing file on Add: so do we, reviewed
            notes.append(f"{op.path} exists: the patch replaces its whole content")
            plans.append(FilePlan(op.path, "update", None, disk, disk, op.content))
            continue
        if data is None:
            verb = "delete" if op.kind == "delete" else "update"
            raise PatchApplyError(f"cannot {verb} {op.path}: no such file in the project")
        if op.kind == "delete":
            try:
                text: str | None = decode_text(data, op.path)
            except PatchApplyError:
                text = None
            plans.append(FilePlan(op.path, "delete", None, text, text, None, disk_bytes=data))
            continue
        disk = decode_text(data, op.path)
        target_bytes = read(op.move_to) if op.move_to is not None else None
        if target_bytes is not None:
            notes.append(f"{op.move_to} exists: moving {op.path} there replaces it")
        saw = seen(op.path) if seen is not None else None
        base = disk if saw is None else saw
        try:
            mine = apply_chunks(base, op.chunks, op.path) if op.chunks else base
        except PatchApplyError:
            if base == disk:
                raise
            # The model's view is stale in a way the hunks do not fit: try the disk itself.
            base = disk
            mine = apply_chunks(base, op.chunks, op.path)
        merged = False
        if base != disk:
            result = merge3(base, disk, mine)
            if not result.clean:
                raise PatchConflict(op.path, result.conflicts)
            mine, merged = result.text, True
        kind: Literal["update", "move"] = "move" if op.move_to else "update"
        plans.append(
            FilePlan(
                op.path,
                kind,
                op.move_to,
                disk,
                base,
                mine,
                op.chunks,
                merged=merged,
                target_bytes=target_bytes,
            )
        )
    return ChangeSet(tuple(plans), p.text, tuple(notes))
