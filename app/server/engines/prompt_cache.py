"""The in-process engine's token cache: each chain's prompt as tokens, extended by its new messages.

llama-cpp-python's `create_chat_completion` renders the whole conversation through the chat
template and tokenizes all of it on every turn: server CPU grows with the history. Here a chain keeps
its rendered text in pieces (one per turn, split again before user messages) with their tokens; a
turn renders and tokenizes only its new messages.

How a turn's new messages are rendered without the whole conversation: the template runs on a small
window -- the leading system messages, then the chain's last piece(s), then the new messages -- and
the new text is what that adds. The window's rendering of the old messages must end with exactly
the text the chain already holds for them, and each rendering must extend the previous one; if not
(a template that numbers messages, groups them, or treats the first user message specially), an
earlier piece is tried as the window's start, then the whole conversation is rendered (correct, just
not incremental) and the log says so at debug level. The assumption is that a message renders from
itself, its neighbours and the leading system messages, which holds for ChatML, Llama 3, Mistral,
Gemma, Phi and Qwen templates.

Pieces are tokenized one by one. They start at message boundaries, where templates put control
tokens, so this gives the tokens of the whole text.

Chains share their lists copy-on-write, like `HistoryRenderer`: lists only grow, a snapshot
remembers its length and last piece, and a fork copies. Render and tokenize are injected (the model's
Jinja template and tokenizer in production), so tests and the benchmark use them as plain functions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, overload

__all__ = ["Prompt", "PromptCache", "TokenChain", "WithSystem"]

log = logging.getLogger(__name__)

Message = Mapping[str, Any]
Render = Callable[[Sequence[Message], bool], str]  # (messages, add_generation_prompt) -> text
Tokenize = Callable[[str], list[int]]

ANCHORS = 3  # pieces tried as the window's start before rendering the whole conversation


@dataclass(frozen=True, slots=True)
class _Piece:
    start: int  # first message it renders
    end: int  # one past its last message
    text: str
    tok_end: int  # tokens of the chain up to the end of this piece


@dataclass(frozen=True, slots=True)
class TokenChain:
    """A chain's rendered prompt (without the generation prompt) as pieces and tokens."""

    pieces: list[_Piece]  # shared, grows only; this chain owns pieces[:n]
    tokens: list[int]  # shared, grows only; this chain owns tokens[:last.tok_end]
    n: int
    last: _Piece | None
    config: object  # what the text depends on besides the messages (instructions, tools)

    @property
    def n_tokens(self) -> int:
        return self.last.tok_end if self.last is not None else 0

    @property
    def n_messages(self) -> int:
        return self.last.end if self.last is not None else 0


@dataclass(frozen=True, slots=True)
class Prompt:
    """What to evaluate: the chain's tokens, then the generation prompt's (empty for a prefill)."""

    chain: TokenChain
    generation: list[int]
    new_tokens: int  # tokens this call tokenized (how much work it did)
    full: bool  # rendered the whole conversation (no usable chain, or the template refused a window)

    @property
    def n_body(self) -> int:
        return self.chain.n_tokens

    def __len__(self) -> int:
        return self.chain.n_tokens + len(self.generation)

    def tokens(self) -> list[int]:
        """Every token, as one new list."""
        return [*self.chain.tokens[: self.chain.n_tokens], *self.generation]


class WithSystem(Sequence[Message]):
    """`[system, *messages]` without copying `messages` (None: just `messages`)."""

    __slots__ = ("_head", "_messages")

    def __init__(self, system: Message | None, messages: Sequence[Message]) -> None:
        self._head = () if system is None else (system,)
        self._messages = messages

    def __len__(self) -> int:
        return len(self._head) + len(self._messages)

    @overload
    def __getitem__(self, index: int) -> Message: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Message]: ...
    def __getitem__(self, index: int | slice) -> Message | Sequence[Message]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if index < len(self._head):
            return self._head[index]
        return self._messages[index - len(self._head)]

    def __iter__(self) -> Iterator[Message]:
        yield from self._head
        yield from self._messages


