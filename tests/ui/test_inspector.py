"""The context inspector window, reached from the status bar and from a transcript notice."""

from __future__ import annotations

from app.render.transcript import BlockKind
from app.services.inspector import Inspector
from app.ui.controller import Controller
from app.ui.inspector import InspectorWindow, record_row, totals_text
from app.ui.main_window import MainWindow
from tests.ui.fakes import FakeServices, feed_wire_demo


def test_rows_totals_and_a_diff_painted_as_a_diff(qtbot) -> None:  # type: ignore[no-untyped-def]
    insp = Inspector()
    feed_wire_demo(insp)
    win = InspectorWindow(insp)
    qtbot.addWidget(win)
    assert win.list.count() == 6 and win.list.currentRow() == 5  # follows the newest
    rows = [win.list.item(i).text() for i in range(6)]
    assert "context push" in rows[0] and "new chain" in rows[0]
    assert "stopped, chain kept" in rows[3]
    assert "new chain" not in rows[4] and "1 item · 9.8k cached / 13 new tokens" in rows[4]
    assert "resent" not in totals_text(
        insp
    ) and "sent again 1× (connection lost (code 1006) ×1)" in totals_text(insp)
    assert win.show_request("resp_a3")
    html = win.detail.toHtml()
    assert "context update" in html and "continues #2: resp_a2" in html
    assert "#ffebe9" in html and "#dafbe1" in html  # deletion and addition backgrounds (light theme)
    assert win.show_request("resp_a5") and "only new input" in win.detail.toPlainText()
    assert "continues #4 (stopped by you): resp_a4" in win.detail.toPlainText()
    assert not win.show_request("resp_unknown")
    n = len(insp)
    feed_wire_demo(insp)  # more requests arrive while the window is open: one repaint, newest not forced
    win.refresh()
    assert win.list.count() == 2 * n and win.list.currentRow() == 4
    win.close()


def test_old_requests_keep_only_their_figures(qtbot) -> None:  # type: ignore[no-untyped-def]
    insp = Inspector(keep_frames=2)
    feed_wire_demo(insp)
    win = InspectorWindow(insp)
    qtbot.addWidget(win)
    win.show_request("resp_a1")
    assert "items of older requests are not kept" in win.detail.toPlainText()
    assert record_row(insp.records[0]).startswith("#1 ")
    win.close()


def test_status_bar_click_and_transcript_notice_open_it(  # type: ignore[no-untyped-def]
    qtbot, window: MainWindow, fake: FakeServices
) -> None:
    ctl = window.findChild(Controller)
    assert ctl is not None
    fake.record_wire_demo()
    window.status.sent.click()
    win = ctl.inspector_window
    assert isinstance(win, InspectorWindow) and win.isVisible() and win.list.currentRow() == 5
    # a request's summary notice in the transcript carries an "Inspect" link to that request
    fake.conversation.add_notice("status", "Sent 1.1 kB (1 item, only new input)", ref="resp_a2")
    while window.transcript.pending:
        window.transcript.flush()
    notice = [b for b in fake.conversation.blocks if b.kind is BlockKind.NOTICE][-1]
    assert notice.item_id == "resp_a2" and "Inspect" in window.transcript.toPlainText()
    window.transcript.inspectRequested.emit("resp_a2")
    assert ctl.inspector_window is win and win.list.currentRow() == 1
    ctl.unbind()  # another project: the window goes with the old one
    assert ctl.inspector_window is None
