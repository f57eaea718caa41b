"""Every object and event the server emits, over WebSocket, SSE and HTTP JSON, checked strictly against
the Open Responses spec with a third-party schema (`openresponses-types`, see tests/server/spec.py):
text, reasoning, tool calls, chained turns, warm-ups, named lanes, errors, failed and incomplete
responses, compaction, item references; plus the continuation rules the spec adds."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any, cast

import aiohttp
import pytest

from app.server.app import RunningServer, run_server
from app.server.engines.base import EngineOutput, Failure, Incomplete, TextDelta, Turn
from app.server.engines.chat_completions import ChatCompletionsEngine
from app.server.engines.scripted import ScriptedConnection, ScriptedEngine
from tests.server.engines.test_chat_completions import replay, upstream
from tests.server.spec import SpecError, check_compaction, check_error_body, check_event, check_response

TOKEN = "spec-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TERMINAL = {"response.completed", "response.failed", "response.incomplete", "error"}
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


class RecordingEngine(ScriptedEngine):
    """The scripted engine, recording every turn it is asked to run (what an engine really sees)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(rate_tps=0, **kw)
        self.turns: list[Turn] = []

    def connect(self) -> ScriptedConnection:
        engine = self

        class Conn(ScriptedConnection):
            async def run(self, turn: Turn) -> AsyncIterator[EngineOutput]:
                engine.turns.append(turn)
                async for out in super().run(turn):
                    yield out

        return Conn(self)


class EndingEngine(ScriptedEngine):
    """Answers "fail" with a Failure and "cut" with an Incomplete, after some text."""

    def connect(self) -> ScriptedConnection:
        class Conn(ScriptedConnection):
            async def run(self, turn: Turn) -> AsyncIterator[EngineOutput]:
                yield TextDelta("partial ")
                said = json.dumps(list(turn.new_input))
                yield (
                    Failure("upstream_error", "the model fell over")
                    if "fail" in said
                    else Incomplete("max_output_tokens")
                )

        return Conn(self)


@contextlib.asynccontextmanager
async def serving(engine: Any = None) -> AsyncIterator[tuple[RunningServer, aiohttp.ClientSession]]:
    async with (
        run_server(engine or RecordingEngine(), token=TOKEN) as srv,
        aiohttp.ClientSession() as http,
    ):
        yield srv, http


async def ws_turn(
    ws: aiohttp.ClientWebSocketResponse, lane: str | None = None, **fields: Any
) -> list[dict[str, Any]]:
    """Send one response.create; read to its terminal event; every event checked against the spec."""
    await ws.send_str(json.dumps({"type": "response.create", "model": "scripted", **fields}))
    events: list[dict[str, Any]] = []
    while True:
        msg = await ws.receive(timeout=10)
        assert msg.type is aiohttp.WSMsgType.TEXT, msg
        data = json.loads(msg.data)
        assert data.get("stream_id") == lane  # default-lane events carry none (the spec has no lanes)
        check_event(data, "ws", lane=lane)
        if "response" in data:
            check_response(data["response"])
        events.append(data)
        if data["type"] in TERMINAL:
            return events


async def sse_turn(srv: RunningServer, http: aiohttp.ClientSession, **body: Any) -> list[dict[str, Any]]:
    """POST stream:true; every SSE event checked; the stream must end with `data: [DONE]`."""
    async with http.post(
        srv.http_url, json={"model": "scripted", "stream": True, **body}, headers=AUTH
    ) as resp:
        assert resp.status == 200, await resp.text()
        raw = (await resp.read()).decode()
    blocks = [b for b in raw.split("\n\n") if b]
    assert blocks[-1] == "data: [DONE]", blocks[-1]
    events = []
    for block in blocks[:-1]:
        event_line, data_line = block.split("\n")
        data = check_event(data_line.removeprefix("data: "), "sse")
        assert event_line == f"event: {data['type']}"
        if "response" in data:
            check_response(data["response"])
        events.append(data)
    assert events[-1]["type"] in TERMINAL
    return events


async def post(
    srv: RunningServer, http: aiohttp.ClientSession, path: str = "", **body: Any
) -> tuple[int, Any]:
    async with http.post(srv.http_url + path, json=body, headers=AUTH) as resp:
        return resp.status, await resp.json()


