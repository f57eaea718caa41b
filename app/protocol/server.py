"""`ServerSession`: the server side of one Responses WebSocket connection, sans I/O.

Drain-style (STYLE.md §7.1): the adapter feeds frames and engine output in, and takes frames out.
One session per WebSocket connection, or one per HTTP `POST /v1/responses` (`for_http`).

Adapter loop (WebSocket)::

    session = ServerSession(now=clock(), store=shared_store)
    on frame:   session.receive_frame(data, now=clock())
                for turn in session.ready_turns(): start_task(run(turn))
                for turn in session.warmups(): engine may prefill turn (optional)
                send(session.frames_to_send())
    in run(turn):
                async for out in engine.run(turn): session.feed(turn.response_id, out); send(...)
                session.finish(turn.response_id, now=clock())        # or abort(...) on a crash
                for turn in session.ready_turns(): start_task(run(turn))   # the lane is free again
                send(session.frames_to_send())
    on a timer: session.check_age(clock()); send(...); if session.close_requested: close(*it)

The module is split along its concerns: finished responses live in `app.protocol.store`, the
response object is built by `app.protocol.resource`, output-item events by the kind table in
`app.protocol.writer`, input resolution and continuation checks in `app.protocol.inputs`. This
module keeps admission, lanes and age.

Rules (PROTOCOL.md §1-§4, §8; the Open Responses spec 2026-04-24):
- Lanes: `stream_id` names a lane; one lane runs its requests FIFO, never overlapping; lanes run
  concurrently up to `max_in_flight` responses; at most `max_named_lanes` distinct named lanes per
  connection (the default lane is free). At most `max_queued` creates (and `max_queued_bytes` of
  their frames) wait per connection; more are refused with 429 `too_many_queued_requests`.
- Chaining: `previous_response_id` resolves when the turn *starts*, from any lane's latest response
  (the connection cache), then from the `ResponseStore` if the parent was stored. A miss answers
  `previous_response_not_found`.
- Input: `item_reference` items resolve from this connection's recent outputs, then the store;
  `compaction` items expand into the items they carry; a `function_call_output` must answer a call
  the chain or the input issued. Any of these failing refuses the request with 400 (an `error`, no
  response). A failed same-lane continuation (refused or `response.failed`) evicts its parent from
  the connection cache; a failed cross-lane fork keeps it.
- History is shared, not copied: a chain's items live in one append-only list and each response
  remembers its length. A child that extends the tip appends to the same list; a fork copies.
  Work per turn is proportional to the new input.
- `generate: false` (warm-up) completes at once: created → in_progress → completed with
  `output: []`, cached like any response. Its `Turn` (with `generate=False`) is handed out by
  `warmups()`, so an engine may prefill its cache with the input; the events never wait for it.
- Every response gets exactly one terminal event (completed / incomplete / failed); a request
  refused before it starts gets one `error` event instead. `sequence_number` counts per response.
- Age limit: past `max_age_s` new creates are refused with `websocket_connection_limit_reached`;
  once nothing is in flight the session queues that error and sets `close_requested`.
- Bad frames are answered with an `error` event (status 400) and the connection stays usable.
  Codex's `response.processed` acknowledgement is ignored silently.
- `response.cancel` (ours, not OpenAI's: its WebSocket mode has none) ends a running response as
  `response.incomplete` with reason "cancelled" and its partial output, which stays chainable;
  `cancelled()` tells the adapter which engine tasks to stop.

HTTP mode (`ServerSession.for_http`, then `receive_http_body`): the body is a `response.create`
without `type`; `stream_id` is refused; frames come out SSE-encoded and the stream ends with
`data: [DONE]`. A request refused before it starts sets `http_error = (status, json_body)` instead
(the adapter answers with that status). With `stream: false` the adapter ignores the frames and
returns `final_response(response_id)` once the turn ended. What differs between the transports is
one `_Wire` value, not flags spread through the code.
"""

