"""The in-process engine's caches on a real (random-weight) model: warm-ups, growing history, CPU.

The bench writes its own GGUF: a llama-architecture model with the byte-level vocabulary and ChatML
template of the test model (tests/server/fixtures), two layers of width 512 with an 8,192-wide FFN
and one 32-wide attention head, Q8_0. Evaluating a token costs mostly FFN, so prefill is clearly
measurable on 2 busy cores (~0.5-1 ms a token on one thread), while attention over 6,000 tokens adds
about 10% to a token's cost (a 7B model adds ~20% at that length, compute-wise; with a 64-wide head
this toy adds ~20% too, which leaves the 1.3x target no room for this machine's noise). A toy with
attention as wide as its FFN would measure llama.cpp's attention kernel, not the cache. Two layers,
because llama.cpp computes the last layer's FFN only for the tokens whose logits it returns.
Outputs are made repeatable with `logit_bias` ("o" tokens).

Figures (medians of `RUNS` runs; the ratios are measured side by side in the same run):

- warm on save: a 2,000-token diff pushed as a warm-up (`generate: false`), the engine left to
  settle (what a user's pause gives), then a question: its time to first token against a question
  with nothing pending. Baseline: the same engine with warm-ups not forwarded (the behaviour
  before prefills), where the question pays for the diff.
- flat as history grows: two conversations interleaved on one `slipstream serve --engine gguf`, 20
  turns each growing to ~6,000 tokens: TTFT of turn 20 against turn 1. Baseline: a stateless Chat
  Completions client resending the whole history to llama-cpp-python's own server, the two
  conversations interleaved (so its single cache always holds the other one). For that client a
  turn's cost depends only on its own history, so turns 1 and 20 are sent (A1, B1, A20, B20) and
  turns 2-19 skipped: the full replay would take ~6 minutes a run here.
- two conversations interleaved vs one: the same 20 turns with one conversation alone, TTFT per turn.
- server CPU per turn (render + tokenize) at 10 KB, 100 KB and 1 MB of history: the engine's
  `RenderCache` + `PromptCache` for one more turn vs llama-cpp-python's way (the whole conversation
  through the template, then the whole text through the tokenizer).

Run: `python -m tests.bench bench_cache`. Needs the `local` extra (llama-cpp-python, gguf).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from tests.server.fixtures.llama_server import llama_cpp_server

RUNS = 5
TURNS = 20
TURN_CHARS = 290  # ~ tokens (byte-level vocabulary): 20 turns reach ~6,000 tokens
DIFF_TOKENS = 2000
N_CTX = 8192
THREADS = 1  # both sides: on a shared 2-core machine, two ggml threads spin-wait on each other
# Both sides also run flash attention (the engine's default, and llama-server's).
CPU_TURNS = 25  # timed turns per history size (cheap: medians of many)
INSTRUCTIONS = "You are a coding assistant. Answer briefly."
TERMINAL = ("response.completed", "response.incomplete", "response.failed", "error")


# --------------------------------------------------------------------------------------------------
# the model


def write_model(path: Path) -> Path:
    """A llama-architecture GGUF with random Q8_0 weights (see the module docstring for its shape)."""
    import gguf
    import numpy as np

    from tests.server.fixtures.make_tiny_gguf import add_tokenizer, vocabulary

    n_embd, n_ff, n_layer, head = 512, 8192, 2, 32
    rng = np.random.default_rng(7)
    vocab = vocabulary()
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("slipstream-bench-cache")
    w.add_context_length(16384)
    w.add_embedding_length(n_embd)
    w.add_feed_forward_length(n_ff)
    w.add_block_count(n_layer)
    w.add_head_count(1)
    w.add_head_count_kv(1)
    w.add_key_length(head)
    w.add_value_length(head)
    w.add_rope_dimension_count(head)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    add_tokenizer(w, vocab)

    def tensor(name: str, *shape: int, scale: float = 0.02, ones: bool = False, quant: bool = True) -> None:
        data = np.ones(shape, np.float32) if ones else rng.normal(0, scale, shape).astype(np.float32)
        if quant and data.ndim == 2:
            q = gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0)
            w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(name, data)

    tensor("token_embd.weight", len(vocab), n_embd, scale=1.0, quant=False)
    tensor("output_norm.weight", n_embd, ones=True)
    tensor("output.weight", len(vocab), n_embd, scale=1.0, quant=False)
    for i in range(n_layer):
        tensor(f"blk.{i}.attn_norm.weight", n_embd, ones=True)
        tensor(f"blk.{i}.attn_q.weight", head, n_embd)
        tensor(f"blk.{i}.attn_k.weight", head, n_embd)
        tensor(f"blk.{i}.attn_v.weight", head, n_embd)
        tensor(f"blk.{i}.attn_output.weight", n_embd, head)
        tensor(f"blk.{i}.ffn_norm.weight", n_embd, ones=True)
        tensor(f"blk.{i}.ffn_gate.weight", n_ff, n_embd)
        tensor(f"blk.{i}.ffn_up.weight", n_ff, n_embd)
        tensor(f"blk.{i}.ffn_down.weight", n_embd, n_ff)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _bias() -> dict[int, float]:
    from tests.server.fixtures.make_tiny_gguf import token_id

    return {token_id("o"): 100.0}


# --------------------------------------------------------------------------------------------------
# conversations


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def diff_text(tag: str, tokens: int) -> str:
    """A unified diff of about `tokens` tokens (one token per character in this vocabulary)."""
    lines, size, i = [f"--- a/{tag}.py\n+++ b/{tag}.py\n"], 0, 0
    while size < tokens:
        line = f"-    value_{tag}_{i} = compute({i}, scale=2)\n+    value_{tag}_{i} = compute({i}, scale=3)\n"
        lines.append(line)
        size += len(line)
        i += 1
    return "".join(lines)[:tokens]


def turn_text(tag: str, i: int) -> str:
    return (f"[{tag} {i}] " + diff_text(f"{tag}{i}", TURN_CHARS))[:TURN_CHARS]


class Socket:
    """One WebSocket to the server; `ask` returns (ttft_s, final response)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.prev: str | None = None

    async def send(
        self, items: list[dict[str, Any]], *, generate: bool = True, **extra: Any
    ) -> tuple[float, Any]:
        create: dict[str, Any] = {
            "type": "response.create",
            "model": "bench",
            "input": items,
            "instructions": INSTRUCTIONS,
            "temperature": 0,
            **extra,
        }
        if not generate:
            create["generate"] = False
        if self.prev:
            create["previous_response_id"] = self.prev
        t0 = time.perf_counter()
        first: float | None = None
        await self.ws.send_str(json.dumps(create))
        while True:
            event = json.loads((await self.ws.receive()).data)
            if first is None and event["type"].endswith(".delta"):
                first = time.perf_counter() - t0
            if event["type"] in TERMINAL:
                break
        if event["type"] not in ("response.completed", "response.incomplete"):
            raise RuntimeError(f"turn failed: {event}")
        self.prev = event["response"]["id"]
        return (first if first is not None else time.perf_counter() - t0), event["response"]


