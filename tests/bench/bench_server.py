"""The server's write path and the client's HTTP path, each against a baseline measured in the same run.

(a) Events/s on one WebSocket, one long unpaced scripted answer (`/long N`), server in its own process
    (`slipstream serve`), client a raw `websockets` drain:
      coalesced writes (the default)  vs  one write per frame (`--no-coalesce`, the old path)
      permessage-deflate negotiated (`--ws-deflate` + a client offering it)  vs  coalesced, no deflate
    plus the server's CPU seconds per 100k events (psutil) for each.
(b) `slipstream ask --endpoint http://…` against an HTTP-only server (`--no-websocket`): wall time of the
    whole command vs a direct HTTP client doing the same POST (both fresh processes, so interpreter
    start is in both); target: ask ≤ direct + 1 s. Also in-process: `ResponsesSession.run_turn` over
    HTTP vs a direct httpx SSE read.

Run alone: `python -m tests.bench bench_server` (medians of REPS alternating runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import psutil
from websockets.asyncio.client import connect as ws_connect

from app.protocol.client import ClientSession
from app.services.session import Endpoint, ResponsesSession

Row = dict[str, Any]
REPS = 5
TOKENS = 60_000  # ~ events of the long answer (one per ~4-char token)


@contextlib.asynccontextmanager
async def serve(*flags: str) -> AsyncIterator[tuple[str, str, int]]:
    """`slipstream serve --rate 0` in its own process: (ws url, token, pid)."""
    token = secrets.token_urlsafe(16)
    with tempfile.TemporaryFile() as log:  # its stderr, to say why it did not start
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "app.main",
            "serve",
            "--port",
            "0",
            "--rate",
            "0",
            f"--token={token}",  # "=": a token may start with "-"
            *flags,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        assert proc.stdout is not None
        try:
            line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
            if "listening on " not in line:
                await proc.wait()
                log.seek(0)
                err = log.read().decode(errors="replace")[-2000:]
                raise RuntimeError(f"serve {flags} did not start (rc {proc.returncode}): {line!r}\n{err}")
            url = line.split("listening on ", 1)[1].split()[0]
            yield url, token, proc.pid
        finally:
            if proc.returncode is None:
                proc.terminate()
                await proc.wait()


async def drain(url: str, token: str, pid: int, *, deflate: bool) -> tuple[float, float]:
    """(events/s, server CPU seconds per 100k events) for one long answer."""
    server = psutil.Process(pid)
    headers = {"Authorization": f"Bearer {token}"}
    frame = ClientSession().create(
        [{"type": "message", "role": "user", "content": f"/long {TOKENS}"}], model="m"
    )
    assert isinstance(frame, bytes)  # a session without rebuilds gives the frame itself
    async with ws_connect(
        url, additional_headers=headers, max_size=None, compression="deflate" if deflate else None
    ) as conn:
        cpu0 = sum(server.cpu_times()[:2])
        t0 = time.perf_counter()
        await conn.send(frame, text=True)
        n = 0
        while True:
            raw = await conn.recv(decode=False)
            n += 1
            if b'"type":"response.completed"' in raw[:40]:
                break
        dt = time.perf_counter() - t0
        cpu = sum(server.cpu_times()[:2]) - cpu0
    return n / dt, cpu / n * 100_000


async def bench_writes() -> list[Row]:
    cases = {
        # one event per token in every case (`--coalesce-chars 0`): these rows compare write paths
        "coalesced": (("--coalesce-chars", "0"), False),
        "per-frame": (("--no-coalesce", "--coalesce-chars", "0"), False),
        "deflate": (("--ws-deflate", "--coalesce-chars", "0"), True),
    }
    rates: dict[str, list[float]] = {k: [] for k in cases}
    cpus: dict[str, list[float]] = {k: [] for k in cases}
    async with contextlib.AsyncExitStack() as stack:
        servers = {k: await stack.enter_async_context(serve(*flags)) for k, (flags, _) in cases.items()}
        for name, (url, token, pid) in servers.items():  # warm-up: imports, first connection
            await drain(url, token, pid, deflate=cases[name][1])
        for _ in range(REPS):
            for name, (url, token, pid) in servers.items():
                rate, cpu_s = await drain(url, token, pid, deflate=cases[name][1])
                rates[name].append(rate)
                cpus[name].append(cpu_s)
    med = {k: statistics.median(v) for k, v in rates.items()}
    cpu = {k: statistics.median(v) for k, v in cpus.items()}
    for k in cases:
        print(f"  {k:10s} {med[k]:10,.0f} events/s   server CPU {cpu[k]:.2f} s per 100k events")
    return [
        {
            "name": "server: events/s one connection, coalesced writes vs one write per frame",
            "value": med["coalesced"],
            "unit": "ev/s",
            "baseline": med["per-frame"],
            "ratio": med["coalesced"] / med["per-frame"],
        },
        {
            "name": "server: CPU s per 100k events, coalesced vs per-frame writes",
            "value": cpu["coalesced"],
            "unit": "s",
            "baseline": cpu["per-frame"],
            "ratio": cpu["coalesced"] / cpu["per-frame"],
        },
        {
            "name": "server_deflate: events/s one connection, permessage-deflate vs none (default: none)",
            "value": med["deflate"],
            "unit": "ev/s",
            "baseline": med["coalesced"],
            "ratio": med["deflate"] / med["coalesced"],
        },
        {
            "name": "server_deflate: CPU s per 100k events, deflate vs none",
            "value": cpu["deflate"],
            "unit": "s",
            "baseline": cpu["coalesced"],
            "ratio": cpu["deflate"] / cpu["coalesced"],
        },
    ]


DIRECT = """
import httpx, json, sys
body = {"model": "scripted", "stream": True, "input": [{"type": "message", "role": "user", "content": "hi"}]}
with httpx.stream("POST", sys.argv[1], json=body, headers={"Authorization": "Bearer " + sys.argv[2]}) as r:
    for line in r.iter_lines():
        if line.startswith("data: ") and '"output_text.delta"' in line:
            sys.stdout.write(json.loads(line[6:])["delta"])
