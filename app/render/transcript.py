"""The conversation model: protocol events and stored items in, blocks out, Qt-free.

The services own one `Transcript` per project and feed it; the view is handed it and only paints
(as napari hands `QtDims` its `Dims`). Input is one typed vocabulary:

- `apply(event)`: a protocol `ServerEvent` as it arrived (text, reasoning and tool-argument deltas,
  item and response boundaries, failures). Events the transcript does not show are dropped here.
- `restore(items)`: stored Responses items of a reopened session (user and assistant messages,
  function calls and their outputs), mapped onto the same operations as the live events.
- `add_user_message`, `add_notice`, `add_tool_output`, `end_response`: what the app itself says.

Input only buffers (consecutive deltas of one item coalesce into one run), so a token costs an
append. The markdown splitting and pygments work runs in `advance(deadline, clock, max_chars)`,
which the view's frame pacer calls with a time budget: deltas are fed in `FEED_CHUNK` pieces so a
call stops on time even on a burst. When buffered input appears and nobody has been told yet, the
waker set by `set_waker` is called once: the view wakes on that, not on every token.

Assistant text and reasoning go through one incremental `BlockSplitter` per item, so a completed
markdown block is frozen and never re-parsed and only the open tail block of each item is rebuilt.
Code blocks carry pygments spans from a `CodeHighlighter` that lexes new lines only; a frozen code
block keeps its spans packed (`PackedSpans`). Every change bumps the block's `version` and marks its
id dirty; `take_dirty()` swaps the dirty set out. `clear()` starts over and bumps `epoch`, which tells
a view to drop what it drew.

Settled blocks are kept as compact data: once a run of `PACK_BLOCKS` blocks at the front of the open
list is frozen, it is packed into one `_Segment` (their texts joined into one string, the other fields
and the highlight spans in machine arrays), so a long session costs about its text plus a few dozen
bytes a block, and no Python objects per block for the garbage collector to walk. `block(id)`
unpacks a settled block on demand (a view asks for it only when it draws it).

Block ids are consecutive, from `first_id` to `next_id - 1`, and new blocks always come last; a view
can rely on that.
Peer misbehaviour (a delta for an item that already ended, an id reused for another kind of item)
is recorded as a fresh item, never raised: one bad event must not stop a frame.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, Literal

from app.protocol import events as ev
from app.protocol.inputs import message_text
from app.render.highlight import CodeHighlighter, PackedSpans, Span
from app.render.markdown import BlockSplitter, MdBlock, MdKind

__all__ = [
    "FEED_CHUNK",
    "FOLD_LINES",
    "PACK_BLOCKS",
    "RECOVERED_ERRORS",
    "Block",
    "BlockKind",
    "NoticeKind",
    "ResponseStatus",
    "Transcript",
    "ends_in_failure",
]

NoticeKind = Literal["info", "warning", "error", "status"]
ResponseStatus = Literal["completed", "incomplete", "failed", "cancelled"]
# Error codes the session recovers from by itself (full resend, reconnect): never shown as failures.
RECOVERED_ERRORS: Final = frozenset({"previous_response_not_found", "websocket_connection_limit_reached"})
FEED_CHUNK: Final = 2048  # characters handed to the splitter at a time, so advance() can stop on time
_JOIN: Final = 1024
PACK_BLOCKS: Final = 256  # settled blocks packed into one segment at a time


class BlockKind(StrEnum):
    USER = "user"
    ASSISTANT = "assistant"  # the header of the model's part of a turn; `text` is the model name
    PARAGRAPH = "paragraph"
    HEADING = "heading"
    LIST = "list"
    QUOTE = "quote"
    CODE = "code"
    RULE = "rule"
    TABLE = "table"  # GFM table source; `lang` holds the column alignments (markdown.parse_table)
    TOOL_CALL = "tool_call"
    TOOL_OUTPUT = "tool_output"
    NOTICE = "notice"


_KINDS: Final = tuple(BlockKind)
_KIND_INDEX: Final = {k: i for i, k in enumerate(_KINDS)}
_CONT, _REASONING, _CLOSED, _OK, _NOT_OK = 1, 2, 4, 8, 16

_FROM_MD = {
    MdKind.PARAGRAPH: BlockKind.PARAGRAPH,
    MdKind.HEADING: BlockKind.HEADING,
    MdKind.LIST: BlockKind.LIST,
    MdKind.QUOTE: BlockKind.QUOTE,
    MdKind.CODE: BlockKind.CODE,
    MdKind.RULE: BlockKind.RULE,
    MdKind.TABLE: BlockKind.TABLE,
}
FOLD_LINES: Final = 12  # a tool output longer than this starts collapsed (the view shows its first lines)


@dataclass(eq=False, slots=True)
class Block:
    """One unit the view lays out. Mutable only through the Transcript; `version` counts changes."""

    id: int
    kind: BlockKind
    text: str = ""  # markdown block source / code / tool arguments / tool output / notice
    item_id: str = ""
    frozen: bool = False
    version: int = 0
    lang: str = ""  # CODE
    level: int = 0  # HEADING
    cont: bool = False  # continues the previous block of the same item after a size cut
    reasoning: bool = False  # part of a reasoning item
    name: str = ""  # TOOL_CALL / TOOL_OUTPUT: function name; NOTICE: notice kind
    call_id: str = ""  # TOOL_CALL / TOOL_OUTPUT
    ok: bool | None = None  # TOOL_OUTPUT
    collapsed: bool = False  # TOOL_CALL: arguments hidden; TOOL_OUTPUT: folded to its first lines
    closed: bool = False  # CODE: its closing fence was seen
    spans: Sequence[Span] = ()  # CODE: highlight spans over `text` (packed once frozen)
    committed: int = 0  # CODE: spans over text[:committed] are final until the block freezes


class _Segment:
    """`PACK_BLOCKS` settled blocks as compact data: one joined text and machine arrays."""

    __slots__ = (
        "ends",
        "first",
        "flags",
        "kinds",
        "levels",
        "span_at",
        "span_ends",
        "span_keys",
        "span_starts",
        "strs",
        "text",
    )

    def __init__(self, blocks: Sequence[Block]) -> None:
        self.first = blocks[0].id
        self.text = "".join(b.text for b in blocks)
        self.ends = array("I")
        self.kinds = bytes(_KIND_INDEX[b.kind] for b in blocks)
        self.levels = bytes(min(b.level, 255) for b in blocks)
        self.flags = bytes(
            (_CONT if b.cont else 0)
            | (_REASONING if b.reasoning else 0)
            | (_CLOSED if b.closed else 0)
            | (_OK if b.ok is True else 0)
            | (_NOT_OK if b.ok is False else 0)
            for b in blocks
        )
        # item_id, lang, name, call_id per block: shared str objects in one tuple
        self.strs = tuple(x for b in blocks for x in (b.item_id, b.lang, b.name, b.call_id))
        self.span_at = array("I")  # span index where each block's spans end
        self.span_starts, self.span_ends, self.span_keys = array("I"), array("I"), array("H")
        end = 0
        for b in blocks:
            end += len(b.text)
            self.ends.append(end)
            if b.spans:
                packed = b.spans if isinstance(b.spans, PackedSpans) else PackedSpans(b.spans)
                starts, stops, keys = packed.arrays()
                self.span_starts.extend(starts)
                self.span_ends.extend(stops)
                self.span_keys.extend(keys)
            self.span_at.append(len(self.span_starts))

    def __len__(self) -> int:
        return len(self.ends)

    def text_of(self, i: int) -> str:
        return self.text[self.ends[i - 1] if i else 0 : self.ends[i]]

    def block(self, i: int, collapsed: bool) -> Block:
        f = self.flags[i]
        item_id, lang, name, call_id = self.strs[4 * i : 4 * i + 4]
        a, b = (self.span_at[i - 1] if i else 0), self.span_at[i]
        spans: Sequence[Span] = (
            PackedSpans.from_arrays(self.span_starts[a:b], self.span_ends[a:b], self.span_keys[a:b])
            if b > a
            else ()
        )
        text = self.text_of(i)
        return Block(
            self.first + i,
            _KINDS[self.kinds[i]],
            text,
            item_id,
            frozen=True,
            lang=lang,
            level=self.levels[i],
            cont=bool(f & _CONT),
            reasoning=bool(f & _REASONING),
            name=name,
            call_id=call_id,
            ok=True if f & _OK else (False if f & _NOT_OK else None),
            collapsed=collapsed,
            closed=bool(f & _CLOSED),
            spans=spans,
            committed=len(text),
        )


# ---- the operations every input is mapped onto (buffered until advance) ------------------------

DeltaKind = Literal["text", "reasoning", "tool"]


@dataclass(slots=True)
class _Begin:
    response_id: str
    model: str = ""


@dataclass(slots=True)
class _Delta:
    """Consecutive deltas of one item, as a queue of strings fed from the front in chunks. Every
    `_JOIN` deltas at the back are joined into one string, so a backlog (the view behind a fast
    stream) is a few strings, not a million, and taking a chunk costs O(chunk)."""

    kind: DeltaKind
    item_id: str
    parts: list[str]
    head: int = 0  # parts[:head] are fed
    offset: int = 0  # characters of parts[head] fed
    loose: int = 1  # deltas at the back not joined yet

    def add(self, delta: str) -> None:
        parts = self.parts
        parts.append(delta)
        self.loose += 1
        if self.loose >= _JOIN:
            start = max(len(parts) - self.loose, self.head + 1)  # never the part being fed
            parts[start:] = ["".join(parts[start:])]
            self.loose = 0

    def take(self, n: int) -> str:
        parts, out, got = self.parts, [], 0
        while got < n and self.head < len(parts):
            part = parts[self.head]
            piece = part[self.offset : self.offset + n - got]
            out.append(piece)
            got += len(piece)
            self.offset += len(piece)
            if self.offset >= len(part):
                self.head += 1
                self.offset = 0
        if self.head >= _JOIN:  # forget what was fed
            del parts[: self.head]
            self.head = 0
        return out[0] if len(out) == 1 else "".join(out)

    @property
    def finished(self) -> bool:
        return self.head >= len(self.parts)


@dataclass(slots=True)
class _ToolCall:
    item_id: str
    name: str
    call_id: str


@dataclass(slots=True)
class _EndItem:
    item_id: str


@dataclass(slots=True)
class _User:
    text: str


@dataclass(slots=True)
class _Notice:
    kind: NoticeKind
    text: str
    ref: str = ""  # a request the context inspector can show (its response id)


@dataclass(slots=True)
class _ToolOutput:
    call_id: str
    text: str
    ok: bool


@dataclass(slots=True)
class _EndResponse:
    status: ResponseStatus


_Op = _Begin | _Delta | _ToolCall | _EndItem | _User | _Notice | _ToolOutput | _EndResponse


@dataclass(slots=True)
class _Item:
    kind: DeltaKind
    item_id: str
    splitter: BlockSplitter | None = None
    ids: list[int] = field(default_factory=list)  # block id per splitter index, from `offset` on
    offset: int = 0
    ended: bool = False
    tool_block: int = -1
    highlighters: dict[int, CodeHighlighter] = field(default_factory=dict)
    stack: list[str] | None = None  # lexer state handed to a continued code block


def ends_in_failure(event: ev.ServerEvent) -> bool:
    """Whether the transcript shows this event as a failed response (so nobody needs to say it again)."""
    if isinstance(event, ev.ResponseFailed):
        return True
    return isinstance(event, ev.ErrorEvent) and event.error.code not in RECOVERED_ERRORS


class Transcript:
    """The conversation as blocks; see the module docstring."""

    def __init__(self) -> None:
        self._segments: list[_Segment] = []  # settled blocks, packed, from first_id on
        self._open: list[Block] = []  # the blocks after the segments, as objects
        self._open_base = 1  # id of _open[0]
        self._first_id = 1
        self._next_id = 1
        self._collapsed: set[int] = set()  # collapsed packed blocks
        self._items: dict[str, _Item] = {}
        self._dirty: dict[int, None] = {}
        self._ops: list[_Op] = []
        self._waker: Callable[[], None] | None = None
        self._woken = False
        self.epoch = 0  # bumped by clear(): a view drops what it drew
        self.fed_chars = 0  # delta characters fed into blocks so far (drawn within a frame after)
        self.response_id = ""
        self.status = ""
        self._headed = False  # the model's part of the current turn has its header block
        self._call_names: dict[str, str] = {}  # call_id -> tool name, so an output card can say whose

    # -- output ----------------------------------------------------------------------------------

    @property
    def first_id(self) -> int:
        return self._first_id

    @property
    def next_id(self) -> int:
        """The id the next block will get: blocks are first_id .. next_id - 1."""
        return self._next_id

    def __len__(self) -> int:
        return self._next_id - self._first_id

    def block(self, block_id: int) -> Block:
        """The block (a settled one is unpacked: a fresh object each call)."""
        i = block_id - self._open_base
        if 0 <= i < len(self._open):
            return self._open[i]
        if not self._first_id <= block_id < self._open_base:
            raise KeyError(block_id)
        seg = self._segments[(block_id - self._first_id) // PACK_BLOCKS]
        return seg.block(block_id - seg.first, block_id in self._collapsed)

    def iter_blocks(self) -> Iterator[Block]:
        for bid in range(self._first_id, self._next_id):
            yield self.block(bid)

    @property
    def blocks(self) -> list[Block]:
        """Every block, in order (unpacks the settled ones: for tests and small transcripts)."""
        return list(self.iter_blocks())

    @property
    def packed(self) -> int:
        """How many blocks are settled into compact segments."""
        return self._open_base - self._first_id

    def take_dirty(self) -> list[int]:
        """Ids of blocks created or changed since the last call, in first-change order."""
        out, self._dirty = list(self._dirty), {}
        return out

    @property
    def has_dirty(self) -> bool:
        return bool(self._dirty)

    @property
    def pending(self) -> bool:
        """Buffered input that `advance` has not worked through yet."""
        return bool(self._ops)

    @property
    def streaming(self) -> bool:
        """True between the start of a response and its end."""
        return bool(self.response_id) and not self.status

    def plain_text(self) -> str:
        """All block text, one block a paragraph (for copy-all and tests)."""
        return "\n\n".join(b.text for b in self.iter_blocks() if b.text)

    def set_waker(self, waker: Callable[[], None] | None) -> None:
        """`waker()` is called when input arrives and nobody was told since the last `advance`."""
        self._waker = waker
        self._woken = False
        if waker is not None and (self._ops or self._dirty):
            self._wake()

    # -- input -----------------------------------------------------------------------------------

    def apply(self, event: ev.ServerEvent) -> None:
        """Buffer one protocol event (see the module docstring); events not shown are dropped."""
        if isinstance(event, ev.OutputTextDelta):  # the hot path first
            self._push_delta("text", event.item_id, event.delta)
        elif isinstance(
            event, (ev.ReasoningTextDelta, ev.ReasoningContentDelta, ev.ReasoningSummaryTextDelta)
        ):
            self._push_delta("reasoning", event.item_id, event.delta)
        elif isinstance(event, ev.FunctionCallArgumentsDelta):
            self._push_delta("tool", event.item_id, event.delta)
        elif isinstance(event, ev.ResponseCreated):
            model = event.response.get("model")
            self._push(_Begin(event.response_id, model if isinstance(model, str) else ""))
        elif isinstance(event, ev.OutputItemAdded):
            item = event.item
            if item.get("type") == "function_call":
                self._push(
                    _ToolCall(
                        str(item.get("id", "")), str(item.get("name", "")), str(item.get("call_id", ""))
                    )
                )
        elif isinstance(event, ev.OutputItemDone):
            self._push(_EndItem(str(event.item.get("id", ""))))
        elif isinstance(event, ev.ResponseCompleted):
            self._push(_EndResponse("completed"))
        elif isinstance(event, ev.ResponseIncomplete):
            self._push(_EndResponse("incomplete"))
        elif isinstance(event, ev.ResponseFailed):
            err = event.response.get("error") or {}
            message = err.get("message", "unknown error") if isinstance(err, Mapping) else str(err)
            self._push(_Notice("error", f"The model failed: {message}"))
            self._push(_EndResponse("failed"))
        elif isinstance(event, ev.ErrorEvent) and event.error.code not in RECOVERED_ERRORS:
            e = event.error
            self._push(_Notice("error", f"{e.message} ({e.code})" if e.code else e.message))
            self._push(_EndResponse("failed"))

    def restore(self, items: Sequence[Mapping[str, Any]]) -> None:
        """Buffer the items of a stored session: the same operations the live events map onto."""
        for n, item in enumerate(items):
            kind = item.get("type")
            if kind == "message" and item.get("role") == "user":
                self._push(_User(message_text(item)))
            elif kind == "message":
                rid = f"restored-{n}"
                iid = str(item.get("id") or rid)
                self._push(_Begin(rid))
                self._push_delta("text", iid, message_text(item))
                self._push(_EndItem(iid))
                self._push(_EndResponse("completed"))
            elif kind == "function_call":
                iid = str(item.get("id") or f"fc-{n}")
                self._push(_ToolCall(iid, str(item.get("name", "")), str(item.get("call_id", ""))))
                self._push_delta("tool", iid, str(item.get("arguments", "")))
                self._push(_EndItem(iid))
            elif kind == "function_call_output":
                self._push(_ToolOutput(str(item.get("call_id", "")), str(item.get("output", "")), True))

    def add_user_message(self, text: str) -> None:
        self._push(_User(text))

    def add_notice(self, kind: NoticeKind, text: str, ref: str = "") -> None:
        """`ref`: a response id; the view then offers "Inspect" (what went on the wire for it)."""
        self._push(_Notice(kind, text, ref))

    def add_tool_output(self, call_id: str, text: str, ok: bool) -> None:
        self._push(_ToolOutput(call_id, text, ok))

    def end_response(self, status: ResponseStatus) -> None:
        """The response ended without an event saying so (a transport failure, Stop)."""
        self._push(_EndResponse(status))

    def clear(self) -> None:
        """Start over: every block and buffered input is dropped; `epoch` tells the view."""
        self._segments = []
        self._open = []
        self._open_base = self._first_id = self._next_id
        self._collapsed = set()
        self._items.clear()
        self._dirty.clear()
        self._ops.clear()
        self.response_id = ""
        self.status = ""
        self._headed = False
        self.epoch += 1
        self._woken = False
        self._wake()

    def set_collapsed(self, block_id: int, collapsed: bool) -> None:
        blk = self.block(block_id)
        if blk.collapsed == collapsed:
            return
        if block_id < self._open_base:
            (self._collapsed.add if collapsed else self._collapsed.discard)(block_id)
            self._dirty[block_id] = None
        else:
            blk.collapsed = collapsed
            self._touch(blk)

    # -- the work --------------------------------------------------------------------------------

    def advance(self, deadline: float, clock: Callable[[], float], max_chars: int = 1 << 62) -> int:
        """Work through buffered input until `clock() >= deadline` or `max_chars` delta characters
        were fed; always does at least one step. Returns the delta characters fed."""
        self._woken = False
        fed = 0
        ops = self._ops
        i = 0
        try:
            while i < len(ops) and fed < max_chars:
                op = ops[i]
                if isinstance(op, _Delta):
                    chunk = op.take(min(FEED_CHUNK, max_chars - fed))
                    fed += len(chunk)
                    if op.finished:
                        i += 1
                    self._feed(op.kind, op.item_id, chunk)
                else:
                    i += 1
                    self._run(op)
                if clock() >= deadline:
                    break
        finally:
            del ops[:i]
            self.fed_chars += fed
            if len(self._open) >= 2 * PACK_BLOCKS:
                self._pack()
        return fed

    def _pack(self) -> None:
        """Pack runs of PACK_BLOCKS settled blocks at the front of the open list into segments."""
        while len(self._open) >= 2 * PACK_BLOCKS:
            run = self._open[:PACK_BLOCKS]
            if not all(b.frozen for b in run):
                return
            self._segments.append(_Segment(run))
            for b in run:
                if b.collapsed:
                    self._collapsed.add(b.id)
            del self._open[:PACK_BLOCKS]
            self._open_base += PACK_BLOCKS

    # -- internals -------------------------------------------------------------------------------

    def _wake(self) -> None:
        if not self._woken and self._waker is not None:
            self._woken = True
            self._waker()

    def _push(self, op: _Op) -> None:
        self._ops.append(op)
        if not self._woken:
            self._wake()

    def _push_delta(self, kind: DeltaKind, item_id: str, delta: str) -> None:
        if not delta:
            return
        ops = self._ops
        if ops:
            last = ops[-1]
            if isinstance(last, _Delta) and last.kind == kind and last.item_id == item_id:
                last.add(delta)
                return
        self._push(_Delta(kind, item_id, [delta]))

    def _run(self, op: _Op) -> None:
        if isinstance(op, _Begin):
            self.response_id = op.response_id
            self.status = ""
            if not self._headed:  # one header a turn, however many responses its tool calls take
                self._headed = True
                self._new(BlockKind.ASSISTANT, text=op.model, frozen=True)
        elif isinstance(op, _ToolCall):
            self._begin_tool_call(op.item_id, op.name, op.call_id)
        elif isinstance(op, _EndItem):
            self._end_item(op.item_id)
        elif isinstance(op, _User):
            self._headed = False
            self._new(BlockKind.USER, text=op.text, frozen=True)
        elif isinstance(op, _Notice):
            self._new(BlockKind.NOTICE, text=op.text, name=op.kind, item_id=op.ref, frozen=True)
        elif isinstance(op, _ToolOutput):
            long = op.text.count("\n", 0, len(op.text.rstrip("\n"))) >= FOLD_LINES
            self._new(
                BlockKind.TOOL_OUTPUT,
                text=op.text,
                call_id=op.call_id,
                ok=op.ok,
                frozen=True,
                collapsed=long,
                name=self._call_names.get(op.call_id, ""),
            )
        elif isinstance(op, _EndResponse):
            self._end_response(op.status)
        else:  # _Delta is fed by advance()
            raise AssertionError(op)

    def _feed(self, kind: DeltaKind, item_id: str, chunk: str) -> None:
        if kind == "tool":
            self._append_tool_args(item_id, chunk)
        else:
            self._append_md(item_id, chunk, kind)

    def _new(self, kind: BlockKind, **kw: Any) -> Block:
        blk = Block(self._next_id, kind, **kw)
        self._next_id += 1
        self._open.append(blk)
        self._dirty[blk.id] = None
        return blk

    def _touch(self, blk: Block) -> None:
        blk.version += 1
        self._dirty[blk.id] = None

    def _begin_tool_call(self, item_id: str, name: str, call_id: str) -> None:
        if call_id:
            self._call_names[call_id] = name
            if len(self._call_names) > 256:  # outputs follow their calls closely
                del self._call_names[next(iter(self._call_names))]
        blk = self._new(BlockKind.TOOL_CALL, item_id=item_id, name=name, call_id=call_id)
        self._items[item_id] = _Item("tool", item_id, tool_block=blk.id)

    def _append_tool_args(self, item_id: str, delta: str) -> None:
        item = self._items.get(item_id)
        if item is None or item.kind != "tool" or item.ended:  # arguments without an open call
            self._begin_tool_call(item_id, "", "")
            item = self._items[item_id]
        blk = self.block(item.tool_block)
        blk.text += delta
        self._touch(blk)

    def _end_item(self, item_id: str) -> None:
        """The item is complete: its blocks freeze. Unknown ids are ignored (nothing streamed)."""
        item = self._items.get(item_id)
        if item is None or item.ended:
            return
        item.ended = True
        if item.kind == "tool":
            blk = self.block(item.tool_block)
            blk.frozen = True
            self._touch(blk)
        else:
            assert item.splitter is not None
            item.splitter.finish()
            self._sync(item)
        del self._items[item_id]

    def _end_response(self, status: ResponseStatus) -> None:
        """Freeze everything still open; a status other than "completed" is shown as a notice."""
        for item_id in list(self._items):
            self._end_item(item_id)
        self.status = status
        if status != "completed":
            self._new(BlockKind.NOTICE, text=f"Response {status}.", name="status", frozen=True)

    def _append_md(self, item_id: str, delta: str, kind: DeltaKind) -> None:
        item = self._items.get(item_id)
        if item is None or item.kind != kind:
            item = self._items[item_id] = _Item(kind, item_id, splitter=BlockSplitter())
        assert item.splitter is not None
        item.splitter.feed(delta)
        self._sync(item)

    def _sync(self, item: _Item) -> None:
        """Apply newly frozen blocks and the tail of one item's splitter to the block list."""
        sp = item.splitter
        assert sp is not None
        frozen = sp.take_frozen()
        first = sp.frozen_count - len(frozen)
        for i, md in enumerate(frozen):
            self._apply(item, first + i, md, frozen=True)
        tail = sp.tail()
        if tail is not None:
            self._apply(item, sp.frozen_count, tail, frozen=False)
        elif item.ended:  # a provisional block whose line turned out to start nothing
            for bid in item.ids[sp.frozen_count - item.offset :]:
                blk = self.block(bid)
                blk.text, blk.frozen, blk.spans = "", True, ()
                self._touch(blk)
        # Blocks before the splitter's tail index never change again: forget their ids, so a long
        # item holds a bounded list.
        drop = sp.frozen_count - item.offset
        if drop > 64:
            del item.ids[:drop]
            item.offset += drop

    def _apply(self, item: _Item, index: int, md: MdBlock, frozen: bool) -> None:
        kind = _FROM_MD[md.kind]
        index -= item.offset
        if index < len(item.ids):
            blk = self.block(item.ids[index])
            if (
                not frozen
                and blk.text == md.text
                and blk.kind is kind
                and blk.lang == md.lang
                and blk.level == md.level
            ):
                return
            if blk.kind is not kind or blk.lang != md.lang:
                item.highlighters.pop(blk.id, None)
            blk.kind, blk.lang, blk.level, blk.cont = kind, md.lang, md.level, md.cont
            blk.text, blk.closed = md.text, md.closed
        else:
            blk = self._new(
                kind,
                text=md.text,
                item_id=item.item_id,
                lang=md.lang,
                level=md.level,
                cont=md.cont,
                reasoning=item.kind == "reasoning",
                closed=md.closed,
            )
            item.ids.append(blk.id)
        blk.frozen = frozen
        if kind is BlockKind.CODE:
            hl = item.highlighters.get(blk.id)
            if hl is None:
                hl = item.highlighters[blk.id] = CodeHighlighter(
                    md.lang, stack=item.stack if md.cont else None
                )
            hl.update(md.text, final=frozen)
            blk.committed = hl.committed_len
            if frozen:
                blk.spans = PackedSpans(hl.spans())
                item.stack = hl.stack
                del item.highlighters[blk.id]
            else:
                blk.spans = hl.spans()
        else:
            blk.spans = ()
            blk.committed = 0
        self._touch(blk)
