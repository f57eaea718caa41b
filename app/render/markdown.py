"""Incremental markdown block splitter and a bounded inline renderer.

Theory of operation. A message arrives as deltas. The splitter works on *lines*: a line is committed
only when its newline arrives, so every decision about block boundaries depends on complete lines
and the same text gives the same blocks whether it arrives whole or one character at a time. A
committed block that the next line cannot extend is *frozen*: it is handed out once through
`take_frozen()` and never looked at again. What is not frozen is the *tail*: the open block plus the
partial last line, rebuilt on demand by `tail()` from at most one capped block, so a flush costs
O(new text + cap), never O(message).

Two caps keep one flush cheap on hostile input (a single 1 MB paragraph, a 100,000-line code
fence): a line longer than `SOFT_LINE` is cut at its first blank after `SOFT_LINE` (or hard at
`HARD_LINE`) into *soft* line pieces, and a block whose text exceeds `MAX_BLOCK_CHARS` (or a code
block over `MAX_CODE_LINES` lines) is frozen at a line boundary and continued in a new block of the
same kind marked `cont=True`. Inline formatting that spans such a cut is lost; nothing else is.

Supported: fenced code (``` and ~~~, info string, a fence still open at the end, fences indented
inside list items), ATX headings, thematic breaks, bullet/ordered lists (with indented
continuations and blank lines inside), blockquotes, GFM tables (a header row, then a delimiter row such as `|---|:-:|`; the table runs to a
blank line or the start of another block), paragraphs. Setext headings and HTML blocks are rendered
as paragraphs. A table's `lang` holds its column alignments, one of "lcr-" a column, so a continued
table (after a size cut) still knows them; `parse_table` splits its rows into cells.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from markdown_it import MarkdownIt

__all__ = [
    "HARD_LINE",
    "MAX_BLOCK_CHARS",
    "MAX_CODE_LINES",
    "SOFT_LINE",
    "BlockSplitter",
    "InlineSpan",
    "MdBlock",
    "MdKind",
    "TableRows",
    "parse_table",
    "render_inline",
    "split_all",
    "split_row",
    "warm_inline",
]

SOFT_LINE = 2048
HARD_LINE = 4096
MAX_BLOCK_CHARS = 4096
MAX_CODE_LINES = 200


class MdKind(StrEnum):
    PARAGRAPH = "paragraph"
    HEADING = "heading"
    LIST = "list"
    QUOTE = "quote"
    CODE = "code"
    RULE = "rule"
    TABLE = "table"


@dataclass(slots=True)
class MdBlock:
    """One markdown block. For CODE, `text` is the code without fences, complete lines end in \\n."""

    kind: MdKind
    text: str = ""
    lang: str = ""
    level: int = 0
    cont: bool = False  # continues the previous block after a size cut
    closed: bool = False  # CODE: the closing fence was seen


_FENCE = re.compile(r"^( *)(`{3,}|~{3,})(.*)$")
_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_RULE = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_QUOTE = re.compile(r"^ {0,3}>")
_ITEM = re.compile(r"^ {0,3}(?:[-*+]|\d{1,9}[.)])(?:[ \t]|$)")
_DELIM_CELL = re.compile(r"^\s*(:?)-+(:?)\s*$")


@dataclass(slots=True)
class _Open:
    kind: MdKind
    parts: list[str] = field(default_factory=list)  # committed text pieces, newlines included
    size: int = 0
    lines: int = 0
    lang: str = ""
    level: int = 0
    cont: bool = False
    fence: str = ""  # CODE: the opening fence run
    indent: int = 0  # CODE: indentation of the opening fence, stripped from code lines
    pending_blank: bool = False  # LIST: a blank line was seen; the next line decides

    def add(self, piece: str) -> None:
        self.parts.append(piece)
        self.size += len(piece)

    def text(self) -> str:
        if len(self.parts) > 1:
            self.parts[:] = ["".join(self.parts)]
        return self.parts[0] if self.parts else ""


def _fence_open(line: str, any_indent: bool) -> re.Match[str] | None:
    m = _FENCE.match(line)
    if m is None or (not any_indent and len(m.group(1)) > 3):
        return None
    if m.group(2)[0] == "`" and "`" in m.group(3):
        return None
    return m


class BlockSplitter:
    """Feed deltas of one message; take frozen blocks; look at the open tail."""

    def __init__(self) -> None:
        self._partial = ""  # the incomplete last line
        self._open: _Open | None = None
        self._frozen: list[MdBlock] = []  # not yet taken
        self._count = 0  # blocks frozen so far (taken or not)
        self._midline = False  # the last committed piece was a soft cut inside a line
        self._finished = False

    @property
    def frozen_count(self) -> int:
        """How many blocks are frozen; the tail, if any, has this index."""
        return self._count

    def feed(self, delta: str) -> None:
        """Add text. Cost: O(len(delta) + current partial line), the partial line being capped."""
        if self._finished:
            raise ValueError("feed() after finish()")
        if not delta:
            return
        if "\r" in delta:
            delta = delta.replace("\r\n", "\n").replace("\r", "\n")
        buf = self._partial + delta
        start = 0
        while True:
            nl = buf.find("\n", start)
            end = nl if nl >= 0 else len(buf)
            cut = _soft_cut(buf, start, end)
            if cut is not None:
                self._commit(buf[start:cut], eol=False)
                start = cut
                continue
            if nl < 0:
                break
            self._commit(buf[start:nl], eol=True)
            start = nl + 1
        self._partial = buf[start:]

    def finish(self) -> None:
        """End of message: the partial line counts as complete, every block freezes."""
        if self._finished:
            return
        if self._partial or self._midline:
            self._commit(self._partial, eol=False, final=True)
            self._partial = ""
        self._freeze()
        self._finished = True

    def take_frozen(self) -> list[MdBlock]:
        """Blocks frozen since the last call, in order (swap-and-return)."""
        out, self._frozen = self._frozen, []
        return out

    def tail(self) -> MdBlock | None:
        """The open block including the partial line, as it would render now; None if nothing is open."""
        op, partial = self._open, self._partial
        if op is None:
            if not partial.strip() and not self._midline:
                return None
            if self._midline:  # only after a cut, which always leaves a block open
                return None
            kind, lang, level, body = _classify_start(partial)
            if kind is MdKind.CODE:
                return MdBlock(MdKind.CODE, "", lang=lang)
            return MdBlock(kind, body, level=level)
        text = op.text()
        if partial:
            if op.kind is MdKind.CODE:
                s = partial.strip()
                if not self._midline and op.fence and s and set(s) == {op.fence[0]}:  # maybe closing
                    partial = ""
                else:
                    partial = _strip_indent(partial, op.indent) if not self._midline else partial
            text = text + partial
        return MdBlock(op.kind, _display(op, text), lang=op.lang, level=op.level, cont=op.cont)

    # -- internals -------------------------------------------------------------------------------

    def _freeze(self) -> None:
        op = self._open
        if op is None:
            return
        self._open = None
        text = op.text()
        if op.kind is MdKind.LIST:
            text = text.rstrip("\n") + "\n" if text.strip() else text
        self._frozen.append(
            MdBlock(
                op.kind,
                _display(op, text),
                lang=op.lang,
                level=op.level,
                cont=op.cont,
                closed=op.kind is MdKind.CODE and op.fence == "",
            )
        )
        self._count += 1

    def _continue(self, op: _Open) -> None:
        """Freeze an oversized block and open its continuation."""
        kind, lang, fence, indent = op.kind, op.lang, op.fence, op.indent
        self._freeze()
        self._open = _Open(kind, lang=lang, cont=True, fence=fence, indent=indent)

    def _commit(self, line: str, eol: bool, final: bool = False) -> None:
        nl = "\n" if eol else ""
        op = self._open
        if self._midline:  # the rest of a line that was cut: no classification
            self._midline = not eol
            if op is None:  # cannot happen: a cut always leaves a block open
                self._open = op = _Open(MdKind.PARAGRAPH)
            op.add(line + nl)
            if eol:
                op.lines += 1
            self._after_add(op)
            return
        if not eol and not final:
            self._midline = True

        if op is not None and op.kind is MdKind.CODE:
            if (eol or final) and _is_close(line, op):
                op.fence = ""  # marks closed
                self._freeze()
                return
            op.add(_strip_indent(line, op.indent) + nl)
            op.lines += 1 if eol else 0
            self._after_add(op)
            return

        blank = not line.strip()
        if blank:
            if op is None:
                return
            if op.kind is MdKind.LIST:
                op.pending_blank = True
                op.add("\n")
                return
            self._freeze()
            return

        fence = _fence_open(line, any_indent=op is not None and op.kind is MdKind.LIST)
        if fence is not None:
            self._freeze()
            info = fence.group(3).strip()
            self._open = _Open(
                MdKind.CODE,
                lang=info.split()[0] if info else "",
                fence=fence.group(2),
                indent=len(fence.group(1)),
            )
            return

        if (
            op is not None
            and op.kind is MdKind.PARAGRAPH
            and (eol or final)
            and self._start_table(op, line, nl)
        ):
            return

        if op is not None:
            if op.kind is MdKind.TABLE and not _starts_block(line):
                op.add(line + nl)
                op.lines += 1
                self._after_add(op)
                return
            if op.kind is MdKind.PARAGRAPH and not _starts_block(line):
                op.add(line + nl)
                op.lines += 1
                self._after_add(op)
                return
            if op.kind is MdKind.QUOTE and _QUOTE.match(line):
                op.add(line + nl)
                op.lines += 1
                self._after_add(op)
                return
            if op.kind is MdKind.LIST:
                indented = line.startswith(("  ", "\t"))
                if _ITEM.match(line) or indented or (not op.pending_blank and not _starts_block(line)):
                    op.pending_blank = False
                    op.add(line + nl)
                    op.lines += 1
                    self._after_add(op)
                    return
                # a non-indented line after a blank ends the list; drop the trailing blank lines
            self._freeze()

        kind, lang, level, body = _classify_start(line)
        self._open = _Open(kind, lang=lang, level=level)
        if kind in (MdKind.HEADING, MdKind.RULE):
            self._open.add(body)
            if eol or final:
                self._freeze()
            return
        self._open.add(line + nl)
        self._open.lines += 1 if eol else 0
        self._after_add(self._open)

    def _start_table(self, op: _Open, line: str, nl: str) -> bool:
        """A delimiter row under a paragraph's last line turns that line into a table header."""
        aligns = _delimiter_aligns(line)
        if aligns is None:
            return False
        text = op.text()
        body = text[:-1] if text.endswith("\n") else text
        cut = body.rfind("\n")
        header = body[cut + 1 :]
        if ("|" not in header and "|" not in line) or len(split_row(header)) != len(aligns):
            return False
        if cut >= 0:  # the lines above the header stay a paragraph
            op.parts[:] = [text[: cut + 1]]
            op.size = cut + 1
            self._freeze()
        self._open = table = _Open(MdKind.TABLE, lang=aligns, cont=op.cont and cut < 0)
        table.add(header + "\n")
        table.add(line + nl)
        table.lines = 2
        self._after_add(table)
        return True

    def _after_add(self, op: _Open) -> None:
        if op.size >= MAX_BLOCK_CHARS or (op.kind is MdKind.CODE and op.lines >= MAX_CODE_LINES):
            if self._midline and op.kind is not MdKind.CODE and op.kind is not MdKind.PARAGRAPH:
                return  # wait for the line to end before cutting a list or quote
            self._continue(op)