def final(events: list[dict[str, Any]]) -> dict[str, Any]:
    return cast(dict[str, Any], events[-1]["response"])


# --------------------------------------------------------------------------------------------------
# the validator itself


def test_the_validator_refuses_what_the_spec_does_not_allow() -> None:
    """Missing required fields, undeclared keys and unknown event types all fail: it can fail."""
    good = {
        "type": "response.output_text.delta",
        "sequence_number": 1,
        "item_id": "m",
        "output_index": 0,
        "content_index": 0,
        "delta": "x",
    }
    check_event(good, "sse")
    for bad in (
        {**good, "extra": 1},
        {k: v for k, v in good.items() if k != "item_id"},
        {**good, "type": "response.reasoning_text.delta"},
        {**good, "stream_id": "a"},
    ):
        with pytest.raises(SpecError):
            check_event(bad, "sse")
    with pytest.raises(SpecError):  # the usage key the official SDK adds is not the spec's
        check_event({"type": "error", "status": 400, "error": {"code": None, "message": "m"}}, "ws")


# --------------------------------------------------------------------------------------------------
# each transport


@pytest.mark.asyncio
async def test_websocket_events_match_the_spec() -> None:
    """WS: a tool call chosen under auto, its output chained, reasoning, a warm-up, a named lane, errors."""
    script = [[{"reasoning": "Think first."}, {"text": "Done."}]]
    async with serving(RecordingEngine()) as (srv, http), http.ws_connect(srv.url, headers=AUTH) as ws:
        first = await ws_turn(ws, input=[user("What's the weather in Paris?")], tools=[WEATHER], store=False)
        (call,) = final(first)["output"]
        assert call["type"] == "function_call" and call["name"] == "get_weather"
        second = await ws_turn(
            ws,
            previous_response_id=final(first)["id"],
            tools=[WEATHER],
            store=False,
            input=[{"type": "function_call_output", "call_id": call["call_id"], "output": "18 C, clear"}],
        )
        assert final(second)["status"] == "completed" and final(second)["output"][0]["type"] == "message"
        assert final(second)["tools"] == [{**WEATHER, "strict": None}]  # echoed in the spec's shape
        warm = await ws_turn(ws, input=[user("prepare")], generate=False)
        assert final(warm)["output"] == []
        lane = await ws_turn(ws, lane="side", stream_id="side", input="hi there")
        assert final(lane)["status"] == "completed"
        missing = await ws_turn(ws, previous_response_id="resp_nope", input="x")
        assert missing[-1]["error"]["code"] == "previous_response_not_found"
        bad_lane = await ws_turn(ws, stream_id="", input="x")
        assert bad_lane[-1]["error"]["code"] == "invalid_stream_id"
    async with (
        serving(RecordingEngine(script=script)) as (srv, http),
        http.ws_connect(srv.url, headers=AUTH) as ws,
    ):
        reasoning = await ws_turn(ws, input="go")
        assert [i["type"] for i in final(reasoning)["output"]] == ["reasoning", "message"]
        assert "response.reasoning.delta" in {e["type"] for e in reasoning}


@pytest.mark.asyncio
async def test_sse_events_match_the_spec_and_chain() -> None:
    """SSE: a tool call, its output chained through the store, a warm-up; [DONE] ends each stream."""
    async with serving() as (srv, http):
        first = await sse_turn(
            srv,
            http,
            input="What's the weather in Paris?",
            tools=[WEATHER],
            temperature=0.2,
            reasoning={"effort": "low"},
            metadata={"k": "v"},
        )
        resp = final(first)
        assert resp["temperature"] == 0.2 and resp["reasoning"] == {"effort": "low", "summary": None}
        (call,) = resp["output"]
        second = await sse_turn(
            srv,
            http,
            previous_response_id=resp["id"],
            tools=[WEATHER],
            input=[{"type": "function_call_output", "call_id": call["call_id"], "output": "18 C"}],
        )
        assert final(second)["previous_response_id"] == resp["id"]
        warm = await sse_turn(srv, http, input="warm", generate=False)
        assert final(warm)["status"] == "completed"


