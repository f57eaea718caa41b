"""The transcript widget: a read-only QTextBrowser edited block by block, once per frame.

`feed_*` calls only buffer. A ~16 ms frame timer applies the buffer to the `Transcript` model (at
most `MAX_FEED_PER_FRAME` characters, so a 1 MB delta is spread over frames), takes the model's
dirty block ids and edits just those blocks' ranges in the document inside one edit block, so Qt
lays out only the changed tail. Frozen blocks are never touched again. Code blocks and tool-call
arguments grow by appending: only the provisional last line of a code block is replaced.

Every path is bounded by time, not only by size: a frame does at most `FRAME_BUDGET_S` of work, cut
into slices of at most `SLICE_S` with the event loop turning in between (input, timers, paint), so
one slice, not one frame, is the longest stall. Model work (markdown, pygments) and document edits
never share a slice. Model work is fed in `FEED_CHUNK` pieces so a slice can stop on time even on a
burst of markdown and code, and gets at most `MODEL_SHARE` of a frame so rendering is never
starved; every frame feeds at least one piece and renders at least one block, so it always makes
progress. What does not fit continues next frame. The timer stops only after a frame that found
nothing to do, so a stream is paced by the frame clock, not by the restart of an idle timer.

The viewport is opaque (it paints its own background) so that following the stream scrolls by
blitting and repaints only the exposed strip, and the scrollbar is flat: Fusion's gradient
scrollbar cost more per frame than the text.

Why a QTextBrowser and not a custom block view: RENDER-PERF.md measures this design (incremental,
tail only) at 20,000 tok/s with markdown and highlighting, and it gives selection, copy, find and
accessibility for free.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from PySide6.QtCore import Qt, QTimer, QUrl, Signal
from PySide6.QtGui import (
    QAction,
    QColor,
    QContextMenuEvent,
    QFont,
    QFontDatabase,
    QGuiApplication,
    QKeyEvent,
    QPainter,
    QPaintEvent,
    QTextBlockFormat,
    QTextCharFormat,
    QTextCursor,
)
from PySide6.QtWidgets import QTextBrowser, QWidget

from app.render.highlight import spans_in
from app.render.markdown import BOLD, CODE, ITALIC, STRIKE, render_inline
from app.render.transcript import Block, BlockKind, Transcript
from app.ui.theme import Theme, system_theme

__all__ = ["TranscriptView"]

FRAME_MS = 16
FRAME_BUDGET_S = 0.010  # work per frame, over all its slices
SLICE_S = 0.004  # the longest run of work before the event loop gets a turn
MODEL_SHARE = 0.5  # of FRAME_BUDGET_S at most for model work (markdown, pygments) per frame
MAX_FEED_PER_FRAME = 24 * 1024
FEED_CHUNK = 2048  # characters handed to the model at a time, so a slice can stop on time
OUTPUT_PREVIEW_CHARS = 16 * 1024
OUTPUT_PREVIEW_LINES = 200


@dataclass(slots=True)
class _Range:
    start: int  # document position of the block's first character
    kind: BlockKind
    version: int = -1
    frozen: bool = False
    collapsed: bool = False
    body: int = 0  # CODE / TOOL_CALL: offset (from start) where the text body begins
    appended: int = 0  # CODE: text[:appended] is rendered as committed; TOOL_CALL: args rendered
    lang: str = ""


class TranscriptView(QTextBrowser):
    """Streams a conversation; see the module docstring. Esc stops following, End resumes."""

    copyRequested = Signal(str)
    followingChanged = Signal(bool)

    def __init__(self, parent: QWidget | None = None, theme: Theme | None = None) -> None:
        super().__init__(parent)
        self.transcript = Transcript()
        self._ops: list[list[object]] = []  # [method name, *args]; text deltas as a list of str
        self._ids: list[int] = []  # rendered block ids in document order
        self._ranges: dict[int, _Range] = {}
        self._todo: dict[int, None] = {}  # dirty ids not yet rendered (frame budget ran out)
        self._following = True
        self._auto_scroll = False
        self._theme = theme or system_theme()
        self._fmt_cache: dict[object, QTextCharFormat] = {}
        self._bfmt_cache: dict[tuple[int, int, str, int], QTextBlockFormat] = {}
        self._mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)

        doc = self.document()
        doc.setUndoRedoEnabled(False)
        doc.setDocumentMargin(10)
        self.setOpenLinks(False)
        self.setReadOnly(True)
        self.setUndoRedoEnabled(False)
        # An opaque viewport lets Qt scroll by blitting pixels and repaint only the exposed strip
        # (a stylesheet background alone makes Qt repaint the whole viewport on every scroll);
        # paintEvent fills the background itself.
        self.viewport().setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent, True)
        self.anchorClicked.connect(self._on_anchor)
        self._feed_left = 0  # characters the current frame may still feed to the model
        self._model_left = 0.0  # seconds of model work the current frame may still do
        self._time_left = 0.0  # seconds of work the current frame may still do
        self._fed = False  # the current frame has fed the model (each frame feeds and renders at least once)
        self._rendered = False
        self._timer = QTimer(self)
        self._timer.setInterval(FRAME_MS)
        self._timer.timeout.connect(self._on_frame)
        self._slice_timer = QTimer(self)  # the next slice of a frame, after the event loop turned
        self._slice_timer.setSingleShot(True)
        self._slice_timer.setInterval(0)
        self._slice_timer.timeout.connect(self._on_slice)
        bar = self.verticalScrollBar()
        bar.valueChanged.connect(self._on_scroll)
        bar.rangeChanged.connect(self._on_range)
        self._apply_palette()

    # -- feeding (buffered until the next frame) -------------------------------------------------

    def feed_user_message(self, text: str) -> None:
        self._push("add_user_message", text)

    def feed_begin_assistant(self, response_id: str) -> None:
        self._push("begin_assistant", response_id)

    def feed_text(self, item_id: str, delta: str) -> None:
        self._push_delta("append_text", item_id, delta)

    def feed_reasoning(self, item_id: str, delta: str) -> None:
        self._push_delta("append_reasoning", item_id, delta)

    def feed_begin_tool_call(self, item_id: str, name: str, call_id: str) -> None:
        self._push("begin_tool_call", item_id, name, call_id)

    def feed_tool_args(self, item_id: str, delta: str) -> None:
        self._push_delta("append_tool_args", item_id, delta)

    def feed_end_item(self, item_id: str) -> None:
        self._push("end_item", item_id)

    def feed_tool_output(self, call_id: str, text: str, ok: bool) -> None:
        self._push("add_tool_output", call_id, text, ok)

    def feed_notice(self, kind: str, text: str) -> None:
        self._push("add_notice", kind, text)

    def feed_end_response(self, status: str) -> None:
        self._push("end_response", status)

    @property
    def pending(self) -> bool:
        """True while buffered input or unrendered blocks remain."""
        return bool(self._ops or self._todo)

    # -- public controls -------------------------------------------------------------------------

    @property
    def following(self) -> bool:
        return self._following

    def stop_following(self) -> None:
        self._set_following(False)

    def follow(self) -> None:
        """Resume following the stream and jump to the end."""
        self._set_following(True)
        self._scroll_to_end()

    @property
    def theme(self) -> Theme:
        return self._theme

    def set_theme(self, theme: Theme) -> None:
        """Switch palettes; every block is re-rendered once (no re-lex: spans are theme-free)."""
        self._theme = theme
        self._fmt_cache.clear()
        self._bfmt_cache.clear()
        self._apply_palette()
        self._rebuild()

    def clear(self) -> None:
        self._ops.clear()
        self._todo.clear()
        self.transcript.clear()
        self._ids.clear()
        self._ranges.clear()
        self.document().clear()
        self._set_following(True)

    def copy_code(self, block_id: int) -> str:
        """Copy a code block (with its size-cut continuations) or a tool block to the clipboard."""
        text = self._copy_text(block_id)
        clip = QGuiApplication.clipboard()
        if clip is not None:
            clip.setText(text)
        self.copyRequested.emit(text)
        return text

    def toggle_collapsed(self, block_id: int) -> None:
        blk = self.transcript.block(block_id)
        self.transcript.set_collapsed(block_id, not blk.collapsed)
        self._todo.update(dict.fromkeys(self.transcript.take_dirty()))
        self._render_pending(None)

    def block_at(self, pos: int) -> int | None:
        """Id of the block whose range holds document position `pos`."""
        lo, hi = 0, len(self._ids) - 1
        found = None
        while lo <= hi:
            mid = (lo + hi) // 2
            if self._ranges[self._ids[mid]].start <= pos:
                found = mid
                lo = mid + 1
            else:
                hi = mid - 1
        return None if found is None else self._ids[found]

    def flush(self) -> None:
        """Run one whole frame now, its slices back to back (tests, screenshots, a final paint)."""
        self._slice_timer.stop()
        self._start_frame()
        while self._run_slice():
            pass

    # -- frames and slices -----------------------------------------------------------------------

    def _on_frame(self) -> None:
        if not self.pending:  # an idle frame: sleep until the next feed
            self._timer.stop()
            return
        self._start_frame()
        self._on_slice()

    def _on_slice(self) -> None:
        if self._run_slice():
            self._slice_timer.start()

    def _start_frame(self) -> None:
        self._feed_left = MAX_FEED_PER_FRAME
        self._model_left = FRAME_BUDGET_S * MODEL_SHARE
        self._time_left = FRAME_BUDGET_S
        self._fed = self._rendered = False

    def _run_slice(self) -> bool:
        """One slice of the current frame; True if the frame has work left and time for it."""
        t0 = time.perf_counter()
        deadline = t0 + max(min(SLICE_S, self._time_left), 0.0)
        if self._model_may_run():
            self._apply_ops(min(deadline, t0 + max(self._model_left, 0.0)))
            self._todo.update(dict.fromkeys(self.transcript.take_dirty()))
            self._model_left -= time.perf_counter() - t0
            self._fed = True
        elif self._todo:  # model and render work never share a slice: the loop turns in between
            self._render_pending(deadline)
            self._rendered = True
        self._time_left -= time.perf_counter() - t0
        if self._time_left <= 0:  # out of time: only the one render a frame always gets
            return bool(self._todo) and not self._rendered and not self._model_may_run()
        return self._model_may_run() or bool(self._todo)

    def _model_may_run(self) -> bool:
        return bool(self._ops) and self._feed_left > 0 and (self._model_left > 0 or not self._fed)

    # -- buffering -------------------------------------------------------------------------------

    def _push(self, name: str, *args: object) -> None:
        self._ops.append([name, *args])
        if not self._timer.isActive():
            self._timer.start()

    def _push_delta(self, name: str, item_id: str, delta: str) -> None:
        if not delta:
            return
        if self._ops:
            last = self._ops[-1]
            if last[0] == name and last[1] == item_id:
                parts = last[2]
                assert isinstance(parts, list)
                parts.append(delta)
                return
        self._push(name, item_id, [delta])

    def _apply_ops(self, deadline: float) -> None:
        """Feed buffered ops to the model in FEED_CHUNK pieces until the deadline or the feed budget."""
        model = self.transcript
        while self._ops and self._feed_left > 0:
            op = self._ops[0]
            name = op[0]
            assert isinstance(name, str)
            if isinstance(op[-1], list):  # a delta run
                parts = op[-1]
                text = parts[0] if len(parts) == 1 else "".join(parts)
                n = min(FEED_CHUNK, self._feed_left)
                if len(text) > n:
                    chunk = text[:n]
                    op[-1] = [text[n:]]
                else:
                    chunk = text
                    self._ops.pop(0)
                self._feed_left -= len(chunk)
                getattr(model, name)(op[1], chunk)
            else:
                self._ops.pop(0)
                getattr(model, name)(*op[1:])
            if time.perf_counter() >= deadline:
                break

    # -- rendering -------------------------------------------------------------------------------

    def _render_pending(self, deadline: float | None) -> None:
        """Render dirty blocks in document order, stopping after the block that passes the deadline."""
        if not self._todo:
            return
        todo = sorted(self._todo)  # ids grow in document order: new blocks append in order
        cur = QTextCursor(self.document())
        cur.beginEditBlock()
        done = 0
        try:
            for bid in todo:
                self._render(cur, self.transcript.block(bid))
                done += 1
                if deadline is not None and time.perf_counter() >= deadline:
                    break
        finally:
            cur.endEditBlock()
        for bid in todo[:done]:
            del self._todo[bid]
        if self._following:
            self._scroll_to_end()

    def _rebuild(self) -> None:
        self.document().clear()
        self._ids.clear()
        self._ranges.clear()
        self._todo = dict.fromkeys(b.id for b in self.transcript.blocks)
        self._render_pending(None)

    def _end_of(self, idx: int) -> int:
        if idx + 1 < len(self._ids):
            return self._ranges[self._ids[idx + 1]].start - 1
        return self.document().characterCount() - 1

    def _render(self, cur: QTextCursor, blk: Block) -> None:
        r = self._ranges.get(blk.id)
        if r is None:  # a new block: append at the end
            end = self.document().characterCount() - 1
            cur.setPosition(end)
            if self._ids:
                cur.insertBlock()
            r = _Range(cur.position(), blk.kind)
            self._ids.append(blk.id)
            self._ranges[blk.id] = r
            self._write(cur, blk, r)
            return
        idx = self._index(blk.id)
        end = self._end_of(idx)
        if self._try_append(cur, blk, r, end):
            return
        cur.setPosition(r.start)
        cur.setPosition(end, QTextCursor.MoveMode.KeepAnchor)
        cur.removeSelectedText()
        self._write(cur, blk, r)
        self._shift(idx, cur.position() - end)

    def _index(self, bid: int) -> int:
        if self._ids and self._ids[-1] == bid:
            return len(self._ids) - 1
        i = len(self._ids) - 1
        while i >= 0 and self._ids[i] != bid:  # dirty blocks sit near the end
            i -= 1
        return i

    def _shift(self, idx: int, delta: int) -> None:
        if delta:
            for bid in self._ids[idx + 1:]:
                self._ranges[bid].start += delta

    def _try_append(self, cur: QTextCursor, blk: Block, r: _Range, end: int) -> bool:
        """Grow a code block or streaming tool arguments in place; False if a full re-render is due."""
        if r.kind is not blk.kind or r.collapsed != blk.collapsed or blk.frozen != r.frozen:
            return False
        idx = self._index(blk.id)
        if blk.kind is BlockKind.CODE and r.lang == blk.lang and blk.committed >= r.appended:
            cur.setPosition(r.start + r.body + r.appended)
            cur.setPosition(end, QTextCursor.MoveMode.KeepAnchor)
            cur.removeSelectedText()
            self._code_text(cur, blk, r.appended, blk.committed)
            self._code_text(cur, blk, blk.committed, len(blk.text))
            r.appended = blk.committed
            r.version = blk.version
            self._shift(idx, cur.position() - end)
            return True
        if blk.kind is BlockKind.TOOL_CALL and not blk.collapsed and len(blk.text) >= r.appended:
            cur.setPosition(end)
            cur.insertText(blk.text[r.appended:], self._fmt("mono"))
            r.appended = len(blk.text)
            r.version = blk.version
            self._shift(idx, cur.position() - end)
            return True
        return False

    def _write(self, cur: QTextCursor, blk: Block, r: _Range) -> None:
        """Insert the whole block at the cursor (which sits at the start of an empty paragraph)."""
        r.kind, r.version, r.frozen, r.collapsed, r.lang = blk.kind, blk.version, blk.frozen, blk.collapsed, blk.lang
        r.appended = 0
        k = blk.kind
        th = self._theme
        cur.setBlockFormat(self._bfmt())
        if k is BlockKind.CODE:
            if not blk.cont:
                cur.setBlockFormat(self._bfmt(top=6, bg=th.code_background))
                cur.insertText(f"{blk.lang or 'code'}  ", self._fmt("muted"))
                cur.insertText("Copy", self._fmt(("anchor", f"copy:{blk.id}")))
                cur.insertBlock(self._bfmt(bg=th.code_background), self._fmt("mono"))
            else:
                cur.setBlockFormat(self._bfmt(bg=th.code_background))
            r.body = cur.position() - r.start
            text = blk.text
            if blk.frozen:
                text = text[:-1] if text.endswith("\n") else text
                self._code_text(cur, blk, 0, len(text))
                r.appended = len(text)
            else:
                self._code_text(cur, blk, 0, blk.committed)
                self._code_text(cur, blk, blk.committed, len(text))
                r.appended = blk.committed
            return
        if k is BlockKind.TOOL_CALL or k is BlockKind.TOOL_OUTPUT:
            self._write_tool(cur, blk, r)
            return
        if k is BlockKind.USER:
            cur.setBlockFormat(self._bfmt(top=10, bottom=4, bg=th.user_background))
            cur.insertText("You\n", self._fmt(("flags", BOLD, False)))
            cur.insertText(blk.text, self._fmt("base"))
            return
        if k is BlockKind.NOTICE:
            cur.setBlockFormat(self._bfmt(top=4))
            cur.insertText(blk.text, self._fmt("error" if blk.name == "error" else "muted"))
            return
        if k is BlockKind.RULE:
            cur.setBlockFormat(self._bfmt(top=4))
            cur.insertText("─" * 24, self._fmt("muted"))
            return
        if not blk.text:
            return
        dim = blk.reasoning
        if k is BlockKind.HEADING:
            cur.setBlockFormat(self._bfmt(top=8))
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
                    cur.setBlockFormat(self._bfmt(indent=1))
                    self._inline(cur, stripped, True)
                    continue
                cur.setBlockFormat(self._bfmt(indent=1 + depth))
                if stripped[:2] in ("- ", "* ", "+ ") or stripped in ("-", "*", "+"):
                    cur.insertText("• ", self._fmt("muted"))
                    stripped = stripped[2:]
                self._inline(cur, stripped, dim)
        else:
            cur.setBlockFormat(self._bfmt(top=0 if blk.cont else 4))
            self._inline(cur, blk.text, dim)

    def _write_tool(self, cur: QTextCursor, blk: Block, r: _Range) -> None:
        th = self._theme
        arrow = "▸" if blk.collapsed else "▾"
        cur.setBlockFormat(self._bfmt(top=6, bg=th.code_background))
        if blk.kind is BlockKind.TOOL_CALL:
            label = f"{arrow} tool {blk.name}" + ("" if blk.frozen else " …")
            cur.insertText(label, self._fmt(("anchor", f"toggle:{blk.id}")))
            cur.insertText(f"  {blk.call_id}", self._fmt("muted"))
            if not blk.collapsed:
                cur.insertBlock(self._bfmt(bg=th.code_background), self._fmt("mono"))
                r.body = cur.position() - r.start
                cur.insertText(blk.text, self._fmt("mono"))
                r.appended = len(blk.text)
            return
        lines = blk.text.count("\n") + (0 if blk.text.endswith("\n") or not blk.text else 1)
        mark = "✓" if blk.ok else "✗"
        cur.insertText(f"{arrow} {mark} output  ", self._fmt(("anchor", f"toggle:{blk.id}")))
        cur.insertText(f"{lines} lines  ", self._fmt("muted"))
        cur.insertText("Copy", self._fmt(("anchor", f"copy:{blk.id}")))
        if blk.collapsed:
            return
        preview = blk.text[:OUTPUT_PREVIEW_CHARS]
        cut = _nth(preview, "\n", OUTPUT_PREVIEW_LINES)
        if cut >= 0:
            preview = preview[:cut]
        preview = preview.rstrip("\n")
        cur.insertBlock(self._bfmt(bg=th.code_background), self._fmt("mono"))
        cur.insertText(preview, self._fmt("ok" if blk.ok else "error"))
        if len(preview) < len(blk.text.rstrip("\n")):
            rest = blk.text.count("\n", len(preview))
            cur.insertText(f"\n… {max(rest, 1)} more lines (Copy for all)", self._fmt("muted"))

    def _code_text(self, cur: QTextCursor, blk: Block, start: int, end: int) -> None:
        if end <= start:
            return
        text = blk.text
        pos = start
        mono = self._fmt("mono")
        for s, e, key in spans_in(blk.spans, start, end):
            if s > pos:
                cur.insertText(text[pos:s], mono)
            cur.insertText(text[s:e], self._fmt(("tok", key)))
            pos = e
        if pos < end:
            cur.insertText(text[pos:end], mono)

    def _inline(self, cur: QTextCursor, text: str, dim: bool, heading: int = 0) -> None:
        for span in render_inline(text):
            flags = span.flags | (BOLD if heading else 0)
            if span.href:
                fmt = QTextCharFormat(self._fmt(("link", flags, dim, heading)))
                fmt.setAnchorHref(span.href)
                cur.insertText(span.text, fmt)
            else:
                cur.insertText(span.text, self._fmt(("flags", flags, dim, heading)))

    # -- formats ---------------------------------------------------------------------------------

    def _color(self, name: str) -> QColor:
        return QColor(name)

    def _bfmt(self, top: int = 0, bottom: int = 0, bg: str = "", indent: int = 0) -> QTextBlockFormat:
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

    def _fmt(self, key: object) -> QTextCharFormat:
        fmt = self._fmt_cache.get(key)
        if fmt is not None:
            return fmt
        th = self._theme
        fmt = QTextCharFormat()
        fmt.setForeground(self._color(th.foreground))
        if key == "mono":
            fmt.setFont(self._mono)
            fmt.setForeground(self._color(th.code_foreground))
        elif key in ("muted", "error", "ok"):
            fmt.setForeground(self._color({"muted": th.muted, "error": th.error, "ok": th.ok}[str(key)]))
        elif isinstance(key, tuple) and key[0] == "anchor":
            fmt.setAnchor(True)
            fmt.setAnchorHref(str(key[1]))
            fmt.setForeground(self._color(th.link))
        elif isinstance(key, tuple) and key[0] == "tok":
            fmt.setFont(self._mono)
            st = th.code_style(str(key[1]))
            fmt.setForeground(self._color(st.color if st and st.color else th.code_foreground))
            if st and st.bold:
                fmt.setFontWeight(QFont.Weight.Bold)
            if st and st.italic:
                fmt.setFontItalic(True)
        elif isinstance(key, tuple) and key[0] == "link":
            fmt = QTextCharFormat(self._fmt(("flags", *key[1:])))
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
                fmt.setFont(self._mono)
                fmt.setBackground(self._color(th.code_background))
            if heading:
                base = self.font().pointSizeF() if self.font().pointSizeF() > 0 else 10.0
                fmt.setFontPointSize(base * {1: 1.6, 2: 1.35, 3: 1.15}.get(heading, 1.0))
        self._fmt_cache[key] = fmt
        return fmt

    def _apply_palette(self) -> None:
        th = self._theme
        self._background = self._color(th.background)
        # A flat scrollbar: Fusion's gradient scrollbar costs more to paint than the text does, and
        # the range changes every frame while streaming.
        self.setStyleSheet(
            f"QTextBrowser {{ background: {th.background}; color: {th.foreground}; }}"
            f"QScrollBar:vertical {{ background: {th.background}; width: 10px; margin: 0; border: none; }}"
            f"QScrollBar::handle:vertical {{ background: {th.border}; min-height: 24px; border-radius: 4px; }}"
            "QScrollBar::add-line:vertical, QScrollBar::sub-line:vertical { height: 0; border: none; }"
            "QScrollBar::add-page:vertical, QScrollBar::sub-page:vertical { background: none; }"
        )

    def paintEvent(self, e: QPaintEvent) -> None:
        p = QPainter(self.viewport())
        p.fillRect(e.rect(), self._background)
        p.end()
        super().paintEvent(e)

    # -- follow the stream -----------------------------------------------------------------------

    def _set_following(self, on: bool) -> None:
        if on != self._following:
            self._following = on
            self.followingChanged.emit(on)

    def _scroll_to_end(self) -> None:
        bar = self.verticalScrollBar()
        self._auto_scroll = True
        try:
            bar.setValue(bar.maximum())
        finally:
            self._auto_scroll = False

    def _on_range(self, _lo: int, _hi: int) -> None:
        if self._following:
            self._scroll_to_end()

    def _on_scroll(self, value: int) -> None:
        if self._auto_scroll:
            return
        bar = self.verticalScrollBar()
        self._set_following(value >= bar.maximum() - 4)

    def keyPressEvent(self, e: QKeyEvent) -> None:
        if e.key() == Qt.Key.Key_Escape:
            self.stop_following()
            e.accept()
            return
        if e.key() == Qt.Key.Key_End and e.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self.follow()
            e.accept()
            return
        super().keyPressEvent(e)

    # -- copy / collapse -------------------------------------------------------------------------

    def _copy_text(self, block_id: int) -> str:
        blk = self.transcript.block(block_id)
        if blk.kind is not BlockKind.CODE:
            return blk.text
        parts = [blk.text]
        blocks = self.transcript.blocks
        i = blocks.index(blk) + 1
        while i < len(blocks) and blocks[i].kind is BlockKind.CODE and blocks[i].cont \
                and blocks[i].item_id == blk.item_id:
            parts.append(blocks[i].text)
            i += 1
        return "".join(parts)

    def _on_anchor(self, url: QUrl) -> None:
        s = url.toString()
        kind, _, arg = s.partition(":")
        if kind == "copy" and arg.isdigit():
            self.copy_code(int(arg))
        elif kind == "toggle" and arg.isdigit():
            self.toggle_collapsed(int(arg))
        elif kind in ("http", "https", "mailto", "file"):
            from PySide6.QtGui import QDesktopServices

            QDesktopServices.openUrl(url)

    def contextMenuEvent(self, e: QContextMenuEvent) -> None:
        menu = self.createStandardContextMenu(e.pos())
        pos = self.cursorForPosition(e.pos()).position()
        bid = self.block_at(pos)
        if bid is not None:
            blk = self.transcript.block(bid)
            if blk.kind in (BlockKind.CODE, BlockKind.TOOL_CALL, BlockKind.TOOL_OUTPUT):
                act = QAction("Copy code" if blk.kind is BlockKind.CODE else "Copy", menu)
                act.triggered.connect(lambda: self.copy_code(bid))
                menu.addAction(act)
        menu.exec(e.globalPos())


def _nth(text: str, ch: str, n: int) -> int:
    """Index of the n-th occurrence of ch (1-based), or -1."""
    pos = -1
    for _ in range(n):
        pos = text.find(ch, pos + 1)
        if pos < 0:
            return -1
    return pos
