"""A real model path: a tiny random-weight GGUF served by llama-cpp-python, behind the bridge.

Needs the optional extra `slipstream[local]` (llama-cpp-python, compiled from source: about 6+
minutes on 2 cores; CI builds the wheel once into a cache folder, see README). Skipped otherwise.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest

pytest.importorskip(
    "llama_cpp.server",
    reason="llama-cpp-python[server] is not installed (optional extra slipstream[local]; built from source)",
)
pytest.importorskip("gguf", reason="the gguf package is not installed (optional extra slipstream[local])")

import aiohttp
import httpx

from app.server.app import run_server
from app.server.engines.base import Failure, Turn
from app.server.engines.chat_completions import ChatCompletionsEngine
from tests.server.fixtures.llama_server import command, free_port, stop
from tests.server.fixtures.make_tiny_gguf import token_id, write

if TYPE_CHECKING:  # llama-cpp-python is an optional extra: imported where a test runs the engine
    from app.server.engines.llama_cpp import LlamaCppEngine

READ_FILE = {
    "type": "function",
    "name": "read_file",
    "description": "Read a file",
    "parameters": {
        "type": "object",
        "properties": {"path": {"type": "string", "enum": ["a.py"]}},
        "required": ["path"],
    },
}
TERMINAL = ("response.completed", "response.failed", "response.incomplete", "error")


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server on 127.0.0.1 with the tiny model; yields its URL."""
    model = write(tmp_path_factory.mktemp("gguf") / "tiny.gguf")
    port = free_port()
    cmd = command(model, port, "--n_ctx", "2048", "--model_alias", "tiny", "--n_threads", "1")
    log = tmp_path_factory.mktemp("log") / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/v1/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server did not start in 60 s: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield url
    finally:
        stop(proc)


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


async def _turn(ws: aiohttp.ClientWebSocketResponse, **fields: Any) -> list[dict[str, Any]]:
    await ws.send_str(json.dumps({"type": "response.create", "model": "tiny", **fields}))
    events = []
    while True:
        msg = await asyncio.wait_for(ws.receive(), 60)
        event = json.loads(msg.data)
        events.append(event)
        if event["type"] in TERMINAL:
            return events


@pytest.mark.asyncio
async def test_multi_turn_with_a_tool_call_through_the_bridge(llama_server: str) -> None:
    """Forced tool call (streamed argument fragments), tool result, then biased text, on one socket."""
    engine = ChatCompletionsEngine(llama_server, extra_body={"logit_bias": {str(token_id("o")): 100.0}})
    async with (
        run_server(engine, token="t") as srv,
        aiohttp.ClientSession() as http,
        http.ws_connect(srv.url, headers={"Authorization": "Bearer t"}) as ws,
    ):
        first = await _turn(
            ws,
            input=[user("read a.py")],
            tools=[READ_FILE],
            tool_choice={"type": "function", "name": "read_file"},
            temperature=0,
            max_output_tokens=40,
        )
        assert first[-1]["type"] == "response.completed", first[-1]
        fragments = [e["delta"] for e in first if e["type"] == "response.function_call_arguments.delta"]
        assert len(fragments) > 3  # streamed token by token, not in one piece
        item = next(i for i in first[-1]["response"]["output"] if i["type"] == "function_call")
        assert item["name"] == "read_file" and json.loads(item["arguments"]) == {"path": "a.py"}
        assert "".join(fragments) == item["arguments"]

        second = await _turn(
            ws,
            previous_response_id=first[-1]["response"]["id"],
            input=[{"type": "function_call_output", "call_id": item["call_id"], "output": "print('hi')"}],
            tools=[READ_FILE],
            tool_choice="none",
            temperature=0,
            max_output_tokens=6,
        )
        assert second[-1]["type"] == "response.incomplete", second[-1]["response"].get("error")
        assert second[-1]["response"]["incomplete_details"]["reason"] == "max_output_tokens"
        text = "".join(e["delta"] for e in second if e["type"] == "response.output_text.delta")
        assert text == "oooooo"  # logit_bias makes the random model repeatable

        third = await _turn(
            ws,
            previous_response_id=second[-1]["response"]["id"],
            input=[user("again")],
            temperature=0,
            max_output_tokens=3,
        )
        assert "".join(e["delta"] for e in third if e["type"] == "response.output_text.delta") == "ooo"
        usage = third[-1]["response"]["usage"]
        assert usage["input_tokens"] > 20  # the upstream's own count of the whole rendered history


