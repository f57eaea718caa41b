"""ServerSession: lanes, chaining, warm-up, eviction, limits, age limit, HTTP mode, SDK parsing."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import pytest
from openai.types.responses import ResponsesServerEvent, ResponseStreamEvent
from pydantic import TypeAdapter

from app.protocol.codec import SSEDecoder
from app.protocol.ids import sequential_ids
from app.protocol.server import HistoryView, ResponseStore, ServerSession
from app.protocol.turns import (
    Failure,
    Incomplete,
    ItemDone,
    ReasoningDelta,
    TextDelta,
    ToolCallArgsDelta,
    ToolCallStart,
    Turn,
    Usage,
)
from tests.server.spec import check_event, check_response

WS_EVENTS: TypeAdapter[Any] = TypeAdapter(ResponsesServerEvent)
SSE_EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
T0 = 1767000000.0
USER = {
    "type": "message",
    "role": "user",
    "content": [{"type": "input_text", "text": "What's the weather in Paris?"}],
}
TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "strict": True,
}


def make(**kw: Any) -> ServerSession:
    return ServerSession(now=T0, id_factory=sequential_ids(), **kw)


def send(session: ServerSession, now: float | None = None, **fields: Any) -> None:
    session.receive_frame(json.dumps({"type": "response.create", "model": "local-model", **fields}), now=now)


def drain(session: ServerSession) -> list[dict[str, Any]]:
    frames = session.frames_to_send()
    for frame in frames:
        data = json.loads(frame)
        if data["type"].startswith("response.steer."):  # OpenAI-only events, not in the spec
            WS_EVENTS.validate_json(frame)
        else:  # every other frame: strictly the Open Responses spec (third-party schema)
            check_event(data, "ws", lane=data.get("stream_id"))
    return [json.loads(f) for f in frames]


def run(session: ServerSession, turn: Turn, outputs: Iterable[Any], finish: bool = True) -> None:
    for out in outputs:
        session.feed(turn.response_id, out)
    if finish:
        session.finish(turn.response_id, now=T0 + 1)


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def test_protocol_section_9_transcript() -> None:
    """The two-turn function-call transcript of PROTOCOL §9, event for event."""
    s = make()
    send(s, store=False, input=[USER], tools=[TOOL], tool_choice="auto", parallel_tool_calls=False)
    (turn,) = s.ready_turns()
    assert turn.response_id == "resp_1" and list(turn.history) == [] and list(turn.new_input) == [USER]
    run(
        s,
        turn,
        [
            ToolCallStart("call_1", "get_weather"),
            ToolCallArgsDelta('{"city":'),
            ToolCallArgsDelta('"Paris"}'),
        ],
    )
    ev = drain(s)
    assert types(ev) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in ev] == list(range(8))
    assert all("stream_id" not in e for e in ev)
    assert ev[2]["item"] == {
        "type": "function_call",
        "id": "fc_1",
        "call_id": "call_1",
        "name": "get_weather",
        "arguments": "",
        "status": "in_progress",
    }
    assert ev[5]["arguments"] == '{"city":"Paris"}'
    done = ev[-1]["response"]
    assert done["status"] == "completed" and done["store"] is False and done["completed_at"] == int(T0 + 1)
    assert done["output"] == [ev[6]["item"]] and ev[6]["item"]["status"] == "completed"
    assert done["usage"]["total_tokens"] == done["usage"]["input_tokens"] + done["usage"]["output_tokens"]
    check_response(done)

    output = {"type": "function_call_output", "call_id": "call_1", "output": '{"temp_c":18,"sky":"clear"}'}
    send(s, store=False, previous_response_id="resp_1", input=[output], tools=[TOOL], tool_choice="auto")
    (turn2,) = s.ready_turns()
    assert list(turn2.history) == [USER, done["output"][0]]  # full chain, no resend needed
    assert list(turn2.new_input) == [output] and turn2.previous_response_id == "resp_1"
    run(
        s,
        turn2,
        [TextDelta("It is 18 °C "), TextDelta("and clear in Paris."), Usage(84, 12, cached_tokens=64)],
    )
    ev = drain(s)
    assert types(ev) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert ev[4] == {
        "type": "response.output_text.delta",
        "sequence_number": 4,
        "item_id": "msg_1",
        "output_index": 0,
        "content_index": 0,
        "delta": "It is 18 °C ",
        "logprobs": [],
    }
    assert ev[6]["text"] == "It is 18 °C and clear in Paris."
    final = ev[-1]["response"]
    assert final["previous_response_id"] == "resp_1"
    assert final["usage"] == {
        "input_tokens": 84,
        "input_tokens_details": {"cached_tokens": 64},
        "output_tokens": 12,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 96,
    }
    assert final["output"][0]["content"] == [
        {"type": "output_text", "text": "It is 18 °C and clear in Paris.", "annotations": []}
    ]


def test_reasoning_then_text_then_calls_get_consecutive_indexes() -> None:
    """Item kinds switch cleanly; output_index counts items; rs_/msg_/fc_ prefixes."""
    s = make()
    send(s, input="hi")
    (turn,) = s.ready_turns()
    run(
        s,
        turn,
        [
            ReasoningDelta("think"),
            TextDelta("a"),
            ItemDone(),
            ToolCallStart("c1", "f"),
            ToolCallArgsDelta("{}"),
            ToolCallStart("c2", "g"),
        ],
    )
    ev = drain(s)
    done = [e["item"] for e in ev if e["type"] == "response.output_item.done"]
    assert [(i["type"], i["id"]) for i in done] == [
        ("reasoning", "rs_1"),
        ("message", "msg_1"),
        ("function_call", "fc_1"),
        ("function_call", "fc_2"),
    ]
    added = [e["output_index"] for e in ev if e["type"] == "response.output_item.added"]
    assert added == [0, 1, 2, 3]
    assert done[0]["content"] == [{"type": "reasoning_text", "text": "think"}]
    usage = ev[-1]["response"]["usage"]
    assert usage["output_tokens_details"]["reasoning_tokens"] == 2  # 5 chars ≈ 2 tokens, estimated
    assert turn.new_input == ({"type": "message", "role": "user", "content": "hi"},)


def test_named_lane_echoes_stream_id_on_every_event() -> None:
    """Named-lane responses carry stream_id on every event; default-lane ones never do."""
    s = make()
    send(s, input="a", stream_id="main")
    send(s, input="b")
    turns = s.ready_turns()
    assert [t.lane for t in turns] == ["main", None]
    for t in turns:
        run(s, t, [TextDelta("x")])
    ev = drain(s)
    main = [e for e in ev if e.get("stream_id") == "main"]
    assert len(main) == len(ev) // 2 and types(main)[-1] == "response.completed"


def test_lane_is_fifo_and_lanes_run_concurrently() -> None:
    """Same lane: the second request waits for the first; other lanes start at once."""
    s = make()
    send(s, input="1", stream_id="a")
    send(s, input="2", stream_id="a")
    send(s, input="3", stream_id="b")
    first = s.ready_turns()
    assert [t.new_input[0]["content"] for t in first] == ["1", "3"]
    assert s.ready_turns() == [] and s.queued == 1 and s.in_flight == 2
    run(s, first[0], [TextDelta("x")])
    (second,) = s.ready_turns()
    assert second.new_input[0]["content"] == "2" and second.lane == "a"


def test_in_flight_limit_queues_excess() -> None:
    """Beyond max_in_flight, creates are accepted and wait until one finishes."""
    s = make(max_in_flight=2)
    for lane in "abc":
        send(s, input=lane, stream_id=lane)
    turns = s.ready_turns()
    assert len(turns) == 2 and s.queued == 1
    assert not any(e["type"] == "error" for e in drain(s))
    run(s, turns[0], [])
    (third,) = s.ready_turns()
    assert third.lane == "c"


def test_stream_id_validation_and_lane_limit() -> None:
    """Bad stream_id → invalid_stream_id; the 33rd distinct named lane → stream limit error."""
    s = make(max_named_lanes=2)
    for bad in ["", "x" * 257, "a b", "é"]:
        send(s, input="x", stream_id=bad)
        (err,) = drain(s)
        assert err["error"]["code"] == "invalid_stream_id" and err["error"]["param"] == "stream_id"
        assert "stream_id" not in err and err["status"] == 400
    send(s, input="x", stream_id="a.b-c_1")
    send(s, input="x", stream_id="two")
    send(s, input="x", stream_id="a.b-c_1")  # reuse: fine
    send(s, input="x", stream_id="three")
    (err,) = drain(s)
    assert err["error"]["code"] == "websocket_stream_limit_reached" and err["stream_id"] == "three"
    assert "maximum number of distinct stream IDs (2)" in err["error"]["message"]
    assert s.queued == 3


def test_previous_response_not_found_exact_error() -> None:
    """Unknown parent: the documented error, and no turn reaches the engine."""
    s = make()
    send(s, input="x", previous_response_id="resp_2", stream_id="main")
    assert s.ready_turns() == []
    (err,) = drain(s)
    assert err == {
        "type": "error",
        "stream_id": "main",
        "status": 400,
        "error": {
            "type": "invalid_request_error",
            "code": "previous_response_not_found",
            "message": "Previous response with id 'resp_2' not found.",
            "param": "previous_response_id",
        },
    }


def test_warm_up_completes_without_engine_and_chains() -> None:
    """generate:false → created, in_progress, completed (output [], 0 output tokens), then chainable."""
    s = make()
    send(s, input=[USER], generate=False, instructions="be brief")
    assert s.ready_turns() == []
    ev = drain(s)
    assert types(ev) == ["response.created", "response.in_progress", "response.completed"]
    final = ev[-1]["response"]
    assert (
        final["output"] == [] and final["usage"]["output_tokens"] == 0 and final["usage"]["input_tokens"] > 0
    )
    send(s, input="go", previous_response_id=final["id"])
    (turn,) = s.ready_turns()
    assert list(turn.history) == [USER]


def test_warm_ups_are_handed_out_for_the_engine_to_prefill() -> None:
    """Each warm-up is also a Turn in warmups() (drained once), with its chain and settings, so the
    engine can prepare its state; a turn started in the same batch comes from ready_turns()."""
    s = make()
    send(s, input=[USER], generate=False, instructions="be brief", tools=[TOOL])
    send(s, input="go")  # same lane, starts as soon as the warm-up completed
    (turn,) = s.ready_turns()
    (warm,) = s.warmups()
    assert s.warmups() == []
    assert list(warm.new_input) == [USER] and list(warm.history) == []
    assert warm.instructions == "be brief" and warm.tools == [TOOL] and warm.response_id != turn.response_id
    send(s, input="more", previous_response_id=turn.response_id, generate=False)
    assert s.ready_turns() == [] and s.warmups() == []  # its lane is busy with "go"
    run(s, turn, [TextDelta("ok")])
    assert s.ready_turns() == []
    (second,) = s.warmups()
    assert len(second.history) == 2 and second.previous_response_id == turn.response_id  # "go", "ok"


def test_history_is_shared_not_copied_along_a_chain() -> None:
    """A chain extends one list; each turn's history is a view whose length grows."""
    s = make()
    send(s, input="1")
    (t1,) = s.ready_turns()
    run(s, t1, [TextDelta("a")])
    prev = t1.response_id
    views = []
    for n in range(2, 6):
        send(s, input=str(n), previous_response_id=prev)
        (t,) = s.ready_turns()
        run(s, t, [TextDelta("b")])
        assert isinstance(t.history, HistoryView)
        views.append(t.history)
        prev = t.response_id
    assert all(isinstance(v, HistoryView) for v in views)
    assert [len(v) for v in views] == [2, 4, 6, 8]
    assert len({id(v._items) for v in views}) == 1  # one shared list for the whole chain
    assert views[-1][-1]["type"] == "message" and views[-1][0]["content"] == "1"


