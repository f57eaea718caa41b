"""Protocol benchmarks: the WebSocket-mode client against HTTP full resend and the official SDK.

(a) A 20-tool-call agent rollout with ~200 KB of project context against the real server (child
    process, scripted engine unpaced): WebSocket incremental (`ResponsesSession`: warm-up with
    `generate: false`, then `previous_response_id` + new items) vs HTTP full resend (stateless: every
    turn POSTs context + all items so far, `stream: true`, `store: false`, SSE parsed by the codec).
    Wall time and request bytes uploaded (bodies / frames, counted client-side).
(b) Events/s consuming one long delta stream (`/long N`: N text deltas): our client
    (`ClientSession.receive_frame` over `WsTransport`, and the whole `ResponsesSession.run_turn`
    path) vs the official SDK's `AsyncOpenAI(...).responses.connect()` on the same server. A raw
    drain (websockets recv, no parsing) shows the server's ceiling; when both sides sit near it,
    the live ratio says little, so the client-side parse cost is also measured offline on the same
    recorded frames: ours (codec + ClientSession) vs the SDK's own `parse_event`.

Paths alternate; every figure is a median of `REPS` runs. Prints figures and returns rows for
`make bench`; asserts only that each path did the work it claims (so a noisy machine cannot fail it).

Run: `.venv/bin/python -m tests.bench.bench_protocol` (add `--quick` for a short run).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import random
import secrets
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import httpx
from websockets.asyncio.client import connect as ws_connect

from app.adapters.http_sse import post_stream
from app.adapters.ws_client import WsTransport
from app.protocol.client import ClientSession, Completed
from app.protocol.codec import encode_json, event_type
from app.protocol.events import ResponseCompleted, ServerEvent
from app.services.session import Endpoint, ResponsesSession

Item = dict[str, Any]
Row = dict[str, object]

REPS = 3  # (b): the SDK's stream dominates the module's run time
ROLLOUT_REPS = 5  # (a) is cheap: more runs, steadier medians
CALLS = 20
CONTEXT_BYTES = 200_000
MODEL = "scripted"
TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed", "error"})

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "name": "read_file",
        "description": "Read a UTF-8 text file of the project.",
        "parameters": {
            "type": "object",
            "additionalProperties": False,
            "required": ["path"],
            "properties": {
                "path": {"type": "string", "description": "Path relative to the project root."},
                "start_line": {"type": "integer", "minimum": 1},
                "end_line": {"type": "integer", "minimum": 1},
            },
        },
    },
    {
        "type": "function",
        "name": "search",
        "description": "Search the project for a regular expression.",
        "parameters": {
            "type": "object",
            "additionalProperties": False,
            "required": ["query"],
            "properties": {
                "query": {"type": "string", "description": "Python regular expression."},
                "glob": {"type": "string", "description": "Only files matching this glob."},
            },
        },
    },
    {
        "type": "function",
        "name": "apply_patch",
        "description": "Apply a unified diff to the project.",
        "parameters": {
            "type": "object",
            "additionalProperties": False,
            "required": ["patch"],
            "properties": {
                "patch": {"type": "string", "description": "A unified diff (---/+++ headers, @@ hunks)."}
            },
        },
    },
    {
        "type": "function",
        "name": "run_tests",
        "description": "Run pytest on some test files.",
        "parameters": {
            "type": "object",
            "additionalProperties": False,
            "required": ["paths"],
            "properties": {
                "paths": {"type": "array", "items": {"type": "string"}},
                "keyword": {"type": "string", "description": "pytest -k expression."},
            },
        },
    },
]
SETTINGS: dict[str, Any] = {"tools": TOOLS, "tool_choice": "auto"}


def _median(xs: list[float]) -> float:
    return statistics.median(xs)


# ---- the child server ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Server:
    url: str  # ws://127.0.0.1:PORT/v1/responses
    token: str

    @property
    def http_url(self) -> str:
        return "http://" + self.url.removeprefix("ws://")

    @property
    def base_url(self) -> str:
        return self.http_url.removesuffix("/v1/responses")


@contextlib.asynccontextmanager
async def _child_server(calls: int) -> AsyncIterator[_Server]:
    """`tests.bench._proto_serve` in its own process (own core), stopped with SIGTERM at the end
    (and by the EOF on its stdin pipe if this process dies first)."""
    token = secrets.token_urlsafe(24)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.bench._proto_serve",
        f"--token={token}",
        "--calls",
        str(calls),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
        start_new_session=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    drains: list[asyncio.Task[None]] = []
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        if "listening on " not in line:
            err = (await proc.stderr.read()).decode(errors="replace")
            raise RuntimeError(f"bench server did not start: {line}{err}"[-2000:])
        url = line.split("listening on ", 1)[1].split()[0]
        drains = [asyncio.create_task(_drain(proc.stdout)), asyncio.create_task(_drain(proc.stderr))]
        yield _Server(url, token)
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        for d in drains:
            d.cancel()


async def _drain(stream: asyncio.StreamReader) -> None:
    with contextlib.suppress(Exception):
        while await stream.read(65536):
            pass


# ---- (a) the agent rollout -----------------------------------------------------------------------


def _source_file(i: int, rng: random.Random) -> str:
    """A plausible Python module: a dataclass, a few typed functions with docstrings and loops."""
    name = f"Model{i}"
    out = [
        f'"""Module {i}: storage and helpers for {name.lower()} records."""',
        "",
        "from __future__ import annotations",
        "",
        "import json",
        "from dataclasses import dataclass, field",
        "",
        "",
        "@dataclass",
        f"class {name}:",
        f'    """One {name.lower()} record as kept on disk."""',
        "",
        "    id: int",
        "    name: str",
        "    tags: list[str] = field(default_factory=list)",
        "",
    ]
    for f in range(rng.randint(5, 9)):
        arg = rng.choice(["values", "items", "rows", "records"])
        limit = rng.randint(5, 500)
        out += [
            "",
            f"def process_{i}_{f}({arg}: list[{name}], limit: int = {limit}) -> dict[str, int]:",
            f'    """Count {arg} by their first tag, stopping after `limit` entries (step {f})."""',
            "    counts: dict[str, int] = {}",
            f"    for n, item in enumerate({arg}):",
            "        if n >= limit:",
            "            break",
            '        key = item.tags[0] if item.tags else "untagged"',
            "        counts[key] = counts.get(key, 0) + 1",
        ]
        out += [
            f'    counts["extra_{k}"] = len({arg}) * {rng.randint(2, 97)} // {rng.randint(1, 9)}'
            for k in range(rng.randint(1, 4))
        ]
        out += ["    return counts", ""]
    out += [
        "",
        f"def dump_{i}(rows: list[{name}]) -> str:",
        '    """Serialise rows as JSON lines."""',
        '    return "\\n".join(json.dumps(r.__dict__) for r in rows)',
        "",
    ]
    return "\n".join(out)


def make_context(target: int = CONTEXT_BYTES, seed: int = 5) -> tuple[list[Item], dict[str, str]]:
    """~`target` bytes of project files in fenced blocks, as 4 user messages (input_text parts)."""
    rng = random.Random(seed)
    files: dict[str, str] = {}
    size = 0
    while size < target:
        i = len(files)
        path = f"src/pkg{i % 7}/module_{i}.py"
        files[path] = _source_file(i, rng)
        size += len(files[path]) + len(path) + 20
    paths = sorted(files)
    messages: list[Item] = []
    for k in range(4):
        blocks = [f"```python path={p}\n{files[p]}```" for p in paths[k::4]]
        text = f"Project context, part {k + 1} of 4:\n\n" + "\n\n".join(blocks)
        part = {"type": "input_text", "text": text}
        messages.append({"type": "message", "role": "user", "content": [part]})
    return messages, files


TASK: Item = {
    "type": "message",
    "role": "user",
    "content": [
        {
            "type": "input_text",
            "text": (
                "The counts from process_* are off by one when `limit` equals the number of rows. Find the cause, "
                "patch it, and run the tests that cover it."
            ),
        }
    ],
}


def tool_output(call: Mapping[str, Any], k: int, files: Mapping[str, str]) -> Item:
    """A realistic function_call_output of a few hundred bytes for call number `k`."""
    paths = sorted(files)
    path = paths[(k * 7) % len(paths)]
    name = call.get("name")
    if name == "read_file":
        text = files[path][:360]
    elif name == "search":
        hits = [f"{paths[(k + j) % len(paths)]}:{12 + 9 * j}:        if n >= limit:" for j in range(6)]
        text = "\n".join(hits)
    elif name == "apply_patch":
        text = (
            f"Applied patch to {path}: 1 file changed, 1 insertion(+), 1 deletion(-).\n"
            f"@@ -18,7 +18,7 @@\n-        if n >= limit:\n+        if n > limit:\n"
            "Ledger updated; the file is now at version " + str(k + 2) + "."
        )
    else:
        bar = "=" * 30
        text = (
            f"{bar} test session starts {bar}\ncollected {12 + k} items\n\n"
            f"tests/test_module_{k}.py ............ [100%]\n\n{bar} {12 + k} passed in 0.{k + 3}1s {bar}"
        )
    return {"type": "function_call_output", "call_id": call["call_id"], "output": text}


@dataclass
class Rollout:
    seconds: float
    bytes_up: int
    calls: int
    requests: int
    answer_chars: int


def _calls_in(output: Any) -> list[Mapping[str, Any]]:
    return [i for i in output if isinstance(i, Mapping) and i.get("type") == "function_call"]


def _answer_chars(output: Any) -> int:
    n = 0
    for item in output:
        if isinstance(item, Mapping) and item.get("type") == "message":
            n += sum(len(p.get("text", "")) for p in item.get("content", []) if isinstance(p, Mapping))
    return n


async def ws_rollout(srv: _Server, context: list[Item], files: Mapping[str, str]) -> Rollout:
    """WebSocket mode through the app's ResponsesSession: warm-up with the context, then increments."""
    t0 = time.perf_counter()
    session = ResponsesSession(Endpoint(srv.url, srv.token, model=MODEL))
    try:
        warm = await session.run_turn(context, generate=False, settings=SETTINGS)
        if not warm.ok:
            raise RuntimeError(f"warm-up failed: {warm.error}")
        new: list[Item] = [TASK]
        calls = requests = 0
        while True:
            res = await session.run_turn(new, settings=SETTINGS)
            requests += 1
            if not res.ok or res.transport != "websocket":
                raise RuntimeError(f"WS turn {requests} failed ({res.transport}): {res.error}")
            got = _calls_in(res.output)
            if not got:
                answer = _answer_chars(res.output)
                break
            new = [tool_output(c, calls + j, files) for j, c in enumerate(got)]
            calls += len(got)
        seconds = time.perf_counter() - t0
        if session.connections != 1 or session.http_turns:
            raise RuntimeError("the WS rollout reconnected or fell back to HTTP; figures would be wrong")
        return Rollout(seconds, session.bytes_sent, calls, requests, answer)
    finally:
        await session.aclose()


