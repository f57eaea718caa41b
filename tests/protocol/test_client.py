"""ClientSession back to back with ServerSession in memory: chaining, assembly, recovery."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from app.protocol import events as ev
from app.protocol.client import ClientSession, Completed, Fail, RebuildNeeded, Reconnect, Resend
from app.protocol.codec import SSEDecoder
from app.protocol.errors import LocalProtocolError, RemoteProtocolError
from app.protocol.ids import sequential_ids
from app.protocol.server import ResponseStore, ServerSession
from app.protocol.turns import TextDelta, ToolCallArgsDelta, ToolCallStart, Turn

T0 = 1767000000.0
SETTINGS: dict[str, Any] = {
    "model": "local-model",
    "store": False,
    "tools": [{"type": "function", "name": "get_weather"}],
}
Script = Callable[[Turn], list[Any]]


def as_frame(created: bytes | RebuildNeeded) -> bytes:
    """`create()` gives a frame unless the session waits for rebuilds (not in these tests)."""
    assert isinstance(created, bytes), created
    return created


def echo(turn: Turn) -> list[Any]:
    """Fake engine: reports how many history items it saw."""
    return [TextDelta(f"seen {len(turn.history)} + {len(turn.new_input)}")]


class Pair:
    """A client and a server joined by an in-memory 'socket'; the engine is a script."""

    def __init__(self, script: Script = echo, **server_kw: Any) -> None:
        self.client = ClientSession()
        self.server = ServerSession(now=T0, id_factory=sequential_ids(), **server_kw)
        self.script = script
        self.sent: list[dict[str, Any]] = []
        self.hold: list[Turn] = []  # turns started but not run (to test disconnects)

    def send(self, frame: bytes | RebuildNeeded, *, run: bool = True) -> None:
        assert isinstance(frame, bytes), frame
        self.sent.append(json.loads(frame))
        self.server.receive_frame(frame)
        self.pump(run=run)

    def pump(self, *, run: bool = True) -> None:
        turns = self.server.ready_turns()
        while turns:
            for turn in turns:
                if not run:
                    self.hold.append(turn)
                    continue
                for out in self.script(turn):
                    self.server.feed(turn.response_id, out)
                self.server.finish(turn.response_id)
            self.deliver()
            turns = self.server.ready_turns() if run else []
        self.deliver()

    def deliver(self) -> None:
        for frame in self.server.frames_to_send():
            self.client.receive_frame(frame)


def test_first_turn_full_then_incremental() -> None:
    """Turn 1 sends full input; turn 2 sends only the new item with previous_response_id."""
    p = Pair()
    user = {"type": "message", "role": "user", "content": "hi"}
    p.send(p.client.create([user], **SETTINGS))
    (done,) = p.client.outcomes()
    assert isinstance(done, Completed) and done.output[0]["content"][0]["text"] == "seen 0 + 1"
    assert "previous_response_id" not in p.sent[0]
    second = {"type": "message", "role": "user", "content": "again"}
    p.send(p.client.create([second], **SETTINGS))
    assert p.sent[1]["previous_response_id"] == done.response_id and p.sent[1]["input"] == [second]
    (done2,) = p.client.outcomes()
    assert isinstance(done2, Completed) and done2.output[0]["content"][0]["text"] == "seen 2 + 1"
    assert len(p.client.transcript()) == 4 and p.client.head() == done2.response_id


def test_changed_settings_send_full_input() -> None:
    """Any setting change (here: tools) breaks incrementality: full transcript, no parent."""
    p = Pair()
    p.send(p.client.create([{"role": "user", "content": "a"}], **SETTINGS))
    p.send(p.client.create([{"role": "user", "content": "b"}], **{**SETTINGS, "tools": []}))
    assert "previous_response_id" not in p.sent[1] and len(p.sent[1]["input"]) == 3
    assert p.client.outcomes()[-1].output[0]["content"][0]["text"] == "seen 0 + 3"  # type: ignore[union-attr]


def test_warm_up_then_chained_turn() -> None:
    """generate:false warm-up completes with no output, and the next turn chains from it."""
    p = Pair()
    p.send(p.client.create([{"role": "user", "content": "project snapshot"}], generate=False, **SETTINGS))
    (warm,) = p.client.outcomes()
    assert isinstance(warm, Completed) and warm.output == [] and p.sent[0]["generate"] is False
    p.send(p.client.create([{"role": "user", "content": "go"}], **SETTINGS))
    assert p.sent[1]["previous_response_id"] == warm.response_id
    assert p.client.outcomes()[0].output[0]["content"][0]["text"] == "seen 1 + 1"  # type: ignore[union-attr]


def test_function_call_assembled_and_continued() -> None:
    """A streamed function call lands in the transcript; its output continues the chain."""

    def script(turn: Turn) -> list[Any]:
        if turn.new_input[0].get("type") == "function_call_output":
            return [TextDelta("18 °C")]
        return [
            ToolCallStart("call_1", "get_weather"),
            ToolCallArgsDelta('{"city":'),
            ToolCallArgsDelta('"Paris"}'),
        ]

    p = Pair(script)
    p.send(p.client.create([{"role": "user", "content": "weather?"}], **SETTINGS))
    (done,) = p.client.outcomes()
    call = done.output[0]  # type: ignore[union-attr]
    assert (call["type"], call["call_id"], call["arguments"]) == (
        "function_call",
        "call_1",
        '{"city":"Paris"}',
    )
    p.send(
        p.client.create([{"type": "function_call_output", "call_id": "call_1", "output": "18"}], **SETTINGS)
    )
    assert p.sent[1]["input"] == [{"type": "function_call_output", "call_id": "call_1", "output": "18"}]
    assert isinstance(p.client.outcomes()[0], Completed)


def test_output_assembled_from_deltas_when_final_output_missing() -> None:
    """If a server's terminal response lacks output, items are rebuilt from the stream."""
    c = ClientSession()
    c.create([{"role": "user", "content": "x"}], model="m")
    frames = [
        {"type": "response.created", "sequence_number": 0, "response": {"id": "r1"}},
        {
            "type": "response.output_item.added",
            "sequence_number": 1,
            "output_index": 0,
            "item": {"type": "message", "id": "m1", "role": "assistant", "content": []},
        },
        {
            "type": "response.output_text.delta",
            "sequence_number": 2,
            "item_id": "m1",
            "output_index": 0,
            "delta": "a",
        },
        {
            "type": "response.output_text.delta",
            "sequence_number": 3,
            "item_id": "m1",
            "output_index": 0,
            "delta": "b",
        },
        {"type": "response.done", "sequence_number": 4, "response": {"id": "r1", "output": []}},
    ]
    for f in frames:
        c.receive_frame(json.dumps(f))
    (done,) = c.outcomes()
    assert isinstance(done, Completed) and done.output[0]["content"][0]["text"] == "ab"
    assert c.head() == "r1"
    assert [type(e).__name__ for e in c.events_received()][-1] == "ResponseCompleted"