def test_fork_copies_and_both_branches_see_the_right_history() -> None:
    """Two children of one parent: the second forks; neither sees the other's items."""
    s = make()
    send(s, input="root")
    (t1,) = s.ready_turns()
    run(s, t1, [TextDelta("r")])
    send(s, input="left", previous_response_id="resp_1")
    send(s, input="right", previous_response_id="resp_1", stream_id="fork")
    left, right = s.ready_turns()
    run(s, left, [TextDelta("L")])
    run(s, right, [TextDelta("R")])
    drain(s)
    send(s, input="more", previous_response_id=right.response_id, stream_id="fork")
    (t,) = s.ready_turns()
    contents = [i.get("content") for i in t.history]
    assert "left" not in contents and "right" in contents and len(t.history) == 4


def test_failed_same_lane_continuation_evicts_parent() -> None:
    """A failed continuation on the parent's lane evicts the parent from the cache."""
    s = make()
    send(s, input="1", store=False)
    (t1,) = s.ready_turns()
    run(s, t1, [TextDelta("a")])
    send(s, input="2", store=False, previous_response_id="resp_1")
    (t2,) = s.ready_turns()
    run(s, t2, [Failure("upstream_error", "boom")])
    ev = drain(s)
    failed = ev[-1]
    assert failed["type"] == "response.failed"
    assert failed["response"]["error"] == {"code": "server_error", "message": "upstream_error: boom"}
    send(s, input="3", store=False, previous_response_id="resp_1")
    assert s.ready_turns() == []
    assert drain(s)[-1]["error"]["code"] == "previous_response_not_found"


