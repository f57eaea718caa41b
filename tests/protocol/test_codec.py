"""Codec: decoding, encoding, SSE framing, clear errors, and the official SDK parsing our frames."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai.types.responses import ResponsesServerEvent, ResponseStreamEvent
from pydantic import TypeAdapter

from app.protocol import events as ev
from app.protocol.codec import SSEDecoder, decode_client, decode_server, encode, encode_sse
from app.protocol.errors import RemoteProtocolError
from tests.server.spec import check_event

WS_EVENTS: TypeAdapter[Any] = TypeAdapter(ResponsesServerEvent)
SSE_EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)

RESPONSE = {
    "id": "resp_1",
    "object": "response",
    "created_at": 1767000000,
    "status": "completed",
    "model": "local-model",
    "output": [],
    "tools": [],
    "tool_choice": "auto",
    "parallel_tool_calls": True,
    "usage": {
        "input_tokens": 3,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 1,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 4,
    },
}

SAMPLES: list[Any] = [
    ev.ResponseCreated(response={**RESPONSE, "status": "in_progress", "usage": None}),
    ev.ResponseInProgress(sequence_number=1, response={**RESPONSE, "status": "in_progress"}),
    ev.OutputItemAdded(
        sequence_number=2,
        output_index=0,
        item={"type": "message", "id": "msg_1", "role": "assistant", "status": "in_progress", "content": []},
    ),
    ev.ContentPartAdded(
        sequence_number=3,
        item_id="msg_1",
        output_index=0,
        content_index=0,
        part={"type": "output_text", "text": "", "annotations": []},
    ),
    ev.OutputTextDelta(sequence_number=4, item_id="msg_1", output_index=0, delta="Hé", stream_id="main"),
    ev.OutputTextDone(sequence_number=5, item_id="msg_1", output_index=0, text="Hé"),
    ev.FunctionCallArgumentsDelta(sequence_number=6, item_id="fc_1", output_index=1, delta='{"a"'),
    ev.FunctionCallArgumentsDone(sequence_number=7, item_id="fc_1", output_index=1, arguments='{"a":1}'),
    ev.ReasoningTextDelta(sequence_number=8, item_id="rs_1", output_index=2, delta="hmm"),
    ev.ReasoningSummaryTextDelta(
        sequence_number=9, item_id="rs_1", output_index=2, summary_index=0, delta="s"
    ),
    ev.RefusalDelta(sequence_number=10, item_id="msg_1", output_index=0, delta="no"),
    ev.CustomToolCallInputDone(sequence_number=11, item_id="ct_1", output_index=3, input="x"),
    ev.CompactionCompacting(sequence_number=12, item_id="cmp_1", output_index=4),
    ev.ResponseCompleted(sequence_number=13, response=RESPONSE),
    ev.ResponseFailed(
        sequence_number=13,
        response={**RESPONSE, "status": "failed", "error": {"code": "server_error", "message": "boom"}},
    ),
    ev.ResponseIncomplete(
        sequence_number=13,
        response={**RESPONSE, "status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}},
    ),
    ev.SteerAccepted(steer={"id": "steer_1", "previous_response_id": "resp_1"}, stream_id="main"),
    ev.SteerFailed(
        error={"type": "invalid_request_error", "code": "steering_not_supported", "message": "no"},
        steer={"input": "x", "previous_response_id": "resp_1"},
    ),
    ev.ErrorEvent(
        status=400,
        error=ev.ErrorDetail(
            code="previous_response_not_found",
            message="Previous response with id 'resp_2' not found.",
            param="previous_response_id",
        ),
    ),
]


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: type(e).__name__)
def test_round_trip(event: Any) -> None:
    """encode → decode_server gives back an equal event."""
    assert decode_server(encode(event)) == event
    assert decode_server(encode(event).decode()) == event


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: type(e).__name__)
def test_official_sdk_parses_ws_frames(event: Any) -> None:
    """The openai SDK's WebSocket event union accepts every frame we encode."""
    parsed = WS_EVENTS.validate_json(encode(event))
    assert parsed.type == json.loads(encode(event))["type"]


