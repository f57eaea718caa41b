"""The commands the scripted demo engine answers in its own way, as one table.

The engine (app.server.engines.scripted) dispatches on these patterns and the app's help
(app.ui.help) lists them, so the two cannot drift. It lives in a core because both sides may import
a core, and neither may import the other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["DEMO_COMMANDS", "LONG_MAX_TOKENS", "DemoCommand"]

LONG_MAX_TOKENS = 2_000_000


@dataclass(frozen=True)
class DemoCommand:
    """One command: how it is typed, what it does, an example that runs it, and its pattern."""

    usage: str
    summary: str
    example: str
    pattern: re.Pattern[str]


DEMO_COMMANDS: tuple[DemoCommand, ...] = (
    DemoCommand(
        "/long N",
        f"Stream about N tokens of markdown with headings, lists and code blocks "
        f"(a speed test; at most {LONG_MAX_TOKENS:,}).",
        "/long 5000",
        re.compile(r"^/long\s+(\d+)\s*$"),
    ),
    DemoCommand(
        "/call TOOL {json}",
        "Call an offered tool by name with these JSON arguments; without them, with the smallest valid ones.",
        '/call read_file {"path": "README.md"}',
        re.compile(r"^/call\s+([A-Za-z0-9_.\-]+)\s*(.*)$", re.DOTALL),
    ),
)
