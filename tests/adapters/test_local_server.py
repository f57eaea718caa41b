"""Spawning `slipstream serve` as a child: the URL and token come back, whatever the token looks like."""

from __future__ import annotations

import pytest

from app.adapters.local_server import ServerHandle, start_local_server
from app.services.session import Endpoint, ResponsesSession

pytestmark = pytest.mark.asyncio


async def _one_turn_then_close(server: ServerHandle) -> None:
    try:
        session = ResponsesSession(Endpoint(server.url, server.token))
        user = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}
        assert (await session.run_turn([user])).ok
        await session.aclose()
    finally:
        await server.aclose()


async def test_a_token_starting_with_a_dash_still_starts_the_server() -> None:
    """token_urlsafe can begin with '-': it must not be parsed as an option (1 start in 64 failed)."""
    server = await start_local_server(token="-leading-dash-token")
    await _one_turn_then_close(server)
    assert server.process.returncode is not None


async def test_the_scripted_engine_is_served_in_process_once_a_host_is_installed() -> None:
    """The desktop app's route (app.main.prepare_gui): the same handle, no child process."""
    from app.adapters import local_server
    from app.server.inprocess import InProcessServer, start_scripted

    local_server.host_scripted_here(start_scripted)
    try:
        server = await local_server.start_scripted_server()
        assert isinstance(server, InProcessServer)
        assert local_server.live_children() == []
        await _one_turn_then_close(server)
        assert not server.alive
    finally:
        local_server.host_scripted_here(None)


async def test_a_host_that_cannot_start_gives_words_not_a_traceback() -> None:
    from app.adapters import local_server

    async def broken(token: str) -> local_server.ServerHandle:
        raise OSError("address already in use")

    local_server.host_scripted_here(broken)
    try:
        with pytest.raises(local_server.LocalServerError, match="did not start: address already in use"):
            await local_server.start_scripted_server()
    finally:
        local_server.host_scripted_here(None)
