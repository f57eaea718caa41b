"""A 20-turn agent rollout through the Chat Completions bridge vs a client talking to the upstream directly.

Upstream: llama-cpp-python's server with the tiny random-weight GGUF (tests/server/fixtures), when
llama-cpp-python is installed; otherwise an in-process fake upstream replaying a recorded stream
(rows are then named `..._fake`), which isolates the bridge's own overhead.

- bridge: `slipstream serve` in-process with the chat engine; one WebSocket; each turn sends only its
  new input with previous_response_id (a tool call every other turn, then its result).
- direct (baseline): the same turns as Chat Completions requests carrying the whole history.

Rows: median time to first token and median turn time, ms; ratio = bridge / direct.
Run: `python -m tests.bench bench_bridge`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from aiohttp import web

from app.server.app import run_server
from app.server.engines.chat_completions import ChatCompletionsEngine
from app.server.engines.chat_render import tools_to_chat
from tests.server.fixtures.llama_server import llama_cpp_server

TURNS = 20
TOOL = {
    "type": "function",
    "name": "read_file",
    "parameters": {
        "type": "object",
        "properties": {"path": {"type": "string", "enum": ["a.py"]}},
        "required": ["path"],
    },
}
FIXTURE = Path(__file__).resolve().parents[1] / "server" / "engines" / "fixtures" / "llama_server_text.sse"


@contextlib.asynccontextmanager
async def _upstream() -> AsyncIterator[tuple[str, str, dict[str, Any]]]:
    """(kind, base URL, extra body) of a running upstream."""
    try:
        import llama_cpp.server  # noqa: F401

        from tests.server.fixtures.make_tiny_gguf import token_id, write
    except ImportError:
        raw = FIXTURE.read_bytes()

        async def chat(request: web.Request) -> web.StreamResponse:
            await request.read()
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            await resp.write(raw)
            return resp

        app = web.Application()
        app.router.add_post("/v1/chat/completions", chat)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        try:
            yield "fake", f"http://127.0.0.1:{runner.addresses[0][1]}", {}
        finally:
            await runner.cleanup()
        return
    tmp = Path(tempfile.mkdtemp())
    model = write(tmp / "tiny.gguf")
    async with llama_cpp_server(model, "--n_ctx", "4096", "--n_threads", "1") as url:
        yield "tiny_gguf", url, {"logit_bias": {str(token_id("o")): 100.0}}


def _user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


async def _bridge(url: str, extra: dict[str, Any]) -> tuple[list[float], list[float]]:
    engine = ChatCompletionsEngine(url, extra_body=extra)
    ttft: list[float] = []
    total: list[float] = []
    async with (
        run_server(engine, token="b") as srv,
        aiohttp.ClientSession() as http,
        http.ws_connect(srv.url, headers={"Authorization": "Bearer b"}, max_msg_size=0) as ws,
    ):
        prev: str | None = None
        pending: list[dict[str, Any]] = [_user("Start the task. " * 4)]
        for i in range(TURNS):
            tool_turn = i % 2 == 0
            create: dict[str, Any] = {
                "type": "response.create",
                "model": "tiny",
                "input": pending,
                "tools": [TOOL],
                "temperature": 0,
                "max_output_tokens": 24 if tool_turn else 8,
            }
            create["tool_choice"] = {"type": "function", "name": "read_file"} if tool_turn else "none"
            if prev:
                create["previous_response_id"] = prev
            t0 = time.perf_counter()
            first = None
            await ws.send_str(json.dumps(create))
            while True:
                event = json.loads((await ws.receive()).data)
                kind = event["type"]
                if first is None and kind.endswith(".delta"):
                    first = time.perf_counter() - t0
                if kind in ("response.completed", "response.incomplete", "response.failed", "error"):
                    break
            total.append(time.perf_counter() - t0)
            ttft.append(first if first is not None else total[-1])
            if kind not in ("response.completed", "response.incomplete"):
                raise RuntimeError(f"bridge turn {i} failed: {event}")
            prev = event["response"]["id"]
            calls = [o for o in event["response"]["output"] if o["type"] == "function_call"]
            pending = [
                {"type": "function_call_output", "call_id": c["call_id"], "output": "x = 1"} for c in calls
            ]
            pending.append(_user(f"Next {i}."))
    return ttft, total


async def _direct(url: str, extra: dict[str, Any]) -> tuple[list[float], list[float]]:
    ttft: list[float] = []
    total: list[float] = []
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Start the task. " * 4}]
    tools = tools_to_chat([TOOL])
    async with httpx.AsyncClient(timeout=120) as client:
        for i in range(TURNS):
            tool_turn = i % 2 == 0
            body = {
                "model": "tiny",
                "messages": messages,
                "tools": tools,
                "stream": True,
                "temperature": 0,
                "max_tokens": 24 if tool_turn else 8,
                **extra,
                "tool_choice": {"type": "function", "function": {"name": "read_file"}}
                if tool_turn
                else "none",
            }
            t0 = time.perf_counter()
            first = None
            calls: dict[int, dict[str, Any]] = {}
            text = ""
            async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as resp:
                async for line in resp.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[6:])
                    for choice in chunk.get("choices") or []:
                        delta = choice.get("delta") or {}
                        if first is None and (delta.get("content") or delta.get("tool_calls")):
                            first = time.perf_counter() - t0
                        text += delta.get("content") or ""
                        for frag in delta.get("tool_calls") or []:
                            c = calls.setdefault(
                                frag["index"], {"id": frag.get("id"), "name": "", "args": ""}
                            )
                            fn = frag.get("function") or {}
                            c["name"] = c["name"] or fn.get("name") or ""
                            c["args"] += fn.get("arguments") or ""
            total.append(time.perf_counter() - t0)
            ttft.append(first if first is not None else total[-1])
            tool_calls = [
                {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["args"]}}
                for c in calls.values()
            ]
            messages.append(
                {"role": "assistant", "content": text, **({"tool_calls": tool_calls} if tool_calls else {})}
            )
            messages += [
                {"role": "tool", "tool_call_id": c["id"], "content": "x = 1"} for c in calls.values()
            ]
            messages.append({"role": "user", "content": f"Next {i}."})
    return ttft, total


async def _run() -> list[dict[str, Any]]:
    async with _upstream() as (kind, url, extra):
        await _direct(url, extra)  # warm-up: load the model, fill caches
        d_ttft, d_total = await _direct(url, extra)
        b_ttft, b_total = await _bridge(url, extra)
    rows = []
    for name, value, base in (
        ("ttft_median", statistics.median(b_ttft), statistics.median(d_ttft)),
        ("turn_median", statistics.median(b_total), statistics.median(d_total)),
    ):
        ms, base_ms = value * 1000, base * 1000
        rows.append(
            {
                "name": f"bridge_{TURNS}turn_{name}_{kind}",
                "value": ms,
                "unit": "ms",
                "baseline": base_ms,
                "ratio": ms / base_ms if base_ms else None,
            }
        )
    overhead = (statistics.median(b_total) - statistics.median(d_total)) * 1000
    rows.append(
        {
            "name": f"bridge_per_turn_overhead_{kind}",
            "value": overhead,
            "unit": "ms",
            "baseline": None,
            "ratio": None,
        }
    )
    return rows


def run() -> list[dict[str, Any]]:
    """Benchmark rows (see the module docstring)."""
    return asyncio.run(_run())


if __name__ == "__main__":
    for row in run():
        print(row)
