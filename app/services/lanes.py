"""Side conversations on their own `stream_id` lanes of the agent's socket (PROTOCOL §1.3).

Two parts:

- `SharedSocket` owns the one WebSocket and hands each lane a `LaneTransport` (the `WsTransport`
  surface `ResponsesSession` drives: send, recv, closed, aclose, abort). One reader task reads the
  socket and routes each frame by its `stream_id` to that lane's queue: frames without one belong to
  the default lane (the agent's), named ones to their side lane, and connection-level errors
  (`websocket_connection_limit_reached`) to every lane. So each lane has its own `ResponsesSession`
  and its own `ClientSession`: a side lane's items can never enter the agent's chain, and each lane
  recovers on its own (resend in full after a reconnect or the age limit) through the session's
  existing logic. Frames of lanes nobody holds any more (a closed side lane still streaming on the
  server) are dropped.
  Closing: the agent's lane decides the socket's life. Its `aclose` (rotation, shutdown) retires the
  socket: new lanes get a new one, lanes still streaming on the old one finish there, and it closes
  when the last of them lets go. Its `abort` (Stop: the protocol has no cancel event) drops the
  socket at once; side lanes on it then resend in full on the next one, losing nothing. A side lane
  closing only lets go of the socket.
- `SideLanes` runs the side conversations: each `SideLane` has its own `Transcript` (the view's model),
  its own `ResponsesSession` on `stream_id` "side-N", runs its turns concurrently with the agent's and
  with each other, and can be continued, closed, or promoted to a stored session.

Project context for a side lane (the design choice, against PROTOCOL §1.3/§2.2): the side lane's
first request carries, as full input, the context items the agent's chain holds *now* (the snapshot
and the diffs pushed since, from the agent's `ClientSession` transcript, in order), then the question;
a continued side turn first adds the context items the agent's chain gained meanwhile. Not a fork by
`previous_response_id`: with store=false the parent must still be in the connection cache, and the
agent's lane replaces its cached response with every turn, so a fork races the agent unless the
agent waits for the fork's `response.in_progress` (§1.3) -- it would block the agent's lane -- and a
fork cannot cross to a second connection or survive a reconnect at all. Not `item_reference`: the
server keeps output items, and context items are inputs. The copy costs the context's input tokens
once per side chain (the same prefix as the agent's chain, so a prefix cache can still hit), never
touches the workspace's ledger (the agent's acknowledgements stay the agent's), and needs no disk
read, thread or extra round trip; it works the same on a second connection, after a reconnect and
after the age limit. The agent's conversation itself (its messages, tool calls) is not copied: a side
question sees the project, not the agent's scratch work.

Servers without lanes: the first side turn on a shared socket probes. A server that refuses
`stream_id` answers with an `error` naming `stream_id` and no lane of its own; the reader hands that
to the probing lane (never to the agent's), `lanes_supported` turns False, and every side lane then
uses a second connection of its own (default lane), said in its pane.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from app.adapters.ws_client import Closed, WsTransport
from app.context.ledger import is_context_item
from app.protocol import events as ev
from app.render.transcript import Transcript
from app.services.session import Endpoint, ResponsesSession, TurnResult, is_http_url
from app.services.signals import Signal

log = logging.getLogger(__name__)

__all__ = ["LaneTransport", "SharedSocket", "SideLane", "SideLanes", "route_frame"]

Item = Mapping[str, Any]
Connect = Callable[..., Awaitable[WsTransport]]
RECV_SLICE_S = 0.004  # the reader's longest run before the event loop turns (as the session's pump)
BROADCAST_CODES = frozenset({"websocket_connection_limit_reached"})
SIDE_PREFIX = "side-"
SIDE_INSTRUCTIONS = (
    "You answer a side question from the user while a coding agent works on the project in another "
    "conversation. The project's files as the agent sees them are in the context messages. Answer "
    "briefly and concretely; you cannot run tools or change files here."
)
Transport = Literal["lane", "connection", "http", ""]


# ---- routing (plain data) ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Route:
    """Where one frame goes: `lane` (None: the default lane), or every lane (`broadcast`).
    `stream_refused`: an error about `stream_id` itself (a server without lanes)."""

    lane: str | None
    broadcast: bool = False
    stream_refused: bool = False


DEFAULT_ROUTE = Route(None)


def route_frame(raw: str | bytes) -> Route:
    """The lane a server frame belongs to. Cheap on the agent's hot path: a frame without the
    `"stream_id"` key (JSON escapes quotes inside strings, so text cannot fake it) and without an
    `"error"` key is the default lane's, with no parse; other frames are parsed once."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    if '"stream_id"' not in text and '"error"' not in text:
        return DEFAULT_ROUTE
    try:
        obj = json.loads(text)
    except ValueError:
        return DEFAULT_ROUTE  # the default lane's ClientSession reports the bad frame
    if not isinstance(obj, dict):
        return DEFAULT_ROUTE
    sid = obj.get("stream_id")
    lane = sid if isinstance(sid, str) and sid else None
    if obj.get("type") != "error":
        return Route(lane)
    err = obj.get("error")
    err = err if isinstance(err, dict) else obj  # the flat SSE-style shape (PROTOCOL §4.3)
    code = str(err.get("code") or "")
    if lane is None and code in BROADCAST_CODES:
        return Route(None, broadcast=True)
    if lane is None and (err.get("param") == "stream_id" or "stream_id" in str(err.get("message") or "")):
        return Route(None, stream_refused=True)
    return Route(lane)


