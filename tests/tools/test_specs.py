"""Tests for app.tools.specs: Responses tool entries, argument checks, command policy."""

from __future__ import annotations

import pytest

from app.tools.specs import TOOL_SPECS, CommandPolicy, ToolArgumentError, parse_arguments, responses_tools


def test_responses_tools_shape() -> None:
    """Each entry is a non-strict function tool with an object schema."""
    tools = responses_tools()
    assert [t["name"] for t in tools] == [
        "read_file",
        "list_files",
        "search",
        "apply_patch",
        "run_tests",
        "rerun_failed",
        "run_command",
    ]
    for t in tools:
        assert t["type"] == "function" and t["strict"] is False
        assert t["parameters"]["type"] == "object" and t["description"]
    assert {s.name for s in TOOL_SPECS if s.needs_approval} == {"apply_patch", "run_command"}


def test_parse_arguments_ok_and_nulls() -> None:
    """Valid arguments pass; null optionals are dropped."""
    assert parse_arguments("read_file", '{"path": "a.py", "start_line": 3, "end_line": null}') == {
        "path": "a.py",
        "start_line": 3,
    }
    assert parse_arguments("list_files", "") == {}


@pytest.mark.parametrize(
    ("name", "args", "match"),
    [
        ("read_file", "{not json", "not valid JSON"),
        ("read_file", "[1]", "JSON object"),
        ("read_file", "{}", "missing required field 'path'"),
        ("read_file", '{"path": 3}', "'path' must be string"),
        ("read_file", '{"path": "a", "start_line": 0}', ">= 1"),
        ("read_file", '{"path": "a", "start_line": true}', "must be integer"),
        ("read_file", '{"path": "a", "lines": 3}', "unknown field"),
        ("search", '{"query": ""}', "must not be empty"),
        ("rerun_failed", '{"ids": ["-p", "evil"]}', "unknown field"),
        ("frobnicate", "{}", "unknown tool"),
    ],
)
def test_parse_arguments_errors(name: str, args: str, match: str) -> None:
    """Bad arguments give messages the model can act on."""
    with pytest.raises(ToolArgumentError, match=match):
        parse_arguments(name, args)


def test_command_policy() -> None:
    """ask asks, never denies, allow_list allows exact argv (or explicit patterns), never shell operators."""
    assert CommandPolicy().decide("ls") == "ask"
    assert CommandPolicy("never").decide("ls") == "deny"
    pol = CommandPolicy("allow_list", ("npm test", "pytest"))
    assert pol.decide("pytest -q tests") == "ask"  # not a word prefix
    assert pol.decide("pytest") == "allow" and pol.decide(["pytest"]) == "allow"
    assert pol.decide("npm test") == "allow" and pol.decide("npm  'test'") == "allow"  # the same argv
    assert pol.decide("npm test -- --watch") == "ask"
    assert pol.decide("npm install") == "ask"
    assert pol.decide("pytest; rm -rf /") == "ask"
    assert pol.decide("pytest $(evil)") == "ask"
    grown = CommandPolicy().with_allowed("make lint")
    assert (
        grown.mode == "allow_list" and grown.decide("make lint") == "allow" and grown.decide("make") == "ask"
    )
