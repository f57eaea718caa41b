"""Writing a transcript block into a QTextDocument: formats (cached per theme) and the layout of each
block kind. The view decides what to draw and where; this module only draws one block at a cursor.

Qt formats are shared values, so they are cached by key; a theme switch drops the caches. Copy and
toggle anchors use one shared format each (no per-block href): the view finds the block under the
click, so the document's format table does not grow with the session.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtGui import QColor, QFont, QTextBlockFormat, QTextCharFormat, QTextCursor

from app.render.highlight import spans_in
from app.render.markdown import BOLD, CODE, ITALIC, STRIKE, render_inline
from app.render.transcript import Block, BlockKind
from app.ui.theme import Theme

__all__ = ["OUTPUT_PREVIEW_CHARS", "OUTPUT_PREVIEW_LINES", "BlockWriter", "Drawn"]

OUTPUT_PREVIEW_CHARS = 16 * 1024
OUTPUT_PREVIEW_LINES = 200


@dataclass(slots=True)
class Drawn:
    start: int  # document position of the entry's first character
    kind: BlockKind | None  # None: an evicted page's placeholder
    version: int = -1
    frozen: bool = False
    collapsed: bool = False
    body: int = 0  # CODE / TOOL_CALL: offset (from start) where the text body begins
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
        self._bfmt_cache: dict[tuple[int, int, str, int], QTextBlockFormat] = {}

    def set_theme(self, theme: Theme) -> None:
        self.theme = theme
        self._fmt_cache.clear()
        self._bfmt_cache.clear()

    def write(self, cur: QTextCursor, blk: Block, r: Drawn) -> None:
        """Insert the whole block at the cursor (which sits at the start of an empty paragraph)."""
        r.kind, r.version, r.frozen, r.collapsed, r.lang = blk.kind, blk.version, blk.frozen, blk.collapsed, blk.lang
        r.appended = 0
        r.chars = len(blk.text)
        k = blk.kind
        th = self.theme
        cur.setBlockFormat(self.bfmt())
        if k is BlockKind.CODE:
            if not blk.cont:
                cur.setBlockFormat(self.bfmt(top=6, bg=th.code_background))
                cur.insertText(f"{blk.lang or 'code'}  ", self.fmt("muted"))
                cur.insertText("Copy", self.fmt(("anchor", "copy")))
                cur.insertBlock(self.bfmt(bg=th.code_background), self.fmt("mono"))
            else:
                cur.setBlockFormat(self.bfmt(bg=th.code_background))
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
            return
        if k is BlockKind.TOOL_CALL or k is BlockKind.TOOL_OUTPUT:
            self._write_tool(cur, blk, r)
            return
        if k is BlockKind.USER:
            cur.setBlockFormat(self.bfmt(top=10, bottom=4, bg=th.user_background))
            cur.insertText("You\n", self.fmt(("flags", BOLD, False)))
            cur.insertText(blk.text, self.fmt("base"))
            return
        if k is BlockKind.NOTICE:
            cur.setBlockFormat(self.bfmt(top=4))
            cur.insertText(blk.text, self.fmt("error" if blk.name == "error" else "muted"))
            if blk.item_id:  # a request's summary: the inspector shows what went on the wire
                cur.insertText("  ", self.fmt("muted"))
                cur.insertText("Inspect", self.fmt(("anchor", "inspect")))
            return
        if k is BlockKind.RULE:
            cur.setBlockFormat(self.bfmt(top=4))
            cur.insertText("─" * 24, self.fmt("muted"))
            return
        if not blk.text:
            return
        dim = blk.reasoning
        if k is BlockKind.HEADING:
            cur.setBlockFormat(self.bfmt(top=8))
            self._inline(cur, blk.text, dim, heading=blk.level)
        elif k is BlockKind.LIST or k is BlockKind.QUOTE:
            first = True
            for line in blk.text.split("\n"):
                if not first:
                    cur.insertBlock()
                first = False
                stripped = line.lstrip()
                depth = (len(line) - len(stripped)) // 2
                if k is BlockKind.QUOTE:
                    stripped = stripped[1:].lstrip() if stripped.startswith(">") else stripped
                    cur.setBlockFormat(self.bfmt(indent=1))
                    self._inline(cur, stripped, True)
                    continue
                cur.setBlockFormat(self.bfmt(indent=1 + depth))
                if stripped[:2] in ("- ", "* ", "+ ") or stripped in ("-", "*", "+"):
                    cur.insertText("• ", self.fmt("muted"))
                    stripped = stripped[2:]
                self._inline(cur, stripped, dim)
        else:
            cur.setBlockFormat(self.bfmt(top=0 if blk.cont else 4))
            self._inline(cur, blk.text, dim)

    def _write_tool(self, cur: QTextCursor, blk: Block, r: Drawn) -> None:
        th = self.theme
        arrow = "▸" if blk.collapsed else "▾"
        cur.setBlockFormat(self.bfmt(top=6, bg=th.code_background))
        if blk.kind is BlockKind.TOOL_CALL:
            label = f"{arrow} tool {blk.name}" + ("" if blk.frozen else " …")
            cur.insertText(label, self.fmt(("anchor", "toggle")))
            cur.insertText(f"  {blk.call_id}", self.fmt("muted"))
            if not blk.collapsed:
                cur.insertBlock(self.bfmt(bg=th.code_background), self.fmt("mono"))
                r.body = cur.position() - r.start
                cur.insertText(blk.text, self.fmt("mono"))
                r.appended = len(blk.text)
            return
        lines = blk.text.count("\n") + (0 if blk.text.endswith("\n") or not blk.text else 1)
        mark = "✓" if blk.ok else "✗"
        cur.insertText(f"{arrow} {mark} output  ", self.fmt(("anchor", "toggle")))
        cur.insertText(f"{lines} lines  ", self.fmt("muted"))
        cur.insertText("Copy", self.fmt(("anchor", "copy")))
        if blk.collapsed:
            return
        preview = blk.text[:OUTPUT_PREVIEW_CHARS]
        cut = _nth(preview, "\n", OUTPUT_PREVIEW_LINES)
        if cut >= 0:
            preview = preview[:cut]
        preview = preview.rstrip("\n")
        cur.insertBlock(self.bfmt(bg=th.code_background), self.fmt("mono"))
        cur.insertText(preview, self.fmt("ok" if blk.ok else "error"))
        if len(preview) < len(blk.text.rstrip("\n")):
            rest = blk.text.count("\n", len(preview))
            cur.insertText(f"\n… {max(rest, 1)} more lines (Copy for all)", self.fmt("muted"))

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

    def _inline(self, cur: QTextCursor, text: str, dim: bool, heading: int = 0) -> None:
        for span in render_inline(text):
            flags = span.flags | (BOLD if heading else 0)
            if span.href:
                fmt = QTextCharFormat(self.fmt(("link", flags, dim, heading)))
                fmt.setAnchorHref(span.href)
                cur.insertText(span.text, fmt)
            else:
                cur.insertText(span.text, self.fmt(("flags", flags, dim, heading)))

    def _color(self, name: str) -> QColor:
        return QColor(name)

    def bfmt(self, top: int = 0, bottom: int = 0, bg: str = "", indent: int = 0) -> QTextBlockFormat:
        """Block formats are cached (Qt formats are shared values): a frame writes dozens of blocks."""
        key = (top, bottom, bg, indent)
        f = self._bfmt_cache.get(key)
        if f is not None:
            return f
        f = QTextBlockFormat()
        f.setTopMargin(top)
        f.setBottomMargin(bottom)
        if indent:
            f.setIndent(indent)
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
        elif key in ("muted", "error", "ok"):
            fmt.setForeground(self._color({"muted": th.muted, "error": th.error, "ok": th.ok}[str(key)]))
        elif isinstance(key, tuple) and key[0] == "anchor":
            fmt.setAnchor(True)
            fmt.setAnchorHref(str(key[1]))
            fmt.setForeground(self._color(th.link))
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


def _nth(text: str, ch: str, n: int) -> int:
    """Index of the n-th occurrence of ch (1-based), or -1."""
    pos = -1
    for _ in range(n):
        pos = text.find(ch, pos + 1)
        if pos < 0:
            return -1
    return pos
