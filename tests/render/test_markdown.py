"""Incremental block splitter and inline rendering."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from app.render.markdown import (
    BOLD,
    CODE,
    HARD_LINE,
    MAX_BLOCK_CHARS,
    BlockSplitter,
    MdKind,
    parse_table,
    render_inline,
    split_all,
)

SAMPLE = (
    "# Title\n\nSome *para* text\nmore `x`.\n\n- a\n- b\n\n  cont\n\nnext para\n"
    "```python\ndef f(x):\n    return x\n```\n> quote\n> more\n---\n~~~\nopen fence"
)


def _kinds(text: str) -> list[MdKind]:
    return [b.kind for b in split_all(text)]


def test_block_kinds() -> None:
    """Headings, paragraphs, lists, code, quotes, rules and an open fence are recognised."""
    blocks = split_all(SAMPLE)
    assert [b.kind for b in blocks] == [
        MdKind.HEADING,
        MdKind.PARAGRAPH,
        MdKind.LIST,
        MdKind.PARAGRAPH,
        MdKind.CODE,
        MdKind.QUOTE,
        MdKind.RULE,
        MdKind.CODE,
    ]
    assert blocks[0].text == "Title" and blocks[0].level == 1
    assert blocks[2].text == "- a\n- b\n\n  cont"
    assert blocks[4].lang == "python" and blocks[4].text == "def f(x):\n    return x\n"
    assert blocks[4].closed and not blocks[7].closed
    assert blocks[7].text == "open fence"


def test_fence_rules() -> None:
    """A fence closes only with the same character and at least the same length."""
    text = "````md\n```\ninner\n```\n````\nafter\n"
    blocks = split_all(text)
    assert [b.kind for b in blocks] == [MdKind.CODE, MdKind.PARAGRAPH]
    assert blocks[0].text == "```\ninner\n```\n"
    assert split_all("~~~\n```\n~~~\n")[0].text == "```\n"


def test_fence_in_list_item() -> None:
    """An indented fence under a list item is a code block with the indent stripped."""
    blocks = split_all("1. step\n   ```bash\n   ls -l\n   ```\n2. next\n")
    assert [b.kind for b in blocks] == [MdKind.LIST, MdKind.CODE, MdKind.LIST]
    assert blocks[1].text == "ls -l\n" and blocks[1].lang == "bash"


def test_frozen_blocks_are_handed_out_once() -> None:
    """A block freezes when the next line cannot extend it, and take_frozen swaps it out."""
    sp = BlockSplitter()
    sp.feed("para one\n")
    assert sp.take_frozen() == []
    tail = sp.tail()
    assert tail is not None and tail.text == "para one"
    sp.feed("\n# Head")
    frozen = sp.take_frozen()
    assert [b.text for b in frozen] == ["para one"]
    tail = sp.tail()
    assert tail is not None and tail.kind is MdKind.HEADING and tail.text == "Head"
    assert sp.take_frozen() == []
    sp.feed("ing\n")
    assert [b.text for b in sp.take_frozen()] == ["Heading"]
    assert sp.tail() is None


def test_open_fence_tail_hides_partial_closing_fence() -> None:
    """The tail of an open fence shows code, not a half-typed closing fence."""
    sp = BlockSplitter()
    sp.feed("```py\nx = 1\n``")
    tail = sp.tail()
    assert tail is not None and tail.kind is MdKind.CODE and tail.text == "x = 1\n"


def test_huge_line_is_cut_into_bounded_blocks() -> None:
    """A 1 MB paragraph without newlines becomes bounded continuation blocks, losing nothing."""
    text = ("word " * 200_000)[:1_000_000]
    sp = BlockSplitter()
    sp.feed(text)
    tail = sp.tail()
    assert tail is not None and len(tail.text) <= MAX_BLOCK_CHARS + HARD_LINE
    sp.finish()
    blocks = sp.take_frozen()
    assert all(len(b.text) <= MAX_BLOCK_CHARS + HARD_LINE for b in blocks)
    assert all(b.cont for b in blocks[1:])
    assert "".join(b.text for b in blocks) == text


def test_long_code_block_is_continued() -> None:
    """A long fence is cut into code blocks of the same language, all lines kept in order."""
    body = "".join(f"x{i} = {i}\n" for i in range(1000))
    blocks = split_all(f"```python\n{body}```\n")
    assert len(blocks) > 1 and all(b.kind is MdKind.CODE and b.lang == "python" for b in blocks)
    assert "".join(b.text for b in blocks) == body
    assert blocks[-1].closed and not blocks[0].closed


def test_feed_after_finish_is_an_error() -> None:
    """Feeding a finished splitter is a bug and says so."""
    sp = BlockSplitter()
    sp.finish()
    try:
        sp.feed("x")
    except ValueError as e:
        assert "finish" in str(e)
    else:
        raise AssertionError("expected ValueError")


_pieces = st.sampled_from(
    [
        "a",
        " ",
        "\n",
        "\n\n",
        "#",
        "# ",
        "```",
        "```py",
        "~~~",
        "- ",
        "1. ",
        "> ",
        "---",
        "**b**",
        "`c`",
        "  ",
        "word",
        "\t",
        "x" * 50,
    ]
)


@settings(max_examples=150, deadline=None, database=None)
@given(st.lists(_pieces, max_size=60), st.data())
def test_same_blocks_whole_or_in_pieces(pieces: list[str], data: st.DataObject) -> None:
    """The final blocks do not depend on how the text was cut into deltas."""
    text = "".join(pieces)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=20)))
    sp = BlockSplitter()
    got = []
    prev = 0
    for c in [*cuts, len(text)]:
        sp.feed(text[prev:c])
        got.extend(sp.take_frozen())
        sp.tail()
        prev = c
    sp.finish()
    got.extend(sp.take_frozen())
    assert got == split_all(text)


def test_char_by_char_with_long_lines() -> None:
    """Soft line cuts land in the same place whether fed whole or one character at a time."""
    text = "intro\n\n" + ("abc " * 1500) + "\n\n```\n" + ("y" * 5000) + "\n```\ntail"
    sp = BlockSplitter()
    for ch in text:
        sp.feed(ch)
    sp.finish()
    assert sp.take_frozen() == split_all(text)


def test_inline_spans() -> None:
    """Bold, code and safe links become spans; raw HTML and unsafe links stay text."""
    spans = render_inline("a **b** `c` [l](https://x.y) [j](javascript:alert(1)) <b>h</b>")
    assert ("b", BOLD) in [(s.text, s.flags) for s in spans]
    assert ("c", CODE) in [(s.text, s.flags) for s in spans]
    assert [s.href for s in spans if s.text == "l"] == ["https://x.y"]
    assert not any("javascript" in s.href for s in spans)
    assert "".join(s.text for s in spans).endswith("<b>h</b>")
    assert render_inline("") == []


_TABLE = "| name | size | note |\n|:---|---:|:---:|\n| `a.py` | 10 | x \\| y |\n| b.py | 200 |\n|c|1|2|3|\n"


def _markdown_it_cells(text: str) -> list[list[str]]:
    """What markdown-it-py's own GFM table rule makes of a table: the inline source of every cell."""
    from markdown_it import MarkdownIt

    rows: list[list[str]] = []
    for tok in MarkdownIt("commonmark").enable("table").parse(text):
        if tok.type == "tr_open":
            rows.append([])
        elif tok.type == "inline" and rows:
            rows[-1].append(tok.content)
    return rows


