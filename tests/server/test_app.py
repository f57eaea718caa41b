"""The aiohttp server in-process on 127.0.0.1:0, checked with a raw aiohttp client."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from app.server.app import run_server
from app.server.engines.base import EngineOutput, TextDelta, Turn
from app.server.engines.scripted import ScriptedEngine
from app.server.ws_server import run_ws_server
from tests.conftest import wait_until
from tests.server.spec import check_error_body

pytestmark = pytest.mark.asyncio

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TERMINAL = {"response.completed", "response.failed", "response.incomplete"}
# WebSocket mode has two adapters around the same connection pump: aiohttp (`slipstream serve`) and
# websockets (the app's in-process scripted engine); every WebSocket test runs against both.
BACKENDS: dict[str, Any] = {"aiohttp": run_server, "websockets": run_ws_server}
both = pytest.mark.parametrize("backend", sorted(BACKENDS))

DIFF = "diff --git a/a.py b/a.py\n--- a/a.py\n+++ b/a.py\n@@ -1 +1,2 @@\n-x = 1\n+x = 2\n+y = 3\n"


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def create(**fields: Any) -> str:
    return json.dumps({"type": "response.create", "model": "scripted", **fields})


async def until_terminal(ws: aiohttp.ClientWebSocketResponse, count: int = 1) -> list[dict[str, Any]]:
    """Read events until `count` terminal events (or errors) arrived."""
    events: list[dict[str, Any]] = []
    done = 0
    while done < count:
        msg = await asyncio.wait_for(ws.receive(), 10)
        assert msg.type is aiohttp.WSMsgType.TEXT, msg
        event = json.loads(msg.data)
        events.append(event)
        if event["type"] in TERMINAL or event["type"] == "error":
            done += 1
    return events


@contextlib.asynccontextmanager
async def served(
    engine: Any = None, backend: str = "aiohttp", **kw: Any
) -> AsyncIterator[tuple[Any, aiohttp.ClientSession]]:
    """A server on 127.0.0.1:0 (aiohttp's unless `backend` says) and an HTTP client session."""
    async with (
        BACKENDS[backend](engine or ScriptedEngine(rate_tps=0), token=TOKEN, **kw) as srv,
        aiohttp.ClientSession() as http,
    ):
        yield srv, http


@contextlib.asynccontextmanager
async def socket_to(
    engine: Any = None, backend: str = "aiohttp", **kw: Any
) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    """A server and one authenticated WebSocket to it."""
    async with served(engine, backend, **kw) as (srv, http), http.ws_connect(srv.url, headers=AUTH) as ws:
        yield ws


def text_of(events: list[dict[str, Any]]) -> str:
    return "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")


@both
async def test_healthz_needs_no_auth(backend: str) -> None:
    """GET /healthz answers without a token and names the engine."""
    async with served(backend=backend) as (srv, http), http.get(f"{srv.base_url}/healthz") as resp:
        assert resp.status == 200
        assert await resp.json() == {"ok": True, "engine": "scripted"}


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}]
)
@both
async def test_wrong_or_missing_token_is_refused_before_upgrade(
    headers: dict[str, str], backend: str
) -> None:
    """No upgrade and no POST without the exact bearer token: 401 with a JSON error."""
    async with served(backend=backend) as (srv, http):
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await http.ws_connect(srv.url, headers=headers)
        assert info.value.status == 401
        async with http.get(srv.url.replace("ws://", "http://", 1), headers=headers) as resp:
            assert resp.status == 401  # the same answer without an upgrade
            body = await resp.json()
            assert body["error"]["code"] == "invalid_api_key"
            assert body["error"]["type"] == "authentication_error"
        if backend == "websockets":
            return  # WebSocket mode only: no POST route
        async with http.post(srv.http_url, json={"model": "m", "input": "x"}, headers=headers) as resp:
            assert resp.status == 401
            body = await resp.json()
            assert body["error"]["code"] == "invalid_api_key"


