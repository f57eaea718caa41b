"""The test digest: what the model reads after a run, instead of the raw output, within a token budget.

Plain data in (a `TestRun` folded from the pytest plugin's events), plain text out. Per run: the
status, the counts and the duration; per failure: its test id, its assertion or exception message,
and the traceback lines that matter (frames inside the project with their `>` line, and the `E`
lines wherever they are; frames in the standard library or site-packages are collapsed into a
count). Over the budget, tracebacks go first (the last failures' first), never the ids or the
counts, and the digest says how many were trimmed.

`Digest.signature` (test ids with their first message line, addresses masked) is what stuck
detection compares: the same failures failing the same way. `rerun_targets` turns the last run into
the node ids a "rerun failed" may pass to pytest: only ids that run reported as failing.

The token estimator is injected (`estimate`): the cores are independent of each other, so the
caller passes `app.context.tokens.estimate_tokens` or a learned `TokenEstimator.estimate`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from app.tools.testrun import CaseResult, TestRun

__all__ = [
    "DEFAULT_BUDGET",
    "Digest",
    "FailureDigest",
    "Frame",
    "RerunRefused",
    "build_digest",
    "parse_traceback",
    "rerun_targets",
]

DEFAULT_BUDGET = 1200  # tokens: a dozen failures with their key lines; more get trimmed
MAX_E_LINES = 8  # per frame: an assertion diff says enough in its first lines
MAX_LINE = 240  # characters of one shown line
MAX_MESSAGE = 200

_SEP = re.compile(r"^(?:_ )+_?\s*$")
_CHAIN = re.compile(r"^(?:The above exception was the direct cause|During handling of the above exception)")
_LOC = re.compile(r"^(?P<path>(?:[A-Za-z]:)?[^\s:][^:]*):(?P<line>\d+):(?:\s+(?P<rest>.*))?$")
_DEF = re.compile(r"^>?\s*(?:async\s+)?def\s+(\w+)\s*\(")
_CARETS = re.compile(r"^\s*[\^~]+\s*$")
_SECTION = re.compile(r"^-{3,} (?:Captured|generated)\b")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]+")
_OUTSIDE = ("site-packages", "dist-packages", "<frozen", "<string>")


@dataclass(frozen=True, slots=True)
class Frame:
    """One traceback entry: where, the line that ran (`>` line), and the `E` lines raised there."""

    path: str
    line: int
    func: str = ""
    code: str = ""
    e_lines: tuple[str, ...] = ()
    in_project: bool = True


@dataclass(frozen=True, slots=True)
class FailureDigest:
    """One failing test (or a collection error) as the model sees it."""

    nodeid: str
    kind: str  # FAILED | ERROR | ERROR collecting
    message: str  # the assertion / exception message, first line
    frames: tuple[Frame, ...] = ()
    preamble: str = ""  # text before the first frame worth keeping (e.g. "ImportError while importing ...")


@dataclass(frozen=True, slots=True)
class Digest:
    """The digest of one run; `text` is what goes to the model."""

    text: str
    tokens: int
    budget: int
    status: str
    counts: dict[str, int]
    duration: float
    failures: tuple[FailureDigest, ...]
    trimmed: int = 0  # failures whose traceback lines were shortened or dropped
    hidden_ids: int = 0  # failing ids left out (only when the ids alone exceed the budget)
    signature: frozenset[tuple[str, str]] = field(default_factory=frozenset)

    @property
    def failing(self) -> int:
        return len(self.failures)


# ---------------------------------------------------------------------------------------------
# Tracebacks


def _is_outside(path: str, root: str) -> bool:
    """Library and interpreter frames: absolute paths (pytest prints project paths relative to its
    rootdir), paths above the root, and anything in site-packages."""
    p = _rel(path, root).replace("\\", "/")
    if p.startswith(("/", "../", "~")) or (len(p) > 1 and p[1] == ":"):
        return True
    return any(m in p for m in _OUTSIDE)


def _rel(path: str, root: str) -> str:
    p = path.replace("\\", "/")
    prefix = root.rstrip("/") + "/" if root else ""
    return p[len(prefix) :] if prefix and p.startswith(prefix) else path


def _clip(text: str, limit: int = MAX_LINE) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _e_lines(lines: Iterable[str]) -> list[str]:
    """The `E` lines, their common indentation removed (assertion diffs keep their shape)."""
    body = [ln[1:] for ln in lines if ln == "E" or ln.startswith("E ")]
    indent = min((len(b) - len(b.lstrip()) for b in body if b.strip()), default=0)
    return [_clip(b[indent:].rstrip()) for b in body]


def _split_blocks(text: str) -> list[list[str]]:
    """Separator-delimited blocks of the traceback (captured-output sections left out)."""
    blocks: list[list[str]] = [[]]
    for raw in text.splitlines():
        line = raw.rstrip()
        if _SECTION.match(line):
            break  # captured stdout/log sections: the model can rerun and read them if it needs to
        if _SEP.match(line) or _CHAIN.match(line):
            blocks.append([])
            continue
        blocks[-1].append(line)
    return [b for b in blocks if any(s.strip() for s in b)]


def _long_frame(block: list[str], root: str) -> Frame | None:
    """A long-style entry: source lines, the `>` line, `E` lines, then `path:line: Reason`."""
    loc = next((m for m in (_LOC.match(ln) for ln in reversed(block)) if m), None)
    code = next((ln[1:].strip() for ln in block if ln.startswith(">")), "")
    e = _e_lines(block)
    if loc is None:
        return Frame("", 0, code=_clip(code), e_lines=tuple(e), in_project=False) if (e or code) else None
    path = loc.group("path")
    func = next((m.group(1) for m in (_DEF.match(ln) for ln in block) if m), "")
    return Frame(
        _rel(path, root), int(loc.group("line")), func, _clip(code), tuple(e), not _is_outside(path, root)
    )


def _short_frames(block: list[str], root: str) -> tuple[list[Frame], str]:
    """Short-style entries (`path:line: in func` then the code line), plus the preamble before them."""
    frames: list[Frame] = []
    preamble: list[str] = []
    cur: dict[str, object] | None = None
    e_buf: list[str] = []

    def flush() -> None:
        nonlocal cur, e_buf
        if cur is not None:
            path = str(cur["path"])
            frames.append(
                Frame(
                    _rel(path, root),
                    int(str(cur["line"])),
                    str(cur["func"]),
                    _clip(str(cur["code"])),
                    tuple(_e_lines(e_buf)),
                    not _is_outside(path, root),
                )
            )
        elif e_buf:
            frames.append(Frame("", 0, e_lines=tuple(_e_lines(e_buf)), in_project=False))
        cur, e_buf = None, []

    for ln in block:
        m = _LOC.match(ln)
        if m and not ln.startswith("E "):
            flush()
            rest = (m.group("rest") or "").strip()
            cur = {
                "path": m.group("path"),
                "line": m.group("line"),
                "func": rest[3:] if rest.startswith("in ") else "",
                "code": "",
            }
        elif ln == "E" or ln.startswith("E "):
            e_buf.append(ln)
        elif cur is not None:
            if not cur["code"] and ln.strip() and not _CARETS.match(ln):
                cur["code"] = ln.strip()
        elif ln.strip() and ln.strip() != "Traceback:":
            preamble.append(ln.strip())
    flush()
    return frames, (preamble[0] if preamble else "")


def parse_traceback(text: str, *, root: str = "") -> tuple[list[Frame], str]:
    """Frames of a pytest failure text (long, short or mixed style) and the preamble line, if any.

    `root` (absolute, POSIX) makes absolute paths inside the project relative; pytest already
    prints them relative to its rootdir, so it is rarely needed.
    """
    frames: list[Frame] = []
    preamble = ""
    for block in _split_blocks(text):
        if any(ln.startswith(">") for ln in block):
            f = _long_frame(block, root)
            if f is not None:
                frames.append(f)
        else:
            more, pre = _short_frames(block, root)
            frames.extend(more)
            preamble = preamble or pre
    return frames, preamble


def _message(frames: Sequence[Frame], text: str) -> str:
    """The first line of the last `E` block, else the text's last meaningful line."""
    for f in reversed(frames):
        said = [e.strip() for e in f.e_lines if e.strip()]
        if said:  # a SyntaxError's E block starts with its location: its last line is the message
            return _clip(said[-1] if said[0].startswith('File "') else said[0], MAX_MESSAGE)
    for ln in reversed(text.splitlines()):
        s = ln.strip()
        if s and not _SEP.match(s) and not _CARETS.match(s):
            return _clip(s, MAX_MESSAGE)
    return ""