def test_not_found_resends_full_input_once() -> None:
    """previous_response_not_found → one Resend with full input; a second miss → Fail."""
    p = Pair()
    p.send(p.client.create([{"role": "user", "content": "a"}], **SETTINGS))
    p.client.outcomes()
    p.server = ServerSession(now=T0, id_factory=lambda prefix: f"{prefix}_new")  # the server forgot
    p.send(p.client.create([{"role": "user", "content": "b"}], **SETTINGS))
    (resend,) = p.client.outcomes()
    assert isinstance(resend, Resend) and resend.lane is None
    full = json.loads(resend.frame)
    assert "previous_response_id" not in full and [i.get("content") for i in full["input"]][::2] == ["a", "b"]
    p.send(resend.frame)
    (done,) = p.client.outcomes()
    assert isinstance(done, Completed) and done.output[0]["content"][0]["text"] == "seen 0 + 3"

    c = ClientSession()
    c.create([{"role": "user", "content": "x"}], model="m")
    err = {
        "type": "error",
        "status": 400,
        "error": {"code": "previous_response_not_found", "message": "gone"},
    }
    c.receive_frame(json.dumps(err))
    c.receive_frame(json.dumps(err))
    first, second = c.outcomes()
    assert (
        isinstance(first, Resend)
        and isinstance(second, Fail)
        and second.code == "previous_response_not_found"
    )


def test_connection_limit_asks_for_reconnect_and_disconnect_resends() -> None:
    """Age limit → Reconnect; on_disconnect returns the in-flight turn as a full Resend."""
    p = Pair(max_age_s=60)
    p.send(p.client.create([{"role": "user", "content": "a"}], **SETTINGS))
    p.client.outcomes()
    p.send(p.client.create([{"role": "user", "content": "b"}], lane="side", **SETTINGS), run=False)
    p.server.check_age(T0 + 61)
    p.deliver()
    assert p.client.outcomes() == []  # waits: the side-lane turn is still running
    (turn,) = p.hold
    p.server.finish(turn.response_id)
    p.deliver()
    outcomes = p.client.outcomes()
    assert isinstance(outcomes[0], Completed) and isinstance(outcomes[1], Reconnect)
    assert p.server.close_requested == (1001, "connection age limit")

    c = ClientSession()
    c.create([{"role": "user", "content": "x"}], lane="l", model="m")
    (resend,) = c.on_disconnect()
    assert isinstance(resend, Resend)
    assert resend.lane == "l" and json.loads(resend.frame)["stream_id"] == "l"
    assert c.in_flight("l")


