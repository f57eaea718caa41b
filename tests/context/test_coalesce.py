"""Coalescer with a fake clock: quiet period, max window, dedupe, renames, editors' saves, storms."""

from __future__ import annotations

import pytest

from app.context.coalesce import Change, Coalescer


def test_quiet_period_settles_batch() -> None:
    """Nothing before the quiet period has passed since the last event; then one batch."""
    c = Coalescer(quiet=0.05, max_window=1.0)
    c.add(Change("modified", "a.py"), 10.0)
    c.add(Change("modified", "a.py"), 10.03)
    assert c.next_deadline() == pytest.approx(10.08)
    assert c.poll(10.07) is None
    b = c.poll(10.08)
    assert b is not None and b.paths == {"a.py"} and b.events == 2
    assert c.poll(11.0) is None and c.next_deadline() is None


def test_max_window_caps_a_continuous_stream() -> None:
    """Events every 10 ms never go quiet, yet a batch comes out at the max window."""
    c = Coalescer(quiet=0.05, max_window=1.0)
    batches = []
    for i in range(250):
        t = i / 100
        c.add(Change("modified", f"f{i}.py"), t)
        if (b := c.poll(t)) is not None:
            batches.append((t, b))
    assert [round(at, 2) for at, _ in batches] == [1.0, 2.01]
    assert len(batches[0][1].paths) == 101  # f0..f100: the event at 1.0 lands before the poll


def test_set_based_dedupe() -> None:
    """A path touched many times is named once."""
    c = Coalescer()
    for i in range(50):
        c.add(Change("modified", "x.py"), i * 0.001)
    b = c.flush(1.0)
    assert b is not None and b.paths == {"x.py"} and b.events == 50


def test_rename_pairs_and_chains() -> None:
    """a -> b -> c is one move (a, c); the source is re-read too (it will be missing)."""
    c = Coalescer()
    c.add(Change("moved", "a.py", "b.py"), 0.0)
    c.add(Change("moved", "b.py", "c.py"), 0.01)
    b = c.flush(0.1)
    assert b is not None and b.moves == (("a.py", "c.py"),)
    assert {"a.py", "c.py"} <= b.paths


def test_rename_back_is_not_a_move() -> None:
    """a -> b -> a leaves no move, just a to look at."""
    c = Coalescer()
    c.add(Change("moved", "a.py", "b.py"), 0.0)
    c.add(Change("moved", "b.py", "a.py"), 0.01)
    b = c.flush(0.1)
    assert b is not None and b.moves == () and "a.py" in b.paths


def test_save_by_rename_via_temp_file() -> None:
    """Write a temp file and move it over the target: only the target, no move, no temp file."""
    c = Coalescer()
    c.add(Change("created", "src/.main.py.swx"), 0.0)
    c.add(Change("modified", "src/.main.py.swx"), 0.001)
    c.add(Change("moved", "src/.main.py.swx", "src/main.py"), 0.002)
    b = c.flush(0.1)
    assert b is not None and b.paths == {"src/main.py"} and b.moves == ()


def test_atomic_replace_delete_then_create() -> None:
    """Delete + create of one path is one path to re-read (the ledger sees a modification)."""
    c = Coalescer()
    c.add(Change("deleted", "a.txt"), 0.0)
    c.add(Change("created", "a.txt"), 0.001)
    b = c.flush(0.1)
    assert b is not None and b.paths == {"a.txt"} and b.moves == ()


def test_created_then_deleted_vanishes() -> None:
    """A file that lived and died inside one batch is not mentioned."""
    c = Coalescer()
    c.add(Change("created", "tmp.123"), 0.0)
    c.add(Change("deleted", "tmp.123"), 0.001)
    b = c.flush(0.1)
    assert b is not None and b.paths == frozenset()


def test_directory_events() -> None:
    """Directory creations/moves ask for a rescan; directory 'modified' noise is ignored."""
    c = Coalescer()
    c.add(Change("modified", "pkg", is_dir=True), 0.0)
    assert c.next_deadline() is None
    c.add(Change("moved", "old", "new", is_dir=True), 0.0)
    b = c.flush(0.1)
    assert b is not None and b.dirs == {"old", "new"}


def test_storm_of_a_thousand_files_is_bounded() -> None:
    """A checkout touching 1,000 files within 300 ms yields one batch."""
    c = Coalescer(quiet=0.05, max_window=1.0)
    out = []
    for i in range(1000):
        t = i * 0.0003
        c.add(Change("modified", f"src/m{i}.py"), t)
        if (b := c.poll(t)) is not None:
            out.append(b)
    while (d := c.next_deadline()) is not None:
        if (b := c.poll(d)) is not None:
            out.append(b)
    assert len(out) == 1 and len(out[0].paths) == 1000


def test_bad_arguments() -> None:
    """Nonsense settings and a move without a target are clear errors."""
    with pytest.raises(ValueError):
        Coalescer(quiet=0.5, max_window=0.1)
    with pytest.raises(ValueError):
        Change("moved", "a")
