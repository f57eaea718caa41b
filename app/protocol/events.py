"""Typed, frozen events of the Responses API WebSocket mode (PROTOCOL.md §2-§4).

Every event is a `msgspec.Struct` tagged by its wire `type`, so `codec.py` decodes a frame with
one typed decoder (fast on the `response.output_text.delta` hot path) and encodes it back.

Wire rules kept here:
- Fields that may be absent on the wire and must stay absent when re-encoded default to
  `msgspec.UNSET` (e.g. `stream_id` on default-lane events): UNSET is never emitted.
- Fields the official openai SDK requires are always emitted (`sequence_number`, `logprobs: []`
  on text deltas/dones, the `response` object, ...).
- Nested objects (`response`, `item`, `part`, `annotation`) stay plain JSON dicts: they pass
  through unchanged, and the SDK's pydantic models parse them on the far side.
- Any server event this module does not model (hosted-tool families, future types) decodes to
  `UnknownEvent(type, data)`, which re-encodes exactly as received. Nothing is dropped.
- `response.done` (an older terminal name) decodes as `ResponseCompleted`; the flat SSE `error`
  shape decodes as the nested `ErrorEvent` (see `codec.py`).
- Unknown *fields* of known events are dropped on decode (msgspec's default). A server only reads
  the fields it understands; a client that needs a field verbatim can re-read the raw frame.

Client events: `ResponseCreate` (the flat `POST /v1/responses` body plus `type`, `stream_id`,
`generate`) and `ResponseSteer`.

Server events: the `response.*` lifecycle, item/part/delta events, steering replies and `error`.
`ServerEvent` and `ClientEvent` are the unions; `KNOWN_SERVER_TYPES` and `KNOWN_CLIENT_TYPES` map a
wire type to its class.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
from msgspec import UNSET, UnsetType

__all__ = [
    "CLIENT_EVENTS_HEADER",
    "CLIENT_EVENT_TYPES",
    "KNOWN_CLIENT_TYPES",
    "KNOWN_SERVER_TYPES",
    "SERVER_EVENT_TYPES",
    "TERMINAL_TYPES",
    "UNSET",
    "ClientEvent",
    "CompactionCompacting",
    "ContentPartAdded",
    "ContentPartDone",
    "CustomToolCallInputDelta",
    "CustomToolCallInputDone",
    "ErrorDetail",
    "ErrorEvent",
    "FunctionCallArgumentsDelta",
    "FunctionCallArgumentsDone",
    "OutputItemAdded",
    "OutputItemDone",
    "OutputTextAnnotationAdded",
    "OutputTextDelta",
    "OutputTextDone",
    "ReasoningContentDelta",
    "ReasoningContentDone",
    "ReasoningSummaryPartAdded",
    "ReasoningSummaryPartDone",
    "ReasoningSummaryTextDelta",
    "ReasoningSummaryTextDone",
    "ReasoningTextDelta",
    "ReasoningTextDone",
    "RefusalDelta",
    "RefusalDone",
    "ResponseCancel",
    "ResponseCompleted",
    "ResponseCreate",
    "ResponseCreated",
    "ResponseFailed",
    "ResponseInProgress",
    "ResponseIncomplete",
    "ResponseQueued",
    "ResponseSteer",
    "ServerEvent",
    "SteerAccepted",
    "SteerFailed",
    "SteerPending",
    "UnknownEvent",
    "UnsetType",
]

JSON = Any  # a parsed JSON value (dict / list / str / number / bool / None)


# --------------------------------------------------------------------------------------------
# Client events
# --------------------------------------------------------------------------------------------


class _ClientEventBase(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", omit_defaults=True):
    """Base of client events: tagged by `type`, defaults omitted so frames stay minimal."""


class ResponseCreate(_ClientEventBase, tag="response.create", frozen=True, kw_only=True):
    """`response.create`: the flat HTTP body plus `type` (PROTOCOL §2.1). Every field is optional
    and left out of the frame when UNSET. `input`, `tools`, `reasoning`, ... stay raw JSON.

    `stream` is accepted (clients send it) and ignored by the server; `background: true` is
    rejected by the server; `stream_id` selects a lane (WebSocket only)."""

    model: str | UnsetType = UNSET
    input: str | list[JSON] | UnsetType = UNSET
    instructions: str | UnsetType | None = UNSET
    previous_response_id: str | UnsetType | None = UNSET
    store: bool | UnsetType | None = UNSET
    stream_id: str | UnsetType = UNSET
    generate: bool | UnsetType | None = UNSET
    tools: list[dict[str, JSON]] | UnsetType | None = UNSET
    tool_choice: str | dict[str, JSON] | UnsetType | None = UNSET
    parallel_tool_calls: bool | UnsetType | None = UNSET
    max_output_tokens: int | UnsetType | None = UNSET
    max_tool_calls: int | UnsetType | None = UNSET
    temperature: float | UnsetType | None = UNSET
    top_p: float | UnsetType | None = UNSET
    top_logprobs: int | UnsetType | None = UNSET
    presence_penalty: float | UnsetType | None = UNSET
    frequency_penalty: float | UnsetType | None = UNSET
    metadata: dict[str, JSON] | UnsetType | None = UNSET
    reasoning: dict[str, JSON] | UnsetType | None = UNSET
    text: dict[str, JSON] | UnsetType | None = UNSET
    truncation: str | UnsetType | None = UNSET
    include: list[str] | UnsetType | None = UNSET
    stream: bool | UnsetType | None = UNSET
    stream_options: dict[str, JSON] | UnsetType | None = UNSET
    background: bool | UnsetType | None = UNSET
    background_options: JSON | UnsetType = UNSET
    context_management: JSON | UnsetType = UNSET
    conversation: JSON | UnsetType = UNSET
    prompt: JSON | UnsetType = UNSET
    prompt_cache_key: str | UnsetType | None = UNSET
    prompt_cache_options: JSON | UnsetType = UNSET
    prompt_cache_retention: str | UnsetType | None = UNSET
    safety_identifier: str | UnsetType | None = UNSET
    service_tier: str | UnsetType | None = UNSET
    user: str | UnsetType | None = UNSET
    moderation: JSON | UnsetType = UNSET
    access_programs: JSON | UnsetType = UNSET
    image: JSON | UnsetType = UNSET


class ResponseSteer(_ClientEventBase, tag="response.steer", frozen=True, kw_only=True):
    """`response.steer`: extra user input for a running response (PROTOCOL §1.4). No stream_id."""

    previous_response_id: str
    input: str | list[JSON]


class ResponseCancel(_ClientEventBase, tag="response.cancel", frozen=True, kw_only=True):
    """`response.cancel`: stop a running response now (Slipstream's own server only; OpenAI's WebSocket
    mode has no cancel event, PROTOCOL §2.4). The server ends it with `response.incomplete`,
    `incomplete_details.reason: "cancelled"`, keeping its partial output as the chain's latest
    response; a server offering it says so on the upgrade (`CLIENT_EVENTS_HEADER`)."""

    response_id: str


ClientEvent = ResponseCreate | ResponseSteer | ResponseCancel

KNOWN_CLIENT_TYPES: Final[dict[str, type[ClientEvent]]] = {
    "response.create": ResponseCreate,
    "response.steer": ResponseSteer,
    "response.cancel": ResponseCancel,
}
# Upgrade response header listing the optional client events a server accepts ("response.cancel").
CLIENT_EVENTS_HEADER: Final = "X-Slipstream-Client-Events"
CLIENT_EVENT_TYPES: Final = frozenset(KNOWN_CLIENT_TYPES)


# --------------------------------------------------------------------------------------------
# Server events
# --------------------------------------------------------------------------------------------


class _ServerEventBase(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of server events: `stream_id` is present only on named-lane events; the SDK requires
    `sequence_number` on every event except protocol-level errors."""

    stream_id: str | UnsetType | None = UNSET

    @property
    def lane(self) -> str | None:
        """The lane (stream_id) this event belongs to; None for the default lane."""
        return self.stream_id or None