def test_gfm_table_block_and_cells() -> None:
    """A header row plus a delimiter row opens a TABLE (alignments in `lang`); rows are split like
    markdown-it's GFM table rule does it (escaped pipes kept, short rows padded, long rows cut)."""
    blocks = split_all("Text before\n" + _TABLE + "\nafter\n")
    assert [b.kind for b in blocks] == [MdKind.PARAGRAPH, MdKind.TABLE, MdKind.PARAGRAPH]
    table = blocks[1]
    assert table.lang == "lrc"
    rows = parse_table(table.text, table.lang)
    assert [rows.header, *rows.rows] == _markdown_it_cells(_TABLE)
    assert rows.rows[1] == ["b.py", "200", ""] and rows.rows[2] == ["c", "1", "2"]


def test_not_a_table() -> None:
    """A delimiter row whose cell count differs from the header's, or a line of dashes, is no table."""
    assert MdKind.TABLE not in _kinds("| a | b |\n|---|\n")
    assert MdKind.TABLE not in _kinds("a\n---\n")
    assert MdKind.TABLE not in _kinds("| a | b |\n| x | y |\n")


def test_table_ends_at_a_blank_line_or_a_block() -> None:
    """A table runs to a blank line or another block's start; a line without pipes is a row (GFM)."""
    assert _kinds("| a |\n|---|\n| 1 |\n# Head\n") == [MdKind.TABLE, MdKind.HEADING]
    blocks = split_all("| a |\n|---|\n| 1 |\nplain\n\npara\n")
    assert [b.kind for b in blocks] == [MdKind.TABLE, MdKind.PARAGRAPH]
    assert parse_table(blocks[0].text, blocks[0].lang).rows == [["1"], ["plain"]]


