"""The context inspector's model, fed plain frames and usage (no socket, no Qt)."""

from __future__ import annotations

import json
from typing import Any

from app.context.ledger import UPDATE_MARKER
from app.services.inspector import Inspector, describe_item, diff_lines, request_summary

INSTR = {"model": "m", "store": False, "instructions": "be brief", "tools": []}
DIFF = "--- a/app.py\n+++ b/app.py\n@@ -1,2 +1,2 @@\n x = 1\n-y = 2\n+y = 3\n"


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def update(diff: str = DIFF) -> dict[str, Any]:
    return user(f"{UPDATE_MARKER} 1 file changed: app.py (+1 -1)\n\n{diff}")


def frame(items: list[dict[str, Any]], previous: str | None = None, generate: bool = True) -> bytes:
    body: dict[str, Any] = {"type": "response.create", **INSTR, "input": items}
    if previous:
        body["previous_response_id"] = previous
    if not generate:
        body["generate"] = False
    return json.dumps(body, separators=(",", ":")).encode()


def usage(inp: int, cached: int, out: int = 5) -> dict[str, Any]:
    return {"input_tokens": inp, "input_tokens_details": {"cached_tokens": cached}, "output_tokens": out}


def test_a_chained_turn_records_items_bytes_tokens_and_the_chain() -> None:
    insp = Inspector(clock=lambda: 100.0)
    first = [user("project snapshot " * 100)]
    insp.record_send(frame(first, generate=False), transport="websocket", transcript=first)
    insp.record_end(status="completed", response_id="resp_1", usage=usage(500, 0, 0))
    items = [update(), user("why did y change?")]
    convo = [*first, *items]
    sent = frame(items, previous="resp_1")
    rec = insp.record_send(sent, transport="websocket", transcript=convo)
    insp.record_end(status="completed", response_id="resp_2", usage=usage(560, 500), ttft_ms=42.0)
    assert rec.kind == "turn" and rec.previous_response_id == "resp_1" and rec.response_id == "resp_2"
    assert not rec.fresh and rec.fresh_cause == ""
    assert rec.bytes_sent == len(sent) and rec.input_items == 2
    assert rec.full_bytes == len(frame(convo))  # exactly what a stateless client would have sent
    assert (rec.input_tokens, rec.cached_tokens, rec.new_tokens, rec.ttft_ms) == (560, 500, 60, 42.0)
    assert rec.items is not None and [i.kind for i in rec.items] == ["context update", "your message"]
    assert rec.items[0].diff and not rec.items[1].diff
    assert (
        insp.records[0].kind == "push" and insp.records[0].fresh_cause == "first request of this conversation"
    )
    assert insp.rebuild_count == 0
    assert insp.bytes_sent == insp.records[0].bytes_sent + len(sent)
    assert 0 < insp.ratio < 1 and insp.cached_tokens == 500 and insp.input_tokens == 1060
    assert "only new input" in request_summary(rec) and "500 tokens cached, 60 new" in request_summary(rec)


def test_fresh_chains_after_the_first_count_as_rebuilds_by_cause() -> None:
    insp = Inspector()
    convo = [user("a")]
    for cause in ("", "connection lost (code 1006)", "connection lost (code 1006)", "renewed"):
        insp.record_send(frame(convo), transport="websocket", fresh_cause=cause, transcript=convo)
        insp.record_end(status="completed", response_id=f"r{insp.requests}")
    assert insp.rebuilds == {"connection lost (code 1006)": 2, "renewed": 1}
    assert insp.rebuild_count == 3 and insp.ratio == 1.0  # every request was a full resend


def test_a_stopped_request_gets_its_usage_when_it_ends_later() -> None:
    insp = Inspector()
    insp.record_send(frame([user("go")]), transport="websocket", transcript=[user("go")])
    insp.record_end(status="cancelled", response_id="resp_9", kept_chain=True)
    assert insp.last is not None and insp.last.input_tokens is None and insp.last.kept_chain
    insp.record_end(status="cancelled", response_id="resp_9", usage=usage(10, 0), kept_chain=True)
    assert insp.last.input_tokens == 10 and insp.input_tokens == 10
    insp.record_end(status="cancelled", response_id="resp_9", usage=usage(10, 0))
    assert insp.input_tokens == 10  # counted once
    assert insp.record_end(status="completed", response_id="other") is None  # not this request's end


def test_memory_is_bounded_frames_then_records() -> None:
    insp = Inspector(keep_frames=3, keep_records=10)
    for n in range(25):
        insp.record_send(frame([user(f"m{n}")]), transport="websocket")
    recs = insp.records
    assert len(recs) == 10 and recs[0].seq == 16 and recs[-1].seq == 25
    assert [r.items is not None for r in recs] == [False] * 7 + [True] * 3
    assert insp.requests == 25  # the totals still count every request


def test_diff_lines_mark_only_hunks_as_changes() -> None:
    text = "intro\n- a list item, not a deletion\n" + DIFF + "after the diff\n- again a list"
    kinds = [(d.kind, d.text) for d in diff_lines(text)]
    assert ("plain", "- a list item, not a deletion") in kinds
    assert ("file", "--- a/app.py") in kinds and ("file", "+++ b/app.py") in kinds
    assert ("hunk", "@@ -1,2 +1,2 @@") in kinds
    assert ("del", "-y = 2") in kinds and ("add", "+y = 3") in kinds and ("plain", " x = 1") in kinds
    assert ("plain", "- again a list") in kinds


def test_describe_items_of_every_kind() -> None:
    call = {
        "type": "function_call",
        "call_id": "c1",
        "name": "apply_patch",
        "arguments": json.dumps({"patch": DIFF}),
    }
    out = {"type": "function_call_output", "call_id": "c1", "output": "applied"}
    got = [describe_item(i) for i in (call, out, {"type": "reasoning", "id": "rs_1"})]
    assert [g.kind for g in got] == ["tool call", "tool output", "reasoning"]
    assert got[0].diff and got[0].text == DIFF and got[0].title.startswith("apply_patch(")
    assert got[1].title == "c1: applied" and all(g.size > 0 for g in got)
