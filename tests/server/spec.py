"""Strict validation against the Open Responses spec, using a third-party schema (`openresponses-types`,
mozilla.ai's pydantic models generated from the spec's OpenAPI file, spec version 2026-04-24).

"Strict" means: the JSON must validate (every required field present, every type right, in pydantic's
strict JSON mode), and it may hold no key the spec does not declare, except inside objects the spec
declares open (`additionalProperties: true`, e.g. the WebSocket error payload). pydantic's models ignore
unknown keys by default, so extra keys are found by comparing the input with the validated model's dump.

`stream_id`: the spec's WebSocket transport has sequential turns only, so its events have no
`stream_id`. Our server adds it only on OpenAI named lanes (a client that sends `stream_id`); for such
events the key is checked to equal the lane and removed before validation. Default-lane events carry
none and are validated as they are.

Not in the spec, so not validated here: `response.steer.*` (answers to OpenAI's `response.steer`,
which spec clients never send).
"""

from __future__ import annotations

import json
from typing import Any, Literal

import openresponses_types as ort
from pydantic import BaseModel

__all__ = [
    "EVENT_MODELS",
    "SpecError",
    "check_compaction",
    "check_error_body",
    "check_event",
    "check_response",
]

Transport = Literal["sse", "ws"]

EVENT_MODELS: dict[str, type[BaseModel]] = {
    "response.created": ort.ResponseCreatedStreamingEvent,
    "response.queued": ort.ResponseQueuedStreamingEvent,
    "response.in_progress": ort.ResponseInProgressStreamingEvent,
    "response.completed": ort.ResponseCompletedStreamingEvent,
    "response.failed": ort.ResponseFailedStreamingEvent,
    "response.incomplete": ort.ResponseIncompleteStreamingEvent,
    "response.output_item.added": ort.ResponseOutputItemAddedStreamingEvent,
    "response.output_item.done": ort.ResponseOutputItemDoneStreamingEvent,
    "response.content_part.added": ort.ResponseContentPartAddedStreamingEvent,
    "response.content_part.done": ort.ResponseContentPartDoneStreamingEvent,
    "response.output_text.delta": ort.ResponseOutputTextDeltaStreamingEvent,
    "response.output_text.done": ort.ResponseOutputTextDoneStreamingEvent,
    "response.refusal.delta": ort.ResponseRefusalDeltaStreamingEvent,
    "response.refusal.done": ort.ResponseRefusalDoneStreamingEvent,
    "response.reasoning.delta": ort.ResponseReasoningDeltaStreamingEvent,
    "response.reasoning.done": ort.ResponseReasoningDoneStreamingEvent,
    "response.reasoning_summary_part.added": ort.ResponseReasoningSummaryPartAddedStreamingEvent,
    "response.reasoning_summary_part.done": ort.ResponseReasoningSummaryPartDoneStreamingEvent,
    "response.reasoning_summary_text.delta": ort.ResponseReasoningSummaryDeltaStreamingEvent,
    "response.reasoning_summary_text.done": ort.ResponseReasoningSummaryDoneStreamingEvent,
    "response.output_text.annotation.added": ort.ResponseOutputTextAnnotationAddedStreamingEvent,
    "response.function_call_arguments.delta": ort.ResponseFunctionCallArgumentsDeltaStreamingEvent,
    "response.function_call_arguments.done": ort.ResponseFunctionCallArgumentsDoneStreamingEvent,
}


class SpecError(AssertionError):
    """The JSON does not match the Open Responses spec."""


def _extra_keys(data: Any, dumped: Any, path: str = "$") -> list[str]:
    """Paths of keys in `data` that the validated dump lost (undeclared keys)."""
    out: list[str] = []
    if isinstance(data, dict):
        if not isinstance(dumped, dict):
            return out
        for key, value in data.items():
            if key not in dumped:
                out.append(f"{path}.{key}")
            else:
                out += _extra_keys(value, dumped[key], f"{path}.{key}")
    elif isinstance(data, list) and isinstance(dumped, list):
        for i, (a, b) in enumerate(zip(data, dumped, strict=False)):
            out += _extra_keys(a, b, f"{path}[{i}]")
    return out


def _strict(model: type[BaseModel], data: dict[str, Any], what: str) -> BaseModel:
    try:
        obj = model.model_validate_json(json.dumps(data), strict=True)
    except Exception as exc:  # pydantic.ValidationError, with its own words
        raise SpecError(f"{what} does not match {model.__name__}: {exc}\n{json.dumps(data)[:2000]}") from None
    dumped = obj.model_dump(mode="json", by_alias=True, exclude_unset=True)
    extra = _extra_keys(data, dumped)
    if extra:
        raise SpecError(f"{what} has keys the spec does not declare: {extra}\n{json.dumps(data)[:2000]}")
    return obj


def check_event(
    event: dict[str, Any] | bytes | str, transport: Transport, *, lane: str | None = None
) -> dict[str, Any]:
    """Validate one streaming event strictly; returns it parsed. `lane`: the named lane it belongs to."""
    data = json.loads(event) if isinstance(event, bytes | str) else dict(event)
    kind = data.get("type")
    if "stream_id" in data:
        if transport != "ws" or lane is None or data["stream_id"] != lane:
            raise SpecError(
                f"unexpected stream_id {data['stream_id']!r} on a {transport} event (lane {lane!r})"
            )
        data = {k: v for k, v in data.items() if k != "stream_id"}
    if kind == "error":
        model: type[BaseModel] = ort.WebSocketErrorEvent if transport == "ws" else ort.ErrorStreamingEvent
    elif kind in EVENT_MODELS:
        model = EVENT_MODELS[kind]
    else:
        raise SpecError(f"event type {kind!r} is not in the Open Responses spec")
    _strict(model, data, f"{transport} event {kind!r}")
    return data


def check_response(obj: dict[str, Any]) -> dict[str, Any]:
    """A response object (HTTP JSON body, or the `response` of a lifecycle event)."""
    _strict(ort.ResponseResource, obj, "response object")
    return obj


def check_compaction(obj: dict[str, Any]) -> dict[str, Any]:
    """The answer of POST /v1/responses/compact."""
    _strict(ort.CompactResource, obj, "compaction resource")
    return obj


def check_error_body(obj: dict[str, Any]) -> dict[str, Any]:
    """An HTTP error body `{"error": {...}}`. The package models no HTTP error body, so the `error`
    object is checked against the spec's error payload (`ErrorPayload`) with a string `code`."""
    if set(obj) != {"error"}:
        raise SpecError(f"an error body has exactly one key, 'error': {obj}")
    _strict(ort.ErrorPayload, obj["error"], "error payload")
    if not isinstance(obj["error"].get("code"), str):
        raise SpecError(f"error.code must be a string: {obj}")
    return obj
