"""Tests panel: a stream of TestEvents builds the tree, the counts and the tracebacks."""

from __future__ import annotations

from app.services.api import TestEvent
from app.ui.tests_panel import TestRun, TestsPanel, counts_text

TRACE = "def test_b():\n>       assert 1 == 2\nE       assert 1 == 2\n\ntests/test_x.py:5: AssertionError"


def _stream() -> list[TestEvent]:
    return [
        TestEvent("run_started"),
        TestEvent("collected", data={"count": 4}),
        TestEvent("started", "tests/test_x.py::test_a"),
        TestEvent("passed", "tests/test_x.py::test_a", 0.012),
        TestEvent("started", "tests/test_x.py::test_b"),
        TestEvent("failed", "tests/test_x.py::test_b", 0.5, TRACE),
        TestEvent("output", text="some captured line"),
        TestEvent("skipped", "tests/test_y.py::test_c", 0.001, "no network"),
        TestEvent("started", "tests/test_y.py::test_d"),
    ]


def test_counts_and_tree(qtbot) -> None:  # type: ignore[no-untyped-def]
    """Rows grouped by file with outcome and time; header counts while running and after."""
    panel = TestsPanel()
    qtbot.addWidget(panel)
    for ev in _stream():
        panel.apply(ev)
    assert panel.header.text() == "running 3/4  ·  1 passed  ·  1 failed  ·  1 skipped  ·  0.51 s"
    assert not panel.run_button.isEnabled()
    assert panel.row("tests/test_x.py::test_a").text(1) == "✓ passed"
    assert panel.row("tests/test_x.py::test_a").text(2) == "12 ms"
    assert panel.row("tests/test_x.py::test_b").text(1) == "✗ failed"
    assert panel.row("tests/test_y.py::test_d").text(1) == "… running"
    assert panel.file_row("tests/test_x.py").text(1) == "1/2 passed, 1 failed"
    assert panel.file_row("tests/test_x.py").childCount() == 2
    panel.apply(TestEvent("run_finished", text="1 failed, 1 passed, 1 skipped"))
    # the test still running when the run ended is an error, and the first failure is shown
    assert panel.row("tests/test_y.py::test_d").text(1) == "! error"
    assert panel.run_button.isEnabled()
    assert panel.tree.currentItem() is panel.row("tests/test_x.py::test_b")
    assert "E       assert 1 == 2" in panel.detail.toPlainText()


def test_selecting_a_test_shows_its_text(qtbot) -> None:  # type: ignore[no-untyped-def]
    """Selecting a skipped test shows its reason; a new run clears the tree."""
    panel = TestsPanel()
    qtbot.addWidget(panel)
    for ev in _stream():
        panel.apply(ev)
    panel.tree.setCurrentItem(panel.row("tests/test_y.py::test_c"))
    assert panel.detail.toPlainText() == "no network"
    panel.apply(TestEvent("run_started"))
    assert panel.tree.topLevelItemCount() == 0 and panel.row("tests/test_x.py::test_a") is None


def test_run_model_rules() -> None:
    """A teardown error after a pass wins; a pass never hides an earlier failure; durations add up."""
    run = TestRun()
    run.apply(TestEvent("run_started"))
    run.apply(TestEvent("passed", "t.py::a", 0.1))
    run.apply(TestEvent("error", "t.py::a", 0.2, "teardown boom"))
    run.apply(TestEvent("failed", "t.py::b", 0.1))
    run.apply(TestEvent("passed", "t.py::b", 0.1))
    assert run.cases["t.py::a"].outcome == "error" and abs(run.cases["t.py::a"].duration - 0.3) < 1e-9
    assert run.cases["t.py::b"].outcome == "failed"
    assert counts_text(TestRun()) == "No test run yet"
