"""The context inspector window: every request that went on the wire, and what it carried.

Left, one row per request (turns and context pushes): bytes sent, items, the chain it extended or
why it started a new one, tokens read new vs from the server's cache. Right, the selected request:
its figures, then each input item in full, context diffs painted as diffs (additions, deletions,
hunk headers). At the top, the session's totals: bytes sent against a full resend, cache share,
rebuilds by cause.

It paints `app.services.inspector.Inspector`, a Qt-free model the services own; the model's
`changed` signal only marks the window stale, and one refresh per event-loop turn repaints it.
"""

from __future__ import annotations

import html
import time

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QSplitter,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from app.services.inspector import (
    Inspector,
    SendRecord,
    SentItem,
    compact,
    diff_lines,
    human_bytes,
    request_summary,
)
from app.ui.theme import Theme, system_theme

__all__ = ["InspectorWindow", "record_row", "totals_text"]

MAX_ITEM_CHARS = 200_000  # one item's text shown at most (a snapshot can be large); the rest is counted
DIFF_COLOURS = {
    "light": ("#1a7f37", "#cf222e", "#0969da", "#dafbe1", "#ffebe9"),
    "dark": ("#3fb950", "#f85149", "#58a6ff", "#12261e", "#2d1619"),
}


def record_row(rec: SendRecord) -> str:
    """One list row, two lines: which request and how it ended; what it sent and what it cost."""
    kind = "context push" if rec.kind == "push" else "message"
    when = time.strftime("%H:%M:%S", time.localtime(rec.at))
    head = [f"#{rec.seq}  {when}  {kind}"]
    if rec.status == "cancelled":
        head.append("stopped" + (", chain kept" if rec.kept_chain else ""))
    elif rec.status == "failed":
        head.append("failed")
    if rec.transport == "http":
        head.append("over HTTP")
    if rec.fresh:
        head.append("new chain")
    parts = [human_bytes(rec.bytes_sent), f"{rec.input_items} item" + ("" if rec.input_items == 1 else "s")]
    if rec.input_tokens is not None:
        parts.append(f"{compact(rec.cached_tokens or 0)} cached / {compact(rec.new_tokens or 0)} new tokens")
    return " · ".join(head) + "\n    " + " · ".join(parts)


def totals_text(insp: Inspector) -> str:
    """The session's figures in one paragraph."""
    if not insp.requests:
        return "Nothing was sent yet. Every message and every context push will appear here."
    share = f"{100 * insp.ratio:.0f}%"
    text = (
        f"{insp.requests} requests sent {human_bytes(insp.bytes_sent)}; without the conversation chain "
        f"they would have sent {human_bytes(insp.full_bytes)} ({share} of that went out)."
    )
    if insp.input_tokens:
        text += (
            f" The server read {compact(insp.input_tokens)} input tokens, "
            f"{100 * insp.cached_tokens / insp.input_tokens:.0f}% from its cache."
        )
    if insp.rebuild_count:
        causes = "; ".join(
            f"{cause} ×{n}" for cause, n in sorted(insp.rebuilds.items(), key=lambda kv: -kv[1])
        )
        text += f" The whole conversation was sent again {insp.rebuild_count}× ({causes})."
    return text


