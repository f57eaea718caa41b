"""Events: wire shape of the typed structs (what is always sent, what is never sent)."""

from __future__ import annotations

import json
from typing import cast

import msgspec
import pytest

from app.protocol import events as ev
from app.protocol.codec import encode, event_type


def _wire(event: ev.ServerEvent | ev.ClientEvent) -> dict[str, object]:
    return cast(dict[str, object], json.loads(encode(event)))


def test_default_lane_events_omit_stream_id() -> None:
    """A default-lane event has no stream_id key at all; a named-lane one echoes it."""
    plain = _wire(ev.OutputTextDelta(item_id="msg_1", output_index=0, delta="hi"))
    named = _wire(ev.OutputTextDelta(item_id="msg_1", output_index=0, delta="hi", stream_id="main"))
    assert "stream_id" not in plain
    assert named["stream_id"] == "main"


def test_text_delta_always_carries_sdk_required_fields() -> None:
    """sequence_number, content_index and logprobs are emitted even at their defaults."""
    wire = _wire(ev.OutputTextDelta(item_id="msg_1", output_index=0, delta="x"))
    assert wire == {
        "type": "response.output_text.delta",
        "sequence_number": 0,
        "item_id": "msg_1",
        "output_index": 0,
        "content_index": 0,
        "delta": "x",
        "logprobs": [],
    }


def test_response_create_omits_unset_fields() -> None:
    """A create frame carries only the fields the caller set (None is sent when set)."""
    wire = _wire(ev.ResponseCreate(model="m", input="hi", previous_response_id=None))
    assert wire == {"type": "response.create", "model": "m", "input": "hi", "previous_response_id": None}


def test_error_event_nested_shape_has_type() -> None:
    """The nested error always carries error.type (the SDK requires it) and omits unset keys."""
    wire = _wire(ev.ErrorEvent(status=400, error=ev.ErrorDetail(code="c", message="m", param="p")))
    assert wire == {
        "type": "error",
        "status": 400,
        "error": {"type": "invalid_request_error", "code": "c", "message": "m", "param": "p"},
    }


def test_events_are_frozen() -> None:
    """Events are values: assigning a field fails."""
    delta = ev.OutputTextDelta(item_id="a", output_index=0, delta="x")
    with pytest.raises(AttributeError):
        delta.delta = "y"  # type: ignore[misc]


def test_every_known_server_type_maps_to_its_class() -> None:
    """The tag table covers every struct in the union, and event_type() reads the tag back."""
    assert "response.output_text.delta" in ev.SERVER_EVENT_TYPES
    assert "error" in ev.SERVER_EVENT_TYPES
    for tag, cls in ev.KNOWN_SERVER_TYPES.items():
        assert cls.__struct_config__.tag == tag
    assert event_type(ev.ResponseSteer(previous_response_id="r", input="x")) == "response.steer"
    assert event_type(ev.UnknownEvent(type="response.audio.delta", data={})) == "response.audio.delta"


def test_lane_property() -> None:
    """`lane` is the stream_id or None, for typed and unknown events alike."""
    assert ev.RefusalDelta(item_id="a", output_index=0, delta="x").lane is None
    assert ev.RefusalDelta(item_id="a", output_index=0, delta="x", stream_id="b").lane == "b"
    assert ev.UnknownEvent(type="t", data={"stream_id": "z"}).lane == "z"


def test_response_event_id() -> None:
    """Lifecycle events expose the id of the response they carry."""
    created = msgspec.convert(
        {"type": "response.created", "sequence_number": 0, "response": {"id": "resp_9"}}, ev.ResponseCreated
    )
    assert created.response_id == "resp_9"
