"""Test results as model input: a real failing suite through the runner, the digest the model gets,
its size against the raw output, rerun_failed, and the stuck stop after three identical failing runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.adapters.proc import detect_test_command, run_tests
from app.protocol.tokens import estimate_tokens
from app.server.app import run_server
from app.server.engines.scripted import Script, ScriptedEngine, Step
from tests.services.test_agent import build

pytestmark = pytest.mark.asyncio

RUN: list[Step] = [{"tool_call": {"name": "run_tests", "arguments": {}}}]
RERUN: list[Step] = [{"tool_call": {"name": "rerun_failed", "arguments": {}}}]


def failing_project(tmp_path: Path) -> Path:
    """A tiny project: a helper module, eight passing tests with chatty output, one real failure."""
    root = tmp_path / "proj"
    (root / "shop").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
    (root / "shop" / "__init__.py").write_text("")
    (root / "shop" / "cart.py").write_text(
        "def total(prices, discount=0.0):\n"
        "    subtotal = sum(prices)\n"
        "    return apply_discount(subtotal, discount)\n\n\n"
        "def apply_discount(amount, discount):\n"
        "    if not 0 <= discount < 1:\n"
        "        raise ValueError(f'discount out of range: {discount}')\n"
        "    return round(amount * (1 - discount) - 0.5, 2)\n"  # the bug: a stray -0.5
    )
    passing = "\n\n".join(
        f"def test_ok_{i}():\n    print('checking case {i}: ' + 'detail ' * 40)\n    assert total([{i}, 1]) >= 0"
        for i in range(8)
    )
    (root / "test_cart.py").write_text(
        "from shop.cart import total\n\n\n"
        "def test_total_with_discount():\n"
        "    prices = [10.0, 20.0, 30.0]\n"
        "    print('prices under test:', prices)\n"
        "    assert total(prices, discount=0.1) == 54.0\n\n\n" + passing + "\n"
    )
    return root


def outputs(agent: Any) -> list[str]:
    return [
        i["output"] for i in agent.sync.session.client.transcript() if i.get("type") == "function_call_output"
    ]


def user_texts(agent: Any) -> list[str]:
    return [
        c["text"]
        for i in agent.sync.session.client.transcript()
        if i.get("type") == "message" and i.get("role") == "user"
        for c in i.get("content", [])
    ]


async def test_the_model_receives_a_digest_of_a_failing_run_smaller_than_the_raw_output(
    tmp_path: Path,
) -> None:
    """run_tests on a real failing suite: the tool output is the digest (counts, id, assertion, the
    project frames' lines), not pytest's terminal output, and it is smaller in tokens."""
    root = failing_project(tmp_path)
    async with run_server(
        ScriptedEngine(rate_tps=0, script=[RUN, [{"text": "I see the stray -0.5."}]])
    ) as srv:
        agent, _, _, ws = await build(root, srv, tmp_path)
        try:
            outcome = await agent.run("run the tests")
            assert outcome.status == "completed", outcome.message
            got = outputs(agent)[0]
            lines = got.splitlines()
            assert lines[0].startswith("FAILED: 1 failed, 8 passed in ")
            assert lines[1] == "FAILED test_cart.py::test_total_with_discount - assert 53.5 == 54.0"
            assert (
                "  test_cart.py:7 in test_total_with_discount: assert total(prices, discount=0.1) == 54.0"
                in lines
            )
            assert "  E assert 53.5 == 54.0" in lines
            assert any(ln.startswith("  E  +  where 53.5 = total(") for ln in lines)
            # Nothing of the raw report: no banners, no captured output, no source context.
            for raw_only in ("=====", "short test summary", "prices under test", "checking case", "subtotal"):
                assert raw_only not in got
            run = agent.last_test_run
            assert run is not None and agent.last_digest is not None and agent.last_digest.text == got
            raw, digest = estimate_tokens(run.output_tail), estimate_tokens(got)
            print(
                f"\ndigest {digest} tokens vs raw pytest output {raw} tokens "
                f"({len(got)} vs {len(run.output_tail)} characters)"
            )
            assert digest < raw
        finally:
            await agent.sync.session.aclose()
            await ws.aclose()


async def test_same_failures_three_runs_in_a_row_stop_the_loop(tmp_path: Path) -> None:
    """run_tests, then rerun_failed (only the failed id) twice: the same failure three times stops the
    loop before a fourth run, and both the user and the model are told why."""
    root = failing_project(tmp_path)
    script: Script = [
        RUN,
        RERUN,
        RERUN,
        RERUN,
        RERUN,
        [{"text": "Stopping: the discount rounding is still wrong."}],
    ]
    async with run_server(ScriptedEngine(rate_tps=0, script=script)) as srv:
        agent, asked, events, ws = await build(root, srv, tmp_path)
        notices: list[tuple[str, str]] = []
        agent._notice = lambda kind, text: notices.append((kind, text))
        try:
            outcome = await agent.run("fix the cart until the tests pass")
            assert outcome.status == "stuck"
            assert outcome.message.startswith(
                "The same 1 failure came back three times in a row (test_cart.py::test_total_with_discount); "
                "stopping — "
            )
            assert notices == [("warning", outcome.message)]
            collected = [e["count"] for e in events if e.get("kind") == "collected"]
            assert collected == [9, 1, 1]  # the suite once, then only the failed id; no fourth run
            assert [k for k, _ in asked] == ["command"] * 3
            # The same hardened path as run_tests: the ids are data after "--", never options.
            assert asked[1][1]["command"].endswith(" -- test_cart.py::test_total_with_discount")
            outs = outputs(agent)
            assert len(outs) == 3 and outs[1].startswith(
                "rerun of the 1 test that failed last time\nFAILED: 1 failed"
            )
            assert outcome.message in user_texts(agent)[-1]  # the model hears it too, on a no-tools turn
        finally:
            await agent.sync.session.aclose()
            await ws.aclose()


async def test_a_changed_failure_is_progress_not_stuck(tmp_path: Path) -> None:
    """The same id failing with a different message (the model changed something) resets the count."""
    root = failing_project(tmp_path)
    cart = root / "shop" / "cart.py"
    script: Script = [RUN, RERUN, RERUN, RERUN, [{"text": "done"}]]
    async with run_server(ScriptedEngine(rate_tps=0, script=script)) as srv:
        agent, _, events, ws = await build(root, srv, tmp_path, approval_policy="auto_all")

        def edit_between_runs(ev: dict[str, Any]) -> None:  # stands in for the model's patches
            events.append(ev)
            if ev.get("kind") == "run_finished" and sum(e.get("kind") == "run_finished" for e in events) == 2:
                cart.write_text(cart.read_text().replace("- 0.5", "- 0.25"))

        agent._on_test_event = edit_between_runs
        try:
            outcome = await agent.run("fix it")
            assert outcome.status == "completed", outcome.message
            assert sum(e.get("kind") == "run_finished" for e in events) == 4
            assert "53.75 == 54.0" in outputs(agent)[-1]
        finally:
            await agent.sync.session.aclose()
            await ws.aclose()


async def test_a_run_the_user_started_rides_on_the_next_request_and_can_be_rerun(tmp_path: Path) -> None:
    """The app's own run (Tests panel): its digest goes with the next request; rerun_failed reruns it."""
    root = failing_project(tmp_path)
    async with run_server(ScriptedEngine(rate_tps=0, script=[RERUN, [{"text": "still failing"}]])) as srv:
        agent, _, events, ws = await build(root, srv, tmp_path, approval_policy="auto_all")
        try:
            run = await run_tests(detect_test_command(root))
            digest = agent.note_test_run(run)
            assert agent.last_test_run is run and "test_total_with_discount" in digest.text
            assert (await agent.run("why does it fail?")).status == "completed"
            texts = user_texts(agent)
            assert texts[-1] == "why does it fail?"
            assert texts[-2].startswith("[slipstream test run] The user ran the tests (")
            assert texts[-2].endswith(digest.text)
            assert [e["count"] for e in events if e.get("kind") == "collected"] == [1]
            assert "rerun of the 1 test" in outputs(agent)[0]
        finally:
            await agent.sync.session.aclose()
            await ws.aclose()


async def test_rerun_failed_without_a_failing_run_says_so(tmp_path: Path) -> None:
    """Nothing to rerun: the model reads why; nothing runs."""
    root = failing_project(tmp_path)
    async with run_server(ScriptedEngine(rate_tps=0, script=[RERUN, [{"text": "ok"}]])) as srv:
        agent, asked, events, ws = await build(root, srv, tmp_path)
        try:
            assert (await agent.run("rerun")).status == "completed"
            assert outputs(agent)[0] == "error: no test run yet: call run_tests first"
            assert asked == [] and events == []
        finally:
            await agent.sync.session.aclose()
            await ws.aclose()


async def test_rerun_refuses_an_id_whose_file_leads_outside_the_project(tmp_path: Path) -> None:
    """A failing id whose file is a link out of the project is confined like any tool path: refused
    in words, nothing is asked or run."""
    from tests.tools.test_digest import ASSERT, failing_run

    root = failing_project(tmp_path)
    outside = tmp_path / "elsewhere.py"
    outside.write_text("def test_x():\n    assert False\n")
    (root / "test_link.py").symlink_to(outside)
    async with run_server(ScriptedEngine(rate_tps=0, script=[RERUN, [{"text": "ok"}]])) as srv:
        agent, asked, events, ws = await build(root, srv, tmp_path)
        try:
            agent.last_test_run = failing_run(("test_link.py::test_x", ASSERT), runner="pytest")
            assert (await agent.run("rerun")).status == "completed"
            assert (
                outputs(agent)[0]
                == "error: test_link.py is a symlink that leads outside the project; refused"
            )
            assert asked == [] and events == []
        finally:
            await agent.sync.session.aclose()
            await ws.aclose()


async def test_repo_sized_failing_example(tmp_path: Path) -> None:
    """This repository's own tools and context suites (about 150 tests) with two injected bugs, run
    for real: every failing id is in the digest, at the agent's default budget, far under the raw output."""
    import shutil

    import app
    from app.services.agent import AgentConfig
    from app.tools.digest import build_digest

    repo = Path(app.__file__).resolve().parents[1]
    root = tmp_path / "repo"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(repo / "app", root / "app", ignore=skip)
    for sub in ("tools", "context"):
        shutil.copytree(repo / "tests" / sub, root / "tests" / sub, ignore=skip)
    (root / "tests" / "__init__.py").write_text("")
    (root / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
    for rel, old, new in (
        ("app/tools/paths.py", 'return "/".join(parts)', 'return "./".join(parts)'),
        ("app/tools/testrun.py", 'return ", ".join(parts) if parts', 'return "; ".join(parts) if parts'),
    ):
        src = (root / rel).read_text()
        assert old in src, f"the injected bug no longer applies to {rel}"
        (root / rel).write_text(src.replace(old, new))
    run = await run_tests(detect_test_command(root))
    assert run.finished and run.failures() and run.counts["passed"] > 100
    budget = AgentConfig().test_digest_tokens
    d = build_digest(run, estimate=estimate_tokens, budget=budget, root=root.as_posix())
    assert all(c.nodeid in d.text for c in run.failures())
    raw, summary = estimate_tokens(run.output_tail), estimate_tokens(run.summary_for_model())
    print(
        f"\nrepo-sized example: {run.counts_line()}; digest {d.tokens} tokens (budget {budget}, "
        f"{d.trimmed} tracebacks trimmed) vs raw pytest output {raw} tokens; the old summary was {summary}"
    )
    assert d.tokens <= budget and d.tokens < raw
