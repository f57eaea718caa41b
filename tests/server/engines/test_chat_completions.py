"""The Chat Completions bridge against a fake upstream that replays recorded SSE fixtures."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from app.protocol.codec import SSEParser
from app.server.app import run_server
from app.server.engines.base import (
    EngineOutput,
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
from app.server.engines.chat_chunks import ChunkTranslator, UpstreamError, body_words
from app.server.engines.chat_completions import (
    ChatCompletionsEngine,
    normalize_base_url,
    pick_replica,
    sse_payloads,
)
from app.server.engines.chat_render import HistoryRenderer, tool_choice_to_chat, tools_to_chat
from app.server.engines.profiles import PROFILES, cached_tokens, detect, get_profile

FIXTURES = Path(__file__).parent / "fixtures"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

READ_FILE = {
    "type": "function",
    "name": "read_file",
    "description": "Read a file",
    "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
}


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def assistant(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}


def call(call_id: str, name: str, args: str) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": f"fc_{call_id}",
        "call_id": call_id,
        "name": name,
        "arguments": args,
    }


def result(call_id: str, output: str) -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": call_id, "output": output}


def turn(rid: str = "resp_1", new: list[Any] | None = None, **kw: Any) -> Turn:
    kw.setdefault("model", "local-model")
    kw.setdefault("history", [])
    return Turn(response_id=rid, new_input=new if new is not None else [user("hi")], **kw)


# --------------------------------------------------------------------------------------------------
# the fake upstream


def replay(name: str, piece: int = 7) -> Handler:
    """Send a fixture file in `piece`-byte writes (boundaries fall mid-line and mid-character)."""
    raw = (FIXTURES / name).read_bytes()
    return stream_bytes(raw, piece)


def stream_bytes(raw: bytes, piece: int = 7, *, cut: bool = False) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for i in range(0, len(raw), piece):
            await resp.write(raw[i : i + piece])
        if cut:
            assert request.transport is not None
            request.transport.abort()
            return resp
        await resp.write_eof()
        return resp

    return handler


def answer(status: int, body: str, content_type: str = "application/json") -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, text=body, content_type=content_type)

    return handler


def hang() -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(30)
        return web.Response(text="late")

    return handler


@dataclass
class Upstream:
    """A Chat Completions server on 127.0.0.1:0 answering with queued handlers, recording requests."""

    models: Any = field(
        default_factory=lambda: {"object": "list", "data": [{"id": "m.gguf", "owned_by": "llamacpp"}]}
    )
    props: Any = field(default_factory=lambda: {"total_slots": 4})
    queue: list[Handler] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    url: str = ""

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(json.loads(await request.read()))
        self.headers.append(dict(request.headers))
        handler = self.queue.pop(0) if self.queue else replay("llama_server_text.sse")
        return await handler(request)

    async def _models(self, request: web.Request) -> web.StreamResponse:
        if self.models is None:
            return web.Response(status=404, text="not found")
        return web.json_response(self.models)

    async def _props(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.props)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/props", self._props)
        return app


@contextlib.asynccontextmanager
async def upstream(**kw: Any) -> AsyncIterator[Upstream]:
    up = Upstream(**kw)
    # handler_cancellation: a handler still waiting ("never answers") ends when its client goes away
    runner = web.AppRunner(up.app(), access_log=None, shutdown_timeout=0.1, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    up.url = f"http://127.0.0.1:{port}"
    try:
        yield up
    finally:
        await runner.cleanup()


async def collect(engine: ChatCompletionsEngine, t: Turn, conn: Any = None) -> list[EngineOutput]:
    conn = conn or engine.connect()
    return [out async for out in conn.run(t)]


def text(outs: list[EngineOutput]) -> str:
    return "".join(o.text for o in outs if isinstance(o, TextDelta))


def calls(outs: list[EngineOutput]) -> list[tuple[str, str, str]]:
    """(call_id, name, arguments) per tool call, in output order."""
    got: list[list[str]] = []
    for o in outs:
        if isinstance(o, ToolCallStart):
            got.append([o.call_id, o.name, ""])
        elif isinstance(o, ToolCallArgsDelta):
            got[-1][2] += o.delta
    return [(a, b, c) for a, b, c in got]


def failure(outs: list[EngineOutput]) -> Failure:
    assert isinstance(outs[-1], Failure), outs
    assert sum(isinstance(o, Failure) for o in outs) == 1
    return outs[-1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------------------------------
# pure parts


def test_normalize_base_url() -> None:
    """Bare host, /v1 and the full endpoint URL all become the /v1 base."""
    assert normalize_base_url("127.0.0.1:8080") == "http://127.0.0.1:8080/v1"
    assert normalize_base_url("http://h:1/") == "http://h:1/v1"
    assert normalize_base_url("https://h/v1/chat/completions") == "https://h/v1"
    assert normalize_base_url("http://h/openai/v1/") == "http://h/openai/v1"
    with pytest.raises(ValueError, match="http"):
        normalize_base_url("ftp://h")


def test_pick_replica_spreads_connections_evenly() -> None:
    """Consecutive connections go round the replicas: every replica used, none more than its share."""
    picks = [pick_replica(i, 3) for i in range(9)]
    assert sorted(picks.count(r) for r in range(3)) == [3, 3, 3]
    with pytest.raises(ValueError):
        pick_replica(0, 0)


def test_renderer_maps_items_to_chat_messages() -> None:
    """Messages, merged parallel calls after assistant text, tool results, developer -> system, images."""
    r = HistoryRenderer()
    r.extend(
        [
            {"type": "message", "role": "developer", "content": "be brief"},
            user("look"),
            assistant("Reading."),
            call("c1", "read_file", '{"path":"a"}'),
            call("c2", "read_file", '{"path":"b"}'),
            result("c1", "A"),
            {
                "type": "function_call_output",
                "call_id": "c2",
                "output": [{"type": "input_text", "text": "B"}],
            },
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "see"},
                    {"type": "input_image", "image_url": "data:image/png;base64,AA"},
                ],
            },
        ]
    )
    assert r.messages == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "look"},
        {
            "role": "assistant",
            "content": "Reading.",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "read_file", "arguments": '{"path":"a"}'},
                },
                {
                    "id": "c2",
                    "type": "function",
                    "function": {"name": "read_file", "arguments": '{"path":"b"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "A"},
        {"role": "tool", "tool_call_id": "c2", "content": "B"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "see"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}},
            ],
        },
    ]
    assert r.items == 9
    assert json.loads(r.messages_json(None)) == r.messages
    assert json.loads(r.messages_json(b'{"role":"system","content":"S"}'))[0]["content"] == "S"


def test_renderer_resume_shares_and_forks_copy() -> None:
    """Resuming shares the lists; a second continuation of the same snapshot gets its own copy."""
    base = HistoryRenderer()
    base.extend([user("q"), assistant("a")])
    snap = base.snapshot()
    one = HistoryRenderer.resume(snap)
    assert one.messages is base.messages
    one.extend([call("c1", "f", "{}")])  # merges into the assistant message: replaces, never mutates
    two = HistoryRenderer.resume(snap)
    assert two.messages is not base.messages
    two.extend([user("other")])
    assert two.messages == [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "a"},
        {"role": "user", "content": "other"},
    ]
    assert one.messages[1]["tool_calls"][0]["id"] == "c1"
    assert [json.loads(f) for f in two.fragments] == two.messages
    assert [json.loads(f) for f in one.fragments] == one.messages


def test_tools_and_tool_choice_to_chat() -> None:
    """Function tools are wrapped; hosted tools dropped; a forced function is re-shaped."""
    chat = tools_to_chat([READ_FILE, {"type": "web_search"}])
    assert chat == [
        {
            "type": "function",
            "function": {
                "name": "read_file",
                "description": "Read a file",
                "parameters": READ_FILE["parameters"],
            },
        }
    ]
    assert tool_choice_to_chat({"type": "function", "name": "f"}) == {
        "type": "function",
        "function": {"name": "f"},
    }
    assert tool_choice_to_chat("required") == "required"


def test_translator_orders_interleaved_fragments_and_holds_late_text() -> None:
    """The first named call streams live, the other is buffered; text after calls comes last."""
    t = ChunkTranslator("resp_x")
    outs = t.feed(
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{"}}]}}]}
    )
    assert outs == []  # no name yet: nothing to open
    outs += t.feed(
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"name": "f", "arguments": "}"}}]}}]}
    )
    outs += t.feed(
        {"choices": [{"delta": {"tool_calls": [{"index": 1, "function": {"name": "g"}}], "content": "x"}}]}
    )
    outs += t.feed({"choices": [{"delta": {}, "finish_reason": "tool_calls"}]})
    outs += t.finish()
    assert calls(outs)[0][1:] == ("f", "{}")
    assert calls(outs)[1][1:] == ("g", "{}")  # empty arguments become an empty object
    assert calls(outs)[0][0].startswith("call_")
    assert isinstance(outs[-2], TextDelta) and outs[-2].text == "x"


def test_translator_rejects_error_chunks_and_nameless_calls() -> None:
    """An error chunk and a call without a name are UpstreamErrors with the upstream's words."""
    with pytest.raises(UpstreamError, match="boom"):
        ChunkTranslator("r").feed({"error": {"message": "boom"}})
    t = ChunkTranslator("r")
    t.feed({"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}}]})
    with pytest.raises(UpstreamError, match="without a function name"):
        t.finish()


def test_profiles_detect_and_cached_tokens() -> None:
    """owned_by picks the profile; cached tokens come from usage details or llama-server timings."""
    assert detect({"data": [{"id": "x", "owned_by": "vllm"}]}).name == "vllm"
    assert detect({"data": [{"id": "x", "owned_by": "llamacpp"}]}).name == "llama-server"
    assert detect({"data": [{"id": "x", "owned_by": "library"}]}).name == "ollama"
    assert detect(None, "http://127.0.0.1:11434/v1").name == "ollama"
    assert detect({"data": []}, "http://h:9/v1").name == "generic"
    assert cached_tokens({"usage": {"prompt_tokens_details": {"cached_tokens": 5}}}) == 5
    assert cached_tokens({"timings": {"cache_n": 7}}) == 7
    assert cached_tokens({"usage": {"prompt_tokens": 3}}) is None
    assert get_profile("ollama").extra_body["keep_alive"]
    with pytest.raises(ValueError, match="known"):
        get_profile("nope")
    assert set(PROFILES) >= {"llama-server", "ollama", "vllm", "sglang", "lmstudio", "localai"}


def test_body_words_reads_json_and_html() -> None:
    """Error bodies are quoted in the upstream's words: JSON message, HTML title and text."""
    assert body_words(b'{"error":{"message":"model not found"}}') == "model not found"
    assert body_words(b'{"detail":"Not Found"}') == "Not Found"
    html = (
        b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1>nginx</body></html>"
    )
    assert body_words(html, "text/html").startswith("(HTML page) 502 Bad Gateway")


@pytest.mark.asyncio
@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
async def test_sse_framing_handles_split_lines_line_ends_bom_comments_multiline_data(
    newline: bytes,
) -> None:
    """Events split anywhere, LF/CRLF/CR-only line ends, a BOM, comments and multi-line data are
    parsed by the protocol's one SSE parser; [DONE] ends the stream (what follows is ignored)."""
    raw = b': keepalive\n\ndata: {"a":\ndata: 1}\n\nevent: x\ndata: tail\n\ndata: [DONE]\n\ndata: late\n\n'
    raw = b"\xef\xbb\xbf" + raw.replace(b"\n", newline)

    async def pieces() -> AsyncIterator[bytes]:
        for i in range(len(raw)):
            yield raw[i : i + 1]

    parser = SSEParser()
    head = bytearray()
    got = [e async for e in sse_payloads(parser, pieces(), head)]
    assert got == [b'{"a":\n1}', b"tail"]
    assert parser.done and bytes(head).startswith(b"\xef\xbb\xbf:")
    unterminated = SSEParser()
    assert unterminated.feed(b"data: last") == [] and unterminated.close() == [b"last"]


# --------------------------------------------------------------------------------------------------
# the engine against recorded streams


@pytest.mark.asyncio
async def test_llama_server_text_usage_cache_and_request_shape() -> None:
    """Text deltas (split mid-character), usage with timings.cache_n; cache_prompt and id_slot sent."""
    async with upstream() as up:
        engine = ChatCompletionsEngine(up.url)
        try:
            outs = await collect(
                engine, turn(instructions="Be terse.", max_output_tokens=64, temperature=0.2)
            )
        finally:
            await engine.aclose()
    assert text(outs) == "Hello from llama.cpp — ünïcödé ✓"
    assert outs[-1] == Usage(input_tokens=148, output_tokens=6, cached_tokens=132)
    body = up.requests[0]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["cache_prompt"] is True and body["id_slot"] in range(4)
    assert body["messages"] == [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "hi"}]
    assert body["max_tokens"] == 64 and body["temperature"] == 0.2
    assert body["model"] == "m.gguf"  # the request's model is not listed upstream: the first listed one


@pytest.mark.asyncio
async def test_llama_server_tool_call_fragments() -> None:
    """Content, then a call whose arguments arrive in fragments; tools and tool_choice are sent."""
    async with upstream(queue=[replay("llama_server_tool_calls.sse")]) as up:
        engine = ChatCompletionsEngine(up.url)
        try:
            outs = await collect(engine, turn(tools=[READ_FILE], tool_choice="required"))
        finally:
            await engine.aclose()
    assert text(outs) == "Let me look."
    assert calls(outs) == [("Kq3Zb8PpA1xXs0RmWv2JcN7dYt4LhE9u", "read_file", '{"path":"app/main.py"}')]
    assert sum(isinstance(o, ToolCallArgsDelta) for o in outs) == 5  # streamed, not batched
    assert isinstance(outs[-2], ItemDone) and outs[-1] == Usage(402, 19, cached_tokens=380)
    body = up.requests[0]
    assert body["tools"] == tools_to_chat([READ_FILE]) and body["tool_choice"] == "required"


@pytest.mark.asyncio
async def test_ollama_reasoning_text_keep_alive_and_model_choice() -> None:
    """Ollama's `reasoning` deltas and usage chunk; keep_alive sent; a listed model is used as asked."""
    models = {
        "object": "list",
        "data": [{"id": "llama3.2:3b", "owned_by": "library"}, {"id": "qwen3:8b", "owned_by": "library"}],
    }
    async with upstream(models=models, queue=[replay("ollama_text.sse")]) as up:
        engine = ChatCompletionsEngine(up.url)
        try:
            outs = await collect(engine, turn(model="qwen3:8b"))
        finally:
            await engine.aclose()
    assert [o.text for o in outs if isinstance(o, ReasoningDelta)] == ["The user", " greets me."]
    assert text(outs) == "Hi there!"
    assert outs[-1] == Usage(31, 12, cached_tokens=0)
    assert up.requests[0]["keep_alive"] and up.requests[0]["model"] == "qwen3:8b"
    assert "id_slot" not in up.requests[0]


@pytest.mark.asyncio
async def test_ollama_whole_tool_call_in_one_chunk() -> None:
    """A call that arrives whole is opened and filled at once."""
    async with upstream(queue=[replay("ollama_tool_call.sse", piece=64)]) as up:
        engine = ChatCompletionsEngine(up.url, profile="ollama")
        try:
            outs = await collect(engine, turn(tools=[READ_FILE]))
        finally:
            await engine.aclose()
    assert calls(outs) == [("call_u8r1kz0q", "get_weather", '{"city":"Paris"}')]


@pytest.mark.asyncio
async def test_llama_cpp_python_legacy_function_call_beside_tool_calls() -> None:
    """llama-cpp-python repeats each fragment as `function_call`; arguments are not doubled."""
    async with upstream(queue=[replay("llama_cpp_python_tool_call.sse")]) as up:
        engine = ChatCompletionsEngine(up.url)
        try:
            outs = await collect(engine, turn(tools=[READ_FILE]))
        finally:
            await engine.aclose()
    assert calls(outs) == [("call__0_read_file_cmpl-ed48eefe", "read_file", '{"path": "a.py"} ')]


@pytest.mark.asyncio
async def test_vllm_reasoning_parallel_calls_cached_tokens_session_header() -> None:
    """reasoning_content, two calls by index, prompt_tokens_details.cached_tokens, X-Session-Id."""
    models = {"object": "list", "data": [{"id": "Qwen/Qwen3-32B", "owned_by": "vllm"}]}
    async with upstream(models=models, queue=[replay("vllm_reasoning_tools.sse")]) as up:
        engine = ChatCompletionsEngine(up.url)
        try:
            conn = engine.connect()
            outs = await collect(engine, turn(tools=[READ_FILE]), conn)
        finally:
            await engine.aclose()
    assert "".join(o.text for o in outs if isinstance(o, ReasoningDelta)) == "Two files to read."
    assert calls(outs) == [
        ("chatcmpl-tool-4be1c0", "read_file", '{"path": "a.py"}'),
        ("chatcmpl-tool-9d03aa", "read_file", '{"path": "b.py"}'),
    ]
    assert outs[-1] == Usage(812, 47, cached_tokens=768)
    assert up.headers[0]["X-Session-Id"] == conn.key


@pytest.mark.asyncio
async def test_sglang_usage_in_trailing_chunk() -> None:
    """SGLang's null fields are ignored and its cached tokens reported."""
    models = {"object": "list", "data": [{"id": "meta-llama/Llama-3.1-8B-Instruct", "owned_by": "sglang"}]}
    async with upstream(models=models, queue=[replay("sglang_text.sse")]) as up:
        engine = ChatCompletionsEngine(up.url)
        try:
            outs = await collect(engine, turn())
        finally:
            await engine.aclose()
    assert text(outs) == "Same answer from SGLang."
    assert outs[-1] == Usage(1204, 7, cached_tokens=1152)


@pytest.mark.asyncio
async def test_interleaved_out_of_order_fragments_assemble() -> None:
    """Fragments of two calls interleaved, second index first: both calls whole, text after them."""
    async with upstream(queue=[replay("interleaved_tool_calls.sse", piece=3)]) as up:
        engine = ChatCompletionsEngine(up.url)
        try:
            outs = await collect(engine, turn(tools=[READ_FILE]))
        finally:
            await engine.aclose()
    assert sorted(calls(outs)) == [
        ("call_a", "read_file", '{"path":"x.py"}'),
        ("call_b", "grep", '{"pattern":"TODO"}'),
    ]
    assert isinstance(outs[-1], TextDelta) or isinstance(outs[-2], TextDelta)
    assert text(outs) == "Both at once."


@pytest.mark.asyncio
async def test_finish_reason_length_is_incomplete() -> None:
    """finish_reason "length" ends the turn as incomplete (max_output_tokens)."""
    async with upstream(queue=[replay("length.sse")]) as up:
        engine = ChatCompletionsEngine(up.url)
        try:
            outs = await collect(engine, turn())
        finally:
            await engine.aclose()
    assert text(outs) == "One two three"
    assert outs[-1] == Incomplete("max_output_tokens")


@pytest.mark.asyncio
async def test_non_streamed_json_answer_is_accepted() -> None:
    """A server that ignores stream: true and answers one JSON object still works."""
    whole = {
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c9",
                            "type": "function",
                            "function": {"name": "read_file", "arguments": {"path": "z"}},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 4},
    }
    async with upstream(queue=[answer(200, json.dumps(whole))]) as up:
        engine = ChatCompletionsEngine(up.url)
        try:
            outs = await collect(engine, turn(tools=[READ_FILE]))
        finally:
            await engine.aclose()
    assert calls(outs) == [("c9", "read_file", '{"path":"z"}')]
    assert outs[-1] == Usage(9, 4)


