"""The engine interface: what the local server asks a model for, and what it gets back.

An engine knows nothing of the wire protocol. The server adapter hands it a `Turn` (the
conversation already parsed, the new input, the request's settings) and feeds each
`EngineOutput` it yields to `ServerSession`, which turns them into Responses events.

One `EngineConnection` per client connection, so an engine can keep per-connection state
(a rendered upstream history, a KV cache) and make a turn's work proportional to its new input.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

# The value types live in app.protocol.turns (the protocol core may not import app.server);
# they are re-exported here so engines import everything from one place.
from app.protocol.turns import (
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

__all__ = [
    "Engine",
    "EngineConnection",
    "EngineOutput",
    "Failure",
    "Incomplete",
    "Item",
    "ItemDone",
    "Prefiller",
    "ReasoningDelta",
    "TextDelta",
    "ToolCallArgsDelta",
    "ToolCallStart",
    "Turn",
    "Usage",
]


class EngineConnection(Protocol):
    """Per-client-connection engine state."""

    def run(self, turn: Turn) -> AsyncIterator[EngineOutput]:
        """Generate one turn. Ending without Failure/Incomplete means completed. Cancelling the
        iteration (client gone) must release upstream resources."""
        ...

    async def aclose(self) -> None:
        """The client connection closed."""
        ...


@runtime_checkable
class Prefiller(Protocol):
    """An `EngineConnection` that prepares its state for warm-ups (optional: without it, warm-ups
    never reach the engine)."""

    def prefill(self, turn: Turn) -> None:
        """A warm-up (`generate: false`), already completed for the client: prepare for the next
        turn (evaluate its tokens, warm an upstream's cache). Returns at once; the work runs in the
        background, and a later `run` waits for it rather than redo it."""
        ...


class Engine(Protocol):
    """An engine factory shared by all connections of one server."""

    name: str  # shown to users, e.g. "scripted" (labelled "scripted — no model" in the UI)

    def connect(self) -> EngineConnection:
        """State for one new client connection."""
        ...

    async def aclose(self) -> None:
        """The server is shutting down."""
        ...
