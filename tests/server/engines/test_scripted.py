"""The scripted engine, run directly as an async iterator (no server)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from app.server.engines.base import (
    EngineOutput,
    ItemDone,
    ReasoningDelta,
    TextDelta,
    ToolCallArgsDelta,
    ToolCallStart,
    Turn,
    Usage,
)
from app.server.engines.scripted import (
    Pacer,
    ScriptedEngine,
    ScriptError,
    load_script,
    minimal_value,
    model_turns_in,
    scan_files,
)

DIFF = """diff --git a/app/x.py b/app/x.py
--- a/app/x.py
+++ b/app/x.py
@@ -1,3 +1,4 @@
 import os
-old = 1
+new = 2
+more = 3
diff --git a/README.md b/README.md
--- a/README.md
+++ b/README.md
@@ -1 +1 @@
-# Old
+# New
"""

READ_FILE = {
    "type": "function",
    "name": "read_file",
    "parameters": {
        "type": "object",
        "properties": {"path": {"type": "string"}, "limit": {"type": "integer", "minimum": 1}},
        "required": ["path"],
    },
}


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def run(turn: Turn, engine: ScriptedEngine | None = None) -> list[EngineOutput]:
    engine = engine or ScriptedEngine(rate_tps=0)

    async def collect() -> list[EngineOutput]:
        conn = engine.connect()
        try:
            return [out async for out in conn.run(turn)]
        finally:
            await conn.aclose()

    return asyncio.run(collect())


def text_of(outputs: list[EngineOutput]) -> str:
    return "".join(o.text for o in outputs if isinstance(o, TextDelta))


def turn(*new: Any, history: tuple[Any, ...] = (), **kw: Any) -> Turn:
    return Turn(response_id="resp_1", model="scripted", history=history, new_input=new, **kw)


def test_answer_counts_files_changes_and_restates_question() -> None:
    """Counts files/messages, lists +/- stats per changed file, restates the question, has a code block."""
    outputs = run(turn(user(DIFF), user("Why does x change?")))
    text = text_of(outputs)
    assert "2 file(s) in 2 message(s)" in text
    assert "`app/x.py` (+2 -1)" in text
    assert "`README.md` (+1 -1)" in text
    assert 'You asked: "Why does x change?"' in text
    assert "```python\n" in text and text.rstrip().endswith("```")
    assert isinstance(outputs[-1], Usage) and outputs[-1].output_tokens == len(text_of(outputs)) // 4 + (
        1 if len(text) % 4 else 0
    )


def test_only_new_input_counts_as_changed() -> None:
    """Diffs in history count as files given, not as changed since the last turn."""
    history = (user(DIFF), {"type": "message", "role": "assistant", "content": "ok"})
    text = text_of(run(turn(user("and now?"), history=history)))
    assert "2 file(s) in 3 message(s)" in text
    assert "No files changed since the last turn." in text


def test_scan_files_tolerates_fenced_blocks_and_new_files() -> None:
    """Fenced file blocks, tags and /dev/null headers are recognised; file bodies are not diffs."""
    text = (
        "```python app/a.py\n-not a removal\n+not an addition\n```\n"
        '<file path="docs/b.md">\n'
        "--- /dev/null\n+++ b/new.txt\n@@ -0,0 +1,2 @@\n+one\n+two\n"
        "```diff\n--- a/c.py\n+++ b/c.py\n-x\n+y\n```\n"
        "```python\nprint('no path here')\n```\n"
        "```Makefile\nall:\n\t-true\n```\n"  # a file without an extension, as snapshots label it
        "```make\n+not a path\n```\n"
    )
    files, stats = scan_files(text)
    assert files == {"app/a.py", "docs/b.md", "new.txt", "c.py", "Makefile"}
    assert (stats["new.txt"].added, stats["new.txt"].removed) == (2, 0)
    assert (stats["c.py"].added, stats["c.py"].removed) == (1, 1)
    assert "app/a.py" not in stats


def test_named_tool_choice_calls_with_schema_valid_arguments() -> None:
    """A named tool_choice calls that function; the arguments satisfy its schema."""
    outputs = run(turn(user("go"), tools=(READ_FILE,), tool_choice={"type": "function", "name": "read_file"}))
    start = [o for o in outputs if isinstance(o, ToolCallStart)]
    assert len(start) == 1 and start[0].name == "read_file" and start[0].call_id.startswith("call_")
    args = json.loads("".join(o.delta for o in outputs if isinstance(o, ToolCallArgsDelta)))
    assert args == {"path": "README.md"}
    assert not any(isinstance(o, TextDelta) for o in outputs)


def test_required_and_none_tool_choice() -> None:
    """'required' calls the first tool; 'none' never calls even with a /call command."""
    forced = run(turn(user("hi"), tools=(READ_FILE,), tool_choice="required"))
    assert [o.name for o in forced if isinstance(o, ToolCallStart)] == ["read_file"]
    never = run(turn(user('/call read_file {"path": "a"}'), tools=(READ_FILE,), tool_choice="none"))
    assert not any(isinstance(o, ToolCallStart) for o in never)


def test_auto_call_command_uses_given_arguments() -> None:
    """`/call NAME {json}` under auto calls NAME with exactly those arguments."""
    outputs = run(turn(user('/call read_file {"path": "src/m.py"}'), tools=(READ_FILE,)))
    args = "".join(o.delta for o in outputs if isinstance(o, ToolCallArgsDelta))
    assert json.loads(args) == {"path": "src/m.py"}


def test_auto_call_unknown_tool_answers_in_text() -> None:
    """Calling a tool that was not offered yields a clear text answer, not a call."""
    outputs = run(turn(user("/call nope {}"), tools=(READ_FILE,)))
    assert "no such tool" in text_of(outputs)
    assert not any(isinstance(o, ToolCallStart) for o in outputs)


def test_function_call_output_is_summarised() -> None:
    """After a tool result arrives, the answer is text that names the tool and its output."""
    history = (
        user("read it"),
        {"type": "function_call", "call_id": "call_9", "name": "read_file", "arguments": "{}"},
    )
    outputs = run(
        turn(
            {"type": "function_call_output", "call_id": "call_9", "output": "# Title\nline two"},
            history=history,
            tools=(READ_FILE,),
        )
    )
    text = text_of(outputs)
    assert "`read_file` returned 16 characters in 2 lines" in text and "# Title" in text


def test_long_streams_about_n_tokens_of_markdown() -> None:
    """`/long N` yields roughly N tokens with headings and closed code fences."""
    outputs = run(turn(user("/long 2000")))
    text = text_of(outputs)
    assert 2000 * 4 <= len(text) < 2000 * 4 + 400
    assert "## Section" in text and text.count("```") % 2 == 0 and "```python" in text
    assert sum(isinstance(o, TextDelta) for o in outputs) >= 2000


def test_script_turns_follow_the_chain(tmp_path: Any) -> None:
    """Script turn k is chosen by the number of model turns already in the history."""
    path = tmp_path / "s.json"
    path.write_text(
        json.dumps(
            [
                [{"reasoning": "think"}, {"tool_call": {"name": "read_file", "arguments": {"path": "a"}}}],
                [{"text": "done"}],
            ]
        )
    )
    engine = ScriptedEngine(rate_tps=0, script=load_script(path))
    first = run(turn(user("x")), engine)
    kinds = [type(o).__name__ for o in first if not isinstance(o, Usage)]
    assert kinds[0] == "ReasoningDelta" and "ItemDone" in kinds and "ToolCallStart" in kinds
    assert "".join(o.text for o in first if isinstance(o, ReasoningDelta)) == "think"
    history = (
        user("x"),
        {"type": "reasoning", "summary": []},
        {"type": "function_call", "call_id": "c", "name": "read_file", "arguments": "{}"},
    )
    second = run(
        turn({"type": "function_call_output", "call_id": "c", "output": "ok"}, history=history), engine
    )
    assert text_of(second) == "done"
    assert isinstance([o for o in second if not isinstance(o, Usage)][-1], ItemDone)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"a": 1}, "list of turns"),
        ([{"text": "x"}], "turn 0: must be a list"),
        ([[{"text": 1}]], "text must be a string"),
        ([[{"sing": "x"}]], "unknown step kind"),
        ([[{"tool_call": {"arguments": {}}}]], "non-empty string 'name'"),
    ],
)
def test_bad_scripts_are_refused(tmp_path: Any, data: Any, message: str) -> None:
    """A malformed script raises ScriptError naming the problem."""
    path = tmp_path / "s.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ScriptError, match=message):
        load_script(path)


def test_script_file_not_json(tmp_path: Any) -> None:
    """A non-JSON script file is refused clearly."""
    path = tmp_path / "s.json"
    path.write_text("{nope")
    with pytest.raises(ScriptError, match="not valid JSON"):
        load_script(path)


def test_minimal_value_covers_schema_features() -> None:
    """Required props only, enums, defaults, bounds, arrays, refs, anyOf, nullable types."""
    schema = {
        "type": "object",
        "properties": {
            "mode": {"enum": ["fast", "slow"]},
            "n": {"type": "integer", "minimum": 3},
            "x": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            "flag": {"type": "boolean", "default": True},
            "tags": {"type": "array", "items": {"type": "string", "minLength": 10}, "minItems": 1},
            "ref": {"$ref": "#/$defs/thing"},
            "either": {"anyOf": [{"type": "null"}, {"type": "integer"}]},
            "opt": {"type": ["null", "string"], "maxLength": 3},
            "skipped": {"type": "string"},
        },
        "required": ["mode", "n", "x", "flag", "tags", "ref", "either", "opt"],
        "$defs": {"thing": {"type": "object", "properties": {"k": {"const": 7}}, "required": ["k"]}},
    }
    value = minimal_value(schema)
    assert value == {
        "mode": "fast",
        "n": 3,
        "x": 0.5,
        "flag": True,
        "tags": ["examplexxx"],
        "ref": {"k": 7},
        "either": 0,
        "opt": "exa",
    }


def test_model_turns_counts_runs_of_output() -> None:
    """Consecutive output items are one model turn; inputs separate turns."""
    out = {"type": "message", "role": "assistant", "content": "a"}
    call = {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}
    result = {"type": "function_call_output", "call_id": "c", "output": ""}
    assert model_turns_in([user("a"), out, call, result, out, user("b")]) == 2
    assert model_turns_in([]) == 0


def test_pacer_schedule_has_bursts_then_base_rate() -> None:
    """Tokens in the burst window come at burst speed, later ones at the base rate."""
    pacer = Pacer(rate_tps=1000, burst_tps=4000)
    assert pacer.due(400) == pytest.approx(0.1)
    assert pacer.due(500) == pytest.approx(0.2)
    assert pacer.due(1300) == pytest.approx(1.0)
    assert pacer.due(1300 + 200) == pytest.approx(1.05)


def test_pacer_sleeps_in_batches() -> None:
    """At a finite rate the pacer sleeps once per batch, far fewer times than tokens, keeping the rate."""
    now = [0.0]
    sleeps: list[float] = []

    async def fake_sleep(delay: float) -> None:
        sleeps.append(delay)
        now[0] += delay

    pacer = Pacer(1000, 4000, clock=lambda: now[0], sleep=fake_sleep)

    async def go() -> None:
        for _ in range(2600):
            await pacer.tick()

    asyncio.run(go())
    assert all(d >= 0.008 for d in sleeps)
    assert len(sleeps) < 2600 / 4
    assert 1.9 <= now[0] <= 2.05  # 1,300 tokens per one-second cycle


def test_unpaced_stream_yields_to_the_loop() -> None:
    """rate 0 never sleeps for real but yields every few dozen tokens."""
    sleeps: list[float] = []

    async def fake_sleep(delay: float) -> None:
        sleeps.append(delay)

    pacer = Pacer(0, 0, sleep=fake_sleep)

    async def go() -> None:
        for _ in range(640):
            await pacer.tick()

    asyncio.run(go())
    assert sleeps == [0] * 10


def test_negative_rate_refused() -> None:
    """A negative rate is a clear error."""
    with pytest.raises(ValueError, match="rate_tps"):
        ScriptedEngine(rate_tps=-1)


WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def calls(outputs: list[EngineOutput]) -> list[str]:
    return [o.name for o in outputs if isinstance(o, ToolCallStart)]


def test_auto_calls_the_tool_the_prompt_asks_for() -> None:
    """Under tool_choice auto, a prompt naming a tool or its description's subject calls that tool."""
    tools = (READ_FILE, WEATHER)
    assert calls(run(turn(user("What's the weather in Paris?"), tools=tools))) == ["get_weather"]
    assert calls(run(turn(user("Please get weather for Oslo"), tools=tools))) == ["get_weather"]
    assert calls(run(turn(user("read_file README.md please"), tools=tools))) == ["read_file"]
    assert calls(run(turn(user("Tell me a joke"), tools=tools))) == []  # nothing fits: text


def test_auto_answers_the_tool_result_in_text() -> None:
    """Once the tool's output came back, the engine answers in text instead of calling again."""
    history = (
        user("weather in Paris?"),
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
    )
    out = run(
        turn(
            {"type": "function_call_output", "call_id": "c1", "output": "18 C"},
            history=history,
            tools=(WEATHER,),
        )
    )
    assert calls(out) == [] and "get_weather" in text_of(out)


def test_every_demo_command_in_the_table_is_answered_by_the_engine() -> None:
    """Each DEMO_COMMANDS example (the table the help lists) gets its own answer, not the default one."""
    from app.tools.demo import DEMO_COMMANDS

    for cmd in DEMO_COMMANDS:
        outputs = run(turn(user(cmd.example), tools=(READ_FILE,)))
        assert "Scripted engine (no model)" not in text_of(outputs), cmd.usage