# --------------------------------------------------------------------------------------------------
# bad upstreams: clear failures, and the connection stays usable

BAD = {
    "invalid tool JSON": (replay("invalid_tool_json.sse"), "invalid_tool_call", "not valid JSON"),
    "error chunk mid-stream": (
        replay("midstream_error.sse"),
        "upstream_error",
        "exceeds the available context size",
    ),
    "closed without finish": (
        replay("truncated.sse"),
        "upstream_disconnected",
        "before the answer was finished",
    ),
    "connection cut": (
        stream_bytes((FIXTURES / "truncated.sse").read_bytes()[:150], cut=True),
        "upstream_disconnected",
        "",
    ),
    "HTTP 404 JSON": (
        answer(404, '{"error":{"message":"model \\"ghost\\" not found, try pulling it first"}}'),
        "upstream_error",
        'HTTP 404: model "ghost" not found',
    ),
    "HTTP 502 HTML": (
        answer(
            502, "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>", "text/html"
        ),
        "upstream_error",
        "502 Bad Gateway",
    ),
    "HTML with 200": (
        answer(200, "<!doctype html><title>Login</title><p>Sign in", "text/html"),
        "upstream_bad_response",
        "Login",
    ),
    "not JSON": (stream_bytes(b"data: {oops\n\n"), "upstream_bad_response", "not JSON"),
    "invalid UTF-8": (
        stream_bytes(
            b'data: {"choices":[{"delta":{"content":"ok"}}]}\n\ndata: {"choices":[{"delta":{"content":"\xff\xfe"}}]}\n\n'
        ),
        "upstream_bad_response",
        "invalid UTF-8",
    ),
    "not an event stream": (stream_bytes(b"hello there\n"), "upstream_bad_response", "not an event stream"),
    "never answers": (hang(), "upstream_timeout", "timed out"),
}


