"""Chat Completions stream chunks -> engine outputs, and the upstream's own words for errors.

Free of I/O so tests feed it plain data. Used by the bridge (chunks from an upstream's SSE stream)
and by the in-process engine (chunks from llama-cpp-python).

- `ChunkTranslator`: chat chunks -> `EngineOutput` (content, reasoning, tool-call fragments by
  index in any order, finish_reason, usage with cached tokens); `UpstreamError` for bad data.
- `error_words` / `body_words`: the message inside an error body (JSON, HTML or text).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from app.server.engines.base import (
    EngineOutput,
    Incomplete,
    ItemDone,
    ReasoningDelta,
    TextDelta,
    ToolCallArgsDelta,
    ToolCallStart,
    Usage,
)
from app.server.engines.profiles import cached_tokens

__all__ = ["ChunkTranslator", "UpstreamError", "body_words", "decode_utf8", "error_words", "freeform_input"]

_ENC = msgspec.json.Encoder()
_DEC = msgspec.json.Decoder()


class UpstreamError(Exception):
    """The upstream failed or sent something we cannot use; `message` quotes its own words."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class _Call:
    index: int
    id: str = ""
    name: str = ""
    args: list[str] = field(default_factory=list)


class ChunkTranslator:
    """Chat Completions stream chunks -> `EngineOutput`s for one turn.

    The first tool call streams live; calls at other indices are buffered and emitted at the end in
    index order, so fragments may arrive interleaved or out of order. Text that follows a tool call
    is held back until the calls are closed. `finish()` validates every call's arguments as JSON.

    Calls to a name in `custom` (freeform tools, sent upstream as a function taking one string
    `input`, see `chat_render.tools_to_chat`) are buffered too and come out as custom tool calls
    carrying that string, the shape the client executes.
    """

    def __init__(self, response_id: str, custom: frozenset[str] = frozenset()) -> None:
        self.response_id = response_id
        self.custom = custom
        self.finish_reason: str | None = None
        self.chunks = 0
        self._calls: dict[int, _Call] = {}
        self._live: int | None = None
        self._held: list[str] = []  # text after tool calls
        self._usage: dict[str, int] = {}
        self._cached: int | None = None

    @property
    def saw_finish(self) -> bool:
        return self.finish_reason is not None

    def feed(self, chunk: Any) -> list[EngineOutput]:
        """Outputs for one decoded chunk; UpstreamError for an error chunk or a bad shape."""
        if not isinstance(chunk, Mapping):
            raise UpstreamError(
                "upstream_bad_response", f"upstream sent a chunk that is not an object: {chunk!r:.200}"
            )
        self.chunks += 1
        if chunk.get("error") is not None:
            raise UpstreamError("upstream_error", f"upstream reported an error: {error_words(chunk)}")
        out: list[EngineOutput] = []
        self._read_usage(chunk)
        choices = chunk.get("choices") or []
        if not isinstance(choices, list):
            raise UpstreamError(
                "upstream_bad_response", f"upstream chunk has non-list choices: {choices!r:.200}"
            )
        for choice in choices:
            if not isinstance(choice, Mapping) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if not isinstance(delta, Mapping):
                delta = choice.get("message")
            self._delta(delta if isinstance(delta, Mapping) else {}, out)
            reason = choice.get("finish_reason")
            if isinstance(reason, str) and reason:
                self.finish_reason = reason
        return out

    def _delta(self, delta: Mapping[str, Any], out: list[EngineOutput]) -> None:
        reasoning = delta.get("reasoning_content")
        if not isinstance(reasoning, str):
            reasoning = delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            if self._calls:
                pass  # reasoning after a tool call has nowhere to go; drop it
            else:
                out.append(ReasoningDelta(reasoning))
        content = delta.get("content")
        if isinstance(content, str) and content:
            if self._calls:
                self._held.append(content)
            else:
                out.append(TextDelta(content))
        tool_calls = delta.get("tool_calls")
        if isinstance(tool_calls, list):
            for pos, frag in enumerate(tool_calls):
                if isinstance(frag, Mapping):
                    self._fragment(frag, pos, out)
        legacy = delta.get("function_call")  # llama-cpp-python sends it beside tool_calls: use it alone only
        if isinstance(legacy, Mapping) and not isinstance(tool_calls, list):
            self._fragment({"index": 0, "function": legacy}, 0, out)

    def _fragment(self, frag: Mapping[str, Any], pos: int, out: list[EngineOutput]) -> None:
        index = frag.get("index", pos)
        if not isinstance(index, int):
            raise UpstreamError("upstream_bad_response", f"tool-call fragment has a bad index: {frag!r:.200}")
        call = self._calls.get(index)
        if call is None:
            call = self._calls[index] = _Call(index)
        if isinstance(frag.get("id"), str) and frag["id"] and not call.id:
            call.id = frag["id"]
        fn = frag.get("function")
        piece = ""
        if isinstance(fn, Mapping):
            if isinstance(fn.get("name"), str) and fn["name"] and not call.name:
                call.name = fn["name"]
            args = fn.get("arguments")
            if args is not None:
                piece = args if isinstance(args, str) else _ENC.encode(args).decode()
        if piece:
            call.args.append(piece)
        if self._live is None and call.name and call.name not in self.custom:
            self._live = index
            out.append(ToolCallStart(call_id=self._call_id(call), name=call.name))
            if call.args:
                out.append(ToolCallArgsDelta("".join(call.args)))
        elif self._live == index and piece:
            out.append(ToolCallArgsDelta(piece))

    def _call_id(self, call: _Call) -> str:
        if not call.id:
            call.id = "call_" + hashlib.sha256(f"{self.response_id}:{call.index}".encode()).hexdigest()[:16]
        return call.id

    def _read_usage(self, chunk: Mapping[str, Any]) -> None:
        usage = chunk.get("usage")
        if isinstance(usage, Mapping):
            for key in ("prompt_tokens", "completion_tokens"):
                if isinstance(usage.get(key), int):
                    self._usage[key] = int(usage[key])
            details = usage.get("completion_tokens_details")
            if isinstance(details, Mapping) and isinstance(details.get("reasoning_tokens"), int):
                self._usage["reasoning_tokens"] = int(details["reasoning_tokens"])
        cached = cached_tokens(chunk)
        if cached is not None:
            self._cached = cached

    def finish(self) -> list[EngineOutput]:
        """Close the calls (validated), release held text, report usage and how the turn ended."""
        calls = sorted(self._calls.values(), key=lambda c: c.index)
        for call in calls:
            if not call.name:
                raise UpstreamError(
                    "invalid_tool_call", f"upstream sent tool-call #{call.index} without a function name"
                )
            text = "".join(call.args)
            if text.strip():
                try:
                    msgspec.json.decode(text)
                except msgspec.DecodeError as exc:
                    raise UpstreamError(
                        "invalid_tool_call",
                        f"the model's call to {call.name} has arguments that are not valid JSON ({exc}): {text[:300]}",
                    ) from None
        out: list[EngineOutput] = []
        for call in calls:
            text = "".join(call.args)
            if call.index == self._live:
                if not text.strip():
                    out.append(ToolCallArgsDelta("{}"))
                out.append(ItemDone())
                continue
            if call.name in self.custom:
                out.append(ToolCallStart(call_id=self._call_id(call), name=call.name, custom=True))
                out.append(ToolCallArgsDelta(freeform_input(call.name, text)))
                out.append(ItemDone())
                continue
            out.append(ToolCallStart(call_id=self._call_id(call), name=call.name))
            out.append(ToolCallArgsDelta(text if text.strip() else "{}"))
            out.append(ItemDone())
        if self._held:
            out.append(TextDelta("".join(self._held)))
            out.append(ItemDone())
        if "prompt_tokens" in self._usage or "completion_tokens" in self._usage:
            out.append(
                Usage(
                    input_tokens=self._usage.get("prompt_tokens", 0),
                    output_tokens=self._usage.get("completion_tokens", 0),
                    cached_tokens=self._cached or 0,
                    reasoning_tokens=self._usage.get("reasoning_tokens", 0),
                )
            )
        if self.finish_reason == "length":
            out.append(Incomplete("max_output_tokens"))
        elif self.finish_reason == "content_filter":
            out.append(Incomplete("content_filter"))
        return out