def _failure(case_id: str, kind: str, text: str, root: str) -> FailureDigest:
    frames, preamble = parse_traceback(text, root=root)
    return FailureDigest(case_id, kind, _message(frames, text), tuple(frames), _clip(preamble))


# ---------------------------------------------------------------------------------------------
# Rendering


def _frame_lines(frames: Sequence[Frame], *, short: bool) -> list[str]:
    """Project frames with their `>` line, outside frames as a count, `E` lines where raised.

    `short`: only the last project frame and the first three `E` lines of the raising frame.
    """
    if short:
        inside = [f for f in frames if f.in_project]
        raising = next((f for f in reversed(frames) if f.e_lines), None)
        keep: list[Frame] = inside[-1:]
        if raising is not None and raising not in keep:
            keep.append(
                Frame(raising.path, raising.line, raising.func, "", raising.e_lines[:3], raising.in_project)
            )
        elif keep and keep[0].e_lines:
            f = keep[0]
            keep = [Frame(f.path, f.line, f.func, f.code, f.e_lines[:3], True)]
        frames = keep
    out: list[str] = []
    outside = 0
    for f in frames:
        if f.in_project or (short and f.path):
            if outside:
                out.append(f"  ({outside} frame{'s' if outside > 1 else ''} outside the project)")
                outside = 0
            where = f"{f.path}:{f.line}" + (f" in {f.func}" if f.func else "")
            out.append(f"  {where}" + (f": {f.code}" if f.code else ""))
        else:
            outside += 1
        if f.e_lines:
            if outside and not f.in_project:
                where = f", raised at {f.path}:{f.line}" if f.path else ""
                out.append(f"  ({outside} frame{'s' if outside > 1 else ''} outside the project{where})")
                outside = 0
            shown = f.e_lines[:MAX_E_LINES]
            out.extend(f"  E {e}".rstrip() for e in shown)
            if len(f.e_lines) > len(shown):
                out.append(f"  E ... ({len(f.e_lines) - len(shown)} more lines)")
    if outside:
        out.append(f"  ({outside} frame{'s' if outside > 1 else ''} outside the project)")
    return out