@pytest.mark.asyncio
@pytest.mark.parametrize("case", list(BAD))
async def test_bad_upstream_fails_the_turn_and_the_connection_recovers(case: str) -> None:
    """Each bad answer is one Failure with the upstream's words; the next turn on the connection works."""
    handler, code, words = BAD[case]
    async with upstream(queue=[handler, replay("llama_server_text.sse")]) as up:
        engine = ChatCompletionsEngine(up.url, read_timeout_s=0.5)
        try:
            conn = engine.connect()
            bad = failure(await collect(engine, turn("resp_1", tools=[READ_FILE]), conn))
            good = await collect(
                engine, turn("resp_2", previous_response_id="resp_1", history=[user("hi")]), conn
            )
        finally:
            await engine.aclose()
    assert bad.code == code, bad
    assert words in bad.message
    assert text(good) == "Hello from llama.cpp — ünïcödé ✓"
    assert not any(isinstance(o, Failure) for o in good)


@pytest.mark.asyncio
async def test_refused_upstream_is_a_clear_failure() -> None:
    """Nothing listening: upstream_unreachable naming the URL."""
    url = f"http://127.0.0.1:{free_port()}"
    engine = ChatCompletionsEngine(url, connect_timeout_s=1)
    try:
        bad = failure(await collect(engine, turn()))
    finally:
        await engine.aclose()
    assert bad.code == "upstream_unreachable" and "127.0.0.1" in bad.message


