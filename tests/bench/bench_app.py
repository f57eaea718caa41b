"""The whole app at scale: the real window, services and `slipstream serve` child, on generated projects.

Each run is a fresh process that opens a generated project through the real GUI entry
(`app.main.prepare_gui` as `slipstream` does, then `app.ui.app.run_gui` with the services from
`create_services`, so the scripted engine the app serves on a thread of its own; any child process
the app starts is counted in the RSS figures), with a 1 ms probe timer on the Qt event loop recording every stall. Measured per project size:

- opening: from the window being shown (the services factory is called) until the first snapshot is
  acknowledged ("ready"), stall p99 and max on the GUI thread throughout, and ready against the raw
  cost of walking, reading and hashing the same tree (measured in the parent, same run, warm cache);
- a save: file written -> its context update acknowledged on the wire, minus the quiet period;
- a chain restart (200 files): the chain heads dropped, then a save, so the push starts a fresh chain
  and the snapshot is rebuilt: the GUI-thread stall while that happens;
- the idle window (the same probe with the project open and nothing happening), the same run's baseline;
- startup (2,000 files): process start -> window shown and -> ready; RSS of the app and its children idle.

Figures are medians of the runs. The machine running them is shared and noisy: compare ratios to the
same-run baselines. Run alone: `.venv/bin/python -m tests.bench.bench_app [--quick] [--sizes 200,10000]`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

QUIET_S = 0.05  # the workspace's default quiet period
SAVES = 8


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


# ---- the project -------------------------------------------------------------------------------------


def _module(i: int, rng: random.Random) -> str:
    out = [f'"""Module {i}."""', "", "from __future__ import annotations", ""]
    for f in range(rng.randint(2, 8)):
        out += [f"def func_{i}_{f}(x: int, y: int) -> int:", f'    """Compute thing {f}."""']
        out += [f"    v{k} = x * {rng.randint(1, 99)} + y - {k}" for k in range(rng.randint(2, 8))]
        out += ["    return v0", ""]
    return "\n".join(out) + "\n"


def make_project(root: Path, n: int, seed: int = 5) -> None:
    """`n` Python modules, about 1 KB each, 100 files a folder, two levels deep, plus a README."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "README.md").write_text(f"# generated project, {n} files\n")
    for i in range(n - 1):
        d = root / f"pkg{i // 10_000}" / f"sub{(i // 100) % 100}"
        if i % 100 == 0:
            d.mkdir(parents=True, exist_ok=True)
        (d / f"mod{i}.py").write_text(_module(i, rng))


def raw_index(root: Path) -> float:
    """Seconds to walk the tree, read and hash every file: the floor an index can approach."""
    t0 = time.perf_counter()
    for d, _dirs, files in os.walk(root):
        for f in files:
            with open(os.path.join(d, f), "rb") as fh:
                hashlib.blake2b(fh.read(), digest_size=16).hexdigest()
    return time.perf_counter() - t0


# ---- one run, in a fresh process ---------------------------------------------------------------------


