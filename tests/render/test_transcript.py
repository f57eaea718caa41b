"""The transcript model: blocks, freezing, tool calls and dirty tracking."""

from __future__ import annotations

import pytest

from app.render.transcript import BlockKind, Transcript


def _kinds(t: Transcript) -> list[BlockKind]:
    return [b.kind for b in t.blocks if b.text or b.kind is not BlockKind.PARAGRAPH]


def test_text_stream_becomes_frozen_blocks() -> None:
    """Streaming markdown yields blocks; completed ones freeze, the tail stays open."""
    t = Transcript()
    t.add_user_message("hi")
    t.begin_assistant("r1")
    t.append_text("m1", "# Head\n\npara")
    assert _kinds(t) == [BlockKind.USER, BlockKind.HEADING, BlockKind.PARAGRAPH]
    head, para = t.blocks[1], t.blocks[2]
    assert head.frozen and not para.frozen and para.text == "para"
    t.append_text("m1", "graph\n\n```py\nx = 1\n")
    assert para.frozen and para.text == "paragraph"
    code = t.blocks[3]
    assert code.kind is BlockKind.CODE and code.lang == "py" and not code.frozen
    assert code.spans and code.committed == len("x = 1\n")
    t.end_response("completed")
    assert all(b.frozen for b in t.blocks) and not t.streaming


def test_dirty_tracking_only_reports_changes() -> None:
    """take_dirty returns changed ids once; frozen blocks are not touched again."""
    t = Transcript()
    t.append_text("m", "one\n\ntwo")
    first = t.take_dirty()
    assert len(first) == 2 and t.take_dirty() == []
    one = t.blocks[0]
    v = one.version
    t.append_text("m", " more")
    assert t.take_dirty() == [t.blocks[1].id]
    assert one.version == v
    t.append_text("m", "")
    assert t.take_dirty() == []


def test_tool_call_args_stream_and_output() -> None:
    """Tool-call arguments grow in one block; the output is its own collapsible block."""
    t = Transcript()
    bid = t.begin_tool_call("t1", "read_file", "c1")
    t.take_dirty()
    t.append_tool_args("t1", '{"pa')
    t.append_tool_args("t1", 'th": "a"}')
    blk = t.block(bid)
    assert blk.text == '{"path": "a"}' and not blk.frozen
    assert t.take_dirty() == [bid]
    t.end_item("t1")
    assert blk.frozen
    with pytest.raises(ValueError, match="already ended"):
        t.append_tool_args("t1", "x")
    out = t.add_tool_output("c1", "ok\n", True)
    t.set_collapsed(out, True)
    assert t.block(out).collapsed and t.block(out).kind is BlockKind.TOOL_OUTPUT


def test_bad_input_is_a_clear_error() -> None:
    """Wrong item kinds and appends after the end raise ValueError."""
    t = Transcript()
    t.append_text("m", "x")
    with pytest.raises(ValueError, match="text item"):
        t.append_reasoning("m", "y")
    with pytest.raises(ValueError, match="not an open tool call"):
        t.append_tool_args("m", "{}")
    t.end_item("m")
    with pytest.raises(ValueError, match="already ended"):
        t.append_text("m", "z")
    t.begin_tool_call("t", "f", "c")
    with pytest.raises(ValueError, match="already exists"):
        t.begin_tool_call("t", "f", "c")


def test_reasoning_and_notices() -> None:
    """Reasoning blocks are marked; a failed response adds a status notice."""
    t = Transcript()
    t.begin_assistant("r")
    t.append_reasoning("rs", "thinking")
    t.add_notice("error", "boom")
    t.end_response("failed")
    assert t.blocks[0].reasoning and t.blocks[0].frozen
    notices = [(b.name, b.text) for b in t.blocks if b.kind is BlockKind.NOTICE]
    assert notices == [("error", "boom"), ("status", "Response failed.")]


def test_same_blocks_char_by_char() -> None:
    """The model's final blocks do not depend on delta sizes."""
    text = "Intro **b**\n\n```python\ndef f():\n    '''doc\n    '''\n```\n\n1. a\n2. b\n"
    whole, chars = Transcript(), Transcript()
    whole.append_text("m", text)
    for ch in text:
        chars.append_text("m", ch)
    whole.end_item("m")
    chars.end_item("m")

    def view(t: Transcript) -> list[tuple[object, ...]]:
        return [(b.kind, b.text, b.lang, b.spans) for b in t.blocks if b.text]

    assert view(whole) == view(chars)


def test_huge_delta_keeps_everything() -> None:
    """A 1 MB single delta is kept in bounded blocks, nothing lost."""
    t = Transcript()
    text = "abcd " * 200_000
    t.append_text("m", text)
    t.end_item("m")
    assert "".join(b.text for b in t.blocks) == text
    assert max(len(b.text) for b in t.blocks) <= 8192


def test_clear() -> None:
    """clear() empties the model."""
    t = Transcript()
    t.add_user_message("x")
    t.clear()
    assert t.blocks == [] and t.take_dirty() == []
