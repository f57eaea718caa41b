"""The test-run model: events in, cases/counts/failures out, and a compact summary for the model.

Events are the JSON lines the pytest plugin (app/adapters/pytest_plugin.py) writes, one per test
phase, decoded incrementally by `EventDecoder` (partial lines are the normal case). Counting follows
pytest's own terminal summary: each phase report carries pytest's category ("passed", "failed",
"error", "skipped", "xfailed", "xpassed" or "" for a passing setup/teardown), so our counts equal
the "N passed, M failed" line pytest prints. Runners other than pytest stream plain output; their
closing summary line is parsed by `parse_summary_line` where the format is known.

`stuck()` is the fix-until-green brake: the same failures several runs in a row (the agent feeds
it the signatures of app.tools.digest: failing ids with their messages).

The same model is what the Tests panel shows, live: the services own one `TestRun` per project and
feed it every plugin event (a second `run_started` starts it over and bumps `generation`); the panel
is handed it and wakes on the waker set by `set_waker`, called once until the panel takes the
changed test ids with `take_changed()`. So a burst of results costs the panel one update a frame.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CATEGORIES",
    "CaseResult",
    "EventDecoder",
    "TestRun",
    "parse_summary_line",
    "stuck",
]

CATEGORIES: tuple[str, ...] = ("failed", "error", "passed", "skipped", "xfailed", "xpassed", "deselected")
_SEVERITY = {"error": 5, "failed": 4, "xpassed": 3, "passed": 2, "xfailed": 1, "skipped": 0}


class EventDecoder:
    """Splits a byte stream into JSON objects, one per line; bad lines are kept as errors."""

    def __init__(self, max_line: int = 16 * 1024 * 1024) -> None:
        self._buf = bytearray()
        self._max = max_line
        self.bad_lines = 0

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """Decode every complete line in `data` plus what was buffered."""
        self._buf += data
        out: list[dict[str, Any]] = []
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                if len(self._buf) > self._max:  # a runaway line: drop it rather than grow forever
                    self._buf.clear()
                    self.bad_lines += 1
                return out
            line = bytes(self._buf[:nl])
            del self._buf[: nl + 1]
            ev = self._decode(line)
            if ev is not None:
                out.append(ev)

    def close(self) -> list[dict[str, Any]]:
        """Decode a final line that had no newline."""
        line, self._buf = bytes(self._buf), bytearray()
        ev = self._decode(line)
        return [ev] if ev is not None else []

    def _decode(self, line: bytes) -> dict[str, Any] | None:
        if not line.strip():
            return None
        try:
            ev = json.loads(line)
        except ValueError:
            self.bad_lines += 1
            return None
        if not isinstance(ev, dict) or not isinstance(ev.get("kind"), str):
            self.bad_lines += 1
            return None
        return ev


@dataclass(slots=True)
class CaseResult:
    """One test: its worst outcome across phases, total duration and failure text."""

    nodeid: str
    outcome: str = "pending"  # pending | running | passed | failed | error | skipped | xfailed | xpassed
    duration: float = 0.0
    text: str = ""  # failure / error traceback, or skip reason
    phases: dict[str, str] = field(default_factory=dict)  # when -> category

    @property
    def file(self) -> str:
        return self.nodeid.split("::", 1)[0]


@dataclass(slots=True)
class TestRun:
    """Everything known about one run, updated event by event."""

    __test__ = False  # not a pytest test class

    cases: dict[str, CaseResult] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CATEGORIES, 0))
    collected: int = 0
    collect_errors: list[tuple[str, str]] = field(default_factory=list)  # (nodeid, text)
    started: bool = False
    finished: bool = False
    exit_status: int | None = None
    duration: float = 0.0
    runner: str = "pytest"
    command: str = ""
    output_tail: str = ""  # for runners without events; also the plugin-less fallback
    note: str = ""  # "timed out after 60 s", "interpreter crashed (signal 11)", ...
    timed_out: bool = False
    cancelled: bool = False
    parsed_summary: dict[str, int] | None = None  # from a runner's closing line
    generation: int = 0  # bumped when a second run_started starts the model over
    _changed: dict[str, None] = field(default_factory=dict, repr=False)  # case ids changed, in order
    _waker: Callable[[], None] | None = field(default=None, repr=False)
    _woken: bool = field(default=False, repr=False)

    @property
    def running(self) -> bool:
        return self.started and not self.finished

    def set_waker(self, waker: Callable[[], None] | None) -> None:
        """`waker()` is called on the first change after each `take_changed()` (the panel's frame)."""
        self._waker = waker
        self._woken = False

    def take_changed(self) -> list[str]:
        """Ids of the cases changed since the last call (swap-and-return)."""
        out, self._changed = list(self._changed), {}
        self._woken = False
        return out

    def apply(self, ev: Mapping[str, Any]) -> None:
        """Fold one plugin event into the run."""
        kind = ev.get("kind")
        nodeid = str(ev.get("nodeid", ""))
        self._touch(nodeid)
        if kind == "run_started":
            if self.started:
                self._start_over()
            self.started = True
        elif kind == "collected":
            ids = ev.get("nodeids")
            if isinstance(ids, list):
                for nid in ids:
                    self.cases.setdefault(str(nid), CaseResult(str(nid)))
                    self._changed[str(nid)] = None
            self.collected = int(ev.get("count", len(self.cases)))
            self.counts["deselected"] = int(ev.get("deselected", 0))
        elif kind == "collect_error":
            self.collect_errors.append((nodeid, str(ev.get("text", ""))))
            self.counts["error"] += 1
        elif kind == "started":
            case = self.cases.setdefault(nodeid, CaseResult(nodeid))
            case.outcome = "running"
        elif kind == "phase":
            self._phase(nodeid, ev)
        elif kind == "finished":
            case = self.cases.setdefault(nodeid, CaseResult(nodeid))
            if case.outcome in ("running", "pending"):
                case.outcome = str(ev.get("outcome") or "passed")
        elif kind == "run_finished":
            self.finished = True
            st = ev.get("exitstatus")
            self.exit_status = int(st) if isinstance(st, int) else self.exit_status
            self.duration = float(ev.get("duration", self.duration))

    def _touch(self, nodeid: str) -> None:
        if nodeid:
            self._changed[nodeid] = None
        if not self._woken and self._waker is not None:
            self._woken = True
            self._waker()

    def _start_over(self) -> None:
        fresh = TestRun(runner=self.runner, command=self.command)
        for name in (
            "cases",
            "counts",
            "collected",
            "collect_errors",
            "started",
            "finished",
            "exit_status",
            "duration",
            "output_tail",
            "note",
            "timed_out",
            "cancelled",
            "parsed_summary",
        ):
            setattr(self, name, getattr(fresh, name))
        self.generation += 1
        self._changed.clear()

    def _phase(self, nodeid: str, ev: Mapping[str, Any]) -> None:
        case = self.cases.setdefault(nodeid, CaseResult(nodeid))
        category = str(ev.get("category", ""))
        when = str(ev.get("when", "call"))
        case.phases[when] = category
        case.duration += float(ev.get("duration", 0.0) or 0.0)
        if category in self.counts:
            self.counts[category] += 1
        text = str(ev.get("text", "") or "")
        if category in _SEVERITY:
            current = _SEVERITY.get(case.outcome, -1)
            if _SEVERITY[category] > current or case.outcome in ("running", "pending"):
                case.outcome = category
                if text:
                    case.text = text
            elif text and not case.text:
                case.text = text
        if case.outcome == "running" and when == "teardown":
            case.outcome = "passed"

    # -- views -----------------------------------------------------------------------------

    def failures(self) -> list[CaseResult]:
        return [c for c in self.cases.values() if c.outcome in ("failed", "error")]

    @property
    def ok(self) -> bool:
        """Green: finished, nothing failed, and at least one test ran (or the runner said success)."""
        if self.timed_out or self.cancelled:
            return False
        if self.runner != "pytest":
            return self.exit_status == 0
        return (
            self.finished
            and self.counts["failed"] == 0
            and self.counts["error"] == 0
            and self.exit_status in (0, None)
        )

    def counts_line(self) -> str:
        """pytest-style: '3 failed, 10 passed, 1 skipped' (non-zero categories only)."""
        counts = self.parsed_summary if self.parsed_summary is not None and not self.cases else self.counts
        parts = [f"{counts[k]} {k}" for k in CATEGORIES if counts.get(k)]
        return ", ".join(parts) if parts else "no tests ran"

    def status_word(self) -> str:
        """PASSED, FAILED, NO TESTS, TIMED OUT / STOPPED / CRASHED (with "partial results")."""
        if self.timed_out:
            return "TIMED OUT (partial results)"
        if self.cancelled:
            return "STOPPED (partial results)"
        if self.runner == "pytest" and not self.finished and self.exit_status not in (None, 0):
            return f"CRASHED (exit status {self.exit_status}; partial results)"
        if self.runner == "pytest" and self.exit_status == 5:
            return "NO TESTS"
        return "PASSED" if self.ok else "FAILED"

    def summary_for_model(self, *, max_failures: int = 5, max_text: int = 1500, max_chars: int = 8000) -> str:
        """Compact text for `slipstream test`: status, counts, the first failures' tracebacks (tails).

        The agent sends the model `app.tools.digest.build_digest` instead (a token budget, the
        relevant traceback lines only)."""
        head = f"{self.status_word()}: {self.counts_line()}"
        if self.duration:
            head += f" in {self.duration:.2f}s"
        lines = [head]
        if self.command:
            lines.append(f"command: {self.command}")
        if self.note:
            lines.append(self.note)
        for nodeid, text in self.collect_errors[:max_failures]:
            lines.append(f"\nERROR collecting {nodeid}:\n{_tail(text, max_text)}")
        fails = self.failures()
        for case in fails[:max_failures]:
            label = "ERROR" if case.outcome == "error" else "FAILED"
            lines.append(f"\n{label} {case.nodeid} ({case.duration:.2f}s)\n{_tail(case.text, max_text)}")
        if len(fails) > max_failures:
            rest = ", ".join(c.nodeid for c in fails[max_failures : max_failures + 20])
            lines.append(f"\n... {len(fails) - max_failures} more failing: {rest}")
        running = [c.nodeid for c in self.cases.values() if c.outcome == "running"]
        if running and (self.timed_out or self.cancelled or not self.finished):
            lines.append(f"\nstill running when it ended: {', '.join(running[:5])}")
        if (not self.cases or self.runner != "pytest") and self.output_tail and (not self.ok or not fails):
            lines.append("\noutput (tail):\n" + _tail(self.output_tail, max_text * 2))
        text = "\n".join(lines)
        return text if len(text) <= max_chars else text[: max_chars - 40] + "\n... (summary truncated)"

    def failure_ids(self) -> frozenset[str]:
        """The failing test ids (plus collection errors)."""
        return frozenset(
            [c.nodeid for c in self.failures()] + [f"collect:{n}" for n, _ in self.collect_errors]
        )


def _tail(text: str, limit: int) -> str:
    text = text.rstrip()
    if len(text) <= limit:
        return text
    return "...\n" + text[-limit:]


# ---------------------------------------------------------------------------------------------
# Summary lines of other runners

_PYTEST_LINE = re.compile(r"^=*\s*(?P<body>(?:\d+ \w+(?:, )?)+)(?: in [\d.]+s.*)?\s*=*$")
_PYTEST_ITEM = re.compile(r"(\d+) (passed|failed|skipped|xfailed|xpassed|errors?|deselected|warnings?)")
_CARGO = re.compile(r"test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored")
_JEST = re.compile(r"^Tests:\s+(.*\d+ total)")
_JEST_ITEM = re.compile(r"(\d+) (passed|failed|skipped|todo|total)")
_NODE_TAP = re.compile(r"^#\s*(pass|fail|skipped|todo)\s+(\d+)\s*$")
_MOCHA = re.compile(r"^\s*(\d+) (passing|failing|pending)\b")
_GO = re.compile(r"^(ok|FAIL|---\s*FAIL|---\s*PASS|---\s*SKIP)\b")
_PLAIN = re.compile(r"^(?:\w+:\s*)?(\d+) passed, (\d+) failed(?:, (\d+) skipped)?\s*$")


def parse_summary_line(lines: Iterable[str]) -> dict[str, int] | None:
    """Counts from the closing summary of pytest, cargo, jest, node --test, mocha, go test or the plain form."""
    counts: dict[str, int] = {}
    found = False
    go_seen = False
    for raw in lines:
        line = raw.strip()
        if m := _CARGO.search(line):  # one per test binary: add them up
            found = True
            for k, v in zip(("passed", "failed", "skipped"), m.groups(), strict=True):
                counts[k] = counts.get(k, 0) + int(v)
            continue
        if m := _JEST.match(line):
            found = True
            counts = {}
            for n, k in _JEST_ITEM.findall(m.group(1)):
                if k != "total":
                    key = "skipped" if k == "todo" else k
                    counts[key] = counts.get(key, 0) + int(n)
            continue
        if m := _NODE_TAP.match(line):
            found = True
            key = {"pass": "passed", "fail": "failed", "skipped": "skipped", "todo": "skipped"}[m.group(1)]
            counts[key] = counts.get(key, 0) + int(m.group(2))
            continue
        if m := _MOCHA.match(line):
            found = True
            key = {"passing": "passed", "failing": "failed", "pending": "skipped"}[m.group(2)]
            counts[key] = int(m.group(1))
            continue
        if m := _PLAIN.match(line):
            found = True
            counts = {"passed": int(m.group(1)), "failed": int(m.group(2))}
            if m.group(3):
                counts["skipped"] = int(m.group(3))
            continue
        if (m := _PYTEST_LINE.match(line)) and _PYTEST_ITEM.search(m.group("body")):
            found = True
            counts = {}
            for n, k in _PYTEST_ITEM.findall(m.group("body")):
                if k.startswith("warning"):
                    continue
                counts["error" if k.startswith("error") else k] = int(n)
            continue
        if m := _GO.match(line):
            go_seen = True
            tag = m.group(1).replace(" ", "")
            key = {"---FAIL": "failed", "---PASS": "passed", "---SKIP": "skipped"}.get(tag)
            if key:
                counts[key] = counts.get(key, 0) + 1
    if found or (go_seen and counts):
        return counts
    return None


# ---------------------------------------------------------------------------------------------
# Fix-until-green


def stuck(history: Sequence[frozenset[object]], *, repeats: int = 3) -> bool:
    """True when the last `repeats` runs failed with exactly the same set of failures.

    `history` is oldest first; an empty set means green and never counts as stuck.
    """
    if repeats < 2 or len(history) < repeats:
        return False
    last = history[-repeats:]
    return bool(last[-1]) and all(s == last[-1] for s in last)
