"""Live test events on a generated 2,000-test suite: event latency and the plugin's overhead.

- latency: from the moment the plugin emits a test's call-phase event (right after the test ends)
  to the moment the app's parser hands it to the listener, p50/p99 in ms;
- overhead: wall time of pytest with our plugin streaming events vs plain pytest on the same suite,
  both run through the same adapter (run_process), median of `REPEATS` alternating runs; target
  ratio <= 1.10.

Run: `python -m tests.bench.bench_tests` (or `make bench`).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from app.adapters.proc import detect_test_command, run_process, run_tests

N_FILES = 20
PER_FILE = 100
REPEATS = 5


def make_suite(root: Path) -> None:
    """2,000 small tests: mostly passing, a few failing, skipped and parametrized."""
    (root / "pyproject.toml").write_text("[project]\nname = 'bench'\n", encoding="utf-8")
    tests = root / "tests"
    tests.mkdir()
    for f in range(N_FILES):
        body = ["import pytest", ""]
        for i in range(PER_FILE - 10):
            body.append(f"def test_{i}():\n    assert sum(range({i})) >= 0\n")
        body.append("@pytest.mark.parametrize('n', range(8))\ndef test_param(n):\n    assert n >= 0\n")
        body.append("@pytest.mark.skip(reason='bench')\ndef test_skipped():\n    pass\n")
        body.append(f"def test_fails():\n    assert {f} == -1\n")
        (tests / f"test_gen_{f:02d}.py").write_text("\n".join(body), encoding="utf-8")


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


async def _plugin_run(root: Path) -> tuple[float, list[float], dict[str, int]]:
    latencies: list[float] = []

    def on_event(ev: dict[str, Any]) -> None:
        if ev.get("kind") == "phase" and ev.get("when") == "call":
            latencies.append((time.time() - float(ev["t"])) * 1000.0)

    cmd = detect_test_command(root, python=sys.executable, extra_args=["-q", "-p", "no:cacheprovider"])
    t0 = time.perf_counter()
    run = await run_tests(cmd, on_event=on_event, timeout=600)
    wall = time.perf_counter() - t0
    return wall, latencies, {k: v for k, v in run.counts.items() if v}


async def _plain_run(root: Path) -> float:
    t0 = time.perf_counter()
    res = await run_process(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=root, timeout=600
    )
    wall = time.perf_counter() - t0
    if res.exit_code not in (0, 1):
        raise RuntimeError(f"plain pytest failed: {res.status_line()}\n{res.output[-2000:]}")
    return wall


def run() -> list[dict[str, object]]:
    with tempfile.TemporaryDirectory(prefix="slipstream-bench-") as tmp:
        root = Path(tmp)
        make_suite(root)
        plain: list[float] = []
        plugin: list[float] = []
        latencies: list[float] = []
        counts: dict[str, int] = {}
        asyncio.run(_plain_run(root))  # warm the file cache and .pyc files
        for _ in range(REPEATS):
            plain.append(asyncio.run(_plain_run(root)))
            wall, lat, counts = asyncio.run(_plugin_run(root))
            plugin.append(wall)
            latencies.extend(lat)
    total = sum(counts.values())
    if counts.get("passed", 0) + counts.get("failed", 0) + counts.get("skipped", 0) != N_FILES * PER_FILE:
        raise RuntimeError(f"unexpected counts {counts} (total {total})")
    p_plain, p_plugin = statistics.median(plain), statistics.median(plugin)
    return [
        {
            "name": "tests.event_latency_p50",
            "value": _pct(latencies, 0.50),
            "unit": "ms",
            "baseline": None,
            "ratio": None,
        },
        {
            "name": "tests.event_latency_p99",
            "value": _pct(latencies, 0.99),
            "unit": "ms",
            "baseline": None,
            "ratio": None,
        },
        {
            "name": "tests.suite_2000_wall_with_plugin",
            "value": p_plugin,
            "unit": "s",
            "baseline": p_plain,
            "ratio": p_plugin / p_plain,
        },
    ]


if __name__ == "__main__":
    for row in run():
        print(row)
