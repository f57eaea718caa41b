"""The local Responses server in WebSocket mode only, on `websockets`: the desktop app's in-process host.

Why a second adapter: the app's scripted engine is served on a thread of the app
(`app.server.inprocess`), and its client is the `websockets` library, which the app has loaded
anyway. Serving with aiohttp cost ~0.2 s of imports on that thread at every start (holding the GIL
the window and the index worker need: startup to ready, issue 13) and its memory; this adapter costs
one small module of websockets. `slipstream serve` (HTTP + SSE, compaction) stays on aiohttp
(`app.server.app`).

Same wire as `app.server.app`'s WebSocket route: after the upgrade the socket is driven by the same
`app.server.connection.Connection` (the sans-I/O `ServerSession`, the outbox, coalesced writes and
deltas, cancel, the close codes 1008 / 1001 / 1009), and before it the same checks in the same order:

- `GET /healthz` answers without a token; any other path is 404;
- the exact bearer token (401 `invalid_api_key`), then the per-client cap on authenticated
  connections (429), then WebSocket mode on (426), then an upgrade at all (400), each a JSON error
  body as aiohttp's route answers; the 101 names the optional client events (`response.cancel`);
- `app.server.limits.ConnectionGuard` sees every TCP connection: pending ones are capped and dropped
  after `header_timeout_s`;
- messages over `max_frame_bytes` close the socket with 1009; binary frames get an `error` event;
  no server pings (aiohttp's route sent none either; the client pings and gets pongs);
- loopback addresses only: this is the app's private server, never `--allow-remote`.

One difference, outside what the app sends: a request that is not a GET (the HTTP/SSE routes, which
the app's session falls back to only after the socket failed repeatedly) is closed without an answer
by websockets' parser, as is any malformed request.
websockets' own log is kept quiet (a flood of bad requests must not fill the disk; its DEBUG lines
would carry the Authorization header); the handler's own failures are logged here.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State

from app.protocol import codec
from app.protocol.events import CLIENT_EVENTS_HEADER
from app.server.auth import bearer_ok, is_loopback, new_token
from app.server.connection import (
    Connection,
    MiB,
    ServerConfig,
    ServerState,
    Stats,
)
from app.server.engines.base import Engine
from app.server.limits import ConnectionGuard

__all__ = ["RunningWsServer", "run_ws_server"]

log = logging.getLogger(__name__)

PATH = "/v1/responses"
# websockets logs every failed handshake at ERROR and the request headers at DEBUG: pinned quiet.
_LIB_LOG = logging.getLogger("slipstream.serve.websockets")
_LIB_LOG.setLevel(logging.CRITICAL)
_LIB_LOG.propagate = False
WRITE_HIGH_WATER = 64 * 1024  # asyncio's default, as under aiohttp (websockets' own is 32 KiB)
CLOSE_TIMEOUT_S = 2.0  # a peer that never answers our close frame is dropped after this


def _json(status: int, body: dict[str, Any], close: bool = True) -> Response:
    data = codec.encode_json(body)
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    if close:
        headers["Connection"] = "close"
    return Response(status, http.HTTPStatus(status).phrase, headers, data)


def _error(status: int, code: str, message: str) -> Response:
    """The JSON error body of `app.server.app._error_body` (the same types per status)."""
    kind = "invalid_request_error"
    if status == 401:
        kind = "authentication_error"
    elif status >= 500:
        kind = "server_error"
    return _json(status, {"error": {"type": kind, "code": code, "message": message, "param": None}})


class _ServerConnection(ServerConnection):
    """websockets' connection, plus what this server needs of it: the guard sees every TCP connection
    accepted and lost, and each message's kind is noted as its first frame arrives, so text is read
    as bytes (no UTF-8 decode; invalid UTF-8 gets `invalid_json` as under aiohttp) and a binary
    message is still told apart."""

    guard: ConnectionGuard  # set on the per-server subclass (`_connection_class`)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.texts: deque[bool] = deque()  # per message received and not yet read: text?

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.guard.connection_made(self, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.connection_lost(self)
        super().connection_lost(exc)

    def process_event(self, event: Any) -> None:
        if isinstance(event, Frame) and event.opcode in (Opcode.TEXT, Opcode.BINARY):
            self.texts.append(event.opcode is Opcode.TEXT)
        super().process_event(event)


def _connection_class(guard: ConnectionGuard) -> type[_ServerConnection]:
    return type("GuardedConnection", (_ServerConnection,), {"guard": guard})


class _Socket:
    """A websockets connection as `Connection` drives it (`app.server.connection.WsSocket`)."""

    def __init__(self, ws: _ServerConnection) -> None:
        self.ws = ws

    @property
    def compress(self) -> bool:
        return bool(self.ws.protocol.extensions)

    @property
    def closed(self) -> bool:
        return self.ws.protocol.state in (State.CLOSING, State.CLOSED)

    def transport(self) -> asyncio.Transport | None:
        """None unless OPEN: raw frames must never follow a close frame websockets sent."""
        if self.ws.protocol.state is not State.OPEN:
            return None
        return self.ws.transport

    async def send_text(self, frame: bytes) -> None:
        try:
            await self.ws.send(frame, text=True)
        except ConnectionClosed as exc:  # as aiohttp's send on a closed socket: the writer stops
            raise ConnectionResetError(str(exc)) from None

    async def drain(self) -> None:
        if self.ws.paused:
            await self.ws.drain()

    async def close(self, code: int, reason: str) -> None:
        await self.ws.close(code, reason.encode()[:120].decode("utf-8", "ignore"))

    async def messages(self) -> AsyncIterator[str | bytes | None]:
        ws = self.ws
        while True:
            try:
                data = await ws.recv(decode=False)
            except ConnectionClosed:
                return
            yield data if ws.texts.popleft() else None


@dataclass
class RunningWsServer:
    """A started WebSocket-only server: where it listens and how to authenticate."""

    host: str
    port: int
    token: str
    state: ServerState

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def url(self) -> str:
        """The WebSocket endpoint."""
        return "ws" + self.base_url.removeprefix("http") + PATH

    @property
    def stats(self) -> Stats:
        return self.state.stats

    @property
    def guard(self) -> ConnectionGuard:
        """Connection caps and their counters."""
        return self.state.guard

    @property
    def config(self) -> ServerConfig:
        """Live settings (tests flip `config.websocket` to refuse upgrades)."""
        return self.state.config


class _Handlers:
    """The websockets hooks of one server, around its shared state."""

    def __init__(self, state: ServerState) -> None:
        self.state = state

    def process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        """None lets the upgrade go on; else the answer, checked in aiohttp's route's order."""
        state = self.state
        path = request.path.partition("?")[0]
        if path == "/healthz":
            return _json(200, {"ok": True, "engine": state.engine.name})
        if path != PATH:
            return _error(404, "not_found", f"No route for {path!r}; WebSocket mode is GET {PATH}.")
        given = request.headers.get_all("Authorization")
        if len(given) != 1 or not bearer_ok(given[0], state.config.token):
            return _error(
                401, "invalid_api_key", "Missing or wrong bearer token (Authorization: Bearer <token>)."
            )
        if not state.guard.authenticate(ws):
            return _error(
                429,
                "too_many_connections",
                f"This client already has {state.config.max_connections_per_client} connections open; "
                "close some.",
            )
        if not state.config.websocket:
            return _error(
                426,
                "websocket_disabled",
                "This server does not offer WebSocket mode; use POST /v1/responses.",
            )
        upgrade = ",".join(request.headers.get_all("Upgrade")).lower()
        if "websocket" not in upgrade:
            return _error(
                400,
                "websocket_upgrade_required",
                "GET /v1/responses needs a WebSocket upgrade; use POST for HTTP.",
            )
        return None

    def process_response(self, ws: ServerConnection, request: Request, response: Response) -> None:
        if response.status_code == http.HTTPStatus.SWITCHING_PROTOCOLS:
            response.headers[CLIENT_EVENTS_HEADER] = "response.cancel"  # Stop keeps the chain

    async def handle(self, ws: ServerConnection) -> None:
        assert isinstance(ws, _ServerConnection)
        state = self.state
        conn = Connection(state, _Socket(ws))
        state.connections.add(conn)
        state.stats.connections += 1
        try:
            await conn.run()
        except Exception:  # websockets' own log is quiet: say it here, then it closes with 1011
            log.exception("WebSocket connection failed")
            raise
        finally:
            state.connections.discard(conn)


@contextlib.asynccontextmanager
async def run_ws_server(
    engine: Engine,
    host: str = "127.0.0.1",
    port: int = 0,
    token: str | None = None,
    *,
    max_age_s: float = 3600.0,
    max_frame_bytes: int = 16 * MiB,
    high_water_bytes: int = 4 * MiB,
    stall_timeout_s: float = 30.0,
    **limits: Any,
) -> AsyncIterator[RunningWsServer]:
    """Serve WebSocket mode until the block exits, as `app.server.app.run_server` does (the same
    arguments; the HTTP-only ones are accepted and unused). Loopback addresses only."""
    if not is_loopback(host):
        raise ValueError(f"the WebSocket-only server binds loopback addresses only, not {host!r}")
    config = ServerConfig(
        token=token or new_token(),
        max_age_s=max_age_s,
        max_frame_bytes=max_frame_bytes,
        high_water_bytes=high_water_bytes,
        stall_timeout_s=stall_timeout_s,
        **limits,
    )
    state = ServerState(engine, config)
    hooks = _Handlers(state)
    server: Server | None = None
    try:
        server = await serve(
            hooks.handle,
            host,
            port,
            compression="deflate" if config.ws_deflate else None,
            process_request=hooks.process_request,
            process_response=hooks.process_response,
            open_timeout=config.header_timeout_s,
            ping_interval=None,
            close_timeout=CLOSE_TIMEOUT_S,
            max_size=config.max_frame_bytes,
            write_limit=WRITE_HIGH_WATER,
            logger=_LIB_LOG,
            create_connection=_connection_class(state.guard),
        )
        real_port = next(iter(server.sockets)).getsockname()[1]
        yield RunningWsServer(host=host, port=real_port, token=config.token, state=state)
    finally:
        if server is not None:
            await state.going_away()
            server.close()
            await server.wait_closed()
        await engine.aclose()