def test_failed_cross_lane_fork_keeps_parent() -> None:
    """A fork from another lane that fails leaves the parent usable on its own lane."""
    s = make()
    send(s, input="1", store=False)
    (t1,) = s.ready_turns()
    run(s, t1, [TextDelta("a")])
    send(s, input="f", store=False, previous_response_id="resp_1", stream_id="fork")
    (tf,) = s.ready_turns()
    s.abort(tf.response_id, "engine crashed")
    assert drain(s)[-1]["response"]["error"]["code"] == "server_error"
    send(s, input="2", store=False, previous_response_id="resp_1")
    (t2,) = s.ready_turns()
    assert len(t2.history) == 2


def test_incomplete_ends_once_and_finish_is_idempotent() -> None:
    """Incomplete ends the response; a later finish() adds nothing; feeding after it raises."""
    s = make()
    send(s, input="x")
    (t,) = s.ready_turns()
    run(s, t, [TextDelta("abc"), Incomplete("max_output_tokens")], finish=False)
    s.finish(t.response_id)
    ev = drain(s)
    terminals = [
        e for e in ev if e["type"] in ("response.completed", "response.incomplete", "response.failed")
    ]
    assert len(terminals) == 1 and terminals[0]["response"]["incomplete_details"] == {
        "reason": "max_output_tokens"
    }
    from app.protocol.errors import LocalProtocolError

    with pytest.raises(LocalProtocolError):
        s.feed(t.response_id, TextDelta("late"))