class _ResponseEvent(_ServerEventBase, frozen=True, kw_only=True):
    """A lifecycle event carrying the whole `response` object (PROTOCOL §3.4) as JSON."""

    sequence_number: int = 0
    response: dict[str, JSON]

    @property
    def response_id(self) -> str:
        return str(self.response.get("id", ""))


class ResponseCreated(_ResponseEvent, tag="response.created", frozen=True, kw_only=True):
    """First event of every response (status in_progress, output [])."""


class ResponseQueued(_ResponseEvent, tag="response.queued", frozen=True, kw_only=True):
    """The response waits for capacity (status queued)."""


class ResponseInProgress(_ResponseEvent, tag="response.in_progress", frozen=True, kw_only=True):
    """Generation started."""


class ResponseCompleted(_ResponseEvent, tag="response.completed", frozen=True, kw_only=True):
    """Terminal: finished normally. Also what a legacy `response.done` decodes to."""


class ResponseIncomplete(_ResponseEvent, tag="response.incomplete", frozen=True, kw_only=True):
    """Terminal: stopped early; `response.incomplete_details.reason` says why."""


class ResponseFailed(_ResponseEvent, tag="response.failed", frozen=True, kw_only=True):
    """Terminal: generation failed; `response.error` holds code and message."""


class OutputItemAdded(_ServerEventBase, tag="response.output_item.added", frozen=True, kw_only=True):
    sequence_number: int = 0
    output_index: int
    item: dict[str, JSON]