@pytest.mark.asyncio
async def test_http_json_objects_and_errors_match_the_spec() -> None:
    """stream:false answers a spec response object; refusals answer spec error objects (string code)."""
    async with serving() as (srv, http):
        status, body = await post(srv, http, model="scripted", input="hello")
        assert status == 200
        created = check_response(body)
        assert (
            created["completed_at"] is not None and created["top_p"] == 1.0 and created["background"] is False
        )
        for bad in (
            {"model": "m", "input": 5},
            {"model": "m", "input": "x", "previous_response_id": "resp_no"},
            {"model": "m", "input": "x", "stream_id": "a"},
            {"model": "m", "background": True},
        ):
            status, body = await post(srv, http, **bad)
            assert status == 400, body
            check_error_body(body)
        async with http.post(srv.http_url, data=b"{oops", headers=AUTH) as resp:
            assert resp.status == 400
            check_error_body(await resp.json())
        async with http.post(srv.http_url, json={"model": "m"}) as resp:
            assert resp.status == 401
            check_error_body(await resp.json())


@pytest.mark.asyncio
async def test_failed_and_incomplete_responses_match_the_spec() -> None:
    """An engine failure ends as a spec `response.failed`, a cut turn as `response.incomplete`."""
    async with serving(EndingEngine(rate_tps=0)) as (srv, http):
        failed = await sse_turn(srv, http, input="please fail")
        assert failed[-1]["type"] == "response.failed" and isinstance(final(failed)["error"]["code"], str)
        cut = await sse_turn(srv, http, input="please cut")
        assert final(cut)["incomplete_details"] == {"reason": "max_output_tokens"}
        async with http.ws_connect(srv.url, headers=AUTH) as ws:
            assert (await ws_turn(ws, input="fail"))[-1]["type"] == "response.failed"
            assert (await ws_turn(ws, input="cut"))[-1]["type"] == "response.incomplete"


# --------------------------------------------------------------------------------------------------
# continuation rules


@pytest.mark.asyncio
async def test_unknown_call_id_is_refused_and_the_parent_evicted() -> None:
    """A function_call_output for a call the parent never issued: 400 (string code) on HTTP; on WS an
    error and the parent leaves the connection cache, so continuing from it again misses."""
    out = {"type": "function_call_output", "call_id": "call_never", "output": "x"}
    async with serving() as (srv, http):
        status, body = await post(srv, http, model="scripted", input="hi")
        status, err = await post(srv, http, model="scripted", previous_response_id=body["id"], input=[out])
        assert status == 400 and check_error_body(err)["error"]["code"] == "function_call_output_not_found"
        status, err = await post(srv, http, model="scripted", input=[out])  # no parent, no call in the input
        assert status == 400
        async with http.ws_connect(srv.url, headers=AUTH) as ws:
            first = await ws_turn(ws, input="hi", store=False)
            refused = await ws_turn(ws, previous_response_id=final(first)["id"], input=[out], store=False)
            assert refused[-1]["type"] == "error" and refused[-1]["status"] == 400
            assert refused[-1]["error"]["code"] == "function_call_output_not_found"
            again = await ws_turn(ws, previous_response_id=final(first)["id"], input="next", store=False)
            assert again[-1]["error"]["code"] == "previous_response_not_found"


@pytest.mark.asyncio
async def test_item_references_resolve_for_the_engine_and_unknown_ones_are_refused() -> None:
    """`item_reference` inputs become the stored items the engine sees (HTTP, and WS with store=false
    on the same connection); an unknown id is a 400 with words."""
    engine = RecordingEngine()
    async with serving(engine) as (srv, http):
        _, first = await post(srv, http, model="scripted", input="hi")
        msg = first["output"][0]
        status, second = await post(
            srv,
            http,
            model="scripted",
            input=[user("hi"), {"type": "item_reference", "id": msg["id"]}, user("and?")],
        )
        assert status == 200, second
        assert list(engine.turns[-1].new_input)[1] == msg
        status, err = await post(
            srv, http, model="scripted", input=[{"type": "item_reference", "id": "msg_nope"}]
        )
        assert status == 400 and check_error_body(err)["error"]["code"] == "item_not_found"
        assert "msg_nope" in err["error"]["message"]
        async with http.ws_connect(srv.url, headers=AUTH) as ws:
            one = await ws_turn(ws, input="hi", store=False)
            ref = {"type": "item_reference", "id": final(one)["output"][0]["id"]}
            await ws_turn(ws, input=[user("hi"), ref, user("more")], store=False)
            assert list(engine.turns[-1].new_input)[1] == final(one)["output"][0]


