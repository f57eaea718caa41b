"""The side pane on FakeServices: opened from the composer, painted beside the agent's transcript on
one shared frame clock, continued, promoted and closed through the services."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWidget

import app.ui.transcript_view as tv
from app.protocol import events as ev
from app.render.transcript import Transcript
from app.ui.main_window import MainWindow
from app.ui.side_pane import FrameTicker
from app.ui.transcript_view import TranscriptView
from tests.render import stream as st
from tests.ui.fakes import FakeServices


def _stream(model: Transcript, rid: str, text: str) -> None:
    model.apply(
        ev.ResponseCreated(sequence_number=0, response={"id": rid, "status": "in_progress", "output": []})
    )
    model.apply(
        ev.OutputItemAdded(
            sequence_number=1,
            output_index=0,
            item={"type": "message", "id": f"m-{rid}", "role": "assistant", "content": []},
        )
    )
    for i in range(0, len(text), 8):
        model.apply(
            ev.OutputTextDelta(
                sequence_number=2, item_id=f"m-{rid}", output_index=0, content_index=0, delta=text[i : i + 8]
            )
        )


def test_side_question_opens_a_pane_beside_the_transcript(  # type: ignore[no-untyped-def]
    qtbot,
    window: MainWindow,
    fake: FakeServices,
) -> None:
    """Ctrl+Shift+Enter: ask_side on the services, a tab with its own transcript; the agent's
    transcript is untouched; continue, promote and close go back to the services."""
    assert window.side_pane.isHidden()
    qtbot.keyClicks(window.composer.edit, "what does a.py do?")
    both = Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier
    qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return, both)
    assert fake.calls[-1] == ("ask_side", ("what does a.py do?", None))
    assert not window.side_pane.isHidden() and window.side_pane.tabs.count() == 1
    tab = window.side_pane.tab_for("side-1")
    assert tab is not None and tab.badge.text() == "lane side-1"
    side = fake.sides["side-1"]
    _stream(side.conversation, "r1", "a.py defines f, which returns 42.")
    window.frames.run_frame()
    while tab.view.pending:
        window.frames.run_frame()
    assert "returns 42" in tab.view.toPlainText()
    assert "what does a.py do?" not in window.transcript.toPlainText()
    side.transport = "connection"
    side.changed.emit()
    assert tab.badge.text() == "second connection" and "no lanes" in tab.badge.toolTip()
    qtbot.keyClicks(tab.edit, "and g?")
    qtbot.keyClick(tab.edit, Qt.Key.Key_Return)
    assert ("ask_side", ("and g?", "side-1")) in fake.calls
    tab.promote_button.click()
    assert ("promote_side", ("side-1",)) in fake.calls
    assert window.side_pane.tabs.count() == 0 and window.side_pane.isHidden()
    assert tab.view not in window.frames.views


def _two_streams(qtbot) -> tuple[QWidget, FrameTicker, list[TranscriptView]]:  # type: ignore[no-untyped-def]
    """The agent's and a side transcript on one FrameTicker, both with a stream to paint (the holder
    owns them: keep it)."""
    holder = QWidget()
    qtbot.addWidget(holder)
    ticker = FrameTicker(holder)
    main, side = Transcript(), Transcript()
    views = [TranscriptView(main, holder), TranscriptView(side, holder)]
    for v in views:
        ticker.add(v)
    _stream(main, "a", "agent text " * 400)
    _stream(side, "b", "side text " * 400)
    return holder, ticker, views


def test_one_frame_tick_paces_both_transcripts(qtbot) -> None:  # type: ignore[no-untyped-def]
    """Two streaming views on one FrameTicker: each frame paces both, within one frame's budget
    shared between them, until both are painted."""
    _holder, ticker, views = _two_streams(qtbot)
    paced: list[int] = []
    shares: list[tuple[float, float, float]] = []  # each view's budget in frames that paced both

    def on_frame(n: int) -> None:
        paced.append(n)
        if n == 2:
            g = ticker.group  # the shared budget less the paint reserve late frames build up
            shares.append((views[0].pacer.budget_s, views[1].pacer.budget_s, g.budget_s - g.reserve_s))

    ticker.on_frame = on_frame
    frames = 0
    while any(v.pending for v in views):
        ticker.run_frame()
        frames += 1
        assert frames < 500
    assert paced[0] == 2 and ticker.shared_frames >= 1
    assert views[0].pacer.frames == views[1].pacer.frames or min(v.pacer.frames for v in views) >= 1
    # (the view that ends last may get a frame alone, with the whole budget, on a slow machine)
    assert shares and all(a == b == total / 2 for a, b, total in shares)
    assert "agent text" in views[0].toPlainText() and "side text" in views[1].toPlainText()
    assert "side text" not in views[0].toPlainText()
    ticker.remove(views[1])
    assert views[1] not in ticker.views


def test_a_frame_tick_lets_the_event_loop_turn_before_its_first_round(qtbot) -> None:  # type: ignore[no-untyped-def]
    """Qt fires every timer that is due in one pass: the slice timer (a round of the last frame) and
    the frame timer behind it. Had the tick run its first round at once, the two rounds ran back to
    back with no paint or input between (the two-lane stream's 18-20 ms stalls); one pass runs at
    most one round, and the tick's round follows on the slice timer."""
    _holder, ticker, views = _two_streams(qtbot)
    ticker.group.budget_s = 0.0  # each frame feeds and renders each view once: work stays for later
    _stream(views[0].model, "c", "more agent text " * 3000)  # more than a frame may feed
    ticker.run_frame()
    assert ticker.group.pending
    rounds = ticker.group.rounds
    ticker._on_slice()  # one timer pass: the slice timer, then the frame timer, both due
    ticker._on_frame()
    assert ticker.group.rounds == rounds + 1
    qtbot.waitUntil(lambda: ticker.group.rounds > rounds + 1)  # the loop turned: the frame goes on
    ticker._timer.stop()
    ticker._slice.stop()


def test_two_lagging_views_take_turns_to_evict_and_stay_bounded(qtbot, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Two fast streams that rendering never catches up with (a zero budget): their forced eviction
    passes never share a round, and a round with a pass renders nothing else, yet both documents
    stay within what one view alone keeps (1.25x the live budget and a block or two): eviction is
    delayed by a round at most, never starved. Nothing is lost."""
    ticker = FrameTicker()
    views = [TranscriptView(Transcript()), TranscriptView(Transcript())]
    for v in views:
        qtbot.addWidget(v)
        v.resize(500, 300)
        v.show()
        ticker.add(v)
    ticker.group.budget_s = 0.0
    ticker.group.slice_s = 0.0
    work: dict[int, list[str]] = {}  # group round: what ran in it
    for n, v in enumerate(views):
        for name in ("_render_pending", "_evict_far"):

            def logged(*a, _orig=getattr(v, name), _name=f"{name}{n}"):  # type: ignore[no-untyped-def]
                work.setdefault(ticker.group.rounds, []).append(_name)
                return _orig(*a)

            monkeypatch.setattr(v, name, logged)
    para = ("word " * 400).strip()  # ~2 KB paragraphs: about one block a frame
    text = "".join(f"{i} {para}\n\n" for i in range(160))  # ~320 KB each
    for v in views:
        v.model.apply(st.text("m", ""))
    peak = [0, 0]
    for i in range(0, len(text), 8192):
        for v in views:
            v.model.apply(st.text("m", text[i : i + 8192]))
        for _ in range(4):
            ticker.run_frame()
            peak = [max(p, v.live_chars) for p, v in zip(peak, views, strict=True)]
    while ticker.group.pending:
        ticker.run_frame()
        peak = [max(p, v.live_chars) for p, v in zip(peak, views, strict=True)]
    passes = [w for w in work.values() if any(x.startswith("_evict_far") for x in w)]
    assert len(passes) >= 2 * 4 and all(len(w) == 1 for w in passes)
    assert {w[0] for w in passes} == {"_evict_far0", "_evict_far1"}
    for v, p in zip(views, peak, strict=True):
        assert v.evicted_pages and p <= tv.LIVE_BUDGET_CHARS * 5 // 4 + 3 * len(para)
        assert v.model.plain_text() == text.strip()
    for v in views:
        ticker.remove(v)
    ticker.deleteLater()
