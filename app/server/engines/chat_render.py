"""Responses items -> Chat Completions messages, incrementally, with a per-connection cache.

Shared by the bridge (`chat_completions.py`, which splices the cached JSON into each request) and
the in-process engine (`llama_cpp.py`, which renders the messages through the model's chat template
and keeps their tokens).

- `HistoryRenderer`: items -> chat messages (`function_call` -> assistant `tool_calls`,
  `function_call_output` -> `tool` messages; `custom_tool_call` and its output likewise, the
  freeform text as `{"input": ...}`), appended incrementally, copy-on-write across forks.
- `tools_to_chat`: function tools as they are; custom (freeform) tools such as Codex's
  `apply_patch` as a function taking one string `input`, the convention Codex itself uses for
  providers without custom tools (its dispatch unwraps `{"input": ...}` back to the raw text).
- `RenderCache`: one per client connection. Rendered chains by response id (lanes and forks), so a
  turn that continues a response this connection produced renders only the items added since; and
  the request's configuration (tools in chat form, the system message) computed once and reused
  while it does not change. An engine may attach its own data to each chain (`attach`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from app.server.engines.base import Item, Turn

__all__ = [
    "FREEFORM_PARAMETER",
    "RENDER_CACHE",
    "HistoryRenderer",
    "RenderCache",
    "RenderSnapshot",
    "Rendered",
    "custom_tool_names",
    "tool_choice_to_chat",
    "tools_to_chat",
]

RENDER_CACHE = 16  # rendered chains kept per connection (lanes and forks)

_ENC = msgspec.json.Encoder()

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
        self.changed_from = 0  # first message added or replaced since this renderer started

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
        self.changed_from = min(self.changed_from, dirty)

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
        if kind in ("function_call", "custom_tool_call"):
            args = item.get("arguments") if kind == "function_call" else {"input": str(item.get("input", ""))}
            call = {
                "id": str(item.get("call_id") or item.get("id") or ""),
                "type": "function",
                "function": {"name": str(item.get("name", "")), "arguments": _args_text(args)},
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
        if kind in ("function_call_output", "custom_tool_call_output"):
            msgs.append(
                {
                    "role": "tool",
                    "tool_call_id": str(item.get("call_id", "")),
                    "content": _output_text(item.get("output", "")),
                }
            )
            return len(msgs) - 1
        return None  # reasoning and hosted-tool items have no chat form

    def snapshot(self) -> RenderSnapshot:
        """The current state, cheap to keep and to resume from."""
        return RenderSnapshot(
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
    def resume(cls, snap: RenderSnapshot) -> HistoryRenderer:
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
        r.changed_from = n
        return r

    def messages_json(self, system: bytes | None) -> bytes:
        """The `messages` array as JSON, with an optional leading system message."""
        frags = self.fragments if system is None else [system, *self.fragments]
        return b"[" + b",".join(frags) + b"]"


@dataclass(frozen=True, slots=True)
class RenderSnapshot:
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


FREEFORM_PARAMETER = "input"  # where a custom tool's text travels as a function argument (Codex's name)


def _freeform_parameters(tool: Mapping[str, Any]) -> dict[str, Any]:
    """A custom tool's one string argument; its format (e.g. a Lark grammar) goes in the description,
    so a model can follow it."""
    about = "The tool's input, as raw text."
    fmt = tool.get("format")
    if isinstance(fmt, Mapping) and isinstance(fmt.get("definition"), str):
        about += f" It must follow this {fmt.get('syntax', 'grammar')} grammar:\n{fmt['definition']}"
    return {
        "type": "object",
        "properties": {FREEFORM_PARAMETER: {"type": "string", "description": about}},
        "required": [FREEFORM_PARAMETER],
        "additionalProperties": False,
    }


def custom_tool_names(tools: Sequence[Mapping[str, Any]]) -> frozenset[str]:
    """Names of the custom (freeform) tools among a request's tools."""
    return frozenset(
        str(t["name"]) for t in tools if t.get("type") == "custom" and isinstance(t.get("name"), str)
    )