def _with_lane(raw: str | bytes, lane: str) -> str:
    """`raw` (a JSON object) with `stream_id` set to `lane`."""
    obj = json.loads(raw)
    obj["stream_id"] = lane
    return json.dumps(obj)


# ---- the shared socket ---------------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class _Socket:
    ws: WsTransport
    views: dict[str | None, LaneTransport] = field(default_factory=dict)
    retired: bool = False
    reader: asyncio.Task[None] | None = None


class LaneTransport:
    """One lane's view of the shared socket, with `WsTransport`'s surface (see module docstring)."""

    def __init__(self, hub: SharedSocket, sock: _Socket, lane: str | None) -> None:
        self._hub = hub
        self._sock = sock
        self.lane = lane
        self._queue: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self._ended = False
        self.detached = False

    def _put(self, frame: str | bytes | None) -> None:
        if not self._ended:
            self._queue.put_nowait(frame)
            self._ended = frame is None

    async def send(self, frame: bytes | str) -> bool:
        if self.detached or self._sock.ws.closed is not None:
            return False
        return await self._sock.ws.send(frame)

    async def recv(self) -> str | bytes | None:
        if self.detached:
            return None
        frame = await self._queue.get()
        if frame is None:
            self._queue.put_nowait(None)  # stays ended for every later call
        return frame

    def header(self, name: str) -> str | None:
        """A header of the shared socket's upgrade response (e.g. the server's client events)."""
        return self._sock.ws.header(name)

    @property
    def closed(self) -> Closed | None:
        dead = self._sock.ws.closed
        if dead is not None:
            return dead
        if self.detached or self._sock.retired:
            return Closed(1000, "the shared connection was rotated")
        return None

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        await self._hub._let_go(self, code, reason)

    def abort(self) -> None:
        self._hub._abort(self)


