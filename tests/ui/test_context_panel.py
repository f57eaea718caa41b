"""Context panel: a model/view table fed the rows that changed, sorted by path, filterable."""

from __future__ import annotations

import dataclasses

from pytestqt.qtbot import QtBot

from app.services.api import FileBadge, FileChanges
from app.ui.context_panel import SMALL_CHANGE, STATE_FILTERS, ContextPanel


def change(
    *rows: FileBadge,
    added: tuple[str, ...] = (),
    removed: tuple[str, ...] = (),
    counts: dict[str, int] | None = None,
) -> FileChanges:
    return FileChanges({b.path: b for b in rows}, sorted(added), sorted(removed), counts or {})


def test_rows_follow_the_changes(qtbot: QtBot) -> None:
    """Adds, changes and removes rows one by one; rows stay sorted by path; the summary uses the totals."""
    panel = ContextPanel()
    qtbot.addWidget(panel)
    panel.update_files(
        FileChanges.listing(
            [
                FileBadge("src/b.py", "in_view"),
                FileBadge("src/a.py", "in_view"),
                FileBadge(".env", "excluded", "secret"),
            ]
        )
    )
    assert panel.visible_paths() == [".env", "src/a.py", "src/b.py"]
    assert panel.summary.text() == "3 files  ·  2 in view  ·  1 excluded"
    resets: list[int] = []
    changed: list[int] = []
    panel.model.modelReset.connect(lambda: resets.append(1))
    panel.model.dataChanged.connect(lambda a, b: changed.append(a.row()))
    panel.update_files(
        change(
            FileBadge("src/b.py", "pending"),
            FileBadge("logo.png", "summarised", "binary"),
            added=("logo.png",),
            removed=(".env",),
            counts={"in_view": 1, "pending": 1, "summarised": 1},
        )
    )
    assert not resets  # a small change moves no other row
    assert panel.visible_paths() == ["logo.png", "src/a.py", "src/b.py"]
    assert changed == [2]  # only src/b.py's row repaints
    m = panel.model
    assert m.index(2, 1).data() == "pending" and m.index(2, 2).data() == "changed on disk"
    assert m.index(0, 2).data() == "binary"
    assert panel.badge(".env") is None and panel.badge("src/b.py") == FileBadge("src/b.py", "pending")
    assert panel.counts() == {"in_view": 1, "pending": 1, "excluded": 0, "summarised": 1}
    assert "1 pending" in panel.summary.text()


def test_a_big_batch_is_one_reset_or_one_repaint(qtbot: QtBot) -> None:
    """Thousands of rows arrive as one reset (the view keeps its place); a state flip of every row
    is one dataChanged signal, not one per row."""
    panel = ContextPanel()
    qtbot.addWidget(panel)
    panel.resize(400, 300)
    panel.show()
    names = [f"pkg/m{i:05}.py" for i in range(5000)]
    panel.update_files(FileChanges.listing([FileBadge(p, "pending") for p in names[::2]]))
    panel.tree.scrollTo(
        panel.model.index(panel.model.row_of("pkg/m02000.py") or 0, 0), panel.tree.ScrollHint.PositionAtTop
    )
    more = names[1::2]
    panel.update_files(
        change(*(FileBadge(p, "pending") for p in more), added=tuple(more), counts={"pending": 5000})
    )
    assert panel.visible_paths() == names
    assert panel._top_path() == "pkg/m02000.py"  # the view did not jump to the top
    signals: list[int] = []
    panel.model.dataChanged.connect(lambda a, b: signals.append(b.row() - a.row() + 1))
    panel.update_files(change(*(FileBadge(p, "in_view") for p in names), counts={"in_view": 5000}))
    assert signals == [5000] and len(names) > SMALL_CHANGE
    assert panel.summary.text() == "5,000 files  ·  5,000 in view"


def test_filters_and_pins(qtbot: QtBot) -> None:
    """The text and state filters narrow the rows and follow later changes; pinning marks the row."""
    panel = ContextPanel()
    qtbot.addWidget(panel)
    panel.update_files(
        FileChanges.listing(
            [
                FileBadge("src/a.py", "in_view"),
                FileBadge("README.md", "in_view"),
                FileBadge("src/c.py", "pending"),
            ]
        )
    )
    panel.filter.setText("readme")
    assert panel.visible_paths() == ["README.md"]
    panel.filter.setText("")
    panel.state_filter.setCurrentIndex(panel.state_filter.findData("pending"))
    assert panel.visible_paths() == ["src/c.py"]
    panel.update_files(change(FileBadge("src/a.py", "pending"), FileBadge("src/c.py", "in_view")))
    assert panel.visible_paths() == ["src/a.py"]
    panel.update_files(change(FileBadge("src/new.py", "pending"), added=("src/new.py",)))
    assert panel.visible_paths() == ["src/a.py", "src/new.py"]
    panel.state_filter.setCurrentIndex(0)
    with qtbot.waitSignal(panel.pin_requested, timeout=1000) as sig:
        panel.toggle_pin("src/a.py")
    assert sig.args == ["src/a.py", True]
    row = panel.model.row_of("src/a.py")
    assert row is not None and str(panel.model.index(row, 0).data()).startswith("★")
    panel.toggle_pin("src/a.py")
    assert not str(panel.model.index(row, 0).data()).startswith("★")