@both
async def test_websocket_turn_streams_ordered_events(backend: str) -> None:
    """One text turn: standard event order, per-response sequence numbers, text = final output."""
    async with served(backend=backend) as (srv, http):
        headers = {**AUTH, "OpenAI-Beta": "responses_websockets=2026-02-06"}
        async with http.ws_connect(srv.url, headers=headers) as ws:
            await ws.send_str(create(input=[user(DIFF), user("What changed?")], stream=True))
            events = await until_terminal(ws)
    types = [e["type"] for e in events]
    assert types[:5] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
    ]
    assert types[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert all("stream_id" not in e for e in events)
    final = events[-1]["response"]
    text = text_of(events)
    assert final["output"][0]["content"][0]["text"] == text
    assert "`a.py` (+2 -1)" in text and 'You asked: "What changed?"' in text
    assert final["usage"]["output_tokens"] > 0


@both
async def test_bad_frames_get_error_events_and_connection_stays_usable(backend: str) -> None:
    """Malformed JSON, unknown types and binary frames each get an error; a valid create still works."""
    async with socket_to(backend=backend) as ws:
        await ws.send_str("{not json")
        await ws.send_str(json.dumps({"type": "response.append"}))
        await ws.send_bytes(b"\x00\x01")
        codes = []
        for _ in range(3):
            event = json.loads((await asyncio.wait_for(ws.receive(), 10)).data)
            assert event["type"] == "error" and event["error"]["message"]
            codes.append(event["error"]["code"])
        assert codes == ["invalid_json", "unknown_event_type", "binary_frame"]
        await ws.send_str(create(input="still there?"))
        events = await until_terminal(ws)
        assert events[-1]["type"] == "response.completed"


@both
async def test_text_that_is_not_utf8_gets_invalid_json_and_the_socket_stays(backend: str) -> None:
    """Frames are read as bytes and decoded as JSON once (no UTF-8 pass of their own): a text frame
    that is not UTF-8 is one more malformed frame, under either library."""
    async with socket_to(backend=backend) as ws:
        await ws._writer.send_frame(b'{"type": "\xff"}', aiohttp.WSMsgType.TEXT)
        event = json.loads((await asyncio.wait_for(ws.receive(), 10)).data)
        assert event["type"] == "error" and event["error"]["code"] == "invalid_json"
        await ws.send_str(create(input="still there?"))
        assert (await until_terminal(ws))[-1]["type"] == "response.completed"


@both
async def test_oversized_frame_closes_with_1009(backend: str) -> None:
    """A frame above max_frame_bytes closes the socket with 1009 (message too big)."""
    async with socket_to(backend=backend, max_frame_bytes=1024) as ws:
        await ws.send_str(create(input="x" * 4096))
        msg = await asyncio.wait_for(ws.receive(), 10)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == 1009


class GatedEngine:
    """Lane 'a' waits until lane 'b' has started: deadlocks unless lanes run concurrently."""

    name = "gated"

    def __init__(self) -> None:
        self.b_started = asyncio.Event()

    def connect(self) -> GatedEngine:
        return self

    async def aclose(self) -> None:
        pass

    async def run(self, turn: Turn) -> AsyncIterator[EngineOutput]:
        if turn.lane == "b":
            self.b_started.set()
        else:
            await asyncio.wait_for(self.b_started.wait(), 5)
        yield TextDelta(f"lane {turn.lane}")


@both
async def test_lanes_run_concurrently_and_echo_stream_id(backend: str) -> None:
    """Two named lanes overlap; every event of a named lane carries its stream_id."""
    async with socket_to(GatedEngine(), backend) as ws:
        await ws.send_str(create(input="first", stream_id="a"))
        await ws.send_str(create(input="second", stream_id="b"))
        events = await until_terminal(ws, 2)
    by_lane: dict[str, list[dict[str, Any]]] = {"a": [], "b": []}
    for e in events:
        by_lane[e["stream_id"]].append(e)
    for lane, evs in by_lane.items():
        assert evs[-1]["type"] == "response.completed"
        assert text_of(evs) == f"lane {lane}"
    order = [e["stream_id"] for e in events if e["type"] in TERMINAL]
    assert order == ["b", "a"]  # b finished while a was still running


@both
async def test_default_lane_is_fifo(backend: str) -> None:
    """Two creates on the default lane never overlap: the second starts after the first ends."""
    async with socket_to(backend=backend) as ws:
        await ws.send_str(create(input="/long 300"))
        await ws.send_str(create(input="short"))
        events = await until_terminal(ws, 2)
    types = [e["type"] for e in events]
    first_done = types.index("response.completed")
    assert types.index("response.created", 1) > first_done


@both
async def test_warm_up_then_chained_turn_sees_the_context(backend: str) -> None:
    """generate:false completes with no output; a turn chained on it sees the warm-up's files."""
    async with socket_to(backend=backend) as ws:
        await ws.send_str(create(input=[user(DIFF)], generate=False, store=False, instructions="be brief"))
        warm = await until_terminal(ws)
        assert [e["type"] for e in warm] == [
            "response.created",
            "response.in_progress",
            "response.completed",
        ]
        assert warm[-1]["response"]["output"] == []
        warm_id = warm[-1]["response"]["id"]
        await ws.send_str(create(input=[user("Summarise")], previous_response_id=warm_id, store=False))
        events = await until_terminal(ws)
        assert events[-1]["response"]["previous_response_id"] == warm_id
        assert "1 file(s) in 2 message(s)" in text_of(events)
        await ws.send_str(create(input="x", previous_response_id="resp_missing"))
        (error,) = await until_terminal(ws)
        assert error["type"] == "error" and error["error"]["code"] == "previous_response_not_found"


@both
async def test_age_limit_sends_error_and_closes_1001(backend: str) -> None:
    """Past max_age the server sends websocket_connection_limit_reached and closes with 1001."""
    async with socket_to(backend=backend, max_age_s=0.5) as ws:
        await ws.send_str(create(input="quick"))
        assert (await until_terminal(ws))[-1]["type"] == "response.completed"
        msg = await asyncio.wait_for(ws.receive(), 10)
        event = json.loads(msg.data)
        assert event["type"] == "error"
        assert event["error"]["code"] == "websocket_connection_limit_reached"
        msg = await asyncio.wait_for(ws.receive(), 10)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == 1001


class CrashingEngine(ScriptedEngine):
    """Raises mid-stream when the user says 'crash'."""

    def connect(self) -> Any:
        inner = super().connect()

        class Conn:
            async def aclose(self) -> None:
                await inner.aclose()

            async def run(self, turn: Turn) -> AsyncIterator[EngineOutput]:
                async for out in inner.run(turn):
                    yield out
                    if "crash" in json.dumps(list(turn.new_input)):
                        raise RuntimeError("boom")

        return Conn()


@both
async def test_engine_crash_fails_one_response_only(backend: str) -> None:
    """A crashing engine turn ends as response.failed; the same and other connections keep working."""
    async with (
        served(CrashingEngine(rate_tps=0), backend) as (srv, http),
        http.ws_connect(srv.url, headers=AUTH) as ws1,
        http.ws_connect(srv.url, headers=AUTH) as ws2,
    ):
        await ws1.send_str(create(input="crash"))
        await ws2.send_str(create(input="fine"))
        failed = (await until_terminal(ws1))[-1]
        assert failed["type"] == "response.failed"
        assert "boom" in failed["response"]["error"]["message"]
        assert (await until_terminal(ws2))[-1]["type"] == "response.completed"
        await ws1.send_str(create(input="fine now"))
        assert (await until_terminal(ws1))[-1]["type"] == "response.completed"


@both
async def test_client_that_never_reads_is_closed(backend: str) -> None:
    """A peer that stops reading is disconnected once the outbox stays full (memory stays bounded)."""
    async with BACKENDS[backend](
        ScriptedEngine(rate_tps=0), token=TOKEN, high_water_bytes=64 * 1024, stall_timeout_s=0.3
    ) as srv:
        state = srv.state
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, ("127.0.0.1", srv.port))
        key = base64.b64encode(os.urandom(16)).decode()
        handshake = (
            f"GET /v1/responses HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
        )
        await loop.sock_sendall(sock, handshake.encode())
        reply = await asyncio.wait_for(loop.sock_recv(sock, 1024), 10)
        assert reply.startswith(b"HTTP/1.1 101")
        payload = create(input="/long 2000000").encode()
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        header = bytes([0x81, 0x80 | 126]) + len(payload).to_bytes(2, "big") + mask
        await loop.sock_sendall(sock, header + masked)
        await wait_until(lambda: state.stats.connections == 1, timeout=10)
        try:
            await wait_until(lambda: not state.connections, timeout=60)
        finally:
            sock.close()
        assert state.stats.responses == 0  # the turn was cut short, not completed