class SharedSocket:
    """The agent's WebSocket, shared by lanes (see module docstring). `connector(lane)` is the
    `connect` a lane's `ResponsesSession` uses."""

    def __init__(
        self, connect: Connect = WsTransport.open, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._connect = connect
        self._clock = clock
        self._current: _Socket | None = None
        self._sockets: list[_Socket] = []
        self._opening = asyncio.Lock()
        self.lanes_supported: bool | None = None  # None: no side lane has tried yet
        self.probing: str | None = None  # the side lane whose first request tests stream_id
        self.opened = 0  # real sockets opened
        self.probe_over = asyncio.Event()  # the probe's answer came (or the probing turn ended)
        self.probe_over.set()
        self.lanes_seen: set[str | None] = set()  # the lanes frames came in for (stats, tests)

    def connector(self, lane: str | None) -> Connect:
        async def connect(
            url: str, *, token: str | None = None, headers: Mapping[str, str] | None = None, **kw: Any
        ) -> WsTransport:
            return await self.open(lane, url, token=token, headers=headers, **kw)  # type: ignore[return-value]

        return connect

    async def open(
        self,
        lane: str | None,
        url: str,
        *,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        **kw: Any,
    ) -> LaneTransport:
        """A view of the live socket for `lane`, opening a socket when there is none."""
        async with self._opening:
            sock = self._current
            if sock is None or sock.retired or sock.ws.closed is not None:
                ws = await self._connect(url, token=token, headers=headers, **kw)
                sock = _Socket(ws)
                self._current = sock
                self._sockets.append(sock)
                self.opened += 1
                sock.reader = asyncio.ensure_future(self._read(sock))
            old = sock.views.get(lane)
            if old is not None:
                old.detached = True
                old._put(None)
            view = LaneTransport(self, sock, lane)
            sock.views[lane] = view
            return view

    @property
    def connections(self) -> int:
        """Sockets open now (the agent's and any retired one still finishing a side stream)."""
        return sum(1 for s in self._sockets if s.ws.closed is None)

    async def _read(self, sock: _Socket) -> None:
        """Route every frame of `sock` to its lane's queue until it closes (module docstring)."""
        clock = self._clock
        turn_at = clock() + RECV_SLICE_S
        try:
            while True:
                if clock() >= turn_at:
                    await asyncio.sleep(0)
                    turn_at = clock() + RECV_SLICE_S
                raw = await sock.ws.recv()
                if raw is None:
                    break
                route = route_frame(raw)
                if route.broadcast:
                    for view in list(sock.views.values()):
                        view._put(raw)
                    continue
                lane = route.lane
                if route.stream_refused:
                    self.lanes_supported = False
                    self.probe_over.set()
                    lane = self.probing
                    if lane is None:
                        continue  # no side lane asked: never the agent's business
                    raw = _with_lane(raw, lane)  # so the probing lane's ClientSession owns the error
                elif lane is not None and self.probing == lane and self.lanes_supported is None:
                    self.lanes_supported = True  # the server echoed our stream_id
                    self.probe_over.set()
                self.lanes_seen.add(lane)
                target = sock.views.get(lane)
                if target is not None:
                    target._put(raw)
        finally:
            for view in list(sock.views.values()):
                view._put(None)
            self._forget(sock)

    def _forget(self, sock: _Socket) -> None:
        if sock.ws.closed is not None and sock in self._sockets:
            self._sockets.remove(sock)
        if self._current is sock and sock.ws.closed is not None:
            self._current = None

    async def _let_go(self, view: LaneTransport, code: int, reason: str) -> None:
        sock = view._sock
        view.detached = True
        view._put(None)
        if sock.views.get(view.lane) is view:
            del sock.views[view.lane]
        if view.lane is None:
            sock.retired = True  # the agent's lane rotates or shuts down: no new lane joins this one
        if sock.retired and not sock.views:
            await sock.ws.aclose(code, reason)
            await self._reap(sock)

    def _abort(self, view: LaneTransport) -> None:
        sock = view._sock
        if view.lane is None:
            sock.retired = True
            sock.ws.abort()
        else:  # a side lane never cuts the agent's stream
            view.detached = True
            view._put(None)
            if sock.views.get(view.lane) is view:
                del sock.views[view.lane]

    async def _reap(self, sock: _Socket) -> None:
        task = sock.reader
        if task is not None and not task.done():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(task), 2.5)
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._forget(sock)

    async def aclose(self) -> None:
        """Close every socket and wait for their readers."""
        for sock in list(self._sockets):
            sock.retired = True
            await sock.ws.aclose(1000, "bye")
            await self._reap(sock)
        self._sockets.clear()
        self._current = None


