"""Connection age limit: 50 rotations in one session, each at a turn boundary, nothing lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.harness import expected_transcript, run_chaos
from tests.reliability.test_chaos import assert_nothing_lost

pytestmark = pytest.mark.asyncio


async def test_fifty_rotations_at_turn_boundaries(tmp_path: Path) -> None:
    """A 0.25 s server age limit: 50 rotations, no turn resent, no engine turn run twice.

    Client and server read one step clock that moves only between requests (no real-time race: a
    stall of the machine cannot push a turn past the server's limit)."""
    report = await run_chaos(
        tmp_path / "p", seed=5, cuts=0, rotations=50, max_age_s=0.25, timeout_s=120, virtual_clock=True
    )
    assert report.rotations >= 50
    assert report.connections >= report.rotations + 1
    assert report.retries == 0  # no turn was caught by a closing connection and resent
    assert report.server_turns == report.turns_ok  # the engine ran every turn exactly once
    assert_nothing_lost(report)
    names = [f"request {i}" for i in range(report.requests)] + ["final request"]
    assert report.transcript == expected_transcript(names)