class PromptCache:
    """Builds a turn's prompt from its parent chain, rendering and tokenizing only new messages.

    `render` and `tokenize` are given per call: `render` carries the turn's tools."""

    def __init__(self, *, anchors: int = ANCHORS) -> None:
        self.anchors = anchors
        self.full_renders = 0  # turns that had to render the whole conversation

    def build(
        self,
        messages: Sequence[Message],
        render: Render,
        tokenize: Tokenize,
        *,
        parent: TokenChain | None,
        changed_from: int,
        config: object,
        generation: bool,
    ) -> Prompt:
        """The prompt for `messages` (the whole conversation, leading system messages included).

        `parent`: the chain this turn continues (None: none); `changed_from`: the first message
        that is new or different from the parent's; `config`: compared with the parent's (anything
        else the text depends on). `generation`: also produce the generation prompt."""
        if parent is not None and parent.config == config and parent.n:
            keep = parent.n
            while keep and parent.pieces[keep - 1].end > changed_from:
                keep -= 1
            if keep:
                prompt = self._extend(messages, render, tokenize, parent, keep, generation)
                if prompt is not None:
                    return prompt
        return self._full(messages, render, tokenize, config, generation)

    # -- incremental ---------------------------------------------------------------------------

    def _extend(
        self,
        messages: Sequence[Message],
        render: Render,
        tokenize: Tokenize,
        parent: TokenChain,
        keep: int,
        generation: bool,
    ) -> Prompt | None:
        pieces = parent.pieces
        s = pieces[keep - 1].end
        n = len(messages)
        lead = _lead(messages)
        new = [messages[i] for i in range(s, n)]
        for j in range(keep - 1, max(-1, keep - 1 - self.anchors), -1):
            a = pieces[j].start
            first = range(s) if a <= lead else [*range(lead), *range(a, s)]
            window = [messages[i] for i in first]
            old_text = "".join(p.text for p in pieces[j:keep])
            try:
                before = render(window, False)
                if not (before == old_text if a == 0 else before.endswith(old_text)):
                    continue
                after = render([*window, *new], False)
                if not after.startswith(before):
                    continue
                cuts = self._cuts(render, window, messages, s, n, before, after)
                gen = render([*window, *new], True) if generation else after
            except Exception as exc:  # the template refused the window (e.g. role alternation)
                log.debug("window from message %d refused by the template: %s", a, exc)
                continue
            if not gen.startswith(after):
                continue
            own, tokens = _own(parent, keep)
            added = 0
            starts = [s, *(c[0] for c in cuts)]
            offsets = [len(before), *(c[1] for c in cuts), len(after)]
            for k, start in enumerate(starts):
                text = after[offsets[k] : offsets[k + 1]]
                end = starts[k + 1] if k + 1 < len(starts) else n
                if not text and end == start:
                    continue
                ids = tokenize(text) if text else []
                tokens.extend(ids)
                added += len(ids)
                own.append(_Piece(start, end, text, len(tokens)))
            chain = TokenChain(own, tokens, len(own), own[-1], parent.config)
            tail = tokenize(gen[len(after) :]) if generation and len(gen) > len(after) else []
            return Prompt(chain, tail, added + len(tail), full=False)
        return None

    def _cuts(
        self,
        render: Render,
        window: list[Message],
        messages: Sequence[Message],
        s: int,
        n: int,
        before: str,
        after: str,
    ) -> list[tuple[int, int]]:
        """(message index, text offset) where new user messages start, when the template agrees,
        so the next turn can start its window there (templates that check role alternation want
        windows that start with a user message)."""
        cuts: list[tuple[int, int]] = []
        for u in range(s + 1, n):
            if messages[u].get("role") != "user":
                continue
            text = render([*window, *(messages[i] for i in range(s, u))], False)
            if (
                text.startswith(before)
                and after.startswith(text)
                and len(text) > (cuts[-1][1] if cuts else len(before))
            ):
                cuts.append((u, len(text)))
        return cuts

    # -- from scratch --------------------------------------------------------------------------

    def _full(
        self,
        messages: Sequence[Message],
        render: Render,
        tokenize: Tokenize,
        config: object,
        generation: bool,
    ) -> Prompt:
        """Render and tokenize the whole conversation; cut it once before the last user message
        so the next turn's window can start there."""
        self.full_renders += 1
        every = list(messages)
        body = render(every, False)
        gen = render(every, True) if generation else body
        if not gen.startswith(body):  # the template rewrites the end: no reusable body
            whole = tokenize(gen)
            return Prompt(TokenChain([], [], 0, None, config), whole, len(whole), full=True)
        last_user = max((i for i, m in enumerate(every) if m.get("role") == "user"), default=0)
        cut = 0
        if last_user > _lead(every):
            try:
                head = render(every[:last_user], False)
                cut = len(head) if body.startswith(head) else 0
            except Exception:  # the template refused the shorter conversation
                cut = 0
        parts = (
            [(0, last_user, body[:cut]), (last_user, len(every), body[cut:])]
            if cut
            else [(0, len(every), body)]
        )
        pieces: list[_Piece] = []
        tokens: list[int] = []
        for start, end, text in parts:
            tokens.extend(tokenize(text) if text else [])
            pieces.append(_Piece(start, end, text, len(tokens)))
        chain = TokenChain(pieces, tokens, len(pieces), pieces[-1], config)
        tail = tokenize(gen[len(body) :]) if len(gen) > len(body) else []
        return Prompt(chain, tail, len(tokens) + len(tail), full=True)


def _lead(messages: Sequence[Message]) -> int:
    """How many leading system messages the conversation has (every window repeats them)."""
    n = 0
    while n < len(messages) and messages[n].get("role") in ("system", "developer"):
        n += 1
    return n


def _own(parent: TokenChain, keep: int) -> tuple[list[_Piece], list[int]]:
    """The parent's first `keep` pieces and their tokens, shared when nobody extended them since."""
    pieces, tokens = parent.pieces, parent.tokens
    last = pieces[keep - 1]
    if keep == parent.n and len(pieces) == keep and pieces[-1] is parent.last and len(tokens) >= last.tok_end:
        del tokens[last.tok_end :]
        return pieces, tokens
    return pieces[:keep], tokens[: last.tok_end]
