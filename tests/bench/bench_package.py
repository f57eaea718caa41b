"""Packaging targets: bundle size <= 180 MB, .deb build <= 60 s, cold start to the window <= 1.5 s.

Measures the bundle `make bundle` left in dist/slipstream; without one every row is reported as
skipped (value None). `baseline` is the target, so `ratio` <= 1 means the target is met.

    make bundle && .venv/bin/python -m tests.bench bench_package
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "dist" / "slipstream"
EXE = BUNDLE / "slipstream"
TARGETS = {"bundle_size": 180.0, "deb_build": 60.0, "cold_start": 1.5}


def _row(name: str, value: float | None, unit: str, baseline: float | None) -> dict[str, Any]:
    ratio = value / baseline if value is not None and baseline else None
    return {"name": name, "value": value, "unit": unit, "baseline": baseline, "ratio": ratio}


def _load_build_deb() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "slipstream_packaging_build_deb", ROOT / "packaging" / "build_deb.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bundle_size_mb(bundle: Path = BUNDLE) -> float:
    return sum(p.lstat().st_size for p in bundle.rglob("*") if p.is_file()) / 1e6


def deb_build_s(bundle: Path = BUNDLE) -> float:
    """Wall time of build_deb.build() on the bundle, into a scratch folder (dist/ is left alone)."""
    build_deb = _load_build_deb()
    with tempfile.TemporaryDirectory(dir=ROOT / "build") as tmp:
        t0 = time.perf_counter()
        build_deb.build(bundle, Path(tmp) / "out", work=Path(tmp) / "work")
        return time.perf_counter() - t0


def _time_run(args: list[str], cwd: Path, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        args, cwd=cwd, env=env, check=True, timeout=120, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return time.perf_counter() - t0


class SmokeFailed(RuntimeError):
    """The bundle's `--smoke` exited non-zero: no start time to report."""


def start_times(runs: int = 3) -> tuple[float, float | None]:
    """(median `--version` wall time, median `--smoke` wall time or None until the smoke exists).

    `--smoke` opens the window, checks it and exits, so its wall time is an upper bound of
    start-to-window. The first of the runs is the cold one (nothing of the bundle in a warm process).
    """
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    with tempfile.TemporaryDirectory() as proj:
        project = Path(proj)
        (project / "calc.py").write_text("def add(a, b):\n    return a + b\n", encoding="utf-8")
        version = statistics.median(_time_run([str(EXE), "--version"], project, env) for _ in range(runs))
        if not (ROOT / "app" / "ui" / "smoke.py").exists():
            return version, None
        try:
            smoke = statistics.median(
                _time_run([str(EXE), str(project), "--smoke"], project, env) for _ in range(runs)
            )
        except subprocess.CalledProcessError as e:
            raise SmokeFailed(f"exit {e.returncode}", version) from None
    return version, smoke


def run() -> list[dict[str, Any]]:
    if not EXE.is_file():
        why = "skipped: no dist/slipstream (run `make bundle`)"
        return [
            _row(f"package.bundle_size ({why})", None, "MB", TARGETS["bundle_size"]),
            _row(f"package.deb_build ({why})", None, "s", TARGETS["deb_build"]),
            _row(f"package.cold_start_smoke ({why})", None, "s", TARGETS["cold_start"]),
        ]
    (ROOT / "build").mkdir(exist_ok=True)
    rows = [
        _row("package.bundle_size", bundle_size_mb(), "MB", TARGETS["bundle_size"]),
        _row("package.deb_build", deb_build_s(), "s", TARGETS["deb_build"]),
    ]
    name = "package.cold_start_smoke"
    try:
        version_s, smoke_s = start_times()
        rows.append(_row("package.start_to_version_exit", version_s, "s", None))
        if smoke_s is None:
            name += " (skipped: no --smoke yet)"
    except SmokeFailed as e:
        rows.append(_row("package.start_to_version_exit", e.args[1], "s", None))
        smoke_s, name = None, f"{name} (failed: --smoke {e.args[0]})"
    rows.append(_row(name, smoke_s, "s", TARGETS["cold_start"]))
    return rows