@pytest.mark.parametrize(
    "event",
    [e for e in SAMPLES if not isinstance(e, (ev.SteerAccepted, ev.SteerFailed, ev.ErrorEvent))],
    ids=lambda e: type(e).__name__,
)
def test_official_sdk_parses_sse_payloads(event: Any) -> None:
    """The SDK's HTTP stream-event union accepts our SSE payloads."""
    chunk = encode_sse(event)
    head, data = chunk.split(b"\n", 1)
    assert head == b"event: " + json.loads(encode(event))["type"].encode()
    payload = data.removeprefix(b"data: ").removesuffix(b"\n\n")
    SSE_EVENTS.validate_json(payload)


def test_sse_error_has_the_spec_shape_and_decodes_back() -> None:
    """An SSE `error` is the spec's `ErrorStreamingEvent` (nested error object), and decodes back."""
    (event,) = [e for e in SAMPLES if isinstance(e, ev.ErrorEvent)]
    payload = encode_sse(event).split(b"\n", 1)[1].removeprefix(b"data: ").removesuffix(b"\n\n")
    check_event(payload, "sse")
    back = decode_server(payload)
    assert isinstance(back, ev.ErrorEvent) and back.error.code == "previous_response_not_found"


def test_hot_path_delta_decodes_to_struct() -> None:
    """A text delta from the wire (with extra fields) decodes straight to OutputTextDelta."""
    frame = (
        b'{"type":"response.output_text.delta","sequence_number":4,"item_id":"msg_2",'
        b'"output_index":0,"content_index":0,"delta":"It is ","logprobs":[],"obfuscation":"zz"}'
    )
    event = decode_server(frame)
    assert isinstance(event, ev.OutputTextDelta)
    assert (event.delta, event.sequence_number, event.lane) == ("It is ", 4, None)


def test_unknown_server_event_is_kept_verbatim() -> None:
    """Hosted-tool and future events survive decode and re-encode unchanged."""
    frame = (
        '{"type":"response.web_search_call.searching","sequence_number":3,"output_index":1,"item_id":"ws_1"}'
    )
    event = decode_server(frame)
    assert isinstance(event, ev.UnknownEvent)
    assert event.type == "response.web_search_call.searching"
    assert json.loads(encode(event)) == json.loads(frame)


def test_response_done_is_an_alias_of_completed() -> None:
    """The legacy terminal `response.done` decodes as ResponseCompleted."""
    event = decode_server('{"type":"response.done","sequence_number":9,"response":{"id":"resp_1"}}')
    assert isinstance(event, ev.ResponseCompleted)
    assert event.response_id == "resp_1"


def test_flat_error_shape_decodes_as_nested() -> None:
    """llmsim/SSE-style flat errors become the nested ErrorEvent."""
    event = decode_server(
        '{"type":"error","code":"previous_response_not_found","message":"gone","param":null,"sequence_number":0}'
    )
    assert isinstance(event, ev.ErrorEvent)
    assert (event.code, event.error.message, event.sequence_number) == (
        "previous_response_not_found",
        "gone",
        0,
    )


def test_error_without_error_type_is_tolerated() -> None:
    """The older nested example lacks error.type; it still decodes."""
    event = decode_server('{"type":"error","status":400,"error":{"code":"x","message":"m"}}')
    assert isinstance(event, ev.ErrorEvent) and event.status == 400 and event.code == "x"


@pytest.mark.parametrize(
    ("frame", "code", "param"),
    [
        (b'{"type":"response.output_text.delta"', "invalid_json", None),
        (b"[1,2]", "invalid_event", "type"),
        (b'{"delta":"x"}', "invalid_event", "type"),
        (
            b'{"type":"response.output_text.delta","item_id":"a","output_index":"0","delta":"x"}',
            "invalid_event",
            "output_index",
        ),
        (b'{"type":"response.output_text.delta","output_index":0,"delta":"x"}', "invalid_event", "item_id"),
        (b'{"type":"error","error":{"message":5}}', "invalid_event", "error.message"),
    ],
)
def test_server_decode_errors_are_clear(frame: bytes, code: str, param: str | None) -> None:
    """Bad server frames raise RemoteProtocolError with a code and the offending field."""
    with pytest.raises(RemoteProtocolError) as info:
        decode_server(frame)
    assert info.value.code == code
    assert info.value.param == param
    assert str(info.value)