def test_another_project_replaces_every_row(qtbot: QtBot) -> None:
    """A reset drops the old project's rows; indexing shows progress in the summary."""
    panel = ContextPanel()
    qtbot.addWidget(panel)
    panel.update_files(FileChanges.listing([FileBadge("old.py", "in_view")]))
    first = FileChanges.listing([FileBadge("new.py", "pending")])
    panel.update_files(FileChanges(first.rows, first.added, (), first.counts, reset=True, indexing=True))
    assert panel.visible_paths() == ["new.py"]
    assert panel.summary.text().startswith("Indexing… 1 files so far")


def test_a_batch_with_the_whole_order_is_swapped_in(qtbot: QtBot) -> None:
    """Many new rows with `order` (sorted by the services): the panel takes that order as it is."""
    panel = ContextPanel()
    qtbot.addWidget(panel)
    panel.update_files(FileChanges.listing([FileBadge("b.py", "pending")]))
    names = [f"m{i:04}.py" for i in range(200)]
    order = sorted([*names, "b.py"])
    panel.update_files(
        FileChanges({p: FileBadge(p, "pending") for p in names}, names, (), {"pending": 201}, order=order)
    )
    assert panel.visible_paths() == order and panel.summary.text().startswith("201 files")


def test_the_first_context_budget_and_choices_are_shown(qtbot: QtBot) -> None:
    """The header says the budget and what it bought; in-view rows say their place in the ranking."""
    from app.services.api import SnapshotSummary

    panel = ContextPanel()
    qtbot.addWidget(panel)
    panel.resize(400, 600)
    assert panel.budget_line.isHidden()
    rows = [FileBadge(p, "in_view") for p in ("README.md", "app/main.py", "app/x.py", "b.py", "c.py")]
    rows.append(FileBadge("tests/test_x.py", "summarised", "did not fit"))
    snap = SnapshotSummary(32_000, 30_400, ("README.md", "app/main.py", "app/x.py", "b.py", "c.py"), 120)
    panel.update_files(dataclasses.replace(FileChanges.listing(rows), snapshot=snap))
    assert not panel.budget_line.isHidden()
    assert panel.budget_line.text().replace("\u2060", "") == (
        "32k budget, 30k used: 5 files in full, 120 listed; README.md, app/main.py, app/x.py, b.py, …"
    )
    m = panel.model
    why = {m.path_at(r): m.index(r, 2).data() for r in range(m.rowCount())}
    assert why["README.md"] == "first context #1" and why["app/main.py"] == "first context #2"
    assert why["tests/test_x.py"] == "did not fit"
    width = panel.sizeHint().width()
    long = SnapshotSummary(32_000, 1, tuple(f"very/long/path/number/{i}/" + "x" * 80 for i in range(4)), 1)
    panel.set_first_context(long)
    assert panel.sizeHint().width() == width  # a long header wraps: the panel never widens


def test_a_new_base_badge_changes_every_other_row(qtbot: QtBot) -> None:
    """Rows added without a badge of their own show the base badge; a rebase (a snapshot acknowledged,
    a chain lost) changes every row not listed, in the table, the state filter and the summary, and
    moves no row when no filter is set."""
    panel = ContextPanel()
    qtbot.addWidget(panel)
    names = [f"m{i:03}.py" for i in range(100)]
    panel.update_files(
        FileChanges(
            {".env": FileBadge(".env", "excluded", "secret")},
            sorted([*names, ".env"]),
            (),
            {"pending": 100, "excluded": 1},
            indexing=True,
        )
    )
    m = panel.model
    assert panel.badge("m007.py") == FileBadge("m007.py", "pending") and panel.badge("nope.py") is None
    assert m.index(8, 1).data() == "pending" and m.index(8, 2).data() == "changed on disk"
    resets: list[int] = []
    changed: list[tuple[int, int]] = []
    m.modelReset.connect(lambda: resets.append(1))
    m.dataChanged.connect(lambda a, b: changed.append((a.row(), b.row())))
    ack = FileChanges(
        {
            ".env": FileBadge(".env", "excluded", "secret"),
            "m001.py": FileBadge("m001.py", "in_view"),
            "m002.py": FileBadge("m002.py", "summarised", "binary"),
        },
        counts={"excluded": 1, "in_view": 1, "summarised": 99},
        base=("summarised", "listed only"),
        rebased=True,
    )
    panel.update_files(ack)
    assert not resets and changed == [(0, 100)]  # one repaint of every row, none moved
    assert panel.badge("m007.py") == FileBadge("m007.py", "summarised", "listed only")
    assert panel.badge("m001.py") == FileBadge("m001.py", "in_view")
    assert m.index(8, 1).data() == "summarised" and m.index(8, 2).data() == "listed only"
    assert panel.summary.text() == "101 files  ·  1 in view  ·  99 summarised  ·  1 excluded"
    panel.state_filter.setCurrentIndex([s for _, s in STATE_FILTERS].index("in_view"))
    assert panel.visible_paths() == ["m001.py"]
    # the chain is lost: every file pending again, under the filter "pending"
    panel.state_filter.setCurrentIndex([s for _, s in STATE_FILTERS].index("pending"))
    assert panel.visible_paths() == []
    panel.update_files(
        FileChanges(
            {".env": FileBadge(".env", "excluded", "secret")},
            counts={"excluded": 1, "pending": 100},
            base=("pending", ""),
            rebased=True,
        )
    )
    assert panel.visible_paths() == names
    assert panel.badge("m001.py") == FileBadge("m001.py", "pending")