def test_a_huge_table_continues_with_its_alignments() -> None:
    """A table over the block cap is continued in blocks that keep the alignments and carry no header."""
    text = "| k | v |\n|---|--:|\n" + "".join(f"| key{i} | {i} |\n" for i in range(800))
    blocks = split_all(text)
    assert len(blocks) > 1 and all(b.kind is MdKind.TABLE and b.lang == "-r" for b in blocks)
    assert blocks[1].cont and parse_table(blocks[1].text, "-r", cont=True).header == []
    rows = [r for b in blocks for r in parse_table(b.text, b.lang, cont=b.cont).rows]
    assert rows == [[f"key{i}", str(i)] for i in range(800)]


def _markdown_it_inline(text: str, monkeypatch) -> list[object]:  # type: ignore[no-untyped-def]
    import app.render.markdown as md

    with monkeypatch.context() as m:
        m.setattr(md, "_simple_inline", lambda _t: None)
        return list(render_inline(text))


def test_simple_inline_matches_markdown_it(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The fast path for plain prose (`code`, *em*, **strong**) gives exactly markdown-it's spans
    wherever it takes the text, and leaves the doubtful cases (intraword or nested delimiters, longer
    backtick runs, padded code, newlines, links...) to markdown-it."""
    import random

    from app.render.markdown import ITALIC, _simple_inline

    prose = 'It has **bold**, *italic* and `inline code`, so (the *renderer*) sees "**real**" markdown.'
    assert _simple_inline(prose) is not None
    assert render_inline(prose) == _markdown_it_inline(prose, monkeypatch)
    assert [(s.text, s.flags) for s in render_inline("a *b* **c** `d`")] == [
        ("a ", 0),
        ("b", ITALIC),
        (" ", 0),
        ("c", BOLD),
        (" ", 0),
        ("d", CODE),
    ]
    for doubtful in (
        "2*3*4",
        "**a*",
        "*a **b** c*",
        "`a``b`",
        "` a `",
        "a\nb",
        "*a* [l](https://x)",
        "***a***",
    ):
        assert _simple_inline(doubtful) is None, doubtful
    frags = ["a", "word", "b2", "é", " ", " ", "*", "**", "***", "`", "``", ".", ",", "(", ")", "'", '"', ":"]
    frags += ["-", "→", "😀", "1", "?", "*a*", "**b c**", "`c d`", "` c`", "_", "~", "#", "|", "/", ">", "+"]
    rnd = random.Random(13)
    taken = 0
    for _ in range(20_000):
        text = "".join(rnd.choice(frags) for _ in range(rnd.randint(1, 12)))
        if _simple_inline(text) is not None:
            taken += 1
            assert render_inline(text) == _markdown_it_inline(text, monkeypatch), text
    assert taken > 2_000
