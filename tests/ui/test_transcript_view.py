"""The transcript widget: frame-coalesced rendering, copy, collapse, follow, huge deltas."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QGuiApplication, QTextBlock, QTextCursor, QTextFragment, QTextTable, QTextTableCell

import app.ui.transcript_view as tv
from app.render.transcript import BlockKind, Transcript
from app.ui.theme import DARK, LIGHT
from app.ui.transcript_view import TranscriptView
from app.ui.transcript_writer import (
    CARD_STYLE_PROPERTY,
    CODE_BOX_END,
    CODE_BOX_LINE,
    CODE_BOX_PROPERTY,
    CODE_BOX_TOP,
    FOLD_PREVIEW,
)
from tests.render import stream as st


def _drain(view: TranscriptView) -> int:
    frames = 0
    while view.pending:
        view.flush()
        frames += 1
    return frames


@pytest.fixture
def view(qtbot):  # type: ignore[no-untyped-def]
    v = TranscriptView(Transcript(), theme=LIGHT)
    qtbot.addWidget(v)
    v.resize(500, 300)
    v.show()
    return v


def test_input_buffers_until_a_frame(view: TranscriptView) -> None:
    """The model only buffers; one frame renders everything, coalesced."""
    for ch in "Hello **world**\n":
        view.model.apply(st.text("m", ch))
    assert view.toPlainText() == "" and view.model.blocks == []
    assert _drain(view) == 1
    assert view.toPlainText() == "Hello world"
    assert len(view.model.blocks) == 1


def test_frame_timer_flushes(view: TranscriptView, qtbot) -> None:  # type: ignore[no-untyped-def]
    """The frame timer applies buffered deltas without an explicit flush."""
    view.model.apply(st.text("m", "tick"))
    qtbot.waitUntil(lambda: view.toPlainText() == "tick", timeout=3000)


def test_rendered_text_of_a_turn(view: TranscriptView) -> None:
    """User message, markdown, code, tool call and output all render in order."""
    view.model.add_user_message("hi")
    view.model.apply(st.created("r1"))
    text = "# Title\n\nSome *text*.\n\n```python\ndef f(x):\n    return x\n```\n- a\n- b\n"
    for i in range(0, len(text), 3):
        view.model.apply(st.text("m", text[i : i + 3]))
        view.flush()
    view.model.apply(st.tool_call("t", "read_file", "c1"))
    for ch in '{"path": "a.py"}':
        view.model.apply(st.args("t", ch))
        view.flush()
    assert view.toPlainText().rstrip("\n").endswith('{"path": "a.py"}')
    view.model.apply(st.item_done("t"))
    view.model.add_tool_output("c1", "line1\nline2\n", True)
    view.model.apply(st.completed())
    _drain(view)
    lines = [ln for ln in view.toPlainText().split("\n") if ln]
    assert lines[:7] == ["You", "hi", "◆ Assistant", "Title", "Some text.", "python    Copy", "def f(x):"]
    assert "    return x" in lines and "•  a" in lines and "•  b" in lines
    assert lines[-3:] == ["✓ read_file output   2 lines   Copy", "line1", "line2"]


def test_code_is_highlighted_in_theme(view: TranscriptView) -> None:
    """Keywords in a code block get the theme's keyword colour; a theme switch recolours."""
    view.model.apply(st.text("m", "```python\nimport os\n```\n"))
    _drain(view)

    def keyword_colour() -> str:
        doc = view.document()
        pos = view.toPlainText().index("import") + 1
        blk = doc.findBlock(pos)
        for fr in _fragments(blk):
            if "import" in fr.text():
                return fr.charFormat().foreground().color().name()
        raise AssertionError("no import fragment")

    light = LIGHT.code_style("Token.Keyword.Namespace")
    assert light is not None and keyword_colour() == light.color.lower()
    view.set_theme(DARK)
    dark = DARK.code_style("Token.Keyword.Namespace")
    assert dark is not None and keyword_colour() == dark.color.lower()
    assert "import os" in view.toPlainText()