def test_store_fallback_after_reconnect() -> None:
    """A stored response chains from a new connection via the shared ResponseStore; store=false does not."""
    store = ResponseStore(max_entries=4)
    s1 = make(store=store)
    send(s1, input="kept")
    send(s1, input="gone", store=False, stream_id="b")
    for t in s1.ready_turns():
        run(s1, t, [TextDelta("x")])
    s2 = make(store=store)
    s2._new_id = sequential_ids()  # ids only need to be unique per test
    send(s2, input="next", previous_response_id="resp_1")
    send(s2, input="next", previous_response_id="resp_2", stream_id="b")
    turns = s2.ready_turns()
    assert [t.lane for t in turns] == [None] and len(turns[0].history) == 2
    assert drain(s2)[-1]["error"]["code"] == "previous_response_not_found"


def test_bad_frames_get_errors_and_connection_stays_usable() -> None:
    """Junk, unknown types, bad fields, background:true → 400 errors; then a good create works."""
    s = make(max_frame_bytes=1000)
    s.receive_frame(b"{not json")
    s.receive_frame('{"type":"response.append"}')
    s.receive_frame('{"type":"response.create","input":7}')
    s.receive_frame("x" * 1001)
    send(s, input="x", background=True)
    send(s, input=[1])
    s.receive_frame('{"type":"response.processed","response_id":"r"}')  # ignored silently
    codes = [(e["error"]["code"], e["error"]["param"]) for e in drain(s)]
    assert codes == [
        ("invalid_json", None),
        ("unknown_event_type", "type"),
        ("invalid_event", "input"),
        ("frame_too_large", None),
        ("invalid_request", "background"),
        ("invalid_type", "input[0]"),
    ]
    send(s, input="ok", stream=True)
    assert len(s.ready_turns()) == 1


