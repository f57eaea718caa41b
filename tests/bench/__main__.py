"""`make bench`: run every tests/bench/bench_*.py module's `run()`, print one table, write results.json.

All of it runs in a throwaway profile (app.profile): nothing touches the user's settings, history or
keychain. Each module runs in a process of its own, so one benchmark's imports and memory (the openai SDK,
a Qt window) never show up in another's figures (RSS above all).

Each `run()` returns rows {"name", "value", "unit", "baseline", "ratio"}: `baseline` is the comparison
measured in the same run (None where there is none), `ratio` = value / baseline unless the module says
otherwise. Run one module alone with `python -m tests.bench bench_render`.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import pkgutil
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE.parent.parent / "build" / "bench" / "results.json"


def _fmt(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:,.3f}" if abs(v) < 100 else f"{v:,.0f}"
    return str(v)


def child(name: str, out: str) -> int:
    """Run one module in this (fresh) process and write its rows to `out`."""
    try:
        rows = importlib.import_module(f"tests.bench.{name}").run()
    except Exception:
        traceback.print_exc()
        return 1
    Path(out).write_text(json.dumps(rows), encoding="utf-8")
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        return child(argv[1], argv[2])
    # Benchmarks never read or write the user's settings, history or keychain: one throwaway profile
    # for this run, inherited by every benchmark process and whatever they start.
    from app.profile import PROFILE_ENV, use_throwaway_profile

    if os.environ.get(PROFILE_ENV):
        return _main(argv)
    root = use_throwaway_profile()
    try:
        return _main(argv)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _kept(names: list[str], failed: list[str]) -> list[dict[str, object]]:
    """The rows of `OUT` that this run does not replace: a run of some benchmarks (or one that failed)
    keeps the other benchmarks' figures of the last run instead of wiping them."""
    try:
        old = json.loads(OUT.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    ran = set(names) - set(failed)
    return [r for r in old if isinstance(r, dict) and r.get("bench") and r["bench"] not in ran]


def _main(argv: list[str]) -> int:
    wanted = set(argv)
    names = sorted(m.name for m in pkgutil.iter_modules([str(HERE)]) if m.name.startswith("bench_"))
    if wanted:
        names = [n for n in names if n in wanted or n.removeprefix("bench_") in wanted]
    rows: list[dict[str, object]] = []
    failed: list[str] = []
    for name in names:
        t0 = time.perf_counter()
        print(f"--- {name}", flush=True)
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            proc = subprocess.run([sys.executable, "-m", "tests.bench", "--child", name, out.name])
            if proc.returncode != 0:
                failed.append(name)
                continue
            got = json.loads(Path(out.name).read_text(encoding="utf-8"))
        for row in got:
            row = {
                "bench": name,
                "name": row["name"],
                "value": row.get("value"),
                "unit": row.get("unit", ""),
                "baseline": row.get("baseline"),
                "ratio": row.get("ratio"),
            }
            rows.append(row)
        print(f"    ({time.perf_counter() - t0:.1f} s)", flush=True)
    width = max([len(str(r["name"])) for r in rows] + [10])
    print()
    print(f"{'benchmark':<{width}}  {'value':>14}  {'unit':<10}  {'baseline':>14}  {'ratio':>9}")
    for r in rows:
        print(
            f"{r['name']!s:<{width}}  {_fmt(r['value']):>14}  {r['unit']!s:<10}  "
            f"{_fmt(r['baseline']):>14}  {_fmt(r['ratio']):>9}"
        )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(_kept(names, failed) + rows, indent=2), encoding="utf-8")
    print(f"\nwrote {OUT}")
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
