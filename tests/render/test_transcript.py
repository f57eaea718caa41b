"""The conversation model: protocol events and stored items in, blocks out; buffering, waking, packing."""

from __future__ import annotations

from typing import Any

from app.protocol import events as ev
from app.render.highlight import PackedSpans
from app.render.transcript import FEED_CHUNK, FOLD_LINES, PACK_BLOCKS, Block, BlockKind, Transcript
from tests.render.stream import (
    args,
    completed,
    created,
    drain,
    error,
    failed,
    item_done,
    reasoning,
    text,
    tool_call,
)


def _content(t: Transcript) -> list[Block]:
    """The blocks without the assistant headers (a test of those is below)."""
    return [b for b in t.blocks if b.kind is not BlockKind.ASSISTANT]


def _kinds(t: Transcript) -> list[BlockKind]:
    return [b.kind for b in _content(t) if b.text or b.kind is not BlockKind.PARAGRAPH]


def test_text_stream_becomes_frozen_blocks() -> None:
    """Streaming markdown yields blocks; completed ones freeze, the tail stays open."""
    t = Transcript()
    t.add_user_message("hi")
    t.apply(created("r1"))
    t.apply(text("m1", "# Head\n\npara"))
    drain(t)
    assert _kinds(t) == [BlockKind.USER, BlockKind.HEADING, BlockKind.PARAGRAPH]
    head, para = _content(t)[1], _content(t)[2]
    assert head.frozen and not para.frozen and para.text == "para" and t.streaming
    t.apply(text("m1", "graph\n\n```py\nx = 1\n"))
    drain(t)
    para, code = t.block(para.id), _content(t)[3]
    assert para.frozen and para.text == "paragraph"
    assert code.kind is BlockKind.CODE and code.lang == "py" and not code.frozen
    assert code.spans and code.committed == len("x = 1\n")
    t.apply(completed("r1"))
    drain(t)
    assert all(b.frozen for b in t.blocks) and not t.streaming and t.status == "completed"


def test_input_only_buffers_until_advance() -> None:
    """apply() does no markdown work: nothing is a block until advance(); deltas of one item coalesce."""
    t = Transcript()
    t.apply(created())
    for ch in "Hello, world\n\nagain":
        t.apply(text("m", ch))
    assert t.pending and len(t) == 0 and t.take_dirty() == []
    drain(t)
    assert not t.pending and [b.text for b in _content(t)] == ["Hello, world", "again"]


def test_advance_stops_at_the_deadline_and_the_feed_limit() -> None:
    """A fake clock past the deadline: one chunk per call; max_chars caps the characters fed."""
    t = Transcript()
    t.apply(text("m", "x" * (FEED_CHUNK * 3)))
    ticks = iter(range(1, 100))
    assert t.advance(0.5, lambda: float(next(ticks))) == FEED_CHUNK  # the clock is past the deadline at once
    assert t.pending
    assert t.advance(float("inf"), lambda: 0.0, max_chars=10) == 10
    assert drain(t) == FEED_CHUNK * 2 - 10 and not t.pending
    assert "".join(b.text for b in t.blocks) == "x" * (FEED_CHUNK * 3)
    assert t.fed_chars == FEED_CHUNK * 3  # the running total of what advance() fed


def test_one_wake_per_batch_not_per_token() -> None:
    """The waker fires once when input arrives, again only after advance() took it."""
    t = Transcript()
    wakes: list[int] = []
    t.set_waker(lambda: wakes.append(1))
    for i in range(1000):
        t.apply(text("m", f"t{i} "))
    t.add_notice("info", "n")
    assert len(wakes) == 1
    drain(t)
    t.apply(text("m", "more"))
    assert len(wakes) == 2
    t.set_waker(None)
    t.apply(text("m", "!"))
    assert len(wakes) == 2


def test_dirty_tracking_only_reports_changes() -> None:
    """take_dirty returns changed ids once; frozen blocks are not touched again."""
    t = Transcript()
    t.apply(text("m", "one\n\ntwo"))
    drain(t)
    first = t.take_dirty()
    assert len(first) == 2 and t.take_dirty() == []
    one = t.blocks[0]
    v = one.version
    t.apply(text("m", " more"))
    drain(t)
    assert t.take_dirty() == [t.blocks[1].id]
    assert t.block(one.id).version == v