def test_steer_is_refused_with_a_reason() -> None:
    """No engine steers yet: steer.failed with steering_not_supported / response_not_found."""
    s = make()
    send(s, input="x", stream_id="m")
    (t,) = s.ready_turns()
    drain(s)
    s.receive_frame(
        json.dumps({"type": "response.steer", "previous_response_id": t.response_id, "input": "faster"})
    )
    s.receive_frame(json.dumps({"type": "response.steer", "previous_response_id": "resp_x", "input": "hm"}))
    a, b = drain(s)
    assert (
        a["error"]["code"] == "steering_not_supported" and a["stream_id"] == "m" and a["sequence_number"] == 2
    )
    assert b["error"]["code"] == "response_not_found" and b["steer"]["input"] == "hm"


def test_age_limit_waits_for_in_flight_then_closes() -> None:
    """Past the age limit: new creates refused, the running response finishes, then error + close."""
    s = make(max_age_s=60)
    send(s, input="long", stream_id="a")
    (t,) = s.ready_turns()
    send(s, input="queued", stream_id="a")
    s.feed(t.response_id, TextDelta("part"))
    drain(s)
    s.check_age(T0 + 61)
    send(s, now=T0 + 62, input="new")
    ev = drain(s)
    assert [e["error"]["code"] for e in ev] == ["websocket_connection_limit_reached"] * 2
    assert s.close_requested is None
    assert "(1 minutes)" in ev[0]["error"]["message"]
    s.feed(t.response_id, TextDelta(" more"))  # not cut mid-stream
    s.finish(t.response_id)
    ev = drain(s)
    assert types(ev)[-2:] == ["response.completed", "error"] and "stream_id" not in ev[-1]
    assert s.close_requested == (1001, "connection age limit")


def test_age_limit_idle_closes_at_once() -> None:
    """An idle connection past its age gets the error and a close request on check_age."""
    s = make()
    s.check_age(T0 + 3599)
    assert s.close_requested is None
    s.check_age(T0 + 3600)
    (err,) = drain(s)
    assert err["error"]["message"] == (
        "Responses websocket connection limit reached (60 minutes). Create a new websocket connection to continue."
    )
    assert s.close_requested == (1001, "connection age limit")


def test_http_stream_is_sse_with_sdk_parsable_events() -> None:
    """HTTP mode: SSE frames the SDK's stream-event union parses; the store enables chaining."""
    store = ResponseStore()
    s = ServerSession.for_http(now=T0, store=store, id_factory=sequential_ids())
    s.receive_http_body(json.dumps({"model": "m", "input": "hi", "stream": True}).encode())
    assert s.http_stream and s.http_error is None
    (t,) = s.ready_turns()
    run(s, t, [TextDelta("hello")])
    decoder = SSEDecoder()
    events = [e for chunk in s.frames_to_send() for e in decoder.feed(chunk)]
    assert events[-1].response["output"][0]["content"][0]["text"] == "hello"  # type: ignore[union-attr]
    final = s.final_response(t.response_id)
    assert final is not None and check_response(final)["output"][0]["content"][0]["text"] == "hello"

    s2 = ServerSession.for_http(now=T0, store=store, id_factory=lambda p: f"{p}_b")
    s2.receive_http_body(json.dumps({"model": "m", "input": "again", "previous_response_id": t.response_id}))
    (t2,) = s2.ready_turns()
    assert len(t2.history) == 2 and not s2.http_stream