# --------------------------------------------------------------------------------------------------
# render cache and replicas


@pytest.mark.asyncio
async def test_each_turn_renders_only_its_new_items_and_the_body_is_the_full_history() -> None:
    """A chained turn renders the previous output and its new input only; forks stay correct."""
    async with upstream() as up:
        engine = ChatCompletionsEngine(up.url)
        try:
            conn = engine.connect()
            h1: list[Any] = [user("start")]
            await collect(engine, turn("r1", new=h1, tools=[READ_FILE]), conn)
            assert conn.rendered_items == 1
            out1 = [call("c1", "read_file", '{"path":"a"}')]
            new2 = [result("c1", "A" * 50)]
            h2 = [*h1, *out1]
            await collect(
                engine, turn("r2", new=new2, history=h2, previous_response_id="r1", tools=[READ_FILE]), conn
            )
            assert conn.rendered_items == 2  # the call + its result, not the whole history
            out2 = [assistant("done")]
            h3 = [*h2, *new2, *out2]
            await collect(engine, turn("r3", new=[user("next")], history=h3, previous_response_id="r2"), conn)
            assert conn.rendered_items == 2
            # a fork from r2 (another lane): must not see r3's input
            await collect(engine, turn("r4", new=[user("fork")], history=h3, previous_response_id="r2"), conn)
            # an unknown parent: full render
            await collect(engine, turn("r5", new=[user("x")], history=h3, previous_response_id="gone"), conn)
            assert conn.rendered_items == len(h3) + 1
        finally:
            await engine.aclose()
    fresh = HistoryRenderer()
    fresh.extend([*h3, user("next")])
    assert up.requests[2]["messages"] == fresh.messages
    fork = HistoryRenderer()
    fork.extend([*h3, user("fork")])
    assert up.requests[3]["messages"] == fork.messages
    assert up.requests[1]["messages"][-1] == {"role": "tool", "tool_call_id": "c1", "content": "A" * 50}


