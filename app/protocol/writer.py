"""The event writer of one response: engine text in, output-item events out, kinds kept in one table.

Every output item goes through the same three steps, and only the table `KINDS` knows how each kind
(message, reasoning, function call, custom tool call) spells them (the h11 `_state.py` rule: all of
it in one place):

    open   -> `response.output_item.added` (+ `response.content_part.added` for kinds with a part)
    delta  -> the kind's delta event
    close  -> the kind's done event (+ `response.content_part.done`) -> `response.output_item.done`

With `coalesce=True`, deltas are held, not emitted at once: consecutive deltas of the open item merge
into one event, emitted (with the next sequence number) by `flush()` or before any other event of
the response. A
delta event's text is any string, so the concatenated text and the order of events are exactly what
one event per delta would give; only the number of delta events changes. How often `flush()` runs is
the caller's choice: once per engine output gives one event per delta; once per writer turn of the
socket coalesces whatever the engine produced while the writer was busy.

Event names and item shapes follow the Open Responses spec (2026-04-24): reasoning streams as
`response.reasoning.delta`/`.done` and a reasoning item has no `status` field.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from app.protocol.errors import LocalProtocolError
from app.protocol.events import (
    UNSET,
    ContentPartAdded,
    ContentPartDone,
    CustomToolCallInputDelta,
    CustomToolCallInputDone,
    FunctionCallArgumentsDelta,
    FunctionCallArgumentsDone,
    OutputItemAdded,
    OutputItemDone,
    OutputTextDelta,
    OutputTextDone,
    ReasoningContentDelta,
    ReasoningContentDone,
    ServerEvent,
)
from app.protocol.turns import Item

__all__ = ["CALL_KINDS", "KINDS", "ItemKind", "OpenItem", "OutputWriter"]


@dataclass(slots=True)
class OpenItem:
    """The output item being streamed."""

    kind: ItemKind
    id: str
    output_index: int
    parts: list[str] = field(default_factory=list)
    call_id: str = ""
    name: str = ""


Make = Callable[..., ServerEvent]


@dataclass(frozen=True, slots=True)
class ItemKind:
    """How one item kind is written: id prefix, its in-progress and final shapes, its events."""

    name: str
    prefix: str
    part_type: str | None  # the content part's type; None: the kind has no content part
    added: Callable[[OpenItem], dict[str, Any]]
    final: Callable[[OpenItem, str, str, dict[str, Any] | None], dict[str, Any]]
    delta: Make  # (sequence_number, stream_id, item, text) -> event
    done: Make
    counts_as_reasoning: bool = False

    def part(self, text: str) -> dict[str, Any] | None:
        if self.part_type is None:
            return None
        if self.part_type == "output_text":
            return {"type": "output_text", "text": text, "annotations": []}
        return {"type": self.part_type, "text": text}


def _message_final(item: OpenItem, text: str, status: str, part: dict[str, Any] | None) -> dict[str, Any]:
    return {"type": "message", "id": item.id, "role": "assistant", "status": status, "content": [part]}


def _reasoning_final(item: OpenItem, text: str, status: str, part: dict[str, Any] | None) -> dict[str, Any]:
    return {"type": "reasoning", "id": item.id, "summary": [], "content": [part]}


def _call_kind(name: str, prefix: str, field: str, delta: Make, done: Make) -> ItemKind:
    """A tool-call kind: `field` ("arguments" or "input") carries its text in the item and in the
    done event."""
    return ItemKind(
        name=name,
        prefix=prefix,
        part_type=None,
        added=lambda it: {
            "type": name,
            "id": it.id,
            "call_id": it.call_id,
            "name": it.name,
            field: "",
            "status": "in_progress",
        },
        final=lambda it, text, status, part: {
            "type": name,
            "id": it.id,
            "call_id": it.call_id,
            "name": it.name,
            field: text,
            "status": status,
        },
        delta=lambda seq, sid, it, text: delta(
            sequence_number=seq, stream_id=sid, item_id=it.id, output_index=it.output_index, delta=text
        ),
        done=lambda seq, sid, it, text: done(
            sequence_number=seq, stream_id=sid, item_id=it.id, output_index=it.output_index, **{field: text}
        ),
    )


CALL_KINDS: Final = ("function_call", "custom_tool_call")  # open only with a call id and a name

KINDS: Final[dict[str, ItemKind]] = {
    "message": ItemKind(
        name="message",
        prefix="msg",
        part_type="output_text",
        added=lambda it: {
            "type": "message",
            "id": it.id,
            "role": "assistant",
            "status": "in_progress",
            "content": [],
        },
        final=_message_final,
        delta=lambda seq, sid, it, text: OutputTextDelta(
            sequence_number=seq, stream_id=sid, item_id=it.id, output_index=it.output_index, delta=text
        ),
        done=lambda seq, sid, it, text: OutputTextDone(
            sequence_number=seq, stream_id=sid, item_id=it.id, output_index=it.output_index, text=text
        ),
    ),
    "reasoning": ItemKind(
        name="reasoning",
        prefix="rs",
        part_type="reasoning_text",
        added=lambda it: {"type": "reasoning", "id": it.id, "summary": []},
        final=_reasoning_final,
        delta=lambda seq, sid, it, text: ReasoningContentDelta(
            sequence_number=seq, stream_id=sid, item_id=it.id, output_index=it.output_index, delta=text
        ),
        done=lambda seq, sid, it, text: ReasoningContentDone(
            sequence_number=seq, stream_id=sid, item_id=it.id, output_index=it.output_index, text=text
        ),
        counts_as_reasoning=True,
    ),
    "function_call": _call_kind(
        "function_call", "fc", "arguments", FunctionCallArgumentsDelta, FunctionCallArgumentsDone
    ),
    "custom_tool_call": _call_kind(
        "custom_tool_call", "ctc", "input", CustomToolCallInputDelta, CustomToolCallInputDone
    ),
}


class OutputWriter:
    """Sequence numbers, the open item and the finished output of one response."""

    __slots__ = (
        "_emit",
        "_held",
        "_new_id",
        "coalesce",
        "held_chars",
        "open",
        "out_chars",
        "output",
        "reasoning_chars",
        "seq",
        "sid",
    )

    def __init__(
        self,
        lane: str | None,
        new_id: Callable[[str], str],
        emit: Callable[[ServerEvent], None],
        *,
        coalesce: bool = False,
    ) -> None:
        self.coalesce = coalesce  # hold deltas until `flush()` (or the response's next other event)
        self.sid: Any = lane if lane is not None else UNSET
        self._new_id = new_id
        self._emit = emit
        self.seq = 0
        self.output: list[Item] = []
        self.open: OpenItem | None = None
        self.out_chars = 0
        self.reasoning_chars = 0
        self._held: list[str] = []  # delta text of the open item not yet emitted
        self.held_chars = 0

    def next_seq(self) -> int:
        """The sequence number of the next event; a held delta goes out first, with its own."""
        if self._held:
            self.flush()
        seq = self.seq
        self.seq = seq + 1
        return seq

    def flush(self) -> None:
        """Emit the held delta text of the open item as one delta event (nothing if none is held)."""
        held = self._held
        item = self.open
        if not held or item is None:
            return
        self._held = []
        self.held_chars = 0
        text = held[0] if len(held) == 1 else "".join(held)
        seq = self.seq
        self.seq = seq + 1
        self._emit(item.kind.delta(seq, self.sid, item, text))

    def open_item(self, kind_name: str, *, call_id: str = "", name: str = "") -> OpenItem:
        """Close whatever is open and open a new item of `kind_name`."""
        self.close("completed")
        kind = KINDS[kind_name]
        item = OpenItem(kind, self._new_id(kind.prefix), len(self.output), call_id=call_id, name=name)
        self.open = item
        self._emit(
            OutputItemAdded(
                sequence_number=self.next_seq(),
                stream_id=self.sid,
                output_index=item.output_index,
                item=kind.added(item),
            )
        )
        part = kind.part("")
        if part is not None:
            self._emit(
                ContentPartAdded(
                    sequence_number=self.next_seq(),
                    stream_id=self.sid,
                    item_id=item.id,
                    output_index=item.output_index,
                    content_index=0,
                    part=part,
                )
            )
        return item

    def delta(self, kind_name: str, text: str) -> None:
        """Text for an item of `kind_name`: opens one unless such an item is open (calls never open
        implicitly: they need a call id and a name)."""
        item = self.open
        if item is None or item.kind.name != kind_name:
            if kind_name in CALL_KINDS:
                raise LocalProtocolError(
                    "ToolCallArgsDelta without an open ToolCallStart", code="invalid_output"
                )
            item = self.open_item(kind_name)
        item.parts.append(text)
        self._held.append(text)
        self.held_chars += len(text)
        self.out_chars += len(text)
        if item.kind.counts_as_reasoning:
            self.reasoning_chars += len(text)
        if not self.coalesce:
            self.flush()

    def close(self, status: str) -> None:
        """Close the open item, if any, with `status`."""
        item = self.open
        if item is None:
            return
        self.flush()
        self.open = None
        kind = item.kind
        text = "".join(item.parts)
        self._emit(kind.done(self.next_seq(), self.sid, item, text))
        part = kind.part(text)
        if part is not None:
            self._emit(
                ContentPartDone(
                    sequence_number=self.next_seq(),
                    stream_id=self.sid,
                    item_id=item.id,
                    output_index=item.output_index,
                    content_index=0,
                    part=part,
                )
            )
        final = kind.final(item, text, status, part)
        self.output.append(final)
        self._emit(
            OutputItemDone(
                sequence_number=self.next_seq(),
                stream_id=self.sid,
                output_index=item.output_index,
                item=final,
            )
        )