def test_disconnect_drops_heads_so_next_turn_is_full() -> None:
    """After a dropped socket the next create carries the whole transcript."""
    p = Pair()
    p.send(p.client.create([{"role": "user", "content": "a"}], **SETTINGS))
    assert p.client.on_disconnect() == []
    frame = json.loads(as_frame(p.client.create([{"role": "user", "content": "b"}], **SETTINGS)))
    assert "previous_response_id" not in frame and len(frame["input"]) == 3


def test_failed_response_is_fail_and_breaks_chain() -> None:
    """response.failed → Fail; the next create starts a fresh chain (the parent was evicted)."""
    c = ClientSession()
    c.create([{"role": "user", "content": "x"}], model="m")
    c.receive_frame(json.dumps({"type": "response.completed", "response": {"id": "r1", "output": []}}))
    c.create([{"role": "user", "content": "y"}], model="m")
    c.receive_frame(
        json.dumps(
            {
                "type": "response.failed",
                "response": {"id": "r2", "error": {"code": "server_error", "message": "x"}},
            }
        )
    )
    assert isinstance(c.outcomes()[-1], Fail)
    frame = json.loads(as_frame(c.create([{"role": "user", "content": "z"}], model="m")))
    assert "previous_response_id" not in frame


def test_lanes_are_independent_and_one_request_per_lane() -> None:
    """Two lanes chain separately; a second create on a busy lane is a local error."""
    p = Pair()
    p.send(p.client.create([{"role": "user", "content": "a"}], lane="x", **SETTINGS), run=False)
    with pytest.raises(LocalProtocolError):
        p.client.create([{"role": "user", "content": "b"}], lane="x", **SETTINGS)
    p.send(p.client.create([{"role": "user", "content": "c"}], **SETTINGS))
    assert p.client.head() is not None and p.client.head("x") is None


def test_unknown_events_and_junk() -> None:
    """Unknown server events reach events_received; junk frames raise clearly."""
    c = ClientSession()
    c.receive_frame('{"type":"response.mcp_call.in_progress","sequence_number":1}')
    (event,) = c.events_received()
    assert isinstance(event, ev.UnknownEvent)
    with pytest.raises(RemoteProtocolError):
        c.receive_frame("<html>")


def test_http_sse_back_to_back_split_bytes() -> None:
    """HTTP mode: the SSE body fed byte by byte into SSEDecoder drives the client to completion."""
    store = ResponseStore()
    server = ServerSession.for_http(now=T0, store=store, id_factory=sequential_ids())
    client = ClientSession()
    body = client.create([{"role": "user", "content": "hi"}], model="m")
    create = json.loads(as_frame(body))
    create.pop("type")
    server.receive_http_body(json.dumps({**create, "stream": True}))
    (turn,) = server.ready_turns()
    server.feed(turn.response_id, TextDelta("hé"))
    server.finish(turn.response_id)
    stream = b"".join(server.frames_to_send()) + b"data: [DONE]\n\n"
    decoder = SSEDecoder()
    for i in range(len(stream)):
        for event in decoder.feed(stream[i : i + 1]):
            client.receive_event(event)
    (done,) = client.outcomes()
    assert isinstance(done, Completed) and done.output[0]["content"][0]["text"] == "hé" and decoder.done