@pytest.mark.asyncio
async def test_compaction_endpoint_and_continuing_from_a_compaction_item() -> None:
    """/v1/responses/compact answers a spec CompactResource; its compaction item sent back as input
    (over HTTP, and as a fresh WS chain) gives the engine the whole conversation again."""
    engine = RecordingEngine()
    async with serving(engine) as (srv, http):
        status, err = await post(srv, http, "/compact", input="x")
        assert status == 400 and check_error_body(err)["error"]["param"] == "model"
        _, first = await post(srv, http, model="scripted", input=[user("remember the word kiwi")])
        status, compacted = await post(
            srv, http, "/compact", model="scripted", previous_response_id=first["id"]
        )
        assert status == 200, compacted
        check_compaction(compacted)
        (item,) = compacted["output"]
        assert item["type"] == "compaction" and compacted["object"] == "response.compaction"
        chain = [user("remember the word kiwi"), first["output"][0]]
        status, _ = await post(srv, http, model="scripted", input=[item, user("which word?")])
        assert status == 200 and list(engine.turns[-1].new_input) == [*chain, user("which word?")]
        async with http.ws_connect(srv.url, headers=AUTH) as ws:
            await ws_turn(ws, input=[item, user("again?")])
            assert list(engine.turns[-1].new_input) == [*chain, user("again?")]
        status, err = await post(
            srv, http, model="scripted", input=[{"type": "compaction", "encrypted_content": "forged"}]
        )
        assert status == 400 and check_error_body(err)["error"]["code"] == "invalid_compaction"


@pytest.mark.asyncio
async def test_bridge_conversation_mixing_references_compaction_and_calls_reaches_the_upstream() -> None:
    """Through the Chat Completions bridge: an item_reference, a function call and its output, then a
    compaction carried into a new request; the recorded upstream request holds every turn."""
    async with upstream() as up:
        up.queue = [
            replay("llama_server_text.sse"),
            replay("llama_server_tool_calls.sse"),
            replay("llama_server_text.sse"),
            replay("llama_server_text.sse"),
        ]
        async with serving(ChatCompletionsEngine([up.url])) as (srv, http):
            _, a = await post(srv, http, model="m.gguf", input="hi")
            answer_a = a["output"][0]
            _, b = await post(
                srv,
                http,
                model="m.gguf",
                tools=[WEATHER],
                input=[user("hi"), {"type": "item_reference", "id": answer_a["id"]}, user("weather?")],
            )
            calls = [i for i in b["output"] if i["type"] == "function_call"]
            assert calls, b
            outputs = [
                {"type": "function_call_output", "call_id": c["call_id"], "output": f"out {n}"}
                for n, c in enumerate(calls)
            ]
            _, c = await post(
                srv, http, model="m.gguf", previous_response_id=b["id"], tools=[WEATHER], input=outputs
            )
            assert c["status"] == "completed", c
            _, compacted = await post(srv, http, "/compact", model="m.gguf", previous_response_id=c["id"])
            check_compaction(compacted)
            _, d = await post(srv, http, model="m.gguf", input=[*compacted["output"], user("thanks")])
            assert d["status"] == "completed", d
        sent = up.requests[-1]["messages"]
    text_a = answer_a["content"][0]["text"]
    roles = [m["role"] for m in sent]
    assert sent[0] == {"role": "user", "content": "hi"} and sent[1] == {
        "role": "assistant",
        "content": text_a,
    }
    assert sent[2] == {"role": "user", "content": "weather?"}
    assert [t["id"] for t in sent[3]["tool_calls"]] == [c["call_id"] for c in calls]
    assert [m["content"] for m in sent if m["role"] == "tool"] == [o["output"] for o in outputs]
    assert roles[-2:] == ["assistant", "user"] and sent[-1]["content"] == "thanks"
    assert sent[-2]["content"] == c["output"][0]["content"][0]["text"]