async def test_http_sse_stream_and_errors() -> None:
    """POST stream:true answers SSE `event:/data:` pairs; bad bodies get JSON errors with a status."""
    async with served() as (srv, http):
        async with http.post(
            srv.http_url, json={"model": "m", "input": "hi", "stream": True}, headers=AUTH
        ) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            raw = (await resp.read()).decode()
        blocks = [b for b in raw.split("\n\n") if b]
        assert blocks[-1] == "data: [DONE]" and raw.endswith("data: [DONE]\n\n")  # the spec's terminator
        events = []
        for block in blocks[:-1]:
            event_line, data_line = block.split("\n")
            event = json.loads(data_line.removeprefix("data: "))
            assert event_line == f"event: {event['type']}"
            events.append(event)
        assert events[0]["type"] == "response.created" and events[-1]["type"] == "response.completed"
        for body in (b"{oops", json.dumps({"model": "m", "input": "x", "stream_id": "a"}).encode()):
            async with http.post(srv.http_url, data=body, headers=AUTH) as resp:
                assert resp.status == 400
                check_error_body(await resp.json())


async def test_http_stream_false_returns_final_response_and_chains() -> None:
    """POST stream:false returns the response object; previous_response_id chains via the store."""
    async with served() as (srv, http):
        async with http.post(srv.http_url, json={"model": "m", "input": [user(DIFF)]}, headers=AUTH) as resp:
            first = await resp.json()
        assert first["status"] == "completed" and first["object"] == "response"
        body = {"model": "m", "input": "next", "previous_response_id": first["id"]}
        async with http.post(srv.http_url, json=body, headers=AUTH) as resp:
            second = await resp.json()
        assert "1 file(s) in 3 message(s)" in second["output"][0]["content"][0]["text"]
        warm = {"model": "m", "input": "ctx", "generate": False}
        async with http.post(srv.http_url, json=warm, headers=AUTH) as resp:
            assert (await resp.json())["output"] == []


