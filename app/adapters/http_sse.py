"""The HTTP + SSE transport: one `POST /v1/responses` with `stream: true`, events out.

The per-turn fallback when a WebSocket upgrade is refused (426, 404, ...) or keeps failing, and the
transport of servers without WebSocket mode. Frames are parsed by the protocol's `SSEDecoder`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from app.protocol.codec import SSEDecoder
from app.protocol.events import ServerEvent


class HttpError(Exception):
    """The POST failed before streaming: connection refused, or a non-2xx status with the server's words."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def http_url_for(ws_url: str) -> str:
    """ws://host/v1/responses -> http://host/v1/responses (wss -> https)."""
    if ws_url.startswith("wss://"):
        return "https://" + ws_url[len("wss://") :]
    if ws_url.startswith("ws://"):
        return "http://" + ws_url[len("ws://") :]
    return ws_url


async def post_stream(
    url: str,
    body: bytes,
    *,
    token: str | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 600.0,
    client: Any = None,
) -> AsyncIterator[ServerEvent]:
    """POST a response.create body (JSON, with `"stream": true`) and yield the SSE events."""
    import httpx  # imported on first use: it costs ~0.2 s at start-up, and most sessions never fall back

    hdrs = {"Content-Type": "application/json", "Accept": "text/event-stream", **(headers or {})}
    if token:
        hdrs["Authorization"] = f"Bearer {token}"
    own = client is None
    c = client or httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=10.0))
    try:
        try:
            async with c.stream("POST", http_url_for(url), content=body, headers=hdrs) as resp:
                if resp.status_code >= 400:
                    text = (await resp.aread()).decode("utf-8", "replace")[:2000]
                    raise HttpError(f"HTTP {resp.status_code}: {text}".strip(), status=resp.status_code)
                decoder = SSEDecoder()
                async for chunk in resp.aiter_bytes():
                    for event in decoder.feed(chunk):
                        yield event
        except httpx.HTTPError as exc:
            raise HttpError(f"HTTP request to {url} failed: {exc or type(exc).__name__}") from exc
    finally:
        if own:
            await c.aclose()
