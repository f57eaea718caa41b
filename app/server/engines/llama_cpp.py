"""The in-process engine: llama-cpp-python running a GGUF file (optional extra `slipstream[local]`).

Each turn does work in proportion to its new input, and a warm-up does it before the user asks:

- Rendering: a connection's `RenderCache` (shared with the bridge) turns only the new items into
  chat messages; its `PromptCache` renders only those through the model's chat template (compiled
  once per model) and tokenizes only them. Tools in chat form are converted once per connection
  while they do not change.
- Evaluation: the KV cache holds the tokens already evaluated; a turn evaluates only the tokens
  after the longest common prefix (llama-cpp-python's own rule, applied here before generating so
  a prefill can use it too).
- Warm-ups (`generate: false`): `prefill()` returns at once; a background task evaluates the
  warm-up's tokens, a batch at a time (the model is free for other conversations in between). A
  turn that arrives meanwhile waits for it, so no token is evaluated twice.
- Several conversations share the model: when another connection takes it over, the owner's KV
  sequence is saved (`llama_state_seq_get_data`, in proportion to its tokens) and restored on its next
  turn. Saved states stay within `state_budget_bytes`; the least recently used are evicted (a
  warning in the server log). An evicted conversation is never broken: its tokens are recomputed
  on its next turn.

The model is not thread-safe: every call into it runs on the engine's one worker thread while the
engine's lock is held; output hops back to the event loop through a queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib.util
import json
import logging
import threading
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from app.server.engines.base import EngineOutput, Failure, Turn
from app.server.engines.chat_chunks import ChunkTranslator, UpstreamError
from app.server.engines.chat_render import RenderCache, custom_tool_names
from app.server.engines.prompt_cache import Prompt, PromptCache, TokenChain, WithSystem
from app.server.engines.warmups import Prefills

__all__ = ["LlamaCppConnection", "LlamaCppEngine", "missing_reason"]

log = logging.getLogger(__name__)

_END = object()
_T = TypeVar("_T")
PREFILL_BATCH = 512  # tokens a prefill evaluates before it lets other conversations in


def missing_reason() -> str | None:
    """Why the engine cannot run here, or None when llama-cpp-python is importable."""
    if importlib.util.find_spec("llama_cpp") is None:
        return (
            "--engine gguf needs llama-cpp-python: pip install 'slipstream[local]' "
            "(it compiles llama.cpp from source, about 6 minutes on 2 cores)"
        )
    return None


def _counting_llama(model_file: Path, **kwargs: Any) -> Any:
    """A `llama_cpp.Llama` that counts the tokens it evaluates (`evaluated`, and `on_eval(start,
    count)` per call when set): the figure that proves a token is evaluated once."""
    import llama_cpp

    class CountingLlama(llama_cpp.Llama):  # type: ignore[misc,unused-ignore]  # Any without the extra
        evaluated = 0
        on_eval: Callable[[int, int], None] | None = None

        def eval(self, tokens: Sequence[int]) -> None:
            start = self.n_tokens
            super().eval(tokens)
            self.evaluated += len(tokens)
            if self.on_eval is not None:
                self.on_eval(start, len(tokens))

    return CountingLlama(str(model_file), **kwargs)


class _Template:
    """The model's chat template (GGUF metadata; ChatML when it has none), compiled once."""

    def __init__(self, llama: Any) -> None:
        from llama_cpp.llama_chat_format import CHATML_CHAT_TEMPLATE, Jinja2ChatFormatter

        source = llama.metadata.get("tokenizer.chat_template") or CHATML_CHAT_TEMPLATE
        eos_id, bos_id = llama.token_eos(), llama.token_bos()
        self.eos = llama._model.token_get_text(eos_id) if eos_id != -1 else ""
        bos = llama._model.token_get_text(bos_id) if bos_id != -1 else ""
        self._body = Jinja2ChatFormatter(source, self.eos, bos, add_generation_prompt=False)
        self._gen = Jinja2ChatFormatter(source, self.eos, bos, add_generation_prompt=True)

    def bind(self, tools: list[dict[str, Any]]) -> Callable[[Sequence[Mapping[str, Any]], bool], str]:
        """render(messages, add_generation_prompt) with this turn's tools. `tool_choice` is not
        given to the template (llama-cpp-python did): it changes from turn to turn, templates do
        not use it, and a forced call is enforced by a grammar instead."""
        body: Any = self._body  # llama-cpp-python's own message types: ours are plain dicts
        gen: Any = self._gen
        chat_tools = tools or None

        def render(messages: Sequence[Mapping[str, Any]], generation: bool) -> str:
            fmt = gen if generation else body
            return str(fmt(messages=list(messages), tools=chat_tools).prompt)

        return render


