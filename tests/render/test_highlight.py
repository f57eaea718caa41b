"""Incremental highlighting matches a whole lex."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.render.highlight import CodeHighlighter, _to_spans, lexer_for, spans_in

ROOT = Path(__file__).resolve().parents[2]
JS = "function f(a) {\n  /* multi\n  line */\n  return `t ${a}`;\n}\nconst x = [1, 2, 'q'];\n" * 20
JSON = '{\n  "a": [1, 2, {"b": null}],\n  "c": "d"\n}\n' * 20


def _whole(lang: str, text: str) -> list[tuple[int, int, str]]:
    lexer = lexer_for(lang)
    assert lexer is not None
    return _to_spans(lexer.get_tokens_unprocessed(text), 0)


@pytest.mark.parametrize(
    ("lang", "text"),
    [("python", (ROOT / "app/render/highlight.py").read_text()), ("javascript", JS), ("json", JSON)],
)
@pytest.mark.parametrize("step", [1, 37, 400])
def test_final_spans_equal_whole_lex(lang: str, text: str, step: int) -> None:
    """Fed in pieces of any size, the frozen block has exactly the spans of a whole lex."""
    if step == 1:
        text = text[:1500]
    hl = CodeHighlighter(lang)
    for i in range(step, len(text) + step, step):
        hl.update(text[:i])
        assert hl.spans() == sorted(hl.spans())
    hl.update(text, final=True)
    assert hl.spans() == _whole(lang, text)
    assert hl.committed_len == len(text)


def test_state_based_lexer_is_exact_while_streaming() -> None:
    """For a lexer without line-spanning regexes the committed spans need no correction."""
    text = 'fn main() {\n    let s = "a\\n";\n    // c\n}\n' * 30
    hl = CodeHighlighter("rust")
    for i in range(0, len(text), 13):
        hl.update(text[: i + 13])
    assert hl.committed == _whole("rust", text)


def test_only_new_lines_are_lexed() -> None:
    """Committed spans only grow; the partial line is provisional."""
    hl = CodeHighlighter("python")
    hl.update("import os\nx = ")
    first = list(hl.committed)
    assert hl.committed_len == len("import os\n")
    assert hl.tail and hl.tail[0][0] >= hl.committed_len
    hl.update("import os\nx = 1\ny")
    assert hl.committed[: len(first)] == first
    with pytest.raises(ValueError, match="shrank"):
        hl.update("import")


def test_unknown_language_is_plain() -> None:
    """An unknown info string gives no spans and no error."""
    hl = CodeHighlighter("no-such-language")
    hl.update("a b c\n", final=True)
    assert hl.lexer is None and hl.spans() == []
    assert lexer_for("py") is lexer_for("python")


def test_continued_block_keeps_lexer_state() -> None:
    """A block continued after a size cut starts in the previous block's lexer state."""
    one = CodeHighlighter("python")
    one.update('s = """\nopen\n')
    two = CodeHighlighter("python", stack=one.stack)
    two.update('still string\n"""\n', final=True)
    assert two.spans()[0][2].startswith("Token.Literal.String")


def test_spans_in_clips() -> None:
    """spans_in returns the overlapping spans clipped to the window."""
    spans = [(0, 3, "a"), (4, 8, "b"), (9, 10, "c")]
    assert spans_in(spans, 2, 6) == [(2, 3, "a"), (4, 6, "b")]
    assert spans_in(spans, 10, 12) == []


def test_warm_builds_the_lexers_ahead() -> None:
    """warm() leaves the lexers built (their first use is the costly one)."""
    from app.render import highlight

    highlight._LEXER_CACHE.pop("rust", None)
    highlight.warm(["rust"])
    assert highlight._LEXER_CACHE.get("rust") is not None


SAMPLES = [
    (ROOT / "app/render/highlight.py").read_text(),
    JS,
    JSON,
    '#!/bin/bash\nfor f in *.py; do echo "$f ${x:-y}" $(ls) `pwd`; done\ncat <<EOF\nhi $x\nEOF\n',
    "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n",
    'fn main() { let s = "a\\n"; /* c */ let r = r#"raw"#; }\n',
    "<p class='x'>hi &amp; <b>there</b><script>var x = 1;</script></p>\n",
    "SELECT a FROM t WHERE x = 'y' -- c\n/* d */ ORDER BY 1;\n",
    "déjà = 'vu' # naïve ünïcode → ✓\nπ = 3.14\n",
]


LANGS = ["python", "bash", "javascript", "typescript", "rust", "go", "diff", "html", "css", "sql"]
LANGS += ["java", "toml"]


@pytest.mark.parametrize("lang", LANGS)
def test_dispatching_lexer_gives_pygments_tokens(lang: str) -> None:
    """Trying only the rules that can start with the next character picks the rule pygments picks:
    the same tokens as pygments' own loop (which also emits empty matches past the end of the text)."""
    from pygments.lexer import RegexLexer

    from app.render.highlight import _lex

    lexer = lexer_for(lang)
    assert isinstance(lexer, RegexLexer)
    for text in SAMPLES:
        ref = [t for t in lexer.get_tokens_unprocessed(text) if t[0] < len(text) or t[2]]
        assert _lex(lexer, text, ["root"])[0] == ref


@pytest.mark.parametrize(
    ("pattern", "yes", "no"),
    [
        (r"(?<!\.)def\b", "d", "e."),
        (r"[^\S\n]+", " \t", "\nx"),
        (r"(?:ab)?c", "ac", "bd"),
        (r"x*|y", "xyz", ""),  # can match empty: tried at every character
        (r"\d+\.?", "7", "a ."),
        (r"(?i:abc)", "aAzZ", ""),  # case folding is not read: always tried
        (r"(a)\1", "a", "b"),
    ],
)
def test_can_start_over_approximates(pattern: str, yes: str, no: str) -> None:
    """A rule is skipped at a character only where its regex cannot match starting with it."""
    import re

    from app.render.highlight import _NO, _can_start, _parser

    parsed = list(_parser.parse(pattern, 0))
    for c in yes:
        assert _can_start(parsed, c) != _NO, c
    for c in no:
        assert _can_start(parsed, c) == _NO, c
        assert re.match(pattern, c + "zz") is None