def _soft_cut(buf: str, start: int, end: int) -> int | None:
    """Where to cut an over-long line piece buf[start:end], or None. Depends on the text only."""
    if end - start <= SOFT_LINE:
        return None
    lo, hi = start + SOFT_LINE, min(end, start + HARD_LINE)
    sp = buf.find(" ", lo, hi)
    tab = buf.find("\t", lo, sp if sp >= 0 else hi)
    if tab >= 0:
        sp = tab
    if sp >= 0:
        return sp + 1
    if end - start >= HARD_LINE:
        return start + HARD_LINE
    return None


def _is_close(line: str, op: _Open) -> bool:
    s = line.strip()
    return (
        bool(op.fence)
        and len(s) >= len(op.fence)
        and set(s) == {op.fence[0]}
        and (len(line) - len(line.lstrip(" ")) <= max(3, op.indent))
    )


def _strip_indent(line: str, indent: int) -> str:
    if indent <= 0:
        return line
    n = len(line) - len(line.lstrip(" "))
    return line[min(n, indent) :]


def _starts_block(line: str) -> bool:
    """Does this line interrupt a paragraph?"""
    return bool(
        _HEADING.match(line)
        or _RULE.match(line)
        or _QUOTE.match(line)
        or _ITEM.match(line)
        or _fence_open(line, any_indent=False)
    )