@both
async def test_shutdown_closes_sockets_with_1001(backend: str) -> None:
    """Stopping the server closes open WebSockets with 1001 (going away), not a reset."""
    async with aiohttp.ClientSession() as http:
        async with BACKENDS[backend](ScriptedEngine(rate_tps=0), token=TOKEN) as srv:
            ws = await http.ws_connect(srv.url, headers=AUTH)
            await ws.send_str(create(input="hi"))
            await until_terminal(ws)
            receiving = asyncio.create_task(ws.receive())  # a live client keeps reading
        msg = await asyncio.wait_for(receiving, 10)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == 1001
        await ws.close()


class EndlessEngine:
    """The first turn streams five words, then computes "forever" (a long decode step) until it is
    cancelled, counting what it yields; later turns say one word."""

    name = "endless"

    def __init__(self) -> None:
        self.produced: dict[str, int] = {}
        self.closed: dict[str, asyncio.Event] = {}

    def connect(self) -> EndlessEngine:
        return self

    async def aclose(self) -> None:
        pass

    async def run(self, turn: Turn) -> AsyncIterator[EngineOutput]:
        rid = turn.response_id
        first = not self.produced
        self.produced[rid] = 0
        self.closed[rid] = asyncio.Event()
        try:
            while first or self.produced[rid] == 0:
                self.produced[rid] += 1
                yield TextDelta("tick ")
                if self.produced[rid] >= 5:
                    await asyncio.Event().wait()  # busy in the engine: only a cancel ends this
        finally:
            self.closed[rid].set()


@both
async def test_cancel_stops_the_engine_at_once_and_the_chain_continues(backend: str) -> None:
    """response.cancel: the engine generator is closed (no more iterations), the response ends as
    incomplete/cancelled with its partial text, and a create chained on it runs with only the new input."""
    engine = EndlessEngine()
    async with served(engine, backend) as (srv, http), http.ws_connect(srv.url, headers=AUTH) as ws:
        assert ws._response.headers.get("X-Slipstream-Client-Events") == "response.cancel"
        await ws.send_str(create(input="go on forever"))
        seen: list[dict[str, Any]] = []
        # deltas the engine yields without a pause may arrive coalesced: count the text, not events
        while sum(e["delta"].count("tick") for e in seen if e["type"] == "response.output_text.delta") < 5:
            seen.append(json.loads((await asyncio.wait_for(ws.receive(), 10)).data))
        rid = seen[0]["response"]["id"]
        await ws.send_str(json.dumps({"type": "response.cancel", "response_id": rid}))
        events = await until_terminal(ws)
        final = events[-1]
        assert final["type"] == "response.incomplete"
        assert final["response"]["incomplete_details"] == {"reason": "cancelled"}
        await asyncio.wait_for(engine.closed[rid].wait(), 10)  # the generator was closed
        stopped_at = engine.produced[rid]
        assert final["response"]["output"][0]["content"][0]["text"].count("tick") <= stopped_at
        await ws.send_str(create(input="next", previous_response_id=rid))
        nxt = await until_terminal(ws)
        assert nxt[-1]["type"] == "response.completed"
        assert nxt[-1]["response"]["previous_response_id"] == rid
        assert engine.produced[rid] == stopped_at  # not iterated again while the next turn ran
        assert srv.state.connections and not any(c.turns for c in srv.state.connections)


@both
@pytest.mark.parametrize("coalesce_chars", [0, 512])
async def test_unpaced_deltas_are_coalesced_up_to_the_cap(coalesce_chars: int, backend: str) -> None:
    """At the maximum rate the writer takes what the engine produced since its last turn: fewer,
    larger delta events (none over the cap by more than one delta), the same text, sequence numbers
    without gaps. `coalesce_chars=0`: one event per engine delta (4 characters)."""
    async with socket_to(ScriptedEngine(rate_tps=0), backend, coalesce_chars=coalesce_chars) as ws:
        await ws.send_str(create(input="/long 3000"))
        events = await until_terminal(ws)
    assert events[-1]["type"] == "response.completed"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    deltas = [e["delta"] for e in events if e["type"] == "response.output_text.delta"]
    assert "".join(deltas) == events[-1]["response"]["output"][0]["content"][0]["text"]
    if coalesce_chars:
        assert len(deltas) < 3000 // 8 and max(map(len, deltas)) <= coalesce_chars + 4
    else:
        assert max(map(len, deltas)) <= 4 and len(deltas) >= 3000