@pytest.mark.asyncio
async def test_bridge_reports_the_servers_own_error(llama_server: str) -> None:
    """A prompt longer than the context (llama-cpp-python then streams nothing): its own words are quoted."""
    engine = ChatCompletionsEngine(llama_server)
    conn = engine.connect()
    try:
        too_long = Turn(response_id="r1", model="tiny", history=[], new_input=[user("x" * 5000)])
        outs = [o async for o in conn.run(too_long)]
        ok = [
            o
            async for o in conn.run(
                Turn(response_id="r2", model="tiny", history=[], new_input=[user("hi")], max_output_tokens=2)
            )
        ]
    finally:
        await engine.aclose()
    assert isinstance(outs[-1], Failure) and outs[-1].code == "upstream_error", outs
    assert "HTTP 400" in outs[-1].message and "maximum context length is 2048" in outs[-1].message
    assert not any(isinstance(o, Failure) for o in ok)


@pytest.mark.asyncio
async def test_in_process_gguf_engine_keeps_each_connections_cache(tmp_path: Path) -> None:
    """--engine gguf: a forced tool call, then text; two connections take turns on one model."""
    from app.server.engines.base import TextDelta, ToolCallArgsDelta, ToolCallStart
    from app.server.engines.llama_cpp import LlamaCppEngine

    engine = LlamaCppEngine(
        write(tmp_path / "tiny.gguf"), n_ctx=1024, extra={"logit_bias": {token_id("o"): 100.0}}
    )
    try:
        a, b = engine.connect(), engine.connect()
        first = Turn(
            response_id="r1",
            model="tiny",
            history=[],
            new_input=[user("read")],
            tools=[READ_FILE],
            tool_choice={"type": "function", "name": "read_file"},
            temperature=0,
            max_output_tokens=40,
        )
        outs = [o async for o in a.run(first)]
        start = next(o for o in outs if isinstance(o, ToolCallStart))
        args = "".join(o.delta for o in outs if isinstance(o, ToolCallArgsDelta))
        assert start.name == "read_file" and json.loads(args) == {"path": "a.py"}
        other = [o async for o in b.run(Turn("x1", "tiny", [], [user("hello")], max_output_tokens=2))]
        assert "".join(o.text for o in other if isinstance(o, TextDelta)) == "oo"
        assert engine.owner is b and a.saved_bytes > 0  # b took the model over: a's KV state was saved
        item = {"type": "function_call", "call_id": start.call_id, "name": "read_file", "arguments": args}
        second = Turn(
            response_id="r2",
            model="tiny",
            history=[user("read"), item],
            new_input=[{"type": "function_call_output", "call_id": start.call_id, "output": "x = 1"}],
            previous_response_id="r1",
            max_output_tokens=4,
        )
        outs = [o async for o in a.run(second)]
        assert "".join(o.text for o in outs if isinstance(o, TextDelta)) == "oooo"
        assert engine.owner is a
    finally:
        await engine.aclose()


# --------------------------------------------------------------------------------------------------
# the in-process engine's caches: tokens rendered once, evaluated once, states kept within a budget

DIFF = "".join(f"--- a/m{i}.py\n+++ b/m{i}.py\n-x = {i}\n+x = {i + 1}\n" for i in range(40))  # ~1,500 tokens


