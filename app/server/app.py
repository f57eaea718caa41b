"""The local Responses server: aiohttp adapter around the sans-I/O `ServerSession`.

Routes: `GET /v1/responses` (WebSocket mode), `POST /v1/responses` (JSON, or SSE with
`"stream": true`, ending with `data: [DONE]`), `POST /v1/responses/compact` (compaction),
`GET /healthz` (no auth). The adapter only pumps: feed the session, start one
asyncio task per ready turn (lanes run concurrently), drain frames, write. Every protocol decision
(lanes, caches, in-flight limit, errors, the age limit) lives in `app.protocol.server`.

After the upgrade a WebSocket is driven by `app.server.connection.Connection` (flow control, the
coalesced writes and deltas, the close codes), shared with the websockets adapter that serves the
desktop app's in-process scripted engine (`app.server.ws_server`); this module wraps aiohttp's socket
for it (`_AiohttpSocket`). With permessage-deflate negotiated, frames go one by one through aiohttp's
compressor.

Limits (`app.server.limits`): pending (unauthenticated) connections are capped per client and in
total, and dropped after `header_timeout_s`; authenticated connections are capped per client; idle
keep-alive connections close after `keepalive_timeout_s`; a body must arrive within
`body_timeout_s`, and bodies being received at once share `upload_budget_bytes`; the response store
is bounded by bytes; a connection's queued creates are bounded (`ServerSession.max_queued*`).

Clock: the session gets wall time (`time.time()`), because it stamps `created_at`/`completed_at`
(epoch seconds on the wire) with the same `now` it measures the connection age with.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

from app.protocol import codec
from app.protocol.compact import compaction_resource, parse_compact
from app.protocol.errors import RemoteProtocolError
from app.protocol.events import CLIENT_EVENTS_HEADER, TERMINAL_TYPES
from app.protocol.ids import random_id
from app.protocol.server import ServerSession
from app.server.auth import bearer_ok, new_token
from app.server.connection import (
    Connection,
    MiB,
    Outbox,
    ServerConfig,
    ServerState,
    Stats,
    closing_outputs,
    ws_text_frames,
)
from app.server.engines.base import Engine, Turn, compact
from app.server.limits import ConnectionGuard

__all__ = ["Outbox", "RunningServer", "ServerConfig", "build_app", "run_server", "ws_text_frames"]

log = logging.getLogger(__name__)


def _error_body(status: int, code: str, message: str, param: str | None = None) -> web.Response:
    kind = "invalid_request_error"
    if status == 401:
        kind = "authentication_error"
    elif status >= 500:
        kind = "server_error"
    body = {"error": {"type": kind, "code": code, "message": message, "param": param}}
    return web.Response(status=status, body=codec.encode_json(body), content_type="application/json")


class _AiohttpSocket:
    """An aiohttp WebSocket as `Connection` drives it (`app.server.connection.WsSocket`)."""

    def __init__(self, ws: web.WebSocketResponse, request: web.Request) -> None:
        self.ws = ws
        self.request = request

    @property
    def compress(self) -> bool:
        return bool(self.ws.compress)

    @property
    def closed(self) -> bool:
        return self.ws.closed

    def transport(self) -> asyncio.Transport | None:
        return self.request.transport

    async def send_text(self, frame: bytes) -> None:
        await self.ws.send_frame(frame, WSMsgType.TEXT)

    async def drain(self) -> None:
        protocol: Any = self.request.protocol
        if protocol._paused:  # aiohttp's flow control: wait until the socket drains
            await protocol._drain_helper()

    async def close(self, code: int, reason: str) -> None:
        await self.ws.close(code=code, message=reason.encode()[:120])

    async def messages(self) -> AsyncIterator[str | bytes | None]:
        async for msg in self.ws:
            if msg.type is WSMsgType.TEXT:
                yield msg.data
            elif msg.type is WSMsgType.BINARY:
                yield None
            elif msg.type is WSMsgType.ERROR:
                return


STATE = web.AppKey("slipstream_state", ServerState)


_UNAUTHORIZED = (401, "invalid_api_key", "Missing or wrong bearer token (Authorization: Bearer <token>).")


def _auth_error(request: web.Request) -> web.Response | None:
    """None when the request may go on; else the answer (401, or 429 over the per-client cap)."""
    state = request.app[STATE]
    if not bearer_ok(request.headers.get("Authorization"), state.config.token):
        return _error_body(*_UNAUTHORIZED)
    if not state.guard.authenticate(request.protocol):
        resp = _error_body(
            429,
            "too_many_connections",
            f"This client already has {state.config.max_connections_per_client} connections open; close some.",
        )
        resp.force_close()
        return resp
    return None


async def _healthz(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response({"ok": True, "engine": state.engine.name})


async def _websocket(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    refused = _auth_error(request)
    if refused is not None:
        return refused
    if not state.config.websocket:
        return _error_body(
            426, "websocket_disabled", "This server does not offer WebSocket mode; use POST /v1/responses."
        )
    ws = web.WebSocketResponse(
        max_msg_size=state.config.max_frame_bytes,
        autoping=True,
        decode_text=False,
        compress=state.config.ws_deflate,
    )
    ws.headers[CLIENT_EVENTS_HEADER] = "response.cancel"  # Stop keeps the chain (see ServerSession)
    if not ws.can_prepare(request).ok:
        return _error_body(
            400,
            "websocket_upgrade_required",
            "GET /v1/responses needs a WebSocket upgrade; use POST for HTTP.",
        )
    await ws.prepare(request)
    conn = Connection(state, _AiohttpSocket(ws, request))
    state.connections.add(conn)
    state.stats.connections += 1
    try:
        await conn.run()
    finally:
        state.connections.discard(conn)
    return ws


async def _post(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    cfg = state.config
    refused = _auth_error(request)
    if refused is not None:
        return refused
    body_or_error = await _read_body(request)
    if isinstance(body_or_error, web.Response):
        return body_or_error
    body = body_or_error
    session = ServerSession.for_http(
        now=time.time(),
        store=state.store,
        default_model=state.engine.name,
        max_frame_bytes=cfg.max_frame_bytes,
    )
    session.receive_http_body(body, time.time())
    turns = session.ready_turns(time.time()) if session.http_error is None else []
    if session.http_error is not None:
        status, payload = session.http_error
        return web.Response(status=status, body=payload, content_type="application/json")
    turn = turns[0] if turns else None  # None: a warm-up, already completed
    if not session.http_stream:
        return await _post_json(state, session, turn)
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    await resp.prepare(request)

    async def write() -> None:
        frames = session.frames_to_send()
        if frames:
            await asyncio.wait_for(resp.write(b"".join(frames)), cfg.stall_timeout_s)

    try:
        await write()
        if turn is not None:
            await _drive(state, session, turn, write)
            await write()
        await resp.write_eof()
    except (ConnectionError, TimeoutError) as exc:
        log.info("HTTP client went away mid-stream: %s", exc)
    return resp


async def _read_body(request: web.Request) -> bytes | web.Response:
    """The request body, within the size limit, the body timeout and the shared upload budget."""
    state = request.app[STATE]
    cfg = state.config
    size = request.content_length
    if size is not None and size > cfg.max_frame_bytes:
        return _error_body(413, "frame_too_large", f"Request body exceeds {cfg.max_frame_bytes} bytes.")
    reserve = size if size is not None else cfg.max_frame_bytes
    if not state.uploads.reserve(reserve):
        resp = _error_body(
            503, "server_busy", "Too many request bodies are being uploaded at once; retry shortly."
        )
        resp.headers["Retry-After"] = "1"
        return resp
    try:
        return await asyncio.wait_for(request.read(), cfg.body_timeout_s)
    except web.HTTPRequestEntityTooLarge:
        return _error_body(413, "frame_too_large", f"Request body exceeds {cfg.max_frame_bytes} bytes.")
    except TimeoutError:
        resp = _error_body(
            408, "request_timeout", f"The request body did not arrive within {cfg.body_timeout_s:g} s."
        )
        resp.force_close()
        return resp
    except ConnectionError as exc:  # the client went away before its body arrived: nobody to answer
        log.info("HTTP client went away while sending its request: %s", exc)
        return web.Response(status=400)
    finally:
        state.uploads.release(reserve)


async def _compact(request: web.Request) -> web.Response:
    """`POST /v1/responses/compact`: the window packed (or summarised) by the engine."""
    state = request.app[STATE]
    refused = _auth_error(request)
    if refused is not None:
        return refused
    body = await _read_body(request)
    if isinstance(body, web.Response):
        return body
    try:
        job = parse_compact(body, state.store)
    except RemoteProtocolError as exc:
        return _error_body(exc.status, exc.code, exc.message, exc.param)
    engine = state.engine.connect()
    try:
        output = await compact(engine, job, random_id)
    except Exception as exc:
        log.exception("engine failed to compact")
        return _error_body(500, "server_error", f"The engine could not compact: {type(exc).__name__}: {exc}")
    finally:
        with contextlib.suppress(Exception):
            await engine.aclose()
    resource = compaction_resource(job, output, compaction_id=random_id("cmp"), created_at=int(time.time()))
    return web.Response(body=codec.encode_json(resource), content_type="application/json")


async def _drive(
    state: ServerState, session: ServerSession, turn: Turn, after_each: Callable[[], Awaitable[None]]
) -> None:
    """Run one HTTP turn on its own engine connection, calling `after_each` per output."""
    engine = state.engine.connect()
    rid = turn.response_id
    try:
        async with closing_outputs(engine.run(turn)) as outputs:
            async for out in outputs:
                session.feed(rid, out)
                await after_each()
        session.finish(rid, time.time())
    except (asyncio.CancelledError, ConnectionError, TimeoutError):
        raise
    except Exception as exc:
        log.exception("engine failed on %s", rid)
        state.stats.failed += 1
        session.abort(rid, f"engine error: {type(exc).__name__}: {exc}", time.time())
    finally:
        with contextlib.suppress(Exception):
            await engine.aclose()
    state.stats.responses += 1


async def _post_json(state: ServerState, session: ServerSession, turn: Turn | None) -> web.Response:
    """`stream: false`: run the turn to its end and answer with the final response object."""

    async def discard() -> None:
        session.frames_to_send()

    if turn is not None:
        await _drive(state, session, turn, discard)
        final = session.final_response(turn.response_id)
    else:  # warm-up: the terminal event is among the few queued frames
        final = None
        decoder = codec.SSEDecoder()
        for frame in session.frames_to_send():
            for event in decoder.feed(frame):
                if codec.event_type(event) in TERMINAL_TYPES:
                    final = getattr(event, "response", None)
    if final is None:
        return _error_body(500, "server_error", "The response ended without a final state.")
    return web.Response(body=codec.encode_json(final), content_type="application/json")


async def _on_shutdown(app: web.Application) -> None:
    """Close every WebSocket with 1001 so clients reconnect elsewhere instead of seeing a reset."""
    await app[STATE].going_away()


def build_app(engine: Engine, config: ServerConfig) -> web.Application:
    """The aiohttp application (routes + shared state)."""
    app = web.Application(client_max_size=config.max_frame_bytes)
    app[STATE] = ServerState(engine, config)
    app.on_shutdown.append(_on_shutdown)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/v1/responses", _websocket)
    app.router.add_post("/v1/responses", _post)
    app.router.add_post("/v1/responses/compact", _compact)
    return app


def _watch_connections(runner: web.AppRunner, guard: ConnectionGuard) -> None:
    """Let the guard see every TCP connection the aiohttp server accepts and loses."""
    server: Any = runner.server
    made, lost = server.connection_made, server.connection_lost

    def connection_made(handler: Any, transport: Any) -> None:
        made(handler, transport)
        guard.connection_made(handler, transport)

    def connection_lost(handler: Any, exc: BaseException | None = None) -> None:
        guard.connection_lost(handler)
        lost(handler, exc)

    server.connection_made = connection_made
    server.connection_lost = connection_lost


@dataclass
class RunningServer:
    """A started server: where it listens and how to authenticate."""

    host: str
    port: int
    token: str
    app: web.Application

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def http_url(self) -> str:
        """POST endpoint; the SDK's base_url is `base_url + "/v1"`."""
        return f"{self.base_url}/v1/responses"

    @property
    def url(self) -> str:
        """The WebSocket endpoint."""
        return "ws" + self.http_url.removeprefix("http")

    @property
    def state(self) -> ServerState:
        """What every connection shares (its `connections`, `stats`, `guard`)."""
        return self.app[STATE]

    @property
    def stats(self) -> Stats:
        return self.app[STATE].stats

    @property
    def guard(self) -> ConnectionGuard:
        """Connection caps and their counters."""
        return self.app[STATE].guard

    @property
    def config(self) -> ServerConfig:
        """Live settings (tests flip `config.websocket` to refuse upgrades)."""
        return self.app[STATE].config


@contextlib.asynccontextmanager
async def run_server(
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
) -> AsyncIterator[RunningServer]:
    """Serve until the block exits; `srv.port` is the real port when `port=0`. `limits`: other
    `ServerConfig` fields (timeouts, caps, budgets, `ws_deflate`)."""
    config = ServerConfig(
        token=token or new_token(),
        max_age_s=max_age_s,
        max_frame_bytes=max_frame_bytes,
        high_water_bytes=high_water_bytes,
        stall_timeout_s=stall_timeout_s,
        **limits,
    )
    app = build_app(engine, config)
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        shutdown_timeout=2.0,
        keepalive_timeout=config.keepalive_timeout_s,
        lingering_time=0,  # refused bodies are not drained: no handler may outlive the server's shutdown
    )
    await runner.setup()
    _watch_connections(runner, app[STATE].guard)
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        server = site._server
        sockets: Any = getattr(server, "sockets", None) or []
        real_port = sockets[0].getsockname()[1] if sockets else port
        yield RunningServer(host=host, port=real_port, token=config.token, app=app)
    finally:
        await runner.cleanup()
        await engine.aclose()
