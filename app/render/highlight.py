"""Incremental pygments highlighting of one growing code block.

`CodeHighlighter.update(text)` is called with the block's whole text each time it grew (the text
only ever grows at the end). Complete lines are lexed once, from the lexer state saved at the end
of the previous complete line, and their spans are committed; only the partial last line is
re-lexed on each update. Spans are `(start, end, key)` with `key` a pygments token type name such
as "Token.Keyword"; the UI resolves keys to colours in its current theme, so a theme switch needs no
re-lex.

Resuming needs the lexer's state stack, which pygments does not expose, so `_lex` mirrors
`RegexLexer.get_tokens_unprocessed` (pygments 2.x) and returns the stack. Lexers that are not plain
RegexLexers (e.g. the hand-written JSON lexer) fall back to re-lexing the committed text of the
block, which the markdown splitter caps in size. pygments tries a state's rules one by one at each
position (~10 regex calls a character on Python code); `_lex` tries, at an ASCII character, only the
rules whose regex can start with it (read from the parsed regexes, over-approximated), in the same
order, so it picks the same rule with a third of the calls.

Some token regexes span lines (Python docstrings, C comments), so spans lexed a line batch at a
time can differ from a whole lex while the block is open. `update(text, final=True)`, called once
when the block freezes, re-lexes the block whole (capped in size by the splitter), so frozen blocks
carry exactly the spans of a whole lex; the open block's spans are provisional.
"""

from __future__ import annotations

import bisect
import importlib
import re
from array import array
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, overload

from pygments.lexer import Lexer, RegexLexer
from pygments.lexers import get_lexer_by_name
from pygments.token import Error, Text, Whitespace, _TokenType
from pygments.util import ClassNotFound

__all__ = ["COMMON_LANGUAGES", "CodeHighlighter", "PackedSpans", "Span", "lexer_for", "spans_in", "warm"]

# Fence languages worth preparing before the first code block shows up (see `warm`).
COMMON_LANGUAGES = ("python", "bash", "javascript", "typescript", "json", "diff")

Span = tuple[int, int, str]  # start, end (offsets in the block text), token type name

_ALIASES = {
    "py": "python",
    "sh": "bash",
    "shell": "bash",
    "zsh": "bash",
    "js": "javascript",
    "ts": "typescript",
    "yml": "yaml",
    "c++": "cpp",
    "rs": "rust",
    "golang": "go",
    "console": "bash",
    "text": "text",
    "plaintext": "text",
    "txt": "text",
    "": "text",
}
_LEXER_CACHE: dict[str, Lexer | None] = {}


def lexer_for(lang: str) -> Lexer | None:
    """A pygments lexer for a fence's info string; None means plain text. Unknown names are plain."""
    key = lang.strip().lower().lstrip(".")
    key = _ALIASES.get(key, key)
    if key in _LEXER_CACHE:
        return _LEXER_CACHE[key]
    lexer: Lexer | None
    if key == "text":
        lexer = None
    else:
        try:
            lexer = get_lexer_by_name(key, stripnl=False, stripall=False, ensurenl=False)
        except ClassNotFound:
            lexer = None
    _LEXER_CACHE[key] = lexer
    return lexer


def _resumable(lexer: Lexer) -> bool:
    return isinstance(lexer, RegexLexer) and (
        type(lexer).get_tokens_unprocessed is RegexLexer.get_tokens_unprocessed
    )