class EvalLog:
    """Every `eval` call of the model as (first position, count); thread-safe appends."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []
        self.first = asyncio.Event()
        self.loop = asyncio.get_running_loop()

    def __call__(self, start: int, count: int) -> None:
        self.calls.append((start, count))
        self.loop.call_soon_threadsafe(self.first.set)

    def positions(self, since: int = 0) -> list[int]:
        return [p for start, n in self.calls[since:] for p in range(start, start + n)]


def gguf_engine(path: Path, **kw: Any) -> LlamaCppEngine:
    from app.server.engines.llama_cpp import LlamaCppEngine

    return LlamaCppEngine(write(path), n_ctx=2048, extra={"logit_bias": {token_id("o"): 100.0}}, **kw)


def text_of(outs: list[Any]) -> str:
    from app.server.engines.base import TextDelta

    return "".join(o.text for o in outs if isinstance(o, TextDelta))


@pytest.mark.asyncio
async def test_token_cache_gives_the_tokens_of_the_whole_rendered_conversation(tmp_path: Path) -> None:
    """Turn after turn (tool call and result included), the prompt equals the model's template over
    the whole conversation, tokenized at once; each turn tokenizes only its new messages."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    from app.server.engines.chat_render import HistoryRenderer, tools_to_chat

    engine = gguf_engine(tmp_path / "tiny.gguf")
    conn = engine.connect()
    reference = Jinja2ChatFormatter(engine.llama.metadata["tokenizer.chat_template"], "<|im_end|>", "")
    history: list[Any] = []
    turns = [
        [user("read a.py")],
        [{"type": "function_call_output", "call_id": "c1", "output": "x = 1\n" * 20}],
        [user("and now?")],
    ]
    outputs: list[list[Any]] = [
        [{"type": "function_call", "call_id": "c1", "name": "read_file", "arguments": '{"path":"a.py"}'}],
        [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "ooo"}]}],
        [],
    ]
    try:
        prev = None
        body = 0
        for i, new in enumerate(turns):
            t = Turn(
                f"r{i}",
                "tiny",
                list(history),
                new,
                instructions="be brief",
                tools=[READ_FILE],
                previous_response_id=prev,
                max_output_tokens=2,
            )
            outs = [o async for o in conn.run(t)]
            assert not any(isinstance(o, Failure) for o in outs), outs
            history += [*new, *outputs[i]]
            prev = t.response_id
            r = HistoryRenderer()
            r.extend([*t.history, *new])
            messages = [{"role": "system", "content": "be brief"}, *r.messages]
            # JSON-shaped dicts; llama_cpp types them as TypedDicts (checked only where it is installed)
            chat_tools: Any = tools_to_chat([READ_FILE])
            text = reference(messages=cast(Any, messages), tools=chat_tools).prompt
            expected = engine.llama.tokenize(text.encode(), add_bos=False, special=True)
            prompt = conn.last_prompt
            assert prompt is not None and prompt.tokens() == expected, f"turn {i}"
            assert prompt.full == (i == 0)
            if i:  # only the new messages were tokenized: the tokens after the previous body
                assert prompt.new_tokens == len(expected) - body
            body = prompt.n_body
    finally:
        await conn.aclose()
        await engine.aclose()


@pytest.mark.asyncio
async def test_a_warm_ups_tokens_are_evaluated_exactly_once(tmp_path: Path) -> None:
    """The warm-up evaluates its tokens in the background; the turn after it evaluates only its own."""
    engine = gguf_engine(tmp_path / "tiny.gguf")
    evals = EvalLog()
    engine.llama.on_eval = evals
    conn = engine.connect()
    try:
        conn.prefill(Turn("w1", "tiny", [], [user(DIFF)], instructions="be brief"))
        await conn.prefills.wait()
        assert conn.last_prompt is not None
        warm = len(conn.last_prompt)
        assert warm > 1000 and sorted(evals.positions()) == list(range(warm))  # each exactly once
        before = len(evals.calls)
        ask = Turn(
            "r1",
            "tiny",
            [user(DIFF)],
            [user("why?")],
            instructions="be brief",
            previous_response_id="w1",
            max_output_tokens=3,
        )
        outs = [o async for o in conn.run(ask)]
        assert text_of(outs) == "ooo"
        turn_positions = evals.positions(before)
        assert min(turn_positions) == warm  # nothing of the warm-up again
        assert conn.last_prompt is not None
        assert len(turn_positions) == len(conn.last_prompt) - warm + 2  # its tokens, then 2 generated
    finally:
        await conn.aclose()
        await engine.aclose()