@pytest.mark.asyncio
async def test_connections_are_pinned_to_one_replica_and_fail_over() -> None:
    """All turns of a connection go to one replica; connections spread; a dead replica is skipped."""
    async with upstream() as a, upstream() as b, upstream() as c:
        ups = [a, b, c]
        engine = ChatCompletionsEngine([u.url for u in ups])
        try:
            conns = [engine.connect() for _ in range(9)]
            for conn in conns:
                for i in range(3):
                    await collect(
                        engine, turn(f"r{i}", previous_response_id=f"r{i - 1}" if i else None), conn
                    )
            per_upstream = [len(u.requests) for u in ups]
            assert sum(per_upstream) == 27
            assert all(n % 3 == 0 for n in per_upstream)  # whole connections, never split
            assert sum(1 for n in per_upstream if n) >= 2
        finally:
            await engine.aclose()
    dead = f"http://127.0.0.1:{free_port()}"
    async with upstream() as live:
        engine = ChatCompletionsEngine([dead, live.url], connect_timeout_s=1)
        try:
            conn = engine.connect()
            conn.replica = 0
            outs = await collect(engine, turn(), conn)
        finally:
            await engine.aclose()
    assert text(outs).startswith("Hello") and conn.replica == 1


# --------------------------------------------------------------------------------------------------
# through the real server: a client on the WebSocket sees Responses events


