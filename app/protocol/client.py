"""`ClientSession`: the client side of one Responses WebSocket connection, sans I/O.

Drain-style: `create()` returns the frame to send, `receive_frame()` takes what arrived, and the
caller drains `events_received()` (every decoded event, unknown types included) and `outcomes()`
(one per request: `Completed`, or a recovery decision `Resend` / `Reconnect` / `Fail`).

Per lane it keeps the chain head (the last completed response id), the settings that produced it,
and the full local transcript (every input item and every output item). `create()` sends the
incremental form (`previous_response_id` + only the new items) when a head exists, the settings
equal the head's, and the transcript has nothing the server has not seen (the Codex rule,
PROTOCOL §2.2); otherwise it sends the whole transcript on a fresh chain. So the socket cache is
only an optimisation: nothing is lost when it is.

Recovery (PROTOCOL §4.4), as values the caller acts on:
- `previous_response_not_found` → `Resend(lane, frame)`: full input, fresh chain, at most once per
  turn (a second miss is a `Fail`).
- `websocket_connection_limit_reached` → `Reconnect(rebuild=True)`; then `on_disconnect()`.
- any other `error`, or `response.failed` → `Fail(lane, code, message)`.
- `on_disconnect()` → the in-flight turns were not completed: returns one `Resend` per lane with
  the full input to send on the new connection; every chain head is dropped.

One request in flight per lane: lanes are FIFO on the server and the next request needs the
previous one's id. Use several lanes for concurrency.

Fresh chains and project context: with `ClientSession(rebuilds=True)` every full-input frame waits
for the caller. Instead of the frame, `create()` returns (and `on_disconnect()` / `outcomes()` give,
in place of a `Resend`) a `RebuildNeeded(lane, transcript)`: the caller rewrites the transcript (the
context layer swaps stale project context for a snapshot of the disk now, work it may do on another
thread) and `rebuilt(need, items)` returns the frame. So no I/O or project-sized work runs inside the
session's methods, and nothing old is replayed into a new chain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from app.protocol.codec import decode_server, encode
from app.protocol.errors import LocalProtocolError
from app.protocol.events import (
    UNSET,
    ErrorEvent,
    FunctionCallArgumentsDelta,
    OutputItemAdded,
    OutputItemDone,
    OutputTextDelta,
    ReasoningContentDelta,
    ReasoningTextDelta,
    ResponseCompleted,
    ResponseCreate,
    ResponseCreated,
    ResponseFailed,
    ResponseIncomplete,
    ServerEvent,
)

__all__ = ["ClientSession", "Completed", "Fail", "Outcome", "RebuildNeeded", "Reconnect", "Resend"]

Item = Mapping[str, Any]
# Fields that describe the request, not its input: the incremental form needs them unchanged.
_NOT_SETTINGS: Final = frozenset({"input", "previous_response_id", "stream_id", "generate", "stream"})
_CHUNK: Final = 1024


@dataclass(frozen=True, slots=True)
class Completed:
    """A response reached `response.completed` or `response.incomplete`; its output is in the
    transcript and its id is the lane's chain head."""

    lane: str | None
    response_id: str
    status: str  # "completed" | "incomplete"
    response: Mapping[str, Any]
    output: Sequence[Item]


@dataclass(frozen=True, slots=True)
class Resend:
    """Send `frame` (full input, no previous_response_id) to retry the turn on a fresh chain."""

    lane: str | None
    frame: bytes


@dataclass(frozen=True, slots=True)
class Reconnect:
    """Open a new connection; `rebuild`: chains are gone, call on_disconnect() and resend."""

    rebuild: bool = True
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Fail:
    """The request failed for a reason a resend will not fix."""

    lane: str | None
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class RebuildNeeded:
    """A fresh chain starts on `lane`: pass `transcript`, rewritten, to `ClientSession.rebuilt()` for
    the frame (full input, no previous_response_id). Stands where a frame or a `Resend` would."""

    lane: str | None
    transcript: tuple[Item, ...]


Outcome = Completed | Resend | RebuildNeeded | Reconnect | Fail


