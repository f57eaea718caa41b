"""Tests panel: it paints the services' TestRun model (app.tools.testrun), once a frame."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QTreeWidgetItem

from app.tools.testrun import TestRun
from app.ui.tests_panel import TestsPanel, counts_text

TRACE = "def test_b():\n>       assert 1 == 2\nE       assert 1 == 2\n\ntests/test_x.py:5: AssertionError"


def _phase(nodeid: str, category: str, duration: float, text: str = "", when: str = "call") -> dict[str, Any]:
    return {
        "kind": "phase",
        "nodeid": nodeid,
        "when": when,
        "category": category,
        "duration": duration,
        "text": text,
    }


def _stream() -> list[dict[str, Any]]:
    """Plugin events as `app/adapters/pytest_plugin.py` writes them."""
    return [
        {"kind": "run_started"},
        {
            "kind": "collected",
            "count": 4,
            "nodeids": [
                "tests/test_x.py::test_a",
                "tests/test_x.py::test_b",
                "tests/test_y.py::test_c",
                "tests/test_y.py::test_d",
            ],
        },
        {"kind": "started", "nodeid": "tests/test_x.py::test_a"},
        _phase("tests/test_x.py::test_a", "passed", 0.012),
        {"kind": "started", "nodeid": "tests/test_x.py::test_b"},
        _phase("tests/test_x.py::test_b", "failed", 0.5, TRACE),
        _phase("tests/test_y.py::test_c", "skipped", 0.001, "no network", when="setup"),
        {"kind": "started", "nodeid": "tests/test_y.py::test_d"},
    ]


def _panel(qtbot, run: TestRun) -> TestsPanel:  # type: ignore[no-untyped-def]
    panel = TestsPanel(run)
    qtbot.addWidget(panel)
    return panel


def _row(panel: TestsPanel, nodeid: str) -> QTreeWidgetItem:
    item = panel.row(nodeid)
    assert item is not None, nodeid
    return item


def _file_row(panel: TestsPanel, file: str) -> QTreeWidgetItem:
    item = panel.file_row(file)
    assert item is not None, file
    return item


def test_counts_and_tree(qtbot) -> None:  # type: ignore[no-untyped-def]
    """Rows grouped by file with outcome and time; header counts while running and after."""
    run = TestRun()
    panel = _panel(qtbot, run)
    for ev in _stream():
        run.apply(ev)
    panel.refresh()
    assert panel.header.text() == "3/4 done, 1 failed  ·  1 passed  ·  1 skipped  ·  0.51 s"
    assert not panel.run_button.isEnabled()
    assert _row(panel, "tests/test_x.py::test_a").text(1) == "✓ passed"
    assert _row(panel, "tests/test_x.py::test_a").text(2) == "12 ms"
    assert _row(panel, "tests/test_x.py::test_b").text(1) == "✗ failed"
    assert _row(panel, "tests/test_y.py::test_d").text(1) == "… running"
    assert _file_row(panel, "tests/test_x.py").text(1) == "1/2 passed, 1 failed"
    assert _file_row(panel, "tests/test_x.py").childCount() == 2
    run.apply({"kind": "run_finished", "exitstatus": 1, "duration": 0.6})
    panel.refresh()
    # the test still running when the run ended is an error, and the first failure is shown
    assert _row(panel, "tests/test_y.py::test_d").text(1) == "! error"
    assert panel.run_button.isEnabled()
    assert panel.tree.currentItem() is panel.row("tests/test_x.py::test_b")
    assert "E       assert 1 == 2" in panel.detail.toPlainText()


def test_rerun_failed_button(qtbot) -> None:  # type: ignore[no-untyped-def]
    """Enabled only once a run has finished with failures; a click asks for the rerun."""
    run = TestRun()
    panel = _panel(qtbot, run)
    assert not panel.rerun_button.isEnabled()
    for ev in _stream():
        run.apply(ev)
    panel.refresh()
    assert not panel.rerun_button.isEnabled()  # still running
    run.apply({"kind": "run_finished", "exitstatus": 1, "duration": 0.6})
    panel.refresh()
    assert panel.rerun_button.isEnabled()
    with qtbot.waitSignal(panel.rerun_failed_requested, timeout=1000):
        qtbot.mouseClick(panel.rerun_button, Qt.MouseButton.LeftButton)
    run.apply({"kind": "run_started"})
    panel.refresh()
    assert not panel.rerun_button.isEnabled()  # running again
    run.apply(_phase("tests/test_x.py::test_b", "passed", 0.1))
    run.apply({"kind": "run_finished", "exitstatus": 0, "duration": 0.1})
    panel.refresh()
    assert not panel.rerun_button.isEnabled()  # green: nothing to rerun


def test_the_panel_wakes_once_a_frame(qtbot) -> None:  # type: ignore[no-untyped-def]
    """A burst of events wakes the panel once; its frame shows them all."""
    run = TestRun()
    panel = _panel(qtbot, run)
    woke: list[int] = []
    panel.dirty.connect(lambda: woke.append(1))
    for ev in _stream():
        run.apply(ev)
    assert len(woke) == 1
    qtbot.waitUntil(lambda: panel.row("tests/test_y.py::test_d") is not None, timeout=3000)
    assert _row(panel, "tests/test_x.py::test_b").text(1) == "✗ failed" and len(woke) == 1


def test_selecting_a_test_shows_its_text_and_a_new_run_starts_over(qtbot) -> None:  # type: ignore[no-untyped-def]
    """Selecting a skipped test shows its reason; a new run clears the tree."""
    run = TestRun()
    panel = _panel(qtbot, run)
    for ev in _stream():
        run.apply(ev)
    panel.refresh()
    panel.tree.setCurrentItem(_row(panel, "tests/test_y.py::test_c"))
    assert panel.detail.toPlainText() == "no network"
    run.apply({"kind": "run_started"})
    panel.refresh()
    assert panel.tree.topLevelItemCount() == 0 and panel.row("tests/test_x.py::test_a") is None


def test_another_model_is_painted(qtbot) -> None:  # type: ignore[no-untyped-def]
    """set_model (another project's services): the panel shows that run; the old one no longer wakes it."""
    old, new = TestRun(), TestRun()
    panel = _panel(qtbot, old)
    for ev in _stream():
        new.apply(ev)
    panel.set_model(new)
    assert panel.row("tests/test_x.py::test_b") is not None
    old.apply({"kind": "run_started"})
    assert not panel.pending
    assert counts_text(TestRun()) == "No test run yet"


def test_progress_is_honest_from_collection_to_the_last_test() -> None:
    """Issue 15: "running 0/0" before collection, then "running 638/639" from the first test on."""
    run = TestRun()
    run.apply({"kind": "run_started"})
    assert counts_text(run) == "collecting…"
    ids = [f"tests/test_a.py::test_{i}" for i in range(639)]
    run.apply({"kind": "collected", "count": 639})  # a runner that sends the total only
    assert counts_text(run).startswith("0/639 done")
    run.apply({"kind": "started", "nodeid": ids[0]})
    assert counts_text(run).startswith("0/639 done")
    for i, nid in enumerate(ids[:12]):
        run.apply({"kind": "started", "nodeid": nid})
        run.apply({"kind": "finished", "nodeid": nid, "outcome": "failed" if i < 2 else "passed"})
    assert counts_text(run).startswith("12/639 done, 2 failed  ·  10 passed")
