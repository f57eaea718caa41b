"""The WebSocket transport: a thin `websockets` client that only moves frames.

Protocol decisions live in `app.protocol.client.ClientSession`; this module connects (with the
bearer token on the upgrade), sends frames, yields received frames, answers pings (websockets does),
and reports how the socket ended so the caller can classify the close code.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

# websockets logs the handshake headers (Authorization: Bearer <key>) at DEBUG. Its logger for our
# connections is pinned at INFO, so no logging configuration can make it print an API key.
_WIRE_LOG = logging.getLogger("slipstream.websocket")
_WIRE_LOG.setLevel(logging.INFO)
# Bytes read from the socket at a time. websockets parses a whole read in one callback, so asyncio's
# default 256 KiB (thousands of small delta frames when the app fell behind) is one long stall on the
# GUI thread; 16 KiB is ~1-2 ms of parsing, and the loop turns between reads.
READ_CHUNK = 16 * 1024


class TransportError(Exception):
    """Connecting failed. `status` is the HTTP status of a refused upgrade (401, 404, 426, ...), else None."""

    def __init__(self, message: str, *, status: int | None = None, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


@dataclass(frozen=True, slots=True)
class Closed:
    """How a socket ended: the close code we received (1006 when the TCP stream just died)."""

    code: int
    reason: str


class WsTransport:
    """One open WebSocket. Create with `await WsTransport.open(...)`."""

    def __init__(self, conn: ClientConnection) -> None:
        self._conn = conn

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        open_timeout: float = 10.0,
        max_size: int | None = 64 * 1024 * 1024,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 60.0,
    ) -> WsTransport:
        hdrs = dict(headers or {})
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        try:
            conn = await connect(
                url,
                additional_headers=hdrs,
                open_timeout=open_timeout,
                max_size=max_size,
                ping_interval=ping_interval,
                ping_timeout=ping_timeout,
                compression=None,
                close_timeout=2.0,
                user_agent_header="slipstream",
                logger=_WIRE_LOG,
            )
        except InvalidStatus as exc:
            resp = exc.response
            body = (resp.body or b"").decode("utf-8", "replace")[:2000]
            raise TransportError(
                f"{url} refused the WebSocket upgrade: HTTP {resp.status_code} {body}".strip(),
                status=resp.status_code,
                body=body,
            ) from exc
        except InvalidURI as exc:
            raise TransportError(f"not a WebSocket URL: {url}") from exc
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            raise TransportError(f"cannot connect to {url}: {exc or type(exc).__name__}") from exc
        transport = getattr(conn, "transport", None)
        if transport is not None and hasattr(transport, "max_size"):  # asyncio's selector transports
            transport.max_size = READ_CHUNK
        return cls(conn)

    def header(self, name: str) -> str | None:
        """A header of the server's upgrade answer (e.g. which optional client events it accepts)."""
        response = getattr(self._conn, "response", None)
        return response.headers.get(name) if response is not None else None

    async def send(self, frame: bytes | str) -> bool:
        """Send one text frame (bytes are sent as text: they are UTF-8 JSON). False if the socket is gone."""
        try:
            if isinstance(frame, bytes):
                await self._conn.send(frame, text=True)
            else:
                await self._conn.send(frame)
        except ConnectionClosed:
            return False
        return True

    async def recv(self) -> str | bytes | None:
        """The next frame, or None once the socket is closed (then see `closed`)."""
        try:
            return await self._conn.recv()
        except ConnectionClosed:
            return None

    @property
    def closed(self) -> Closed | None:
        if self._conn.state.name != "CLOSED":
            return None
        # websockets reports 1006 itself when no close frame arrived.
        return Closed(self._conn.close_code or 1006, self._conn.close_reason or "")

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Close politely (close handshake, bounded by the connection's close timeout)."""
        with contextlib.suppress(Exception):
            await self._conn.close(code, reason)

    def abort(self) -> None:
        """Drop the TCP connection at once: for Stop, when the server may be blocked writing to us
        (frames queued ahead of its close frame would hold a polite close for its full timeout)."""
        transport = getattr(self._conn, "transport", None)
        if transport is not None:
            transport.abort()
