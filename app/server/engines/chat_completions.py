"""The bridge engine: Responses turns in, Chat Completions with SSE upstream, Responses events out.

Upstreams: llama.cpp's llama-server, Ollama, vLLM, SGLang, LM Studio, LocalAI, llama-cpp-python's
server -- anything that answers POST /v1/chat/completions with `stream: true`.

Chat Completions is stateless, so each turn sends the whole conversation. What keeps a turn's own
work proportional to its new input is the per-connection render cache: every rendered chat message
is kept as JSON bytes, and a turn that continues a response this connection produced renders only
the items added since (the previous turn's output and this turn's input), then splices the cached
bytes into the request body. Tools and the request head are cached the same way.

Three layers, the first two free of I/O so tests feed them plain data:

- `HistoryRenderer`: Responses items -> chat messages (`function_call` -> assistant `tool_calls`,
  `function_call_output` -> `tool` messages), incrementally, copy-on-write across forks.
- `ChunkTranslator`: chat chunks -> `EngineOutput` (content, reasoning, tool-call fragments by
  index in any order, finish_reason, usage with cached tokens); `UpstreamError` for bad data.
- `ChatCompletionsEngine` / `ChatConnection`: httpx streaming, SSE parsing, replica pinning,
  profile detection; every upstream failure becomes a `Failure` carrying the upstream's own words.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import re
import secrets
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import msgspec

from app.server.engines.base import (
    EngineOutput,
    Failure,
    Incomplete,
    Item,
    ItemDone,
    ReasoningDelta,
    TextDelta,
    ToolCallArgsDelta,
    ToolCallStart,
    Turn,
    Usage,
)
from app.server.engines.profiles import PROFILES, BackendProfile, cached_tokens, detect, get_profile

__all__ = [
    "PROFILES",
    "ChatCompletionsEngine",
    "ChatConnection",
    "ChunkTranslator",
    "HistoryRenderer",
    "UpstreamError",
    "body_words",
    "error_words",
    "normalize_base_url",
    "pick_replica",
    "sse_events",
    "tool_choice_to_chat",
    "tools_to_chat",
]

log = logging.getLogger(__name__)

MAX_ERROR_BODY = 64 * 1024  # bytes of an error answer we read to quote it
MAX_JSON_BODY = 16 * 1024 * 1024  # a non-streamed answer
RENDER_CACHE = 16  # rendered chains kept per connection (lanes and forks)
DISCOVERY_TIMEOUT_S = 2.0

_ENC = msgspec.json.Encoder()
_DEC = msgspec.json.Decoder()


class UpstreamError(Exception):
    """The upstream failed or sent something we cannot use; `message` quotes its own words."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# --------------------------------------------------------------------------------------------------
# URLs and replicas