def test_http_refusals_set_http_error() -> None:
    """HTTP: stream_id, bad JSON and unknown parents answer with a 400 JSON body, not SSE."""
    for body, code in [
        (b"{", "invalid_json"),
        (json.dumps({"model": "m", "input": "x", "stream_id": "a"}).encode(), "invalid_request"),
        (
            json.dumps({"model": "m", "input": "x", "previous_response_id": "resp_9"}).encode(),
            "previous_response_not_found",
        ),
    ]:
        s = ServerSession.for_http(now=T0)
        s.receive_http_body(body)
        s.ready_turns()
        assert s.http_error is not None
        status, payload = s.http_error
        assert status == 400 and json.loads(payload)["error"]["code"] == code
        assert s.frames_to_send() == []


def test_http_abort_streams_response_failed() -> None:
    """An engine crash mid-request in HTTP mode ends the SSE stream with response.failed."""
    s = ServerSession.for_http(now=T0)
    s.receive_http_body(json.dumps({"model": "m", "input": "x"}))
    (t,) = s.ready_turns()
    s.abort(t.response_id, "boom")
    *_, last, done = s.frames_to_send()
    assert last.startswith(b"event: response.failed\n") and done == b"data: [DONE]\n\n"


def test_queued_creates_are_bounded_per_connection() -> None:
    """Past `max_queued` waiting creates, another is refused with 429, and the queue drains normally."""
    s = make(max_in_flight=1, max_queued=2)
    for n in range(4):
        send(s, input=f"q{n}", stream_id=f"l{n}")
    turns = s.ready_turns()
    errors = [e for e in drain(s) if e["type"] == "error"]
    assert len(turns) == 1 and s.queued == 1  # two were accepted, two refused
    assert [e["error"]["code"] for e in errors] == ["too_many_queued_requests"] * 2 and errors[0][
        "status"
    ] == 429
    assert errors[0]["stream_id"] == "l2"
    run(s, turns[0], [TextDelta("ok")])
    assert len(s.ready_turns()) == 1 and s.queued == 0


def test_store_is_bounded_by_bytes_and_forgets_evicted_items() -> None:
    """The store evicts the oldest responses past its byte budget; their items stop resolving."""
    store = ResponseStore(max_bytes=2000)
    s = make(store=store)
    ids, msgs = [], []
    for n in range(6):
        send(s, input="x" * 300)
        (t,) = s.ready_turns()
        run(s, t, [TextDelta(f"answer {n} " + "y" * 200)])
        ids.append(t.response_id)
        msgs.append(drain(s)[-1]["response"]["output"][0]["id"])
    assert store.bytes <= 2000 and ids[0] not in store and ids[-1] in store
    assert store.item(msgs[0]) is None and store.item(msgs[-1]) is not None


def test_warm_up_hands_its_turn_to_the_engine_hook() -> None:
    """generate:false completes at once and its turn (generate=False) is offered for a prefill."""
    s = make()
    send(s, input=[USER], generate=False)
    assert s.ready_turns() == []
    (warm,) = s.warmups()
    assert warm.generate is False and list(warm.new_input) == [USER] and s.warmups() == []


def cancel(session: ServerSession, response_id: str) -> None:
    session.receive_frame(json.dumps({"type": "response.cancel", "response_id": response_id}))


def test_cancel_ends_the_response_with_its_partial_output_and_keeps_it_chainable() -> None:
    """response.cancel: `response.incomplete` (reason "cancelled", spec-valid) with the text so far; the
    engine is told to stop; the next create chains from it with only new input."""
    s = make(store=False)
    send(s, store=False, input=[USER])
    (turn,) = s.ready_turns()
    run(s, turn, [TextDelta("It is 18 "), TextDelta("°C")], finish=False)
    drain(s)
    cancel(s, turn.response_id)
    assert s.cancelled() == [turn.response_id] and s.cancelled() == []
    ev = drain(s)
    assert types(ev)[-1] == "response.incomplete"
    final = ev[-1]["response"]
    assert final["incomplete_details"] == {"reason": "cancelled"} and final["status"] == "incomplete"
    check_response(final)
    assert final["output"][0]["content"][0]["text"] == "It is 18 °C"
    assert s.in_flight == 0
    s.finish(turn.response_id)  # the engine's task ending late is a no-op
    send(s, store=False, input="and tomorrow?", previous_response_id=turn.response_id)
    (nxt,) = s.ready_turns()
    assert len(nxt.history) == 2 and nxt.history[1]["content"][0]["text"] == "It is 18 °C"
    assert len(nxt.new_input) == 1


