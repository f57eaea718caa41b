"""What the headless commands share: where to send turns (an --endpoint, or a scripted server of our own)."""

from __future__ import annotations

import os
import sys

from app.adapters.local_server import LocalServer, LocalServerError, start_local_server


class EndpointUnavailable(Exception):
    """No endpoint: the message says why (already printed to stderr)."""


async def endpoint_from_args(command: str, endpoint: str | None, token: str | None) -> tuple[str, str | None,
                                                                                                LocalServer | None]:
    """(url, token, server we started or None). The token defaults to $SLIPSTREAM_TOKEN, then $OPENAI_API_KEY."""
    if endpoint:
        return endpoint, token or os.environ.get("SLIPSTREAM_TOKEN") or os.environ.get("OPENAI_API_KEY"), None
    try:
        server = await start_local_server()
    except LocalServerError as exc:
        print(f"slipstream {command}: {exc}", file=sys.stderr)
        raise EndpointUnavailable(str(exc)) from exc
    return server.url, server.token, server
