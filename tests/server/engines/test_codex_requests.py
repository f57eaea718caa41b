"""Codex CLI's own WebSocket requests, recorded from Codex 0.171.0, through the Chat Completions bridge.

`tests/server/fixtures/codex_0.171.0_apply_patch.jsonl` holds the three `response.create` frames of
one `codex exec` run (ids, paths and times replaced): the `generate: false` warm-up, the turn
(`previous_response_id` of the warm-up, `store: false`, `include`, `reasoning`, `prompt_cache_key`,
`client_metadata`, a custom `apply_patch` tool beside function tools), and the answer to the tool
call (`custom_tool_call_output`). The upstream is a fake replaying llama-cpp-python's real answers.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from app.server.app import run_server
from app.server.engines.base import ItemDone, ToolCallArgsDelta, ToolCallStart
from app.server.engines.chat_chunks import ChunkTranslator, UpstreamError
from app.server.engines.chat_completions import ChatCompletionsEngine, forced_tool_choice
from app.server.engines.chat_render import HistoryRenderer, tool_choice_to_chat, tools_to_chat
from tests.server.engines.test_chat_completions import answer, replay, turn, upstream, user

RECORDED = Path(__file__).parents[1] / "fixtures" / "codex_0.171.0_apply_patch.jsonl"
PATCH = "*** Begin Patch\n*** Add File: hello.txt\n+hi\n*** End Patch\n"
TERMINAL = ("response.completed", "response.failed", "response.incomplete", "error")
LLAMA_CPP_PYTHON = {"object": "list", "data": [{"id": "tiny", "owned_by": "me"}]}
APPLY_PATCH = {
    "type": "custom",
    "name": "apply_patch",
    "description": "Edit files.",
    "format": {"type": "grammar", "syntax": "lark", "definition": "start: begin_patch hunk+ end_patch"},
}


def recorded() -> list[dict[str, Any]]:
    return [json.loads(line) for line in RECORDED.read_text().splitlines()]


async def send(ws: aiohttp.ClientWebSocketResponse, frame: dict[str, Any]) -> list[dict[str, Any]]:
    await ws.send_str(json.dumps(frame))
    events = []
    while True:
        event = json.loads((await asyncio.wait_for(ws.receive(), 10)).data)
        events.append(event)
        if event["type"] in TERMINAL:
            return events


@pytest.mark.asyncio
async def test_codex_recorded_turns_with_apply_patch_through_the_bridge() -> None:
    """Warm-up, a forced apply_patch call that comes back as a custom_tool_call, and Codex's
    custom_tool_call_output answered: what goes upstream is plain Chat Completions."""
    warm, ask, answer_call = recorded()
    prefill = answer(200, json.dumps({"choices": [{"message": {"content": "x"}, "finish_reason": "length"}]}))
    async with upstream(
        models=LLAMA_CPP_PYTHON,
        queue=[prefill, replay("llama_cpp_python_apply_patch.sse"), replay("llama_server_text.sse")],
    ) as up:
        engine = ChatCompletionsEngine(up.url, force_tool="apply_patch")
        async with (
            run_server(engine, token="t") as srv,
            aiohttp.ClientSession() as http,
            http.ws_connect(srv.url, headers={"Authorization": "Bearer t"}) as ws,
        ):
            warmed = await send(ws, warm)
            assert warmed[-1]["type"] == "response.completed" and warmed[-1]["response"]["output"] == []
            first = await send(ws, {**ask, "previous_response_id": warmed[-1]["response"]["id"]})
            assert first[-1]["type"] == "response.completed", first[-1]
            (item,) = first[-1]["response"]["output"]
            assert item["type"] == "custom_tool_call" and item["name"] == "apply_patch"
            assert item["input"] == PATCH  # the raw patch Codex applies, not the JSON wrapping it
            types = [e["type"] for e in first]
            assert "response.custom_tool_call_input.done" in types
            assert "response.function_call_arguments.delta" not in types
            answer_call["input"][0]["call_id"] = item["call_id"]
            second = await send(ws, {**answer_call, "previous_response_id": first[-1]["response"]["id"]})
            assert second[-1]["type"] == "response.completed", second[-1]
            assert srv.stats.connections == 1 and srv.stats.responses == 2
    prefill_body, body, after = up.requests
    assert prefill_body["max_tokens"] == 1 and "tools" in prefill_body  # the warm-up became a prefill
    for sent in (prefill_body, body, after):
        for codex_only in ("client_metadata", "include", "reasoning", "prompt_cache_key", "store", "input"):
            assert codex_only not in sent
    names = [t["function"]["name"] for t in body["tools"]]
    assert names == ["exec_command", "write_stdin", "request_user_input", "apply_patch", "view_image"]
    patch_tool = body["tools"][3]["function"]
    assert patch_tool["parameters"]["required"] == ["input"]
    assert "*** Begin Patch" in patch_tool["parameters"]["properties"]["input"]["description"]  # its grammar
    assert body["tool_choice"] == {"type": "function", "function": {"name": "apply_patch"}}
    assert [m["role"] for m in body["messages"]] == [
        "system",
        "system",
        "user",
        "user",
    ]  # developer -> system
    assert body["messages"][-1]["content"] == "add hello.txt"
    assert after["tool_choice"] == "auto"  # answering a tool result: the client's choice again
    call_msg, tool_msg = after["messages"][-2:]
    function = call_msg["tool_calls"][0]["function"]
    assert function["name"] == "apply_patch" and json.loads(function["arguments"]) == {"input": PATCH}
    assert tool_msg["role"] == "tool" and tool_msg["tool_call_id"] == item["call_id"]
    assert "Success. Updated the following files:\nA hello.txt" in tool_msg["content"]


def test_custom_tools_become_functions_taking_their_text_as_input() -> None:
    (fn,) = tools_to_chat([APPLY_PATCH, {"type": "web_search", "external_web_access": False}])
    assert fn["function"]["name"] == "apply_patch" and fn["function"]["description"] == "Edit files."
    params = fn["function"]["parameters"]
    assert params["required"] == ["input"] and params["additionalProperties"] is False
    assert "lark grammar:\nstart: begin_patch" in params["properties"]["input"]["description"]
    named = tool_choice_to_chat({"type": "custom", "name": "apply_patch"})
    assert named == {"type": "function", "function": {"name": "apply_patch"}}


def test_custom_tool_calls_in_history_render_as_tool_calls() -> None:
    r = HistoryRenderer()
    r.extend(
        [
            user("add it"),
            {"type": "custom_tool_call", "call_id": "c1", "name": "apply_patch", "input": PATCH},
            {"type": "custom_tool_call_output", "call_id": "c1", "output": "Success."},
        ]
    )
    assert json.loads(r.messages[1]["tool_calls"][0]["function"]["arguments"]) == {"input": PATCH}
    assert r.messages[2] == {"role": "tool", "tool_call_id": "c1", "content": "Success."}


def test_translator_turns_a_freeform_call_into_its_raw_input() -> None:
    tr = ChunkTranslator("resp_1", frozenset({"apply_patch"}))
    pieces = ['{"input":"*** Begin', ' Patch\\n"}']
    outs = []
    for piece in pieces:
        frag = {"index": 0, "id": "c1", "function": {"name": "apply_patch", "arguments": piece}}
        outs += tr.feed({"choices": [{"index": 0, "delta": {"tool_calls": [frag]}}]})
    assert outs == []  # held until the JSON is whole
    tr.feed({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    assert tr.finish() == [
        ToolCallStart(call_id="c1", name="apply_patch", custom=True),
        ToolCallArgsDelta("*** Begin Patch\n"),
        ItemDone(),
    ]
    bad = ChunkTranslator("resp_2", frozenset({"apply_patch"}))
    frag = {"index": 0, "function": {"name": "apply_patch", "arguments": '{"patch": "x"}'}}
    bad.feed({"choices": [{"index": 0, "delta": {"tool_calls": [frag]}}]})
    with pytest.raises(UpstreamError, match='string "input"'):
        bad.finish()


def test_forced_tool_applies_to_the_first_step_after_user_input_only() -> None:
    chat = tools_to_chat([APPLY_PATCH])
    forced = {"type": "function", "function": {"name": "apply_patch"}}
    assert forced_tool_choice(turn(), chat, "apply_patch") == forced
    after_tool = turn(new=[{"type": "custom_tool_call_output", "call_id": "c1", "output": "ok"}])
    assert forced_tool_choice(after_tool, chat, "apply_patch") == "auto"
    assert forced_tool_choice(turn(), chat, "exec_command") == "auto"  # not among the tools: no forcing
    assert forced_tool_choice(turn(tool_choice="none"), chat, None) == "none"


@pytest.mark.asyncio
async def test_cli_passes_force_tool_to_the_chat_engine() -> None:
    from app.server.cli import build_engine, build_parser

    argv = ["--engine", "chat", "--upstream", "http://127.0.0.1:9", "--force-tool", "exec_command"]
    engine = build_engine(build_parser().parse_args(argv))
    try:
        assert isinstance(engine, ChatCompletionsEngine) and engine.force_tool == "exec_command"
    finally:
        await engine.aclose()