def _lex(lexer: RegexLexer, text: str, stack: list[str]) -> tuple[list[tuple[int, Any, str]], list[str]]:
    """RegexLexer.get_tokens_unprocessed that also returns the final state stack.

    At an ASCII character only the rules that can match starting with it are tried (`_Dispatch`), in
    their order: pygments tries every rule of a state in turn, ~10 regex calls a character on Python
    code, most of them failing on the first character."""
    out: list[tuple[int, Any, str]] = []
    pos = 0
    # pygments compiles the token table into this private class attribute; the stubs omit it.
    tokendefs: Any = lexer._tokens  # type: ignore[attr-defined]
    dispatch = _dispatch(type(lexer), tokendefs)
    statestack = list(stack)
    statetokens = tokendefs[statestack[-1]]
    table = dispatch[statestack[-1]]
    n = len(text)
    while pos < n:
        code = ord(text[pos])
        rules = table.rules(code) if code < 128 else statetokens
        for rexmatch, action, new_state in rules:
            m = rexmatch(text, pos)
            if m:
                if action is not None:
                    if type(action) is _TokenType:
                        out.append((pos, action, m.group()))
                    else:
                        out.extend(action(lexer, m))
                pos = m.end()
                if new_state is not None:
                    if isinstance(new_state, tuple):
                        for state in new_state:
                            if state == "#pop":
                                if len(statestack) > 1:
                                    statestack.pop()
                            elif state == "#push":
                                statestack.append(statestack[-1])
                            else:
                                statestack.append(state)
                    elif isinstance(new_state, int):
                        if abs(new_state) >= len(statestack):
                            del statestack[1:]
                        else:
                            del statestack[new_state:]
                    elif new_state == "#push":
                        statestack.append(statestack[-1])
                    statetokens = tokendefs[statestack[-1]]
                    table = dispatch[statestack[-1]]
                break
        else:
            if text[pos] == "\n":
                statestack = ["root"]
                statetokens = tokendefs["root"]
                table = dispatch["root"]
                out.append((pos, Whitespace, "\n"))
            else:
                out.append((pos, Error, text[pos]))
            pos += 1
    return out, statestack


_Rule = tuple[Any, Any, Any]  # (rexmatch, action, new_state) as pygments compiles them
# The stdlib's regex parser (what re.compile runs first): its parse trees say how a regex can start.
# Private modules without stubs, stable across 3.11-3.13.
_parser: Any = importlib.import_module("re._parser")
C: Any = importlib.import_module("re._constants")
_DISPATCH: dict[type, _States] = {}
_CATEGORY = {
    C.CATEGORY_DIGIT: re.compile(r"\d").match,
    C.CATEGORY_NOT_DIGIT: re.compile(r"\D").match,
    C.CATEGORY_SPACE: re.compile(r"\s").match,
    C.CATEGORY_NOT_SPACE: re.compile(r"\S").match,
    C.CATEGORY_WORD: re.compile(r"\w").match,
    C.CATEGORY_NOT_WORD: re.compile(r"\W").match,
}
_REPEATS = (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT)
_ZERO_WIDTH = (C.AT, C.ASSERT, C.ASSERT_NOT)


class _Dispatch:
    """The rules of one state that can match at an ASCII character, in order, worked out lazily from
    each rule's parsed regex (`_can_start`). The test over-approximates (anything it cannot read
    keeps the rule), so the first rule that matches is the one pygments' loop would pick."""

    __slots__ = ("_by_code", "_parsed", "_rules")

    def __init__(self, rules: list[_Rule]) -> None:
        self._rules = rules
        self._parsed: list[Any] = []  # per rule: its parsed regex, or None to always try it
        for rexmatch, _action, _state in rules:
            rex = getattr(rexmatch, "__self__", None)
            parsed = None
            if isinstance(rex, re.Pattern) and isinstance(rex.pattern, str) and not rex.flags & re.IGNORECASE:
                try:
                    parsed = _parser.parse(rex.pattern, rex.flags)
                except re.error:
                    parsed = None
            self._parsed.append(parsed)
        self._by_code: list[tuple[_Rule, ...] | None] = [None] * 128

    def rules(self, code: int) -> tuple[_Rule, ...]:
        got = self._by_code[code]
        if got is None:
            c = chr(code)
            got = self._by_code[code] = tuple(
                rule
                for rule, parsed in zip(self._rules, self._parsed, strict=True)
                if parsed is None or _can_start(list(parsed), c) != _NO
            )
        return got


_NO, _YES, _EMPTY = 0, 1, 2  # a sequence cannot match starting with c / can / can match empty


def _can_start(seq: list[tuple[Any, Any]], c: str) -> int:
    """Whether the parsed regex sequence can match a string starting with `c` (over-approximated)."""
    for op, av in seq:
        r = _item(op, av, c)
        if r != _EMPTY:
            return r
    return _EMPTY


