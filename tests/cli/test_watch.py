"""`slipstream watch`: each JSON line names the files and how they changed; a vanished folder ends it."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from app.cli.watch import push_line
from app.context.ledger import PathChange
from app.services.workspace import Push

ROOT = Path(__file__).resolve().parents[2]


def test_push_line_names_files_and_change_kinds() -> None:
    """An update lists each file with its change; a rename says where from; a snapshot lists its files."""
    update = Push(
        "update",
        3,
        900,
        "resp_1",
        1.234,
        True,
        paths=("a.py", "c.py", "d.py"),
        changes=(
            PathChange("added", "a.py"),
            PathChange("renamed", "c.py", "b.py"),
            PathChange("deleted", "d.py"),
        ),
    )
    assert push_line(update)["files"] == [
        {"path": "a.py", "change": "added"},
        {"path": "c.py", "change": "renamed", "from": "b.py"},
        {"path": "d.py", "change": "deleted"},
    ]
    snap = push_line(Push("snapshot", 2, 10, None, 0.0, False, "down", paths=("x", "y")))
    assert snap["files"] == [{"path": "x", "change": "snapshot"}, {"path": "y", "change": "snapshot"}]
    assert snap["ok"] is False and snap["error"] == "down" and snap["count"] == 2


class Watch:
    """`slipstream watch` as a child; `next_push()` waits for its next JSON line."""

    def __init__(self, folder: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app", "watch", str(folder), "--quiet-ms", "30"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._buf = b""

    def next_push(self, timeout: float = 30) -> dict[str, Any]:
        assert self.proc.stdout is not None
        end = time.monotonic() + timeout
        while b"\n" not in self._buf:
            ready, _, _ = select.select([self.proc.stdout], [], [], max(end - time.monotonic(), 0))
            assert ready, f"no JSON line within {timeout:.0f} s"
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            assert chunk, "watch ended"
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return dict(json.loads(line))


@pytest.fixture
def watch(tmp_path: Path) -> Iterator[tuple[Watch, Path]]:
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "a.txt").write_text("one\n", encoding="utf-8")
    w = Watch(folder)
    try:
        yield w, folder
    finally:
        if w.proc.poll() is None:
            w.proc.terminate()
        w.proc.communicate(timeout=30)


def test_each_line_names_the_change(watch: tuple[Watch, Path]) -> None:
    """added, changed, renamed (from), deleted: one line per settled change, in order."""
    w, folder = watch
    assert w.next_push()["files"] == [{"path": "a.txt", "change": "snapshot"}]
    (folder / "b.txt").write_text("two\n", encoding="utf-8")
    assert w.next_push()["files"] == [{"path": "b.txt", "change": "added"}]
    (folder / "b.txt").write_text("two\nmore\n", encoding="utf-8")
    assert w.next_push()["files"] == [{"path": "b.txt", "change": "changed"}]
    (folder / "a.txt").rename(folder / "c.txt")
    assert w.next_push()["files"] == [{"path": "c.txt", "change": "renamed", "from": "a.txt"}]
    (folder / "b.txt").unlink()
    line = w.next_push()
    assert line["files"] == [{"path": "b.txt", "change": "deleted"}] and line["ok"] is True


def test_a_moved_folder_ends_watch_with_3_and_no_child(watch: tuple[Watch, Path], tmp_path: Path) -> None:
    """The folder moved away while watched: one clear line, status 3, the server child gone too."""
    w, folder = watch
    w.next_push()
    children = psutil.Process(w.proc.pid).children(recursive=True)
    assert children, "watch had no server child: nothing to prove"
    folder.rename(tmp_path / "moved")
    _, err = w.proc.communicate(timeout=30)
    assert w.proc.returncode == 3, err
    text = err.decode(errors="replace")
    assert "was moved or deleted; stopped watching" in text and "Traceback" not in text
    gone = psutil.wait_procs(children, timeout=5)[1]
    assert not gone


def test_a_move_before_the_check_starts_is_still_noticed(tmp_path: Path) -> None:
    """The folder's identity is taken when watch starts, so a move that lands before the periodic
    check begins (the race a loaded machine hit) still ends the wait."""
    import asyncio

    from app.cli.watch import _identity, _root_lost

    folder = tmp_path / "p"
    folder.mkdir()
    first = _identity(folder)
    folder.rename(tmp_path / "moved")
    (tmp_path / "p").mkdir()  # and another folder took its name: not the one we watched

    async def main() -> bool:
        await asyncio.wait_for(_root_lost(folder, first, asyncio.Event(), interval=0.01), 10)
        return True  # reached only when the wait ended (a timeout raises)

    assert asyncio.run(main())


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGTERM, 0), (signal.SIGINT, 0)])
def test_a_signal_ends_watch_with_its_status_and_no_child(
    watch: tuple[Watch, Path], sig: signal.Signals, status: int
) -> None:
    """SIGTERM / SIGINT (Ctrl-C) is how watch is stopped: status 0 as documented, no traceback, the
    server child gone."""
    w, _ = watch
    w.next_push()
    children = psutil.Process(w.proc.pid).children(recursive=True)
    assert children, "watch had no server child: nothing to prove"
    w.proc.send_signal(sig)
    _, err = w.proc.communicate(timeout=30)
    assert w.proc.returncode == status, err
    assert b"Traceback" not in err
    assert not psutil.wait_procs(children, timeout=5)[1]