@pytest.mark.asyncio
async def test_bridge_behind_the_websocket_server() -> None:
    """Tool call, tool result, text over one socket; an upstream failure is response.failed, then OK."""
    async with upstream(
        queue=[
            replay("llama_server_tool_calls.sse"),
            replay("midstream_error.sse"),
            replay("llama_server_text.sse"),
        ]
    ) as up:
        engine = ChatCompletionsEngine(up.url)
        async with (
            run_server(engine, token="t") as srv,
            aiohttp.ClientSession() as http,
            http.ws_connect(srv.url, headers={"Authorization": "Bearer t"}) as ws,
        ):

            async def turn_events(**fields: Any) -> list[dict[str, Any]]:
                await ws.send_str(json.dumps({"type": "response.create", "model": "m", **fields}))
                events = []
                while True:
                    msg = await asyncio.wait_for(ws.receive(), 10)
                    event = json.loads(msg.data)
                    events.append(event)
                    if event["type"] in (
                        "response.completed",
                        "response.failed",
                        "response.incomplete",
                        "error",
                    ):
                        return events

            first = await turn_events(input=[user("read main")], tools=[READ_FILE])
            done = first[-1]
            assert done["type"] == "response.completed"
            fc = next(i for i in done["response"]["output"] if i["type"] == "function_call")
            assert fc["name"] == "read_file" and json.loads(fc["arguments"]) == {"path": "app/main.py"}
            assert done["response"]["usage"]["input_tokens_details"]["cached_tokens"] == 380
            second = await turn_events(
                previous_response_id=done["response"]["id"],
                input=[result(fc["call_id"], "print('hi')")],
                tools=[READ_FILE],
            )
            assert second[-1]["type"] == "response.failed"
            assert "exceeds the available context size" in second[-1]["response"]["error"]["message"]
            third = await turn_events(
                previous_response_id=done["response"]["id"],
                input=[result(fc["call_id"], "print('hi')")],
                tools=[READ_FILE],
            )
            assert third[-1]["type"] == "response.completed"
            deltas = "".join(e["delta"] for e in third if e["type"] == "response.output_text.delta")
            assert deltas == "Hello from llama.cpp — ünïcödé ✓"
    sent = up.requests[2]["messages"]
    assert sent[0] == {"role": "user", "content": "read main"}
    assert sent[1]["tool_calls"][0]["function"]["name"] == "read_file"
    assert sent[2] == {"role": "tool", "tool_call_id": fc["call_id"], "content": "print('hi')"}


