"""Chaos: connection cuts and server restarts under a working agent and an edit script lose nothing.

What "the final transcript equals that of an uncut run" means here (see harness.normalise): the
client's transcripts, reduced to user texts, assistant texts, function calls (name + arguments) and
function call outputs, are equal item for item. Ids and call_ids are left out (every response gets
fresh ones, and a replayed response gets new ones), and so are the project-context messages (the
snapshot and the diffs): how many there are and what they say depends on when a chain was rebuilt
and how edits were coalesced, so context delivery is checked on the server side instead: every
change appears exactly once in the chain of the final turn, and never twice in any chain.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.harness import ChaosReport, expected_transcript, run_chaos

pytestmark = pytest.mark.asyncio

SEED = 20260923


def assert_nothing_lost(report: ChaosReport) -> None:
    assert report.turns_failed == []
    assert report.turns_ok == 2 * (report.requests + 1)  # a read_file call and an answer per request
    assert report.duplicated_changes == []
    assert report.missing_changes == []
    assert report.unacked == []
    assert report.paired
    assert report.lost == 0


async def test_hundred_cuts_lose_nothing_and_match_an_uncut_run(tmp_path: Path) -> None:
    """100 seeded cuts (upgrades, warm-ups, mid-response): every turn and change lands once."""
    cut = await run_chaos(tmp_path / "cut", seed=SEED, cuts=100)
    assert cut.cuts == 100
    assert_nothing_lost(cut)
    assert cut.cut_labels.get("warm-up", 0) >= 1 and cut.cut_labels.get("turn", 0) >= 1
    assert cut.cut_phases.get("upgrade", 0) >= 1 and cut.cut_phases.get("websocket", 0) >= 1
    # every cut of an open socket cost a connection, and the session kept coming back (cuts during the
    # upgrade cost none: how many land there depends on timing, so a fixed count of connections is flaky)
    assert cut.connections >= cut.cut_phases["websocket"] + 1
    uncut = await run_chaos(tmp_path / "uncut", seed=SEED, cuts=0, requests=cut.requests)
    assert uncut.cuts == 0 and uncut.connections == 1
    assert_nothing_lost(uncut)
    assert cut.transcript == uncut.transcript
    names = [f"request {i}" for i in range(cut.requests)] + ["final request"]
    assert cut.transcript == expected_transcript(names)


async def test_server_killed_and_restarted_mid_response_loses_nothing(tmp_path: Path) -> None:
    """The server dies mid-response five times (sockets reset) and comes back: nothing is lost."""
    report = await run_chaos(tmp_path / "p", seed=SEED, cuts=0, restarts=5)
    assert report.restarts == 5 and report.connections >= 6
    assert_nothing_lost(report)
    uncut = await run_chaos(tmp_path / "uncut", seed=SEED, cuts=0, requests=report.requests)
    assert report.transcript == uncut.transcript
