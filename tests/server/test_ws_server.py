"""The WebSocket-only server on `websockets` (the app's in-process host): what it refuses before the
upgrade, its connection limits and what differs from aiohttp's route. The wire after the upgrade is
tested against both adapters in test_app.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from app.server.engines.scripted import ScriptedEngine
from app.server.ws_server import RunningWsServer, run_ws_server
from tests.conftest import wait_until

pytestmark = pytest.mark.asyncio

TOKEN = "ws-server-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
UPGRADE = (
    "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
)


@contextlib.asynccontextmanager
async def serving(**limits: Any) -> AsyncIterator[RunningWsServer]:
    async with run_ws_server(ScriptedEngine(rate_tps=0), token=TOKEN, **limits) as srv:
        yield srv


async def exchange(srv: RunningWsServer, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw request bytes; the status, headers and body of the answer (the server closes after it)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    try:
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


def get(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode()


@pytest.mark.parametrize(
    "auth",
    [
        "",
        "Authorization: Bearer wrong\r\n",
        f"Authorization: Basic {TOKEN}\r\n",
        f"Authorization: {TOKEN}\r\n",
        f"Authorization: Bearer {TOKEN}X\r\n",
        f"Authorization: Bearer {TOKEN}\r\nAuthorization: Bearer other\r\n",  # two: which one counts?
    ],
)
async def test_an_upgrade_without_exactly_the_token_is_refused_401_with_a_json_error(auth: str) -> None:
    async with serving() as srv:
        status, headers, body = await exchange(srv, get("/v1/responses", UPGRADE + auth))
        assert status == 401
        assert headers["content-type"] == "application/json"
        error = json.loads(body)["error"]
        assert error["code"] == "invalid_api_key" and error["type"] == "authentication_error"
        assert srv.stats.connections == 0 and not srv.state.connections


async def test_non_ascii_authorization_is_a_clear_401_never_a_500() -> None:
    async with serving() as srv:
        request = b"GET /v1/responses HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xe9\xff\xfe\r\n\r\n"
        status, _, body = await exchange(srv, request)
        assert status == 401 and json.loads(body)["error"]["code"] == "invalid_api_key"


async def test_other_refusals_answer_as_the_aiohttp_route_does() -> None:
    """Plain GET without an upgrade: 400; WebSocket mode off: 426; other paths: 404; /healthz: no auth."""
    async with serving() as srv:
        status, _, body = await exchange(srv, get("/v1/responses", f"Authorization: Bearer {TOKEN}\r\n"))
        assert status == 400 and json.loads(body)["error"]["code"] == "websocket_upgrade_required"
        status, _, body = await exchange(
            srv, get("/v1/other", UPGRADE + f"Authorization: Bearer {TOKEN}\r\n")
        )
        assert status == 404 and json.loads(body)["error"]["code"] == "not_found"
        status, _, body = await exchange(srv, get("/healthz"))
        assert status == 200 and json.loads(body) == {"ok": True, "engine": "scripted"}
        srv.config.websocket = False
        status, _, body = await exchange(
            srv, get("/v1/responses", UPGRADE + f"Authorization: Bearer {TOKEN}\r\n")
        )
        assert status == 426 and json.loads(body)["error"]["code"] == "websocket_disabled"


async def test_http_mode_is_not_served_a_post_is_closed_unanswered() -> None:
    """WebSocket mode only: `slipstream serve` (aiohttp) keeps HTTP/SSE; here websockets' parser
    takes nothing but a GET and closes the connection without an answer."""
    async with serving() as srv:
        body = b'{"model": "m", "input": "hi"}'
        request = (
            f"POST /v1/responses HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        writer.write(request)
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()
        assert srv.stats.connections == 0 and srv.stats.responses == 0


async def test_a_client_over_its_connection_cap_gets_429() -> None:
    async with serving(max_connections_per_client=1) as srv, aiohttp.ClientSession() as http:
        async with http.ws_connect(srv.url, headers=AUTH):
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                await http.ws_connect(srv.url, headers=AUTH)
            assert info.value.status == 429
        await wait_until(lambda: srv.guard.authenticated == 0, timeout=10)
        async with http.ws_connect(srv.url, headers=AUTH):  # the slot is free again
            assert srv.guard.stats.refused_per_client == 1


async def test_a_connection_that_never_sends_its_request_is_dropped() -> None:
    async with serving(header_timeout_s=0.2) as srv:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        writer.write(b"GET /v1/responses HTTP/1.1\r\nHost: x\r\n")  # the headers never end
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()
        assert srv.guard.stats.dropped_header_timeout == 1


async def test_idle_flood_never_locks_out_an_authenticated_client(caplog: pytest.LogCaptureFixture) -> None:
    """200 idle sockets against a pending cap of 32: every upgrade in between succeeds, the oldest
    idle sockets are dropped, and almost nothing is logged."""
    caplog.set_level(logging.DEBUG)
    flood: list[asyncio.StreamWriter] = []
    async with serving(max_pending_connections=32, max_pending_per_client=32) as srv:
        async with aiohttp.ClientSession() as http:
            for _ in range(4):
                for _ in range(50):
                    flood.append((await asyncio.open_connection("127.0.0.1", srv.port))[1])
                async with http.ws_connect(srv.url, headers=AUTH) as ws:
                    await ws.send_str(json.dumps({"type": "response.create", "model": "m", "input": "hi"}))
                    while json.loads((await asyncio.wait_for(ws.receive(), 10)).data)["type"] != (
                        "response.completed"
                    ):
                        pass
            assert srv.guard.pending <= 32
            assert srv.guard.stats.dropped_pending_cap >= 200 - 32
        for writer in flood:
            writer.close()
    noisy = [
        r for r in caplog.records if r.name.startswith(("websockets", "slipstream", "app.server", "asyncio"))
    ]
    assert len(noisy) < 20, [r.getMessage() for r in noisy[:5]]


async def test_with_deflate_allowed_a_compressing_client_gets_the_same_text() -> None:
    """ws_deflate: frames go one by one through websockets' compressor, never raw to the socket."""
    async with serving(ws_deflate=True) as srv, aiohttp.ClientSession() as http:
        texts = []
        for compress in (15, 0):
            async with http.ws_connect(srv.url, headers=AUTH, compress=compress) as ws:
                assert bool(ws.compress) == bool(compress)
                await ws.send_str(json.dumps({"type": "response.create", "model": "m", "input": "/long 200"}))
                while True:
                    event = json.loads((await asyncio.wait_for(ws.receive(), 10)).data)
                    if event["type"] == "response.completed":
                        break
                texts.append(event["response"]["output"][0]["content"][0]["text"])
        assert texts[0] == texts[1] and len(texts[0]) > 200


async def test_only_loopback_addresses_are_served() -> None:
    for host in ("0.0.0.0", "::", "example.com"):
        with pytest.raises(ValueError, match="loopback"):
            async with run_ws_server(ScriptedEngine(rate_tps=0), host=host, token=TOKEN):
                pass


async def test_the_apps_client_sees_the_cancel_event_named_and_a_turn_streams() -> None:
    """The app's own client (websockets) against this server: the 101 carries the optional client
    events (Stop sends `response.cancel` only when named), and a turn streams to its end."""
    from app.adapters.ws_client import WsTransport
    from app.protocol.events import CLIENT_EVENTS_HEADER

    async with serving() as srv:
        ws = await WsTransport.open(srv.url, token=TOKEN)
        try:
            assert ws.header(CLIENT_EVENTS_HEADER) == "response.cancel"
            assert await ws.send(json.dumps({"type": "response.create", "model": "m", "input": "hi"}))
            types: list[str] = []
            while not types or types[-1] != "response.completed":
                frame = await asyncio.wait_for(ws.recv(), 10)
                assert frame is not None
                types.append(json.loads(frame)["type"])
            assert types[0] == "response.created"
        finally:
            await ws.aclose()
