"""Two lanes at once: the agent's answer and a side question streaming together on one socket.

The real app (services, window, controller, side pane) on a scripted `slipstream serve` child at the
server's maximum rate (`--rate 0`). Each run measures, in the same process and window:

- one lane alone: the agent's lane streams a `/long N` answer; paints/s of its transcript, GUI stall
  p99/max (a 1 ms probe timer on the Qt loop), tokens/s shown;
- both lanes: the agent's `/long N` and a side question's `/long N` sent together (one WebSocket,
  stream ids default + "side-1"); over the time both stream, paints/s of each transcript, stall
  p99/max, tokens/s shown by each, and the share of frames that paced both views in one tick.

Also, without the GUI: the agent's lane alone at the maximum rate through `SharedSocket` (the reader task
routing frames by stream_id) against the plain `WsTransport` the session used before, same server,
alternating runs: events/s received (the cost of sharing the socket when nobody else uses it).

Rows report medians of `reps` runs; the ratios compare both lanes with one lane alone, same run.
Run alone: `.venv/bin/python -m tests.bench bench_lanes` (or `python -m tests.bench.bench_lanes`).
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import QApplication

from tests.bench.bench_e2e import Paints, _App, _loop, _median, _pct

TOKENS = 150_000  # per answer: a few seconds at the server's maximum rate on a loaded machine
RATE = 0  # the server's --rate (0: its maximum)


async def _painted(views: list[Any]) -> None:
    while any(v.pending for v in views):
        await asyncio.sleep(0.005)


async def _run(tmp: Path, rate: int = 0) -> dict[str, float]:
    run = _App()
    await run.open(tmp, rate)
    svc, win = run.svc, run.win
    try:
        idle = await run.idle()
        # one lane alone
        done = asyncio.Event()
        svc.busy_changed.connect(lambda busy: None if busy else done.set())
        run.probe.start()
        p0 = run.paints.count
        t0 = time.perf_counter()
        svc.send_message(f"/long {TOKENS}")
        await asyncio.wait_for(done.wait(), 600)
        await _painted([win.transcript])
        alone_s = time.perf_counter() - t0
        alone = [g for _, g in run.probe.stop()]
        alone_paints = run.paints.count - p0
        alone_chars = run.answer_chars()
        svc.new_session()
        await _painted([win.transcript])
        gc.collect()
        # both lanes
        done.clear()
        ticker = win.frames
        shared0, frames0 = ticker.shared_frames, ticker.frames
        run.probe.start()
        p0 = run.paints.count
        t0 = time.perf_counter()
        svc.send_message(f"/long {TOKENS}")
        side = svc.ask_side(f"/long {TOKENS}")
        assert side is not None
        tab = win.side_pane.tab_for(side.id)
        assert tab is not None
        side_paints = Paints()
        tab.view.viewport().installEventFilter(side_paints)
        first_end: list[float] = []

        async def side_done() -> None:
            while side.busy or getattr(side, "last", None) is None:
                await asyncio.sleep(0.005)

        async def main_done() -> None:
            await done.wait()

        tasks = [asyncio.ensure_future(main_done()), asyncio.ensure_future(side_done())]
        await asyncio.wait(tasks, timeout=600, return_when=asyncio.FIRST_COMPLETED)
        first_end.append(time.perf_counter())
        both_paints_main = run.paints.count - p0
        both_paints_side = side_paints.count
        both_frames = ticker.frames - frames0
        await asyncio.wait_for(asyncio.gather(*tasks), 600)
        await _painted([win.transcript, tab.view])
        both_s = first_end[0] - t0
        ticks = run.probe.stop()
        both = [g for t, g in ticks if t <= both_s]
        main_chars = run.answer_chars()
        side_items = side.items()  # type: ignore[attr-defined]
        side_chars = sum(
            len(c.get("text", ""))
            for i in side_items
            if i.get("role") == "assistant"
            for c in i.get("content", [])
        )
        total_s = time.perf_counter() - t0
        frames = ticker.frames - frames0
        shared = ticker.shared_frames - shared0
        sockets = svc.hub.opened if svc.hub is not None else 0
        reserve = ticker.group.reserve_s
    finally:
        await run.close()
    return {
        "alone_paints_s": alone_paints / alone_s,
        "alone_p99": _pct(alone, 0.99),
        "alone_max": max(alone),
        "alone_tok_s": alone_chars / 4 / alone_s,
        "both_main_paints_s": both_paints_main / both_s,
        "both_side_paints_s": both_paints_side / both_s,
        "both_p99": _pct(both, 0.99),
        "both_max": max(both),
        "both_tok_s": (main_chars + side_chars) / 4 / total_s,
        "shared_share": shared / max(frames, 1),
        "idle_p99": _pct(idle, 0.99),
        "sockets": sockets,
        "reserve_ms": reserve * 1000,
        "both_frames_s": both_frames / both_s,
    }


def _user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


async def _socket_rate(shared: bool, url: str, token: str) -> float:
    from app.services.lanes import SharedSocket
    from app.services.session import Endpoint, ResponsesSession

    hub = SharedSocket() if shared else None
    endpoint = Endpoint(url, token)
    session = ResponsesSession(endpoint, connect=hub.connector(None)) if hub else ResponsesSession(endpoint)
    try:
        await session.run_turn([_user("warm up")])
        events = [0]

        def count(_e: Any) -> None:
            events[0] += 1

        t0 = time.perf_counter()
        result = await session.run_turn([_user("/long 200000")], on_event=count)
        elapsed = time.perf_counter() - t0
        assert result.ok, result.error
        return events[0] / elapsed
    finally:
        await session.aclose()
        if hub is not None:
            await hub.aclose()


async def _socket_overhead(reps: int) -> dict[str, float]:
    from app.adapters.local_server import start_local_server

    server = await start_local_server(extra_args=["--rate", "0"])
    try:
        direct, shared = [], []
        for _ in range(reps):
            direct.append(await _socket_rate(False, server.url, server.token))
            shared.append(await _socket_rate(True, server.url, server.token))
    finally:
        await server.aclose()
    return {"direct": statistics.median(direct), "shared": statistics.median(shared)}


def run(reps: int = 3) -> list[dict[str, Any]]:
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    results = []
    for _ in range(reps):
        with tempfile.TemporaryDirectory() as tmp:
            r = _loop(app, _run(Path(tmp), RATE))
            results.append(r)
            print(
                f"  run: alone {r['alone_paints_s']:.0f} paints/s, stall p99 {r['alone_p99']:.1f} max "
                f"{r['alone_max']:.1f} ms; both: main {r['both_main_paints_s']:.0f} + side "
                f"{r['both_side_paints_s']:.0f} paints/s, stall p99 {r['both_p99']:.1f} max {r['both_max']:.1f} ms; "
                f"{r['shared_share'] * 100:.0f}% of frames paced both (paint reserve {r['reserve_ms']:.1f} ms, "
                f"{r['both_frames_s']:.0f} frame ticks/s); "
                f"sockets {r['sockets']:.0f}",
                flush=True,
            )
    m = _median(results)
    print(
        f"lanes at the server's maximum rate, {TOKENS:,} tokens per answer (medians of {reps}): one lane alone "
        f"{m['alone_paints_s']:.0f} paints/s, stall p99 {m['alone_p99']:.1f} ms max {m['alone_max']:.1f} ms, "
        f"{m['alone_tok_s']:,.0f} tok/s shown; both lanes: agent {m['both_main_paints_s']:.0f} paints/s, side "
        f"{m['both_side_paints_s']:.0f} paints/s, stall p99 {m['both_p99']:.1f} ms max {m['both_max']:.1f} ms, "
        f"{m['both_tok_s']:,.0f} tok/s shown over both; idle p99 {m['idle_p99']:.1f} ms; one socket "
        f"({m['sockets']:.0f} opened)"
    )
    a_p, a_p99, a_max = m["alone_paints_s"], m["alone_p99"], m["alone_max"]
    o = asyncio.run(_socket_overhead(max(reps, 3)))
    print(
        f"lanes: the agent's lane alone at the maximum rate, no GUI: {o['shared']:,.0f} events/s through "
        f"SharedSocket vs {o['direct']:,.0f} on a plain WsTransport ({o['shared'] / o['direct']:.2f}x, "
        f"medians of {max(reps, 3)})"
    )
    return [
        {
            "name": "lanes: agent lane alone, events/s through SharedSocket vs a plain socket",
            "value": o["shared"],
            "unit": "1/s",
            "baseline": o["direct"],
            "ratio": o["shared"] / o["direct"],
        },
        {
            "name": "lanes: agent paints/s with a side lane streaming vs alone (target >=55)",
            "value": m["both_main_paints_s"],
            "unit": "1/s",
            "baseline": a_p,
            "ratio": m["both_main_paints_s"] / a_p,
        },
        {
            "name": "lanes: side-lane paints/s beside the agent vs agent alone (target >=55)",
            "value": m["both_side_paints_s"],
            "unit": "1/s",
            "baseline": a_p,
            "ratio": m["both_side_paints_s"] / a_p,
        },
        {
            "name": "lanes: GUI stall p99, two lanes vs one (target <=16)",
            "value": m["both_p99"],
            "unit": "ms",
            "baseline": a_p99,
            "ratio": m["both_p99"] / a_p99,
        },
        {
            "name": "lanes: GUI stall max, two lanes vs one (target <=33)",
            "value": m["both_max"],
            "unit": "ms",
            "baseline": a_max,
            "ratio": m["both_max"] / a_max,
        },
        {
            "name": "lanes: tokens/s shown, two lanes together vs one alone",
            "value": m["both_tok_s"],
            "unit": "tok/s",
            "baseline": m["alone_tok_s"],
            "ratio": m["both_tok_s"] / m["alone_tok_s"],
        },
        {
            "name": "lanes: share of frames that paced both transcripts in one tick",
            "value": m["shared_share"],
            "unit": "",
            "baseline": None,
            "ratio": None,
        },
    ]


if __name__ == "__main__":
    import os

    RATE = int(os.environ.get("LANES_RATE", "0"))
    run(int(sys.argv[1]) if sys.argv[1:] else 3)