def test_fresh_chains_ask_for_a_rebuild_and_only_those() -> None:
    """With `rebuilds`, every full send (first turn, after a lost chain) is a RebuildNeeded whose
    rewritten transcript `rebuilt()` turns into the frame; incremental sends go out directly."""
    calls: list[int] = []

    def rebuild(need: RebuildNeeded) -> bytes:
        calls.append(len(need.transcript))
        kept = [
            i for i in need.transcript if not str(i.get("content")).startswith(("stale context", "snapshot"))
        ]
        return p.client.rebuilt(
            need, [{"type": "message", "role": "user", "content": f"snapshot {len(calls)}"}, *kept]
        )

    p = Pair()
    p.client = ClientSession(rebuilds=True)
    user = {"type": "message", "role": "user", "content": "hi"}
    need = p.client.create([user], **SETTINGS)
    assert isinstance(need, RebuildNeeded) and need.lane is None and need.transcript == (user,)
    assert p.client.in_flight()  # the turn waits for its frame
    p.send(rebuild(need))
    assert [i["content"] for i in p.sent[0]["input"]] == ["snapshot 1", "hi"]
    p.client.outcomes()
    stale = {"type": "message", "role": "user", "content": "stale context"}
    p.send(p.client.create([stale], **SETTINGS))  # incremental: no rebuild
    assert calls == [1] and p.sent[1]["input"] == [stale]
    p.client.outcomes()
    assert p.client.on_disconnect() == []  # no turn in flight: heads dropped
    need = p.client.create([{"type": "message", "role": "user", "content": "next"}], **SETTINGS)
    assert isinstance(need, RebuildNeeded)
    p.send(rebuild(need))
    contents = [i.get("content") for i in p.sent[2]["input"]]
    assert contents[0] == "snapshot 2" and "stale context" not in contents and "snapshot 1" not in contents
    assert contents[-1] == "next" and len(calls) == 2
    with pytest.raises(LocalProtocolError):
        p.client.rebuilt(need, [])  # already answered: a stale request is refused


def test_lost_chains_ask_for_a_rebuild_in_place_of_a_resend() -> None:
    """previous_response_not_found and a dropped socket give RebuildNeeded (not Resend) with `rebuilds`."""
    p = Pair()
    p.client = ClientSession(rebuilds=True)
    first = p.client.create([{"type": "message", "role": "user", "content": "a"}], **SETTINGS)
    assert isinstance(first, RebuildNeeded)
    p.send(p.client.rebuilt(first, first.transcript))
    p.client.outcomes()
    p.server = ServerSession(now=T0, id_factory=sequential_ids())  # the server forgot the chain
    p.send(p.client.create([{"type": "message", "role": "user", "content": "b"}], **SETTINGS))
    (miss,) = p.client.outcomes()
    assert isinstance(miss, RebuildNeeded) and [i["content"] for i in miss.transcript][-1] == "b"
    frame = json.loads(p.client.rebuilt(miss, miss.transcript))
    assert "previous_response_id" not in frame
    (dropped,) = p.client.on_disconnect()  # the socket went before the answer
    assert isinstance(dropped, RebuildNeeded) and p.client.in_flight()
    p.send(p.client.rebuilt(dropped, dropped.transcript))
    (done,) = p.client.outcomes()
    assert isinstance(done, Completed) and not p.client.in_flight()
    p.client.create([{"type": "message", "role": "user", "content": "c"}], **SETTINGS)
    p.client.abandon()  # Stop while the snapshot was being built
    with pytest.raises(LocalProtocolError):
        p.client.rebuilt(dropped, [])


def test_abandon_frees_the_lane_and_forces_a_fresh_chain() -> None:
    """After abandon() the lane accepts a new turn, sent in full with the abandoned input kept."""
    p = Pair()
    p.send(p.client.create([{"type": "message", "role": "user", "content": "one"}], **SETTINGS))
    p.client.outcomes()
    p.send(p.client.create([{"type": "message", "role": "user", "content": "two"}], **SETTINGS), run=False)
    assert p.client.in_flight()
    p.client.abandon()
    assert not p.client.in_flight() and p.client.head() is None
    frame = json.loads(
        as_frame(p.client.create([{"type": "message", "role": "user", "content": "three"}], **SETTINGS))
    )
    assert "previous_response_id" not in frame
    assert [i.get("content") for i in frame["input"] if i.get("role") == "user"] == ["one", "two", "three"]


def test_usage_counts_the_chain_prefix_as_cached() -> None:
    """A chained turn reports the history it did not resend as cached input tokens; a full send reports none."""
    p = Pair()
    big = {"type": "message", "role": "user", "content": "context " * 400}
    p.send(p.client.create([big], **SETTINGS))
    (first,) = p.client.outcomes()
    assert (
        isinstance(first, Completed) and first.response["usage"]["input_tokens_details"]["cached_tokens"] == 0
    )
    p.send(p.client.create([{"type": "message", "role": "user", "content": "next"}], **SETTINGS))
    (second,) = p.client.outcomes()
    assert isinstance(second, Completed)
    usage = second.response["usage"]
    assert 700 <= usage["input_tokens_details"]["cached_tokens"] < usage["input_tokens"]