@contextlib.asynccontextmanager
async def serve(engine: Any) -> AsyncIterator[Callable[[], Any]]:
    """`slipstream serve` in this process; yields a factory of connected `Socket`s."""
    from app.server.app import run_server

    async with run_server(engine, token="bench") as srv, aiohttp.ClientSession() as http:
        sockets: list[aiohttp.ClientWebSocketResponse] = []

        async def connect() -> Socket:
            ws = await http.ws_connect(srv.url, headers={"Authorization": "Bearer bench"}, max_msg_size=0)
            sockets.append(ws)
            return Socket(ws)

        try:
            yield connect
        finally:
            for ws in sockets:
                await ws.close()


# --------------------------------------------------------------------------------------------------
# warm on save


async def warm_on_save(
    engine: Any, connect: Callable[[], Any], run: int, forward: bool
) -> tuple[float, float]:
    """(TTFT with nothing pending, TTFT right after a 2,000-token diff warm-up) in one conversation.

    The two questions have the same length; the one with nothing pending comes right after the
    first (its diff is in by then either way), at about the same place in the context."""
    engine.prefill_warmups = forward
    sock = await connect()
    tag = f"w{run}{'f' if forward else 'n'}"
    await sock.send([user("Project snapshot:\n" + diff_text(tag + "snap", 500))], generate=False)
    await sock.send([user(f"Question 0 on {tag}?")], max_output_tokens=4)  # the snapshot is in, either way
    await sock.send([user("Saved changes:\n" + diff_text(tag + "save", DIFF_TOKENS))], generate=False)
    await engine.settled()  # the user's pause
    warm, _ = await sock.send([user(f"Question 1 on {tag}?")], max_output_tokens=4)
    idle, _ = await sock.send([user(f"Question 2 on {tag}?")], max_output_tokens=4)
    await sock.ws.close()
    return idle, warm


# --------------------------------------------------------------------------------------------------
# growing history: ours and the stateless baseline


async def conversation_turns(connect: Callable[[], Any], tags: list[str]) -> dict[str, list[float]]:
    """`TURNS` turns of each conversation in `tags`, interleaved; TTFT per turn."""
    socks = {tag: await connect() for tag in tags}
    ttft: dict[str, list[float]] = {tag: [] for tag in tags}
    for i in range(TURNS):
        for tag in tags:
            first, _ = await socks[tag].send([user(turn_text(tag, i))], max_output_tokens=8)
            ttft[tag].append(first)
    for sock in socks.values():
        await sock.ws.close()
    return ttft


