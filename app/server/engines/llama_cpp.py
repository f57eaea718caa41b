"""The in-process engine: llama-cpp-python running a GGUF file (optional extra `slipstream[local]`).

It shares the bridge's rendering (`HistoryRenderer`) and chunk translation (`ChunkTranslator`):
llama-cpp-python's `create_chat_completion(stream=True)` yields the same chunks a Chat Completions
server sends. Generation runs in a worker thread (the model is not thread-safe: one turn at a time,
behind a lock), its chunks hop back to the event loop through a queue.

KV/prefix cache across turns: llama-cpp-python reuses the longest common prefix of the tokens it
evaluated last, so a connection's next turn only evaluates its new tokens. When another connection
takes the model over, the previous owner's state is saved and restored on its next turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from app.server.engines.base import EngineOutput, Failure, Turn
from app.server.engines.chat_completions import (
    ChunkTranslator,
    UpstreamError,
    tool_choice_to_chat,
    tools_to_chat,
)
from app.server.engines.profiles import PROFILES

__all__ = ["LlamaCppConnection", "LlamaCppEngine", "missing_reason"]

_END = object()


def missing_reason() -> str | None:
    """Why the engine cannot run here, or None when llama-cpp-python is importable."""
    if importlib.util.find_spec("llama_cpp") is None:
        return (
            "--engine gguf needs llama-cpp-python: pip install 'slipstream[local]' "
            "(it compiles llama.cpp from source, about 6 minutes on 2 cores)"
        )
    return None


class LlamaCppEngine:
    """One GGUF model loaded in this process, shared by every connection."""

    name = "gguf"

    def __init__(
        self, model_file: str | Path, *, n_ctx: int = 8192, extra: dict[str, Any] | None = None
    ) -> None:
        import llama_cpp

        self.model_file = Path(model_file)
        self.llama = llama_cpp.Llama(str(self.model_file), n_ctx=n_ctx, verbose=False)
        self.extra = dict(extra or {})
        self.lock = asyncio.Lock()
        self.owner: LlamaCppConnection | None = None

    def connect(self) -> LlamaCppConnection:
        """A connection with its own render cache and saved KV state."""
        return LlamaCppConnection(self)

    async def aclose(self) -> None:
        """Free the model."""
        with contextlib.suppress(Exception):
            self.llama.close()


class LlamaCppConnection:
    """One client connection of the in-process engine."""

    def __init__(self, engine: LlamaCppEngine) -> None:
        from app.server.engines.chat_completions import ChatConnection

        self._engine = engine
        self._render = ChatConnection.__new__(ChatConnection)  # reuse the render cache logic only
        ChatConnection.__init__(self._render, engine, "gguf", 0, 0)  # type: ignore[arg-type]
        self._state: Any = None

    async def aclose(self) -> None:
        """Drop the saved state."""
        self._state = None
        if self._engine.owner is self:
            self._engine.owner = None

    async def run(self, turn: Turn) -> AsyncIterator[EngineOutput]:
        """Generate one turn in the worker thread; failures become one Failure."""
        engine = self._engine
        renderer = self._render.render(turn, PROFILES["generic"])
        messages = list(renderer.messages)
        if turn.instructions:
            messages.insert(0, {"role": "system", "content": turn.instructions})
        kwargs: dict[str, Any] = {"messages": messages, "stream": True, **engine.extra}
        if turn.max_output_tokens is not None:
            kwargs["max_tokens"] = turn.max_output_tokens
        if turn.temperature is not None:
            kwargs["temperature"] = turn.temperature
        if turn.top_p is not None:
            kwargs["top_p"] = turn.top_p
        tools = tools_to_chat(turn.tools)
        if tools:
            kwargs["tools"] = tools
            kwargs["tool_choice"] = tool_choice_to_chat(turn.tool_choice)
        translator = ChunkTranslator(turn.response_id)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()

        def work() -> None:
            try:
                for chunk in engine.llama.create_chat_completion(**kwargs):
                    if stop.is_set():
                        break
                    loop.call_soon_threadsafe(queue.put_nowait, chunk)
            except Exception as exc:  # the library's own words go to the client
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            loop.call_soon_threadsafe(queue.put_nowait, _END)

        async with engine.lock:
            self._take_over()
            worker = loop.run_in_executor(None, work)
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
                await asyncio.shield(worker)

    def _take_over(self) -> None:
        engine = self._engine
        if engine.owner is self:
            return
        if engine.owner is not None:
            engine.owner._state = engine.llama.save_state()
        if self._state is not None:
            engine.llama.load_state(self._state)
        engine.owner = self