def _head(f: FailureDigest, limit: int = MAX_MESSAGE) -> str:
    msg = _clip(f.message, limit) if limit > 0 else ""
    return f"{f.kind} {f.nodeid}" + (f" - {msg}" if msg else "")


def _raised_at(f: FailureDigest) -> str:
    where = next((fr for fr in reversed(f.frames) if fr.e_lines), None)
    return f"{where.path}:{where.line}" if where is not None else ""


def _header(run: TestRun) -> list[str]:
    head = f"{run.status_word()}: {run.counts_line()}"
    if run.duration:
        head += f" in {run.duration:.2f}s"
    lines = [head]
    if run.note:
        lines.append(run.note)
    return lines


def _signature(run: TestRun, failures: Sequence[FailureDigest]) -> frozenset[tuple[str, str]]:
    """(id, message) per failure, addresses masked; a red run without ids (a crash, another runner)
    is its status and counts. Empty means green."""
    if not failures and not run.ok:
        return frozenset({(f"run: {run.status_word()}", f"{run.counts_line()} {run.note}".strip())})
    return frozenset((f.nodeid, _ADDRESS.sub("0x?", f.message)) for f in failures)


def build_digest(
    run: TestRun,
    *,
    estimate: Callable[[str], int],
    budget: int = DEFAULT_BUDGET,
    root: str = "",
) -> Digest:
    """The digest of `run` within `budget` tokens as counted by `estimate` (see module docstring)."""
    failures: list[FailureDigest] = [_failure(n, "ERROR collecting", t, root) for n, t in run.collect_errors]
    failures += [
        _failure(c.nodeid, "ERROR" if c.outcome == "error" else "FAILED", c.text, root)
        for c in run.failures()
    ]
    header = _header(run)
    tail: list[str] = []
    running = [c.nodeid for c in run.cases.values() if c.outcome == "running"]
    if running and (run.timed_out or run.cancelled or not run.finished):
        tail.append("still running when it ended: " + ", ".join(running[:5]))
    # Per failure, from most to least: full traceback, short traceback, none, a shorter message, the id.
    # A failure like an earlier one (same message, raised at the same line) points to it instead.
    levels: list[list[tuple[str, list[str]]]] = []
    seen: dict[tuple[str, str], str] = {}
    for f in failures:
        key = (_ADDRESS.sub("0x?", f.message), _raised_at(f))
        if f.message and key in seen:
            same = f"{f.kind} {f.nodeid} - same error as {seen[key]}"
            none: list[str] = []
            levels.append([(same, none)] * 4 + [(_head(f, 0), none)])
            continue
        seen[key] = f.nodeid.rsplit("::", 1)[-1]
        full = ([f"  {f.preamble}"] if f.preamble else []) + _frame_lines(f.frames, short=False)
        levels.append(
            [
                (_head(f), full),
                (_head(f), _frame_lines(f.frames, short=True)),
                (_head(f), []),
                (_head(f, 80), []),
                (_head(f, 0), []),
            ]
        )
    chosen = [0] * len(failures)

    def render(ids_shown: int | None = None) -> str:
        lines = list(header)
        shown = len(failures) if ids_shown is None else ids_shown
        for i in range(shown):
            head, body = levels[i][chosen[i]]
            lines.append(head)
            lines.extend(body)
        if shown < len(failures):
            lines.append(f"... {len(failures) - shown} more failing tests not listed (over the token budget)")
        lines.extend(tail)
        trimmed = sum(c > 0 and levels[i][c][1] != levels[i][0][1] for i, c in enumerate(chosen))
        cut = sum(c > 2 and levels[i][c][0] != levels[i][2][0] for i, c in enumerate(chosen))
        if trimmed or cut:
            lines.append(
                f"[tracebacks trimmed for {trimmed} of {len(failures)} failures"
                + (f", messages shortened for {cut}" if cut else "")
                + f" to fit {budget} tokens; run_tests on one test file shows more]"
            )
        return "\n".join(lines)

    text = render()
    # Tracebacks first, then messages: each step from the last failure backwards.
    for level in range(1, 5):
        for i in reversed(range(len(failures))):
            if estimate(text) <= budget:
                break
            if chosen[i] < level:
                chosen[i] = level
                text = render()
    trimmed = sum(c > 0 and levels[i][c][1] != levels[i][0][1] for i, c in enumerate(chosen))
    hidden = 0
    if estimate(text) > budget and failures:
        # Only when the ids alone overflow: list as many as fit, count the rest.
        lo, hi = 0, len(failures)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if estimate(render(mid)) <= budget:
                lo = mid
            else:
                hi = mid - 1
        hidden = len(failures) - lo
        text = render(lo)
    if (not run.cases or run.runner != "pytest") and run.output_tail and (not run.ok or not failures):
        text = _with_output(text, run.output_tail, budget, estimate)
    return Digest(
        text,
        estimate(text),
        budget,
        run.status_word(),
        dict(run.counts),
        run.duration,
        tuple(failures),
        trimmed,
        hidden,
        _signature(run, failures),
    )