async def first_turns(connect: Callable[[], Any], tags: list[str]) -> list[float]:
    """Turn 1 of fresh conversations: measured right after turn 20 too, so the turn-1 figure does
    not come only from the start of a run (this machine's load drifts)."""
    out = []
    for tag in tags:
        sock = await connect()
        first, _ = await sock.send([user(turn_text(tag, 0))], max_output_tokens=8)
        out.append(first)
        await sock.ws.close()
    return out


def stateless_messages(tag: str, upto: int) -> list[dict[str, Any]]:
    """The whole history a stateless client sends for turn `upto` (1-based) of conversation `tag`."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": INSTRUCTIONS}]
    for i in range(upto):
        if i:
            messages.append({"role": "assistant", "content": "o" * 8})
        messages.append({"role": "user", "content": turn_text(tag, i)})
    return messages


async def stateless_ttft(client: httpx.AsyncClient, url: str, messages: list[dict[str, Any]]) -> float:
    body = {
        "model": "bench",
        "messages": messages,
        "stream": True,
        "temperature": 0,
        "max_tokens": 8,
        "logit_bias": {str(k): v for k, v in _bias().items()},
    }
    t0 = time.perf_counter()
    first: float | None = None
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as resp:
        async for line in resp.aiter_lines():
            if first is None and line.startswith("data: {") and '"content":"' in line.replace(" ", ""):
                first = time.perf_counter() - t0
    return first if first is not None else time.perf_counter() - t0


async def stateless_run(client: httpx.AsyncClient, url: str, run: int) -> tuple[list[float], list[float]]:
    """(turn-1 TTFTs, turn-20 TTFTs) of interleaved conversations: A1, B1, A20, B20, C1, D1."""
    tags = [f"s{run}a", f"s{run}b"]
    first = [await stateless_ttft(client, url, stateless_messages(t, 1)) for t in tags]
    last = [await stateless_ttft(client, url, stateless_messages(t, TURNS)) for t in tags]
    first += [await stateless_ttft(client, url, stateless_messages(f"s{run}{t}", 1)) for t in "cd"]
    return first, last


# --------------------------------------------------------------------------------------------------
# server CPU per turn


def cpu_per_turn(model: Path) -> list[dict[str, Any]]:
    """Render + tokenize for one more turn at 10 KB, 100 KB and 1 MB of history."""
    import llama_cpp

    from app.server.engines.base import Turn
    from app.server.engines.chat_render import HistoryRenderer, RenderCache
    from app.server.engines.llama_cpp import _Template
    from app.server.engines.prompt_cache import PromptCache, TokenChain, WithSystem

    llama = llama_cpp.Llama(str(model), vocab_only=True, verbose=False)
    template = _Template(llama)
    render = template.bind([])

    def tokenize(text: str) -> list[int]:
        return list(llama.tokenize(text.encode(), add_bos=False, special=True))

    system = {"role": "system", "content": INSTRUCTIONS}
    answer = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "o" * 200}]}
    rows: list[dict[str, Any]] = []
    ours_by_size: dict[str, float] = {}
    full_by_size: dict[str, float] = {}
    for label, size in (("10kb", 10_000), ("100kb", 100_000), ("1mb", 1_000_000)):
        history: list[Any] = []
        for i in range(size // (TURN_CHARS + 200) + 1):  # a user message and an answer per turn
            history += [user(turn_text("c", i)), answer]
        cache, prompts = RenderCache(), PromptCache()
        prev = "r0"
        first = Turn(prev, "bench", history[:-2], [history[-2]], instructions=INSTRUCTIONS)

        def step(t: Turn, cache: RenderCache = cache, prompts: PromptCache = prompts) -> None:
            rendered = cache.render(t)
            parent = rendered.extra if isinstance(rendered.extra, TokenChain) else None
            prompt = prompts.build(
                WithSystem(system, rendered.renderer.messages),
                render,
                tokenize,
                parent=parent,
                changed_from=rendered.changed_from + 1 if rendered.resumed else 0,
                config=INSTRUCTIONS,
                generation=True,
            )
            cache.attach(t.response_id, prompt.chain)

        step(first)  # the chain's first turn renders everything (not timed)
        chain = [*history]
        ours, full = [], []
        for r in range(CPU_TURNS):
            new = [user(turn_text("c", 10_000 + r))]
            t = Turn(
                f"r{r + 1}", "bench", list(chain), new, instructions=INSTRUCTIONS, previous_response_id=prev
            )
            t0 = time.perf_counter()
            step(t)
            ours.append(time.perf_counter() - t0)
            if r < RUNS:  # llama-cpp-python's way: everything again (seconds at 1 MB)
                t0 = time.perf_counter()
                r_full = HistoryRenderer()
                r_full.extend([*chain, *new])
                tokenize(render([system, *r_full.messages], True))
                full.append(time.perf_counter() - t0)
            chain += [*new, answer]
            prev = t.response_id
        ours_ms, full_ms = statistics.median(ours) * 1000, statistics.median(full) * 1000
        ours_by_size[label], full_by_size[label] = ours_ms, full_ms
        rows.append(_row(f"cache_cpu_per_turn_{label}", ours_ms, "ms", full_ms))
    flat, grows = ours_by_size["1mb"] / ours_by_size["10kb"], full_by_size["1mb"] / full_by_size["10kb"]
    rows.append(_row("cache_cpu_per_turn_1mb_over_10kb", flat, "x", grows))
    llama.close()
    return rows


# --------------------------------------------------------------------------------------------------


def _row(name: str, value: float, unit: str, baseline: float | None) -> dict[str, Any]:
    return {
        "name": name,
        "value": value,
        "unit": unit,
        "baseline": baseline,
        "ratio": value / baseline if baseline else None,
    }


def _ms(xs: list[float]) -> float:
    return statistics.median(xs) * 1000


async def _run(model: Path) -> list[dict[str, Any]]:
    from app.server.engines.llama_cpp import LlamaCppEngine

    engine = LlamaCppEngine(
        model, n_ctx=N_CTX, n_threads=THREADS, n_threads_batch=THREADS, extra={"logit_bias": _bias()}
    )
    idle, warm, unforwarded = [], [], []
    ours_t1, ours_t20, inter, single = [], [], [], []
    async with serve(engine) as connect:
        await warm_on_save(engine, connect, -1, True)  # load and touch everything once
        for run in range(RUNS):  # alternate: both modes see the same machine load
            i, w = await warm_on_save(engine, connect, run, True)
            idle.append(i)
            warm.append(w)
            i, u = await warm_on_save(engine, connect, run, False)
            idle.append(i)
            unforwarded.append(u)
        engine.prefill_warmups = True
        for run in range(RUNS):
            two = await conversation_turns(connect, [f"i{run}a", f"i{run}b"])
            fresh = await first_turns(connect, [f"i{run}c", f"i{run}d"])  # right after turn 20
            one = await conversation_turns(connect, [f"o{run}"])
            for ttfts in two.values():
                ours_t1.append(ttfts[0])
                ours_t20.append(ttfts[-1])
            ours_t1 += fresh
            inter.append([statistics.median(k) for k in zip(*two.values(), strict=True)])
            single.append(one[f"o{run}"])
    stateless_t1, stateless_t20 = [], []
    options = ["--n_ctx", str(N_CTX), "--n_threads", str(THREADS), "--n_threads_batch", str(THREADS)]
    options += ["--flash_attn", "true"]
    async with llama_cpp_server(model, *options) as url, httpx.AsyncClient(timeout=600) as client:
        await stateless_ttft(client, url, stateless_messages("load", 1))
        for run in range(RUNS):
            t1, t20 = await stateless_run(client, url, run)
            stateless_t1 += t1
            stateless_t20 += t20
    flat_ours = _ms(ours_t20) / _ms(ours_t1)
    flat_stateless = _ms(stateless_t20) / _ms(stateless_t1)
    return [
        _row("cache_ttft_warm_after_2k_diff_vs_idle", _ms(warm), "ms", _ms(idle)),
        _row("cache_ttft_warm_not_forwarded_vs_idle", _ms(unforwarded), "ms", _ms(idle)),
        _row("cache_ttft_turn1_vs_stateless", _ms(ours_t1), "ms", _ms(stateless_t1)),
        _row("cache_ttft_turn20_vs_stateless", _ms(ours_t20), "ms", _ms(stateless_t20)),
        _row("cache_ttft_turn20_over_turn1", flat_ours, "x", flat_stateless),
        _row(
            "cache_ttft_interleaved_vs_single",
            _ms([x for r in inter for x in r]),
            "ms",
            _ms([x for r in single for x in r]),
        ),
        _row(
            "cache_ttft_interleaved_vs_single_turn20",
            _ms([r[-1] for r in inter]),
            "ms",
            _ms([r[-1] for r in single]),
        ),
    ]


def run() -> list[dict[str, Any]]:
    """Benchmark rows (see the module docstring)."""
    try:
        import gguf  # noqa: F401
        import llama_cpp.server  # noqa: F401
    except ImportError as exc:
        raise RuntimeError(
            f"bench_cache needs the local extra (llama-cpp-python[server], gguf): {exc}"
        ) from exc
    with tempfile.TemporaryDirectory() as tmp:
        model = write_model(Path(tmp) / "bench.gguf")
        rows = asyncio.run(_run(model))
        rows += cpu_per_turn(model)
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