def normalize_base_url(url: str) -> str:
    """`http://host:port`, `.../v1` or `.../v1/chat/completions` -> `http://host:port/v1` (no slash)."""
    raw = url.strip()
    if "://" not in raw:
        raw = "http://" + raw
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"upstream URL must be http(s)://host[:port][/v1], not {url!r}")
    path = parts.path.rstrip("/")
    for suffix in ("/chat/completions", "/completions"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
    if not re.search(r"/v\d+$", path):
        path += "/v1"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def pick_replica(key: str, n: int) -> int:
    """A stable replica index for a connection key (same key, same replica)."""
    if n <= 0:
        raise ValueError("no replicas")
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % n


# --------------------------------------------------------------------------------------------------
# items -> chat messages

_TEXT_PARTS = ("input_text", "output_text", "text", "summary_text", "reasoning_text")


def _content_to_chat(content: Any) -> str | list[dict[str, Any]]:
    """Responses content (string or parts) -> chat content: a string unless it holds images."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    parts: list[dict[str, Any]] = []
    for part in content:
        if not isinstance(part, Mapping):
            continue
        kind = part.get("type")
        if kind in _TEXT_PARTS and isinstance(part.get("text"), str):
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "refusal" and isinstance(part.get("refusal"), str):
            parts.append({"type": "text", "text": part["refusal"]})
        elif kind == "input_image" and isinstance(part.get("image_url"), str):
            parts.append({"type": "image_url", "image_url": {"url": part["image_url"]}})
        elif kind == "input_file":
            name = part.get("filename") or part.get("file_id") or "file"
            parts.append({"type": "text", "text": f"[attached file {name} not forwarded]"})
    if all(p["type"] == "text" for p in parts):
        return "\n".join(p["text"] for p in parts)
    return parts


def _output_text(output: Any) -> str:
    if isinstance(output, str):
        return output
    flat = _content_to_chat(output)
    return flat if isinstance(flat, str) else _ENC.encode(flat).decode()


class HistoryRenderer:
    """Responses items -> chat messages, appended incrementally; each message's JSON kept as bytes.

    Messages are never mutated in place: merging a function call into the previous assistant
    message replaces that list entry. A `snapshot()` therefore stays valid while the lists grow,
    and `resume()` shares the lists in O(1) unless another continuation already diverged.
    """

    def __init__(self, *, developer_role: bool = False) -> None:
        self.developer_role = developer_role
        self.messages: list[dict[str, Any]] = []
        self.fragments: list[bytes] = []
        self.items = 0  # items consumed so far
        self.last_item: Item | None = None

    def extend(self, items: Iterable[Item]) -> None:
        """Render `items` after what is already there; only the touched messages are re-encoded."""
        dirty = len(self.messages)
        for item in items:
            self.items += 1
            self.last_item = item
            touched = self._add(item)
            if touched is not None:
                dirty = min(dirty, touched)
        del self.fragments[dirty:]
        self.fragments.extend(_ENC.encode(m) for m in self.messages[dirty:])

    def _add(self, item: Item) -> int | None:
        kind = item.get("type", "message")
        msgs = self.messages
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                return None
            if role == "developer" and not self.developer_role:
                role = "system"
            msgs.append({"role": role, "content": _content_to_chat(item.get("content"))})
            return len(msgs) - 1
        if kind == "function_call":
            call = {
                "id": str(item.get("call_id") or item.get("id") or ""),
                "type": "function",
                "function": {
                    "name": str(item.get("name", "")),
                    "arguments": _args_text(item.get("arguments")),
                },
            }
            last = msgs[-1] if msgs else None
            if last is not None and last.get("role") == "assistant":
                merged = dict(last)
                merged["tool_calls"] = [*last.get("tool_calls", ()), call]
                msgs[-1] = merged
                return len(msgs) - 1
            # "" rather than null: llama-cpp-python's server rejects a null content (others accept both)
            msgs.append({"role": "assistant", "content": "", "tool_calls": [call]})
            return len(msgs) - 1
        if kind == "function_call_output":
            msgs.append(
                {
                    "role": "tool",
                    "tool_call_id": str(item.get("call_id", "")),
                    "content": _output_text(item.get("output", "")),
                }
            )
            return len(msgs) - 1
        return None  # reasoning and hosted-tool items have no chat form

    def snapshot(self) -> _Snapshot:
        """The current state, cheap to keep and to resume from."""
        return _Snapshot(
            self.messages,
            self.fragments,
            len(self.messages),
            self.messages[-1] if self.messages else None,
            self.fragments[-1] if self.fragments else None,
            self.items,
            self.last_item,
            self.developer_role,
        )

    @classmethod
    def resume(cls, snap: _Snapshot) -> HistoryRenderer:
        """Continue from `snap`: shares its lists when nothing diverged since, copies otherwise."""
        r = cls(developer_role=snap.developer_role)
        n = snap.n_messages
        shared = len(snap.messages) == n and (n == 0 or snap.messages[-1] is snap.last_message)
        if shared:
            r.messages, r.fragments = snap.messages, snap.fragments
        elif n:
            r.messages = [*snap.messages[: n - 1], snap.last_message]  # type: ignore[list-item]
            r.fragments = [*snap.fragments[: n - 1], snap.last_fragment]  # type: ignore[list-item]
        r.items, r.last_item = snap.n_items, snap.last_item
        return r

    def messages_json(self, system: bytes | None) -> bytes:
        """The `messages` array as JSON, with an optional leading system message."""
        frags = self.fragments if system is None else [system, *self.fragments]
        return b"[" + b",".join(frags) + b"]"


@dataclass(frozen=True, slots=True)
class _Snapshot:
    messages: list[dict[str, Any]]
    fragments: list[bytes]
    n_messages: int
    last_message: dict[str, Any] | None
    last_fragment: bytes | None
    n_items: int
    last_item: Item | None
    developer_role: bool


def _args_text(args: Any) -> str:
    if isinstance(args, str):
        return args
    if args is None:
        return "{}"
    return _ENC.encode(args).decode()


def tools_to_chat(tools: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Responses function tools -> chat tools (other tool types have no chat form and are dropped)."""
    out = []
    for tool in tools:
        if tool.get("type", "function") != "function" or not isinstance(tool.get("name"), str):
            continue
        fn: dict[str, Any] = {"name": tool["name"]}
        if isinstance(tool.get("description"), str):
            fn["description"] = tool["description"]
        fn["parameters"] = tool.get("parameters") or {"type": "object", "properties": {}}
        if tool.get("strict") is not None:
            fn["strict"] = bool(tool["strict"])
        out.append({"type": "function", "function": fn})
    return out


def tool_choice_to_chat(choice: Any) -> Any:
    """Responses tool_choice -> chat tool_choice."""
    if isinstance(choice, Mapping) and choice.get("type") == "function":
        return {"type": "function", "function": {"name": str(choice.get("name", ""))}}
    if choice in ("auto", "none", "required"):
        return choice
    return "auto"


# --------------------------------------------------------------------------------------------------
# chat chunks -> engine outputs


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
    """

    def __init__(self, response_id: str) -> None:
        self.response_id = response_id
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
        if self._live is None and call.name:
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


# --------------------------------------------------------------------------------------------------
# SSE


async def sse_events(chunks: AsyncIterator[bytes], head: bytearray) -> AsyncIterator[bytes]:
    """`data:` payloads of an SSE byte stream (multi-line data joined by newlines). The first bytes
    are copied into `head` for error messages when the body turns out not to be SSE at all."""
    buf = bytearray()
    data: list[bytes] = []
    async for chunk in chunks:
        if len(head) < 512:
            head += chunk[: 512 - len(head)]
        buf += chunk
        start = 0
        while (nl := buf.find(b"\n", start)) >= 0:
            line = bytes(buf[start:nl]).rstrip(b"\r")
            start = nl + 1
            if not line:
                if data:
                    yield b"\n".join(data)
                    data = []
            elif line.startswith(b"data:"):
                value = line[5:]
                data.append(value[1:] if value.startswith(b" ") else value)
        del buf[:start]
    tail = bytes(buf).rstrip(b"\r")
    if tail.startswith(b"data:"):
        value = tail[5:]
        data.append(value[1:] if value.startswith(b" ") else value)
    if data:
        yield b"\n".join(data)


def _decode_utf8(data: bytes, events: int) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = data[exc.start : exc.start + 4]
        raise UpstreamError(
            "upstream_bad_response",
            f"upstream sent invalid UTF-8 in event {events + 1} (bytes {bad!r} at offset {exc.start})",
        ) from None


# --------------------------------------------------------------------------------------------------
# the engine


@dataclass
class _UpstreamInfo:
    """What one upstream told us about itself (asked once, lazily)."""

    profile: BackendProfile
    models: list[str]
    slots: int | None = None


class ChatCompletionsEngine:
    """Bridge to one or more Chat Completions upstreams; each connection is pinned to one of them.

    `upstreams`: base URLs (replicas of one deployment). `model`: upstream model name (default: the
    request's model when the upstream lists it, else the upstream's first model). `profile`: a name
    from `profiles.PROFILES`, or None to detect it from GET /v1/models.
    """

    name = "chat"

    def __init__(
        self,
        upstreams: Sequence[str] | str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        profile: str | BackendProfile | None = None,
        extra_body: Mapping[str, Any] | None = None,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 300.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        urls = [upstreams] if isinstance(upstreams, str) else list(upstreams)
        if not urls:
            raise ValueError("the chat engine needs at least one --upstream URL")
        self.upstreams = [normalize_base_url(u) for u in urls]
        self.model = model or None
        self.profile = get_profile(profile) if isinstance(profile, str) else profile
        self.extra_body = dict(extra_body or {})
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(read_timeout_s, connect=connect_timeout_s),
            transport=transport,
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
        )
        self._info: dict[str, _UpstreamInfo] = {}
        self._info_lock = asyncio.Lock()
        self._seq = itertools.count()

    def connect(self) -> ChatConnection:
        """A connection pinned to one replica by a hash of its key."""
        n = next(self._seq)
        key = f"conn-{n}-{secrets.token_hex(6)}"
        return ChatConnection(self, key, n, pick_replica(key, len(self.upstreams)))

    async def aclose(self) -> None:
        """Close the pooled HTTP connections."""
        await self._client.aclose()

    async def info(self, base: str) -> _UpstreamInfo:
        """Profile, models and slot count of `base`, asked once; a failed probe is retried next turn."""
        known = self._info.get(base)
        if known is not None:
            return known
        async with self._info_lock:
            if base in self._info:
                return self._info[base]
            models: list[str] = []
            payload: Any = None
            reached = True
            try:
                resp = await self._client.get(f"{base}/models", timeout=DISCOVERY_TIMEOUT_S)
                if resp.status_code < 400:
                    payload = _DEC.decode(resp.content)
            except (httpx.HTTPError, msgspec.DecodeError) as exc:
                reached = not isinstance(exc, httpx.TransportError)
                log.info("model list of %s unavailable: %s", base, exc)
            if isinstance(payload, Mapping) and isinstance(payload.get("data"), list):
                models = [str(m["id"]) for m in payload["data"] if isinstance(m, Mapping) and "id" in m]
            profile = self.profile or detect(payload, base)
            info = _UpstreamInfo(profile, models)
            if profile.slot_pinning:
                info.slots = await self._slots(base)
            if reached:
                self._info[base] = info
            return info

    async def _slots(self, base: str) -> int | None:
        root = base.rsplit("/v", 1)[0]
        try:
            resp = await self._client.get(f"{root}/props", timeout=DISCOVERY_TIMEOUT_S)
            slots = _DEC.decode(resp.content).get("total_slots") if resp.status_code < 400 else None
        except (httpx.HTTPError, msgspec.DecodeError, AttributeError):
            return None
        return slots if isinstance(slots, int) and slots > 0 else None


class ChatConnection:
    """One client connection: its pinned replica and its render caches."""

    def __init__(self, engine: ChatCompletionsEngine, key: str, seq: int, replica: int) -> None:
        self._engine = engine
        self.key = key
        self.seq = seq
        self.replica = replica
        self._chains: OrderedDict[str, _Snapshot] = OrderedDict()  # response id -> rendered history
        self._tools_src: Sequence[Mapping[str, Any]] | None = None
        self._tools_json = b""
        self._system_src: str | None = None
        self._system_json: bytes | None = None
        self.rendered_items = 0  # items rendered by the last turn (how much work it did)

    @property
    def upstream(self) -> str:
        return self._engine.upstreams[self.replica]

    async def aclose(self) -> None:
        """Forget the caches."""
        self._chains.clear()

    # -- rendering ---------------------------------------------------------------------------

    def render(self, turn: Turn, profile: BackendProfile) -> HistoryRenderer:
        """The turn's whole conversation as chat messages, reusing what this connection rendered."""
        renderer: HistoryRenderer | None = None
        snap = self._chains.get(turn.previous_response_id or "")
        history = turn.history
        if (
            snap is not None
            and snap.developer_role == profile.developer_role
            and len(history) >= snap.n_items
        ):
            boundary = history[snap.n_items - 1] if snap.n_items else None
            if snap.n_items == 0 or boundary is snap.last_item or boundary == snap.last_item:
                renderer = HistoryRenderer.resume(snap)
                self._chains.move_to_end(turn.previous_response_id or "")
        before = 0
        if renderer is None:
            renderer = HistoryRenderer(developer_role=profile.developer_role)
        else:
            before = renderer.items
        renderer.extend(history[renderer.items :])
        renderer.extend(turn.new_input)
        self.rendered_items = renderer.items - before
        self._chains[turn.response_id] = renderer.snapshot()
        while len(self._chains) > RENDER_CACHE:
            self._chains.popitem(last=False)
        return renderer

    def body(self, turn: Turn, info: _UpstreamInfo) -> bytes:
        """The request body, with the cached history, tools and system message spliced in."""
        profile = info.profile
        renderer = self.render(turn, profile)
        if turn.instructions != self._system_src:
            self._system_src = turn.instructions
            self._system_json = (
                _ENC.encode({"role": "system", "content": turn.instructions}) if turn.instructions else None
            )
        head: dict[str, Any] = {"model": self._model(turn, info), "stream": True}
        if profile.include_usage:
            head["stream_options"] = {"include_usage": True}
        if turn.max_output_tokens is not None:
            head["max_tokens"] = turn.max_output_tokens
        if turn.temperature is not None:
            head["temperature"] = turn.temperature
        if turn.top_p is not None:
            head["top_p"] = turn.top_p
        if profile.slot_pinning and info.slots:
            head["id_slot"] = self.seq % info.slots
        head.update(profile.extra_body)
        head.update(self._engine.extra_body)
        tools = b""
        if turn.tools:
            if turn.tools is not self._tools_src and turn.tools != self._tools_src:
                chat_tools = tools_to_chat(turn.tools)
                self._tools_json = _ENC.encode(chat_tools) if chat_tools else b""
                self._tools_src = turn.tools
            if self._tools_json:
                tools = b',"tools":' + self._tools_json
                head["tool_choice"] = tool_choice_to_chat(turn.tool_choice)
                head["parallel_tool_calls"] = turn.parallel_tool_calls
        return (
            b'{"messages":' + renderer.messages_json(self._system_json) + tools + b"," + _ENC.encode(head)[1:]
        )

    def _model(self, turn: Turn, info: _UpstreamInfo) -> str:
        if self._engine.model:
            return self._engine.model
        if not info.models or turn.model in info.models:
            return turn.model
        return info.models[0]

    # -- one turn ---------------------------------------------------------------------------

    async def run(self, turn: Turn) -> AsyncIterator[EngineOutput]:
        """Stream one turn from the pinned upstream; every failure ends as one `Failure`."""
        try:
            async for out in self._run(turn):
                yield out
        except UpstreamError as exc:
            yield Failure(exc.code, exc.message)

    async def _run(self, turn: Turn) -> AsyncIterator[EngineOutput]:
        engine = self._engine
        n = len(engine.upstreams)
        for attempt in range(n):
            base = self.upstream
            info = await engine.info(base)
            body = self.body(turn, info)
            headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
            if info.profile.session_header:
                headers[info.profile.session_header] = self.key
            try:
                async for out in self._stream(base, body, headers, turn):
                    yield out
                return
            except _Refused as exc:
                if attempt + 1 >= n:
                    raise UpstreamError(
                        "upstream_unreachable", f"cannot connect to the upstream at {base}: {exc}"
                    ) from None
                log.warning("replica %s refused (%s); re-pinning the connection", base, exc)
                self.replica = (self.replica + 1) % n

    async def _stream(
        self, base: str, body: bytes, headers: dict[str, str], turn: Turn
    ) -> AsyncIterator[EngineOutput]:
        url = f"{base}/chat/completions"
        client = self._engine._client
        translator = ChunkTranslator(turn.response_id)
        events = 0
        try:
            async with client.stream("POST", url, content=body, headers=headers) as resp:
                ctype = resp.headers.get("content-type", "").lower()
                if resp.status_code >= 400:
                    raw = await _read_capped(resp, MAX_ERROR_BODY)
                    raise UpstreamError(
                        "upstream_error",
                        f"upstream answered HTTP {resp.status_code}: {body_words(raw, ctype) or resp.reason_phrase}",
                    )
                if "html" in ctype:
                    raw = await _read_capped(resp, MAX_ERROR_BODY)
                    raise UpstreamError(
                        "upstream_bad_response",
                        f"upstream answered with a web page, not an event stream: {body_words(raw, ctype)}",
                    )
                if "application/json" in ctype:  # the server ignored stream: true
                    raw = await _read_capped(resp, MAX_JSON_BODY)
                    for out in self._whole(raw, translator):
                        yield out
                    return
                head = bytearray()
                done = False
                async for data in sse_events(resp.aiter_bytes(), head):
                    text = _decode_utf8(data, events)
                    events += 1
                    if text.strip() == "[DONE]":
                        done = True
                        break
                    try:
                        chunk = _DEC.decode(text)
                    except msgspec.DecodeError:
                        raise UpstreamError(
                            "upstream_bad_response",
                            f"upstream sent an event that is not JSON: {text[:200]!r}",
                        ) from None
                    for out in translator.feed(chunk):
                        yield out
                if events == 0 and head.strip():
                    raise UpstreamError(
                        "upstream_bad_response",
                        f"upstream's answer is not an event stream: {body_words(bytes(head), ctype)}",
                    )
                if events == 0:
                    raise await self._explain_empty(url, body, headers)
                if not done and not translator.saw_finish:
                    raise UpstreamError(
                        "upstream_disconnected",
                        f"upstream closed the stream before the answer was finished ({events} events received)",
                    )
        except httpx.ConnectError as exc:
            if events == 0:
                raise _Refused(_words(exc)) from None
            raise UpstreamError(
                "upstream_unreachable", f"lost the upstream at {base}: {_words(exc)}"
            ) from None
        except httpx.TimeoutException as exc:
            what = "connecting to" if isinstance(exc, httpx.ConnectTimeout) else "waiting for"
            raise UpstreamError(
                "upstream_timeout", f"timed out {what} the upstream at {base} ({events} events received)"
            ) from None
        except httpx.HTTPError as exc:
            raise UpstreamError(
                "upstream_disconnected",
                f"upstream connection broke after {events} events: {_words(exc)}",
            ) from None
        for out in translator.finish():
            yield out

    async def _explain_empty(self, url: str, body: bytes, headers: dict[str, str]) -> UpstreamError:
        """An empty 200 stream: some servers (llama-cpp-python) fail that way after the headers went
        out. Ask once more without streaming and one token, to quote their own words."""
        words = "no words given"
        again = body.replace(b'"stream":true', b'"stream":false,"max_tokens":1', 1)
        for _ in range(2):  # the pooled connection the empty stream came on may be dead: one retry
            try:
                resp = await self._engine._client.post(url, content=again, headers=headers)
            except httpx.HTTPError as exc:
                words = _words(exc)
                continue
            if resp.status_code >= 400:
                words = f"HTTP {resp.status_code}: {body_words(resp.content, resp.headers.get('content-type', ''))}"
            break
        return UpstreamError(
            "upstream_error", f"upstream ended the stream without sending anything ({words})"
        )

    def _whole(self, raw: bytes, translator: ChunkTranslator) -> list[EngineOutput]:
        try:
            data = _DEC.decode(raw)
        except msgspec.DecodeError:
            raise UpstreamError(
                "upstream_bad_response", f"upstream sent invalid JSON: {raw[:200]!r}"
            ) from None
        if isinstance(data, Mapping) and isinstance(data.get("choices"), list):
            for choice in data["choices"]:
                msg = choice.get("message") if isinstance(choice, Mapping) else None
                if isinstance(msg, dict) and isinstance(msg.get("tool_calls"), list):
                    msg["tool_calls"] = [
                        {**c, "index": c.get("index", i)}
                        for i, c in enumerate(msg["tool_calls"])
                        if isinstance(c, Mapping)
                    ]
        return [*translator.feed(data), *translator.finish()]


class _Refused(Exception):
    """Connecting failed before anything was sent: another replica may take the connection."""


def _words(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause) and str(cause) not in text:
        text = f"{text} ({cause})"
    return text


async def _read_capped(resp: httpx.Response, limit: int) -> bytes:
    out = bytearray()
    async for chunk in resp.aiter_bytes():
        out += chunk
        if len(out) >= limit:
            break
    return bytes(out[:limit])
