"""The transcript widget: a read-only QTextBrowser that paints a `Transcript` it is handed.

The services own the conversation model (`app.render.transcript.Transcript`) and feed it; this view
takes it in its constructor (or `set_model` when another project's services are bound) and only
paints. The model calls its waker once when input arrives, which this view turns into one queued
`dirty` signal and a ~16 ms frame timer: no per-token work happens here. Each frame, a Qt-free
`FramePacer` splits the work into slices: model work (`Transcript.advance`: markdown, pygments) and
document edits never share a slice, and the event loop turns in between, so one slice, not one
frame, is the longest stall. Render work takes the model's dirty block ids and edits just those
blocks' ranges in the document inside one edit block, so Qt lays out only the changed tail. Frozen
blocks are never touched again. Code blocks and tool-call arguments grow by appending: only the
provisional last line of a code block is replaced. The timer stops only after a frame that found
nothing to do, so a stream is paced by the frame clock, not by the restart of an idle timer.

Memory is bounded by what is on screen plus a budget: once the document holds more than
`LIVE_BUDGET_CHARS` of rendered text, settled blocks far from the viewport (more than two screens
away) are *evicted* in pages of at most `PAGE_CHARS`: their document range becomes one empty
paragraph of the same height, and the model keeps their text and packed spans. A page that comes
within a screen of the viewport is rendered again from the model (the scroll position is kept when
it sits above the viewport). Copying a selection that crosses an evicted page takes that page's text
from the model. The model packs settled blocks into a few objects and the document holds a bounded
number of live blocks, so the garbage collector's work does not grow with the session: a full
collection is as cheap at the end of a long session as at its start.

The viewport is opaque (it paints its own background) so that following the stream scrolls by
blitting and repaints only the exposed strip, and the scrollbar is flat: Fusion's gradient
scrollbar cost more per frame than the text.

Why a QTextBrowser and not a custom block view: RENDER-PERF.md measures this design (incremental,
tail only) at 20,000 tok/s with markdown and highlighting, and it gives selection, copy, find and
accessibility for free.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from PySide6.QtCore import QMimeData, QRect, QRectF, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import (
    QAbstractTextDocumentLayout,
    QAction,
    QColor,
    QContextMenuEvent,
    QFontDatabase,
    QGuiApplication,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QResizeEvent,
    QTextCharFormat,
    QTextCursor,
)
from PySide6.QtWidgets import QTextBrowser, QWidget

from app.render.pacer import FramePacer
from app.render.transcript import Block, BlockKind, Transcript
from app.ui.help import EmptyView
from app.ui.theme import Theme, system_theme
from app.ui.transcript_writer import (
    CODE_BOX_END,
    CODE_BOX_INSET,
    CODE_BOX_LINE,
    CODE_BOX_PROPERTY,
    CODE_BOX_TOP,
    CODE_BOX_TOP_CONT,
    BlockWriter,
    Drawn,
)

__all__ = ["FrameTicker", "TranscriptView"]

FRAME_MS = 16
_FRAME_START = "\ufdd0"  # QTextBeginningOfFrame: where a card's (or a table's) range starts
LIVE_BUDGET_CHARS = 96 * 1024  # rendered text the document may hold before far blocks are evicted
PAGE_CHARS = 8 * 1024  # an evicted page holds at most this much text (one page renders in one slice)
TAIL_KEEP = 8  # the last entries are never evicted: the stream grows there


class FrameTicker(Protocol):
    """A frame clock shared by several views (see `TranscriptView.set_frame_ticker`)."""

    def wake(self) -> None: ...


@dataclass(slots=True)
class _Page:
    """Consecutive settled blocks whose document range was released."""

    first: int  # block ids first..last
    last: int
    height: float
    chars: int


class TranscriptView(QTextBrowser):
    """Paints a conversation model; see the module docstring. Esc stops following, Ctrl+End resumes."""

    # The keys this view handles itself (listed by the help, so they live next to keyPressEvent).
    KEYS = (("Esc", "stop following the stream (scroll freely)"), ("Ctrl+End", "follow the stream again"))

    copyRequested = Signal(str)
    followingChanged = Signal(bool)
    dirty = Signal()  # the model has new input: emitted once per wake, not per token
    inspectRequested = Signal(str)  # "Inspect" on a notice: the response id it refers to

    def __init__(self, model: Transcript, parent: QWidget | None = None, theme: Theme | None = None) -> None:
        super().__init__(parent)
        self._model = model
        self._epoch = model.epoch
        self._ids: list[int] = []  # document entries in order: block ids, and -page keys for evicted pages
        self._ranges: dict[int, Drawn] = {}
        self._pages: dict[int, _Page] = {}
        self._next_page = 1
        self._live_chars = 0
        self._todo: dict[int, None] = {}  # dirty ids not yet rendered (frame budget ran out)
        self._restore_due = False  # the viewport moved: an evicted page may have come near
        self._evict_blocked = False  # the last eviction pass found nothing far enough away
        self._click_pos: int | None = None  # document position of the click being handled
        self._layout: QAbstractTextDocumentLayout | None = None
        self._following = True
        self._auto_scroll = False
        self._theme = theme or system_theme()
        self._writer = BlockWriter(
            self._theme,
            QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont),
            lambda: self.font().pointSizeF(),
        )
        self.pacer = FramePacer(time.perf_counter)
        self._ticker: FrameTicker | None = None

        doc = self.document()
        doc.setUndoRedoEnabled(False)
        doc.setDocumentMargin(14)
        doc.setIndentWidth(18)  # list nesting: a bullet's width, not Qt's default 40 px
        self.setOpenLinks(False)
        self.setReadOnly(True)
        self.setUndoRedoEnabled(False)
        # An opaque viewport lets Qt scroll by blitting pixels and repaint only the exposed strip
        # (a stylesheet background alone makes Qt repaint the whole viewport on every scroll);
        # paintEvent fills the background itself.
        self.viewport().setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent, True)
        self.anchorClicked.connect(self._on_anchor)
        self._timer = QTimer(self)
        self._timer.setInterval(FRAME_MS)
        self._timer.timeout.connect(self._on_frame)
        self._slice_timer = QTimer(self)  # the next slice of a frame, after the event loop turned
        self._slice_timer.setSingleShot(True)
        self._slice_timer.setInterval(0)
        self._slice_timer.timeout.connect(self._on_slice)
        # Queued: the model may be fed from anywhere on the GUI thread (even inside a paint); the
        # frame starts from the event loop.
        self.dirty.connect(self._on_model_dirty, Qt.ConnectionType.QueuedConnection)
        bar = self.verticalScrollBar()
        bar.valueChanged.connect(self._on_scroll)
        bar.rangeChanged.connect(self._on_range)
        # A new session shows what to do instead of a blank pane (hidden once the conversation has a block).
        self.empty_view = EmptyView(self)
        self.empty_view.set_theme(self._theme)
        self._apply_palette()
        model.set_waker(self.dirty.emit)
        self._update_empty()
        self._todo = dict.fromkeys(range(model.first_id, model.next_id))
        if self._todo:
            self._on_model_dirty()

    # -- the model -------------------------------------------------------------------------------

    @property
    def model(self) -> Transcript:
        return self._model

    def set_model(self, model: Transcript) -> None:
        """Paint another conversation (another project's services were bound)."""
        if model is self._model:
            return
        self._model.set_waker(None)
        self._model = model
        self._reset()
        self._epoch = model.epoch
        self._todo = dict.fromkeys(range(model.first_id, model.next_id))
        model.set_waker(self.dirty.emit)
        self._update_empty()
        self._on_model_dirty()

    @property
    def pending(self) -> bool:
        """True while the model holds input not worked through or blocks are not rendered yet."""
        return self._model.pending or self.has_work()

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
        """Switch palettes; every live block is re-rendered once (no re-lex: spans are theme-free)."""
        self._theme = theme
        self.empty_view.set_theme(theme)
        self._writer.set_theme(theme)
        self._apply_palette()
        self._rebuild()

    def clear(self) -> None:
        """Clear the conversation (through the model: the services' transcript starts over)."""
        self._model.clear()
        self._sync_epoch()

    def copy_code(self, block_id: int) -> str:
        """Copy a code block (with its size-cut continuations) or a tool block to the clipboard."""
        text = self._copy_text(block_id)
        clip = QGuiApplication.clipboard()
        if clip is not None:
            clip.setText(text)
        self.copyRequested.emit(text)
        return text

    def toggle_collapsed(self, block_id: int) -> None:
        blk = self._model.block(block_id)
        self._model.set_collapsed(block_id, not blk.collapsed)
        self._todo.update(dict.fromkeys(self._model.take_dirty()))
        self._render_pending(None)

    def block_at(self, pos: int) -> int | None:
        """Id of the block whose range holds document position `pos` (None on an evicted page)."""
        lo, hi = 0, len(self._ids) - 1
        found = None
        while lo <= hi:
            mid = (lo + hi) // 2
            if self._ranges[self._ids[mid]].start <= pos:
                found = mid
                lo = mid + 1
            else:
                hi = mid - 1
        if found is None or self._ids[found] < 0:
            return None
        return self._ids[found]

    def flush(self) -> None:
        """Run one whole frame now, its slices back to back (tests, screenshots, a final paint)."""
        self._slice_timer.stop()
        self.pacer.start_frame()
        while self.pacer.run_slice(self._model, self):
            pass

    @property
    def evicted_pages(self) -> int:
        return len(self._pages)

    @property
    def live_chars(self) -> int:
        """Rendered text the document holds (evicted pages not counted)."""
        return self._live_chars

    # -- frames and slices -----------------------------------------------------------------------

    def set_frame_ticker(self, ticker: FrameTicker | None) -> None:
        """Share one frame clock with other views (`app.ui.side_pane.FrameTicker`): the ticker runs
        this view's frames then, and its own frame timer stays off."""
        self._ticker = ticker
        self._timer.stop()
        self._slice_timer.stop()
        self._on_model_dirty()

    def _on_model_dirty(self) -> None:
        self._update_empty()
        if self._ticker is not None:
            self._ticker.wake()
        elif not self._timer.isActive():
            self._timer.start()

    def _update_empty(self) -> None:
        """The empty-session view is shown exactly while the conversation has nothing to show."""
        empty = len(self._model) == 0 and not self._model.pending
        if empty == self.empty_view.isHidden():
            self.empty_view.setVisible(empty)
            if empty:
                self.empty_view.setGeometry(self.viewport().geometry())

    def _on_frame(self) -> None:
        if not self.pending:  # an idle frame: sleep until the next wake
            self._timer.stop()
            self._update_empty()
            return
        self.pacer.start_frame()
        self._on_slice()

    def _on_slice(self) -> None:
        if self.pacer.run_slice(self._model, self):
            self._slice_timer.start()

    # FramePacer's Renderer side ------------------------------------------------------------------

    def has_work(self) -> bool:
        return (
            bool(self._todo)
            or self._model.has_dirty
            or self._epoch != self._model.epoch
            or self._restore_due
            or (self._live_chars > LIVE_BUDGET_CHARS and not self._evict_blocked)
        )

    def draw(self, deadline: float) -> None:
        self._sync_epoch()
        self._update_empty()
        if self._restore_due:
            self._restore_near(deadline)
        elif self._forced_evict_due():
            # A slice of its own: a forced pass (~6 ms at the budget) after a render pass in the same
            # slice was the longest stall of a fast stream (render 4 ms + its layout + the pass ~13 ms).
            self._evict_far(deadline, LIVE_BUDGET_CHARS)
            return
        self._todo.update(dict.fromkeys(self._model.take_dirty()))
        if self._todo:
            self._render_pending(deadline)
        if (
            self._live_chars > LIVE_BUDGET_CHARS
            and not self._evict_blocked
            and not self._todo
            and time.perf_counter() < deadline
            and self.pacer.may_evict(forced=False)
        ):
            self._evict_far(deadline, LIVE_BUDGET_CHARS // 2)

    def _forced_evict_due(self) -> bool:
        """Whether this slice is a forced eviction pass (down to the budget) instead of rendering.

        Eviction runs in a slice's spare time, down to half the budget; once the document holds 1.25x
        the budget (rendering lags behind a fast stream, so no slice has spare time) it runs anyway,
        once per frame, down to the budget, in a slice that does nothing else: memory stays bounded
        whatever the rate, and each forced pass removes about what a spare-time pass does (one pass of
        three times that size stalled the loop ~25 ms). Beside other views on one frame clock, views
        take turns (`FramePacer.may_evict`): one pass a round over all of them."""
        return self.pass_due() and self.pacer.may_evict(forced=True)

    def pass_due(self) -> bool:
        """Whether the next draw runs a forced eviction pass (a `PacerGroup` runs it first in its round)."""
        return (
            self._live_chars > LIVE_BUDGET_CHARS * 5 // 4
            and not self._evict_blocked
            and self.pacer.forced_left
        )

    # -- rendering -------------------------------------------------------------------------------

    def _sync_epoch(self) -> None:
        if self._epoch != self._model.epoch:
            self._epoch = self._model.epoch
            self._reset()

    def _reset(self) -> None:
        self._slice_timer.stop()
        self._layout = None
        self._todo.clear()
        self._ids.clear()
        self._ranges.clear()
        self._pages.clear()
        self._live_chars = 0
        self._restore_due = False
        self._evict_blocked = False
        self.document().clear()
        self._set_following(True)
        self._update_empty()
        _release_heap()

    def _render_pending(self, deadline: float | None) -> None:
        """Render dirty blocks in document order, stopping after the block that passes the deadline."""
        if not self._todo:
            return
        todo = sorted(self._todo)  # ids grow in document order: new blocks append in order
        model = self._model
        cur = QTextCursor(self.document())
        cur.beginEditBlock()
        done = 0
        try:
            for bid in todo:
                if bid in self._ranges or not self._ids or bid > self._last_block_id():
                    self._render(cur, model.block(bid))
                # else: on an evicted page (a settled block does not change): nothing to draw
                done += 1
                if deadline is not None and time.perf_counter() >= deadline:
                    break
        finally:
            cur.endEditBlock()
        for bid in todo[:done]:
            del self._todo[bid]
        if self._following:
            self._scroll_to_end()

    def _last_block_id(self) -> int:
        for key in reversed(self._ids):
            if key > 0:
                return key
            return self._pages[-key].last
        return 0

    def _rebuild(self) -> None:
        """Draw the document again: live blocks re-rendered, evicted pages as placeholders."""
        entries = list(self._ids)
        pages = dict(self._pages)
        self.document().clear()
        self._ids.clear()
        self._ranges.clear()
        self._pages.clear()
        self._live_chars = 0
        cur = QTextCursor(self.document())
        cur.beginEditBlock()
        try:
            for key in entries:
                if key < 0:
                    self._append_placeholder(cur, -key, pages[-key])
                else:
                    self._render(cur, self._model.block(key))
        finally:
            cur.endEditBlock()
        self._todo.clear()
        self._todo.update(dict.fromkeys(self._model.take_dirty()))
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
            r = Drawn(cur.position(), blk.kind)
            self._ids.append(blk.id)
            self._ranges[blk.id] = r
            self._writer.write(cur, blk, r)
            self._live_chars += r.chars
            self._evict_blocked = False
            return
        before = r.chars
        idx = self._index(blk.id)
        end = self._end_of(idx)
        if not self._try_append(cur, blk, r, end):
            cur.setPosition(r.start)
            cur.setPosition(end, QTextCursor.MoveMode.KeepAnchor)
            cur.removeSelectedText()
            self._writer.write(cur, blk, r)
            self._shift(idx, cur.position() - end)
        r.chars = len(blk.text)
        self._live_chars += r.chars - before

    def _index(self, bid: int) -> int:
        if self._ids and self._ids[-1] == bid:
            return len(self._ids) - 1
        i = len(self._ids) - 1
        while i >= 0 and self._ids[i] != bid:  # dirty blocks sit near the end
            i -= 1
        return i

    def _shift(self, idx: int, delta: int) -> None:
        if delta:
            for bid in self._ids[idx + 1 :]:
                self._ranges[bid].start += delta

    def _try_append(self, cur: QTextCursor, blk: Block, r: Drawn, end: int) -> bool:
        """Grow a code block or streaming tool arguments in place; False if a full re-render is due."""
        if r.kind is not blk.kind or r.collapsed != blk.collapsed or blk.frozen != r.frozen:
            return False
        idx = self._index(blk.id)
        inner = end - r.trail  # the last text position: appends stay inside a card's frame or a code box
        if blk.kind is BlockKind.CODE and r.lang == blk.lang and blk.committed >= r.appended:
            cur.setPosition(r.start + r.body + r.appended)
            cur.setPosition(inner, QTextCursor.MoveMode.KeepAnchor)
            cur.removeSelectedText()
            self._writer.code_text(cur, blk, r.appended, blk.committed)
            self._writer.code_text(cur, blk, blk.committed, len(blk.text))
            r.appended = blk.committed
            r.version = blk.version
            self._shift(idx, cur.position() - inner)
            return True
        if blk.kind is BlockKind.TOOL_CALL and not blk.collapsed and len(blk.text) >= r.appended:
            cur.setPosition(inner)
            cur.insertText(blk.text[r.appended :], self._writer.fmt("mono"))
            r.appended = len(blk.text)
            r.version = blk.version
            self._shift(idx, cur.position() - inner)
            return True
        return False

    # -- eviction: memory bounded by what is on screen plus a budget ---------------------------------

    def _doc_layout(self) -> QAbstractTextDocumentLayout:
        # One wrapper, kept: PySide makes a new one per call, and those pile up mid-stream.
        if self._layout is None:
            self._layout = self.document().documentLayout()
        return self._layout

    def _entry_top(self, idx: int) -> float:
        """Document y of entry `idx`'s first paragraph (its layout is forced up to there); for a card,
        the top of its frame (the frame's start marker has no paragraph of its own to measure)."""
        doc = self.document()
        start = self._ranges[self._ids[idx]].start
        if doc.characterAt(start) == _FRAME_START:
            frame = QTextCursor(doc)
            frame.setPosition(start + 1)
            f = frame.currentFrame()
            if f is not None and f is not doc.rootFrame():
                return self._doc_layout().frameBoundingRect(f).top() - f.frameFormat().topMargin()
        return self._doc_layout().blockBoundingRect(doc.findBlock(start)).top()

    def _entry_bottom(self, idx: int) -> float:
        if idx + 1 < len(self._ids):
            return self._entry_top(idx + 1)
        return self._doc_layout().documentSize().height()

    def _zone(self, screens: float) -> tuple[float, float]:
        """The document y range within `screens` viewport heights of what is shown."""
        top = float(self.verticalScrollBar().value())
        h = float(max(self.viewport().height(), 1))
        return top - screens * h, top + h + screens * h

    def _evict_far(self, deadline: float, down_to: int = LIVE_BUDGET_CHARS // 2) -> None:
        """Release settled blocks more than two screens away, in pages, down to half the budget.

        An edit above the viewport costs Qt a pass over everything after it (~6 ms per 100 KB), so a
        pass is planned first (binary searches for the zone's edges, two layout queries a page) and
        applied in one edit block, last page first, with one sweep of the positions at the end: one
        relayout per pass, and a pass only every half budget of new text."""
        if self.textCursor().hasSelection():  # never pull text out from under a selection
            self._evict_blocked = True
            return
        ids, ranges = self._ids, self._ranges
        keep_top, keep_bottom = self._zone(2.0)
        last = len(ids) - TAIL_KEEP
        above = self._first_entry(lambda k: self._entry_bottom(k) > keep_top, 0, last)
        below = self._first_entry(lambda k: self._entry_top(k) >= keep_bottom, above, last)
        excess = self._live_chars - down_to
        runs: list[tuple[int, int, int]] = []  # (i, j, chars): entries [i, j) become one page
        for lo, hi in ((0, above), (below, last)):
            i = lo
            while i < hi and excess > 0:
                if ids[i] < 0 or not ranges[ids[i]].frozen:
                    i += 1
                    continue
                j, chars = i, 0
                while (
                    j < hi
                    and ids[j] > 0
                    and ranges[ids[j]].frozen
                    and not (chars and chars + ranges[ids[j]].chars > PAGE_CHARS)
                ):
                    chars += ranges[ids[j]].chars
                    j += 1
                runs.append((i, j, chars))
                excess -= chars
                i = j
        if not runs:
            self._evict_blocked = True
            return
        heights = [self._entry_bottom(j - 1) - self._entry_top(i) for i, j, _ in runs]
        done: list[tuple[int, int]] = []  # per run, in document order: (entries left, position shift)
        cur = QTextCursor(self.document())
        cur.beginEditBlock()
        try:
            for (i, j, chars), height in zip(reversed(runs), reversed(heights), strict=True):
                done.append(self._evict(cur, i, j, height, chars))  # later runs first: earlier positions hold
        finally:
            cur.endEditBlock()
        # One sweep: each entry after a page moves by the shifts of all the pages before it.
        removed, shift, marks = 0, 0, []
        for (i, j, _), (kept, delta) in zip(runs, reversed(done), strict=True):
            removed += (j - i) - kept
            shift += delta
            marks.append((j - removed, shift))
        for n, (start, delta) in enumerate(marks):
            stop = marks[n + 1][0] if n + 1 < len(marks) else len(ids)
            for key in ids[start:stop]:
                ranges[key].start += delta

    def _first_entry(self, pred: Callable[[int], bool], lo: int, hi: int) -> int:
        """The first index in [lo, hi) where `pred` holds (it holds from there on), else hi."""
        while lo < hi:
            mid = (lo + hi) // 2
            if pred(mid):
                hi = mid
            else:
                lo = mid + 1
        return lo

    def _evict(self, cur: QTextCursor, i: int, j: int, height: float, chars: int) -> tuple[int, int]:
        """Replace entries [i, j) (live blocks) with one placeholder paragraph of `height`; returns
        how many entries stand there now (0 when merged into the page before) and the position shift
        of what follows (the caller moves the later entries)."""
        ids = self._ids
        start = self._ranges[ids[i]].start
        end = self._end_of(j - 1)
        first, lastb = ids[i], ids[j - 1]
        # Merge into the placeholder just before, while the page stays small enough to render in a slice.
        prev = ids[i - 1] if i > 0 else 0
        merge = (
            prev < 0
            and self._pages[-prev].chars + chars <= PAGE_CHARS
            and self._pages[-prev].last + 1 == first
        )
        if merge:
            page = self._pages[-prev]
            page.last, page.height, page.chars = lastb, page.height + height, page.chars + chars
            cur.setPosition(start - 1)  # from the placeholder's paragraph end: drop the run whole
            cur.setPosition(end, QTextCursor.MoveMode.KeepAnchor)
            cur.removeSelectedText()
            cur.setBlockFormat(self._writer.placeholder_format(page.height))
            new_keys: list[int] = []
            shift = (start - 1) - end
        else:
            cur.setPosition(start)
            cur.setPosition(end, QTextCursor.MoveMode.KeepAnchor)
            cur.removeSelectedText()
            cur.setBlockFormat(self._writer.placeholder_format(height))
            cur.setBlockCharFormat(QTextCharFormat())
            key = self._next_page
            self._next_page += 1
            self._pages[key] = _Page(first, lastb, height, chars)
            self._ranges[-key] = Drawn(start, None, chars=0)
            new_keys = [-key]
            shift = start - end
        for k in ids[i:j]:
            del self._ranges[k]
        ids[i:j] = new_keys
        self._live_chars -= chars
        return len(new_keys), shift

    def _append_placeholder(self, cur: QTextCursor, key: int, page: _Page) -> None:
        cur.setPosition(self.document().characterCount() - 1)
        if self._ids:
            cur.insertBlock()
        cur.setBlockFormat(self._writer.placeholder_format(page.height))
        cur.setBlockCharFormat(QTextCharFormat())
        self._pages[key] = page
        self._ranges[-key] = Drawn(cur.position(), None)
        self._ids.append(-key)

    def _restore_near(self, deadline: float) -> None:
        """Render again the evicted pages within a screen of the viewport, nearest first."""
        if not self._pages:
            self._restore_due = False
            return
        near_top, near_bottom = self._zone(1.0)
        for idx in self._pages_in(near_top, near_bottom):
            self._restore(idx)
            if time.perf_counter() >= deadline:
                return  # more next slice: _restore_due stays set
        self._restore_due = False

    def _pages_in(self, top: float, bottom: float) -> list[int]:
        """Indexes of placeholder entries intersecting [top, bottom), by binary search on y."""
        ids = self._ids
        lo, hi = 0, len(ids)
        while lo < hi:  # first entry whose bottom is below `top`
            mid = (lo + hi) // 2
            if self._entry_bottom(mid) <= top:
                lo = mid + 1
            else:
                hi = mid
        out: list[int] = []
        i = lo
        while i < len(ids) and self._entry_top(i) < bottom:
            if ids[i] < 0:
                out.append(i)
            i += 1
        # nearest the viewport first: the ones below the top before the ones above it
        return out

    def _restore(self, idx: int) -> None:
        key = -self._ids[idx]
        page = self._pages.pop(key)
        r = self._ranges.pop(-key)
        bar = self.verticalScrollBar()
        above = self._entry_bottom(idx) <= bar.value()
        old_value = bar.value()
        end = self._end_of(idx)
        cur = QTextCursor(self.document())
        cur.beginEditBlock()
        new_ids: list[int] = []
        try:
            cur.setPosition(r.start)
            cur.setPosition(end, QTextCursor.MoveMode.KeepAnchor)
            cur.removeSelectedText()
            cur.setBlockFormat(self._writer.bfmt())
            for n, bid in enumerate(range(page.first, page.last + 1)):
                blk = self._model.block(bid)
                if n:
                    cur.insertBlock()
                rr = Drawn(cur.position(), blk.kind)
                self._ranges[bid] = rr
                self._writer.write(cur, blk, rr)
                new_ids.append(bid)
            shift = cur.position() - end
        finally:
            cur.endEditBlock()
        self._ids[idx : idx + 1] = new_ids
        self._live_chars += page.chars
        self._shift(idx + len(new_ids) - 1, shift)
        self._evict_blocked = False
        if above and not self._following:  # keep what the user looks at where it was
            height = self._entry_bottom(idx + len(new_ids) - 1) - self._entry_top(idx)
            self._auto_scroll = True
            try:
                bar.setValue(old_value + round(height - page.height))
            finally:
                self._auto_scroll = False

    def createMimeDataFromSelection(self) -> QMimeData:
        """A selection across evicted pages copies their text from the model."""
        cur = self.textCursor()
        a, b = cur.selectionStart(), cur.selectionEnd()
        if not self._pages or not any(
            self._ranges[k].start >= a and self._ranges[k].start <= b for k in self._ids if k < 0
        ):
            return super().createMimeDataFromSelection()
        parts: list[str] = []
        doc = self.document()
        for idx, key in enumerate(self._ids):
            start, end = self._ranges[key].start, self._end_of(idx)
            if end < a or start > b:
                continue
            if key < 0:
                page = self._pages[-key]
                parts.append("\n\n".join(self._model.block(i).text for i in range(page.first, page.last + 1)))
            else:
                c = QTextCursor(doc)
                c.setPosition(max(start, a))
                c.setPosition(min(end, b), QTextCursor.MoveMode.KeepAnchor)
                parts.append(c.selectedText().replace("\u2029", "\n"))
        mime = QMimeData()
        mime.setText("\n".join(parts))
        return mime

    def _apply_palette(self) -> None:
        th = self._theme
        self._background = QColor(th.background)
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
        self._paint_code_boxes(p, e.rect())
        p.end()
        super().paintEvent(e)

    def _paint_code_boxes(self, p: QPainter, rect: QRect) -> None:
        """The boxes behind code blocks (their paragraphs carry `CODE_BOX_PROPERTY`) that intersect
        `rect`, drawn under the text: background, a 1 px border. Only the paragraphs in `rect` are
        visited, and only a box's top and bottom edges are measured."""
        doc = self.document()
        layout = self._doc_layout()
        dy = self.verticalScrollBar().value()
        dx = self.horizontalScrollBar().value()
        top, bottom = rect.top() + dy, rect.bottom() + 1 + dy
        ids = self._ids
        # the entry at the rect's top, by binary search on the entries' y (hitTest costs ~0.1 ms)
        idx = self._first_entry(lambda k: self._entry_bottom(k) > top, 0, len(ids)) if ids else 0
        block = doc.findBlock(self._ranges[ids[idx]].start) if idx < len(ids) else doc.begin()
        margin = doc.documentMargin()
        left = margin - dx
        width = max(doc.textWidth(), float(self.viewport().width())) - 2 * margin
        fill, edge = QColor(self._theme.code_background), QColor(self._theme.border)
        box_top: float | None = None
        while block.isValid():
            part = block.blockFormat().intProperty(CODE_BOX_PROPERTY)
            if box_top is None and not part and layout.blockBoundingRect(block).top() > bottom:
                break
            if part:
                if box_top is None:  # the box's top: this paragraph's, or above the rect
                    y = layout.blockBoundingRect(block).top()
                    if part == CODE_BOX_TOP:
                        box_top = y - CODE_BOX_INSET
                    elif part == CODE_BOX_TOP_CONT:
                        box_top = y
                    else:
                        box_top = min(y, float(top)) - 2
                if part == CODE_BOX_END:
                    y = layout.blockBoundingRect(block).top() + CODE_BOX_INSET
                    self._draw_box(p, left, box_top - dy, width, y - box_top, fill, edge)
                    box_top = None
            elif box_top is not None:  # a box cut off (an evicted page): close it here
                y = layout.blockBoundingRect(block).top()
                self._draw_box(p, left, box_top - dy, width, y - box_top, fill, edge)
                box_top = None
            if part == CODE_BOX_LINE and layout.blockBoundingRect(block).top() > bottom:
                break
            block = block.next()
        if box_top is not None:  # the box goes on below the rect
            self._draw_box(p, left, box_top - dy, width, bottom + 2 - box_top, fill, edge)

    @staticmethod
    def _draw_box(p: QPainter, x: float, y: float, w: float, h: float, fill: QColor, edge: QColor) -> None:
        if h <= 0:
            return
        # fills only: a pen's outline cost ~0.25 ms a box
        p.fillRect(QRectF(x, y, w, h), edge)
        p.fillRect(QRectF(x + 1, y + 1, w - 2, h - 2), fill)

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
        if self._auto_scroll:  # following the stream moves away from released pages, never to them
            self._evict_blocked = False
            return
        self._viewport_moved()
        bar = self.verticalScrollBar()
        self._set_following(value >= bar.maximum() - 4)

    def _viewport_moved(self) -> None:
        """Evicted pages may have come near, and blocks may have gone far: look on the next frame."""
        self._evict_blocked = False
        if self._pages:
            self._restore_due = True
            self._on_model_dirty()

    def resizeEvent(self, e: QResizeEvent) -> None:
        super().resizeEvent(e)
        self.empty_view.setGeometry(self.viewport().geometry())
        self._viewport_moved()

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
        model = self._model
        blk = model.block(block_id)
        if blk.kind is not BlockKind.CODE:
            return blk.text
        parts = [blk.text]
        last = model.next_id - 1
        nxt = block_id + 1
        while nxt <= last:
            b = model.block(nxt)
            if b.kind is not BlockKind.CODE or not b.cont or b.item_id != blk.item_id:
                break
            parts.append(b.text)
            nxt += 1
        return "".join(parts)

    def _on_anchor(self, url: QUrl) -> None:
        """Copy and toggle anchors carry no block id (one shared format each, not one per block):
        the block is the one under the click, or under the keyboard's anchor selection."""
        s = url.toString()
        kind, _, arg = s.partition(":")
        if kind == "inspect":
            bid = self._anchor_block()
            if bid is not None:
                self.inspectRequested.emit(self._model.block(bid).item_id)
        elif kind in ("copy", "toggle"):
            bid = int(arg) if arg.isdigit() else self._anchor_block()
            if bid is None:
                return
            if kind == "copy":
                self.copy_code(bid)
            else:
                self.toggle_collapsed(bid)
        elif kind in ("http", "https", "mailto", "file"):
            from PySide6.QtGui import QDesktopServices

            QDesktopServices.openUrl(url)

    def _anchor_block(self) -> int | None:
        pos = self._click_pos if self._click_pos is not None else self.textCursor().selectionStart()
        return self.block_at(pos)

    def mouseReleaseEvent(self, e: QMouseEvent) -> None:
        self._click_pos = self.cursorForPosition(e.position().toPoint()).position()
        try:
            super().mouseReleaseEvent(e)  # emits anchorClicked for a click on an anchor
        finally:
            self._click_pos = None

    def contextMenuEvent(self, e: QContextMenuEvent) -> None:
        menu = self.createStandardContextMenu(e.pos())
        pos = self.cursorForPosition(e.pos()).position()
        bid = self.block_at(pos)
        if bid is not None:
            blk = self._model.block(bid)
            if blk.kind in (BlockKind.CODE, BlockKind.TOOL_CALL, BlockKind.TOOL_OUTPUT):
                act = QAction("Copy code" if blk.kind is BlockKind.CODE else "Copy", menu)
                act.triggered.connect(lambda: self.copy_code(bid))
                menu.addAction(act)
        menu.exec(e.globalPos())


def _release_heap() -> None:
    """Hand freed heap pages back to the OS (glibc keeps them otherwise, so RSS never drops)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