from __future__ import annotations

import re
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from app.protocol.codec import decode_client, encode, encode_json, encode_sse, param_from_error
from app.protocol.errors import LocalProtocolError, RemoteProtocolError
from app.protocol.events import (
    UNSET,
    ErrorDetail,
    ErrorEvent,
    ResponseCancel,
    ResponseCompleted,
    ResponseCreate,
    ResponseCreated,
    ResponseFailed,
    ResponseIncomplete,
    ResponseInProgress,
    ResponseSteer,
    ServerEvent,
    SteerFailed,
)
from app.protocol.ids import IdFactory, random_id
from app.protocol.inputs import check_call_outputs, normalize_input, resolve_items
from app.protocol.resource import response_object, usage_from, usage_object
from app.protocol.store import HistoryView, ResponseStore, StoredResponse
from app.protocol.tokens import tokens_for_chars
from app.protocol.turns import (
    EngineOutput,
    Failure,
    Incomplete,
    Item,
    ItemDone,
    ReasoningDelta,
    TextDelta,
    ToolCallArgsDelta,
    ToolCallStart,
    Turn,
    Usage,
)
from app.protocol.writer import OutputWriter

__all__ = ["HistoryView", "ResponseStore", "ServerSession", "StoredResponse"]

STREAM_ID_RE: Final = re.compile(r"[A-Za-z0-9_.\-]{1,256}")
INVALID_STREAM_ID_MESSAGE: Final = (
    "The 'stream_id' field must be a non-empty string with at most 256 characters and may only "
    "contain letters, numbers, underscores, hyphens, and periods."
)
# Codes the official SDK's `ResponseError.code` knows; others are reported as server_error.
_SDK_FAILURE_CODES: Final = frozenset(
    {
        "server_error",
        "rate_limit_exceeded",
        "invalid_prompt",
        "vector_store_timeout",
        "invalid_image",
        "invalid_image_format",
        "invalid_base64_image",
        "invalid_image_url",
        "image_too_large",
        "image_too_small",
        "image_parse_error",
        "image_content_policy_violation",
        "invalid_image_mode",
        "image_file_too_large",
        "unsupported_image_media_type",
        "empty_image_file",
        "failed_to_download_image",
        "image_file_not_found",
    }
)
_ENDED_MEMORY: Final = 256
_ITEM_MEMORY: Final = 4096  # output items of this connection that item_reference can name
_item_size = encode_json  # an item's JSON size, for the ~4 chars/token estimate
SSE_DONE: Final = b"data: [DONE]\n\n"


@dataclass(frozen=True, slots=True)
class _Wire:
    """What differs between the WebSocket and the HTTP transport."""

    name: str  # for messages: "over WebSocket" / "over HTTP by this server"
    encode: Callable[[ServerEvent], bytes]
    lanes: bool  # stream_id allowed
    age_limit: bool  # the connection ages (HTTP requests do not)
    errors_as_status: bool  # refusals become `http_error` instead of an `error` event
    end_of_stream: bytes | None  # written after a terminal event (SSE: `data: [DONE]`)


_WS: Final = _Wire("over WebSocket", encode, True, True, False, None)
_HTTP: Final = _Wire("over HTTP by this server", encode_sse, False, False, True, SSE_DONE)


@dataclass(slots=True)
class _Pending:
    """A create waiting on its lane."""

    lane: str | None
    req: ResponseCreate
    items: list[Item]
    arrival: int  # connection-wide arrival order: lanes start in the order requests came in
    size: int  # bytes of its frame, for the queue budget


@dataclass(slots=True)
class _Lane:
    queue: deque[_Pending] = field(default_factory=deque)
    active: str | None = None  # id of the running response
    latest: StoredResponse | None = None  # the connection cache entry for this lane


