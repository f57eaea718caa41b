"""The scripted engine served on a thread of the app's process: same wire, and nothing left after it."""

from __future__ import annotations

import asyncio
import threading

import pytest

from app.server.inprocess import live_servers, start_scripted
from app.services.session import Endpoint, ResponsesSession

pytestmark = pytest.mark.asyncio

USER = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}


def _serve_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "slipstream-serve"]


async def _port_open(url: str) -> bool:
    host, port = url.removeprefix("ws://").split("/", 1)[0].rsplit(":", 1)
    try:
        _, writer = await asyncio.open_connection(host, int(port))
    except OSError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


async def test_a_turn_goes_over_the_same_websocket_protocol_and_aclose_ends_the_thread() -> None:
    server = await start_scripted("in-process-token")
    try:
        assert server.url.startswith("ws://127.0.0.1:") and server.url.endswith("/v1/responses")
        assert server.alive and len(_serve_threads()) == 1 and live_servers() == [server]
        session = ResponsesSession(Endpoint(server.url, server.token))
        assert (await session.run_turn([USER])).ok
        await session.aclose()
        wrong = ResponsesSession(Endpoint(server.url, "not-the-token"), max_attempts=1)
        assert not (await wrong.run_turn([USER])).ok  # the token is checked as by a child
        await wrong.aclose()
    finally:
        await server.aclose()
    assert not server.alive and _serve_threads() == [] and live_servers() == []
    assert not await _port_open(server.url)
    await server.aclose()  # a second close is harmless


async def test_a_start_cancelled_while_coming_up_leaves_no_thread() -> None:
    task = asyncio.ensure_future(start_scripted("cancelled-token"))
    await asyncio.sleep(0)  # the thread is started, not listening yet
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(500):  # it stops by itself once up (bounded wait, no timing asserted)
        if not _serve_threads():
            break
        await asyncio.sleep(0.01)
    assert _serve_threads() == [] and live_servers() == []