# ---- side conversations --------------------------------------------------------------------------


def _user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def _context_key(item: Item) -> str:
    content = item.get("content")
    first = content[0] if isinstance(content, list) and content else {}
    return str(first.get("text", "")) if isinstance(first, Mapping) else ""


class SideLane:
    """One side conversation: its model, its session (a lane of the shared socket, or a second
    connection), its turns. Made by `SideLanes.open()`."""

    def __init__(self, owner: SideLanes, lane_id: str, title: str) -> None:
        self.owner = owner
        self.id = lane_id
        self.title = title
        self.conversation = Transcript()
        self.session: ResponsesSession = owner._session_for(lane_id)
        self.transport: Transport = ""
        self.changed: Signal[[]] = Signal("changed")  # busy, transport or title changed
        self.closed = False
        self.last: TurnResult | None = None
        self._task: asyncio.Task[None] | None = None
        self._context_seen: set[str] = set()

    @property
    def busy(self) -> bool:
        return self._task is not None and not self._task.done()

    def items(self) -> Sequence[Item]:
        """Every input and output item of this side chain (context copies included)."""
        return self.session.client.transcript(self.session.lane)

    def ask(self, text: str) -> bool:
        """Send a question (the first, or a continuation); False if refused (busy, closed, empty)."""
        text = text.strip()
        if not text or self.closed:
            return False
        if self.busy:
            self.conversation.add_notice("warning", "This side question is still streaming.")
            return False
        self.conversation.add_user_message(text)
        self._task = asyncio.ensure_future(self._turn(text))
        self.changed.emit()
        return True

    def _new_context(self) -> list[Item]:
        """The context items the agent's chain holds that this side chain has not had yet."""
        out: list[Item] = []
        for item in self.owner.main_transcript():
            if is_context_item(item):
                key = _context_key(item)
                if key not in self._context_seen:
                    self._context_seen.add(key)
                    out.append(dict(item))
        return out

    async def _turn(self, text: str) -> None:
        items = [*self._new_context(), _user(text)]
        try:
            result = await self._send(items)
            if not result.ok and result.code == "lane_refused":
                result = await self._fallback(items)
            self.last = result
            if result.status == "failed":
                if not self.conversation.status or self.conversation.status == "streaming":
                    self.conversation.add_notice("error", result.error or "the side question failed")
                    self.conversation.end_response("failed")
            elif result.status == "cancelled":
                self.conversation.end_response("cancelled")
        except Exception as exc:  # a side question never takes the app down
            log.exception("side question failed")
            self.conversation.add_notice("error", f"The side question failed: {exc}")
            self.conversation.end_response("failed")
        finally:
            self.changed.emit()

    async def _send(self, items: list[Item]) -> TurnResult:
        owner = self.owner
        hub = owner.hub
        probe = False
        if self.session.lane is not None and hub is not None and hub.lanes_supported is None:
            # One side lane at a time tests whether the server takes stream_id.
            # (the others wait only for its first frame back, not for its answer)
            while hub.probing is not None and hub.lanes_supported is None:
                await hub.probe_over.wait()
            if hub.lanes_supported is None:
                hub.probing = self.id
                hub.probe_over.clear()
                probe = True
        if self.session.lane is not None and hub is not None and hub.lanes_supported is False:
            return TurnResult("failed", code="lane_refused")
        try:
            self._set_transport()
            result = await self.session.run_turn(
                items, settings=owner.settings(), on_event=self._on_event, on_retry=self._on_retry
            )
        finally:
            if probe and hub is not None:
                hub.probing = None
                hub.probe_over.set()
        if (
            not result.ok
            and hub is not None
            and hub.lanes_supported is False
            and self.session.lane is not None
        ):
            return replace(result, code="lane_refused")
        self._set_transport(result.transport)
        return result

    async def _fallback(self, items: list[Item]) -> TurnResult:
        """The server refused `stream_id`: this lane moves to a second connection of its own."""
        old = self.session
        history = list(old.client.transcript(old.lane))[: -len(items)]
        self.session = self.owner._session_for(self.id, own_connection=True)
        self.session.client.restore(history)
        self.conversation.add_notice(
            "info", "This server has no lanes (it refused stream_id): side questions use a second connection."
        )
        await old.aclose()
        return await self._send(items)

    def _set_transport(self, used: str = "") -> None:
        s = self.session
        kind: Transport = (
            "http"
            if used == "http" or is_http_url(s.endpoint.url)
            else ("lane" if s.lane is not None else "connection")
        )
        if kind != self.transport:
            self.transport = kind
            self.changed.emit()

    def _on_event(self, e: ev.ServerEvent) -> None:
        self.conversation.apply(e)
        self.owner._count(e)

    def _on_retry(self, why: str) -> None:
        self.conversation.add_notice("warning", why)

    async def close(self) -> None:
        """Stop following this side conversation: a lane streaming on the shared socket is let go
        (the agent's stream is never cut); a second connection is closed."""
        if self.closed:
            return
        self.closed = True
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.session.aclose()
        self.changed.emit()