@pytest.mark.asyncio
@pytest.mark.parametrize("arrival", ["at once", "between batches"])
async def test_a_turn_arriving_during_a_prefill_waits_for_it_instead_of_redoing_it(
    tmp_path: Path, arrival: str
) -> None:
    """The turn comes right behind the warm-up, or while its prefill is between batches: no
    position is evaluated twice and the warm-up's text is tokenized once."""
    from collections import Counter

    engine = gguf_engine(tmp_path / "tiny.gguf")
    evals = EvalLog()
    engine.llama.on_eval = evals
    tokenized: list[int] = []
    tokenize = engine.tokenize

    def counting(text: str) -> list[int]:
        tokenized.append(len(text))
        return tokenize(text)

    engine.tokenize = counting  # type: ignore[method-assign]
    conn = engine.connect()
    try:
        conn.prefill(Turn("w1", "tiny", [], [user(DIFF)], instructions="be brief"))
        if arrival == "between batches":
            await evals.first.wait()  # the first batch is in
        assert conn.prefills.pending
        ask = Turn(
            "r1",
            "tiny",
            [user(DIFF)],
            [user("why?")],
            instructions="be brief",
            previous_response_id="w1",
            max_output_tokens=3,
        )
        outs = [o async for o in conn.run(ask)]
        assert text_of(outs) == "ooo"
        counts = Counter(evals.positions())
        assert len(evals.calls) > 3  # the prefill took several batches
        assert max(counts.values()) == 1 and sorted(counts) == list(range(len(counts)))
        await conn.prefills.wait()  # (already done: the turn waited for it)
        assert len(DIFF) < sum(tokenized) < len(DIFF) + 200
    finally:
        await conn.aclose()
        await engine.aclose()


@pytest.mark.asyncio
async def test_eviction_never_breaks_a_chain(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Two conversations take turns on one model with no room for saved states: each switch evicts
    the other's state (a warning says so), its next turn recomputes it, and both chains go on."""
    engine = gguf_engine(tmp_path / "tiny.gguf", state_budget_bytes=1)
    evals = EvalLog()
    engine.llama.on_eval = evals
    a, b = engine.connect(), engine.connect()
    histories: dict[Any, list[Any]] = {a: [], b: []}
    prev: dict[Any, str | None] = {a: None, b: None}
    try:
        for i in range(3):
            for conn, who in ((a, "a"), (b, "b")):
                new = [user(f"{who} turn {i}: " + "words " * 60)]
                before = len(evals.calls)
                t = Turn(
                    f"{who}{i}",
                    "tiny",
                    list(histories[conn]),
                    new,
                    previous_response_id=prev[conn],
                    max_output_tokens=3,
                )
                with caplog.at_level(logging.WARNING, logger="app.server.engines.llama_cpp"):
                    outs = [o async for o in conn.run(t)]
                assert text_of(outs) == "ooo", outs
                answer = {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": "ooo"}],
                }
                histories[conn] += [*new, answer]
                prev[conn] = t.response_id
                prompt = conn.last_prompt
                assert prompt is not None and (i == 0 or not prompt.full)  # the token chain survived
                if i:  # its state was evicted: the whole prompt was evaluated again
                    assert min(evals.positions(before)) < prompt.n_body // 4
                assert engine.saved_bytes <= 1
        assert sum("was evicted" in r.getMessage() for r in caplog.records) >= 5
    finally:
        await a.aclose()
        await b.aclose()
        await engine.aclose()


@pytest.mark.asyncio
async def test_saved_states_let_conversations_resume_without_recomputing(tmp_path: Path) -> None:
    """With room in the budget, a conversation coming back restores its state and evaluates only
    its new tokens; closing a connection frees its saved state."""
    engine = gguf_engine(tmp_path / "tiny.gguf")
    evals = EvalLog()
    engine.llama.on_eval = evals
    a, b = engine.connect(), engine.connect()
    try:
        first = Turn("a0", "tiny", [], [user("words " * 100)], max_output_tokens=2)
        [o async for o in a.run(first)]
        [o async for o in b.run(Turn("b0", "tiny", [], [user("other " * 100)], max_output_tokens=2))]
        assert a.saved_bytes > 0
        answer = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "oo"}]}
        before = len(evals.calls)
        again = Turn(
            "a1",
            "tiny",
            [*first.new_input, answer],
            [user("more")],
            previous_response_id="a0",
            max_output_tokens=2,
        )
        [o async for o in a.run(again)]
        assert min(evals.positions(before)) > 100  # resumed after the first turn's tokens, not from 0
        await b.aclose()
        assert b.saved_bytes == 0 and engine.saved_bytes == 0
    finally:
        await a.aclose()
        await engine.aclose()