class OutputItemDone(_ServerEventBase, tag="response.output_item.done", frozen=True, kw_only=True):
    sequence_number: int = 0
    output_index: int
    item: dict[str, JSON]


class ContentPartAdded(_ServerEventBase, tag="response.content_part.added", frozen=True, kw_only=True):
    sequence_number: int = 0
    item_id: str
    output_index: int
    content_index: int
    part: dict[str, JSON]


class ContentPartDone(_ServerEventBase, tag="response.content_part.done", frozen=True, kw_only=True):
    sequence_number: int = 0
    item_id: str
    output_index: int
    content_index: int
    part: dict[str, JSON]


class OutputTextDelta(_ServerEventBase, tag="response.output_text.delta", frozen=True, kw_only=True):
    """The hot path: one piece of assistant text."""

    sequence_number: int = 0
    item_id: str
    output_index: int
    content_index: int = 0
    delta: str
    logprobs: list[JSON] | None = msgspec.field(default_factory=list)


class OutputTextDone(_ServerEventBase, tag="response.output_text.done", frozen=True, kw_only=True):
    sequence_number: int = 0
    item_id: str
    output_index: int
    content_index: int = 0
    text: str
    logprobs: list[JSON] | None = msgspec.field(default_factory=list)


class OutputTextAnnotationAdded(
    _ServerEventBase, tag="response.output_text.annotation.added", frozen=True, kw_only=True
):
    sequence_number: int = 0
    item_id: str
    output_index: int
    content_index: int = 0
    annotation_index: int
    annotation: JSON = None


class RefusalDelta(_ServerEventBase, tag="response.refusal.delta", frozen=True, kw_only=True):
    sequence_number: int = 0
    item_id: str
    output_index: int
    content_index: int = 0
    delta: str


class RefusalDone(_ServerEventBase, tag="response.refusal.done", frozen=True, kw_only=True):
    sequence_number: int = 0
    item_id: str
    output_index: int
    content_index: int = 0
    refusal: str


class FunctionCallArgumentsDelta(
    _ServerEventBase, tag="response.function_call_arguments.delta", frozen=True, kw_only=True
):
    """A piece of a function call's JSON arguments; `item_id` is the item's `id`, not `call_id`."""

    sequence_number: int = 0
    item_id: str
    output_index: int
    delta: str


class FunctionCallArgumentsDone(
    _ServerEventBase, tag="response.function_call_arguments.done", frozen=True, kw_only=True
):
    sequence_number: int = 0
    item_id: str
    output_index: int
    arguments: str


class CustomToolCallInputDelta(
    _ServerEventBase, tag="response.custom_tool_call_input.delta", frozen=True, kw_only=True
):
    sequence_number: int = 0
    item_id: str
    output_index: int
    delta: str


class CustomToolCallInputDone(
    _ServerEventBase, tag="response.custom_tool_call_input.done", frozen=True, kw_only=True
):
    sequence_number: int = 0
    item_id: str
    output_index: int
    input: str


class ReasoningSummaryPartAdded(
    _ServerEventBase, tag="response.reasoning_summary_part.added", frozen=True, kw_only=True
):
    sequence_number: int = 0
    item_id: str
    output_index: int
    summary_index: int
    part: dict[str, JSON]


class ReasoningSummaryPartDone(
    _ServerEventBase, tag="response.reasoning_summary_part.done", frozen=True, kw_only=True
):
    sequence_number: int = 0
    item_id: str
    output_index: int
    summary_index: int
    part: dict[str, JSON]


class ReasoningSummaryTextDelta(
    _ServerEventBase, tag="response.reasoning_summary_text.delta", frozen=True, kw_only=True
):
    sequence_number: int = 0
    item_id: str
    output_index: int
    summary_index: int
    delta: str


class ReasoningSummaryTextDone(
    _ServerEventBase, tag="response.reasoning_summary_text.done", frozen=True, kw_only=True
):
    sequence_number: int = 0
    item_id: str
    output_index: int
    summary_index: int
    text: str


class ReasoningTextDelta(_ServerEventBase, tag="response.reasoning_text.delta", frozen=True, kw_only=True):
    sequence_number: int = 0
    item_id: str
    output_index: int
    content_index: int = 0
    delta: str


class ReasoningTextDone(_ServerEventBase, tag="response.reasoning_text.done", frozen=True, kw_only=True):
    sequence_number: int = 0
    item_id: str
    output_index: int
    content_index: int = 0
    text: str