@dataclass(slots=True)
class _Turn:
    settings: dict[str, Any]
    new_items: list[Item]
    generate: bool
    resent: bool = False
    awaiting_rebuild: bool = False  # a RebuildNeeded is out; `rebuilt()` gives the frame
    response_id: str | None = None
    items: dict[int, dict[str, Any]] = field(default_factory=dict)  # output_index -> item being built
    pieces: dict[int, list[str]] = field(default_factory=dict)  # output_index -> streamed text
    loose: dict[int, int] = field(default_factory=dict)  # output_index -> deltas not yet joined into a chunk

    def add_piece(self, index: int, delta: str) -> None:
        """Keep a streamed delta; every `_CHUNK` deltas are joined into one string, so a million-token
        answer is ~a thousand strings (memory, garbage collector), at O(1) amortised per delta."""
        pieces = self.pieces.setdefault(index, [])
        pieces.append(delta)
        loose = self.loose.get(index, 0) + 1
        if loose >= _CHUNK:
            pieces[-loose:] = ["".join(pieces[-loose:])]
            loose = 0
        self.loose[index] = loose


@dataclass(slots=True)
class _Lane:
    transcript: list[Item] = field(default_factory=list)
    head: str | None = None
    head_settings: dict[str, Any] | None = None
    head_len: int = 0  # transcript length the server's chain at `head` covers
    turn: _Turn | None = None