def test_tool_call_args_stream_and_output() -> None:
    """Tool-call arguments grow in one block; the output is its own collapsible block."""
    t = Transcript()
    t.apply(tool_call("t1", "read_file", "c1"))
    t.apply(args("t1", '{"pa'))
    t.apply(args("t1", 'th": "a"}'))
    drain(t)
    blk = t.blocks[0]
    assert blk.kind is BlockKind.TOOL_CALL and blk.name == "read_file" and blk.call_id == "c1"
    assert blk.text == '{"path": "a"}' and not blk.frozen
    t.take_dirty()
    t.apply(item_done("t1"))
    t.add_tool_output("c1", "ok\n", True)
    drain(t)
    assert t.block(blk.id).frozen
    out = t.blocks[-1]
    assert out.kind is BlockKind.TOOL_OUTPUT and out.ok is True
    t.take_dirty()
    t.set_collapsed(out.id, True)
    assert t.block(out.id).collapsed and t.take_dirty() == [out.id]


def test_peer_misbehaviour_is_recorded_not_raised() -> None:
    """Deltas after an item's end, args without a call, an id reused for another kind: fresh items."""
    t = Transcript()
    t.apply(text("m", "first"))
    t.apply(item_done("m"))
    t.apply(text("m", "second"))
    t.apply(reasoning("m", "thought"))
    t.apply(args("orphan", "{}"))
    t.apply(item_done("never-started"))
    drain(t)
    assert [(b.kind, b.text, b.reasoning) for b in t.blocks] == [
        (BlockKind.PARAGRAPH, "first", False),
        (BlockKind.PARAGRAPH, "second", False),
        (BlockKind.PARAGRAPH, "thought", True),
        (BlockKind.TOOL_CALL, "{}", False),
    ]


def test_failures_and_notices() -> None:
    """A failed response and a non-recovered error are notices; recovered errors are not shown."""
    t = Transcript()
    t.apply(created())
    t.apply(reasoning("rs", "thinking"))
    t.apply(failed("overloaded"))
    t.apply(error("previous_response_not_found", "gone"))  # the session resends by itself
    t.apply(error("rate_limit", "slow down"))
    t.add_notice("warning", "careful")
    t.end_response("cancelled")
    drain(t)
    assert _content(t)[0].reasoning and _content(t)[0].frozen
    notices = [(b.name, b.text) for b in t.blocks if b.kind is BlockKind.NOTICE]
    assert notices == [
        ("error", "The model failed: overloaded"),
        ("status", "Response failed."),
        ("error", "slow down (rate_limit)"),
        ("status", "Response failed."),
        ("warning", "careful"),
        ("status", "Response cancelled."),
    ]


def test_restore_maps_items_like_live_events() -> None:
    """Stored items become the same blocks the live events made."""
    items: list[dict[str, Any]] = [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
        {
            "type": "function_call",
            "id": "fc1",
            "name": "read_file",
            "call_id": "c1",
            "arguments": '{"path": "a"}',
        },
        {"type": "function_call_output", "call_id": "c1", "output": "text of a"},
        {
            "type": "message",
            "role": "assistant",
            "id": "m1",
            "content": [{"type": "output_text", "text": "# Done\n\nall good"}],
        },
    ]
    restored = Transcript()
    restored.restore(items)
    drain(restored)
    live = Transcript()
    live.add_user_message("hi")
    live.apply(tool_call("fc1", "read_file", "c1"))
    live.apply(args("fc1", '{"path": "a"}'))
    live.apply(item_done("fc1"))
    live.add_tool_output("c1", "text of a", True)
    live.apply(created("r2"))
    live.apply(text("m1", "# Done\n\nall good"))
    live.apply(item_done("m1"))
    live.apply(completed("r2"))
    drain(live)

    def shape(t: Transcript) -> list[tuple[object, ...]]:
        return [(b.kind, b.text, b.name, b.call_id, b.ok, b.frozen) for b in t.blocks]

    assert shape(restored) == shape(live)
    assert restored.status == "completed"