def _fragments(block: QTextBlock) -> Iterator[QTextFragment]:
    it = block.begin()
    while not it.atEnd():
        yield it.fragment()
        it += 1


def test_copy_button_copies_code(view: TranscriptView, qtbot) -> None:  # type: ignore[no-untyped-def]
    """The copy anchor puts the code on the clipboard and emits copyRequested."""
    view.model.apply(st.text("m", "```sh\nls -l\necho hi\n```\n"))
    _drain(view)
    code = next(b for b in view.model.blocks if b.kind is BlockKind.CODE)
    with qtbot.waitSignal(view.copyRequested) as sig:
        view.anchorClicked.emit(QUrl(f"copy:{code.id}"))
    assert sig.args == ["ls -l\necho hi\n"]
    clip = QGuiApplication.clipboard()
    assert clip is not None and clip.text() == "ls -l\necho hi\n"
    pos = view.toPlainText().index("echo")
    assert view.block_at(pos) == code.id


def test_collapse_and_expand_tool_blocks(view: TranscriptView) -> None:
    """Clicking a tool header toggles its body; later blocks keep their text."""
    view.model.apply(st.tool_call("t", "run_tests", "c9"))
    view.model.apply(st.args("t", '{"k": "SECRET_ARGS"}'))
    view.model.apply(st.item_done("t"))
    view.model.add_tool_output("c9", "PASSED\n", True)
    view.model.apply(st.text("m2", "after"))
    _drain(view)
    call = view.model.blocks[0]
    assert "SECRET_ARGS" in view.toPlainText()
    view.anchorClicked.emit(QUrl(f"toggle:{call.id}"))
    assert "SECRET_ARGS" not in view.toPlainText() and "▸ run_tests" in view.toPlainText()
    assert view.toPlainText().endswith("after") and "PASSED" in view.toPlainText()
    view.anchorClicked.emit(QUrl(f"toggle:{call.id}"))
    assert "SECRET_ARGS" in view.toPlainText()
    assert view.block_at(view.toPlainText().index("after")) == view.model.blocks[-1].id


def test_follow_and_scroll_up(view: TranscriptView) -> None:
    """The view follows the stream until the user scrolls up; Esc stops, follow() resumes."""
    bar = view.verticalScrollBar()
    for i in range(60):
        view.model.apply(st.text("m", f"line {i}\n\n"))
    _drain(view)
    assert view.following and bar.maximum() > 0 and bar.value() == bar.maximum()
    bar.setValue(0)  # the user scrolls up
    assert not view.following
    for i in range(20):
        view.model.apply(st.text("m", f"more {i}\n\n"))
    _drain(view)
    assert bar.value() == 0
    view.follow()
    assert view.following and bar.value() == bar.maximum()
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    QTest.keyClick(view, Qt.Key.Key_Escape)
    assert not view.following


def test_one_megabyte_delta_is_spread_over_frames(view: TranscriptView) -> None:
    """A 1 MB single delta renders over several bounded frames and keeps every character (far pages are
    released from the document; copying all takes their text from the model)."""
    view.model.apply(st.text("m", "x"))
    view.flush()
    text = ("lorem ipsum " * 90_000)[:1_000_000]
    view.model.apply(st.text("m", text))
    frames = _drain(view)
    assert frames > 10
    assert view.model.plain_text().replace("\n\n", "") == "x" + text
    assert view.evicted_pages and view.live_chars <= tv.LIVE_BUDGET_CHARS
    view.selectAll()
    copied = view.createMimeDataFromSelection().text()
    assert copied.replace("\n", "").startswith("xlorem ipsum")
    assert len(copied.replace("\n", "")) == len(text) + 1


def test_clear(view: TranscriptView) -> None:
    """clear() empties the view and the model."""
    view.model.apply(st.text("m", "abc"))
    _drain(view)
    view.clear()
    assert view.toPlainText() == "" and view.model.blocks == [] and not view.pending