class SideLanes:
    """The side conversations of one project (see module docstring)."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        hub: SharedSocket | None,
        main_transcript: Callable[[], Sequence[Item]],
        settings: Callable[[], Mapping[str, Any]] = dict,
        connect: Connect = WsTransport.open,
        session_kw: Mapping[str, Any] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.hub = hub
        self.main_transcript = main_transcript
        self._settings = settings
        self._connect = connect
        self._session_kw = dict(session_kw or {})
        self.lanes: dict[str, SideLane] = {}
        self._ids: Iterator[int] = itertools.count(1)
        self.opened: Signal[[SideLane]] = Signal("side_opened")
        self.removed: Signal[[SideLane]] = Signal("side_removed")
        self.events = 0  # events of every side lane (bench, stats)
        self._closing: set[asyncio.Task[None]] = set()

    def settings(self) -> dict[str, Any]:
        """A side turn's settings: the agent's instructions and tools do not apply (no tool loop)."""
        return {"instructions": SIDE_INSTRUCTIONS, **self._settings()}

    def _session_for(self, lane_id: str, *, own_connection: bool = False) -> ResponsesSession:
        ep = self.endpoint
        if self.hub is not None and not own_connection and not is_http_url(ep.url):
            # The agent's lane rotates the shared socket; a side lane only follows.
            return ResponsesSession(
                replace(ep, max_age_s=None),
                lane=lane_id,
                connect=self.hub.connector(lane_id),
                **self._session_kw,
            )
        return ResponsesSession(ep, connect=self._connect, **self._session_kw)

    def open(self, text: str = "") -> SideLane:
        """A new side conversation (its first question, if given, is sent at once)."""
        n = next(self._ids)
        lane_id = f"{SIDE_PREFIX}{n}"
        side = SideLane(self, lane_id, (text.strip().splitlines() or [f"Side {n}"])[0][:60])
        if self.hub is not None and self.hub.lanes_supported is False and side.session.lane is not None:
            side.session = self._session_for(lane_id, own_connection=True)
        self.lanes[lane_id] = side
        self.opened.emit(side)
        if text.strip():
            side.ask(text)
        return side

    async def close(self, lane_id: str) -> None:
        side = self.lanes.pop(lane_id, None)
        if side is not None:
            await side.close()
            self.removed.emit(side)

    def close_soon(self, lane_id: str) -> None:
        """`close()` from synchronous code (a button); `aclose()` waits for it."""
        task = asyncio.ensure_future(self.close(lane_id))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _count(self, _e: ev.ServerEvent) -> None:
        self.events += 1

    async def aclose(self) -> None:
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        for lane_id in list(self.lanes):
            await self.close(lane_id)