async def http_rollout(srv: _Server, context: list[Item], files: Mapping[str, str]) -> Rollout:
    """A stateless client: every turn POSTs the full input (context + all items so far), SSE back."""
    t0 = time.perf_counter()
    items: list[Item] = [*context, TASK]
    sent = calls = requests = 0
    async with httpx.AsyncClient(timeout=httpx.Timeout(120.0, connect=10.0)) as client:
        while True:
            body = encode_json({"model": MODEL, "store": False, "stream": True, **SETTINGS, "input": items})
            sent += len(body)
            requests += 1
            final: Mapping[str, Any] | None = None
            async for ev in post_stream(srv.http_url, body, token=srv.token, client=client):
                if isinstance(ev, ResponseCompleted):
                    final = ev.response
                elif event_type(ev) in TERMINAL:
                    raise RuntimeError(f"HTTP turn {requests} ended with {event_type(ev)}: {ev}")
            if final is None:
                raise RuntimeError(f"HTTP turn {requests} ended without response.completed")
            output = list(final.get("output") or [])
            items += output
            got = _calls_in(output)
            if not got:
                answer = _answer_chars(output)
                break
            items += [tool_output(c, calls + j, files) for j, c in enumerate(got)]
            calls += len(got)
    return Rollout(time.perf_counter() - t0, sent, calls, requests, answer)


