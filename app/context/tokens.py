"""Token estimates for budgets: ~4 characters a token, corrected by the backend's usage figures."""

from __future__ import annotations

from app.protocol.tokens import CHARS_PER_TOKEN, estimate_tokens, tokens_for_chars

__all__ = ["CHARS_PER_TOKEN", "TokenEstimator", "estimate_tokens", "tokens_for_chars"]


class TokenEstimator:
    """Learns characters-per-token from real usage (input chars vs the backend's input_tokens)."""

    def __init__(self, chars_per_token: float = CHARS_PER_TOKEN) -> None:
        self.chars_per_token = chars_per_token

    def estimate(self, text: str) -> int:
        """Estimated tokens for `text` at the current ratio."""
        return estimate_tokens(text, self.chars_per_token)

    def observe_usage(self, chars: int, input_tokens: int) -> None:
        """Fold one turn's figures in (a moving average, clamped to sane bounds)."""
        if chars <= 0 or input_tokens <= 0:
            return
        ratio = min(8.0, max(1.5, chars / input_tokens))
        self.chars_per_token = 0.7 * self.chars_per_token + 0.3 * ratio