class ClientSession:
    """Chain heads, transcripts and in-flight turns of one connection (see module docstring)."""

    def __init__(self, rebuilds: bool = False) -> None:
        """`rebuilds`: every fresh chain's full input goes through the caller first (`RebuildNeeded`,
        then `rebuilt()`), so the context layer can swap stale project-context items for a snapshot of
        the disk as it is now; a new chain never replays old diffs and nothing is sent twice into one."""
        self._rebuilds = rebuilds
        self._lanes: dict[str | None, _Lane] = {}
        self._events: list[ServerEvent] = []
        self._outcomes: list[Outcome] = []

    # ---- sending -----------------------------------------------------------------------------

    def create(
        self, new_items: Sequence[Item], *, lane: str | None = None, generate: bool = True, **settings: Any
    ) -> bytes | RebuildNeeded:
        """The `response.create` frame for a new turn on `lane`. `settings` are ResponseCreate
        fields (model, instructions, tools, tool_choice, store, ...) and must be resent every
        turn (HTTP semantics: they do not carry over). With `rebuilds`, a fresh chain gives a
        `RebuildNeeded` instead of the frame (see `rebuilt`)."""
        bad = _NOT_SETTINGS & settings.keys()
        if bad:
            raise LocalProtocolError(f"create() manages {sorted(bad)} itself", code="misuse")
        state = self._lanes.setdefault(lane, _Lane())
        if state.turn is not None:
            raise LocalProtocolError(f"lane {lane!r} already has a request in flight", code="lane_busy")
        items = list(new_items)
        incremental = (
            state.head is not None
            and state.head_settings == settings
            and state.head_len == len(state.transcript)
        )
        state.transcript.extend(items)
        state.turn = _Turn(settings=settings, new_items=items, generate=generate)
        if incremental:
            return self._frame(lane, settings, items, generate, previous=state.head)
        return self._fresh(lane, state, state.turn)

    def _fresh(self, lane: str | None, state: _Lane, turn: _Turn) -> bytes | RebuildNeeded:
        """The full input of a fresh chain, or the request to rewrite it first (`rebuilds`)."""
        if self._rebuilds:
            turn.awaiting_rebuild = True
            return RebuildNeeded(lane, tuple(state.transcript))
        return self._frame(lane, turn.settings, list(state.transcript), turn.generate, previous=None)

    def rebuilt(self, need: RebuildNeeded, transcript: Sequence[Item]) -> bytes:
        """The fresh-chain frame for `need`'s turn, with `transcript` (rewritten) as the lane's whole
        input from now on. Raises LocalProtocolError if that turn is gone or was not waiting."""
        state = self._lanes.get(need.lane)
        turn = state.turn if state is not None else None
        if state is None or turn is None or not turn.awaiting_rebuild:
            raise LocalProtocolError(f"lane {need.lane!r} has no turn waiting for a rebuild", code="misuse")
        turn.awaiting_rebuild = False
        state.transcript = list(transcript)
        return self._frame(need.lane, turn.settings, list(state.transcript), turn.generate, previous=None)

    def _frame(
        self,
        lane: str | None,
        settings: dict[str, Any],
        items: list[Item],
        generate: bool,
        previous: str | None,
    ) -> bytes:
        event = ResponseCreate(
            **settings,
            input=items,
            previous_response_id=previous if previous is not None else UNSET,
            stream_id=lane if lane is not None else UNSET,
            generate=UNSET if generate else False,
        )
        return encode(event)

    def _full_resend(self, lane: str | None, state: _Lane, turn: _Turn) -> Resend | RebuildNeeded:
        state.head, state.head_settings, state.head_len = None, None, 0
        turn.items.clear()
        turn.pieces.clear()
        turn.loose.clear()
        turn.response_id = None
        fresh = self._fresh(lane, state, turn)
        return fresh if isinstance(fresh, RebuildNeeded) else Resend(lane, fresh)

    # ---- receiving ---------------------------------------------------------------------------

    def receive_frame(self, data: str | bytes) -> None:
        """Decode one server frame (raises RemoteProtocolError on junk) and update state."""
        self.receive_event(decode_server(data))

    def receive_event(self, event: ServerEvent) -> None:
        """Same as receive_frame for an already decoded event (e.g. from SSEDecoder)."""
        self._events.append(event)
        if isinstance(event, OutputTextDelta):  # hot path first
            turn = self._turn(event.lane)
            if turn is not None:
                turn.add_piece(event.output_index, event.delta)
            return
        lane = event.lane
        state = self._lanes.get(lane)
        turn = state.turn if state is not None else None
        if isinstance(event, ErrorEvent):
            self._on_error(lane, event)
            return
        if state is None or turn is None:
            return
        if isinstance(event, ResponseCreated):
            turn.response_id = event.response_id
        elif isinstance(event, (FunctionCallArgumentsDelta, ReasoningTextDelta, ReasoningContentDelta)):
            turn.add_piece(event.output_index, event.delta)
        elif isinstance(event, OutputItemAdded):
            turn.items[event.output_index] = dict(event.item)
        elif isinstance(event, OutputItemDone):
            turn.items[event.output_index] = dict(event.item)
            turn.pieces.pop(event.output_index, None)
            turn.loose.pop(event.output_index, None)
        elif isinstance(event, (ResponseCompleted, ResponseIncomplete)):
            self._complete(lane, state, turn, event)
        elif isinstance(event, ResponseFailed):
            state.turn = None
            state.head, state.head_settings, state.head_len = None, None, 0  # parent evicted
            err = event.response.get("error") or {}
            self._outcomes.append(
                Fail(
                    lane, str(err.get("code") or "server_error"), str(err.get("message") or "response failed")
                )
            )

    def _turn(self, lane: str | None) -> _Turn | None:
        state = self._lanes.get(lane)
        return state.turn if state is not None else None

    def _complete(
        self, lane: str | None, state: _Lane, turn: _Turn, event: ResponseCompleted | ResponseIncomplete
    ) -> None:
        output = event.response.get("output")
        if not isinstance(output, list) or (not output and turn.items):
            output = [self._assembled(turn, i) for i in sorted(turn.items)]
        state.transcript.extend(output)
        state.turn = None
        state.head = event.response_id or turn.response_id
        state.head_settings = turn.settings
        state.head_len = len(state.transcript)
        status = "completed" if isinstance(event, ResponseCompleted) else "incomplete"
        self._outcomes.append(Completed(lane, state.head or "", status, event.response, output))

    def _assembled(self, turn: _Turn, index: int) -> dict[str, Any]:
        """An item from its added/done events plus streamed pieces (when output was omitted)."""
        item = turn.items[index]
        pieces = turn.pieces.get(index)
        if pieces:
            text = "".join(pieces)
            if item.get("type") == "function_call":
                item["arguments"] = text
            elif item.get("type") == "message":
                item["content"] = [{"type": "output_text", "text": text, "annotations": []}]
            elif item.get("type") == "reasoning":
                item["content"] = [{"type": "reasoning_text", "text": text}]
        return item

    def _on_error(self, lane: str | None, event: ErrorEvent) -> None:
        code = event.error.code or ""
        if code == "websocket_connection_limit_reached":
            self._outcomes.append(Reconnect(rebuild=True, reason=event.error.message))
            return
        state = self._lanes.get(lane)
        turn = state.turn if state is not None else None
        if state is None or turn is None:
            self._outcomes.append(Fail(lane, code, event.error.message))
            return
        if code == "previous_response_not_found" and not turn.resent:
            turn.resent = True
            self._outcomes.append(self._full_resend(lane, state, turn))
            return
        state.turn = None
        self._outcomes.append(Fail(lane, code, event.error.message))

    def on_disconnect(self) -> list[Resend | RebuildNeeded]:
        """The connection is gone: every chain head with it. Returns the in-flight turns to resend
        (full input) on the new connection; they stay in flight."""
        out: list[Resend | RebuildNeeded] = []
        for lane, state in self._lanes.items():
            turn = state.turn
            if turn is None:
                state.head, state.head_settings, state.head_len = None, None, 0
            else:
                out.append(self._full_resend(lane, state, turn))
        return out

    def restore(self, items: Sequence[Item], lane: str | None = None) -> None:
        """Seed a lane's transcript from history (a reopened session). No chain exists yet, so the
        next turn sends it all on a fresh chain."""
        state = self._lanes.setdefault(lane, _Lane())
        if state.turn is not None:
            raise LocalProtocolError(f"lane {lane!r} has a request in flight", code="lane_busy")
        state.transcript = list(items)
        state.head, state.head_settings, state.head_len = None, None, 0

    def abandon(self, lane: str | None = None) -> None:
        """Give up the lane's in-flight turn (the user stopped it, or retries ran out). Its input
        stays in the transcript; the chain head is dropped since the server may hold a partial
        response, so the next turn starts a fresh chain."""
        state = self._lanes.get(lane)
        if state is None:
            return
        state.turn = None
        state.head, state.head_settings, state.head_len = None, None, 0

    # ---- draining and inspection -------------------------------------------------------------

    def events_received(self) -> list[ServerEvent]:
        """Every event decoded since the last call, in order."""
        out, self._events = self._events, []
        return out

    def outcomes(self) -> list[Outcome]:
        """One outcome per finished request (plus Reconnect advice) since the last call."""
        out, self._outcomes = self._outcomes, []
        return out

    def transcript(self, lane: str | None = None) -> Sequence[Item]:
        """Every input and output item of `lane`, oldest first (read-only view)."""
        state = self._lanes.get(lane)
        return tuple(state.transcript) if state is not None else ()

    def head(self, lane: str | None = None) -> str | None:
        """The lane's chain head: the id the next incremental create will continue from."""
        state = self._lanes.get(lane)
        return state.head if state is not None else None

    def in_flight_id(self, lane: str | None = None) -> str | None:
        """The id of `lane`'s running response (from its `response.created`); None before that."""
        turn = self._turn(lane)
        return turn.response_id if turn is not None else None

    def unanswered_calls(self, lane: str | None = None) -> list[Item]:
        """Function calls in `lane`'s transcript that no `function_call_output` answers yet (a stopped
        response's calls: the next request must answer them, upstream refuses the chain otherwise)."""
        state = self._lanes.get(lane)
        if state is None:
            return []
        answered = {
            str(i.get("call_id")) for i in state.transcript if i.get("type") == "function_call_output"
        }
        return [
            i
            for i in state.transcript
            if i.get("type") == "function_call" and str(i.get("call_id")) not in answered
        ]

    def in_flight(self, lane: str | None = None) -> bool:
        """Whether `lane` has a request without its outcome yet."""
        state = self._lanes.get(lane)
        return state is not None and state.turn is not None