def child(project: Path, restart: bool, out: Path) -> None:
    """Open `project` in the real app, measure, quit; write the figures to `out` as JSON."""
    import asyncio

    import psutil
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from app.main import prepare_gui
    from app.ui import app as gui_app

    # As `slipstream` runs: its wrapper of PySide6's per-module source check before the app's modules
    # load, and the services imported after the window shows (`gui_app.load_factory`), not before it.
    gui_app._uncache_inspected_sources()
    prepare_gui()  # what `slipstream` does before its window
    qapp = QApplication.instance() or QApplication(sys.argv[:1])
    ticks: list[tuple[float, float]] = []  # (time, gap since the previous tick) in seconds
    last = [0.0]

    def tick() -> None:
        now = time.perf_counter()
        if last[0]:
            ticks.append((now, now - last[0]))
        last[0] = now

    probe = QTimer()
    probe.setInterval(1)
    probe.timeout.connect(tick)
    probe.start()
    res: dict[str, Any] = {}
    tasks: list[asyncio.Task[None]] = []

    def gaps(t0: float, t1: float) -> list[float]:
        return [g * 1e3 for t, g in ticks if t0 <= t - g and t <= t1]

    def factory(root: Path, settings: Any) -> Any:
        # called once the window is shown and the settings loaded, before the services are imported
        res["startup_window_s"] = gui_app._seconds_since_process_start()
        create_services, reason = gui_app.load_factory()
        assert create_services is not None, reason
        svc = create_services(root, settings)
        shown = time.perf_counter()
        tasks.append(asyncio.ensure_future(drive(svc, shown)))
        return svc

    async def drive(svc: Any, shown: float) -> None:
        try:
            await measure(svc, shown)
        except Exception as exc:  # a failed run still quits and says why
            res["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            qapp.aboutToQuit.emit()

    async def measure(svc: Any, shown: float) -> None:
        deadline = time.perf_counter() + 600
        while svc.sync is None or svc.sync.pushes < 1:
            if time.perf_counter() > deadline:
                raise TimeoutError("never ready")
            await asyncio.sleep(0.001)
        ready = time.perf_counter()
        res["startup_ready_s"] = gui_app._seconds_since_process_start()
        res["ready_s"] = ready - shown
        # A big tree is hashed after the first snapshot (only listed before): opening ends when every
        # file is hashed, and the stalls of that count too.
        hasher = svc.workspace._hasher
        if hasher is not None:
            await hasher
        res["hashed_s"] = time.perf_counter() - shown
        await asyncio.sleep(0.5)  # anything still settling after the acknowledgement counts too
        opening = gaps(shown, time.perf_counter())
        res["open_p50"], res["open_p99"], res["open_max"] = (
            _pct(opening, 0.5),
            _pct(opening, 0.99),
            max(opening),
        )
        pushed: asyncio.Queue[float] = asyncio.Queue()
        svc.sync.on_push = lambda p: (
            pushed.put_nowait(time.perf_counter()) if p.kind == "update" and p.ok else None
        )
        target = (
            project / "pkg0" / "sub0" / "mod0.py"
        )  # make_project's first module (no walk on the GUI thread)
        lat: list[float] = []
        save_gaps: list[float] = []
        for i in range(SAVES):
            if restart:
                svc.session.client.on_disconnect()  # the chain is gone: the next push starts a new one
            text = target.read_text() + f"# save {i}\n"
            t0 = time.perf_counter()
            target.write_text(text)
            t1 = await asyncio.wait_for(pushed.get(), 30)
            lat.append((t1 - t0 - QUIET_S) * 1e3)
            save_gaps += gaps(t0, t1)
            await asyncio.sleep(0.25)
        res["save_p50"], res["save_p99"] = _pct(lat, 0.5), _pct(lat, 0.99)
        res["save_stall_p99"], res["save_stall_max"] = _pct(save_gaps, 0.99), max(save_gaps)
        t0 = time.perf_counter()
        await asyncio.sleep(1.0)
        idle = gaps(t0, time.perf_counter())
        res["idle_p50"], res["idle_p99"], res["idle_max"] = _pct(idle, 0.5), _pct(idle, 0.99), max(idle)
        me = psutil.Process()
        kids = me.children(recursive=True)
        res["rss_app_mb"] = me.memory_info().rss / 2**20
        res["rss_children_mb"] = sum(k.memory_info().rss for k in kids) / 2**20
        # PSS counts a page shared by the two processes (libpython, libcrypto...) once, split between them
        res["pss_total_mb"] = sum(p.memory_full_info().pss for p in (me, *kids)) / 2**20
        res["files"] = len(svc.workspace.status())

    rc = gui_app.run_gui([str(project)], factory=factory)
    probe.stop()
    res["rc"] = rc
    out.write_text(json.dumps(res), encoding="utf-8")


def _once(project: Path, restart: bool, home: Path) -> dict[str, Any]:
    env = {
        **os.environ,
        "QT_QPA_PLATFORM": "offscreen",
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_STATE_HOME": str(home / "state"),
    }
    env.pop("SLIPSTREAM_STARTUP_PROBE", None)
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [sys.executable, "-m", "tests.bench.bench_app", "--child", str(project), out.name]
        if restart:
            cmd.append("--restart")
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        text = Path(out.name).read_text(encoding="utf-8")
    if not text:
        raise RuntimeError(f"bench_app child failed ({proc.returncode}): {proc.stderr[-2000:]}")
    res: dict[str, Any] = json.loads(text)
    if "error" in res:
        raise RuntimeError(f"bench_app child: {res['error']}")
    return res


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))


def _row(name: str, value: float, unit: str, baseline: float | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "value": value,
        "unit": unit,
        "baseline": baseline,
        "ratio": value / baseline if baseline else None,
    }


