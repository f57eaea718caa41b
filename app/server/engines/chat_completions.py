"""The bridge engine: Responses turns in, Chat Completions with SSE upstream, Responses events out.

Upstreams: llama.cpp's llama-server, Ollama, vLLM, SGLang, LM Studio, LocalAI, llama-cpp-python's
server -- anything that answers POST /v1/chat/completions with `stream: true`.

Chat Completions is stateless, so each turn sends the whole conversation. What keeps a turn's own
work proportional to its new input is the per-connection `RenderCache` (`chat_render.py`): every
rendered chat message is kept as JSON bytes, and a turn that continues a response this connection
produced renders only the items added since, then splices the cached bytes into the request body.
What keeps the upstream's work proportional to it is its prefix cache: each connection is pinned to
one replica (and, on llama-server, one slot), and a warm-up (`generate: false`) is sent ahead as a
prefill where the profile allows it (`profiles.py`), so the next turn finds its prefix cached.

Here: `ChatCompletionsEngine` / `ChatConnection` (httpx streaming, replica pinning, profile
detection, prefills). The stream is framed by the protocol's `SSEParser` and translated by
`chat_chunks.ChunkTranslator`; every upstream failure becomes a `Failure` carrying its own words.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import msgspec

from app.protocol.codec import SSEParser
from app.server.engines.base import EngineOutput, Failure, Turn
from app.server.engines.chat_chunks import ChunkTranslator, UpstreamError, body_words, decode_utf8
from app.server.engines.chat_render import RenderCache, custom_tool_names, tool_choice_to_chat
from app.server.engines.profiles import BackendProfile, detect, get_profile
from app.server.engines.warmups import Prefills

__all__ = [
    "ChatCompletionsEngine",
    "ChatConnection",
    "forced_tool_choice",
    "normalize_base_url",
    "pick_replica",
    "sse_payloads",
]

log = logging.getLogger(__name__)

MAX_ERROR_BODY = 64 * 1024  # bytes of an error answer we read to quote it
MAX_JSON_BODY = 16 * 1024 * 1024  # a non-streamed answer
DISCOVERY_TIMEOUT_S = 2.0

_ENC = msgspec.json.Encoder()
_DEC = msgspec.json.Decoder()


# --------------------------------------------------------------------------------------------------
# URLs, replicas, SSE


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


def pick_replica(seq: int, n: int) -> int:
    """The replica for the `seq`-th connection: round robin, so connections spread evenly (a hash of a
    random key left whole runs of connections on one replica); the connection keeps it (pinned)."""
    if n <= 0:
        raise ValueError("no replicas")
    return seq % n


async def sse_payloads(
    parser: SSEParser, chunks: AsyncIterator[bytes], head: bytearray
) -> AsyncIterator[bytes]:
    """`data:` payloads of an SSE byte stream, framed by `parser` (it notes `[DONE]`). The first
    bytes are copied into `head` for error messages when the body turns out not to be SSE at all."""
    async for chunk in chunks:
        if len(head) < 512:
            head += chunk[: 512 - len(head)]
        for payload in parser.feed(chunk):
            yield payload
        if parser.done:
            return
    for payload in parser.close():
        yield payload


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
    from `profiles.PROFILES`, or None to detect it from GET /v1/models. `force_tool`: the first step
    after each user message must call this tool (see `forced_tool_choice`).
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
        force_tool: str | None = None,
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
        self.force_tool = force_tool or None
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
        """A connection pinned to one replica (round robin over the connections)."""
        n = next(self._seq)
        key = f"conn-{n}-{secrets.token_hex(6)}"
        return ChatConnection(self, key, n, pick_replica(n, len(self.upstreams)))

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
    """One client connection: its pinned replica, its render cache and its pending prefills."""

    def __init__(self, engine: ChatCompletionsEngine, key: str, seq: int, replica: int) -> None:
        self._engine = engine
        self.key = key
        self.seq = seq
        self.replica = replica
        self.cache = RenderCache()
        self.prefills = Prefills(key)
        self.prefilled = 0  # warm-ups the upstream processed

    @property
    def upstream(self) -> str:
        return self._engine.upstreams[self.replica]

    @property
    def rendered_items(self) -> int:
        """Items rendered by the last turn (how much work it did)."""
        return self.cache.rendered_items

    async def aclose(self) -> None:
        """Stop pending prefills and forget the caches."""
        await self.prefills.aclose()
        self.cache.clear()

    # -- the request body ----------------------------------------------------------------------

    def body(self, turn: Turn, info: _UpstreamInfo, *, prefill: Mapping[str, Any] | None = None) -> bytes:
        """The request body, with the cached history, tools and system message spliced in. With
        `prefill` (the profile's prefill fields) it is a non-streamed warm-up request."""
        profile = info.profile
        renderer = self.cache.render(turn, developer_role=profile.developer_role).renderer
        system = self.cache.system_json(turn.instructions)
        head: dict[str, Any] = {"model": self._model(turn, info), "stream": prefill is None}
        if profile.include_usage and prefill is None:
            head["stream_options"] = {"include_usage": True}
        if turn.max_output_tokens is not None and prefill is None:
            head["max_tokens"] = turn.max_output_tokens
        if turn.temperature is not None:
            head["temperature"] = turn.temperature
        if turn.top_p is not None:
            head["top_p"] = turn.top_p
        if profile.slot_pinning and info.slots:
            head["id_slot"] = self.seq % info.slots
        head.update(profile.extra_body)
        head.update(self._engine.extra_body)
        head.update(prefill or {})
        tools = b""
        if turn.tools:
            chat_tools, tools_json = self.cache.tools(turn.tools)
            if tools_json:
                tools = b',"tools":' + tools_json
                head["tool_choice"] = forced_tool_choice(turn, chat_tools, self._engine.force_tool)
                head["parallel_tool_calls"] = turn.parallel_tool_calls
        return b'{"messages":' + renderer.messages_json(system) + tools + b"," + _ENC.encode(head)[1:]

    def _model(self, turn: Turn, info: _UpstreamInfo) -> str:
        if self._engine.model:
            return self._engine.model
        if not info.models or turn.model in info.models:
            return turn.model
        return info.models[0]

    def _headers(self, info: _UpstreamInfo, accept: str) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": accept}
        if info.profile.session_header:
            headers[info.profile.session_header] = self.key
        return headers

    # -- warm-ups ------------------------------------------------------------------------------

    def prefill(self, turn: Turn) -> None:
        """A warm-up: render it now (the next turn continues its chain) and, where the profile
        allows it, have the pinned upstream process its prompt in the background."""
        self.prefills.add(lambda: self._prefill(turn))

    async def _prefill(self, turn: Turn) -> None:
        base = self.upstream
        info = await self._engine.info(base)
        prefill = info.profile.prefill
        body = self.body(turn, info, prefill=prefill or {})
        if prefill is None:
            return  # rendered and cached; this upstream has no documented way to prefill
        try:
            resp = await self._engine._client.post(
                f"{base}/chat/completions", content=body, headers=self._headers(info, "application/json")
            )
        except httpx.HTTPError as exc:
            log.info("%s: prefill on %s failed: %s", self.key, base, _words(exc))
            return
        if resp.status_code >= 400:
            words = body_words(resp.content, resp.headers.get("content-type", ""))
            log.info("%s: %s refused the prefill (HTTP %s): %s", self.key, base, resp.status_code, words)
            return
        self.prefilled += 1

    # -- one turn ---------------------------------------------------------------------------

    async def run(self, turn: Turn) -> AsyncIterator[EngineOutput]:
        """Stream one turn from the pinned upstream (after this connection's pending prefills);
        every failure ends as one `Failure`."""
        await self.prefills.wait()
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
            headers = self._headers(info, "text/event-stream")
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
        translator = ChunkTranslator(turn.response_id, custom_tool_names(turn.tools))
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
                parser = SSEParser()
                async for data in sse_payloads(parser, resp.aiter_bytes(), head):
                    text = decode_utf8(data, events)
                    events += 1
                    try:
                        chunk = _DEC.decode(text)
                    except msgspec.DecodeError:
                        raise UpstreamError(
                            "upstream_bad_response",
                            f"upstream sent an event that is not JSON: {text[:200]!r}",
                        ) from None
                    for out in translator.feed(chunk):
                        yield out
                if events == 0 and not parser.done and head.strip():
                    raise UpstreamError(
                        "upstream_bad_response",
                        f"upstream's answer is not an event stream: {body_words(bytes(head), ctype)}",
                    )
                if events == 0 and not parser.done:
                    raise await self._explain_empty(url, body, headers)
                if not parser.done and not translator.saw_finish:
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


def forced_tool_choice(turn: Turn, chat_tools: Sequence[Mapping[str, Any]], force: str | None) -> Any:
    """The chat `tool_choice` for a turn: the client's, except that with `force` (`serve
    --force-tool NAME`) a turn whose input ends with a user message names that tool, so the
    upstream itself constrains the answer to a call of it (llama-cpp-python and llama-server build
    a grammar from the tool's JSON schema). Turns answering a tool result keep the client's choice,
    so the model can finish the turn. Without that tool among the request's, the client's choice."""
    if force and turn.new_input:
        last = turn.new_input[-1]
        asks = last.get("type", "message") == "message" and last.get("role") == "user"
        if asks and any(t.get("function", {}).get("name") == force for t in chat_tools):
            return {"type": "function", "function": {"name": force}}
    return tool_choice_to_chat(turn.tool_choice)


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
