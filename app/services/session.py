"""One persistent Responses session: connect, warm, send turns, recover, rotate, fall back to HTTP.

`ResponsesSession.run_turn()` is the only way a turn leaves the app. Turns are serialised on the
session's lane (the default lane, or `lane=` a named `stream_id`: FIFO on the server too; side
conversations are sessions of their own on other lanes, see app.services.lanes). The protocol decisions come from `ClientSession`; this
service only acts on them:

- `Completed` -> the turn's result.  `Fail` -> a failed result with the server's own words.
- `Resend` (previous_response_not_found) -> send the full-input frame once on the same socket.
- `Reconnect` (age limit) or a socket that drops mid-turn -> reconnect with backoff and resend the
  turn in full on a fresh chain (the rebuild hook swaps stale context for a fresh snapshot).
- An `http(s)://` endpoint -> every turn goes over HTTP + SSE directly (no socket is tried).
- The upgrade refused with 403/404/405/426/501 (the server has no WebSocket mode) -> this turn goes
  over HTTP + SSE at once, with a notice saying so; 401 -> "the endpoint refused the key". The
  socket failing again and again -> HTTP too. The next turn tries the WebSocket again (never sticky).
- The policy is made of values passed in, as websockets' `connect(process_exception=...)`: `connect`
  (opens a socket), `post` (one HTTP turn), `sleep`, `delays` (a backoff iterator factory) and
  `classify` (what a refused upgrade means), so it is tested in memory with fakes.
- `RebuildNeeded` (any fresh chain, with a rebuild hook) -> await the hook, which may build the
  snapshot on a worker thread, then send `client.rebuilt(...)`: the loop never waits on that work.
- Before the provider's connection age limit, the socket is rotated at a turn boundary.

Nothing the user typed is lost: the transcript lives in `ClientSession`, not on the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from app.adapters.http_sse import HttpError, post_stream
from app.adapters.ws_client import TransportError, WsTransport
from app.protocol.backoff import UpgradeVerdict, backoff, classify_close, classify_upgrade
from app.protocol.client import ClientSession, Completed, Fail, Outcome, RebuildNeeded, Reconnect, Resend
from app.protocol.codec import encode
from app.protocol.errors import RemoteProtocolError
from app.protocol.events import (
    CLIENT_EVENTS_HEADER,
    CustomToolCallInputDelta,
    FunctionCallArgumentsDelta,
    OutputTextDelta,
    ReasoningContentDelta,
    ReasoningSummaryTextDelta,
    ReasoningTextDelta,
    RefusalDelta,
    ResponseCancel,
    ServerEvent,
)
from app.services.api import ConnectionState
from app.services.signals import Signal

log = logging.getLogger(__name__)

Item = Mapping[str, Any]
# Events that carry model output: the first one marks the time to first token.
TOKEN_EVENTS = (
    OutputTextDelta,
    ReasoningTextDelta,
    ReasoningContentDelta,
    ReasoningSummaryTextDelta,
    FunctionCallArgumentsDelta,
    CustomToolCallInputDelta,
    RefusalDelta,
)
# The longest run of receiving (decode, assemble, hand to on_event) before the event loop gets a turn:
# under qasync the loop is the GUI's, and its frame clock must keep ticking at any stream rate.
RECV_SLICE_S = 0.004
# (lane, transcript) -> the transcript for a fresh chain; may be a coroutine function.
RebuildHook = Callable[[str | None, list[Item]], Awaitable[list[Item]] | list[Item]]
AUTH_FAILED = frozenset({401, 403})
# After Stop on a server without `response.cancel`, how long the stopped response may keep streaming
# (discarded) so that the chain survives; past it the socket is dropped and the next turn resends all.
DRAIN_LIMIT_S = 30.0
Connect = Callable[..., Awaitable[WsTransport]]
Post = Callable[..., AsyncIterator[ServerEvent]]


def is_http_url(url: str) -> bool:
    """An endpoint spoken to over HTTP + SSE only."""
    return url.lower().startswith(("http://", "https://"))


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where turns go. `max_age_s`: the provider's connection age limit (OpenAI 60 min, xAI 25)."""

    url: str  # ws://127.0.0.1:8765/v1/responses, wss://api.openai.com/v1/responses
    token: str | None = field(default=None, repr=False)  # an API key: never in a repr, log or crash report
    model: str = "scripted"
    max_age_s: float | None = 3600.0
    headers: Mapping[str, str] = field(default_factory=dict)
    store: bool = False
    label: str = ""  # what the status bar shows, e.g. "scripted — no model"