def run(quick: bool = False, sizes: tuple[int, ...] = (200, 2000, 10_000, 100_000)) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    reps = 1 if quick else 3
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        save_200: float | None = None
        for n in sizes:
            project = base / f"p{n}"
            make_project(project, n)
            raw_index(project)  # warm the page cache, as the app's own index finds it
            raw = statistics.median(raw_index(project) for _ in range(3))
            runs = []
            for r in range(reps if n < 100_000 else max(1, reps - 1)):
                runs.append(_once(project, False, base / f"home{n}-{r}"))
            m = {k: _median(runs, k) for k in runs[0] if isinstance(runs[0][k], int | float)}
            label = f"app {n:,} files"
            print(
                f"{label}: ready {m['ready_s']:.2f} s after the window (raw walk+read+hash {raw:.2f} s, "
                f"{m['ready_s'] / raw:.1f}x), every file hashed {m['hashed_s']:.2f} s; opening stall p50 {m['open_p50']:.1f} p99 {m['open_p99']:.1f} "
                f"max {m['open_max']:.1f} ms; save on the wire p50 {m['save_p50']:.1f} p99 {m['save_p99']:.1f} ms "
                f"beyond quiet (stall p99 {m['save_stall_p99']:.1f} max {m['save_stall_max']:.1f} ms); "
                f"idle stall p99 {m['idle_p99']:.1f} max {m['idle_max']:.1f} ms; RSS {m['rss_app_mb']:.0f} MB "
                f"+ children {m['rss_children_mb']:.0f} MB (medians of {len(runs)})",
                flush=True,
            )
            rows += [
                # small trees: ready is the server child's start-up, so the walk is no yardstick there
                _row(
                    f"{label}: ready after window vs raw walk+read+hash (target <=2x at 100k)",
                    m["ready_s"],
                    "s",
                    raw if n >= 10_000 else None,
                ),
                _row(f"{label}: every file hashed, after window vs raw", m["hashed_s"], "s", raw),
                _row(
                    f"{label}: GUI stall p99 while opening (target <=16)", m["open_p99"], "ms", m["idle_p99"]
                ),
                _row(
                    f"{label}: GUI stall max while opening (target <=50)", m["open_max"], "ms", m["idle_max"]
                ),
                _row(
                    f"{label}: save on the wire p50 beyond quiet (target <=20, <=2x 200 files)",
                    m["save_p50"],
                    "ms",
                    save_200,
                ),
                _row(f"{label}: GUI stall p99 during saves", m["save_stall_p99"], "ms", m["idle_p99"]),
            ]
            if n == 200:
                save_200 = m["save_p50"]
                restarts = [_once(project, True, base / f"home-restart-{r}") for r in range(reps)]
                rm = {
                    k: _median(restarts, k)
                    for k in ("save_stall_p99", "save_stall_max", "idle_p99", "idle_max", "save_p50")
                }
                print(
                    f"{label}: chain restart + snapshot rebuild: GUI stall p99 {rm['save_stall_p99']:.1f} "
                    f"max {rm['save_stall_max']:.1f} ms, idle p99 {rm['idle_p99']:.1f} ms; on the wire "
                    f"{rm['save_p50']:.1f} ms beyond quiet (medians of {len(restarts)})",
                    flush=True,
                )
                rows += [
                    _row(
                        f"{label}: GUI stall p99 during a chain restart (target <=8)",
                        rm["save_stall_p99"],
                        "ms",
                        rm["idle_p99"],
                    ),
                    _row(
                        f"{label}: GUI stall max during a chain restart",
                        rm["save_stall_max"],
                        "ms",
                        rm["idle_max"],
                    ),
                ]
            if n == 2000:
                print(
                    f"{label}: startup: window {m['startup_window_s']:.2f} s, ready {m['startup_ready_s']:.2f} s "
                    f"after process start; idle RSS app + children {m['rss_app_mb'] + m['rss_children_mb']:.0f} MB",
                    flush=True,
                )
                rows += [
                    _row(f"{label}: startup, process start -> window shown", m["startup_window_s"], "s"),
                    _row(
                        f"{label}: startup, process start -> ready (target <=1)",
                        m["startup_ready_s"],
                        "s",
                        raw,
                    ),
                    _row(
                        "app idle RSS with its children (target <=120)",
                        m["rss_app_mb"] + m["rss_children_mb"],
                        "MB",
                    ),
                    _row("app idle RSS, the app process alone", m["rss_app_mb"], "MB"),
                    _row(
                        "app idle PSS with its children (shared pages counted once)", m["pss_total_mb"], "MB"
                    ),
                    _row("app idle RSS, the scripted server child", m["rss_children_mb"], "MB"),
                ]
    return rows


def main(argv: list[str]) -> None:
    if argv[:1] == ["--child"]:
        child(Path(argv[1]), "--restart" in argv, Path(argv[2]))
        return
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="one run per size")
    ap.add_argument("--sizes", default="200,2000,10000,100000", help="project sizes, comma-separated")
    args = ap.parse_args(argv)
    run(args.quick, tuple(int(s) for s in args.sizes.split(",")))


if __name__ == "__main__":
    main(sys.argv[1:])
