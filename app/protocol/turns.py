"""What `ServerSession` hands an engine (`Turn`) and what it takes back (`EngineOutput`).

They live here because `app.protocol` may not import `app.server` (import-linter contract);
`app/server/engines/base.py` re-exports them, so engines import everything from there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "EngineOutput",
    "Failure",
    "Incomplete",
    "Item",
    "ItemDone",
    "ReasoningDelta",
    "TextDelta",
    "ToolCallArgsDelta",
    "ToolCallStart",
    "Turn",
    "Usage",
]

Item = Mapping[str, Any]  # one Responses input/output item as parsed JSON (message, function_call, ...)


@dataclass(frozen=True, slots=True)
class Turn:
    """One response to generate. `history` holds every earlier item of the chain, oldest first
    (input items and the model's output items interleaved as they happened); `new_input` holds
    this request's own input items. Both are shared, read-only views: never mutate them."""

    response_id: str
    model: str
    history: Sequence[Item]
    new_input: Sequence[Item]
    instructions: str | None = None
    tools: Sequence[Mapping[str, Any]] = ()
    tool_choice: Any = "auto"  # "auto" | "none" | "required" | {"type": "function", "name": ...}
    parallel_tool_calls: bool = True
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    lane: str | None = None  # stream_id, None for the default lane
    previous_response_id: str | None = None
    generate: bool = True  # False: a warm-up, already answered; an engine may prefill with it


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of assistant message text (opens a message item if none is open)."""

    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """A piece of reasoning text (opens a reasoning item if none is open)."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolCallStart:
    """Opens a function_call item; argument text follows as ToolCallArgsDelta. With `custom`, a
    `custom_tool_call` item (a freeform tool such as Codex's apply_patch): the deltas are its raw
    `input` text, not JSON."""

    call_id: str
    name: str
    custom: bool = False


@dataclass(frozen=True, slots=True)
class ToolCallArgsDelta:
    """A piece of the open function call's JSON arguments."""

    delta: str


@dataclass(frozen=True, slots=True)
class ItemDone:
    """Closes the open item (message, reasoning or function call). Optional: a new item kind or
    the end of the turn closes the open item too."""


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts for the turn; the last one yielded wins. Absent: the server estimates."""

    input_tokens: int
    output_tokens: int
    cached_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Incomplete:
    """Ends the turn as `response.incomplete` (e.g. reason="max_output_tokens")."""

    reason: str


@dataclass(frozen=True, slots=True)
class Failure:
    """Ends the turn as `response.failed`, with the upstream's own words in `message`."""

    code: str
    message: str


EngineOutput = (
    TextDelta | ReasoningDelta | ToolCallStart | ToolCallArgsDelta | ItemDone | Usage | Incomplete | Failure
)
