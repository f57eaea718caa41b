"""Closing the window to the process gone (target < 2 s), beside a bare PySide6 window in the same run.

Ours is the real app with its services up (a `slipstream serve` child, the watcher, the session),
closed through the window (SLIPSTREAM_LIFECYCLE_PROBE=close); the bare one is a QMainWindow closed the
same way. Each figure is the wall time from the process's "ready" line to its exit, median of runs
alternated so machine noise hits both. Run alone: `.venv/bin/python -m tests.bench.bench_quit`.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.ui.test_quit import ROOT, _env, _read_until, run_app

BARE = r"""
import sys
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMainWindow
app = QApplication(sys.argv[:1])
w = QMainWindow(); w.resize(1280, 800); w.show(); app.processEvents()
print("lifecycle: ready", flush=True)
QTimer.singleShot(0, w.close)
sys.exit(app.exec())
"""


def _bare(profile: Path) -> float:
    proc = subprocess.Popen(
        [sys.executable, "-c", BARE],
        cwd=ROOT,
        env=_env(profile),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _read_until(proc, b"lifecycle: ready", 60)
    t0 = time.monotonic()
    proc.communicate(timeout=60)
    return time.monotonic() - t0


def run(runs: int = 7) -> list[dict[str, Any]]:
    ours, bare = [], []
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "project"
        project.mkdir()
        (project / "main.py").write_text("print('hi')\n")
        for i in range(runs):
            got = run_app(project, Path(tmp) / f"p{i}", route="close")
            if got.rc != 0:
                raise RuntimeError(f"slipstream exited {got.rc}: {got.stderr[-500:]}")
            ours.append(got.quit_s)
            bare.append(_bare(Path(tmp) / f"b{i}"))
    o, b = statistics.median(ours), statistics.median(bare)
    print(
        f"window close -> process gone: slipstream {o:.3f} s (median of {runs}, max {max(ours):.3f}; "
        f"target < 2 s), bare PySide6 window {b:.3f} s"
    )
    return [
        {
            "name": "quit: window closed -> process gone (target <2)",
            "value": o,
            "unit": "s",
            "baseline": b,
            "ratio": o / b if b else None,
        }
    ]


if __name__ == "__main__":
    run()