"""


def _wall(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{cmd[:4]} failed: {out.stderr.decode()[-500:]}")
    return time.perf_counter() - t0


async def bench_ask_http() -> list[Row]:
    rows: list[Row] = []
    async with serve("--no-websocket") as (url, token, _pid):
        http_url = "http://" + url.removeprefix("ws://")
        ask = [sys.executable, "-m", "app.main", "ask", "--endpoint", http_url, f"--token={token}", "hi"]
        direct = [sys.executable, "-c", DIRECT, http_url, token]
        asks, directs = [], []
        _wall(ask)
        for _ in range(REPS):
            asks.append(await asyncio.to_thread(_wall, ask))
            directs.append(await asyncio.to_thread(_wall, direct))
        a, d = statistics.median(asks), statistics.median(directs)
        print(
            f"  slipstream ask --endpoint http://  {a * 1e3:8.0f} ms   direct httpx process {d * 1e3:8.0f} ms   "
            f"overhead {(a - d) * 1e3:.0f} ms (target < 1000 ms)"
        )
        rows.append(
            {
                "name": "client: `slipstream ask --endpoint http://` wall vs a direct HTTP client (target: +<1 s)",
                "value": a * 1e3,
                "unit": "ms",
                "baseline": d * 1e3,
                "ratio": a / d,
            }
        )
        session = ResponsesSession(Endpoint(http_url, token))
        turns, posts = [], []
        msg = {"type": "message", "role": "user", "content": "hi"}
        async with httpx.AsyncClient() as client:
            for _ in range(REPS * 2):
                t0 = time.perf_counter()
                result = await session.run_turn([msg])
                turns.append(time.perf_counter() - t0)
                assert result.ok and result.transport == "http", result
                t0 = time.perf_counter()
                body = {"model": "scripted", "stream": True, "input": [msg]}
                async with client.stream(
                    "POST", http_url, json=body, headers={"Authorization": f"Bearer {token}"}
                ) as resp:
                    async for _line in resp.aiter_lines():
                        pass
                posts.append(time.perf_counter() - t0)
        await session.aclose()
        t, p = statistics.median(turns), statistics.median(posts)
        print(
            f"  in-process: ResponsesSession.run_turn over HTTP {t * 1e3:.1f} ms   direct httpx {p * 1e3:.1f} ms"
        )
        rows.append(
            {
                "name": "client: run_turn over an http:// endpoint vs direct httpx SSE read (in-process)",
                "value": t * 1e3,
                "unit": "ms",
                "baseline": p * 1e3,
                "ratio": t / p,
            }
        )
    return rows


async def _main() -> list[Row]:
    print(f"(a) one connection, a {TOKENS:,}-token unpaced answer, medians of {REPS}")
    rows = await bench_writes()
    print(f"(b) an HTTP-only server, medians of {REPS}")
    rows += await bench_ask_http()
    return rows


def run() -> list[Row]:
    return asyncio.run(_main())


if __name__ == "__main__":
    run()
