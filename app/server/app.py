"""The local Responses server: aiohttp adapter around the sans-I/O `ServerSession`.

Routes: `GET /v1/responses` (WebSocket mode), `POST /v1/responses` (JSON, or SSE with
`"stream": true`, ending with `data: [DONE]`), `POST /v1/responses/compact` (compaction),
`GET /healthz` (no auth). The adapter only pumps: feed the session, start one
asyncio task per ready turn (lanes run concurrently), drain frames, write. Every protocol decision
(lanes, caches, in-flight limit, errors, the age limit) lives in `app.protocol.server`.

Flow control: frames go through a per-connection `Outbox` that a single writer task drains into
the socket (aiohttp's `send_frame` waits on the transport's buffer). Producers (engine turns, the
reader) wait while the outbox is above its high-water mark; if the writer makes no progress for
`stall_timeout_s`, the client is not reading and the connection is closed (1008), so memory stays
bounded. Usage bookkeeping happens after a turn ends, never per token.

Writes are coalesced: the writer takes every frame queued since its last turn and writes them with
one `transport.write` (one `send()` for many ~60-byte frames, where one write per frame cost half the
server's CPU). Deltas are coalesced too: a turn feeds the engine's output to the session and only
wakes the writer, which takes the session's frames when it runs, so the text deltas an engine produced
while the writer was busy (a fast engine between two of its yields, or a client reading slower than
the engine writes) go out as one larger `*.delta` event per item (`app.protocol.writer`), at most
`coalesce_chars` characters held. At a paced rate the writer runs between two deltas and every delta
is its own event, as before. permessage-deflate is off by default (`ServerConfig.ws_deflate`): on loopback it costs
throughput and saves nothing that matters (see the `server_deflate` bench row); when a client
negotiates it because the server allows it, frames go one by one through aiohttp's compressor.

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
import struct
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

from app.protocol import codec
from app.protocol.compact import compaction_resource, parse_compact
from app.protocol.errors import RemoteProtocolError
from app.protocol.events import CLIENT_EVENTS_HEADER, TERMINAL_TYPES, ErrorDetail, ErrorEvent
from app.protocol.ids import random_id
from app.protocol.server import ResponseStore, ServerSession
from app.server.auth import bearer_ok, new_token
from app.server.engines.base import Engine, EngineConnection, EngineOutput, Prefiller, Turn, compact
from app.server.limits import ConnectionGuard, UploadBudget

__all__ = ["Outbox", "RunningServer", "ServerConfig", "build_app", "run_server"]

log = logging.getLogger(__name__)

MiB = 1024 * 1024
CLOSE_POLICY = 1008  # the client is not reading: policy violation
CLOSE_GOING_AWAY = 1001


@dataclass
class ServerConfig:
    """Settings shared by every connection of one server."""

    token: str
    max_age_s: float = 3600.0
    max_frame_bytes: int = 16 * MiB
    high_water_bytes: int = 4 * MiB  # producers pause above this many unsent bytes
    stall_timeout_s: float = 30.0  # writer without progress this long: the client is not reading
    websocket: bool = (
        True  # False: the upgrade is answered 426 (HTTP/SSE only), as servers without WS mode do
    )
    ws_deflate: bool = False  # allow permessage-deflate when a client offers it
    coalesce_writes: bool = True  # False: one write per frame (only a same-run bench baseline)
    coalesce_chars: int = 16 * 1024  # delta text held for the writer at most; 0: one event per delta
    header_timeout_s: float = 10.0  # a connection must authenticate a request within this
    keepalive_timeout_s: float = 75.0  # idle HTTP keep-alive connections close after this
    body_timeout_s: float = 30.0  # a request body must arrive within this
    max_pending_connections: int = 256  # unauthenticated connections, all clients
    max_pending_per_client: int = 128  # unauthenticated connections, one peer host
    max_connections_per_client: int = 512  # authenticated connections, one peer host
    upload_budget_bytes: int = 64 * MiB  # request bodies being received at once
    store_max_bytes: int = 256 * MiB  # stored responses (chains' JSON size)
    store_max_entries: int = 1024


@dataclass
class Stats:
    """Server-wide counters (kept off the streaming path: updated once per finished turn)."""

    connections: int = 0
    responses: int = 0
    failed: int = 0


class ClientStalled(Exception):
    """The peer stopped reading and the outbox stayed full past the stall timeout."""


class Outbox:
    """Bounded queue of encoded frames between producers and the single writer task."""

    def __init__(self, high_water: int, stall_timeout_s: float) -> None:
        self._frames: deque[bytes] = deque()
        self.size = 0
        self.high_water = high_water
        self.stall_timeout_s = stall_timeout_s
        self.closed = False
        self._ready = asyncio.Event()  # frames are waiting
        self._room = asyncio.Event()  # below high water
        self._room.set()

    def put_many(self, frames: list[bytes]) -> None:
        """Queue frames (never blocks; call `wait_room` afterwards to apply backpressure)."""
        if not frames or self.closed:
            return
        self._frames.extend(frames)
        self.size += sum(len(f) for f in frames)
        self._ready.set()
        if self.size > self.high_water:
            self._room.clear()

    async def wait_room(self) -> None:
        """Wait until the outbox is below high water; ClientStalled if that takes too long."""
        if self._room.is_set() or self.closed:
            return
        try:
            await asyncio.wait_for(self._room.wait(), self.stall_timeout_s)
        except TimeoutError:
            raise ClientStalled(f"client read nothing for {self.stall_timeout_s:g} s") from None

    def wake(self) -> None:
        """Wake the writer without queueing anything: its `pull` has frames to give."""
        self._ready.set()

    async def get_batch(self, pull: Callable[[], None] | None = None) -> list[bytes] | None:
        """Every frame queued so far (at least one) for the writer; None once closed and empty.
        `pull` runs before each look at the queue (it may `put_many` frames held elsewhere)."""
        while True:
            if pull is not None and not self.closed:
                pull()
            if self._frames:
                break
            if self.closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        frames = list(self._frames)
        self._frames.clear()
        self.size = 0
        self._room.set()
        return frames

    async def get(self) -> bytes | None:
        """Next frame for the writer; None once closed and empty."""
        while not self._frames:
            if self.closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        frame = self._frames.popleft()
        self.size -= len(frame)
        if self.size <= self.high_water // 2:
            self._room.set()
        return frame

    def close(self) -> None:
        """No more frames; wake everyone."""
        self.closed = True
        self._ready.set()
        self._room.set()


@contextlib.asynccontextmanager
async def _closing(outputs: AsyncIterator[EngineOutput]) -> AsyncIterator[AsyncIterator[EngineOutput]]:
    """Close an engine's async generator even when the turn is cancelled (client gone)."""
    try:
        yield outputs
    finally:
        aclose = getattr(outputs, "aclose", None)
        if aclose is not None:
            await aclose()


