"""TestRun as the Tests panel's live model: a new run starts over, changes are taken once, one wake."""

from __future__ import annotations

from app.tools.testrun import TestRun


def test_a_second_run_starts_the_model_over() -> None:
    run = TestRun()
    run.apply({"kind": "run_started"})
    run.apply({"kind": "phase", "nodeid": "t.py::a", "when": "call", "category": "failed", "text": "boom"})
    run.apply({"kind": "run_finished", "exitstatus": 1})
    assert run.failures() and not run.running
    run.apply({"kind": "run_started"})
    assert run.cases == {} and run.counts["failed"] == 0 and run.running and run.generation == 1


def test_changes_are_taken_once_and_wake_once() -> None:
    run = TestRun()
    wakes: list[int] = []
    run.set_waker(lambda: wakes.append(1))
    run.apply({"kind": "started", "nodeid": "t.py::a"})
    run.apply({"kind": "phase", "nodeid": "t.py::a", "when": "call", "category": "passed"})
    run.apply({"kind": "started", "nodeid": "t.py::b"})
    assert wakes == [1]
    assert run.take_changed() == ["t.py::a", "t.py::b"] and run.take_changed() == []
    run.apply({"kind": "finished", "nodeid": "t.py::b"})
    assert wakes == [1, 1]