class ReasoningContentDelta(_ServerEventBase, tag="response.reasoning.delta", frozen=True, kw_only=True):
    """Open Responses' name for a piece of reasoning text (OpenAI's is `response.reasoning_text.delta`;
    clients should accept both). Our server emits this one: it is the published spec's."""

    sequence_number: int = 0
    item_id: str
    output_index: int
    content_index: int = 0
    delta: str


class ReasoningContentDone(_ServerEventBase, tag="response.reasoning.done", frozen=True, kw_only=True):
    """Open Responses' name for the end of a reasoning text (OpenAI: `response.reasoning_text.done`)."""

    sequence_number: int = 0
    item_id: str
    output_index: int
    content_index: int = 0
    text: str


class CompactionCompacting(_ServerEventBase, tag="response.compaction.compacting", frozen=True, kw_only=True):
    sequence_number: int = 0
    item_id: str
    output_index: int


class SteerAccepted(_ServerEventBase, tag="response.steer.accepted", frozen=True, kw_only=True):
    """Steering input queued (not yet applied); `steer` = {id, previous_response_id}."""

    sequence_number: int = 0
    steer: dict[str, JSON]


class SteerPending(_ServerEventBase, tag="response.steer.pending", frozen=True, kw_only=True):
    """Steering input waits for client tool results listed in `required_input`."""

    sequence_number: int = 0
    reason: str
    required_input: list[JSON] = msgspec.field(default_factory=list)
    steer: dict[str, JSON]


class SteerFailed(_ServerEventBase, tag="response.steer.failed", frozen=True, kw_only=True):
    """Steering input rejected; `error` = {type, code, message}, `steer` returns the input."""

    sequence_number: int = 0
    error: dict[str, JSON]
    steer: dict[str, JSON]


class ErrorDetail(msgspec.Struct, frozen=True, kw_only=True):
    """The nested `error` object of a WebSocket `error` event. `type` is optional on the wire
    (older examples omit it) but the SDK requires it, so we always send it."""

    type: str = "invalid_request_error"
    code: str | None = None
    message: str = ""
    param: str | None = None
    headers: dict[str, str] | UnsetType = UNSET


class ErrorEvent(_ServerEventBase, tag="error", frozen=True, kw_only=True):
    """`error` (PROTOCOL §4.1): nested WS shape. A request-scoped error on a named lane echoes
    `stream_id`; `sequence_number` only when the error belongs to a response stream."""

    status: int | UnsetType | None = UNSET
    sequence_number: int | UnsetType | None = UNSET
    error: ErrorDetail

    @property
    def code(self) -> str | None:
        return self.error.code


class UnknownEvent(msgspec.Struct, frozen=True):
    """A server event type we do not model (hosted tools, audio, future types). `data` is the
    whole JSON object, `type` included; it re-encodes unchanged."""

    type: str
    data: dict[str, JSON]

    @property
    def lane(self) -> str | None:
        sid = self.data.get("stream_id")
        return sid if isinstance(sid, str) and sid else None


KnownServerEvent = (
    ResponseCreated
    | ResponseQueued
    | ResponseInProgress
    | ResponseCompleted
    | ResponseIncomplete
    | ResponseFailed
    | OutputItemAdded
    | OutputItemDone
    | ContentPartAdded
    | ContentPartDone
    | OutputTextDelta
    | OutputTextDone
    | OutputTextAnnotationAdded
    | RefusalDelta
    | RefusalDone
    | FunctionCallArgumentsDelta
    | FunctionCallArgumentsDone
    | CustomToolCallInputDelta
    | CustomToolCallInputDone
    | ReasoningSummaryPartAdded
    | ReasoningSummaryPartDone
    | ReasoningSummaryTextDelta
    | ReasoningSummaryTextDone
    | ReasoningTextDelta
    | ReasoningTextDone
    | ReasoningContentDelta
    | ReasoningContentDone
    | CompactionCompacting
    | SteerAccepted
    | SteerPending
    | SteerFailed
    | ErrorEvent
)
ServerEvent = KnownServerEvent | UnknownEvent


def _tag_map(union: Any) -> dict[str, type[Any]]:
    return {cls.__struct_config__.tag: cls for cls in union.__args__}


KNOWN_SERVER_TYPES: Final[dict[str, type[Any]]] = _tag_map(KnownServerEvent)
SERVER_EVENT_TYPES: Final = frozenset(KNOWN_SERVER_TYPES)

# The events that end one response (a request-scoped `error` also ends the request it answers).
TERMINAL_TYPES: Final = frozenset({"response.completed", "response.incomplete", "response.failed"})