def test_decode_client_create_keeps_raw_json_fields() -> None:
    """A flat create keeps input/tools as raw JSON and accepts `stream`."""
    frame = json.dumps(
        {
            "type": "response.create",
            "model": "local-model",
            "store": False,
            "stream": True,
            "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
            "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
            "tool_choice": {"type": "function", "name": "f"},
            "some_future_field": 1,
        }
    )
    event = decode_client(frame)
    assert isinstance(event, ev.ResponseCreate)
    assert event.input[0]["content"][0]["text"] == "hi"  # type: ignore[index]
    assert event.tool_choice == {"type": "function", "name": "f"}
    assert event.stream is True and event.stream_id is ev.UNSET


@pytest.mark.parametrize(
    ("frame", "code", "param"),
    [
        ("not json", "invalid_json", None),
        ('"response.create"', "invalid_event", "type"),
        ('{"model":"m"}', "invalid_event", "type"),
        ('{"type":"response.append"}', "unknown_event_type", "type"),
        ('{"type":"response.cancel"}', "invalid_event", "response_id"),
        ('{"type":"response.create","input":5}', "invalid_event", "input"),
        ('{"type":"response.create","store":"no"}', "invalid_event", "store"),
        ('{"type":"response.steer","input":"x"}', "invalid_event", "previous_response_id"),
    ],
)
def test_client_decode_errors_are_clear(frame: str, code: str, param: str | None) -> None:
    """Bad client frames raise with code + param; unknown types are errors on this side."""
    with pytest.raises(RemoteProtocolError) as info:
        decode_client(frame)
    assert (info.value.code, info.value.param) == (code, param)


def test_unknown_client_type_names_the_type() -> None:
    """The message says which type was unknown and which are accepted."""
    with pytest.raises(RemoteProtocolError) as info:
        decode_client('{"type":"response.processed","response_id":"r"}')
    assert info.value.event_type == "response.processed"
    assert "response.processed" in info.value.message and "response.create" in info.value.message


# ---- SSE -------------------------------------------------------------------------------------

STREAM = b"".join(encode_sse(e) for e in SAMPLES[:6]) + b": keep-alive\n\n" + b"data: [DONE]\n\n"


def _feed_all(chunks: list[bytes]) -> tuple[list[Any], SSEDecoder]:
    decoder = SSEDecoder()
    out: list[Any] = []
    for chunk in chunks:
        out.extend(decoder.feed(chunk))
    out.extend(decoder.close())
    return out, decoder


def test_sse_whole_stream() -> None:
    """A whole stream yields every event and notices [DONE]."""
    events, decoder = _feed_all([STREAM])
    assert events == SAMPLES[:6]
    assert decoder.done


def test_sse_byte_by_byte() -> None:
    """Split anywhere (inside UTF-8 sequences too), the result is the same."""
    events, decoder = _feed_all([STREAM[i : i + 1] for i in range(len(STREAM))])
    assert events == SAMPLES[:6]
    assert decoder.done


@pytest.mark.parametrize("newline", [b"\r\n", b"\r"])
def test_sse_crlf_and_cr_line_ends(newline: bytes) -> None:
    """CRLF and bare CR line ends work, even when a CRLF pair is split across chunks."""
    stream = b"\xef\xbb\xbf" + STREAM.replace(b"\n", newline)
    events, _ = _feed_all([stream[i : i + 7] for i in range(0, len(stream), 7)])
    assert events == SAMPLES[:6]


def test_sse_multiline_data_and_missing_final_blank_line() -> None:
    """Multi-line data joins with newlines; close() dispatches a last unterminated event."""
    stream = b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",\ndata: "item_id":"a","output_index":0,"delta":"x"}'
    events, _ = _feed_all([stream])
    assert events == [ev.OutputTextDelta(item_id="a", output_index=0, delta="x")]


def test_sse_bad_payload_raises_and_keeps_earlier_events() -> None:
    """A junk payload raises; the events before it are returned by the next feed."""
    good = encode_sse(SAMPLES[4])
    decoder = SSEDecoder()
    with pytest.raises(RemoteProtocolError) as info:
        decoder.feed(good + b"data: {junk\n\n" + good)
    assert info.value.code == "invalid_json"
    assert decoder.feed(b"") == [SAMPLES[4], SAMPLES[4]]
