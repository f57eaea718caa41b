"""The official openai SDK (3.57.0), unmodified, against our server over WebSocket and HTTP."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai import AsyncOpenAI
from openai.types.responses import FunctionToolParam

from app.server.app import run_server
from app.server.engines.scripted import Script, ScriptedEngine

pytestmark = pytest.mark.asyncio

TOKEN = "sdk-token"
READ_FILE: FunctionToolParam = {
    "type": "function",
    "name": "read_file",
    "description": "Read a file of the project",
    "parameters": {
        "type": "object",
        "properties": {"path": {"type": "string"}},
        "required": ["path"],
        "additionalProperties": False,
    },
    "strict": True,
}


def client_for(port: int) -> AsyncOpenAI:
    """Use as `async with client_for(port) as client`: an unclosed client's httpx pool is closed by a task
    that its __del__ schedules on whatever loop runs later, which then waits on a dead connection."""
    return AsyncOpenAI(api_key=TOKEN, base_url=f"http://127.0.0.1:{port}/v1", max_retries=0)


async def next_terminal(conn: Any) -> tuple[Any, list[str]]:
    """Iterate SDK events until a terminal one; return it and the event types seen."""
    seen = []
    async for event in conn:
        seen.append(event.type)
        if event.type in ("response.completed", "response.failed", "response.incomplete", "error"):
            return event, seen
    raise AssertionError(f"connection ended after {seen}")


async def test_sdk_websocket_multi_turn_with_function_call() -> None:
    """connect() → forced tool call → function_call_output chained → text → another chained user turn."""
    async with (
        run_server(ScriptedEngine(rate_tps=0), token=TOKEN) as srv,
        client_for(srv.port) as client,
        client.responses.connect() as conn,
    ):
        await conn.response.create(
            model="scripted",
            input="Open the readme",
            tools=[READ_FILE],
            tool_choice={"type": "function", "name": "read_file"},
            parallel_tool_calls=False,
        )
        done, seen = await next_terminal(conn)
        assert done.type == "response.completed", done
        assert "response.function_call_arguments.delta" in seen
        (call,) = done.response.output
        assert call.type == "function_call" and call.name == "read_file"
        assert json.loads(call.arguments) == {"path": "README.md"}

        await conn.response.create(
            model="scripted",
            previous_response_id=done.response.id,
            input=[
                {"type": "function_call_output", "call_id": call.call_id, "output": "# Slipstream\nhello"}
            ],
            tools=[READ_FILE],
            tool_choice="none",
        )
        answer, _ = await next_terminal(conn)
        assert answer.type == "response.completed", answer
        assert answer.response.previous_response_id == done.response.id
        assert "`read_file` returned 18 characters in 2 lines" in answer.response.output_text

        await conn.response.create(
            model="scripted", previous_response_id=answer.response.id, input="And what did you see?"
        )
        third, _ = await next_terminal(conn)
        assert 'You asked: "And what did you see?"' in third.response.output_text
        assert "in 3 message(s)" in third.response.output_text  # two user messages + one answer


async def test_sdk_websocket_error_event_is_typed() -> None:
    """An unknown previous_response_id arrives as a typed SDK error event."""
    async with (
        run_server(ScriptedEngine(rate_tps=0), token=TOKEN) as srv,
        client_for(srv.port) as client,
        client.responses.connect() as conn,
    ):
        await conn.response.create(model="scripted", input="x", previous_response_id="resp_nope")
        event, _ = await next_terminal(conn)
        assert event.type == "error"
        assert event.error.code == "previous_response_not_found"


async def test_sdk_http_stream_and_plain_chained() -> None:
    """responses.create(stream=True) yields typed events; stream=False chains via previous_response_id."""
    async with run_server(ScriptedEngine(rate_tps=0), token=TOKEN) as srv, client_for(srv.port) as client:
        stream = await client.responses.create(
            model="scripted",
            input="call it",
            tools=[READ_FILE],
            tool_choice="required",
            stream=True,
        )
        types = [event.type async for event in stream]
        assert types[0] == "response.created" and types[-1] == "response.completed"
        assert "response.function_call_arguments.done" in types

        first = await client.responses.create(model="scripted", input="Hello over HTTP")
        assert first.status == "completed" and 'You asked: "Hello over HTTP"' in first.output_text
        second = await client.responses.create(
            model="scripted", input="Second question", previous_response_id=first.id
        )
        assert second.previous_response_id == first.id
        assert "in 3 message(s)" in second.output_text  # question, answer, question


async def test_sdk_responses_stream_helper() -> None:
    """client.responses.stream() assembles the final response from our SSE events."""
    async with run_server(ScriptedEngine(rate_tps=0), token=TOKEN) as srv, client_for(srv.port) as client:
        async with client.responses.stream(model="scripted", input="/long 200") as stream:
            deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
            final = await stream.get_final_response()
        assert "".join(deltas) == final.output_text
        assert len(final.output_text) >= 800


async def test_sdk_parses_scripted_reasoning_and_tool_call() -> None:
    """A scripted turn with reasoning, text and a tool call parses into typed SDK output items."""
    script: Script = [
        [
            {"reasoning": "Look at the file first."},
            {"text": "Reading it."},
            {"tool_call": {"name": "read_file", "arguments": {"path": "a.py"}}},
        ]
    ]
    async with (
        run_server(ScriptedEngine(rate_tps=0, script=script), token=TOKEN) as srv,
        client_for(srv.port) as client,
        client.responses.connect() as conn,
    ):
        await conn.response.create(model="scripted", input="go", tools=[READ_FILE])
        done, seen = await next_terminal(conn)
    # The Open Responses name for reasoning deltas; the SDK passes the event type through untouched.
    assert "response.reasoning.delta" in seen
    kinds = [item.type for item in done.response.output]
    assert kinds == ["reasoning", "message", "function_call"]
    assert done.response.output_text == "Reading it."
    assert json.loads(done.response.output[2].arguments) == {"path": "a.py"}