def tools_to_chat(tools: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Responses function and custom tools -> chat tools (other tool types, hosted ones such as
    web_search, have no chat form and are dropped)."""
    out = []
    for tool in tools:
        kind = tool.get("type", "function")
        if kind not in ("function", "custom") or not isinstance(tool.get("name"), str):
            continue
        fn: dict[str, Any] = {"name": tool["name"]}
        if isinstance(tool.get("description"), str):
            fn["description"] = tool["description"]
        if kind == "custom":
            fn["parameters"] = _freeform_parameters(tool)
            out.append({"type": "function", "function": fn})
            continue
        fn["parameters"] = tool.get("parameters") or {"type": "object", "properties": {}}
        if tool.get("strict") is not None:
            fn["strict"] = bool(tool["strict"])
        out.append({"type": "function", "function": fn})
    return out


def tool_choice_to_chat(choice: Any) -> Any:
    """Responses tool_choice -> chat tool_choice (a named custom tool is a named function there)."""
    if isinstance(choice, Mapping) and choice.get("type") in ("function", "custom"):
        return {"type": "function", "function": {"name": str(choice.get("name", ""))}}
    if choice in ("auto", "none", "required"):
        return choice
    return "auto"


# --------------------------------------------------------------------------------------------------
# the per-connection cache


@dataclass(frozen=True, slots=True)
class Rendered:
    """A turn's whole conversation as chat messages, and what the cache knew of it before."""

    renderer: HistoryRenderer
    resumed: bool  # continued a chain this connection rendered (False: rendered from scratch)
    extra: Any  # what the engine attached to the resumed chain (None when not resumed)

    @property
    def changed_from(self) -> int:
        """First message that is new or different from the resumed chain's (0 when not resumed)."""
        return self.renderer.changed_from


@dataclass(slots=True)
class _Chain:
    snapshot: RenderSnapshot
    extra: Any = None


class RenderCache:
    """One connection's rendered chains (by response id, LRU-bounded) and request configuration."""

    def __init__(self, limit: int = RENDER_CACHE) -> None:
        self.limit = limit
        self._chains: OrderedDict[str, _Chain] = OrderedDict()
        self._tools_src: Sequence[Mapping[str, Any]] | None = None
        self._tools: list[dict[str, Any]] = []
        self._tools_json = b""
        self.tools_version = 0  # changes whenever the tools do
        self._system_src: str | None = None
        self._system_json: bytes | None = None
        self.rendered_items = 0  # items rendered by the last turn (how much work it did)

    def clear(self) -> None:
        """Forget every chain."""
        self._chains.clear()

    def render(self, turn: Turn, *, developer_role: bool = False) -> Rendered:
        """The turn's whole conversation, reusing the chain of `turn.previous_response_id` when this
        connection rendered it and the turn's history still starts with it; kept under
        `turn.response_id` for the next turn."""
        key = turn.previous_response_id or ""
        chain = self._chains.get(key)
        history = turn.history
        renderer: HistoryRenderer | None = None
        extra: Any = None
        if chain is not None:
            snap = chain.snapshot
            if snap.developer_role == developer_role and len(history) >= snap.n_items:
                boundary = history[snap.n_items - 1] if snap.n_items else None
                if snap.n_items == 0 or boundary is snap.last_item or boundary == snap.last_item:
                    renderer = HistoryRenderer.resume(snap)
                    extra = chain.extra
                    self._chains.move_to_end(key)
        resumed = renderer is not None
        if renderer is None:
            renderer = HistoryRenderer(developer_role=developer_role)
        before = renderer.items
        renderer.extend(history[i] for i in range(renderer.items, len(history)))  # no slice copy
        renderer.extend(turn.new_input)
        self.rendered_items = renderer.items - before
        self._chains[turn.response_id] = _Chain(renderer.snapshot())
        while len(self._chains) > self.limit:
            self._chains.popitem(last=False)
        return Rendered(renderer, resumed, extra)

    def attach(self, response_id: str, extra: Any) -> None:
        """Keep engine data (e.g. the prompt's tokens) with the chain of `response_id`."""
        chain = self._chains.get(response_id)
        if chain is not None:
            chain.extra = extra

    def tools(self, tools: Sequence[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], bytes]:
        """The request's tools in chat form and as JSON; converted again only when they change
        (the same list object while unchanged, so engines may compare it by identity)."""
        if tools is not self._tools_src and tools != self._tools_src:
            self._tools = tools_to_chat(tools)
            self._tools_json = _ENC.encode(self._tools) if self._tools else b""
            self._tools_src = tools
            self.tools_version += 1
        return self._tools, self._tools_json

    def system_json(self, instructions: str | None) -> bytes | None:
        """The instructions as a JSON system message (None without instructions), encoded once."""
        if instructions != self._system_src:
            self._system_src = instructions
            self._system_json = (
                _ENC.encode({"role": "system", "content": instructions}) if instructions else None
            )
        return self._system_json
