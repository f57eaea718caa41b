"""The demo command table the scripted engine dispatches on and the help lists."""

from __future__ import annotations

from app.tools.demo import DEMO_COMMANDS


def test_each_example_runs_its_own_command_only() -> None:
    """An example matches its own pattern and no other; usages are distinct."""
    assert len({c.usage for c in DEMO_COMMANDS}) == len(DEMO_COMMANDS)
    for cmd in DEMO_COMMANDS:
        assert [c.usage for c in DEMO_COMMANDS if c.pattern.match(cmd.example)] == [cmd.usage]