@dataclass(slots=True)
class _Active:
    """A response between response.created and its terminal event."""

    id: str
    lane: str | None
    req: ResponseCreate
    created_at: int
    parent: StoredResponse | None
    same_lane_parent: bool
    items: list[Item]  # shared chain list, already extended with this turn's input
    input_end: int  # len of the chain up to and including this turn's input
    input_chars: int
    writer: OutputWriter
    base_chars: int = 0  # the part of the input the chain already held (not re-sent, not re-parsed)
    usage: Usage | None = None  # the engine's last Usage
    ended: bool = False


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _opt(value: Any, default: Any) -> Any:
    return default if value is UNSET or value is None else value


class ServerSession:
    """One connection's protocol state. See the module docstring for the adapter loop."""

    def __init__(
        self,
        *,
        now: float,
        max_age_s: float = 3600,
        max_in_flight: int = 16,
        max_named_lanes: int = 32,
        max_frame_bytes: int = 16 * 1024 * 1024,
        max_queued: int = 256,
        max_queued_bytes: int = 64 * 1024 * 1024,
        store: ResponseStore | None = None,
        id_factory: IdFactory = random_id,
        default_model: str | None = None,
        coalesce_deltas: bool = False,
    ) -> None:
        self.max_age_s = max_age_s
        self.coalesce_deltas = coalesce_deltas  # hold deltas until `frames_to_send` (see there)
        self.max_in_flight = max_in_flight
        self.max_named_lanes = max_named_lanes
        self.max_frame_bytes = max_frame_bytes
        self.max_queued = max_queued
        self.max_queued_bytes = max_queued_bytes
        self.store = store
        self.default_model = default_model
        self._new_id = id_factory
        self._started_at = now
        self._now = now
        self._wire = _WS
        self._lanes: dict[str | None, _Lane] = {None: _Lane()}
        self._active: dict[str, _Active] = {}
        self._out: list[bytes] = []
        self._arrivals = 0
        self._queued_bytes = 0
        self._warmups: list[Turn] = []
        self._ended: OrderedDict[str, None] = OrderedDict()  # recently ended ids: finish() is idempotent
        self._items: OrderedDict[str, Item] = OrderedDict()  # recent output items by id (item_reference)
        self._limit: str | None = None  # None | "draining" | "closed"
        self._finals: dict[str, dict[str, Any]] = {}
        self._cancelled: list[str] = []  # responses ended by `response.cancel` whose engine must stop
        # Set when the adapter should close the connection: (close code, reason).
        self.close_requested: tuple[int, str] | None = None
        # HTTP mode: (status, JSON body) when the request was refused before a response existed.
        self.http_error: tuple[int, bytes] | None = None
        # HTTP mode: the request's `stream` flag (False: answer with final_response()).
        self.http_stream = False

    # ---- construction for HTTP ---------------------------------------------------------------

    @classmethod
    def for_http(
        cls,
        *,
        now: float,
        store: ResponseStore | None = None,
        id_factory: IdFactory = random_id,
        default_model: str | None = None,
        max_frame_bytes: int = 16 * 1024 * 1024,
    ) -> ServerSession:
        """A session serving one `POST /v1/responses`: SSE frames ending in `[DONE]`, no lanes."""
        session = cls(
            now=now,
            store=store,
            id_factory=id_factory,
            default_model=default_model,
            max_frame_bytes=max_frame_bytes,
        )
        session._wire = _HTTP
        return session

    def receive_http_body(self, body: bytes | str, now: float | None = None) -> None:
        """Treat a JSON request body as one `response.create`."""
        self._touch(now)
        if self._wire is not _HTTP:
            raise LocalProtocolError(
                "receive_http_body needs a session from ServerSession.for_http", code="misuse"
            )
        if len(body) > self.max_frame_bytes:
            self._request_error(
                None, "frame_too_large", f"Request body exceeds {self.max_frame_bytes} bytes.", None
            )
            return
        try:
            data = msgspec.json.decode(body)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:  # bad UTF-8, nested too deep
            self._request_error(None, "invalid_json", f"Request body is not valid JSON ({exc}).", None)
            return
        if not isinstance(data, dict):
            self._request_error(None, "invalid_type", "Request body must be a JSON object.", None)
            return
        data.pop("type", None)
        try:
            req = msgspec.convert({"type": "response.create", **data}, ResponseCreate)
        except msgspec.ValidationError as exc:
            self._request_error(None, "invalid_type", f"Invalid request body: {exc}", param_from_error(exc))
            return
        self.http_stream = req.stream is True
        self._on_create(req, len(body))

    # ---- input -------------------------------------------------------------------------------

    def receive_frame(self, data: str | bytes, now: float | None = None) -> None:
        """Decode and act on one client text frame. Never raises for peer errors."""
        self._touch(now)
        self.check_age(self._now)
        if len(data) > self.max_frame_bytes:
            self._request_error(
                None,
                "frame_too_large",
                f"Frame of {len(data)} bytes exceeds the {self.max_frame_bytes}-byte limit.",
                None,
            )
            return
        try:
            event = decode_client(data)
        except RemoteProtocolError as exc:
            if exc.event_type == "response.processed":  # Codex acknowledgement (PROTOCOL §2.6)
                return
            self._request_error(None, exc.code, exc.message, exc.param)
            return
        if isinstance(event, ResponseSteer):
            self._on_steer(event)
        elif isinstance(event, ResponseCancel):
            self._on_cancel(event)
        else:
            self._on_create(event, len(data))

    def _on_create(self, req: ResponseCreate, size: int) -> None:
        lane: str | None = None
        wire = self._wire
        if req.stream_id is not UNSET:
            if not wire.lanes:
                self._request_error(
                    None, "invalid_request", "'stream_id' is only supported over WebSocket.", "stream_id"
                )
                return
            if not isinstance(req.stream_id, str) or not STREAM_ID_RE.fullmatch(req.stream_id):
                self._request_error(None, "invalid_stream_id", INVALID_STREAM_ID_MESSAGE, "stream_id")
                return
            lane = req.stream_id
        if self._limit is not None:
            self._request_error(lane, "websocket_connection_limit_reached", self._limit_message(), None)
            return
        if req.background is True:
            self._request_error(
                lane, "invalid_request", f"Background mode is not supported {wire.name}.", "background"
            )
            return
        if req.conversation not in (UNSET, None):
            self._request_error(
                lane, "invalid_request", "'conversation' is not supported by this server.", "conversation"
            )
            return
        if req.model is UNSET and self.default_model is None:
            self._request_error(
                lane, "missing_required_parameter", "Missing required parameter: 'model'.", "model"
            )
            return
        try:
            items = normalize_input(req.input)
        except RemoteProtocolError as exc:
            self._request_error(lane, exc.code, exc.message, exc.param)
            return
        if self.queued >= self.max_queued or self._queued_bytes + size > self.max_queued_bytes:
            self._request_error(
                lane,
                "too_many_queued_requests",
                f"This connection already has {self.queued} requests ({self._queued_bytes} bytes) waiting; "
                "wait for responses to finish before sending more.",
                None,
                status=429,
            )
            return
        if lane is not None and lane not in self._lanes:
            named = len(self._lanes) - 1
            if named >= self.max_named_lanes:
                self._request_error(
                    lane,
                    "websocket_stream_limit_reached",
                    f"This WebSocket connection has reached its maximum number of distinct stream IDs "
                    f"({self.max_named_lanes}). Reuse an existing stream_id or open a new WebSocket connection.",
                    "stream_id",
                )
                return
            self._lanes[lane] = _Lane()
        self._arrivals += 1
        self._queued_bytes += size
        self._lanes[lane].queue.append(_Pending(lane, req, items, self._arrivals, size))

    def _on_steer(self, steer: ResponseSteer) -> None:
        """No engine supports steering yet: answer `response.steer.failed` with the reason."""
        target = self._active.get(steer.previous_response_id)
        if target is not None:
            code, message, seq, lane = (
                "steering_not_supported",
                "This server does not support steering a running response.",
                target.writer.next_seq(),
                target.lane,
            )
        else:
            known = any(
                ln.latest is not None and ln.latest.id == steer.previous_response_id
                for ln in self._lanes.values()
            )
            code = "response_already_completed" if known else "response_not_found"
            message = (
                "The response completed and is no longer accepting steering input."
                if known
                else f"Response with id '{steer.previous_response_id}' is not active on this connection."
            )
            seq, lane = 0, None
        self._emit(
            SteerFailed(
                sequence_number=seq,
                stream_id=lane if lane is not None else UNSET,
                error={"type": "invalid_request_error", "code": code, "message": message},
                steer={"input": steer.input, "previous_response_id": steer.previous_response_id},
            )
        )

    def _on_cancel(self, cancel: ResponseCancel) -> None:
        """Stop a running response at once: `response.incomplete` (reason "cancelled") with the output
        so far, cached as its lane's latest like any incomplete response, so the client continues the
        chain from it with only new input. The adapter stops the engine (`cancelled()`). A cancel for a
        response that already ended, or that this connection never ran, is ignored: its terminal event
        went out already (an `error` would fail the client's next request on that lane)."""
        active = self._active.get(cancel.response_id)
        if active is None:
            return
        active.writer.close("incomplete")
        self._end(active, "incomplete", incomplete_reason="cancelled")
        self._cancelled.append(active.id)

    def cancelled(self) -> list[str]:
        """Responses cancelled since the last call: the adapter cancels their engine tasks."""
        out, self._cancelled = self._cancelled, []
        return out

    # ---- scheduling --------------------------------------------------------------------------

    def ready_turns(self, now: float | None = None) -> list[Turn]:
        """Start every request that may start now; return the turns the engine must run.

        `response.created` and `response.in_progress` are already queued for each returned turn.
        Requests that fail to start (unknown parent, bad input) get an `error`; warm-ups complete
        here (see `warmups()`)."""
        self._touch(now)
        turns: list[Turn] = []
        while True:
            lanes = [ln for ln in self._lanes.values() if ln.active is None and ln.queue]
            if not lanes:
                break
            lanes.sort(key=lambda ln: ln.queue[0].arrival)
            progressed = False
            for ln in lanes:
                pend = ln.queue[0]
                warm = pend.req.generate is False
                if not warm and len(self._active) >= self.max_in_flight:
                    continue
                ln.queue.popleft()
                self._queued_bytes -= pend.size
                progressed = True
                turn = self._start(pend)
                if turn is not None:
                    turns.append(turn)
            if not progressed:
                break
        return turns

    def warmups(self) -> list[Turn]:
        """Warm-ups (`generate: false`) completed since the last call, as turns with
        `generate=False`: an engine may prefill its cache with their input. Optional to drain."""
        out, self._warmups = self._warmups, []
        return out

    def _lookup(self, response_id: str, lane: str | None) -> tuple[StoredResponse | None, bool]:
        """(entry, whether `lane`'s own cache held it): any lane's cache first, then the store."""
        for key, ln in self._lanes.items():
            if ln.latest is not None and ln.latest.id == response_id:
                return ln.latest, key == lane
        if self.store is not None:
            entry = self.store.get(response_id)
            if entry is not None and entry.store:
                return entry, False
        return None, False

    def _item(self, item_id: str) -> Item | None:
        found = self._items.get(item_id)
        if found is None and self.store is not None:
            found = self.store.item(item_id)
        return found

    def _refuse_start(
        self, pend: _Pending, parent: StoredResponse | None, same_lane: bool, exc: RemoteProtocolError
    ) -> None:
        """A request that cannot start: an error, and a same-lane parent leaves the cache."""
        self._request_error(pend.lane, exc.code, exc.message, exc.param)
        lane = self._lanes[pend.lane]
        if parent is not None and same_lane and lane.latest is parent:
            lane.latest = None

    def _start(self, pend: _Pending) -> Turn | None:
        req, lane = pend.req, pend.lane
        pid = _str_or_none(req.previous_response_id)
        parent: StoredResponse | None = None
        same_lane = False
        if pid:
            parent, same_lane = self._lookup(pid, lane)
            if parent is None:
                self._request_error(
                    lane,
                    "previous_response_not_found",
                    f"Previous response with id '{pid}' not found.",
                    "previous_response_id",
                )
                return None
        try:
            new_items = resolve_items(pend.items, self._item)
            if parent is not None:
                check_call_outputs(new_items, parent.output(), parent.chain())
            else:
                check_call_outputs(new_items, (), ())
        except RemoteProtocolError as exc:
            self._refuse_start(pend, parent, same_lane, exc)
            return None
        if parent is None:
            items: list[Item] = []
            base_chars = 0
        elif parent.length == len(parent.items):
            items, base_chars = parent.items, parent.chars  # extend the tip: shared, no copy
        else:
            items, base_chars = parent.items[: parent.length], parent.chars  # a fork: copy once
        base_len = len(items)
        input_chars = base_chars + sum(len(_item_size(it)) for it in new_items)
        items.extend(new_items)
        instructions = _str_or_none(req.instructions)
        rid = self._new_id("resp")
        active = _Active(
            id=rid,
            lane=lane,
            req=req,
            created_at=int(self._now),
            parent=parent,
            same_lane_parent=same_lane,
            items=items,
            input_end=len(items),
            input_chars=input_chars + len(instructions or ""),
            writer=OutputWriter(lane, self._new_id, self._emit, coalesce=self.coalesce_deltas),
            base_chars=base_chars,
        )
        self._emit_response(active, ResponseCreated, self._response_obj(active, "in_progress"))
        self._emit_response(active, ResponseInProgress, self._response_obj(active, "in_progress"))
        tools = req.tools if isinstance(req.tools, list) else ()
        metadata = req.metadata if isinstance(req.metadata, dict) else {}
        turn = Turn(
            response_id=rid,
            model=self._model(req),
            history=HistoryView(items, base_len),
            new_input=tuple(new_items),
            instructions=instructions,
            tools=tools,
            tool_choice=_opt(req.tool_choice, "auto"),
            parallel_tool_calls=bool(_opt(req.parallel_tool_calls, True)),
            max_output_tokens=_opt(req.max_output_tokens, None),
            temperature=_opt(req.temperature, None),
            top_p=_opt(req.top_p, None),
            metadata=metadata,
            lane=lane,
            previous_response_id=pid,
            generate=req.generate is not False,
        )
        if not turn.generate:
            self._end(active, "completed")
            self._warmups.append(turn)
            return None
        self._active[rid] = active
        self._lanes[lane].active = rid
        return turn

    # ---- engine output -----------------------------------------------------------------------

    def feed(self, response_id: str, output: EngineOutput, now: float | None = None) -> None:
        """Turn one engine output into events. Output for a response that is not running
        (unknown, or already ended by Failure/Incomplete/abort) raises LocalProtocolError."""
        self._touch(now)
        active = self._running(response_id)
        w = active.writer
        if isinstance(output, TextDelta):
            w.delta("message", output.text)
        elif isinstance(output, ToolCallArgsDelta):
            custom = w.open is not None and w.open.kind.name == "custom_tool_call"
            w.delta("custom_tool_call" if custom else "function_call", output.delta)
        elif isinstance(output, ReasoningDelta):
            w.delta("reasoning", output.text)
        elif isinstance(output, ToolCallStart):
            kind = "custom_tool_call" if output.custom else "function_call"
            w.open_item(kind, call_id=output.call_id, name=output.name)
        elif isinstance(output, ItemDone):
            w.close("completed")
        elif isinstance(output, Usage):
            active.usage = output
        elif isinstance(output, Incomplete):
            w.close("incomplete")
            self._end(active, "incomplete", incomplete_reason=output.reason)
        elif isinstance(output, Failure):
            w.close("incomplete")
            self._end(active, "failed", error=(output.code, output.message))
        else:
            raise LocalProtocolError(f"Unknown engine output {output!r}", code="invalid_output")

    def finish(self, response_id: str, now: float | None = None) -> None:
        """The engine's iteration ended: complete the response (no-op if already ended)."""
        self._touch(now)
        active = self._active.get(response_id)
        if active is None:
            if response_id in self._ended:
                return
            raise LocalProtocolError(
                f"finish() for unknown response {response_id!r}", code="unknown_response"
            )
        active.writer.close("completed")
        self._end(active, "completed")

    def abort(
        self, response_id: str, message: str, now: float | None = None, *, code: str = "server_error"
    ) -> None:
        """The engine crashed: end the response as `response.failed` (no-op if already ended)."""
        self._touch(now)
        active = self._active.get(response_id)
        if active is None:
            return
        active.writer.close("incomplete")
        self._end(active, "failed", error=(code, message))

    def _running(self, response_id: str) -> _Active:
        active = self._active.get(response_id)
        if active is None:
            raise LocalProtocolError(
                f"Engine output for {response_id!r}, which is not running (unknown or already ended)",
                code="unknown_response",
            )
        return active

    # ---- the end of a response ---------------------------------------------------------------

    def _usage(self, active: _Active) -> dict[str, Any]:
        if active.usage is not None:
            return usage_from(active.usage)
        w = active.writer
        it = tokens_for_chars(active.input_chars)
        cached = min(tokens_for_chars(active.base_chars), it)
        return usage_object(it, tokens_for_chars(w.out_chars), cached, tokens_for_chars(w.reasoning_chars))

    def _end(
        self,
        active: _Active,
        status: str,
        *,
        incomplete_reason: str | None = None,
        error: tuple[str, str] | None = None,
    ) -> None:
        active.ended = True
        self._active.pop(active.id, None)
        self._ended[active.id] = None
        if len(self._ended) > _ENDED_MEMORY:
            self._ended.popitem(last=False)
        lane = self._lanes[active.lane]
        if lane.active == active.id:
            lane.active = None
        output = active.writer.output
        err: dict[str, Any] | None = None
        if error is not None:
            code, message = error
            if code not in _SDK_FAILURE_CODES:
                code, message = "server_error", f"{code}: {message}"
            err = {"code": code, "message": message}
        response = self._response_obj(
            active,
            status,
            output=output,
            completed_at=int(self._now),
            usage=self._usage(active),
            error=err,
            incomplete_details={"reason": incomplete_reason} if incomplete_reason is not None else None,
        )
        if status == "failed":
            self._emit_response(active, ResponseFailed, response)
            if active.same_lane_parent and lane.latest is active.parent:
                lane.latest = None  # a failed same-lane continuation evicts its parent (§2.2)
        else:
            # Record the chain: this response's output follows its input in the shared list.
            items = active.items
            if len(items) != active.input_end:  # someone extended past our input: fork off
                items = items[: active.input_end]
            items.extend(output)
            own = active.input_chars - active.base_chars + sum(len(_item_size(it)) for it in output)
            store = active.req.store is not False
            entry = StoredResponse(
                active.id,
                items,
                len(items),
                active.base_chars + own,
                active.lane,
                response,
                store,
                own_chars=own,
                output_len=len(output),
            )
            lane.latest = entry
            self._remember_items(output)
            if store and self.store is not None:
                self.store.put(entry)
            cls = ResponseCompleted if status == "completed" else ResponseIncomplete
            self._emit_response(active, cls, response)
        if self._wire.end_of_stream is not None:
            self._out.append(self._wire.end_of_stream)
        if self._wire.errors_as_status:
            self._finals[active.id] = response
        self._maybe_close()

    def _remember_items(self, output: Sequence[Item]) -> None:
        for item in output:
            item_id = item.get("id")
            if isinstance(item_id, str):
                self._items[item_id] = item
        while len(self._items) > _ITEM_MEMORY:
            self._items.popitem(last=False)

    # ---- age limit ---------------------------------------------------------------------------

    def check_age(self, now: float) -> None:
        """Past `max_age_s`: refuse queued and new creates, and once nothing is in flight queue
        `websocket_connection_limit_reached` and request a close (1001)."""
        self._touch(now)
        if not self._wire.age_limit or self._limit is not None or now - self._started_at < self.max_age_s:
            return
        self._limit = "draining"
        for ln in self._lanes.values():
            while ln.queue:
                pend = ln.queue.popleft()
                self._queued_bytes -= pend.size
                self._request_error(
                    pend.lane, "websocket_connection_limit_reached", self._limit_message(), None
                )
        self._maybe_close()

    def _maybe_close(self) -> None:
        if self._limit == "draining" and not self._active:
            self._limit = "closed"
            self._request_error(None, "websocket_connection_limit_reached", self._limit_message(), None)
            self.close_requested = (1001, "connection age limit")

    def _limit_message(self) -> str:
        return (
            f"Responses websocket connection limit reached ({self.max_age_s / 60:g} minutes). "
            "Create a new websocket connection to continue."
        )

    # ---- output ------------------------------------------------------------------------------

    def frames_to_send(self) -> list[bytes]:
        """Frames queued since the last call (WebSocket: JSON text frames; HTTP: SSE chunks).

        With `coalesce_deltas`, delta text fed since the last call is held and goes out here as one
        delta event per open item (see `app.protocol.writer`): calling this once per engine output
        sends one event per delta, calling it less often coalesces them. Without it every delta is
        its own event whenever this is called."""
        for active in self._active.values():
            active.writer.flush()
        out, self._out = self._out, []
        return out

    @property
    def held_chars(self) -> int:
        """Delta characters fed and not yet in a frame (the next `frames_to_send` emits them)."""
        return sum(a.writer.held_chars for a in self._active.values())

    def final_response(self, response_id: str) -> dict[str, Any] | None:
        """HTTP mode: the final response object once the response ended (for `stream: false`)."""
        return self._finals.get(response_id)

    @property
    def in_flight(self) -> int:
        """Responses started and not yet ended."""
        return len(self._active)

    @property
    def queued(self) -> int:
        """Creates accepted and waiting on their lane or for capacity."""
        return sum(len(ln.queue) for ln in self._lanes.values())

    # ---- helpers -----------------------------------------------------------------------------

    def _touch(self, now: float | None) -> None:
        if now is not None:
            self._now = now

    def _emit(self, event: ServerEvent) -> None:
        self._out.append(self._wire.encode(event))

    def _emit_response(self, active: _Active, cls: Any, response: dict[str, Any]) -> None:
        w = active.writer
        self._emit(cls(sequence_number=w.next_seq(), stream_id=w.sid, response=response))

    def _request_error(
        self, lane: str | None, code: str, message: str, param: str | None, *, status: int = 400
    ) -> None:
        """A request refused before it started (or a bad frame): one `error` event."""
        detail = ErrorDetail(type="invalid_request_error", code=code, message=message, param=param)
        if self._wire.errors_as_status:
            if self.http_error is None:
                self.http_error = (status, encode_json({"error": detail}))
            return
        self._emit(ErrorEvent(status=status, stream_id=lane if lane is not None else UNSET, error=detail))

    def _model(self, req: ResponseCreate) -> str:
        return req.model if isinstance(req.model, str) else (self.default_model or "")

    def _response_obj(
        self, active: _Active, status: str, output: Sequence[Item] = (), **extra: Any
    ) -> dict[str, Any]:
        return response_object(
            active.req,
            response_id=active.id,
            created_at=active.created_at,
            status=status,
            model=self._model(active.req),
            output=output,
            **extra,
        )