@dataclass(frozen=True, slots=True)
class TurnResult:
    status: Literal["completed", "incomplete", "failed", "cancelled"]
    response_id: str | None = None
    output: Sequence[Item] = ()
    usage: Mapping[str, Any] = field(default_factory=dict)
    error: str = ""  # words for the user when not completed
    code: str = ""
    transport: Literal["websocket", "http", ""] = ""
    latency_ms: float = 0.0  # send -> terminal event
    bytes_sent: int = 0
    ttft_ms: float | None = (
        None  # send -> first output token (text, reasoning, tool arguments); None: none came
    )
    kept_chain: bool = False  # stopped, and the chain continues from it: the next turn sends only new input

    @property
    def ok(self) -> bool:
        return self.status in ("completed", "incomplete")


class TurnCancelled(Exception):
    """The user stopped the turn."""


@dataclass(frozen=True, slots=True)
class SentFrame:
    """One request as it went on the wire (what the context inspector records)."""

    frame: bytes
    transport: Literal["websocket", "http"]
    fresh_cause: str  # why the chain started afresh, when the request has no previous_response_id
    transcript: Sequence[Item]  # the lane's whole conversation then: what a stateless client would send


class ResponsesSession:
    """The app's single socket to the model (see module docstring)."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        rebuild: RebuildHook | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_attempts: int = 6,
        initial_delay: float = 0.25,
        max_delay: float = 4.0,
        rotate_margin_s: float = 300.0,
        drain_limit_s: float = DRAIN_LIMIT_S,
        connect: Connect = WsTransport.open,
        post: Post | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        delays: Callable[[], Iterator[float]] | None = None,
        classify: Callable[[int | None], UpgradeVerdict] = classify_upgrade,
        lane: str | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.lane = lane  # the stream_id this session's turns use (None: the default lane)
        self._connect = connect
        self._post: Post = post or self._post_pooled
        self._http_client: Any = None  # one pooled httpx client for HTTP turns (keep-alive)
        self._sleep_fn = sleep
        self._delays_fn = delays
        self._classify = classify
        self.client = ClientSession(rebuilds=rebuild is not None)
        self._rebuild = rebuild
        self._clock = clock
        self._ws: WsTransport | None = None
        self._opened_at = 0.0
        self._lock = asyncio.Lock()
        self._max_attempts = max_attempts
        self._delays = (initial_delay, max_delay)
        self._rotate_margin = rotate_margin_s
        self._cancel = asyncio.Event()
        self._turn_task: asyncio.Task[Any] | None = None
        # (state, detail): connecting | warm | streaming | reconnecting | offline | error
        self.state_changed: Signal[[ConnectionState, str]] = Signal("state_changed")
        self.state: ConnectionState = "offline"
        self.detail = ""
        self.connections = 0  # sockets opened so far (rotations and reconnects included)
        self.rotations = 0
        self.http_turns = 0
        self.bytes_sent = 0
        self.last_ttft_ms: float | None = None  # the last turn's time to first token (stats)
        self._first_token_at: float | None = None
        # What the status bar tells: the transport in use, the reconnect attempt, why the chain restarted.
        self.transport: Literal["websocket", "http", ""] = ""
        self.attempt = 0  # reconnect attempt under way (0: none)
        self._fresh_cause = ""  # why the next fresh chain starts (the inspector counts rebuilds by it)
        # Stop without losing the chain: the server's optional `response.cancel`, else a bounded drain.
        self.cancel_supported = False
        self._drain_limit_s = drain_limit_s
        self._drain: asyncio.Task[bool] | None = None
        self._sent_on: WsTransport | None = None  # the socket this turn's frame went out on
        self._sent_this_turn = False
        self.sent: Signal[[SentFrame]] = Signal("sent")  # every request, as sent
        self.ended: Signal[[TurnResult]] = Signal("ended")  # every request's end (a stopped one's too)

    # ---- state ---------------------------------------------------------------------------------

    def _set_state(self, state: ConnectionState, detail: str = "") -> None:
        if (state, detail) != (self.state, self.detail):
            self.state, self.detail = state, detail
            self.state_changed.emit(state, detail)

    @property
    def busy(self) -> bool:
        return self._lock.locked() or self.draining

    @property
    def draining(self) -> bool:
        """A stopped response is still ending on the socket (its output discarded, the chain kept)."""
        return self._drain is not None and not self._drain.done()

    @property
    def max_attempts(self) -> int:
        return self._max_attempts

    def rotate_at(self) -> float | None:
        """When (on the session's clock) the socket will be renewed before its age limit; None: no socket."""
        if self._ws is None or not self.endpoint.max_age_s:
            return None
        limit = self.endpoint.max_age_s
        return self._opened_at + limit - min(self._rotate_margin, limit * 0.1)

    # ---- connection ----------------------------------------------------------------------------

    async def _drop_socket(self, code: int = 1000, reason: str = "", *, abort: bool = False) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            if abort:
                ws.abort()
            else:
                await ws.aclose(code, reason)

    def _socket_dead(self) -> bool:
        return self._ws is not None and self._ws.closed is not None

    async def _open(self) -> WsTransport:
        if self.state != "rotating":
            self._set_state(
                "reconnecting" if self.attempt else "connecting",
                self.detail if self.attempt else self.endpoint.url,
            )
        ws = await self._connect(self.endpoint.url, token=self.endpoint.token, headers=self.endpoint.headers)
        self._ws = ws
        self._opened_at = self._clock()
        self.connections += 1
        self.transport = "websocket"
        header = getattr(ws, "header", None)
        events = header(CLIENT_EVENTS_HEADER) if callable(header) else None
        self.cancel_supported = isinstance(events, str) and "response.cancel" in events
        self.attempt = 0
        self._set_state("warm", f"connected to {self.endpoint.url}")
        return ws

    def _needs_rotation(self) -> bool:
        if self._ws is None or not self.endpoint.max_age_s:
            return False
        limit = self.endpoint.max_age_s
        margin = min(self._rotate_margin, limit * 0.1)
        return self._clock() - self._opened_at >= limit - margin

    async def _boundary(self) -> None:
        """Between turns: notice a dead socket, rotate before the age limit. Chains die with sockets."""
        if self._socket_dead():
            await self._drop_socket()
            self.client.on_disconnect()
            self._fresh_cause = "the connection had closed"
        elif self._needs_rotation():
            log.info("rotating the connection before its age limit")
            self.rotations += 1
            limit = (self.endpoint.max_age_s or 0) / 60
            self._set_state("rotating", f"before its {limit:g}-min limit")
            await self._drop_socket(1000, "rotating before the connection age limit")
            self.client.on_disconnect()
            self._fresh_cause = "the connection was renewed before its age limit"

    # ---- turns ---------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop the running turn. The socket and the chain are kept when the frame went out on a live
        socket: the server's `response.cancel` ends the response at once (Slipstream's server), or else
        the response is left to finish with its output discarded (at most `drain_limit_s`); the chain
        continues from the stopped response, so the next turn sends only new input."""
        self._cancel.set()
        if self._turn_task is not None and not self._turn_task.done():
            self._turn_task.cancel()

    async def settled(self) -> bool:
        """Wait until a stopped response has ended on the socket; True: the chain was kept."""
        task = self._drain
        if task is None:
            return True
        return await asyncio.shield(task)

    async def run_turn(
        self,
        new_items: Sequence[Item],
        *,
        generate: bool = True,
        settings: Mapping[str, Any] | None = None,
        on_event: Callable[[ServerEvent], None] | None = None,
        on_retry: Callable[[str], None] | None = None,
    ) -> TurnResult:
        """Send one turn and stream its events to `on_event`; returns when it ended, one way or another."""
        self._sent_this_turn = False
        result = await self._run_turn(
            new_items, generate=generate, settings=settings, on_event=on_event, on_retry=on_retry
        )
        if self._sent_this_turn:
            self.ended.emit(result)
        return result

    async def _run_turn(
        self,
        new_items: Sequence[Item],
        *,
        generate: bool,
        settings: Mapping[str, Any] | None,
        on_event: Callable[[ServerEvent], None] | None,
        on_retry: Callable[[str], None] | None,
    ) -> TurnResult:
        async with self._lock:
            self._cancel.clear()
            self._turn_task = asyncio.current_task()
            self._sent_on = None
            if self._drain is not None:
                try:
                    await self.settled()  # the stopped response ends first (FIFO on the lane anyway)
                except asyncio.CancelledError:
                    task = asyncio.current_task()
                    if not self._cancel.is_set() or task is None:
                        raise
                    task.uncancel()
                    self._turn_task = None
                    return TurnResult("cancelled", error="stopped by the user")
                self._drain = None
            await self._boundary()
            opts = {"model": self.endpoint.model, "store": self.endpoint.store, **(settings or {})}
            try:
                try:
                    # inside the try: if building the frame fails (the rebuild hook), the turn is abandoned
                    frame = await self._frame(
                        self.client.create(list(new_items), lane=self.lane, generate=generate, **opts)
                    )
                    return await self._drive(
                        frame, on_event or (lambda e: None), on_retry or (lambda r: None)
                    )
                except asyncio.CancelledError:
                    task = asyncio.current_task()
                    if not self._cancel.is_set() or task is None:
                        raise  # cancelled from outside: not a Stop
                    task.uncancel()
                    raise TurnCancelled from None
                finally:
                    self._turn_task = None
            except TurnCancelled:
                return await self._stopped()
            except BaseException:
                self.client.abandon(self.lane)
                await self._drop_socket(abort=True)
                raise

    async def _drive(
        self, frame: bytes, on_event: Callable[[ServerEvent], None], on_retry: Callable[[str], None]
    ) -> TurnResult:
        if is_http_url(self.endpoint.url):
            return await self._http_turn(on_event, why="", direct=True)
        delays = self._delay_iter()
        failures = 0
        resent_in_place = False
        last_error = ""
        while True:
            if self._ws is None:
                try:
                    await self._open()
                except TransportError as exc:
                    last_error = str(exc)
                    verdict = self._classify(exc.status)
                    if verdict == "auth":
                        self.client.abandon(self.lane)
                        self._set_state("error", f"{exc.status}: the endpoint refused the key")
                        return TurnResult(
                            "failed",
                            error=f"The endpoint refused the key (HTTP {exc.status}). "
                            "Check the API key in Settings.",
                            code="unauthorized",
                        )
                    if verdict == "no_websocket":
                        notice = (
                            f"the server has no WebSocket mode (it answered the upgrade with HTTP "
                            f"{exc.status}); this turn goes over HTTP"
                        )
                        on_retry(notice)
                        return await self._http_turn(on_event, why=notice)
                    failures += 1
                    if failures >= (2 if exc.status else self._max_attempts):
                        return await self._http_turn(on_event, why=last_error)
                    self.attempt = failures
                    self._set_state("reconnecting", last_error)
                    await self._sleep(next(delays))
                    continue
            ws = self._ws
            assert ws is not None
            t0 = self._clock()
            self._first_token_at = None
            if not await ws.send(frame):
                outcome: Outcome | None = None
            else:
                self.bytes_sent += len(frame)
                self._sent_on = ws
                self._emit_sent(frame, "websocket")
                outcome = await self._pump(ws, on_event)
            if isinstance(outcome, Completed):
                self._set_state("warm", f"connected to {self.endpoint.url}")
                return TurnResult(
                    outcome.status,  # type: ignore[arg-type]
                    outcome.response_id,
                    outcome.output,
                    _usage(outcome.response),
                    transport="websocket",
                    latency_ms=(self._clock() - t0) * 1000,
                    bytes_sent=len(frame),
                    ttft_ms=self._ttft(t0),
                )
            if isinstance(outcome, Fail):
                self._set_state("warm", f"connected to {self.endpoint.url}")
                return TurnResult(
                    "failed",
                    error=f"{outcome.message} ({outcome.code})" if outcome.code else outcome.message,
                    code=outcome.code,
                    transport="websocket",
                )
            if isinstance(outcome, Resend | RebuildNeeded) and not resent_in_place:
                resent_in_place = True
                self._fresh_cause = "the server no longer had the conversation (previous_response_not_found)"
                on_retry("the server lost the conversation; resending it in full")
                frame = await self._frame(outcome)
                continue
            # The socket is gone (dropped mid-turn, age limit, or a second miss): new socket, fresh chain.
            reason = outcome.reason if isinstance(outcome, Reconnect) else "connection lost"
            closed = ws.closed
            if outcome is None and closed is not None and classify_close(closed.code) == "fatal":
                # e.g. 1008 policy, 1009 too big, 1002 protocol error: retrying would fail the same way.
                await self._drop_socket()
                self.client.abandon(self.lane)
                detail = f"the server closed the connection (code {closed.code}{': ' + closed.reason if closed.reason else ''})"
                self._set_state("offline", detail)
                return TurnResult(
                    "failed",
                    error=detail + "; your message is kept, send again to retry.",
                    code=f"close_{closed.code}",
                    transport="websocket",
                )
            if closed is not None and outcome is None:
                reason = f"connection lost (code {closed.code})"
            await self._drop_socket()
            resends = [r for r in self.client.on_disconnect() if r.lane == self.lane]
            if not resends:  # the turn finished after all
                return TurnResult("failed", error=reason)
            frame = await self._frame(resends[0])
            failures += 1
            self._fresh_cause = reason
            if failures >= self._max_attempts:
                return await self._http_turn(on_event, why=reason)
            on_retry(f"{reason}; retrying on a new connection")
            self.attempt = failures
            self._set_state("reconnecting", reason)
            if not isinstance(outcome, Reconnect):
                await self._sleep(next(delays))

    async def _pump(self, ws: WsTransport, on_event: Callable[[ServerEvent], None]) -> Outcome | None:
        """Feed frames to the ClientSession until this lane's outcome; None if the socket closed.
        Stop cancels the running turn's task (no per-frame futures on this hot path)."""
        streaming = False
        client = self.client
        clock = self._clock
        turn_at = clock() + RECV_SLICE_S
        while True:
            if clock() >= turn_at:  # frames are queued: let the loop turn (paint, input) between slices
                await asyncio.sleep(0)
                turn_at = clock() + RECV_SLICE_S
            raw = await ws.recv()
            if raw is None:
                return None
            try:
                client.receive_frame(raw)
            except RemoteProtocolError as exc:
                log.warning("ignored a bad frame from the server: %s", exc)
                self._set_state(self.state, f"the server sent a bad frame: {exc}")
                continue
            events = client.events_received()
            if not streaming and events:
                streaming = True
                self._set_state("streaming", self.endpoint.url)
            for event in events:
                if self._first_token_at is None and isinstance(event, TOKEN_EVENTS):
                    self._first_token_at = self._clock()
                on_event(event)
            for out in client.outcomes():
                if isinstance(out, Reconnect) or out.lane == self.lane:
                    return out

    async def _http_turn(
        self, on_event: Callable[[ServerEvent], None], *, why: str, attempts: int = 3, direct: bool = False
    ) -> TurnResult:
        """This turn over HTTP + SSE with the full input; the next turn tries the WebSocket again
        (`direct`: the endpoint is http(s)://, HTTP is simply its transport).
        A POST cut before its response finished (no HTTP status) is retried, bounded, with backoff."""
        delays = self._delay_iter()
        result = TurnResult("failed", error=why)
        for attempt in range(attempts):
            result, retry = await self._http_once(on_event, why=why, direct=direct)
            if not retry or attempt == attempts - 1:
                break
            self._set_state("reconnecting", result.error)
            await self._sleep(next(delays))
        if not result.ok and self.client.in_flight(self.lane):
            self.client.abandon(self.lane)
        return result

    async def _http_once(
        self, on_event: Callable[[ServerEvent], None], *, why: str, direct: bool = False
    ) -> tuple[TurnResult, bool]:
        """One POST; returns (result, worth retrying)."""
        resends = [r for r in self.client.on_disconnect() if r.lane == self.lane]
        if not resends:
            return TurnResult("failed", error=why), False
        body = json.loads(await self._frame(resends[0]))
        body.pop("type", None)
        body.pop("stream_id", None)
        body["stream"] = True
        data = json.dumps(body).encode()
        self.http_turns += 1
        self.transport = "http"
        self.attempt = 0
        if not direct:
            self._fresh_cause = "over HTTP every request carries the whole conversation"
        self._emit_sent(data, "http")
        if direct:
            self._set_state("streaming", self.endpoint.url)
        else:
            self._set_state("streaming", f"over HTTP: the WebSocket is unavailable ({why})")
        t0 = self._clock()
        self._first_token_at = None
        try:
            async for ev in self._post(
                self.endpoint.url, data, token=self.endpoint.token, headers=self.endpoint.headers
            ):
                if self._cancel.is_set():
                    raise TurnCancelled
                self.client.receive_event(ev)
                for e in self.client.events_received():
                    if self._first_token_at is None and isinstance(e, TOKEN_EVENTS):
                        self._first_token_at = self._clock()
                    on_event(e)
                for out in self.client.outcomes():
                    self.client.on_disconnect()  # HTTP responses are not in any socket's cache
                    if isinstance(out, Completed):
                        if direct:
                            self._set_state("warm", f"HTTP endpoint {self.endpoint.url}")
                        else:
                            self._set_state(
                                "warm",
                                "the last message went over HTTP; the next one tries the WebSocket again",
                            )
                        return TurnResult(
                            out.status,  # type: ignore[arg-type]
                            out.response_id,
                            out.output,
                            _usage(out.response),
                            transport="http",
                            latency_ms=(self._clock() - t0) * 1000,
                            bytes_sent=len(data),
                            ttft_ms=self._ttft(t0),
                        ), False
                    msg = getattr(out, "message", "") or why
                    return TurnResult(
                        "failed", error=msg, code=getattr(out, "code", ""), transport="http"
                    ), False
        except RemoteProtocolError as exc:  # the server sent garbage in its SSE stream
            self._set_state("offline", f"the server sent a bad event: {exc}")
            return TurnResult(
                "failed",
                error=f"The server sent a malformed event over HTTP: {exc}",
                code=exc.code,
                transport="http",
            ), False
        except HttpError as exc:
            detail = f"cannot reach {self.endpoint.url}: {exc}"
            self._set_state("error" if exc.status in AUTH_FAILED else "offline", detail)
            if exc.status in AUTH_FAILED:
                return TurnResult(
                    "failed",
                    error=f"The endpoint refused the key (HTTP {exc.status}).",
                    code="unauthorized",
                    transport="http",
                ), False
            error = f"{exc}" if direct else f"{why}; HTTP fallback failed too: {exc}"
            return TurnResult("failed", error=error, code="unreachable", transport="http"), exc.status is None
        self._set_state("offline", "the HTTP stream ended early")
        return TurnResult(
            "failed", error="the HTTP stream ended before the response finished", transport="http"
        ), True

    # ---- Stop that keeps the chain ---------------------------------------------------------------

    async def _stopped(self) -> TurnResult:
        """The user stopped the turn. Keep the socket and the chain when the frame went out on a live
        socket (see `stop`); otherwise drop both and say the next turn reconnects."""
        ws = self._ws
        if ws is not None and self._sent_on is ws and ws.closed is None and self.client.in_flight():
            rid = self.client.in_flight_id()
            self._drain = asyncio.ensure_future(self._drain_stopped(ws))
            self._set_state("warm", "stopped; the connection and the conversation are kept")
            return TurnResult(
                "cancelled", rid, error="stopped by the user", transport="websocket", kept_chain=True
            )
        self.client.abandon(self.lane)
        await self._drop_socket(abort=True)
        self._fresh_cause = "the previous message was stopped before it reached the server"
        self._set_state("idle", "stopped; the next message opens a new connection")
        return TurnResult("cancelled", error="stopped by the user")

    async def _drain_stopped(self, ws: WsTransport) -> bool:
        """Let the stopped response end (cancelled by the server when it can, else finishing) with its
        events discarded. True: it ended and is the chain head. False: the socket was dropped."""
        client = self.client
        cancel_sent = False
        done: Completed | None = None
        try:
            async with asyncio.timeout(self._drain_limit_s):
                while done is None:
                    rid = client.in_flight_id()
                    if self.cancel_supported and not cancel_sent and rid is not None:
                        frame = encode(ResponseCancel(response_id=rid))
                        cancel_sent = True
                        if not await ws.send(frame):
                            break
                        self.bytes_sent += len(frame)
                    raw = await ws.recv()
                    if raw is None:
                        break
                    try:
                        client.receive_frame(raw)
                    except RemoteProtocolError as exc:
                        log.warning("ignored a bad frame from the server: %s", exc)
                        continue
                    client.events_received()  # the user stopped it: nothing more is shown
                    outs = [o for o in client.outcomes() if isinstance(o, Reconnect) or o.lane == self.lane]
                    if not outs:
                        continue
                    if isinstance(outs[0], Completed):
                        done = outs[0]
                    break
        except TimeoutError:
            log.info(
                "the stopped response did not end within %.0f s; dropping the connection", self._drain_limit_s
            )
        if done is not None:
            self.ended.emit(
                TurnResult(
                    "cancelled",
                    done.response_id,
                    done.output,
                    _usage(done.response),
                    transport="websocket",
                    kept_chain=True,
                )
            )
            if self.state == "warm":
                self._set_state("warm", f"connected to {self.endpoint.url}")
            return True
        client.abandon(self.lane)
        if self._ws is ws:
            await self._drop_socket(abort=True)
        self._fresh_cause = "the stopped reply could not be ended on the connection"
        self.ended.emit(TurnResult("cancelled", error="stopped; the connection was dropped"))
        self._set_state("idle", "stopped; the next message opens a new connection")
        return False

    def _emit_sent(self, frame: bytes, transport: Literal["websocket", "http"]) -> None:
        self._sent_this_turn = True
        self.sent.emit(SentFrame(frame, transport, self._fresh_cause, self.client.transcript()))

    # ---- helpers -------------------------------------------------------------------------------

    def _ttft(self, t0: float) -> float | None:
        """Time to first token of the turn sent at `t0`, in ms (kept as `last_ttft_ms`)."""
        first = self._first_token_at
        self.last_ttft_ms = (first - t0) * 1000 if first is not None else None
        return self.last_ttft_ms

    async def _frame(self, out: bytes | Resend | RebuildNeeded) -> bytes:
        """The frame to send; a fresh chain's transcript first goes through the rebuild hook."""
        if isinstance(out, bytes):
            return out
        if isinstance(out, Resend):
            return out.frame
        assert self._rebuild is not None  # the client asks only when a hook was given
        got = self._rebuild(out.lane, list(out.transcript))
        items = await got if inspect.isawaitable(got) else got
        return self.client.rebuilt(out, items)

    def _delay_iter(self) -> Iterator[float]:
        if self._delays_fn is not None:
            return self._delays_fn()
        initial, max_delay = self._delays
        return iter(backoff(initial=initial, factor=2, max_delay=max_delay, jitter=random.random))

    async def _sleep(self, seconds: float) -> None:
        await self._sleep_fn(seconds)  # Stop cancels the turn's task, which ends this sleep

    def _post_pooled(self, url: str, body: bytes, **kw: Any) -> AsyncIterator[ServerEvent]:
        """post_stream on one kept-alive client, so HTTP turns skip the connect and client setup."""
        if self._http_client is None:
            import httpx  # first HTTP turn only: most sessions never use HTTP

            self._http_client = httpx.AsyncClient(timeout=httpx.Timeout(600.0, connect=10.0))
        return post_stream(url, body, client=self._http_client, **kw)

    async def aclose(self) -> None:
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await drain
        if self._http_client is not None:
            client, self._http_client = self._http_client, None
            await client.aclose()
        await self._drop_socket(1000, "bye")
        self._set_state("offline", "closed")


def _usage(response: Mapping[str, Any]) -> Mapping[str, Any]:
    usage = response.get("usage")
    return usage if isinstance(usage, Mapping) else {}