def test_cancel_of_an_ended_or_unknown_response_is_ignored() -> None:
    """The terminal event already went out: no second one, and no `error` to fail the lane's next request."""
    s = make()
    send(s, input=[USER])
    (turn,) = s.ready_turns()
    run(s, turn, [TextDelta("done")])
    drain(s)
    cancel(s, turn.response_id)
    cancel(s, "resp_unknown")
    assert drain(s) == [] and s.cancelled() == []


def _delta_stream(s: ServerSession, turn: Turn, outputs: list[Any], drain_every: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for n, out in enumerate(outputs, 1):
        s.feed(turn.response_id, out)
        if n % drain_every == 0:
            events += drain(s)
    s.finish(turn.response_id, now=T0 + 1)
    return events + drain(s)


def test_coalesced_deltas_keep_the_text_order_and_sequence_numbers() -> None:
    """With `coalesce_deltas`, the deltas fed between two `frames_to_send` calls go out as one event
    per item: the same events otherwise, in the same order, the concatenated texts identical, every
    event valid (the spec's schema) and sequence numbers 0, 1, 2... without gaps."""
    outputs: list[Any] = [TextDelta(f"t{n} ") for n in range(10)]
    outputs += [
        ItemDone(),
        ReasoningDelta("why "),
        ReasoningDelta("so"),
        ToolCallStart("call_1", "get_weather"),
    ]
    outputs += [ToolCallArgsDelta('{"city":'), ToolCallArgsDelta('"Paris"}'), TextDelta("end")]
    plain_session, held_session = make(), make(coalesce_deltas=True)
    runs = []
    for s, every in ((plain_session, 1), (held_session, 4)):
        send(s, store=False, input=[USER], tools=[TOOL])
        (turn,) = s.ready_turns()
        runs.append(_delta_stream(s, turn, outputs, every))
    plain, held = runs
    for events in runs:
        assert [e["sequence_number"] for e in events] == list(range(len(events)))

    def squeeze(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for e in events:
            if e["type"].endswith(".delta") and out and out[-1][0] == e["type"]:
                out[-1] = (e["type"], out[-1][1] + e["delta"])
            else:
                out.append((e["type"], e.get("delta", "")))
        return out

    assert squeeze(held) == squeeze(plain)
    assert len(held) < len(plain)
    assert plain[-1]["response"]["output"] == held[-1]["response"]["output"]
    text_deltas = [e["delta"] for e in held if e["type"] == "response.output_text.delta"]
    assert text_deltas[:3] == ["t0 t1 t2 t3 ", "t4 t5 t6 t7 ", "t8 t9 "]


def test_without_coalescing_every_delta_is_an_event() -> None:
    """The default: one delta event per engine delta, however rarely frames are taken."""
    s = make()
    send(s, store=False, input=[USER])
    (turn,) = s.ready_turns()
    run(s, turn, [TextDelta("a"), TextDelta("b"), TextDelta("c")])
    deltas = [e["delta"] for e in drain(s) if e["type"] == "response.output_text.delta"]
    assert deltas == ["a", "b", "c"] and s.held_chars == 0


def test_held_deltas_go_out_before_any_other_event_of_the_response() -> None:
    """A held delta is emitted before a later event (a cancel's terminal event here), and
    `held_chars` counts what is held."""
    s = make(coalesce_deltas=True)
    send(s, store=False, input=[USER])
    (turn,) = s.ready_turns()
    s.feed(turn.response_id, TextDelta("abc"))
    s.feed(turn.response_id, TextDelta("de"))
    assert s.held_chars == 5
    s.abort(turn.response_id, "boom")
    assert s.held_chars == 0
    ev = drain(s)
    kinds = types(ev)
    assert kinds.index("response.output_text.delta") < kinds.index("response.output_text.done")
    assert [e["delta"] for e in ev if e["type"] == "response.output_text.delta"] == ["abcde"]
    assert [e["sequence_number"] for e in ev] == list(range(len(ev)))
