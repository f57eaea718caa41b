"""The transcript model: plain calls in, blocks out; the UI repaints only the dirty blocks.

The UI (or a service) drives it with plain values: `append_text(item_id, delta)`,
`begin_tool_call(...)`, and so on. Assistant text and reasoning go through one incremental
`BlockSplitter` per item, so a completed markdown block is frozen and never re-parsed and only the
open tail block of each item is rebuilt. Code blocks carry pygments spans from a `CodeHighlighter`
that lexes new lines only. Every change bumps the block's `version` and marks its id dirty;
`take_dirty()` swaps the dirty set out, so a view repaints just those blocks once per frame.

New blocks are always appended at the end of `blocks`; a view can rely on that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from app.render.highlight import CodeHighlighter, Span
from app.render.markdown import BlockSplitter, MdBlock, MdKind

__all__ = ["Block", "BlockKind", "Transcript"]


class BlockKind(StrEnum):
    USER = "user"
    PARAGRAPH = "paragraph"
    HEADING = "heading"
    LIST = "list"
    QUOTE = "quote"
    CODE = "code"
    RULE = "rule"
    TOOL_CALL = "tool_call"
    TOOL_OUTPUT = "tool_output"
    NOTICE = "notice"


_FROM_MD = {
    MdKind.PARAGRAPH: BlockKind.PARAGRAPH,
    MdKind.HEADING: BlockKind.HEADING,
    MdKind.LIST: BlockKind.LIST,
    MdKind.QUOTE: BlockKind.QUOTE,
    MdKind.CODE: BlockKind.CODE,
    MdKind.RULE: BlockKind.RULE,
}


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
    name: str = ""  # TOOL_CALL: function name; NOTICE: notice kind
    call_id: str = ""  # TOOL_CALL / TOOL_OUTPUT
    ok: bool | None = None  # TOOL_OUTPUT
    collapsed: bool = False  # TOOL_CALL / TOOL_OUTPUT
    closed: bool = False  # CODE: its closing fence was seen
    spans: list[Span] = field(default_factory=list)  # CODE: highlight spans over `text`
    committed: int = 0  # CODE: spans over text[:committed] are final until the block freezes


@dataclass(slots=True)
class _Item:
    kind: str  # "text" | "reasoning" | "tool"
    item_id: str
    splitter: BlockSplitter | None = None
    ids: list[int] = field(default_factory=list)  # block id per splitter index
    ended: bool = False
    tool_block: int = -1
    highlighters: dict[int, CodeHighlighter] = field(default_factory=dict)
    stack: list[str] | None = None  # lexer state handed to a continued code block


class Transcript:
    """Events of a conversation as blocks; see the module docstring."""

    def __init__(self) -> None:
        self.blocks: list[Block] = []
        self._by_id: dict[int, Block] = {}
        self._items: dict[str, _Item] = {}
        self._dirty: dict[int, None] = {}
        self._next_id = 1
        self.response_id = ""
        self.status = ""
        self._calls: dict[str, int] = {}  # call_id -> tool call block id

    # -- output ----------------------------------------------------------------------------------

    def block(self, block_id: int) -> Block:
        return self._by_id[block_id]

    def take_dirty(self) -> list[int]:
        """Ids of blocks created or changed since the last call, in first-change order."""
        out, self._dirty = list(self._dirty), {}
        return out

    @property
    def streaming(self) -> bool:
        """True between begin_assistant and end_response."""
        return bool(self.response_id) and not self.status

    def plain_text(self) -> str:
        """All block text, one block a paragraph (for copy-all and tests)."""
        return "\n\n".join(b.text for b in self.blocks if b.text)

    # -- input -----------------------------------------------------------------------------------

    def clear(self) -> None:
        self.blocks.clear()
        self._by_id.clear()
        self._items.clear()
        self._dirty.clear()
        self._calls.clear()
        self.response_id = ""
        self.status = ""

    def add_user_message(self, text: str) -> int:
        return self._new(BlockKind.USER, text=text, frozen=True).id

    def begin_assistant(self, response_id: str) -> None:
        self.response_id = response_id
        self.status = ""

    def append_text(self, item_id: str, delta: str) -> None:
        self._append_md(item_id, delta, "text")

    def append_reasoning(self, item_id: str, delta: str) -> None:
        self._append_md(item_id, delta, "reasoning")

    def begin_tool_call(self, item_id: str, name: str, call_id: str) -> int:
        if item_id in self._items:
            raise ValueError(f"item {item_id!r} already exists")
        blk = self._new(BlockKind.TOOL_CALL, item_id=item_id, name=name, call_id=call_id)
        self._items[item_id] = _Item("tool", item_id, tool_block=blk.id)
        if call_id:
            self._calls[call_id] = blk.id
        return blk.id

    def append_tool_args(self, item_id: str, delta: str) -> None:
        item = self._items.get(item_id)
        if item is None or item.kind != "tool":
            raise ValueError(f"append_tool_args: {item_id!r} is not an open tool call")
        if item.ended:
            raise ValueError(f"append_tool_args: tool call {item_id!r} already ended")
        if delta:
            blk = self._by_id[item.tool_block]
            blk.text += delta
            self._touch(blk)

    def end_item(self, item_id: str) -> None:
        """The item is complete: its blocks freeze. Unknown ids are ignored (nothing streamed)."""
        item = self._items.get(item_id)
        if item is None or item.ended:
            return
        item.ended = True
        if item.kind == "tool":
            blk = self._by_id[item.tool_block]
            blk.frozen = True
            self._touch(blk)
            return
        assert item.splitter is not None
        item.splitter.finish()
        self._sync(item)

    def add_tool_output(self, call_id: str, text: str, ok: bool) -> int:
        return self._new(BlockKind.TOOL_OUTPUT, text=text, call_id=call_id, ok=ok, frozen=True).id

    def add_notice(self, kind: str, text: str) -> int:
        return self._new(BlockKind.NOTICE, text=text, name=kind, frozen=True).id

    def end_response(self, status: str) -> None:
        """Freeze everything still open; a status other than "completed" is shown as a notice."""
        for item_id in list(self._items):
            self.end_item(item_id)
        self.status = status or "completed"
        if self.status != "completed":
            self.add_notice("status", f"Response {self.status}.")

    def set_collapsed(self, block_id: int, collapsed: bool) -> None:
        blk = self._by_id[block_id]
        if blk.collapsed != collapsed:
            blk.collapsed = collapsed
            self._touch(blk)

    # -- internals -------------------------------------------------------------------------------

    def _new(self, kind: BlockKind, **kw: object) -> Block:
        blk = Block(self._next_id, kind, **kw)  # type: ignore[arg-type]
        self._next_id += 1
        self.blocks.append(blk)
        self._by_id[blk.id] = blk
        self._dirty[blk.id] = None
        return blk

    def _touch(self, blk: Block) -> None:
        blk.version += 1
        self._dirty[blk.id] = None

    def _append_md(self, item_id: str, delta: str, kind: str) -> None:
        item = self._items.get(item_id)
        if item is None:
            item = self._items[item_id] = _Item(kind, item_id, splitter=BlockSplitter())
        elif item.kind != kind:
            raise ValueError(f"item {item_id!r} is a {item.kind} item, not {kind}")
        if item.ended:
            raise ValueError(f"item {item_id!r} already ended")
        if not delta:
            return
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
            for bid in item.ids[sp.frozen_count:]:
                blk = self._by_id[bid]
                blk.text, blk.frozen, blk.spans = "", True, []
                self._touch(blk)

    def _apply(self, item: _Item, index: int, md: MdBlock, frozen: bool) -> None:
        kind = _FROM_MD[md.kind]
        if index < len(item.ids):
            blk = self._by_id[item.ids[index]]
            if (not frozen and blk.text == md.text and blk.kind is kind and blk.lang == md.lang
                    and blk.level == md.level):
                return
            if blk.kind is not kind or blk.lang != md.lang:
                item.highlighters.pop(blk.id, None)
            blk.kind, blk.lang, blk.level, blk.cont = kind, md.lang, md.level, md.cont
            blk.text, blk.closed = md.text, md.closed
        else:
            blk = self._new(kind, text=md.text, item_id=item.item_id, lang=md.lang, level=md.level,
                            cont=md.cont, reasoning=item.kind == "reasoning", closed=md.closed)
            item.ids.append(blk.id)
        blk.frozen = frozen
        if kind is BlockKind.CODE:
            hl = item.highlighters.get(blk.id)
            if hl is None:
                hl = item.highlighters[blk.id] = CodeHighlighter(
                    md.lang, stack=item.stack if md.cont else None)
            hl.update(md.text, final=frozen)
            blk.spans = hl.spans()
            blk.committed = hl.committed_len
            if frozen:
                item.stack = hl.stack
                del item.highlighters[blk.id]
        else:
            blk.spans = []
            blk.committed = 0
        self._touch(blk)