def _item(op: Any, av: Any, c: str) -> int:
    if op is C.LITERAL:
        return _YES if c == chr(av) else _NO
    if op is C.NOT_LITERAL:
        return _YES if c != chr(av) else _NO
    if op is C.ANY:
        return _YES
    if op is C.IN:
        return _in_class(av, c)
    if op is C.BRANCH:
        results = [_can_start(list(branch), c) for branch in av[1]]
        if _YES in results:
            return _YES
        return _EMPTY if _EMPTY in results else _NO
    if op is C.SUBPATTERN:
        _group, add_flags, _del_flags, sub = av
        if add_flags & re.IGNORECASE:
            return _YES
        return _can_start(list(sub), c)
    if op is C.ATOMIC_GROUP:
        return _can_start(list(av), c)
    if op in _REPEATS:
        lo, hi, sub = av
        if hi == 0:
            return _EMPTY
        r = _can_start(list(sub), c)
        return _EMPTY if r == _NO and lo == 0 else r
    if op in _ZERO_WIDTH:  # consumes nothing: what follows decides (it may only fail more often)
        return _EMPTY
    return _YES  # anything else (back-references, conditionals): always try the rule


def _in_class(items: list[tuple[Any, Any]], c: str) -> int:
    negate = False
    hit = False
    for op, av in items:
        if op is C.NEGATE:
            negate = True
        elif op is C.LITERAL:
            hit = hit or c == chr(av)
        elif op is C.RANGE:
            hit = hit or av[0] <= ord(c) <= av[1]
        elif op is C.CATEGORY and av in _CATEGORY:
            hit = hit or _CATEGORY[av](c) is not None
        else:
            return _YES
    return _YES if hit != negate else _NO


class _States(dict[str, _Dispatch]):
    """A lexer class's `_Dispatch` per state, each built when the state is first entered (parsing a
    state's regexes costs ~1 ms; Python's lexer has ~50 states, most of them rarely used)."""

    def __init__(self, tokendefs: dict[str, list[_Rule]]) -> None:
        super().__init__()
        self._tokendefs = tokendefs

    def __missing__(self, state: str) -> _Dispatch:
        table = self[state] = _Dispatch(self._tokendefs[state])
        return table


def _dispatch(cls: type, tokendefs: dict[str, list[_Rule]]) -> _States:
    table = _DISPATCH.get(cls)
    if table is None:
        table = _DISPATCH[cls] = _States(tokendefs)
    return table


# Token type names, one shared string each (str(ttype) would allocate a new one per span), and the
# index of each in `_KEYS` for PackedSpans.
_KEY_OF: dict[Any, str] = {}
_KEYS: list[str] = []
_KEY_INDEX: dict[str, int] = {}


def _key(ttype: Any) -> str:
    key = _KEY_OF.get(ttype)
    if key is None:
        key = _KEY_OF[ttype] = str(ttype)
    return key


class PackedSpans(Sequence[Span]):
    """Spans of a settled code block in three machine arrays: ~10 bytes a span instead of ~120 for a
    list of tuples, and no objects for the garbage collector to walk. Read-only; indexes to `Span`."""

    __slots__ = ("_ends", "_keys", "_starts")

    def __init__(self, spans: Sequence[Span] = ()) -> None:
        self._starts = array("I", (s for s, _, _ in spans))
        self._ends = array("I", (e for _, e, _ in spans))
        keys = array("H")
        for _, _, k in spans:
            i = _KEY_INDEX.get(k)
            if i is None:
                i = _KEY_INDEX[k] = len(_KEYS)
                _KEYS.append(k)
            keys.append(i)
        self._keys = keys

    @classmethod
    def from_arrays(cls, starts: array[int], ends: array[int], keys: array[int]) -> PackedSpans:
        out = cls.__new__(cls)
        out._starts, out._ends, out._keys = starts, ends, keys
        return out

    def arrays(self) -> tuple[array[int], array[int], array[int]]:
        return self._starts, self._ends, self._keys

    def __len__(self) -> int:
        return len(self._starts)

    @overload
    def __getitem__(self, i: int) -> Span: ...
    @overload
    def __getitem__(self, i: slice) -> list[Span]: ...
    def __getitem__(self, i: int | slice) -> Span | list[Span]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return self._starts[i], self._ends[i], _KEYS[self._keys[i]]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PackedSpans):
            return self._starts == other._starts and self._ends == other._ends and self._keys == other._keys
        if isinstance(other, Sequence):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"PackedSpans({list(self)!r})"

    def from_offset(self, start: int) -> Iterator[Span]:
        """Spans from the last one starting at or before `start` on (for clipping a window)."""
        i = max(bisect.bisect_right(self._starts, start) - 1, 0)
        starts, ends, keys = self._starts, self._ends, self._keys
        for j in range(i, len(starts)):
            yield starts[j], ends[j], _KEYS[keys[j]]