def _with_output(text: str, output: str, budget: int, estimate: Callable[[str], int]) -> str:
    """Runners without per-test events: the output's last lines that still fit the budget."""
    lines = output.rstrip().splitlines()
    kept: list[str] = []
    for ln in reversed(lines):
        cand = [_clip(ln), *kept]
        if estimate(text + "\noutput (tail):\n" + "\n".join(cand)) > budget:
            break
        kept = cand
    if not kept:
        return text
    more = f" (last {len(kept)} of {len(lines)} lines)" if len(kept) < len(lines) else ""
    return text + f"\noutput (tail){more}:\n" + "\n".join(kept)


# ---------------------------------------------------------------------------------------------
# Rerun failed


class RerunRefused(ValueError):
    """There is nothing valid to rerun; the message says why, for the model or the user."""


_NODEID_CHARS = re.compile(r"^[^\x00-\x1f\x7f]+$")


def rerun_targets(run: TestRun | None) -> list[str]:
    """The node ids of the failures of `run`, each checked to be a plain project node id.

    Only ids that this run itself reported as failed or errored (or as a collection error) are
    returned: never text from the model. An id is refused when it could be read as an option
    (starts with "-"), holds control characters, or names a path outside the project.
    """
    if run is None:
        raise RerunRefused("no test run yet: call run_tests first")
    if run.runner != "pytest":
        raise RerunRefused(
            f"rerun failed needs pytest node ids; the last run used {run.runner}: call run_tests"
        )
    picked: list[CaseResult | str] = [*run.failures(), *(n for n, _ in run.collect_errors)]
    ids: list[str] = []
    for item in picked:
        nodeid = item if isinstance(item, str) else item.nodeid
        path = nodeid.split("::", 1)[0].replace("\\", "/")
        bad = (
            not nodeid
            or nodeid.lstrip().startswith("-")
            or not _NODEID_CHARS.match(nodeid)
            or path.startswith(("/", "~"))
            or (len(path) > 1 and path[1] == ":")
            or ".." in path.split("/")
        )
        if bad:
            raise RerunRefused(f"the last run reported a test id that cannot be rerun safely: {nodeid!r:.80}")
        if nodeid not in ids:
            ids.append(nodeid)
    if not ids:
        raise RerunRefused(
            "the last run had no failures to rerun" + ("" if run.finished else " (it did not finish)")
        )
    return ids