def _classify_start(line: str) -> tuple[MdKind, str, int, str]:
    """Kind, code language, heading level and body of a line that starts a block."""
    m = _fence_open(line, any_indent=False)
    if m is not None:
        info = m.group(3).strip()
        return MdKind.CODE, info.split()[0] if info else "", 0, ""
    m = _HEADING.match(line)
    if m is not None:
        return MdKind.HEADING, "", len(m.group(1)), (m.group(2) or "").strip()
    if _RULE.match(line):
        return MdKind.RULE, "", 0, ""
    if _QUOTE.match(line):
        return MdKind.QUOTE, "", 0, line
    if _ITEM.match(line):
        return MdKind.LIST, "", 0, line
    return MdKind.PARAGRAPH, "", 0, line


def _display(op: _Open, text: str) -> str:
    if op.kind in (MdKind.HEADING, MdKind.RULE):
        if op.kind is MdKind.HEADING and text.startswith("#"):
            m = _HEADING.match(text)
            if m is not None:
                return (m.group(2) or "").strip()
        return text.strip() if op.kind is MdKind.HEADING else ""
    if op.kind is MdKind.CODE:
        return text
    return text.rstrip("\n")


def _delimiter_aligns(line: str) -> str | None:
    """The alignments ("l", "c", "r" or "-" a column) of a GFM delimiter row, or None if it is not one."""
    if "-" not in line or len(line) - len(line.lstrip(" ")) > 3:
        return None
    cells = split_row(line)
    if not cells or ("|" not in line and len(cells) < 2):
        return None
    out = []
    for cell in cells:
        m = _DELIM_CELL.match(cell)
        if m is None:
            return None
        left, right = bool(m.group(1)), bool(m.group(2))
        out.append("c" if left and right else "r" if right else "l" if left else "-")
    return "".join(out)


