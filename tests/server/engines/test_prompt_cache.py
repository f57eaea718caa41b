"""PromptCache with plain functions for the template and the tokenizer: per-turn work, fallbacks, forks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from app.server.engines.prompt_cache import Prompt, PromptCache, TokenChain, WithSystem

Message = Mapping[str, Any]


def chatml(messages: Sequence[Message], generation: bool) -> str:
    """A ChatML-like template: each message renders from itself alone."""
    text = "".join(f"<|{m['role']}|>{m['content']}<|end|>\n" for m in messages)
    return text + ("<|assistant|>" if generation else "")


def alternating(messages: Sequence[Message], generation: bool) -> str:
    """Like Llama-2/Mistral templates: after the system messages, roles must alternate from user."""
    body = [m for m in messages if m["role"] != "system"]
    for i, m in enumerate(body):
        if m["role"] != ("user" if i % 2 == 0 else "assistant"):
            raise ValueError("Conversation roles must alternate user/assistant/user/assistant/...")
    return chatml(messages, generation)


def numbered(messages: Sequence[Message], generation: bool) -> str:
    """A template whose text depends on each message's absolute position (no window can work)."""
    text = "".join(f"<{i}|{m['role']}>{m['content']}\n" for i, m in enumerate(messages))
    return text + ("<gen>" if generation else "")


@dataclass
class Tokenizer:
    """One token per character; remembers how many characters it was given."""

    chars: list[int] = field(default_factory=list)

    def __call__(self, text: str) -> list[int]:
        self.chars.append(len(text))
        return [ord(c) for c in text]


def msg(role: str, content: str) -> dict[str, Any]:
    return {"role": role, "content": content}


def whole(render: Any, messages: Sequence[Message]) -> list[int]:
    return [ord(c) for c in render(list(messages), True)]


def converse(
    cache: PromptCache, render: Any, tok: Tokenizer, turns: int
) -> list[tuple[Prompt, list[Message]]]:
    """A chat where each turn adds the previous answer and a new question; every prompt is checked."""
    messages: list[Message] = [msg("system", "be brief")]
    parent: TokenChain | None = None
    out = []
    for i in range(turns):
        before = len(messages)
        if i:
            messages.append(msg("assistant", f"answer {i - 1} " * 3))
        messages.append(msg("user", f"question {i} " * 5))
        prompt = cache.build(
            messages,
            render,
            tok,
            parent=parent,
            changed_from=before if parent else 0,
            config="c",
            generation=True,
        )
        assert prompt.tokens() == whole(render, messages), f"turn {i}"
        parent = prompt.chain
        out.append((prompt, list(messages)))
    return out


def test_each_turn_renders_and_tokenizes_only_its_new_messages() -> None:
    """Prompts equal a whole render at every turn; after the first, the work is one turn's text."""
    cache, tok = PromptCache(), Tokenizer()
    prompts = converse(cache, chatml, tok, 40)
    assert cache.full_renders == 1
    turn_text = len(chatml([msg("assistant", "answer 0 " * 3), msg("user", "question 0 " * 5)], False))
    for prompt, _ in prompts[1:]:
        assert not prompt.full
        assert prompt.new_tokens <= turn_text + len("<|assistant|>") + 10  # not the history
    assert len(prompts[-1][0]) > 20 * turn_text  # while the history grew


def test_templates_that_check_role_alternation_still_render_incrementally() -> None:
    """Windows start at a user message (pieces are cut there), so a strict template accepts them."""
    cache, tok = PromptCache(), Tokenizer()
    converse(cache, alternating, tok, 12)
    assert cache.full_renders == 1


def test_a_position_dependent_template_falls_back_to_rendering_from_the_start() -> None:
    """No window that skips messages reproduces the text already held: windows from the first
    message or whole renders are used instead, and every prompt is still right (`converse` checks)."""
    cache, tok = PromptCache(), Tokenizer()
    prompts = converse(cache, numbered, tok, 8)
    assert cache.full_renders >= 3 and sum(p.full for p, _ in prompts) == cache.full_renders


def test_forks_changed_messages_and_config_changes() -> None:
    """Two continuations of one chain stay independent; a replaced last message and new tools
    re-render what they touch."""
    cache, tok = PromptCache(), Tokenizer()
    (_, _), (p1, m1) = converse(cache, chatml, tok, 2)
    left = [*m1, msg("assistant", "left"), msg("user", "go left")]
    right = [*m1, msg("assistant", "right"), msg("user", "go right")]
    a = cache.build(left, chatml, tok, parent=p1.chain, changed_from=len(m1), config="c", generation=True)
    b = cache.build(right, chatml, tok, parent=p1.chain, changed_from=len(m1), config="c", generation=True)
    a2_msgs = [*left, msg("assistant", "ok"), msg("user", "more")]
    a2 = cache.build(
        a2_msgs, chatml, tok, parent=a.chain, changed_from=len(left), config="c", generation=True
    )
    assert a.tokens() == whole(chatml, left) and b.tokens() == whole(chatml, right)
    assert a2.tokens() == whole(chatml, a2_msgs)
    assert cache.build(
        right, chatml, tok, parent=b.chain, changed_from=len(right), config="c", generation=True
    ).tokens() == whole(chatml, right)
    # the bridge's renderer replaces the last assistant message when a tool call merges into it
    merged = [*left[:-1], msg("assistant", "left + call"), msg("tool", "result")]
    c = cache.build(
        merged, chatml, tok, parent=a.chain, changed_from=len(left) - 1, config="c", generation=True
    )
    assert c.tokens() == whole(chatml, merged) and not c.full
    full_before = cache.full_renders
    d = cache.build(
        left, chatml, tok, parent=a.chain, changed_from=len(left), config="other tools", generation=True
    )
    assert d.full and cache.full_renders == full_before + 1 and d.tokens() == whole(chatml, left)


def test_a_prefill_prompt_has_no_generation_prompt_and_the_next_turn_continues_it() -> None:
    """generation=False: the chain's tokens only; the turn after it adds just its question."""
    cache, tok = PromptCache(), Tokenizer()
    context = [msg("system", "s"), msg("user", "diff " * 400)]
    warm = cache.build(context, chatml, tok, parent=None, changed_from=0, config="c", generation=False)
    assert warm.generation == [] and warm.tokens() == [ord(c) for c in chatml(context, False)]
    asked = [*context, msg("user", "why?")]
    tok.chars.clear()
    turn = cache.build(
        asked, chatml, tok, parent=warm.chain, changed_from=len(context), config="c", generation=True
    )
    assert turn.tokens() == whole(chatml, asked)
    assert sum(tok.chars) < 60 and turn.n_body == len(warm) + len(chatml([asked[-1]], False))


def test_with_system_is_a_read_only_view() -> None:
    """The instructions go first without copying the conversation."""
    convo = [msg("user", "a"), msg("assistant", "b")]
    view = WithSystem(msg("system", "s"), convo)
    assert len(view) == 3 and view[0]["role"] == "system" and view[-1] is convo[-1]
    assert list(view) == [msg("system", "s"), *convo] and view[1:] == convo
    assert list(WithSystem(None, convo)) == convo
    with pytest.raises(IndexError):
        view[3]
