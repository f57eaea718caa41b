"""The engine interface: what the local server asks a model for, and what it gets back.

An engine knows nothing of the wire protocol. The server adapter hands it a `Turn` (the
conversation already parsed, the new input, the request's settings) and feeds each
`EngineOutput` it yields to `ServerSession`, which turns them into Responses events.

One `EngineConnection` per client connection, so an engine can keep per-connection state
(a rendered upstream history, a KV cache) and make a turn's work proportional to its new input.

Two optional methods an engine connection may add:

- `async compact(job, new_id) -> list[Item]`: `POST /v1/responses/compact` (called through
  `compact()` below, which supplies the default). `job.items` is the
  whole window (references and earlier compaction items already resolved). Default: one
  `compaction` item packing the window as it is (`app.protocol.compaction`); an engine may pack a
  summary instead (e.g. a message written by the model). Whatever it returns, a compaction item sent
  back as input expands into the items it packs, so the conversation continues on any engine.
- `prefill(turn) -> None` (`Prefiller`): a warm-up (`generate: false`, `turn.generate` is False)
  was answered; the engine starts evaluating `turn.history` + `turn.new_input` into its cache in
  the background so the next real turn starts faster (that turn waits for it rather than redo it).
  Default: nothing. Its failures are logged, never sent to the client.

`item_reference` and `compaction` input items never reach an engine: the protocol core resolves
them (`app.protocol.inputs`), so every engine sees plain items.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Protocol, runtime_checkable

from app.protocol.compact import CompactJob, compaction_items

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
    "CompactJob",
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
    "compact",
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


async def compact(conn: EngineConnection, job: CompactJob, new_id: Callable[[str], str]) -> list[Item]:
    """The engine's compaction of `job`, or the default packing when it has none."""
    method = getattr(conn, "compact", None)
    if method is None:
        return compaction_items(job.items, new_id)
    result: list[Item] = await method(job, new_id)
    return result