_MD = (
    "## Step {i}\n\nThe **ledger** keeps `state` per [file](https://example.invalid/{i}).\n\n"
    "```python\ndef f{i}(x):\n    return x + {i}  # add\n```\n\n- one\n- two\n\n"
)


def test_zero_time_budget_still_makes_progress(view: TranscriptView, qtbot) -> None:  # type: ignore[no-untyped-def]
    """With no time budget every frame still feeds a chunk and renders a block; nothing is lost."""
    text = "".join(_MD.format(i=i) for i in range(30))
    ref = TranscriptView(Transcript(), theme=LIGHT)
    qtbot.addWidget(ref)
    ref.model.apply(st.text("m", text))
    _drain(ref)
    view.pacer.budget_s = 0.0
    view.pacer.slice_s = 0.0
    view.model.apply(st.text("m", text))
    frames = _drain(view)
    assert frames > 30  # one block a frame at least, but not everything in one
    assert view.toPlainText() == ref.toPlainText()
    assert "def f29(x):" in view.toPlainText()


def test_timer_slices_render_the_same_document(view: TranscriptView, qtbot) -> None:  # type: ignore[no-untyped-def]
    """A large burst rendered by the frame timer in slices equals the synchronous render; then the timer sleeps."""
    text = "".join(_MD.format(i=i) for i in range(400))  # ~50 KB: several frames of slices
    ref = TranscriptView(Transcript(), theme=LIGHT)
    qtbot.addWidget(ref)
    ref.model.apply(st.text("m", text))
    _drain(ref)
    for i in range(0, len(text), 997):
        view.model.apply(st.text("m", text[i : i + 997]))
    qtbot.waitUntil(lambda: not view.pending, timeout=10_000)
    assert view.toPlainText() == ref.toPlainText()
    qtbot.waitUntil(lambda: not view._timer.isActive(), timeout=3000)  # an idle frame stops the clock
    view.model.apply(st.text("m", "tail"))  # one queued dirty signal wakes the clock
    qtbot.waitUntil(view._timer.isActive, timeout=3000)
    qtbot.waitUntil(lambda: view.toPlainText().endswith("tail"), timeout=3000)