def split_row(line: str) -> list[str]:
    """The cells of one table row: split at pipes not escaped with a backslash (`\\|` is a pipe in the
    cell, as GFM has it), outer pipes dropped."""
    s = line.strip()
    cells: list[str] = []
    cur: list[str] = []
    i = 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            cur.append("|" if s[i + 1] == "|" else s[i : i + 2])  # an escaped pipe is the cell's text
            i += 2
            continue
        if c == "|":
            cells.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    cells.append("".join(cur))
    if s.startswith("|"):
        cells = cells[1:]
    if s.endswith("|") and not s.endswith("\\|") and cells:
        cells = cells[:-1]
    return [c.strip() for c in cells]


@dataclass(frozen=True, slots=True)
class TableRows:
    """A table block split into cells: `header` is empty for a continued table (after a size cut)."""

    aligns: str
    header: list[str]
    rows: list[list[str]]

    @property
    def columns(self) -> int:
        return len(self.aligns)


def parse_table(text: str, aligns: str, cont: bool = False) -> TableRows:
    """Cells of a TABLE block's text (rows padded or cut to the header's width, as GFM does)."""
    lines = [ln for ln in text.split("\n") if ln.strip()]
    n = len(aligns)
    header: list[str] = []
    if not cont and lines:
        header = _fit(split_row(lines[0]), n)
        lines = lines[2:]
    return TableRows(aligns, header, [_fit(split_row(ln), n) for ln in lines])


def _fit(cells: list[str], n: int) -> list[str]:
    return cells[:n] + [""] * (n - len(cells))


def split_all(text: str) -> list[MdBlock]:
    """All blocks of a complete message (what the incremental path must also produce)."""
    sp = BlockSplitter()
    sp.feed(text)
    sp.finish()
    return sp.take_frozen()


# -- inline ---------------------------------------------------------------------------------------

BOLD = 1
ITALIC = 2
CODE = 4
STRIKE = 8


@dataclass(frozen=True, slots=True)
class InlineSpan:
    """A run of text with inline style flags (BOLD|ITALIC|CODE|STRIKE) and an optional link."""

    text: str
    flags: int = 0
    href: str = ""


