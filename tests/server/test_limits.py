"""Server limits (issue 11): floods of idle sockets, slow headers and bodies, concurrent uploads, bad
Authorization bytes. The big flood (1,100 sockets, past the 1,024 fd limit) is a row of the soak
(`tests/reliability/soak.py`); here a few hundred keep CI light."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from app.server.app import STATE, RunningServer, run_server
from app.server.engines.scripted import ScriptedEngine
from app.server.limits import ConnectionGuard, UploadBudget
from tests.conftest import wait_until

TOKEN = "limits-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@contextlib.asynccontextmanager
async def serving(**limits: Any) -> AsyncIterator[RunningServer]:
    async with run_server(ScriptedEngine(rate_tps=0), token=TOKEN, **limits) as srv:
        yield srv


async def ask(http: aiohttp.ClientSession, srv: RunningServer, text: str) -> int:
    async with http.post(srv.http_url, json={"model": "m", "input": text}, headers=AUTH) as resp:
        await resp.read()
        return resp.status


async def raw(srv: RunningServer, data: bytes = b"") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    if data:
        writer.write(data)
        await writer.drain()
    return reader, writer


@pytest.mark.asyncio
async def test_idle_flood_never_locks_out_an_authenticated_client(caplog: pytest.LogCaptureFixture) -> None:
    """300 idle unauthenticated sockets against a pending cap of 64: every authenticated request in
    between is answered, the oldest idle sockets are dropped, and almost nothing is logged."""
    caplog.set_level(logging.DEBUG)
    flood: list[asyncio.StreamWriter] = []
    async with serving(max_pending_connections=64, max_pending_per_client=64) as srv:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
            answered = 0
            for batch in range(6):
                for _ in range(50):
                    _, writer = await raw(srv)
                    flood.append(writer)
                assert await ask(http, srv, f"still there? {batch}") == 200
                answered += 1
            assert answered == 6
            assert srv.guard.pending <= 64
            assert srv.guard.stats.dropped_pending_cap >= 300 - 64
        for writer in flood:
            writer.close()
    noisy = [r for r in caplog.records if r.name.startswith(("aiohttp", "app.server", "asyncio"))]
    assert len(noisy) < 20, [r.getMessage() for r in noisy[:5]]


@pytest.mark.asyncio
async def test_a_connection_that_never_authenticates_is_dropped() -> None:
    """Slow or missing headers: the connection is closed after the header timeout."""
    async with serving(header_timeout_s=0.2) as srv:
        reader, writer = await raw(srv, b"POST /v1/responses HTTP/1.1\r\nHost: x\r\n")  # headers never end
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()
        assert srv.guard.stats.dropped_header_timeout == 1


@pytest.mark.asyncio
async def test_non_ascii_authorization_is_a_clear_401() -> None:
    """Non-ASCII bytes in Authorization: 401 with words, never a 500."""
    async with serving() as srv:
        request = (
            b"POST /v1/responses HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xe9\xff\xfe\r\n"
            b"Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
        )
        reader, writer = await raw(srv, request)
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 401"), head
        assert json.loads(body)["error"]["code"] == "invalid_api_key"


@pytest.mark.asyncio
async def test_uploads_share_a_budget_and_a_slow_body_times_out() -> None:
    """While one body holds the upload budget, another upload is refused (503 + Retry-After); the slow
    body itself gets 408 once the body timeout passes."""
    async with serving(upload_budget_bytes=1000, body_timeout_s=0.3) as srv:
        head = (
            f"POST /v1/responses HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Content-Type: application/json\r\nContent-Length: 900\r\n\r\n"
        ).encode()
        reader, writer = await raw(srv, head + b'{"model":')  # the rest never comes
        await wait_until(lambda: srv.app[STATE].uploads.in_use == 900)
        async with aiohttp.ClientSession() as http:
            body = json.dumps({"model": "m", "input": "x" * 200})
            async with http.post(srv.http_url, data=body, headers=AUTH) as resp:
                assert resp.status == 503 and resp.headers["Retry-After"] == "1"
                assert (await resp.json())["error"]["code"] == "server_busy"
            answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
            writer.close()
            await writer.wait_closed()
            assert await ask(http, srv, "after") == 200  # the budget was given back


def test_upload_budget_and_guard_counts() -> None:
    """The budget admits one body bigger than itself when idle; the guard drops the oldest pending."""
    budget = UploadBudget(100)
    assert budget.reserve(150) and not budget.reserve(1)
    budget.release(150)
    assert budget.reserve(60) and budget.reserve(40) and not budget.reserve(1) and budget.refused == 2

    class T:
        def __init__(self) -> None:
            self.aborted = False

        def get_extra_info(self, name: str) -> Any:
            return ("10.0.0.1", 5)

        def abort(self) -> None:
            self.aborted = True

    guard = ConnectionGuard(max_pending=2, max_pending_per_client=2, max_per_client=1)
    ts = [T() for _ in range(3)]
    for i, t in enumerate(ts):
        guard.connection_made(i, t)
    assert [t.aborted for t in ts] == [True, False, False] and guard.pending == 2
    assert guard.authenticate(1) and not guard.authenticate(2)  # one authenticated per client
    guard.connection_lost(1)
    assert guard.authenticated == 0