def test_same_blocks_char_by_char() -> None:
    """The model's final blocks do not depend on delta sizes."""
    src = "Intro **b**\n\n```python\ndef f():\n    '''doc\n    '''\n```\n\n1. a\n2. b\n"
    whole, chars = Transcript(), Transcript()
    whole.apply(text("m", src))
    drain(whole)
    for ch in src:
        chars.apply(text("m", ch))
        drain(chars)
    whole.apply(item_done("m"))
    chars.apply(item_done("m"))
    drain(whole)
    drain(chars)

    def view(t: Transcript) -> list[tuple[object, ...]]:
        return [(b.kind, b.text, b.lang, list(b.spans)) for b in t.blocks if b.text]

    assert view(whole) == view(chars)


def test_huge_delta_keeps_everything() -> None:
    """A 1 MB single delta is kept in bounded blocks, nothing lost."""
    t = Transcript()
    src = "abcd " * 200_000
    t.apply(text("m", src))
    t.apply(item_done("m"))
    drain(t)
    assert "".join(b.text for b in t.blocks) == src
    assert max(len(b.text) for b in t.blocks) <= 8192


def test_settled_blocks_are_packed_and_read_back_whole() -> None:
    """A long answer packs its settled blocks into segments; every block reads back as it was."""
    src = "".join(f"## H{i}\n\npara {i} with `code`\n\n```python\nx = {i}\n```\n\n" for i in range(400))
    packed = Transcript()
    packed.apply(text("m", src))
    packed.apply(item_done("m"))
    drain(packed)
    assert packed.packed >= PACK_BLOCKS
    code = next(
        packed.block(i)
        for i in range(packed.first_id, packed.first_id + packed.packed)
        if packed.block(i).kind is BlockKind.CODE
    )
    assert isinstance(code.spans, PackedSpans) and code.frozen and code.spans
    one_by_one = Transcript()  # fed in small pieces, advanced each time: packed at other moments
    for i in range(0, len(src), 100):
        one_by_one.apply(text("m", src[i : i + 100]))
        drain(one_by_one)
    one_by_one.apply(item_done("m"))
    drain(one_by_one)

    def shape(t: Transcript) -> list[tuple[object, ...]]:
        return [(b.id, b.kind, b.text, b.lang, b.level, list(b.spans)) for b in t.blocks]

    assert shape(packed) == shape(one_by_one)
    assert packed.plain_text().count("para 399") == 1


def test_collapse_a_packed_tool_block() -> None:
    """A tool block settled into a segment still collapses (the state is kept beside the segment)."""
    t = Transcript()
    t.apply(tool_call("t", "run_tests", "c"))
    t.apply(item_done("t"))
    t.apply(text("m", "p\n\n" * (PACK_BLOCKS * 2)))
    drain(t)
    tool = t.first_id
    assert t.packed and t.block(tool).kind is BlockKind.TOOL_CALL
    t.take_dirty()
    t.set_collapsed(tool, True)
    assert t.block(tool).collapsed and t.take_dirty() == [tool]
    t.set_collapsed(tool, False)
    assert not t.block(tool).collapsed


def test_clear_bumps_the_epoch_and_wakes() -> None:
    """clear() empties the model, drops buffered input, bumps epoch and wakes the view."""
    t = Transcript()
    wakes: list[int] = []
    t.set_waker(lambda: wakes.append(1))
    t.add_user_message("x")
    drain(t)
    t.apply(text("m", "pending"))
    epoch = t.epoch
    t.clear()
    assert t.blocks == [] and not t.pending and t.take_dirty() == [] and t.epoch == epoch + 1
    assert len(wakes) == 3
    t.add_user_message("y")
    drain(t)
    assert [b.text for b in t.blocks] == ["y"] and t.first_id == t.blocks[0].id


def test_a_backlog_is_held_in_a_few_strings_and_fed_exactly() -> None:
    """The view behind a fast stream: 60k deltas wait in ~60 joined strings and a short tail; feeding while more arrive
    loses and reorders nothing."""
    t = Transcript()
    words = [f"w{i} " for i in range(100_000)]
    for w in words[:60_000]:
        t.apply(text("m", w))
    op = t._ops[-1]
    assert len(op.parts) <= 60_000 // 1024 + 1024 + 1  # type: ignore[union-attr]  # joined runs + the loose tail
    for i, w in enumerate(words[60_000:]):
        t.apply(text("m", w))
        if i % 1000 == 0:
            t.advance(float("inf"), lambda: 0.0, max_chars=3000)
    drain(t)
    assert "".join(b.text for b in t.blocks).rstrip() == "".join(words).rstrip()


