"""Socket to pixels: the real app (services, window, controller) rendering a scripted stream from a
`slipstream serve` child process. Every scenario is measured beside an idle window in the same run.

- Paced: 1,000 tok/s (bursts to 4,000) and 4,000 tok/s sustained, an 8,000-token answer
  (markdown with fenced code, `/long N`). Target: p99 stall <= 16 ms (no dropped frame) at 4,000 tok/s.
- A 1M-token session at the server's maximum rate (`--rate 0`, one `/long 1000000` answer), issue 13:
  RSS growth per 1M tokens beyond the first screen (baseline: RSS once 50k tokens were fed to the
  view, i.e. on screen within a frame; the run lines also print it from 50k tokens received),
  the stall p99/max over the first and the last 2 s of the stream, paints/s and tokens/s shown while
  it streams, and the share of the growth `clear()` returns (a new session). Targets: growth <= 50 MB
  per 1M tokens; stall p99 <= 16 ms and max <= 33 ms at the end as at the start; clear() returns
  >= 90%; >= 55 paints/s, stall p99 <= 16 ms and >= 100k tok/s shown at the maximum rate.

A 1 ms probe timer on the Qt event loop measures stalls; the baseline is the same probe with the
window open and idle. Rows report medians of `reps` runs.
Run alone: `.venv/bin/python -m tests.bench bench_e2e` (`... bench_e2e paced` or `... session` for one part).
"""

from __future__ import annotations

import asyncio
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import psutil
import qasync
from PySide6.QtCore import QElapsedTimer, QEvent, QObject, QTimer
from PySide6.QtWidgets import QApplication

from app.adapters.local_server import start_local_server
from app.adapters.store import HistoryStore
from app.protocol.inputs import message_text
from app.services.app import AppServices
from app.services.session import Endpoint
from app.services.settings import Settings

RATES = (1000, 4000)
TOKENS = 8000
SESSION_TOKENS = 1_000_000
FIRST_SCREEN_TOKENS = 50_000
WINDOW_S = 2.0


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


class Probe:
    """Gaps between 1 ms timer ticks (with when they ended): anything far above 1 ms is a busy loop."""

    def __init__(self) -> None:
        self.ticks: list[tuple[float, float]] = []  # (time s, gap ms)
        self._clock = QElapsedTimer()
        self._timer = QTimer()
        self._timer.setInterval(1)
        self._timer.timeout.connect(self._tick)
        self._last = 0.0

    def _tick(self) -> None:
        now = self._clock.nsecsElapsed() / 1e6
        self.ticks.append((now / 1000, now - self._last))
        self._last = now

    def start(self) -> None:
        self.ticks.clear()
        self._clock.start()
        self._last = 0.0
        self._timer.start()

    def stop(self) -> list[tuple[float, float]]:
        self._timer.stop()
        return self.ticks[1:]