# --------------------------------------------------------------------------------------------------
# warm-ups: a prefill on the pinned upstream, the next turn behind it


async def _ws_events(ws: aiohttp.ClientWebSocketResponse, **fields: Any) -> list[dict[str, Any]]:
    await ws.send_str(json.dumps({"type": "response.create", "model": "m", **fields}))
    events = []
    while True:
        event = json.loads((await asyncio.wait_for(ws.receive(), 10)).data)
        events.append(event)
        if event["type"] in ("response.completed", "response.failed", "response.incomplete", "error"):
            return events


@pytest.mark.asyncio
async def test_warm_up_is_prefilled_on_the_pinned_slot_and_the_turn_waits_for_it() -> None:
    """llama-server: the warm-up goes out at once as n_predict 0 on the connection's slot; the turn
    that follows is sent only after the prefill answered, and its prompt extends the prefill's."""
    order: list[str] = []

    async def slow_prefill(request: web.Request) -> web.StreamResponse:
        order.append("prefill start")
        await asyncio.sleep(0.3)  # the turn is sent meanwhile
        order.append("prefill end")
        return web.json_response({"choices": [{"index": 0, "message": {"role": "assistant", "content": ""}}]})

    async def turn_answer(request: web.Request) -> web.StreamResponse:
        order.append("turn")
        return await replay("llama_server_text.sse")(request)

    async with upstream(queue=[slow_prefill, turn_answer]) as up:
        engine = ChatCompletionsEngine(up.url)
        async with (
            run_server(engine, token="t") as srv,
            aiohttp.ClientSession() as http,
            http.ws_connect(srv.url, headers={"Authorization": "Bearer t"}) as ws,
        ):
            warm = await _ws_events(
                ws,
                input=[user("the project: " + "x" * 300)],
                generate=False,
                instructions="be brief",
                tools=[READ_FILE],
            )
            assert [e["type"] for e in warm][-1] == "response.completed" and order == []
            done = await _ws_events(
                ws,
                input=[user("what changed?")],
                instructions="be brief",
                tools=[READ_FILE],
                previous_response_id=warm[-1]["response"]["id"],
            )
            assert done[-1]["type"] == "response.completed"
    assert order == ["prefill start", "prefill end", "turn"]
    prefill, asked = up.requests
    assert prefill["stream"] is False and prefill["n_predict"] == 0 and prefill["cache_prompt"] is True
    assert "stream_options" not in prefill and prefill["tools"] == asked["tools"]
    assert prefill["id_slot"] == asked["id_slot"]  # the slot that holds the prefix
    assert asked["messages"][: len(prefill["messages"])] == prefill["messages"]
    assert asked["messages"][-1] == {"role": "user", "content": "what changed?"}