def test_one_assistant_header_a_turn_with_the_model_name() -> None:
    """The model's part of a turn starts with one header naming the model, however many responses
    (tool-call rounds) it takes; the next user message starts a new turn."""
    t = Transcript()
    t.add_user_message("hi")
    t.apply(ev.ResponseCreated(response={"id": "r1", "model": "gpt-5.3-codex"}))
    t.apply(tool_call("fc", "read_file", "c1"))
    t.apply(item_done("fc"))
    t.apply(completed("r1"))
    t.add_tool_output("c1", "text", True)
    t.apply(created("r2"))
    t.apply(text("m", "done"))
    t.apply(completed("r2"))
    t.add_user_message("again")
    t.apply(created("r3"))
    t.apply(completed("r3"))
    drain(t)
    kinds = [b.kind for b in t.blocks]
    assert kinds == [
        BlockKind.USER,
        BlockKind.ASSISTANT,
        BlockKind.TOOL_CALL,
        BlockKind.TOOL_OUTPUT,
        BlockKind.PARAGRAPH,
        BlockKind.USER,
        BlockKind.ASSISTANT,
    ]
    assert t.blocks[1].text == "gpt-5.3-codex" and t.blocks[6].text == ""


def test_a_gfm_table_is_one_table_block() -> None:
    """A table streamed char by char becomes one TABLE block with its alignments in `lang`; its kind
    changes at most once (paragraph while only the header row is there, then table)."""
    src = "Intro\n\n| name | size |\n|:-----|-----:|\n| a.py | 10 |\n| b.py | 200 |\n\nAfter\n"
    t = Transcript()
    seen: list[BlockKind] = []
    for ch in src:
        t.apply(text("m", ch))
        drain(t)
        kinds = [b.kind for b in t.blocks if b.text.startswith("| name")]
        if kinds and (not seen or seen[-1] is not kinds[0]):
            seen.append(kinds[0])
    t.apply(item_done("m"))
    drain(t)
    assert seen == [BlockKind.PARAGRAPH, BlockKind.TABLE]
    (table,) = [b for b in t.blocks if b.kind is BlockKind.TABLE]
    assert table.lang == "lr" and table.frozen and table.text.endswith("| b.py | 200 |")
    assert [b.text for b in t.blocks if b.kind is BlockKind.PARAGRAPH] == ["Intro", "After"]


def test_long_tool_output_starts_collapsed_and_names_its_call() -> None:
    """An output longer than FOLD_LINES starts collapsed; a short one does not; both carry the call's
    tool name."""
    t = Transcript()
    t.apply(tool_call("fc", "run_tests", "c1"))
    t.apply(item_done("fc"))
    t.add_tool_output("c1", "\n".join(f"line {i}" for i in range(FOLD_LINES + 1)) + "\n", True)
    t.add_tool_output("c1", "\n".join(f"line {i}" for i in range(FOLD_LINES)) + "\n", False)
    drain(t)
    long, short = t.blocks[-2:]
    assert long.collapsed and not short.collapsed
    assert long.name == short.name == "run_tests" and short.ok is False


def test_packed_tables_keep_their_alignments() -> None:
    """Settled TABLE blocks pack like the others: kind, text and alignments read back whole."""
    src = "".join(f"| a{i} | b |\n|:-:|--:|\n| {i} | x |\n\n" for i in range(2 * PACK_BLOCKS + 10))
    t = Transcript()
    t.apply(text("m", src))
    t.apply(item_done("m"))
    drain(t)
    assert t.packed >= PACK_BLOCKS
    first = t.block(t.first_id)
    assert (
        first.kind is BlockKind.TABLE
        and first.lang == "cr"
        and first.text == "| a0 | b |\n|:-:|--:|\n| 0 | x |"
    )