def _to_spans(tokens: Iterator[tuple[int, Any, str]] | list[tuple[int, Any, str]], base: int) -> list[Span]:
    spans: list[Span] = []
    for pos, ttype, value in tokens:
        if not value or ttype is Text or ttype is Whitespace:
            continue
        key = _key(ttype)
        start = base + pos
        if spans and spans[-1][2] == key and spans[-1][1] == start:
            spans[-1] = (spans[-1][0], start + len(value), key)
        else:
            spans.append((start, start + len(value), key))
    return spans


class CodeHighlighter:
    """Spans for one growing code block; pass `stack` to continue another block's lexer state."""

    def __init__(self, lang: str, stack: list[str] | None = None) -> None:
        self.lexer = lexer_for(lang)
        self._resumable = self.lexer is not None and _resumable(self.lexer)
        self._start_stack: list[str] = list(stack) if stack else ["root"]
        self._stack = list(self._start_stack)
        self._done = 0  # text[:_done] is committed (ends after a newline)
        self._text_len = 0
        self.committed: list[Span] = []
        self.tail: list[Span] = []  # spans of the partial last line (provisional)

    @property
    def stack(self) -> list[str]:
        """Lexer state after the committed text (to continue in a follow-on block)."""
        return list(self._stack)

    @property
    def committed_len(self) -> int:
        return self._done

    def spans(self) -> list[Span]:
        return self.committed + self.tail

    def update(self, text: str, final: bool = False) -> None:
        """Take the block's current text (a prefix-extension of the last one); lex what is new."""
        if len(text) < self._text_len:
            raise ValueError("code block text shrank; highlighting is append-only")
        self._text_len = len(text)
        lexer = self.lexer
        if lexer is None:
            self._done = len(text) if final else text.rfind("\n") + 1
            return
        if final:
            self.tail = []
            if self._resumable:
                assert isinstance(lexer, RegexLexer)
                tokens, self._stack = _lex(lexer, text, self._start_stack)
                self.committed = _to_spans(tokens, 0)
            elif len(text) > self._done:
                self.committed = _to_spans(lexer.get_tokens_unprocessed(text), 0)
            self._done = len(text)
            return
        cut = text.rfind("\n") + 1
        if cut > self._done:
            if self._resumable:
                assert isinstance(lexer, RegexLexer)
                tokens, self._stack = _lex(lexer, text[self._done : cut], self._stack)
                self.committed.extend(_to_spans(tokens, self._done))
            else:
                self.committed = _to_spans(lexer.get_tokens_unprocessed(text[:cut]), 0)
            self._done = cut
        self.tail = []
        if cut < len(text):
            rest = text[cut:]
            if self._resumable:
                assert isinstance(lexer, RegexLexer)
                tokens, _ = _lex(lexer, rest, self._stack)
                self.tail = _to_spans(tokens, cut)
            else:
                self.tail = _to_spans(lexer.get_tokens_unprocessed(rest), cut)


def warm(langs: Iterable[str] = COMMON_LANGUAGES) -> None:
    """Build these lexers and compile their token tables now: pygments does it on first use, 50-100 ms
    for Python, which would otherwise land in the first frame that shows a code block. Safe to run in a
    worker thread (the caches are plain dicts; a race only builds a lexer twice)."""
    for lang in langs:
        CodeHighlighter(lang).update("x = 1\n", final=True)


def spans_in(spans: Sequence[Span], start: int, end: int) -> list[Span]:
    """The spans overlapping [start, end), clipped to it (spans are sorted and disjoint)."""
    tail: Iterator[Span] | Sequence[Span]
    if isinstance(spans, PackedSpans):
        tail = spans.from_offset(start)
    else:
        i = max(bisect.bisect_right(spans, (start, 1 << 62, "")) - 1, 0)
        tail = spans[i:]
    out: list[Span] = []
    for s, e, k in tail:
        if s >= end:
            break
        if e <= start:
            continue
        out.append((max(s, start), min(e, end), k))
    return out