def _error_body(status: int, code: str, message: str, param: str | None = None) -> web.Response:
    kind = "invalid_request_error"
    if status == 401:
        kind = "authentication_error"
    elif status >= 500:
        kind = "server_error"
    body = {"error": {"type": kind, "code": code, "message": message, "param": param}}
    return web.Response(status=status, body=codec.encode_json(body), content_type="application/json")


def _error_frame(code: str, message: str, status: int = 400) -> bytes:
    return codec.encode(ErrorEvent(status=status, error=ErrorDetail(code=code, message=message)))


_LEN1 = struct.Struct("!BB")
_LEN2 = struct.Struct("!BBH")
_LEN3 = struct.Struct("!BBQ")


def ws_text_frames(payloads: list[bytes]) -> bytes:
    """Unmasked, uncompressed WebSocket text frames (RFC 6455 §5.2, server to client), joined."""
    out = bytearray()
    for data in payloads:
        n = len(data)
        if n < 126:
            out += _LEN1.pack(0x81, n)
        elif n < 65536:
            out += _LEN2.pack(0x81, 126, n)
        else:
            out += _LEN3.pack(0x81, 127, n)
        out += data
    return bytes(out)


class _Connection:
    """One WebSocket client: session + engine connection + turn tasks + writer."""

    def __init__(self, server: _ServerState, ws: web.WebSocketResponse, request: web.Request) -> None:
        self.server = server
        self.ws = ws
        self.request = request
        cfg = server.config
        self.started = time.time()
        self.session = ServerSession(
            now=self.started,
            max_age_s=cfg.max_age_s,
            max_frame_bytes=cfg.max_frame_bytes,
            store=server.store,
            default_model=server.engine.name,
            coalesce_deltas=cfg.coalesce_chars > 0,
        )
        self.engine: EngineConnection = server.engine.connect()
        self.outbox = Outbox(cfg.high_water_bytes, cfg.stall_timeout_s)
        self.turns: dict[str, asyncio.Task[None]] = {}
        self.close_code: tuple[int, str] | None = None
        self.writes = 0  # transport writes (coalesced batches), for the bench

    # -- pumping -------------------------------------------------------------------------

    def flush(self) -> None:
        """Move the session's frames to the outbox, stop cancelled turns and start newly ready ones."""
        for rid in self.session.cancelled():  # `response.cancel`: the engine stops computing now
            task = self.turns.get(rid)
            if task is not None:
                task.cancel()
        turns = self.session.ready_turns()
        warmups = self.session.warmups()  # first: a turn started with them waits for their prefill
        if warmups and isinstance(self.engine, Prefiller):
            for warm in warmups:
                try:
                    self.engine.prefill(warm)
                except Exception:
                    log.exception(
                        "engine prefill failed on %s (the warm-up itself was answered)", warm.response_id
                    )
        for turn in turns:
            task = asyncio.create_task(self._run_turn(turn), name=f"turn {turn.response_id}")
            self.turns[turn.response_id] = task
        self.outbox.put_many(self.session.frames_to_send())  # after ready_turns: it queues frames too
        if self.session.close_requested and self.close_code is None:
            self.close_code = self.session.close_requested
            self.outbox.close()

    async def _run_turn(self, turn: Turn) -> None:
        rid = turn.response_id
        try:
            async with _closing(self.engine.run(turn)) as outputs:
                async for out in outputs:
                    self.session.feed(rid, out)
                    if 0 < self.session.held_chars < self.server.config.coalesce_chars:
                        self.outbox.wake()  # the writer takes it, merged with what follows meanwhile
                    else:
                        self.flush()
                    await self.outbox.wait_room()
            self.session.finish(rid, time.time())
        except asyncio.CancelledError:
            raise
        except ClientStalled as exc:
            self.stalled(str(exc))
            return
        except Exception as exc:  # an engine crash fails this response only
            log.exception("engine failed on %s", rid)
            self.server.stats.failed += 1
            self.session.abort(rid, f"engine error: {type(exc).__name__}: {exc}", time.time())
        finally:
            self.turns.pop(rid, None)
        self.server.stats.responses += 1
        self.flush()

    def stalled(self, why: str) -> None:
        """The client is not reading: stop everything and close with 1008."""
        log.warning("closing stalled connection: %s", why)
        if self.close_code is None:
            self.close_code = (CLOSE_POLICY, "client is not reading")
        self.outbox.close()
        self._abort_transport()

    def _abort_transport(self) -> None:
        transport = self.request.transport
        if transport is not None:
            transport.abort()

    # -- the two loops ---------------------------------------------------------------------

    async def writer(self) -> None:
        """Drain the outbox into the socket; close with the requested code at the end."""
        transport = self.request.transport
        protocol: Any = self.request.protocol
        with contextlib.suppress(ConnectionError, RuntimeError):
            while (frames := await self.outbox.get_batch(self.flush)) is not None:
                if self.ws.compress or transport is None or not self.server.config.coalesce_writes:
                    for frame in frames:
                        await self.ws.send_frame(frame, WSMsgType.TEXT)
                    continue
                if transport.is_closing():
                    break
                transport.write(ws_text_frames(frames))
                self.writes += 1
                if protocol._paused:  # aiohttp's flow control: wait until the socket drains
                    await protocol._drain_helper()
            if self.close_code is not None and not self.ws.closed:
                code, reason = self.close_code
                await asyncio.wait_for(self.ws.close(code=code, message=reason.encode()[:120]), 5)

    async def age_timer(self) -> None:
        """Ask the session about the age limit once it falls due; the session then drains
        in-flight turns and requests the close itself (seen by `flush`)."""
        deadline = self.started + self.server.config.max_age_s
        while (remaining := deadline - time.time()) > 0:
            await asyncio.sleep(remaining + 0.001)
        self.session.check_age(time.time())
        self.flush()

    def going_away(self, reason: str) -> None:
        """Server shutdown: stop reading and close with 1001 once queued frames are out."""
        if self.close_code is None:
            self.close_code = (CLOSE_GOING_AWAY, reason)
        self.outbox.close()

    async def reader(self) -> None:
        """Feed client frames to the session until the socket closes."""
        async for msg in self.ws:
            if msg.type is WSMsgType.TEXT:
                self.session.receive_frame(msg.data, time.time())
            elif msg.type is WSMsgType.BINARY:
                self.outbox.put_many(
                    [_error_frame("binary_frame", "Binary frames are not supported; send JSON text frames.")]
                )
            elif msg.type is WSMsgType.ERROR:
                break
            self.flush()
            if self.close_code is not None:
                break
            await self.outbox.wait_room()

    async def run(self) -> None:
        writer = asyncio.create_task(self.writer(), name="ws writer")
        timer = asyncio.create_task(self.age_timer(), name="ws age timer")
        try:
            await self.reader()
            if self.close_code is not None:  # drain pending frames (e.g. the age-limit error), then close
                with contextlib.suppress(TimeoutError, ConnectionError):
                    await asyncio.wait_for(asyncio.shield(writer), 5)
        except ClientStalled as exc:
            self.stalled(str(exc))
        finally:
            timer.cancel()
            for task in self.turns.values():
                task.cancel()
            self.outbox.close()
            await asyncio.gather(*self.turns.values(), timer, return_exceptions=True)
            if not writer.done():
                writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self.engine.aclose()


