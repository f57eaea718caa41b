"""Hold back lines that look like credentials before they leave the machine.

Applied to the *new* text of each outgoing update only (added diff lines, created files), never to
the whole history again. A flagged line is replaced by a visible placeholder so the model knows
something was withheld, and a `Finding` goes to the UI as a notice. Whole private-key blocks are
withheld from BEGIN to END.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass

__all__ = ["PLACEHOLDER", "Finding", "scan", "scan_lines"]

PLACEHOLDER = "[slipstream: line withheld, looks like {kind}]"

_TOKEN_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("an AWS access key", re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b")),
    ("an AWS secret key", re.compile(r"(?i)aws_?secret_?access_?key\s*[:=]\s*['\"]?[A-Za-z0-9/+=]{40}")),
    ("a GitHub token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})")),
    ("an OpenAI/Anthropic key", re.compile(r"\bsk-(?:proj-|svcacct-|admin-|ant-)?[A-Za-z0-9_\-]{20,}")),
    ("an xAI key", re.compile(r"\bxai-[A-Za-z0-9]{20,}")),
    ("a Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9\-]{10,}")),
    ("a Slack webhook", re.compile(r"https://hooks\.slack\.com/services/[A-Za-z0-9/]{20,}")),
    ("a Google API key", re.compile(r"\bAIza[0-9A-Za-z_\-]{35}")),
    ("a Stripe key", re.compile(r"\b[rs]k_live_[0-9a-zA-Z]{20,}")),
)
_PRIVATE_BEGIN = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")
_PRIVATE_END = re.compile(r"-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")
_ASSIGNMENT = re.compile(
    r"(?i)(?:api[_-]?key|secret|token|passw(?:or)?d|access[_-]?key|auth[_-]?key|client[_-]?secret)"
    r"[A-Za-z0-9_\-]*['\"]?\s*[:=]{1,2}\s*['\"]([^'\"\s]{16,})['\"]"
)
_PLACEHOLDER_WORDS = ("example", "changeme", "your", "xxxx", "dummy", "placeholder", "<", "${", "{{")


@dataclass(frozen=True, slots=True)
class Finding:
    """One withheld line: 0-based line index in the scanned text, what it looked like."""

    line: int
    kind: str


def _entropy(s: str) -> float:
    counts = Counter(s)
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def _line_kind(line: str) -> str | None:
    for kind, pat in _TOKEN_PATTERNS:
        if pat.search(line):
            return kind
    m = _ASSIGNMENT.search(line)
    if m:
        value = m.group(1)
        low = value.lower()
        if _entropy(value) >= 3.5 and not any(w in low for w in _PLACEHOLDER_WORDS):
            return "a high-entropy secret assignment"
    return None


def scan_lines(lines: list[str]) -> tuple[list[str], list[Finding]]:
    """Scan lines (with or without line endings); flagged ones become placeholders, ending kept."""
    out: list[str] = []
    findings: list[Finding] = []
    in_key = False
    for i, line in enumerate(lines):
        body = line.rstrip("\r\n")
        ending = line[len(body) :]
        kind: str | None
        if in_key:
            kind = "a private key"
            if _PRIVATE_END.search(body):
                in_key = False
        elif _PRIVATE_BEGIN.search(body):
            kind = "a private key"
            in_key = not _PRIVATE_END.search(body)
        else:
            kind = _line_kind(body)
        if kind is None:
            out.append(line)
        else:
            findings.append(Finding(i, kind))
            indent = body[: len(body) - len(body.lstrip())]
            out.append(indent + PLACEHOLDER.format(kind=kind) + ending)
    return out, findings


def scan(new_text: str) -> tuple[str, list[Finding]]:
    """Return the text with credential-looking lines withheld, plus what was found."""
    if not new_text:
        return new_text, []
    lines, findings = scan_lines(new_text.splitlines(keepends=True))
    return ("".join(lines) if findings else new_text), findings
