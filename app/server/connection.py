"""One WebSocket connection of the local Responses server, whatever library carries the socket.

The two server adapters share it: `app.server.app` (aiohttp: `slipstream serve`, WebSocket mode and
HTTP/SSE) and `app.server.ws_server` (websockets: the desktop app's in-process scripted engine, which
so never imports aiohttp). An adapter authenticates the upgrade, wraps its socket in a `WsSocket` and
awaits `Connection.run()`; everything after the upgrade happens here, so both serve the same wire.

`Connection` only pumps: feed the sans-I/O `ServerSession`, start one asyncio task per ready turn
(lanes run concurrently), drain frames, write. Every protocol decision (lanes, caches, in-flight
limit, errors, the age limit) lives in `app.protocol.server`.

Flow control: frames go through a per-connection `Outbox` that a single writer task drains into
the socket. Producers (engine turns, the reader) wait while the outbox is above its high-water mark;
if the writer makes no progress for `stall_timeout_s`, the client is not reading and the connection
is closed (1008), so memory stays bounded. Usage bookkeeping happens after a turn ends, never per token.

Writes are coalesced: the writer takes every frame queued since its last turn and writes them with
one `transport.write` (one `send()` for many ~60-byte frames, where one write per frame cost half the
server's CPU). Deltas are coalesced too: a turn feeds the engine's output to the session and only
wakes the writer, which takes the session's frames when it runs, so the text deltas an engine produced
while the writer was busy (a fast engine between two of its yields, or a client reading slower than
the engine writes) go out as one larger `*.delta` event per item (`app.protocol.writer`), at most
`coalesce_chars` characters held. At a paced rate the writer runs between two deltas and every delta
is its own event, as before. permessage-deflate is off by default (`ServerConfig.ws_deflate`): on
loopback it costs throughput and saves nothing that matters (see the `server_deflate` bench row);
when a client negotiates it because the server allows it, frames go one by one through the library.

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
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from app.protocol import codec
from app.protocol.events import ErrorDetail, ErrorEvent
from app.protocol.server import ResponseStore, ServerSession
from app.server.engines.base import Engine, EngineConnection, Prefiller, Turn
from app.server.limits import ConnectionGuard, UploadBudget

__all__ = [
    "CLOSE_GOING_AWAY",
    "CLOSE_POLICY",
    "ClientStalled",
    "Connection",
    "Outbox",
    "ServerConfig",
    "ServerState",
    "Stats",
    "WsSocket",
    "closing_outputs",
    "error_frame",
    "ws_text_frames",
]

log = logging.getLogger(__name__)

MiB = 1024 * 1024
CLOSE_POLICY = 1008  # the client is not reading: policy violation
CLOSE_GOING_AWAY = 1001
_T = TypeVar("_T")
BINARY_REFUSED = "Binary frames are not supported; send JSON text frames."


class WsSocket(Protocol):
    """What `Connection` needs of an accepted WebSocket; each server adapter wraps its library's."""

    @property
    def compress(self) -> bool:
        """permessage-deflate was negotiated: frames must go through the library one by one."""
        ...

    @property
    def closed(self) -> bool:
        """A close frame was sent or received (or the socket is gone)."""
        ...

    def transport(self) -> asyncio.Transport | None:
        """The TCP transport, for coalesced raw writes; None once gone."""
        ...

    async def send_text(self, frame: bytes) -> None:
        """Send one text frame through the library (used when raw writes are off)."""
        ...

    async def drain(self) -> None:
        """Wait while the transport's write buffer is above its high-water mark."""
        ...

    async def close(self, code: int, reason: str) -> None:
        """Close politely with `code`."""
        ...

    def messages(self) -> AsyncIterator[str | bytes | None]:
        """Received text frames (str or bytes); None for a binary frame; ends when the socket closes."""
        ...


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
async def closing_outputs(outputs: AsyncIterator[_T]) -> AsyncIterator[AsyncIterator[_T]]:
    """Close an async generator (an engine's outputs, a socket's messages) even when the task using
    it is cancelled (client gone) or stops early."""
    try:
        yield outputs
    finally:
        aclose = getattr(outputs, "aclose", None)
        if aclose is not None:
            await aclose()


def error_frame(code: str, message: str, status: int = 400) -> bytes:
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


class Connection:
    """One WebSocket client: session + engine connection + turn tasks + writer."""

    def __init__(self, server: ServerState, sock: WsSocket) -> None:
        self.server = server
        self.sock = sock
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
            async with closing_outputs(self.engine.run(turn)) as outputs:
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
        transport = self.sock.transport()
        if transport is not None:
            transport.abort()

    # -- the two loops ---------------------------------------------------------------------

    async def writer(self) -> None:
        """Drain the outbox into the socket; close with the requested code at the end."""
        sock = self.sock
        with contextlib.suppress(ConnectionError, RuntimeError):
            while (frames := await self.outbox.get_batch(self.flush)) is not None:
                transport = sock.transport()
                if sock.compress or transport is None or not self.server.config.coalesce_writes:
                    for frame in frames:
                        await sock.send_text(frame)
                    continue
                if transport.is_closing():
                    break
                transport.write(ws_text_frames(frames))
                self.writes += 1
                await sock.drain()  # flow control: wait until the socket drains
            if self.close_code is not None and not sock.closed:
                code, reason = self.close_code
                await asyncio.wait_for(sock.close(code, reason), 5)

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
        async with closing_outputs(self.sock.messages()) as messages:
            async for data in messages:
                if data is None:
                    self.outbox.put_many([error_frame("binary_frame", BINARY_REFUSED)])
                else:
                    self.session.receive_frame(data, time.time())
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


class ServerState:
    """What every handler shares."""

    def __init__(self, engine: Engine, config: ServerConfig) -> None:
        self.engine = engine
        self.config = config
        self.store = ResponseStore(max_entries=config.store_max_entries, max_bytes=config.store_max_bytes)
        self.stats = Stats()
        self.connections: set[Connection] = set()
        self.guard = ConnectionGuard(
            header_timeout_s=config.header_timeout_s,
            max_pending=config.max_pending_connections,
            max_pending_per_client=config.max_pending_per_client,
            max_per_client=config.max_connections_per_client,
        )
        self.uploads = UploadBudget(config.upload_budget_bytes)

    async def going_away(self, reason: str = "server shutting down") -> None:
        """Close every WebSocket with 1001 so clients reconnect instead of seeing a reset (each gets
        2 s, all at once)."""

        async def one(conn: Connection) -> None:
            conn.going_away(reason)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.sock.close(CLOSE_GOING_AWAY, reason), 2)

        await asyncio.gather(*(one(c) for c in list(self.connections)))