class _ServerState:
    """What every handler shares."""

    def __init__(self, engine: Engine, config: ServerConfig) -> None:
        self.engine = engine
        self.config = config
        self.store = ResponseStore(max_entries=config.store_max_entries, max_bytes=config.store_max_bytes)
        self.stats = Stats()
        self.connections: set[_Connection] = set()
        self.guard = ConnectionGuard(
            header_timeout_s=config.header_timeout_s,
            max_pending=config.max_pending_connections,
            max_pending_per_client=config.max_pending_per_client,
            max_per_client=config.max_connections_per_client,
        )
        self.uploads = UploadBudget(config.upload_budget_bytes)


STATE = web.AppKey("slipstream_state", _ServerState)


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
    conn = _Connection(state, ws, request)
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
    state: _ServerState, session: ServerSession, turn: Turn, after_each: Callable[[], Awaitable[None]]
) -> None:
    """Run one HTTP turn on its own engine connection, calling `after_each` per output."""
    engine = state.engine.connect()
    rid = turn.response_id
    try:
        async with _closing(engine.run(turn)) as outputs:
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


async def _post_json(state: _ServerState, session: ServerSession, turn: Turn | None) -> web.Response:
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
    for conn in list(app[STATE].connections):
        conn.going_away("server shutting down")
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.ws.close(code=CLOSE_GOING_AWAY, message=b"server shutting down"), 2)


def build_app(engine: Engine, config: ServerConfig) -> web.Application:
    """The aiohttp application (routes + shared state)."""
    app = web.Application(client_max_size=config.max_frame_bytes)
    app[STATE] = _ServerState(engine, config)
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