def test_opaque_viewport_paints_its_background(view: TranscriptView) -> None:
    """The viewport is opaque (blit scrolling) and paints the theme background itself."""
    from PySide6.QtCore import Qt

    assert view.viewport().testAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
    img = view.viewport().grab().toImage()
    assert img.pixelColor(img.width() // 2, img.height() - 5).name() == LIGHT.background
    view.set_theme(DARK)
    img = view.viewport().grab().toImage()
    assert img.pixelColor(img.width() // 2, img.height() - 5).name() == DARK.background


def test_links_keep_their_own_targets(view: TranscriptView) -> None:
    """Each link fragment carries its href, underline and the link colour (formats are cached per style)."""
    view.model.apply(st.text("m", "see [a](https://a.invalid/x) and **[b](https://b.invalid/y)**\n"))
    _drain(view)
    links = {}
    for fr in _fragments(view.document().firstBlock()):
        fmt = fr.charFormat()
        if fmt.isAnchor():
            links[fr.text()] = (fmt.anchorHref(), fmt.fontUnderline(), fmt.foreground().color().name())
    assert links == {
        "a": ("https://a.invalid/x", True, LIGHT.link),
        "b": ("https://b.invalid/y", True, LIGHT.link),
    }


def test_theme_switch_recolours_code_background(view: TranscriptView) -> None:
    """The code box is painted in the theme's colours: a theme switch repaints it in the new ones."""
    view.model.apply(st.text("m", "```sh\nls\n```\n"))
    _drain(view)

    def bg() -> str:
        cur = QTextCursor(view.document())
        cur.setPosition(view.toPlainText().index("ls"))
        y = view.cursorRect(cur).center().y()
        return view.viewport().grab().toImage().pixelColor(view.viewport().width() - 40, y).name()

    assert bg() == LIGHT.code_background
    view.set_theme(DARK)
    assert bg() == DARK.code_background


def _code_parts(view: TranscriptView) -> list[int]:
    parts = []
    block = view.document().begin()
    while block.isValid():
        parts.append(block.blockFormat().intProperty(CODE_BOX_PROPERTY))
        block = block.next()
    return parts


def test_code_is_boxed_paragraphs_that_grow_inside_their_box(view: TranscriptView) -> None:
    """A code block is plain paragraphs (no frame: Qt lays frames out slower) between the box's top
    (the header) and its bottom edge; lines streamed in small pieces land inside the box, in order."""
    code = "".join(f"line_{i} = {i}\n" for i in range(30))
    text = f"before\n\n```python\n{code}```\n\nafter\n"
    for i in range(0, len(text), 7):
        view.model.apply(st.text("m", text[i : i + 7]))
        view.flush()
    _drain(view)
    parts = [p for p in _code_parts(view) if p]
    assert parts == [CODE_BOX_TOP] + [CODE_BOX_LINE] * 30 + [CODE_BOX_END]
    doc = view.document()
    cur = QTextCursor(doc)
    cur.setPosition(view.toPlainText().index("line_29"))
    assert cur.currentFrame() == doc.rootFrame()
    assert cur.block().text() == "line_29 = 29"
    plain = view.toPlainText()
    assert plain.index("before") < plain.index("line_0 = 0") < plain.index("line_29") < plain.index("after")


def test_a_code_box_cut_by_the_viewport_is_painted(view: TranscriptView) -> None:
    """Scrolled into the middle of a long code block, the box still fills the viewport behind it."""
    code = "".join(f"x{i} = {i}\n" for i in range(200))
    view.model.apply(st.text("m", f"```python\n{code}```\n\nafter\n"))
    _drain(view)
    view.stop_following()
    cur = QTextCursor(view.document())
    cur.setPosition(view.toPlainText().index("x100 ="))
    bar = view.verticalScrollBar()
    bar.setValue(bar.value() + view.cursorRect(cur).top() - 20)
    QGuiApplication.processEvents()
    img = view.viewport().grab().toImage()
    x = view.viewport().width() - 40
    assert {img.pixelColor(x, y).name() for y in (1, img.height() // 2, img.height() - 2)} == {
        LIGHT.code_background
    }


def test_incremental_painting_matches_a_full_repaint(qtbot) -> None:  # type: ignore[no-untyped-def]
    """Blit scrolling plus partial repaints leave the same pixels as repainting the whole view."""
    if QGuiApplication.platformName() != "offscreen":
        pytest.skip("reads the backing store through the offscreen platform's grabWindow")
    v = TranscriptView(Transcript(), theme=DARK)
    qtbot.addWidget(v)
    v.resize(500, 300)
    v.show()
    text = "".join(_MD.format(i=i) for i in range(40))

    def stream(a: int, b: int) -> None:
        for i in range(a, b, 500):
            v.model.apply(st.text("m", text[i : i + 500]))
            _drain(v)
            QGuiApplication.processEvents()

    def painted_equals_full() -> bool:
        screen = QGuiApplication.primaryScreen()
        assert screen is not None
        shown = screen.grabWindow(v.winId()).toImage()
        return shown == v.grab().toImage().convertToFormat(shown.format())

    stream(0, len(text) // 2)
    assert v.following and painted_equals_full()
    v.verticalScrollBar().setValue(v.verticalScrollBar().maximum() // 2)  # the user scrolls up
    stream(len(text) // 2, len(text))
    assert not v.following and painted_equals_full()


def _stream(v: TranscriptView, text: str, step: int = 8192) -> None:
    for i in range(0, len(text), step):
        v.model.apply(st.text("m", text[i : i + step]))
        _drain(v)
        QGuiApplication.processEvents()


def _check_positions(v: TranscriptView) -> None:
    """Every entry starts a paragraph where the view thinks it does; released pages are empty
    paragraphs of a fixed height; a heading's paragraph holds its text."""
    doc = v.document()
    starts = [v._ranges[k].start for k in v._ids]
    assert starts == sorted(set(starts))
    for key, start in zip(v._ids, starts, strict=True):
        block = doc.findBlock(start)
        assert block.position() == start
        if key < 0:
            assert block.text() == "" and block.blockFormat().lineHeight() == v._pages[-key].height
        elif v.model.block(key).kind is BlockKind.HEADING:
            assert block.text() == v.model.block(key).text


def test_far_pages_are_released_and_come_back_when_scrolled_to(view: TranscriptView) -> None:
    """A long answer keeps only a budget of rendered text; scrolling to the top renders it again,
    at the same place (the document's height barely moves)."""
    text = "".join(_MD.format(i=i) for i in range(2500))  # ~330 KB
    _stream(view, text)
    assert view.evicted_pages and view.live_chars <= tv.LIVE_BUDGET_CHARS
    assert "Step 0" not in view.toPlainText() and "Step 2499" in view.toPlainText()
    _check_positions(view)
    height = view.document().size().height()
    bar = view.verticalScrollBar()
    bar.setValue(0)
    _drain(view)
    assert view.toPlainText().startswith("Step 0\nThe ledger keeps state per file.")
    assert abs(view.document().size().height() - height) < height * 0.01
    assert view.live_chars <= tv.LIVE_BUDGET_CHARS  # still bounded: far pages at the end go in turn
    bar.setValue(bar.maximum() // 2)
    _drain(view)
    middle = view.cursorForPosition(view.viewport().rect().center()).block().text()
    assert middle  # no blank placeholder under the viewport
    _check_positions(view)
    view.follow()
    _drain(view)
    assert "Step 2499" in view.toPlainText()


def test_a_page_restored_above_the_viewport_keeps_the_view_still(view: TranscriptView) -> None:
    """When a page just above what the user reads is rendered again at another height (the window
    was narrowed since it was released), the scroll position follows it: what the user reads stays."""
    prose = "A line long enough to wrap once the window is narrowed, and wrap again. " * 3
    text = "".join(f"{_MD.format(i=i)}{prose}\n\n" for i in range(1500))
    _stream(view, text)
    view.resize(260, 300)  # lines wrap more: released pages come back taller than they left
    _drain(view)
    bar = view.verticalScrollBar()
    bar.setValue(bar.maximum() // 2)  # read mid-way: pages there are rendered again
    _drain(view)
    ids = view._ids
    idx = next(i for i in range(len(ids) - 1) if ids[i] < 0 and ids[i + 1] > 0 and i > 0)  # the page above
    key = ids[idx]
    bar.setValue(round(view._entry_bottom(idx) + view.viewport().height() / 2))  # it is half a screen above
    top = view.viewport().rect().topLeft()
    anchor = view.cursorForPosition(top).block().text()
    _drain(view)
    assert key not in view._ids  # it was rendered again
    assert view.cursorForPosition(top).block().text() == anchor


def test_the_view_is_handed_its_model(qtbot) -> None:  # type: ignore[no-untyped-def]
    """Another model (another project's services): the view paints it; the old one no longer wakes it."""
    first, second = Transcript(), Transcript()
    v = TranscriptView(first, theme=LIGHT)
    qtbot.addWidget(v)
    first.add_user_message("one")
    _drain(v)
    second.add_user_message("two")
    v.set_model(second)
    _drain(v)
    assert v.model is second and v.toPlainText().strip() == "You\ntwo"
    first.add_user_message("ignored")
    assert not v.pending and "ignored" not in v.toPlainText()


def test_one_dirty_signal_per_batch_of_tokens(view: TranscriptView, qtbot) -> None:  # type: ignore[no-untyped-def]
    """A thousand deltas wake the view once; it renders them in one go."""
    woke: list[int] = []
    view.dirty.connect(lambda: woke.append(1))
    for i in range(1000):
        view.model.apply(st.text("m", f"w{i} "))
    assert len(woke) == 1
    qtbot.waitUntil(lambda: view.toPlainText().endswith("w999 "), timeout=5000)
    assert len(woke) == 1


def test_the_model_clearing_clears_the_view(view: TranscriptView) -> None:
    """The services start a new session (model.clear()): the view drops the old document."""
    view.model.add_user_message("old")
    _drain(view)
    view.model.clear()
    view.model.add_user_message("new")
    _drain(view)
    assert view.toPlainText().strip() == "You\nnew"


def _tables(view: TranscriptView) -> list[QTextTable]:
    frames = list(view.document().rootFrame().childFrames())
    return [f for f in frames if isinstance(f, QTextTable)]


def test_a_gfm_table_is_a_document_table(view: TranscriptView) -> None:
    """A GFM table renders as a QTextTable with a header row and aligned cells, also while streaming:
    the partial table is a table from its delimiter row on, and the raw `|` lines never come back."""
    src = "Sizes:\n\n| name | size |\n|:--|--:|\n| a.py | 10 |\n| `b.py` | 200 |\n\nDone.\n"
    raw_again = 0
    for i, ch in enumerate(src):
        view.model.apply(st.text("m", ch))
        view.flush()
        if i > src.index("|:--|") + 6 and "| a.py" in view.toPlainText():
            raw_again += 1
    _drain(view)
    assert raw_again == 0
    (table,) = _tables(view)
    assert (table.rows(), table.columns()) == (3, 2) and table.format().headerRowCount() == 1

    def cell(r: int, c: int) -> QTextTableCell:
        return table.cellAt(r, c)

    def text(r: int, c: int) -> str:
        cur = cell(r, c).firstCursorPosition()
        cur.setPosition(cell(r, c).lastCursorPosition().position(), QTextCursor.MoveMode.KeepAnchor)
        return cur.selectedText()

    assert [text(r, c) for r in range(3) for c in range(2)] == ["name", "size", "a.py", "10", "b.py", "200"]
    assert cell(1, 1).firstCursorPosition().blockFormat().alignment() & Qt.AlignmentFlag.AlignRight
    assert "| a.py" not in view.toPlainText() and view.toPlainText().rstrip().endswith("Done.")


def _card_styles(view: TranscriptView) -> dict[str, list[str]]:
    """Tool card text by the card style property its format carries."""
    out: dict[str, list[str]] = {}
    block = view.document().begin()
    while block.isValid():
        for fr in _fragments(block):
            style = fr.charFormat().property(CARD_STYLE_PROPERTY)
            if style:
                out.setdefault(str(style), []).append(fr.text())
        block = block.next()
    return out


def test_tool_cards_pretty_print_patches_commands_and_json(view: TranscriptView) -> None:
    """Frozen tool calls show a patch as a coloured diff, a command as a shell line, other arguments as
    keys; while streaming, the raw arguments are appended."""
    patch = "*** Begin Patch\n*** Update File: a.py\n@@\n-old\n+new\n*** End Patch\n"
    view.model.apply(st.tool_call("t1", "apply_patch", "c1"))
    view.model.apply(st.args("t1", json.dumps({"patch": patch})))
    view.flush()
    assert '{"patch": "*** Begin Patch\\n' in view.toPlainText()  # raw while streaming
    view.model.apply(st.item_done("t1"))
    view.model.apply(st.tool_call("t2", "run_command", "c2"))
    view.model.apply(st.args("t2", json.dumps({"command": "pytest -q", "cwd": "src"})))
    view.model.apply(st.item_done("t2"))
    view.model.apply(st.tool_call("t3", "read_file", "c3"))
    view.model.apply(st.args("t3", json.dumps({"path": "a.py", "opts": {"max": 5}})))
    view.model.apply(st.item_done("t3"))
    _drain(view)
    styles = _card_styles(view)
    assert styles["add"] == ["+new"] and styles["del"] == ["-old"] and styles["hunk"] == ["@@"]
    assert styles["shell"] == ["$ pytest -q"]
    assert "a.py" not in view.toPlainText().split("$ pytest")[0].split("*** End Patch")[1]
    lines = view.toPlainText().split("\n")
    assert 'path: "a.py"' in lines and "opts:" in lines and '    "max": 5' in lines
    assert '{"patch"' not in view.toPlainText()
    add = next(f for b in _blocks(view) for f in _fragments(b) if f.text() == "+new")
    assert add.charFormat().foreground().color().name() == LIGHT.ok


def _blocks(view: TranscriptView):  # type: ignore[no-untyped-def]
    block = view.document().begin()
    while block.isValid():
        yield block
        block = block.next()


def test_long_output_folds_and_the_toggle_shows_the_rest(view: TranscriptView) -> None:
    """A long tool output shows its first lines and "show N more lines"; the toggle shows all of it
    and "show less" folds it again. A short output is shown whole, with no toggle."""
    view.model.apply(st.tool_call("t", "run_tests", "c1"))
    view.model.apply(st.item_done("t"))
    lines = [f"line {i}" for i in range(30)]
    view.model.add_tool_output("c1", "\n".join(lines) + "\n", True)
    view.model.add_tool_output("c1", "short\n", False)
    _drain(view)
    text = view.toPlainText()
    hidden = 30 - FOLD_PREVIEW
    assert f"line {FOLD_PREVIEW - 1}" in text and f"line {FOLD_PREVIEW}\n" not in text
    assert f"show {hidden} more lines" in text
    assert "✗ run_tests failed" in text and "short" in text and text.count("show ") == 1
    out = next(b for b in view.model.blocks if b.kind is BlockKind.TOOL_OUTPUT)
    pos = text.index("show ")
    view._click_pos = pos  # a click on the toggle anchor
    view.anchorClicked.emit(QUrl("toggle"))
    view._click_pos = None
    text = view.toPlainText()
    assert all(line in text.split("\n") for line in lines) and "show less" in text
    assert not view.model.block(out.id).collapsed
    view.toggle_collapsed(out.id)
    assert f"show {hidden} more lines" in view.toPlainText()


def test_empty_view_is_shown_only_for_an_empty_conversation(view: TranscriptView) -> None:
    """A new session shows the empty-session view; the first block hides it; clear() shows it again."""
    empty = view.empty_view
    empty.set_project("/home/dev/parsekit")
    empty.set_engine("scripted — no model")
    assert not empty.isHidden()
    words = empty.text()
    assert "/home/dev/parsekit" in words and "scripted — no model" in words and "/long" in words
    view.model.add_user_message("hi")
    _drain(view)
    assert empty.isHidden()
    view.clear()
    _drain(view)
    assert not empty.isHidden()
    other = Transcript()
    other.add_user_message("restored")
    view.set_model(other)
    assert empty.isHidden()


_CARDS = (
    "| k{i} | v |\n|---|--:|\n| a | {i} |\n| b | 2 |\n\nText {i} after the table.\n\n"
    "```python\nx{i} = {i}\n```\n\n"
)


def test_tables_and_cards_are_released_and_restored_like_text(view: TranscriptView) -> None:
    """Tables and framed cards far from the viewport are released and rendered again when scrolled
    to, with every entry's range still where the document has it."""
    for n in range(60):
        view.model.add_user_message(f"question {n}")
        view.model.apply(st.created(f"r{n}"))
        view.model.apply(st.text(f"m{n}", "".join(_CARDS.format(i=f"{n}_{i}") for i in range(30))))
        view.model.apply(st.item_done(f"m{n}"))
        view.model.apply(st.tool_call(f"t{n}", "run_command", f"c{n}"))
        view.model.apply(st.args(f"t{n}", json.dumps({"command": f"echo {n}"})))
        view.model.apply(st.item_done(f"t{n}"))
        view.model.add_tool_output(f"c{n}", "\n".join(f"out {j}" for j in range(20)), True)
        view.model.apply(st.completed(f"r{n}"))
        _drain(view)
    assert view.evicted_pages and view.live_chars <= tv.LIVE_BUDGET_CHARS
    _check_positions(view)
    assert "k0_0" not in view.toPlainText()
    view.verticalScrollBar().setValue(0)
    _drain(view)
    _check_positions(view)
    assert view.toPlainText().lstrip("\n").startswith("You\nquestion 0")
    assert "k0_0" in view.toPlainText() and _tables(view)
    view.follow()
    _drain(view)
    assert "$ echo 59" in view.toPlainText()


def test_eviction_keeps_up_when_rendering_lags(view: TranscriptView) -> None:
    """When rendering never catches up with a fast stream (no slice has spare time: here a zero
    budget, one block a frame) far pages are still released, once a frame past 1.25x the budget and
    down to the budget (small passes, not one long one), so memory stays bounded while the stream
    runs; nothing is lost."""
    para = ("word " * 400).strip()  # ~2 KB paragraphs: one block a frame, one feed chunk a frame
    text = "".join(f"{i} {para}\n\n" for i in range(160))  # ~320 KB
    view.pacer.budget_s = 0.0
    view.pacer.slice_s = 0.0
    peak = 0
    for i in range(0, len(text), 8192):
        view.model.apply(st.text("m", text[i : i + 8192]))
        for _ in range(4):
            view.flush()
            peak = max(peak, view.live_chars)
    while view.model.pending or view._todo:
        view.flush()
        peak = max(peak, view.live_chars)
    assert view.evicted_pages
    assert peak <= tv.LIVE_BUDGET_CHARS * 5 // 4 + 2 * len(para)
    view.pacer.budget_s = 0.01  # with spare time the rest goes down to the budget
    view.pacer.slice_s = 0.004
    _drain(view)
    assert view.live_chars <= tv.LIVE_BUDGET_CHARS
    _check_positions(view)
    assert view.model.plain_text() == text.strip()


def test_forced_eviction_has_a_slice_of_its_own(view: TranscriptView, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """While rendering lags (no spare time), the forced eviction pass runs in a slice that renders
    nothing: a render pass, its layout and an eviction pass in one slice were the longest stall of a
    fast stream. Rendering still goes on in the other slices, and nothing is lost."""
    para = ("word " * 400).strip()
    text = "".join(f"{i} {para}\n\n" for i in range(160))
    view.pacer.budget_s = 0.0
    view.pacer.slice_s = 0.0
    work: dict[int, set[str]] = {}
    for name in ("_render_pending", "_evict_far"):
        orig = getattr(view, name)

        def logged(*a, _orig=orig, _name=name):  # type: ignore[no-untyped-def]
            work.setdefault(view.pacer.slices, set()).add(_name)
            return _orig(*a)

        monkeypatch.setattr(view, name, logged)
    for i in range(0, len(text), 8192):
        view.model.apply(st.text("m", text[i : i + 8192]))
        for _ in range(4):
            view.flush()
    _drain(view)
    assert any("_evict_far" in w for w in work.values())
    assert not any(w == {"_render_pending", "_evict_far"} for w in work.values())
    assert view.evicted_pages and view.model.plain_text() == text.strip()
    _check_positions(view)


def test_releasing_pages_above_keeps_what_the_user_reads_still(view: TranscriptView) -> None:
    """Pages released above the viewport (the stream goes on below while the user reads) take exactly
    the height their entries had, margins included: what the user reads does not move a pixel, whatever
    kind of entry (a code box, a heading, a list) starts or ends a page."""
    _stream(view, "".join(_MD.format(i=i) for i in range(1000)))
    view.stop_following()
    bar = view.verticalScrollBar()
    bar.setValue(bar.maximum() - 3 * view.viewport().height())
    _drain(view)
    pages = view.evicted_pages
    probe = view.viewport().rect().center()
    while not view.cursorForPosition(probe).block().text():  # a line of text, not a gap
        probe.setY(probe.y() + 4)
    cur = view.cursorForPosition(probe)
    anchor, y = cur.block().text(), view.cursorRect(cur).top()
    _stream(view, "".join(_MD.format(i=i) for i in range(1000, 2000)))
    assert view.evicted_pages > pages and not view.following
    cur = view.cursorForPosition(probe)
    assert cur.block().text() == anchor
    assert view.cursorRect(cur).top() == y
