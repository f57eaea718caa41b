"""Tool call cards: pretty arguments, patches as diffs, commands as shell lines."""

from __future__ import annotations

import json

from app.render.toolcard import card_lines, diff_style

PATCH = "*** Begin Patch\n*** Update File: src/a.py\n@@ def f\n-    return 1\n+    return 2\n     pass\n*** End Patch\n"


def test_apply_patch_is_a_diff() -> None:
    """apply_patch's patch is shown line by line, each styled by what the line does."""
    lines = card_lines("apply_patch", json.dumps({"patch": PATCH}))
    assert lines == [
        ("meta", "*** Begin Patch"),
        ("meta", "*** Update File: src/a.py"),
        ("hunk", "@@ def f"),
        ("del", "-    return 1"),
        ("add", "+    return 2"),
        ("text", "     pass"),
        ("meta", "*** End Patch"),
    ]


def test_run_command_is_a_shell_line() -> None:
    """run_command's command is a `$` line; its other arguments follow as keys."""
    lines = card_lines("run_command", json.dumps({"command": "pytest -q tests", "cwd": "src"}))
    assert lines == [("shell", "$ pytest -q tests"), ("key", 'cwd: "src"')]


def test_other_arguments_are_indented_and_multiline_strings_unescaped() -> None:
    """Other tools: one key a line, nested values indented JSON, a string with newlines as its lines."""
    args = {"path": "a.py", "opts": {"n": 1}, "text": "one\ntwo"}
    lines = card_lines("write_file", json.dumps(args, separators=(",", ":")))
    assert lines == [
        ("key", 'path: "a.py"'),
        ("key", "opts:"),
        ("text", "  {"),
        ("text", '    "n": 1'),
        ("text", "  }"),
        ("key", "text:"),
        ("text", "  one"),
        ("text", "  two"),
    ]
    assert not any("\\n" in line for _, line in lines)


def test_bad_json_and_no_arguments() -> None:
    """Arguments that are not JSON are shown as they came; none at all say so."""
    assert card_lines("x", '{"a": ') == [("text", '{"a": ')]
    assert card_lines("x", "") == [("muted", "(no arguments)")]


def test_diff_style() -> None:
    assert [diff_style(s) for s in ("+a", "-b", "@@ -1 +1 @@", "--- a/x", " c")] == [
        "add",
        "del",
        "hunk",
        "meta",
        "text",
    ]
