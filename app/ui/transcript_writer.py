"""Writing a transcript block into a QTextDocument: formats (cached per theme) and the layout of each
block kind. The view decides what to draw and where; this module only draws one block at a cursor.

Qt formats are shared values, so they are cached by key; a theme switch drops the caches. Copy and
toggle anchors use one shared format each (no per-block href): the view finds the block under the
click, so the document's format table does not grow with the session.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtGui import (
    QBrush,
    QColor,
    QFont,
    QTextBlockFormat,
    QTextCharFormat,
    QTextCursor,
    QTextFrame,
    QTextFrameFormat,
    QTextLength,
    QTextTableFormat,
)

from app.render.highlight import spans_in
from app.render.markdown import BOLD, CODE, ITALIC, STRIKE, parse_table, render_inline
from app.render.toolcard import CardLine, card_lines
from app.render.transcript import FOLD_LINES, Block, BlockKind
from app.ui.theme import Theme

__all__ = [
    "CARD_STYLE_PROPERTY",
    "CODE_BOX_END",
    "CODE_BOX_INSET",
    "CODE_BOX_LINE",
    "CODE_BOX_PROPERTY",
    "CODE_BOX_TOP",
    "CODE_BOX_TOP_CONT",
    "FOLD_PREVIEW",
    "OUTPUT_PREVIEW_CHARS",
    "OUTPUT_PREVIEW_LINES",
    "BlockWriter",
    "Drawn",
]

OUTPUT_PREVIEW_CHARS = 16 * 1024
OUTPUT_PREVIEW_LINES = 200
CARD_STYLE_PROPERTY = 0x100100  # QTextFormat user property: a tool card line's style ("add", "del", ...)
FOLD_PREVIEW = 6  # lines a collapsed tool output still shows
# A code block is paragraphs marked with this block property, in a box the view paints: the value
# says which part of the box a paragraph is. Geometry (px): the box's border + padding around the
# text (CODE_BOX_INSET), the margin above a box with a header, and the space below a box (its bottom
# margin and the gap after it), as the card frames had.
CODE_BOX_PROPERTY = 0x100101
CODE_BOX_TOP, CODE_BOX_TOP_CONT, CODE_BOX_LINE, CODE_BOX_END = 1, 2, 3, 4
CODE_BOX_INSET = 9
CODE_BOX_MARGIN = 8
CODE_BOX_BELOW = 6
_ORDERED = re.compile(r"^(\d{1,9}[.)])\s+")
_ALIGN = {"c": "center", "r": "right", "l": "left"}


@dataclass(slots=True)
class Drawn:
    start: int  # document position of the entry's first character
    kind: BlockKind | None  # None: an evicted page's placeholder
    version: int = -1
    frozen: bool = False
    collapsed: bool = False
    body: int = 0  # CODE / TOOL_CALL: offset (from start) where the text body begins
    trail: int = 0  # a card: positions after its last text position (frame end, gap paragraph)
    appended: int = 0  # CODE: text[:appended] is rendered as committed; TOOL_CALL: args rendered
    lang: str = ""
    chars: int = 0  # text length this entry stands for (the live budget counts it)


class BlockWriter:
    """Draws blocks with the formats of one theme (see the module docstring)."""

    def __init__(self, theme: Theme, mono: QFont, base_size: Callable[[], float]) -> None:
        self.theme = theme
        self.mono = mono
        self._base_size = base_size  # the view's font size, for headings
        self._fmt_cache: dict[object, QTextCharFormat] = {}
        self._bfmt_cache: dict[tuple[int, int, str, int, str, bool], QTextBlockFormat] = {}
        self._code_cache: dict[int, QTextBlockFormat] = {}  # theme-free
        self._frame_cache: dict[str, QTextFrameFormat] = {}
        self._gap = _gap_format(4.0)
        self._lead = _gap_format(0.0)

    def set_theme(self, theme: Theme) -> None:
        self.theme = theme
        self._fmt_cache.clear()
        self._bfmt_cache.clear()
        self._frame_cache.clear()

    def write(self, cur: QTextCursor, blk: Block, r: Drawn) -> None:
        """Insert the whole block at the cursor (which sits at the start of an empty paragraph) and
        leave the cursor at the end of the block's range (after a card's frame: see `_frame`; after a
        code box's bottom edge: see `code_format`)."""
        r.kind, r.version, r.frozen, r.collapsed, r.lang = (
            blk.kind,
            blk.version,
            blk.frozen,
            blk.collapsed,
            blk.lang,
        )
        r.appended = 0
        r.trail = 0
        r.chars = len(blk.text)
        k = blk.kind
        cur.setBlockFormat(self.bfmt())
        if k is BlockKind.CODE:
            # Paragraphs in a box the view paints (`CODE_BOX_PROPERTY`), not a frame: Qt lays out a
            # frame's paragraphs ~30% slower, and code is much of a model's output.
            if blk.cont:  # a size-cut continuation: the box goes on, without a header
                cur.setBlockFormat(self.code_format(CODE_BOX_TOP_CONT))
                cur.insertBlock(self.code_format(CODE_BOX_LINE), self.fmt("mono"))
            else:
                cur.setBlockFormat(self.code_format(CODE_BOX_TOP))
                cur.insertText(blk.lang or "code", self.fmt("label"))
                cur.insertText("    ", self.fmt("muted"))
                cur.insertText("Copy", self.fmt(("anchor", "copy")))
                cur.insertBlock(self.code_format(CODE_BOX_LINE), self.fmt("mono"))
            cur.setBlockCharFormat(self.fmt("mono"))
            r.body = cur.position() - r.start
            text = blk.text
            if blk.frozen:
                text = text[:-1] if text.endswith("\n") else text
                self.code_text(cur, blk, 0, len(text))
                r.appended = len(text)
            else:
                self.code_text(cur, blk, 0, blk.committed)
                self.code_text(cur, blk, blk.committed, len(text))
                r.appended = blk.committed
            cur.insertBlock(self.code_format(CODE_BOX_END), QTextCharFormat())  # the box's bottom edge
            r.trail = 1  # appends go before the bottom edge's paragraph
            return
        if k is BlockKind.TOOL_CALL or k is BlockKind.TOOL_OUTPUT:
            self._write_tool(cur, blk, r)
            return
        if k is BlockKind.TABLE:
            self._write_table(cur, blk, r)
            return
        if k is BlockKind.USER:
            frame = self._frame(cur, "user")
            cur.insertText("You", self.fmt("speaker"))
            for line in blk.text.split("\n"):
                cur.insertBlock(self.bfmt(top=0), self.fmt("base"))
                cur.insertText(line, self.fmt("base"))
            self._leave(cur, frame, r)
            return
        if k is BlockKind.ASSISTANT:
            cur.setBlockFormat(self.bfmt(top=14, bottom=2))
            cur.insertText("◆ ", self.fmt("accent"))
            cur.insertText(blk.text or "Assistant", self.fmt("speaker"))
            return
        if k is BlockKind.NOTICE:
            cur.setBlockFormat(self.bfmt(top=6))
            cur.insertText(blk.text, self.fmt("error" if blk.name == "error" else "muted"))
            if blk.item_id:  # a request's summary: the inspector shows what went on the wire
                cur.insertText("  ", self.fmt("muted"))
                cur.insertText("Inspect", self.fmt(("anchor", "inspect")))
            return
        if k is BlockKind.RULE:
            cur.setBlockFormat(self.bfmt(top=6))
            cur.insertText("─" * 24, self.fmt("muted"))
            return
        if not blk.text:
            return
        dim = blk.reasoning
        if k is BlockKind.HEADING:
            cur.setBlockFormat(self.bfmt(top=10, bottom=2))
            self._inline(cur, blk.text, dim, heading=blk.level)
        elif k is BlockKind.LIST or k is BlockKind.QUOTE:
            first = True
            for line in blk.text.split("\n"):
                stripped = line.lstrip()
                if not stripped:
                    continue  # a blank line between items: spacing comes from the item margins
                if not first:
                    cur.insertBlock()
                depth = min((len(line) - len(stripped)) // 2, 6)
                if k is BlockKind.QUOTE:
                    cur.setBlockFormat(self.bfmt(top=4 if first else 0, indent=1, quote=True))
                    first = False
                    stripped = stripped[1:].lstrip() if stripped.startswith(">") else stripped
                    self._inline(cur, stripped, True)
                    continue
                first = False
                cur.setBlockFormat(self.bfmt(top=3, indent=1 + depth))
                if stripped[:2] in ("- ", "* ", "+ ") or stripped in ("-", "*", "+"):
                    cur.insertText("•  " if depth == 0 else "◦  ", self.fmt("muted"))
                    stripped = stripped[2:]
                elif (m := _ORDERED.match(stripped)) is not None:
                    cur.insertText(m.group(1) + "  ", self.fmt("muted"))
                    stripped = stripped[m.end() :]
                self._inline(cur, stripped, dim)
        else:
            cur.setBlockFormat(self.bfmt(top=0 if blk.cont else 6))
            self._inline(cur, blk.text, dim)

    # -- cards: frames with padding and a border ---------------------------------------------------

    def code_format(self, part: int) -> QTextBlockFormat:
        """A code box's paragraph formats: the box's top (the header line, or an empty top edge for a
        continuation), its lines, and the empty paragraph of its bottom edge. Margins keep room for
        the box the view paints around them (`CODE_BOX_*` geometry)."""
        f = self._code_cache.get(part)
        if f is not None:
            return f
        f = QTextBlockFormat()
        f.setProperty(CODE_BOX_PROPERTY, part)
        f.setLeftMargin(CODE_BOX_INSET)
        f.setRightMargin(CODE_BOX_INSET)
        if part == CODE_BOX_TOP:
            f.setTopMargin(CODE_BOX_MARGIN + CODE_BOX_INSET)
        elif part == CODE_BOX_LINE:
            f.setTopMargin(4)
        else:  # the top edge of a continuation, the bottom edge: empty paragraphs of a fixed height
            height = CODE_BOX_INSET if part == CODE_BOX_TOP_CONT else CODE_BOX_INSET + CODE_BOX_BELOW
            f.setLineHeight(height, QTextBlockFormat.LineHeightTypes.FixedHeight.value)
        self._code_cache[part] = f
        return f

    def _frame(self, cur: QTextCursor, style: str) -> QTextFrame:
        """Open a card frame at the cursor (the start of the entry's empty paragraph); the cursor moves
        inside it. Qt puts a frame between two paragraphs: the entry's range then runs from the
        frame's start marker to the paragraph after the frame, which `_leave` makes a small gap."""
        cur.setBlockFormat(self._lead)  # the empty paragraph Qt keeps before a frame: no blank line
        return cur.insertFrame(self.frame_format(style))

    def _leave(self, cur: QTextCursor, frame: QTextFrame, r: Drawn) -> None:
        """Move the cursor after the frame: to the end of the entry's range. `r.trail` counts the
        positions between the frame's last text position and that end (appends stop before them)."""
        inside = frame.lastPosition()
        cur.setPosition(inside + 1)
        cur.setBlockFormat(self._gap)
        cur.movePosition(QTextCursor.MoveOperation.EndOfBlock)
        r.trail = cur.position() - inside

    def frame_format(self, style: str) -> QTextFrameFormat:
        f = self._frame_cache.get(style)
        if f is not None:
            return f
        th = self.theme
        f = QTextFrameFormat()
        f.setWidth(QTextLength(QTextLength.Type.PercentageLength, 100))
        f.setBorderStyle(QTextFrameFormat.BorderStyle.BorderStyle_Solid)
        f.setBorderBrush(QBrush(QColor(th.border)))
        if style == "user":
            f.setBackground(QColor(th.user_background))
            f.setPadding(10)
            f.setBorder(0)
            f.setTopMargin(18)
            f.setBottomMargin(2)
        else:
            f.setBackground(QColor(th.code_background))
            f.setPadding(8)
            f.setBorder(1)
            f.setTopMargin(8)
            f.setBottomMargin(2)
            if style in ("tool-ok", "tool-failed"):
                f.setBorderBrush(QBrush(QColor(th.ok if style == "tool-ok" else th.error)))
        self._frame_cache[style] = f
        return f

    def _write_table(self, cur: QTextCursor, blk: Block, r: Drawn) -> None:
        th = self.theme
        rows = parse_table(blk.text, blk.lang or "-", cont=blk.cont)
        n = max(rows.columns, 1)
        body = rows.rows
        count = len(body) + (1 if rows.header else 0)
        if count == 0:
            return
        fmt = QTextTableFormat()
        fmt.setBorder(1)
        fmt.setBorderBrush(QBrush(QColor(th.border)))
        fmt.setBorderStyle(QTextFrameFormat.BorderStyle.BorderStyle_Solid)
        fmt.setBorderCollapse(True)
        fmt.setCellPadding(6)
        fmt.setCellSpacing(0)
        fmt.setTopMargin(0 if blk.cont else 8)
        fmt.setBottomMargin(2)
        if rows.header:
            fmt.setHeaderRowCount(1)
        table = cur.insertTable(count, n, fmt)
        all_rows = ([rows.header] if rows.header else []) + body
        for i, cells in enumerate(all_rows):
            head = bool(rows.header) and i == 0
            for j, cell in enumerate(cells):
                qcell = table.cellAt(i, j)
                if head:
                    cf = qcell.format()
                    cf.setBackground(QColor(th.code_background))
                    qcell.setFormat(cf)
                c = qcell.firstCursorPosition()
                c.setBlockFormat(
                    self.bfmt(align=_ALIGN.get(rows.aligns[j] if j < len(rows.aligns) else "-", ""))
                )
                self._inline(c, cell, blk.reasoning, bold=head)
        self._leave(cur, table, r)

    def _write_tool(self, cur: QTextCursor, blk: Block, r: Drawn) -> None:
        arrow = "▸" if blk.collapsed else "▾"
        if blk.kind is BlockKind.TOOL_CALL:
            frame = self._frame(cur, "tool")
            cur.insertText(f"{arrow} ", self.fmt(("anchor", "toggle")))
            cur.insertText(blk.name or "tool call", self.fmt(("anchor-bold", "toggle")))
            state = "  calling…" if not blk.frozen else ""
            cur.insertText(state, self.fmt("muted"))
            if not blk.collapsed:
                cur.insertBlock(self.bfmt(top=4), self.fmt("mono"))
                r.body = cur.position() - r.start
                if blk.frozen:
                    self._card_lines(cur, card_lines(blk.name, blk.text))
                else:  # still streaming: the raw arguments, appended as they come
                    cur.insertText(blk.text, self.fmt("mono"))
                r.appended = len(blk.text)
            self._leave(cur, frame, r)
            return
        text = blk.text.rstrip("\n")
        lines = text.split("\n") if text else []
        frame = self._frame(cur, "tool-ok" if blk.ok else "tool-failed")
        cur.insertText("✓ " if blk.ok else "✗ ", self.fmt("ok" if blk.ok else "error"))
        label = f"{blk.name} " if blk.name else ""
        cur.insertText(f"{label}{'output' if blk.ok else 'failed'}", self.fmt("speaker-small"))
        cur.insertText(f"   {len(lines)} line{'s' if len(lines) != 1 else ''}   ", self.fmt("muted"))
        cur.insertText("Copy", self.fmt(("anchor", "copy")))
        if lines:
            shown = lines[:FOLD_PREVIEW] if blk.collapsed else lines[:OUTPUT_PREVIEW_LINES]
            preview = "\n".join(shown)[:OUTPUT_PREVIEW_CHARS]
            cur.insertBlock(self.bfmt(top=4), self.fmt("mono"))
            cur.insertText(preview, self.fmt("mono-ok" if blk.ok else "mono-error"))
            hidden = len(lines) - preview.count("\n") - 1
            if blk.collapsed and hidden > 0:
                cur.insertBlock(self.bfmt(top=4), self.fmt("base"))
                cur.insertText(
                    f"▸ show {hidden} more line{'s' if hidden != 1 else ''}", self.fmt(("anchor", "toggle"))
                )
            elif not blk.collapsed and len(lines) > FOLD_LINES:
                cur.insertBlock(self.bfmt(top=4), self.fmt("base"))
                if hidden > 0:
                    cur.insertText(f"… {hidden} more lines (Copy for all)   ", self.fmt("muted"))
                cur.insertText("▴ show less", self.fmt(("anchor", "toggle")))
        self._leave(cur, frame, r)

    def _card_lines(self, cur: QTextCursor, lines: list[CardLine]) -> None:
        for n, (style, line) in enumerate(lines):
            if n:
                cur.insertText("\n", self.fmt("mono"))
            if style == "key" and ": " in line:
                key, _, value = line.partition(": ")
                cur.insertText(key + ":", self.fmt("card-key"))
                cur.insertText(" " + value, self.fmt("mono"))
            else:
                cur.insertText(line, self.fmt(f"card-{style}"))

    def code_text(self, cur: QTextCursor, blk: Block, start: int, end: int) -> None:
        if end <= start:
            return
        text = blk.text
        pos = start
        mono = self.fmt("mono")
        for s, e, key in spans_in(blk.spans, start, end):
            if s > pos:
                cur.insertText(text[pos:s], mono)
            cur.insertText(text[s:e], self.fmt(("tok", key)))
            pos = e
        if pos < end:
            cur.insertText(text[pos:end], mono)

    def _inline(self, cur: QTextCursor, text: str, dim: bool, heading: int = 0, bold: bool = False) -> None:
        for span in render_inline(text):
            flags = span.flags | (BOLD if heading or bold else 0)
            if span.href:
                fmt = QTextCharFormat(self.fmt(("link", flags, dim, heading)))
                fmt.setAnchorHref(span.href)
                cur.insertText(span.text, fmt)
            else:
                cur.insertText(span.text, self.fmt(("flags", flags, dim, heading)))

    def _color(self, name: str) -> QColor:
        return QColor(name)

    def bfmt(
        self,
        top: int = 0,
        bottom: int = 0,
        bg: str = "",
        indent: int = 0,
        align: str = "",
        quote: bool = False,
    ) -> QTextBlockFormat:
        """Block formats are cached (Qt formats are shared values): a frame writes dozens of blocks."""
        key = (top, bottom, bg, indent, align, quote)
        f = self._bfmt_cache.get(key)
        if f is not None:
            return f
        f = QTextBlockFormat()
        f.setTopMargin(top)
        f.setBottomMargin(bottom)
        if indent:
            f.setIndent(indent)
        if align:
            f.setAlignment(
                {"center": Qt.AlignmentFlag.AlignHCenter, "right": Qt.AlignmentFlag.AlignRight}.get(
                    align, Qt.AlignmentFlag.AlignLeft
                )
            )
        if quote:
            f.setLeftMargin(6)
        if bg:
            f.setBackground(self._color(bg))
        self._bfmt_cache[key] = f
        return f

    def fmt(self, key: object) -> QTextCharFormat:
        fmt = self._fmt_cache.get(key)
        if fmt is not None:
            return fmt
        th = self.theme
        fmt = QTextCharFormat()
        fmt.setForeground(self._color(th.foreground))
        if key == "mono":
            fmt.setFont(self.mono)
            fmt.setForeground(self._color(th.code_foreground))
        elif key in ("mono-ok", "mono-error"):
            fmt.setFont(self.mono)
            fmt.setForeground(self._color(th.code_foreground if key == "mono-ok" else th.error))
        elif isinstance(key, str) and key.startswith("card-"):
            # tool-call card lines: diff colouring (add/del/hunk/meta), shell lines, JSON keys
            fmt.setFont(self.mono)
            style = key[5:]
            fmt.setProperty(CARD_STYLE_PROPERTY, style)
            colour = {
                "add": th.ok,
                "del": th.error,
                "hunk": th.link,
                "meta": th.muted,
                "muted": th.muted,
                "key": th.link,
            }.get(style, th.code_foreground)
            fmt.setForeground(self._color(colour))
            if style in ("add", "del"):
                bg = QColor(colour)
                bg.setAlpha(28)
                fmt.setBackground(bg)
            if style in ("shell", "meta"):
                fmt.setFontWeight(QFont.Weight.Bold)
        elif key in ("muted", "error", "ok", "accent"):
            fmt.setForeground(
                self._color({"muted": th.muted, "error": th.error, "ok": th.ok, "accent": th.link}[str(key)])
            )
        elif key == "label":  # a code block's language
            fmt.setForeground(self._color(th.muted))
            fmt.setFontWeight(QFont.Weight.DemiBold)
        elif key in ("speaker", "speaker-small"):  # "You", the model's name, a tool card's title
            fmt.setFontWeight(QFont.Weight.Bold)
        elif isinstance(key, tuple) and key[0] in ("anchor", "anchor-bold"):
            fmt.setAnchor(True)
            fmt.setAnchorHref(str(key[1]))
            fmt.setForeground(self._color(th.link))
            if key[0] == "anchor-bold":
                fmt.setFontWeight(QFont.Weight.Bold)
        elif isinstance(key, tuple) and key[0] == "tok":
            fmt.setFont(self.mono)
            st = th.code_style(str(key[1]))
            fmt.setForeground(self._color(st.color if st and st.color else th.code_foreground))
            if st and st.bold:
                fmt.setFontWeight(QFont.Weight.Bold)
            if st and st.italic:
                fmt.setFontItalic(True)
        elif isinstance(key, tuple) and key[0] == "link":
            fmt = QTextCharFormat(self.fmt(("flags", *key[1:])))
            fmt.setAnchor(True)
            fmt.setForeground(self._color(th.link))
            fmt.setFontUnderline(True)
        elif isinstance(key, tuple) and key[0] == "flags":
            flags, dim = int(key[1]), bool(key[2])
            heading = int(key[3]) if len(key) > 3 else 0
            if dim:
                fmt.setForeground(self._color(th.muted))
            if flags & BOLD:
                fmt.setFontWeight(QFont.Weight.Bold)
            if flags & ITALIC or dim:
                fmt.setFontItalic(bool(flags & ITALIC) or dim)
            if flags & STRIKE:
                fmt.setFontStrikeOut(True)
            if flags & CODE:
                fmt.setFont(self.mono)
                fmt.setBackground(self._color(th.code_background))
            if heading:
                size = self._base_size()
                base = size if size > 0 else 10.0
                fmt.setFontPointSize(base * {1: 1.6, 2: 1.35, 3: 1.15}.get(heading, 1.0))
        self._fmt_cache[key] = fmt
        return fmt

    def placeholder_format(self, height: float) -> QTextBlockFormat:
        fmt = QTextBlockFormat()
        fmt.setLineHeight(max(height, 1.0), QTextBlockFormat.LineHeightTypes.FixedHeight.value)
        return fmt


def _gap_format(height: float) -> QTextBlockFormat:
    """The empty paragraphs Qt keeps around a card's frame: a thin gap rather than a blank line."""
    fmt = QTextBlockFormat()
    fmt.setLineHeight(height, QTextBlockFormat.LineHeightTypes.FixedHeight.value)
    return fmt