def freeform_input(name: str, arguments: str) -> str:
    """A custom tool's raw input from the arguments of its function form: `{"input": "..."}`, or a
    bare JSON string, or nothing (empty input)."""
    if not arguments.strip():
        return ""
    value = msgspec.json.decode(arguments)  # finish() validated it
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("input"), str):
        return str(value["input"])
    raise UpstreamError(
        "invalid_tool_call",
        f'the model\'s call to the freeform tool {name} must give its text as a string "input": {arguments[:300]}',
    )


def error_words(payload: Any) -> str:
    """The message inside an OpenAI-, Ollama- or FastAPI-style error body."""
    if isinstance(payload, Mapping):
        err = payload.get("error")
        if isinstance(err, Mapping):
            msg = err.get("message") or err.get("msg")
            if isinstance(msg, str) and msg:
                return msg
            return _ENC.encode(err).decode()[:500]
        if isinstance(err, str) and err:
            return err
        detail = payload.get("detail")
        if isinstance(detail, str) and detail:
            return detail
        if isinstance(detail, list) and detail:
            return "; ".join(str(d.get("msg", d)) if isinstance(d, Mapping) else str(d) for d in detail)[:500]
        msg = payload.get("message")
        if isinstance(msg, str) and msg:
            return msg
    return _ENC.encode(payload).decode()[:500] if payload is not None else ""


_TAG = re.compile(rb"<[^>]+>")
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def body_words(raw: bytes, content_type: str = "") -> str:
    """Readable words from an error body: the JSON error message, an HTML page's title and text, or text."""
    stripped = raw.strip()
    if stripped[:1] in (b"{", b"["):
        try:
            return error_words(_DEC.decode(stripped))
        except msgspec.DecodeError:
            pass
    if "html" in content_type or stripped[:1] == b"<":
        title = _TITLE.search(stripped)
        text = _TAG.sub(b" ", stripped)
        words = " ".join(text.decode("utf-8", "replace").split())
        head = title.group(1).decode("utf-8", "replace").strip() if title else ""
        if head and not words.startswith(head):
            words = f"{head}: {words}"
        return f"(HTML page) {words[:300]}"
    return " ".join(stripped.decode("utf-8", "replace").split())[:500]


def decode_utf8(data: bytes, events: int) -> str:
    """An SSE payload as text; UpstreamError naming the event and offset of invalid UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = data[exc.start : exc.start + 4]
        raise UpstreamError(
            "upstream_bad_response",
            f"upstream sent invalid UTF-8 in event {events + 1} (bytes {bad!r} at offset {exc.start})",
        ) from None