class Paints(QObject):
    """Counts the transcript viewport's paint events."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def eventFilter(self, _obj: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Paint:
            self.count += 1
        return False


class _App:
    """The real window, controller and services on a scripted server child, for one run."""

    async def open(self, tmp: Path, rate: int) -> None:
        from app.ui.controller import Controller
        from app.ui.main_window import MainWindow

        self.server = await start_local_server(extra_args=["--rate", str(rate)])
        project = tmp / "project"
        project.mkdir()
        (project / "main.py").write_text("print('hi')\n")
        self.svc = AppServices(
            project,
            Settings(),
            endpoint=Endpoint(self.server.url, self.server.token, label="scripted"),
            store=HistoryStore(tmp / "history.db"),
            persist_settings=False,
            watch=False,
        )
        self.win = MainWindow()
        self.ctl = Controller(self.win)
        self.ctl.bind(self.svc)
        self.win.resize(1280, 800)
        self.win.show()
        self.paints = Paints()
        self.win.transcript.viewport().installEventFilter(self.paints)
        self.probe = Probe()
        await self.svc.start()
        await asyncio.sleep(0.5)
        gc.collect()  # as app.ui.app.gui_main does once the first project is open
        gc.freeze()

    async def idle(self) -> list[float]:
        self.probe.start()
        await asyncio.sleep(1.0)
        return [g for _, g in self.probe.stop()]

    async def painted(self) -> None:
        while self.win.transcript.pending:
            await asyncio.sleep(0.005)

    @property
    def chars(self) -> int:
        """Answer characters received so far (the status bar's own count)."""
        return self.svc.stats.chars_total

    def answer_chars(self) -> int:
        assert self.svc.session is not None
        return len(message_text(self.svc.session.client.transcript()[-1]))

    async def close(self) -> None:
        self.ctl.unbind()
        await self.svc.aclose()
        await self.server.aclose()
        self.win.close()
        self.win.deleteLater()


async def _paced(app: QApplication, rate: int, tmp: Path) -> dict[str, float]:
    run = _App()
    await run.open(tmp, rate)
    try:
        idle = await run.idle()
        done = asyncio.Event()
        run.svc.busy_changed.connect(lambda busy: None if busy else done.set())
        run.probe.start()
        t0 = time.perf_counter()
        run.svc.send_message(f"/long {TOKENS}")
        await asyncio.wait_for(done.wait(), 120)
        elapsed = time.perf_counter() - t0
        await run.painted()
        busy = [g for _, g in run.probe.stop()]
        chars = run.answer_chars()
    finally:
        await run.close()
    return {
        "p50": _pct(busy, 0.5),
        "p99": _pct(busy, 0.99),
        "max": max(busy),
        "idle_p99": _pct(idle, 0.99),
        "tok_s": chars / 4 / elapsed,
    }


async def _session(app: QApplication, tmp: Path) -> dict[str, float]:
    """One 1M-token answer at the server's maximum rate, then a new session (clear)."""
    run = _App()
    await run.open(tmp, 0)
    proc = psutil.Process()
    try:
        idle = await run.idle()
        done = asyncio.Event()
        run.svc.busy_changed.connect(lambda busy: None if busy else done.set())
        rss: list[tuple[float, int, float, int]] = []  # (time, chars received, RSS MB, chars fed to the view)
        model = run.svc.conversation

        async def sample() -> None:
            while True:
                rss.append((time.perf_counter(), run.chars, proc.memory_info().rss / 2**20, model.fed_chars))
                await asyncio.sleep(0.25)

        run.probe.start()
        paints0 = run.paints.count
        t0 = time.perf_counter()
        sampler = asyncio.ensure_future(sample())
        run.svc.send_message(f"/long {SESSION_TOKENS}")
        await asyncio.wait_for(done.wait(), 900)
        received = time.perf_counter() - t0
        await run.painted()
        shown = time.perf_counter() - t0
        sampler.cancel()
        paints = run.paints.count - paints0
        ticks = run.probe.stop()
        chars = run.answer_chars()
        rss_end = proc.memory_info().rss / 2**20
        # the first screen is what the view was fed (received text can run far ahead of it when the
        # server coalesces deltas); the received-based figure is kept for comparison with older runs
        base = next((r for _, _c, r, f in rss if f >= FIRST_SCREEN_TOKENS * 4), rss[0][2])
        base_received = next((r for _, c, r, _f in rss if c >= FIRST_SCREEN_TOKENS * 4), rss[0][2])
        run.svc.new_session()  # clear(): the conversation, the client's transcript
        for _ in range(10):
            await asyncio.sleep(0.02)
        await run.painted()
        rss_clear = proc.memory_info().rss / 2**20
    finally:
        await run.close()
    # The stream ends when its last token is on screen (the last tick: the probe stops once all is
    # painted). When the server coalesces deltas the client receives far ahead of what it shows, so
    # the last 2 s of receiving (the run lines' "recv" figures) can be early in the session.
    stream_end = ticks[-1][0]
    recv_end = ticks[-1][0] - (shown - received)
    first = [g for t, g in ticks if t <= WINDOW_S]
    last = [g for t, g in ticks if stream_end - WINDOW_S <= t <= stream_end]
    last_recv = [g for t, g in ticks if recv_end - WINDOW_S <= t <= recv_end]
    allg = [g for t, g in ticks if t <= stream_end]
    tokens = chars / 4
    growth = rss_end - base
    return {
        "growth_per_1m": growth / max(tokens - FIRST_SCREEN_TOKENS, 1) * 1_000_000,
        "growth_per_1m_received": (rss_end - base_received)
        / max(tokens - FIRST_SCREEN_TOKENS, 1)
        * 1_000_000,
        "cleared_share": (rss_end - rss_clear) / growth if growth > 0 else 1.0,
        "p99_first": _pct(first, 0.99),
        "max_first": max(first),
        "p99_last": _pct(last, 0.99),
        "max_last": max(last),
        "p99_last_recv": _pct(last_recv, 0.99),
        "max_last_recv": max(last_recv),
        "p99_all": _pct(allg, 0.99),
        "idle_p99": _pct(idle, 0.99),
        "idle_max": max(idle),
        "paints_s": paints / shown,
        "shown_tok_s": tokens / shown,
        "received_tok_s": tokens / received,
        "rss_base": base,
        "rss_end": rss_end,
        "rss_clear": rss_clear,
    }


def _loop(app: QApplication, coro: Any) -> dict[str, float]:
    result: dict[str, float] = asyncio.run(coro, loop_factory=lambda: qasync.QEventLoop(app))
    return result


def _median(results: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in results) for k in results[0]}


