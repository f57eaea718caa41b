"""A tool call's arguments as readable lines for a card: pretty JSON, patches as diffs, commands as shell.

The model sends arguments as one JSON string (escaped newlines, no indentation). `card_lines` turns a
complete argument string into styled lines the view draws as they are:

- `apply_patch`: the patch text as a diff, each line styled by its first character (`add`, `del`,
  `hunk` for `@@` lines, `meta` for `*** Begin Patch` / file headers), other arguments after it;
- `run_command` / `run_tests`: the command as one `$ command` line (`shell`), other arguments after it;
- anything else: indented JSON (`key` for object keys, `text` for values), where a string holding
  newlines is shown as its lines, indented under its key, instead of one long escaped line.

Arguments that are not valid JSON (a stream cut short, a model that sent text) are shown as they came.
Qt-free, plain data in and out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final, Literal

__all__ = ["CardLine", "LineStyle", "card_lines", "diff_style"]

LineStyle = Literal["text", "key", "add", "del", "hunk", "meta", "shell", "muted"]
CardLine = tuple[LineStyle, str]

_PATCH_KEYS: Final = ("patch", "input", "diff")
_COMMAND_KEYS: Final = ("command", "cmd")
_INDENT: Final = "  "


def diff_style(line: str) -> LineStyle:
    """How one line of a unified diff or apply_patch text is coloured."""
    if line.startswith(("*** ", "+++ ", "--- ", "diff --git", "index ")):
        return "meta"
    if line.startswith("@@"):
        return "hunk"
    if line.startswith("+"):
        return "add"
    if line.startswith("-"):
        return "del"
    return "text"


def card_lines(name: str, arguments: str) -> list[CardLine]:
    """The lines of a tool call card for complete `arguments` (see the module docstring)."""
    try:
        value = json.loads(arguments) if arguments.strip() else {}
    except json.JSONDecodeError:
        return [("text", line) for line in arguments.split("\n")]
    if not isinstance(value, Mapping):
        return _json_lines(value)
    args = dict(value)
    out: list[CardLine] = []
    if name == "apply_patch" or (len(args) == 1 and next(iter(args)) in _PATCH_KEYS and _is_patch(args)):
        key = next((k for k in _PATCH_KEYS if isinstance(args.get(k), str)), None)
        if key is not None:
            out += [(diff_style(line), line) for line in str(args.pop(key)).rstrip("\n").split("\n")]
    elif name in ("run_command", "run_tests", "shell") or any(
        isinstance(args.get(k), str) for k in _COMMAND_KEYS
    ):
        key = next((k for k in _COMMAND_KEYS if isinstance(args.get(k), str)), None)
        if key is not None:
            command = str(args.pop(key))
            first, *rest = command.split("\n")
            out.append(("shell", f"$ {first}"))
            out += [("shell", f"  {line}") for line in rest]
        elif isinstance(args.get("command"), list):  # ["pytest", "-q"]
            out.append(("shell", "$ " + " ".join(str(a) for a in args.pop("command"))))
    if args or not out:
        out += _object_lines(args, 0) if args else [("muted", "(no arguments)")]
    return out


def _is_patch(args: Mapping[str, Any]) -> bool:
    text = next(iter(args.values()))
    return isinstance(text, str) and ("\n+" in text or "\n-" in text or text.startswith("*** Begin Patch"))


def _object_lines(obj: Mapping[str, Any], depth: int) -> list[CardLine]:
    """Top-level arguments as `key: value` lines (no braces: a card is already a frame)."""
    out: list[CardLine] = []
    pad = _INDENT * depth
    for key, val in obj.items():
        if isinstance(val, str) and "\n" in val:
            out.append(("key", f"{pad}{key}:"))
            out += [("text", f"{pad}{_INDENT}{line}") for line in val.rstrip("\n").split("\n")]
        elif isinstance(val, (Mapping, list)) and val:
            out.append(("key", f"{pad}{key}:"))
            out += [(style, f"{pad}{_INDENT}{line}") for style, line in _json_lines(val)]
        else:
            out.append(("key", f"{pad}{key}: {json.dumps(val, ensure_ascii=False)}"))
    return out


def _json_lines(value: Any) -> list[CardLine]:
    return [("text", line) for line in json.dumps(value, indent=2, ensure_ascii=False).split("\n")]