async def bench_rollout(srv: _Server, reps: int) -> tuple[list[Rollout], list[Rollout], int]:
    context, files = make_context()
    ctx_bytes = len(encode_json(context))
    await ws_rollout(srv, context, files)  # untimed: imports, caches, first connections
    await http_rollout(srv, context, files)
    ws: list[Rollout] = []
    http: list[Rollout] = []
    for rep in range(reps):
        order = (ws_rollout, http_rollout) if rep % 2 == 0 else (http_rollout, ws_rollout)
        for fn in order:
            gc.collect()
            (ws if fn is ws_rollout else http).append(await fn(srv, context, files))
    for r in (*ws, *http):
        if r.calls != CALLS or r.answer_chars == 0:
            raise RuntimeError(
                f"rollout made {r.calls} tool calls (want {CALLS}), answer {r.answer_chars} chars"
            )
    return ws, http, ctx_bytes


# ---- (b) one long delta stream -------------------------------------------------------------------


def _long_input(n: int) -> list[Item]:
    return [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": f"/long {n}"}]}]


async def ours_stream(srv: _Server, n: int) -> tuple[int, float]:
    """ClientSession.receive_frame over WsTransport: (events, seconds from send to completed)."""
    ws = await WsTransport.open(srv.url, token=srv.token)
    try:
        cs = ClientSession()
        frame = cs.create(_long_input(n), model=MODEL, store=False)
        assert isinstance(frame, bytes)  # a session without rebuilds gives the frame itself
        count = 0
        t0 = time.perf_counter()
        await ws.send(frame)
        while True:
            raw = await ws.recv()
            if raw is None:
                raise RuntimeError("socket closed mid-stream")
            cs.receive_frame(raw)
            count += len(cs.events_received())
            outs = cs.outcomes()
            if outs:
                if not isinstance(outs[0], Completed):
                    raise RuntimeError(f"stream ended with {outs[0]}")
                return count, time.perf_counter() - t0
    finally:
        await ws.aclose()


async def session_stream(srv: _Server, n: int) -> tuple[int, float]:
    """The app's whole path: ResponsesSession.run_turn with an on_event callback."""
    session = ResponsesSession(Endpoint(srv.url, srv.token, model=MODEL))
    count = 0

    def on_event(_ev: ServerEvent) -> None:
        nonlocal count
        count += 1

    try:
        await session.run_turn(_long_input(1), on_event=on_event)  # connect outside the timing
        count = 0
        t0 = time.perf_counter()
        res = await session.run_turn(_long_input(n), on_event=on_event)
        dt = time.perf_counter() - t0
        if not res.ok:
            raise RuntimeError(f"long turn failed: {res.error}")
        return count, dt
    finally:
        await session.aclose()


async def sdk_stream(srv: _Server, n: int) -> tuple[int, float]:
    """The official SDK: responses.connect(), iterate events until response.completed."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=srv.base_url + "/v1", api_key=srv.token, max_retries=0)
    try:
        async with client.responses.connect() as conn:
            count = 0
            t0 = time.perf_counter()
            await conn.response.create(model=MODEL, input=cast(Any, _long_input(n)), store=False)
            async for ev in conn:
                count += 1
                if ev.type in TERMINAL:
                    if ev.type != "response.completed":
                        raise RuntimeError(f"SDK stream ended with {ev.type}")
                    return count, time.perf_counter() - t0
            raise RuntimeError("SDK connection closed mid-stream")
    finally:
        await client.close()


async def record_frames(srv: _Server, n: int) -> tuple[list[bytes], float]:
    """Raw drain (websockets recv, no parsing): the frames, and seconds from send to the terminal one."""
    headers = {"Authorization": f"Bearer {srv.token}"}
    async with ws_connect(srv.url, additional_headers=headers, max_size=None, compression=None) as conn:
        frames: list[bytes] = []
        t0 = time.perf_counter()
        frame = ClientSession().create(_long_input(n), model=MODEL, store=False)
        assert isinstance(frame, bytes)  # a session without rebuilds gives the frame itself
        await conn.send(frame, text=True)
        while True:
            raw = await conn.recv(decode=False)  # bytes, as the SDK receives them
            frames.append(raw)
            head = raw[:40]  # msgspec writes the `type` tag first
            if b'"type":"response.completed"' in head or b'"type":"error"' in head:
                return frames, time.perf_counter() - t0


def parse_ours(frames: list[bytes]) -> tuple[int, float]:
    """Offline: codec.decode_server + ClientSession bookkeeping per frame, as in the live loop."""
    cs = ClientSession()
    cs.create(_long_input(1), model=MODEL, store=False)
    count = 0
    t0 = time.perf_counter()
    for f in frames:
        cs.receive_frame(f)
        count += len(cs.events_received())
        cs.outcomes()
    return count, time.perf_counter() - t0


def parse_sdk(frames: list[bytes]) -> tuple[int, float]:
    """Offline: the SDK's own AsyncResponsesConnection.parse_event (json.loads + its model
    construction) per frame. parse_event does not touch `self`, so it is called unbound."""
    from openai.resources.responses.responses import AsyncResponsesConnection

    parse = AsyncResponsesConnection.parse_event
    count = 0
    t0 = time.perf_counter()
    for f in frames:
        parse(cast(Any, None), f)
        count += 1
    return count, time.perf_counter() - t0


async def _alternate(
    runs: dict[str, Callable[[], Awaitable[tuple[int, float]]]], reps: int
) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = {k: [] for k in runs}
    names = list(runs)
    for rep in range(reps):
        for name in names[rep % len(names) :] + names[: rep % len(names)]:  # rotate who goes first
            gc.collect()
            out[name].append(await runs[name]())
    return out


def _rate(results: list[tuple[int, float]]) -> float:
    return _median([n / dt for n, dt in results])


async def bench_stream(srv: _Server, n: int, reps: int) -> dict[str, float]:
    await ours_stream(srv, 2000)  # untimed warm-up of each client
    await sdk_stream(srv, 2000)
    runs: dict[str, Callable[[], Awaitable[tuple[int, float]]]] = {
        "raw": lambda: _raw(srv, n),
        "ours": lambda: ours_stream(srv, n),
        "session": lambda: session_stream(srv, n),
        "sdk": lambda: sdk_stream(srv, n),
    }
    live = await _alternate(runs, reps)
    counts = {k: {c for c, _ in v} for k, v in live.items()}
    if len(set().union(*counts.values())) != 1:
        raise RuntimeError(f"clients saw different event counts: {counts}")
    frames, _ = await record_frames(srv, n)
    offline: dict[str, list[tuple[int, float]]] = {"ours": [], "sdk": []}
    for rep in range(reps):
        for name in ("ours", "sdk") if rep % 2 == 0 else ("sdk", "ours"):
            gc.collect()
            offline[name].append(parse_ours(frames) if name == "ours" else parse_sdk(frames))
    out = {f"live_{k}": _rate(v) for k, v in live.items()}
    out.update({f"parse_{k}": _rate(v) for k, v in offline.items()})
    out["events"] = float(next(iter(counts["ours"])))
    out["frame_bytes"] = float(sum(len(f) for f in frames))
    return out


async def _raw(srv: _Server, n: int) -> tuple[int, float]:
    frames, dt = await record_frames(srv, n)
    return len(frames), dt


# ---- entry points --------------------------------------------------------------------------------


async def _main(quick: bool) -> list[Row]:
    reps = 2 if quick else REPS
    n = 20_000 if quick else 60_000  # the SDK parses ~6-13k events/s: 60k keeps the module near 1 min
    rows: list[Row] = []
    async with _child_server(CALLS) as srv:
        t_a = time.perf_counter()
        ws, http, ctx_bytes = await bench_rollout(srv, 2 if quick else ROLLOUT_REPS)
        ws_t, http_t = _median([r.seconds for r in ws]), _median([r.seconds for r in http])
        ws_b, http_b = _median([r.bytes_up for r in ws]), _median([r.bytes_up for r in http])
        steady_ws = ws_b - ctx_bytes
        print(
            f"(a) agent rollout: {CALLS} tool calls + final answer = {ws[0].requests} requests, "
            f"context {ctx_bytes / 1e3:.0f} KB, {len(TOOLS)} tools, medians of {len(ws)} "
            f"({time.perf_counter() - t_a:.1f} s)"
        )
        print(
            f"  wall time   WS incremental {ws_t * 1e3:8.1f} ms   HTTP full resend {http_t * 1e3:8.1f} ms "
            f"-> {1 - ws_t / http_t:.0%} less (target >= 50%)"
        )
        print(
            f"  bytes up    WS incremental {ws_b / 1e3:8.1f} KB   HTTP full resend {http_b / 1e3:8.1f} KB "
            f"-> {http_b / ws_b:.1f}x fewer (target >= 20x)"
        )
        print(
            f"  bytes up after the one-time context upload: WS {steady_ws / 1e3:.1f} KB "
            f"({steady_ws / ws[0].requests:.0f} B/request) vs HTTP {(http_b - ctx_bytes) / 1e3:.0f} KB "
            f"-> {(http_b - ctx_bytes) / steady_ws:.0f}x fewer; ceiling for the totals with "
            f"{ws[0].requests} requests is < {ws[0].requests}x"
        )
        rows += [
            {
                "name": "protocol: 20-call rollout wall time, WS vs HTTP resend (target ratio <=0.50)",
                "value": ws_t * 1e3,
                "unit": "ms",
                "baseline": http_t * 1e3,
                "ratio": ws_t / http_t,
            },
            {
                "name": "protocol: 20-call rollout bytes up, WS vs HTTP resend (target ratio <=0.05)",
                "value": ws_b / 1e3,
                "unit": "KB",
                "baseline": http_b / 1e3,
                "ratio": ws_b / http_b,
            },
            {
                "name": "protocol: 20-call rollout bytes up after context upload, WS vs HTTP",
                "value": steady_ws / 1e3,
                "unit": "KB",
                "baseline": (http_b - ctx_bytes) / 1e3,
                "ratio": steady_ws / (http_b - ctx_bytes),
            },
        ]
        t_b = time.perf_counter()
        s = await bench_stream(srv, n, reps)
        print(
            f"(b) one long stream: {s['events']:,.0f} events ({s['frame_bytes'] / 1e6:.1f} MB of frames), "
            f"medians of {reps} ({time.perf_counter() - t_b:.1f} s)"
        )
        print(f"  live events/s: raw drain (no parsing, the server's ceiling) {s['live_raw']:9,.0f}")
        print(
            f"                 ours: ClientSession + WsTransport           {s['live_ours']:9,.0f}"
            f"   = {s['live_ours'] / s['live_sdk']:.2f}x SDK (target >= 3x)"
        )
        print(
            f"                 ours: ResponsesSession.run_turn (app path)  {s['live_session']:9,.0f}"
            f"   = {s['live_session'] / s['live_sdk']:.2f}x SDK"
        )
        print(f"                 SDK responses.connect()                     {s['live_sdk']:9,.0f}")
        capped = s["live_ours"] >= 0.8 * s["live_raw"]
        if capped:
            print(
                "  note: ours runs at >= 80% of the raw drain, so the server (not our parser) limits it; "
                "see the offline parse rates"
            )
        print(
            f"  offline parse of the same frames: ours {s['parse_ours']:,.0f} ev/s   "
            f"SDK parse_event {s['parse_sdk']:,.0f} ev/s   -> {s['parse_ours'] / s['parse_sdk']:.1f}x"
        )
        rows += [
            {
                "name": "protocol: long stream events/s, ours (ClientSession+WS) vs SDK (target ratio >=3)",
                "value": s["live_ours"],
                "unit": "ev/s",
                "baseline": s["live_sdk"],
                "ratio": s["live_ours"] / s["live_sdk"],
            },
            {
                "name": "protocol: long stream events/s, ResponsesSession.run_turn vs SDK",
                "value": s["live_session"],
                "unit": "ev/s",
                "baseline": s["live_sdk"],
                "ratio": s["live_session"] / s["live_sdk"],
            },
            {
                "name": "protocol: long stream events/s, raw drain (server ceiling)"
                + (" [ours capped by it]" if capped else ""),
                "value": s["live_raw"],
                "unit": "ev/s",
                "baseline": None,
                "ratio": None,
            },
            {
                "name": "protocol: parse only events/s, ours (codec+ClientSession) vs SDK parse_event",
                "value": s["parse_ours"],
                "unit": "ev/s",
                "baseline": s["parse_sdk"],
                "ratio": s["parse_ours"] / s["parse_sdk"],
            },
        ]
    sys.stdout.flush()
    return rows


def run(quick: bool = False) -> list[Row]:
    """Rows for `make bench`; baselines are the alternatives measured in the same run."""
    return asyncio.run(_main(quick))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repetitions and a shorter stream")
    args = ap.parse_args(argv)
    run(args.quick)


if __name__ == "__main__":
    main()