class InspectorWindow(QDialog):
    """A non-modal window over the main one; `show_request(response_id)` selects a request."""

    def __init__(
        self, inspector: Inspector, parent: QWidget | None = None, theme: Theme | None = None
    ) -> None:
        super().__init__(parent)
        self.setObjectName("inspectorWindow")
        self.setWindowTitle("What was sent — Slipstream")
        self.setWindowFlag(Qt.WindowType.WindowContextHelpButtonHint, False)
        self.resize(1100, 700)
        self.inspector = inspector
        self.theme = theme or system_theme()
        self._shown = 0  # rows built so far (records are appended; trimmed ones only lose items)
        self._follow = True  # select the newest request as it arrives
        self.totals = QLabel(self)
        self.totals.setWordWrap(True)
        self.totals.setObjectName("inspectorTotals")
        self.list = QListWidget(self)
        self.list.setObjectName("inspectorList")
        self.list.setUniformItemSizes(True)
        self.list.currentRowChanged.connect(self._on_row)
        self.detail = QTextBrowser(self)
        self.detail.setObjectName("inspectorDetail")
        self.detail.setOpenLinks(False)
        split = QSplitter(Qt.Orientation.Horizontal, self)
        split.addWidget(self.list)
        split.addWidget(self.detail)
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 3)
        split.setSizes([440, 660])
        col = QVBoxLayout(self)
        col.setContentsMargins(10, 10, 10, 10)
        col.addWidget(self.totals)
        col.addWidget(split, 1)
        self._stale = QTimer(self)  # one repaint per event-loop turn, however many records arrived
        self._stale.setSingleShot(True)
        self._stale.setInterval(0)
        self._stale.timeout.connect(self.refresh)
        inspector.changed.connect(self._on_changed)
        self.refresh()

    # ---- the model -------------------------------------------------------------------------------

    def _on_changed(self, _rec: SendRecord) -> None:
        if not self._stale.isActive():
            self._stale.start()

    def refresh(self) -> None:
        """Rebuild the rows (the model may have dropped its oldest records) and the selected detail."""
        records = self.inspector.records
        row = self.list.currentRow()
        selected = records[row].seq if 0 <= row < len(records) and row < self.list.count() else None
        self.list.blockSignals(True)
        self.list.clear()
        for rec in records:
            item = QListWidgetItem(record_row(rec))
            item.setData(Qt.ItemDataRole.UserRole, rec.seq)
            if rec.fresh:
                item.setToolTip(f"The whole conversation was sent: {rec.fresh_cause}")
            self.list.addItem(item)
        self.list.blockSignals(False)
        self._shown = len(records)
        self.totals.setText(totals_text(self.inspector))
        if self._follow or selected is None:
            target = len(records) - 1
        else:
            target = next((i for i, r in enumerate(records) if r.seq == selected), len(records) - 1)
        if target >= 0:
            self.list.setCurrentRow(target)
            self._show(records[target])
        else:
            self.detail.setHtml(f"<p>{html.escape(totals_text(self.inspector))}</p>")

    def show_request(self, response_id: str | None = None) -> bool:
        """Select the request that produced `response_id` (None: the newest). False: not found."""
        self.refresh()
        records = self.inspector.records
        if response_id is None:
            self._follow = True
            return bool(records)
        for i, rec in enumerate(records):
            if rec.response_id == response_id:
                self._follow = i == len(records) - 1
                self.list.setCurrentRow(i)
                return True
        return False

    def _on_row(self, row: int) -> None:
        records = self.inspector.records
        if 0 <= row < len(records):
            self._follow = row == len(records) - 1
            self._show(records[row])

    # ---- the detail pane ---------------------------------------------------------------------------

    def _show(self, rec: SendRecord) -> None:
        self.detail.setHtml(self.detail_html(rec))

    def detail_html(self, rec: SendRecord) -> str:
        th = self.theme
        esc = html.escape
        muted = f"color:{th.muted}"
        out = [f"<h3 style='margin:0'>{esc(request_summary(rec))}</h3>", "<table cellspacing=2>"]
        rows = [
            ("Kind", "context push (no answer asked)" if rec.kind == "push" else "message (answer streamed)"),
            ("Transport", {"websocket": "WebSocket", "http": "HTTP"}.get(rec.transport, rec.transport)),
            (
                "Chain",
                f"continues {self._parent(rec)} → {rec.response_id or '…'}"
                if not rec.fresh
                else f"new chain → {rec.response_id or '…'} (why: {rec.fresh_cause})",
            ),
            (
                "Sent",
                f"{human_bytes(rec.bytes_sent)}, {rec.input_items} input item"
                + ("" if rec.input_items == 1 else "s"),
            ),
            ("Full resend", f"{human_bytes(rec.full_bytes)} (what a client without the chain would send)"),
        ]
        if rec.input_tokens is not None:
            rows.append(
                (
                    "Input tokens",
                    f"{rec.input_tokens:,}: {rec.cached_tokens or 0:,} from the server's "
                    f"cache, {rec.new_tokens or 0:,} read anew",
                )
            )
        if rec.output_tokens is not None:
            rows.append(("Output tokens", f"{rec.output_tokens:,}"))
        if rec.ttft_ms is not None:
            rows.append(("First token", f"{rec.ttft_ms:.0f} ms after sending"))
        status = rec.status
        if status == "cancelled":
            status = (
                "stopped by you; the chain continues from it (the next message sends only new input)"
                if rec.kept_chain
                else "stopped by you"
            )
        rows.append(("Status", status + (f": {rec.error}" if rec.error and rec.status == "failed" else "")))
        for key, value in rows:
            out.append(
                f"<tr><td style='{muted};padding-right:10px'>{esc(key)}</td><td>{esc(value)}</td></tr>"
            )
        out.append("</table>")
        if rec.items is None:
            out.append(
                f"<p style='{muted}'>The items of older requests are not kept (only their figures); "
                f"the last {self.inspector.keep_frames} requests keep theirs.</p>"
            )
            return "".join(out)
        if not rec.items:
            out.append(f"<p style='{muted}'>No input items: the request only opened the chain.</p>")
        for n, item in enumerate(rec.items, 1):
            out.append(self._item_html(n, item))
        return "".join(out)

    def _parent(self, rec: SendRecord) -> str:
        """The response this request continued, named by its request when it is still listed."""
        pid = rec.previous_response_id or ""
        parent = self.inspector.find(pid)
        if parent is None:
            return pid
        stopped = " (stopped by you)" if parent.status == "cancelled" else ""
        return f"#{parent.seq}{stopped}: {pid}"

    def _item_html(self, n: int, item: SentItem) -> str:
        th = self.theme
        esc = html.escape
        head = (
            f"<p style='margin-top:12px;margin-bottom:2px'><b>{n}. {esc(item.kind)}</b>"
            f" <span style='color:{th.muted}'>· {human_bytes(item.size)} · {esc(item.title)}</span></p>"
        )
        text = item.text
        cut = len(text) - MAX_ITEM_CHARS
        text = text[:MAX_ITEM_CHARS]
        pre = (
            f"<pre style='background:{th.code_background};color:{th.code_foreground};"
            "margin:0;padding:6px;white-space:pre-wrap'>"
        )
        if item.diff:
            add, dele, hunk, add_bg, del_bg = DIFF_COLOURS["dark" if th.dark else "light"]
            lines = []
            for d in diff_lines(text):
                t = esc(d.text) or " "
                if d.kind == "add":
                    lines.append(f"<span style='color:{add};background:{add_bg}'>{t}</span>")
                elif d.kind == "del":
                    lines.append(f"<span style='color:{dele};background:{del_bg}'>{t}</span>")
                elif d.kind == "hunk":
                    lines.append(f"<span style='color:{hunk}'>{t}</span>")
                elif d.kind == "file":
                    lines.append(f"<b>{t}</b>")
                else:
                    lines.append(t)
            body = "\n".join(lines)
        else:
            body = esc(text)
        more = f"<p style='color:{th.muted}'>… {cut:,} more characters</p>" if cut > 0 else ""
        return head + pre + body + "</pre>" + more

    # ---- lifetime ------------------------------------------------------------------------------------

    def detach(self) -> None:
        """Stop listening to the model (the project closes, or the window does)."""
        self.inspector.changed.disconnect(self._on_changed)
        self._stale.stop()

    def closeEvent(self, e: QCloseEvent) -> None:
        self.detach()
        super().closeEvent(e)