@dataclass(slots=True)
class _Saved:
    """One conversation's KV sequence and the tokens it holds, saved while another one runs."""

    data: Any  # ctypes uint8 array
    size: int
    tokens: Any  # numpy array

    @property
    def nbytes(self) -> int:
        return self.size + int(self.tokens.nbytes)


class LlamaCppEngine:
    """One GGUF model loaded in this process, shared by every connection.

    `flash_attn` (llama-server's default too) keeps a turn's cost flat as the context grows: with
    the plain CPU kernels, attention over 6,000 tokens costs more than the rest of a small model.
    `extra`: sampling settings passed to llama-cpp-python (e.g. `logit_bias`). `prefill_warmups`:
    False keeps warm-ups away from the model (the behaviour before prefills; benchmarks compare).
    `state_budget_bytes`: memory for the saved states of conversations not currently on the model.
    """

    name = "gguf"

    def __init__(
        self,
        model_file: str | Path,
        *,
        n_ctx: int = 8192,
        n_threads: int | None = None,
        n_threads_batch: int | None = None,
        flash_attn: bool = True,
        extra: dict[str, Any] | None = None,
        prefill_warmups: bool = True,
        state_budget_bytes: int = 1 << 30,
    ) -> None:
        self.model_file = Path(model_file)
        options = {
            "n_ctx": n_ctx,
            "n_threads": n_threads,
            "n_threads_batch": n_threads_batch,
            "verbose": False,
        }
        try:
            self.llama = _counting_llama(self.model_file, flash_attn=flash_attn, **options)
        except Exception as exc:  # a model or build without flash attention: the plain kernels then
            if not flash_attn:
                raise
            log.warning(
                "flash attention unavailable for %s (%s); using the plain kernels", self.model_file, exc
            )
            self.llama = _counting_llama(self.model_file, flash_attn=False, **options)
        self.extra = dict(extra or {})
        self.prefill_warmups = prefill_warmups
        self.state_budget_bytes = state_budget_bytes
        self.template = _Template(self.llama)
        self.lock = asyncio.Lock()
        self.owner: LlamaCppConnection | None = None
        self._saved: OrderedDict[LlamaCppConnection, _Saved] = OrderedDict()  # least recent first
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="gguf")
        self._closed = False
        self._seq = 0
        self._connections: weakref.WeakSet[LlamaCppConnection] = weakref.WeakSet()

    @property
    def evaluated(self) -> int:
        """Tokens evaluated by the model so far (prompts, prefills and generated tokens)."""
        return int(self.llama.evaluated)

    @property
    def saved_bytes(self) -> int:
        """Memory held by saved conversation states."""
        return sum(s.nbytes for s in self._saved.values())

    def connect(self) -> LlamaCppConnection:
        """A connection with its own render and token caches and its own KV state."""
        self._seq += 1
        conn = LlamaCppConnection(self, f"gguf-{self._seq}")
        self._connections.add(conn)
        return conn

    async def settled(self) -> None:
        """Until every warm-up submitted so far has been prefilled (what a user's pause gives)."""
        for conn in list(self._connections):
            await conn.prefills.wait()

    async def aclose(self) -> None:
        """Free the model (again: a no-op)."""
        if self._closed:
            return
        self._closed = True
        self._saved.clear()
        await asyncio.get_running_loop().run_in_executor(self._pool, self._close_model)
        self._pool.shutdown(wait=True)

    def _close_model(self) -> None:
        with contextlib.suppress(Exception):
            self.llama.close()

    def tokenize(self, text: str) -> list[int]:
        """Template text -> tokens (control tokens parsed, no BOS added: templates write their own)."""
        return list(self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    async def work(self, fn: Callable[[], _T], stop: threading.Event | None = None) -> _T:
        """Run `fn` on the model thread (hold `lock`). Cancelling waits for the thread to finish its
        current step (a batch), so the model is never used by two callers at once."""
        fut = asyncio.get_running_loop().run_in_executor(self._pool, fn)
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            if stop is not None:
                stop.set()
            while not fut.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait({fut})
            raise

    # -- conversations on the model (model thread, lock held) ----------------------------------

    def take_over(self, conn: LlamaCppConnection) -> None:
        """Put `conn`'s conversation on the model: save the owner's, restore `conn`'s."""
        owner = self.owner
        if owner is conn:
            return
        if owner is not None and not owner.closed:
            self._keep(owner, self._save())
        saved = self._saved.pop(conn, None)
        if saved is not None and not self._restore(saved):
            log.warning("%s: its saved state did not load; recomputing it", conn.name)
        elif saved is None and conn.evicted:
            log.info("%s: recomputing its conversation (its saved state was evicted)", conn.name)
        conn.evicted = False
        self.owner = conn

    def _keep(self, conn: LlamaCppConnection, saved: _Saved) -> None:
        self._saved[conn] = saved
        self._saved.move_to_end(conn)
        total = self.saved_bytes
        while total > self.state_budget_bytes and self._saved:
            victim, state = self._saved.popitem(last=False)
            total -= state.nbytes
            victim.evicted = True
            log.warning(
                "%s: its cached conversation state (%.1f MB, %d tokens) was evicted to stay within the "
                "%.0f MB budget; its next turn recomputes it",
                victim.name,
                state.nbytes / 1e6,
                len(state.tokens),
                self.state_budget_bytes / 1e6,
            )

    def forget(self, conn: LlamaCppConnection) -> None:
        """`conn` closed: drop its saved state (its tokens stay on the model for prefix reuse)."""
        self._saved.pop(conn, None)
        if self.owner is conn:
            self.owner = None

    def _save(self) -> _Saved:
        import llama_cpp

        llama = self.llama
        ctx = llama._ctx.ctx
        size = int(llama_cpp.llama_state_seq_get_size(ctx, 0))
        data = (ctypes.c_uint8 * max(size, 1))()
        n = int(llama_cpp.llama_state_seq_get_data(ctx, data, size, 0))
        return _Saved(data, n, llama.input_ids[: llama.n_tokens].copy())

    def _restore(self, saved: _Saved) -> bool:
        import llama_cpp

        llama = self.llama
        ok = int(llama_cpp.llama_state_seq_set_data(llama._ctx.ctx, saved.data, saved.size, 0)) > 0
        n = len(saved.tokens) if ok else 0
        if not ok:
            llama._ctx.kv_cache_seq_rm(-1, 0, -1)
        llama.input_ids[:n] = saved.tokens[:n]
        llama.n_tokens = n
        llama._requires_eval = True
        return ok

    def sync(
        self, tokens: Sequence[int], upto: int, stop: threading.Event | None = None, limit: int | None = None
    ) -> int:
        """Evaluate `tokens[:upto]` after the longest prefix the model already holds, in batches (at
        most `limit` tokens; stopping early when `stop` is set). Returns that prefix's length."""
        import numpy as np

        llama = self.llama
        have = llama.input_ids[: llama.n_tokens]
        m = min(len(have), upto)
        diff = np.flatnonzero(have[:m] != np.asarray(tokens[:m], dtype=have.dtype))
        reused = int(diff[0]) if diff.size else m
        if reused < upto:
            llama.n_tokens = reused
            end = upto if limit is None else min(upto, reused + limit)
            i = reused
            while i < end and not (stop is not None and stop.is_set()):
                j = min(end, i + llama.n_batch)
                llama.eval(list(tokens[i:j]))
                i = j
        return reused


class LlamaCppConnection:
    """One client connection of the in-process engine: its caches, its prefills, its KV state."""

    def __init__(self, engine: LlamaCppEngine, name: str) -> None:
        self._engine = engine
        self.name = name
        self.cache = RenderCache()
        self.prompts = PromptCache()
        self.prefills = Prefills(name)
        self.evicted = False  # its saved state was dropped: the next turn recomputes
        self.closed = False
        self.last_prompt: Prompt | None = None
        self._grammars: dict[tuple[int, str], Any] = {}

    @property
    def saved_bytes(self) -> int:
        """Memory its saved state takes while another conversation is on the model (0: none)."""
        saved = self._engine._saved.get(self)
        return saved.nbytes if saved is not None else 0

    async def aclose(self) -> None:
        """Stop pending prefills and drop the saved state."""
        self.closed = True
        await self.prefills.aclose()
        async with self._engine.lock:
            self._engine.forget(self)

    # -- prompts -------------------------------------------------------------------------------

    def _render(self, turn: Turn) -> tuple[Callable[[bool], Prompt], list[dict[str, Any]]]:
        """Render the turn's new items now (event loop); return the prompt builder that renders
        them through the template and tokenizes them (model thread), and the chat tools."""
        rendered = self.cache.render(turn)
        tools, _ = self.cache.tools(turn.tools)
        system = {"role": "system", "content": turn.instructions} if turn.instructions else None
        messages = WithSystem(system, rendered.renderer.messages)
        offset = 1 if system is not None else 0
        parent = rendered.extra if isinstance(rendered.extra, TokenChain) else None
        config = (turn.instructions, self.cache.tools_version)
        render = self._engine.template.bind(tools)
        response_id = turn.response_id

        def build(generation: bool) -> Prompt:
            prompt = self.prompts.build(
                messages,
                render,
                self._engine.tokenize,
                parent=parent,
                changed_from=rendered.changed_from + offset if rendered.resumed else 0,
                config=config,
                generation=generation,
            )
            self.cache.attach(response_id, prompt.chain)
            self.last_prompt = prompt
            return prompt

        return build, tools

    # -- warm-ups ------------------------------------------------------------------------------

    def prefill(self, turn: Turn) -> None:
        """A warm-up: evaluate its tokens into this conversation's KV state in the background."""
        if self._engine.prefill_warmups:
            self.prefills.add(lambda: self._prefill(turn))

    async def _prefill(self, turn: Turn) -> None:
        engine = self._engine
        build, _ = self._render(turn)
        stop = threading.Event()
        async with engine.lock:
            prompt = await engine.work(lambda: build(False), stop)
        tokens = prompt.tokens()
        if len(tokens) >= engine.llama.n_ctx():
            log.info("%s: warm-up of %d tokens exceeds the context; not prefilled", self.name, len(tokens))
            return

        def step() -> bool:
            engine.take_over(self)
            reused = engine.sync(tokens, len(tokens), stop, limit=PREFILL_BATCH)
            return reused + PREFILL_BATCH >= len(tokens) or stop.is_set()

        while not self.closed:
            async with engine.lock:  # one batch at a time: other conversations' turns go in between
                if await engine.work(step, stop):
                    return

    # -- one turn ------------------------------------------------------------------------------

    async def run(self, turn: Turn) -> AsyncIterator[EngineOutput]:
        """Generate one turn (after this connection's pending prefills); failures become one Failure."""
        engine = self._engine
        await self.prefills.wait()
        build, tools = self._render(turn)
        kwargs = self._sampling(turn, tools)
        translator = ChunkTranslator(turn.response_id, custom_tool_names(turn.tools))
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()
        forced = _forced_tool(turn, tools)

        def emit(item: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def work() -> None:
            try:
                prompt = build(True)
                tokens = prompt.tokens()
                engine.take_over(self)
                cached = engine.sync(tokens, len(tokens) - 1, stop)  # all but the last: generate does it
                sampled = 0

                def counting(_ids: Any, _logits: Any) -> bool:
                    nonlocal sampled
                    sampled += 1
                    return stop.is_set()

                from llama_cpp import StoppingCriteriaList

                finish = None
                first = True
                for chunk in engine.llama.create_completion(
                    prompt=tokens, stream=True, stopping_criteria=StoppingCriteriaList([counting]), **kwargs
                ):
                    if stop.is_set():
                        break
                    choice = chunk["choices"][0]
                    finish = choice.get("finish_reason") or finish
                    emit(_chat_chunk(choice.get("text") or "", choice.get("finish_reason"), forced, first))
                    first = False
                usage = {
                    "prompt_tokens": len(tokens),
                    "completion_tokens": max(0, sampled - (finish == "stop")),
                    "prompt_tokens_details": {"cached_tokens": cached},
                }
                emit({"choices": [], "usage": usage})
            except Exception as exc:  # the library's own words go to the client
                emit(exc)
            emit(_END)

        async with engine.lock:
            worker = asyncio.ensure_future(engine.work(work, stop))
            try:
                while (item := await queue.get()) is not _END:
                    if isinstance(item, Exception):
                        yield Failure("engine_error", f"llama.cpp: {item}")
                        return
                    for out in translator.feed(item):
                        yield out
                for out in translator.finish():
                    yield out
            except UpstreamError as exc:
                yield Failure(exc.code, exc.message)
            finally:
                stop.set()
                while not worker.done():
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.wait({worker})

    def _sampling(self, turn: Turn, tools: list[dict[str, Any]]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"stop": [self._engine.template.eos] if self._engine.template.eos else []}
        kwargs.update(self._engine.extra)
        if turn.max_output_tokens is not None:
            kwargs["max_tokens"] = turn.max_output_tokens
        else:
            kwargs.setdefault("max_tokens", None)
        if turn.temperature is not None:
            kwargs["temperature"] = turn.temperature
        if turn.top_p is not None:
            kwargs["top_p"] = turn.top_p
        forced = _forced_tool(turn, tools)
        if forced is not None:
            kwargs["grammar"] = self._grammar(forced)
        return kwargs

    def _grammar(self, tool: Mapping[str, Any]) -> Any:
        """A JSON grammar for a forced call's arguments, built once per tool set."""
        from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

        fn = tool["function"]
        key = (self.cache.tools_version, str(fn["name"]))
        if key not in self._grammars:
            try:
                grammar = LlamaGrammar.from_json_schema(json.dumps(fn.get("parameters") or {}), verbose=False)
            except Exception:  # a schema the converter cannot express: any JSON
                grammar = LlamaGrammar.from_string(JSON_GBNF, verbose=False)
            self._grammars = {key: grammar}
        return self._grammars[key]


def _forced_tool(turn: Turn, tools: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The chat tool that `tool_choice` forces, if it names one."""
    choice = turn.tool_choice
    if isinstance(choice, Mapping) and choice.get("type") == "function":
        name = choice.get("name")
        return next((t for t in tools if t["function"]["name"] == name), None)
    return None


def _chat_chunk(
    text: str, finish: str | None, forced: Mapping[str, Any] | None, first: bool
) -> dict[str, Any]:
    """A completion piece as the chat chunk `ChunkTranslator` reads (a forced call's arguments
    stream as tool-call fragments, as llama-cpp-python's chat handler sends them)."""
    delta: dict[str, Any]
    if forced is None:
        delta = {"content": text}
    else:
        frag: dict[str, Any] = {"index": 0, "function": {"arguments": text}}
        if first:
            frag["function"]["name"] = forced["function"]["name"]
        delta = {"tool_calls": [frag]}
    reason = "tool_calls" if forced is not None and finish == "stop" else finish
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": reason}]}