@pytest.mark.asyncio
async def test_warm_ups_are_not_forwarded_where_the_profile_has_no_prefill() -> None:
    """A generic OpenAI-compatible server may bill requests: the warm-up is only rendered, and the
    next turn continues its render cache."""
    async with upstream(models={"object": "list", "data": [{"id": "m", "owned_by": "someone"}]}) as up:
        engine = ChatCompletionsEngine(up.url)
        try:
            conn = engine.connect()
            context = [user("the project")]
            conn.prefill(turn("w1", new=context))
            asked = turn("r1", new=[user("q")], history=context, previous_response_id="w1")
            outs = await collect(engine, asked, conn)
            assert text(outs).startswith("Hello")
            assert conn.rendered_items == 1 and conn.prefilled == 0
        finally:
            await engine.aclose()
    assert len(up.requests) == 1 and up.requests[0]["stream"] is True


def test_cli_builds_the_chat_engine_and_refuses_bad_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """--engine chat with replicas, model, key from an env var, profile; clear errors otherwise."""
    from app.server.cli import build_engine, build_parser, main

    monkeypatch.setenv("UPSTREAM_KEY", "sk-test")
    args = build_parser().parse_args(
        [
            "--engine",
            "chat",
            "--upstream",
            "127.0.0.1:8080",
            "--upstream",
            "http://127.0.0.1:8081/v1",
            "--upstream-model",
            "qwen",
            "--upstream-key-env",
            "UPSTREAM_KEY",
            "--upstream-profile",
            "llama-server",
        ]
    )
    engine = build_engine(args)
    assert isinstance(engine, ChatCompletionsEngine)
    assert engine.upstreams == ["http://127.0.0.1:8080/v1", "http://127.0.0.1:8081/v1"]
    assert engine.model == "qwen" and engine.profile is PROFILES["llama-server"]
    assert engine._client.headers["Authorization"] == "Bearer sk-test"
    assert main(["--engine", "chat"]) == 2
    assert main(["--engine", "chat", "--upstream", "h:1", "--upstream-key-env", "NOT_SET_ANYWHERE_X"]) == 2
    assert main(["--engine", "gguf"]) == 2
    assert main(["--engine", "gguf", "--model-file", "/nonexistent.gguf"]) == 2