def paced_rows(app: QApplication, reps: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for rate in RATES:
        results = []
        for _ in range(reps):
            with tempfile.TemporaryDirectory() as tmp:
                results.append(_loop(app, _paced(app, rate, Path(tmp))))
        med = _median(results)
        print(
            f"e2e at {rate:,} tok/s (bursts x4): achieved {med['tok_s']:,.0f} tok/s, loop stall p50 "
            f"{med['p50']:.1f} ms p99 {med['p99']:.1f} ms max {med['max']:.1f} ms; idle p99 {med['idle_p99']:.1f} ms "
            f"(medians of {reps})"
        )
        rows += [
            {
                "name": f"e2e {rate} tok/s: loop stall p99 (target <=16)",
                "value": med["p99"],
                "unit": "ms",
                "baseline": med["idle_p99"],
                "ratio": med["p99"] / med["idle_p99"],
            },
            {
                "name": f"e2e {rate} tok/s: loop stall max",
                "value": med["max"],
                "unit": "ms",
                "baseline": None,
                "ratio": None,
            },
            {
                "name": f"e2e {rate} tok/s: achieved rate",
                "value": med["tok_s"],
                "unit": "tok/s",
                "baseline": rate,
                "ratio": med["tok_s"] / rate,
            },
        ]
    return rows


def session_rows(app: QApplication, reps: int) -> list[dict[str, Any]]:
    results = []
    for _ in range(reps):
        with tempfile.TemporaryDirectory() as tmp:
            results.append(_loop(app, _session(app, Path(tmp))))
            r = results[-1]
            print(
                f"  run: growth {r['growth_per_1m']:.1f} MB/1M (from 50k received: "
                f"{r['growth_per_1m_received']:.1f}; RSS {r['rss_base']:.0f} -> {r['rss_end']:.0f} -> "
                f"cleared {r['rss_clear']:.0f}), stall p99 {r['p99_first']:.1f}/{r['p99_last']:.1f} ms, "
                f"max {r['max_first']:.1f}/{r['max_last']:.1f} ms (last 2 s received: p99 "
                f"{r['p99_last_recv']:.1f} max {r['max_last_recv']:.1f}), {r['paints_s']:.0f} paints/s, "
                f"{r['shown_tok_s']:,.0f} tok/s shown",
                flush=True,
            )
    m = _median(results)
    print(
        f"e2e 1M-token session at the server's maximum rate (medians of {reps}): RSS growth "
        f"{m['growth_per_1m']:.1f} MB per 1M tokens, clear() returns {m['cleared_share'] * 100:.0f}%; stall p99 "
        f"{m['p99_first']:.1f} ms first 2 s, {m['p99_last']:.1f} ms last 2 s (idle {m['idle_p99']:.1f}); "
        f"{m['paints_s']:.0f} paints/s; {m['shown_tok_s']:,.0f} tok/s shown, {m['received_tok_s']:,.0f} received"
    )
    idle_p99, idle_max = m["idle_p99"], m["idle_max"]
    return [
        {
            "name": "e2e 1M-token session: RSS growth per 1M tokens beyond the first screen (target <=50)",
            "value": m["growth_per_1m"],
            "unit": "MB",
            "baseline": 50.0,
            "ratio": m["growth_per_1m"] / 50.0,
        },
        {
            "name": "e2e 1M-token session: share of the growth clear() returns (target >=0.9)",
            "value": m["cleared_share"],
            "unit": "",
            "baseline": 0.9,
            "ratio": m["cleared_share"] / 0.9,
        },
        {
            "name": "e2e 1M-token session: stall p99, first 2 s (target <=16)",
            "value": m["p99_first"],
            "unit": "ms",
            "baseline": idle_p99,
            "ratio": m["p99_first"] / idle_p99,
        },
        {
            "name": "e2e 1M-token session: stall p99, last 2 s (target <=16)",
            "value": m["p99_last"],
            "unit": "ms",
            "baseline": idle_p99,
            "ratio": m["p99_last"] / idle_p99,
        },
        {
            "name": "e2e 1M-token session: stall max, first 2 s (target <=33)",
            "value": m["max_first"],
            "unit": "ms",
            "baseline": idle_max,
            "ratio": m["max_first"] / idle_max,
        },
        {
            "name": "e2e 1M-token session: stall max, last 2 s (target <=33)",
            "value": m["max_last"],
            "unit": "ms",
            "baseline": idle_max,
            "ratio": m["max_last"] / idle_max,
        },
        {
            "name": "e2e max rate: paints/s while streaming (target >=55)",
            "value": m["paints_s"],
            "unit": "1/s",
            "baseline": 55.0,
            "ratio": m["paints_s"] / 55.0,
        },
        {
            "name": "e2e max rate: stall p99 while streaming (target <=16)",
            "value": m["p99_all"],
            "unit": "ms",
            "baseline": idle_p99,
            "ratio": m["p99_all"] / idle_p99,
        },
        {
            "name": "e2e max rate: tokens/s shown (target >=100k)",
            "value": m["shown_tok_s"],
            "unit": "tok/s",
            "baseline": m["received_tok_s"],
            "ratio": m["shown_tok_s"] / m["received_tok_s"],
        },
    ]


def run(reps: int = 3, parts: tuple[str, ...] = ("paced", "session")) -> list[dict[str, Any]]:
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    rows: list[dict[str, Any]] = []
    if "paced" in parts:
        rows += paced_rows(app, reps)
    if "session" in parts:
        rows += session_rows(app, reps)
    return rows


if __name__ == "__main__":
    run(parts=tuple(sys.argv[1:]) or ("paced", "session"))
