"""The one token estimate: about four characters a token.

Used where no tokenizer is at hand: the server's usage figures for engines without one, compaction
sizes, and the context budgets (app.context.tokens adds a ratio learned from real usage).
"""

from __future__ import annotations

import math

__all__ = ["CHARS_PER_TOKEN", "estimate_tokens", "tokens_for_chars"]

CHARS_PER_TOKEN = 4.0


def tokens_for_chars(chars: int, chars_per_token: float = CHARS_PER_TOKEN) -> int:
    """Estimated tokens for `chars` characters (rounded up: a partial token is a token)."""
    return math.ceil(chars / chars_per_token) if chars > 0 else 0


def estimate_tokens(text: str, chars_per_token: float = CHARS_PER_TOKEN) -> int:
    """Rough token count of `text`; good enough to keep a message under a budget, never exact."""
    return tokens_for_chars(len(text), chars_per_token)