@cache
def _parser() -> MarkdownIt:
    """The inline parser, built on first use: markdown-it is ~70 modules (~3 MB resident) that an app
    with no conversation yet never needs (`warm_inline` builds it in a worker before a turn)."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("strikethrough")


def warm_inline() -> None:
    """Build the inline parser now (safe in a worker thread: a race only builds it twice)."""
    render_inline("*x*")


_FLAG_OPEN = {"strong_open": BOLD, "em_open": ITALIC, "s_open": STRIKE}
_FLAG_CLOSE = {"strong_close": BOLD, "em_close": ITALIC, "s_close": STRIKE}
_SAFE_SCHEMES = ("http://", "https://", "mailto:", "file://")


def render_inline(text: str) -> list[InlineSpan]:
    """Inline markdown (bold, italic, code, strike, links) to styled spans; newlines kept as breaks.

    Raw HTML is shown as text, and only http(s)/mailto/file links become links.
    """
    if not text:
        return []
    if not any(c in text for c in "*_`[~<\\&!"):
        return [InlineSpan(text)]
    simple = _simple_inline(text)
    if simple is not None:
        return simple
    tokens = _parser().parseInline(text)
    out: list[InlineSpan] = []
    flags = 0
    href_stack: list[str] = []
    children = tokens[0].children or [] if tokens else []
    for tok in children:
        t = tok.type
        if t == "text" or t == "html_inline":
            _push(out, tok.content, flags, href_stack)
        elif t == "code_inline":
            _push(out, tok.content, flags | CODE, href_stack)
        elif t in ("softbreak", "hardbreak"):
            _push(out, "\n", flags, href_stack)
        elif t in _FLAG_OPEN:
            flags |= _FLAG_OPEN[t]
        elif t in _FLAG_CLOSE:
            flags &= ~_FLAG_CLOSE[t]
        elif t == "link_open":
            href = str(tok.attrGet("href") or "")
            href_stack.append(href if href.lower().startswith(_SAFE_SCHEMES) else "")
        elif t == "link_close":
            if href_stack:
                href_stack.pop()
        elif t == "image":
            _push(out, tok.content or "[image]", flags, href_stack)
        else:
            _push(out, tok.content, flags, href_stack)
    return out


def _push(out: list[InlineSpan], text: str, flags: int, href_stack: list[str]) -> None:
    if not text:
        return
    href = href_stack[-1] if href_stack else ""
    if out and out[-1].flags == flags and out[-1].href == href:
        out[-1] = InlineSpan(out[-1].text + text, flags, href)
    else:
        out.append(InlineSpan(text, flags, href))


# The common case of a model's prose: `code` spans and *em*/**strong** pairs around words, nothing
# else. markdown-it costs ~35 us a paragraph (the largest part of drawing a paragraph); this splits
# such text itself and leaves anything it is not sure about to markdown-it (a differential test holds
# it to markdown-it's output). A delimiter run is taken only where CommonMark's flanking rules leave
# no doubt: an opener after a space, the start or an opening bracket and before a letter or digit; a
# closer after a letter or digit and before a space, the end or plain punctuation; pairs not nested.
_SIMPLE_RISKY = frozenset("_[~<\\&!\n\r\t")
_OPEN_BEFORE = frozenset(" ([{\"'")
_CLOSE_AFTER = frozenset(" .,;:?)]}\"'")
_CODE_SPAN = re.compile(r"`([^`]+)`")


def _simple_inline(text: str) -> list[InlineSpan] | None:
    """`render_inline` for simple text (see above), or None: markdown-it decides."""
    if not _SIMPLE_RISKY.isdisjoint(text) or "``" in text:  # a longer backtick run: markdown-it
        return None
    out: list[InlineSpan] = []
    pos = 0
    for m in _CODE_SPAN.finditer(text):
        body = m.group(1)
        if body[0] == " " or body[-1] == " " or not _simple_emphasis(text[pos : m.start()], out):
            return None
        _push(out, body, CODE, [])
        pos = m.end()
    if "`" in text[pos:] or not _simple_emphasis(text[pos:], out):
        return None
    return out


def _simple_emphasis(text: str, out: list[InlineSpan]) -> bool:
    """Append the spans of a code-free piece with only clean `*`/`**` pairs; False if it is not one."""
    if "`" in text:
        return False
    pos = 0
    n = len(text)
    while True:
        i = text.find("*", pos)
        if i < 0:
            _push(out, text[pos:], 0, [])
            return True
        run = 2 if text.startswith("**", i) else 1
        body = i + run
        if (
            text.startswith("*", body)
            or (i > 0 and text[i - 1] not in _OPEN_BEFORE)
            or body >= n
            or not text[body].isalnum()
        ):
            return False
        j = text.find("*", body)
        if j < 0 or not text[j - 1].isalnum():
            return False
        end = j + run
        if text[j:end] != "*" * run or (end < n and text[end] not in _CLOSE_AFTER):
            return False
        _push(out, text[pos:i], 0, [])
        _push(out, text[body:j], BOLD if run == 2 else ITALIC, [])
        pos = end
