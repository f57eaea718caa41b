"""Spawning `slipstream serve` as a child: the URL and token come back, whatever the token looks like."""

from __future__ import annotations

import pytest

from app.adapters.local_server import start_local_server
from app.services.session import Endpoint, ResponsesSession

pytestmark = pytest.mark.asyncio


async def test_a_token_starting_with_a_dash_still_starts_the_server() -> None:
    """token_urlsafe can begin with '-': it must not be parsed as an option (1 start in 64 failed)."""
    server = await start_local_server(token="-leading-dash-token")
    try:
        session = ResponsesSession(Endpoint(server.url, server.token))
        user = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}
        assert (await session.run_turn([user])).ok
        await session.aclose()
    finally:
        await server.aclose()
    assert server.process.returncode is not None
