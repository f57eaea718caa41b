"""Tests for app.tools.testrun: incremental decoding, counting, summaries, runner lines, stuck detection."""

from __future__ import annotations

import json

import pytest

from app.tools.testrun import EventDecoder, TestRun, parse_summary_line, stuck


def line(**ev: object) -> bytes:
    return (json.dumps(ev) + "\n").encode()


def test_decoder_split_and_junk() -> None:
    """Events split across chunks decode once; junk lines are counted, not raised."""
    data = (
        line(kind="started", nodeid="a") + b"not json\n" + line(kind="finished", nodeid="a") + b'{"kind": "x"'
    )
    dec = EventDecoder()
    got = []
    for i in range(len(data)):
        got += dec.feed(data[i : i + 1])
    assert [e["kind"] for e in got] == ["started", "finished"]
    assert dec.bad_lines == 1
    assert dec.close() == []  # the unterminated tail is not valid JSON
    assert dec.bad_lines == 2


def _feed(run: TestRun, *events: dict[str, object]) -> None:
    for ev in events:
        run.apply(ev)


def test_counts_follow_pytest_categories() -> None:
    """A passing test with a teardown error counts as 1 passed and 1 error, as pytest does."""
    run = TestRun()
    _feed(
        run,
        {"kind": "run_started"},
        {"kind": "collected", "count": 2, "nodeids": ["t::a", "t::b"]},
        {"kind": "phase", "nodeid": "t::a", "when": "setup", "category": ""},
        {"kind": "phase", "nodeid": "t::a", "when": "call", "category": "passed", "duration": 0.5},
        {"kind": "phase", "nodeid": "t::a", "when": "teardown", "category": "error", "text": "boom"},
        {"kind": "phase", "nodeid": "t::b", "when": "call", "category": "failed", "text": "assert 1 == 2"},
        {"kind": "run_finished", "exitstatus": 1, "duration": 1.25},
    )
    assert run.counts_line() == "1 failed, 1 error, 1 passed"
    assert run.cases["t::a"].outcome == "error" and run.cases["t::a"].text == "boom"
    assert not run.ok
    summary = run.summary_for_model()
    assert summary.startswith("FAILED: 1 failed, 1 error, 1 passed in 1.25s")
    assert "assert 1 == 2" in summary


def test_summary_caps_failures_and_text() -> None:
    """Only the first failures are shown, each traceback as its tail."""
    run = TestRun()
    for i in range(12):
        run.apply(
            {
                "kind": "phase",
                "nodeid": f"t::{i}",
                "when": "call",
                "category": "failed",
                "text": "x" * 5000 + f"END{i}",
            }
        )
    run.apply({"kind": "run_finished", "exitstatus": 1})
    text = run.summary_for_model(max_failures=3, max_text=100)
    assert "END0" in text and "END2" in text and "END3" not in text.split("more failing")[0]
    assert "9 more failing" in text
    assert len(text) < 2000


def test_status_words() -> None:
    """Timeout, crash and no-tests runs say so."""
    run = TestRun(timed_out=True)
    run.apply({"kind": "phase", "nodeid": "t::a", "when": "call", "category": "passed"})
    assert run.summary_for_model().startswith("TIMED OUT (partial results): 1 passed")
    crashed = TestRun(exit_status=-11)
    assert crashed.summary_for_model().startswith("CRASHED")
    empty = TestRun(finished=True, exit_status=5)
    assert empty.summary_for_model().startswith("NO TESTS: no tests ran")
    green = TestRun(finished=True, exit_status=0)
    green.apply({"kind": "phase", "nodeid": "t::a", "when": "call", "category": "passed"})
    assert green.ok and green.summary_for_model().startswith("PASSED: 1 passed")


@pytest.mark.parametrize(
    ("lines", "want"),
    [
        (
            ["==== 3 failed, 10 passed, 1 skipped, 2 warnings in 0.5s ===="],
            {"failed": 3, "passed": 10, "skipped": 1},
        ),
        (["== 1 passed, 1 error in 0.01s =="], {"passed": 1, "error": 1}),
        (
            [
                "test result: ok. 4 passed; 0 failed; 1 ignored; 0 measured",
                "test result: FAILED. 2 passed; 1 failed; 0 ignored; 0 measured",
            ],
            {"passed": 6, "failed": 1, "skipped": 1},
        ),
        (["Tests:       1 failed, 2 skipped, 5 passed, 8 total"], {"failed": 1, "skipped": 2, "passed": 5}),
        (["# pass 7", "# fail 1", "# skipped 0"], {"passed": 7, "failed": 1, "skipped": 0}),
        (["  12 passing (30ms)", "  2 failing"], {"passed": 12, "failed": 2}),
        (
            ["--- FAIL: TestX (0.00s)", "--- PASS: TestY (0.00s)", "FAIL\tpkg\t0.1s"],
            {"failed": 1, "passed": 1},
        ),
        (["result: 4 passed, 0 failed, 2 skipped"], {"passed": 4, "failed": 0, "skipped": 2}),
        (["nothing to see"], None),
    ],
)
def test_parse_summary_line(lines: list[str], want: dict[str, int] | None) -> None:
    """Known runner summaries are parsed; unknown output gives None."""
    assert parse_summary_line(lines) == want


def test_stuck() -> None:
    """Stuck only when the same non-empty failure set repeats `repeats` times in a row."""
    a, b = frozenset({"t::a"}), frozenset({"t::b"})
    assert not stuck([a, a], repeats=3)
    assert stuck([b, a, a, a], repeats=3)
    assert not stuck([a, b, a], repeats=3)
    assert not stuck([frozenset(), frozenset(), frozenset()], repeats=3)
