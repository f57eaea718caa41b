"""Tool specs for the Responses `tools` field, argument validation, and the run_command policy.

`TOOL_SPECS` is the list the agent sends (`responses_tools()`); `parse_arguments(name, text)` turns
a function call's `arguments` string into a checked dict or a `ToolArgumentError` whose message the
model can act on (invalid JSON, a missing field, a wrong type). The validator covers the small JSON
Schema subset our own specs use, nothing more.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "TOOL_SPECS",
    "CommandPolicy",
    "ToolArgumentError",
    "ToolSpec",
    "parse_arguments",
    "responses_tools",
    "spec_by_name",
    "split_command",
]


class ToolArgumentError(ValueError):
    """The model's arguments do not fit the tool; the message says how to fix them."""


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    description: str
    parameters: Mapping[str, Any]
    needs_approval: bool = False  # the agent asks the user (subject to policy) before it runs

    def to_responses(self) -> dict[str, Any]:
        """The entry for the Responses API `tools` field."""
        return {
            "type": "function",
            "name": self.name,
            "description": self.description,
            "parameters": dict(self.parameters),
            "strict": False,
        }


def _obj(props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}


PATCH_FORMAT = """Edit files with a patch in this format (paths relative to the project root):
*** Begin Patch
*** Update File: src/app.py
@@ def handler():
-    return 1
+    return 2
*** Add File: docs/new.md
+first line
*** Delete File: old.txt
*** Update File: a.py
*** Move to: b.py
*** End Patch
Each @@ hunk may name an anchor line (e.g. a def) after @@; give 3 lines of unchanged context
(' ' prefix) around changes, '-' for removed and '+' for added lines. The user reviews every patch."""

TOOL_SPECS: tuple[ToolSpec, ...] = (
    ToolSpec(
        "read_file",
        "Read a text file of the project, with line numbers. Use start_line/end_line (1-based, inclusive) "
        "for large files.",
        _obj(
            {
                "path": {"type": "string", "description": "path relative to the project root"},
                "start_line": {"type": "integer", "minimum": 1},
                "end_line": {"type": "integer", "minimum": 1},
            },
            ["path"],
        ),
    ),
    ToolSpec(
        "list_files",
        "List project files and folders (ignored files are left out). Folders end with '/'.",
        _obj(
            {
                "path": {
                    "type": "string",
                    "description": "folder relative to the project root; '' for the root",
                },
                "glob": {
                    "type": "string",
                    "description": "only paths matching this glob, e.g. '*.py' or 'src/**'",
                },
                "max_entries": {"type": "integer", "minimum": 1, "maximum": 5000},
            },
            [],
        ),
    ),
    ToolSpec(
        "search",
        "Search the project's text files for a literal string or a regular expression; returns "
        "path:line: text, capped.",
        _obj(
            {
                "query": {"type": "string", "minLength": 1},
                "regex": {"type": "boolean", "description": "treat query as a Python regular expression"},
                "case_sensitive": {"type": "boolean"},
                "path": {"type": "string", "description": "folder or file to search in; '' for all"},
                "glob": {"type": "string", "description": "only files matching this glob, e.g. '*.py'"},
                "max_results": {"type": "integer", "minimum": 1, "maximum": 1000},
            },
            ["query"],
        ),
    ),
    ToolSpec(
        "apply_patch",
        PATCH_FORMAT,
        _obj({"patch": {"type": "string", "minLength": 1, "description": "the whole patch text"}}, ["patch"]),
        needs_approval=True,
    ),
    ToolSpec(
        "run_tests",
        "Run the project's tests (pytest, npm, cargo, go or the configured command) and get a digest: "
        "counts, and each failure's test id, message and key traceback lines.",
        _obj(
            {
                "path": {"type": "string", "description": "a test file or folder; '' for the whole suite"},
                "keyword": {"type": "string", "description": "pytest -k expression"},
            },
            [],
        ),
    ),
    ToolSpec(
        "rerun_failed",
        "Rerun exactly the tests that failed in the last test run (no arguments) and get their digest.",
        _obj({}, []),
    ),
    ToolSpec(
        "run_command",
        "Run a shell command in the project root (the user approves it first). Output is capped; the "
        "tail is kept.",
        _obj(
            {
                "command": {"type": "string", "minLength": 1},
                "timeout_s": {"type": "integer", "minimum": 1, "maximum": 3600},
            },
            ["command"],
        ),
        needs_approval=True,
    ),
)


def spec_by_name(name: str) -> ToolSpec | None:
    return next((s for s in TOOL_SPECS if s.name == name), None)


def responses_tools(specs: Iterable[ToolSpec] = TOOL_SPECS) -> list[dict[str, Any]]:
    """The Responses `tools` list."""
    return [s.to_responses() for s in specs]


_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "boolean": (bool,),
    "number": (int, float),
    "object": (dict,),
    "array": (list,),
}


def _check(name: str, field: str, value: Any, schema: Mapping[str, Any]) -> None:
    want = schema.get("type")
    if want is not None:
        ok = isinstance(value, _TYPES[want]) and not (
            want in ("integer", "number") and isinstance(value, bool)
        )
        if not ok:
            raise ToolArgumentError(
                f"{name}: '{field}' must be {want}, got {type(value).__name__} {value!r:.60}"
            )
    if "enum" in schema and value not in schema["enum"]:
        raise ToolArgumentError(f"{name}: '{field}' must be one of {list(schema['enum'])}, got {value!r}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            raise ToolArgumentError(f"{name}: '{field}' must be >= {schema['minimum']}, got {value}")
        if "maximum" in schema and value > schema["maximum"]:
            raise ToolArgumentError(f"{name}: '{field}' must be <= {schema['maximum']}, got {value}")
    if isinstance(value, str) and len(value) < schema.get("minLength", 0):
        raise ToolArgumentError(f"{name}: '{field}' must not be empty")


def parse_arguments(name: str, arguments_json: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """Decode and check a call's arguments against the tool's schema."""
    spec = spec_by_name(name)
    if spec is None:
        known = ", ".join(s.name for s in TOOL_SPECS)
        raise ToolArgumentError(f"unknown tool {name!r}; available tools: {known}")
    if arguments_json is None or (isinstance(arguments_json, str) and not arguments_json.strip()):
        args: Any = {}
    elif isinstance(arguments_json, str):
        try:
            args = json.loads(arguments_json)
        except ValueError as exc:
            raise ToolArgumentError(
                f"{name}: arguments are not valid JSON ({exc}); send a JSON object like "
                f"{json.dumps(_example(spec))}"
            ) from None
    else:
        args = dict(arguments_json)
    if not isinstance(args, dict):
        raise ToolArgumentError(f"{name}: arguments must be a JSON object, got {type(args).__name__}")
    props: Mapping[str, Any] = spec.parameters.get("properties", {})
    for req in spec.parameters.get("required", []):
        if req not in args or args[req] is None:
            raise ToolArgumentError(
                f"{name}: missing required field '{req}'; send {json.dumps(_example(spec))}"
            )
    unknown = sorted(set(args) - set(props))
    if unknown:
        raise ToolArgumentError(f"{name}: unknown field(s) {unknown}; allowed: {sorted(props)}")
    for key, value in list(args.items()):
        if value is None:  # optional field sent as null: treat as absent
            del args[key]
            continue
        _check(name, key, value, props[key])
    return args


def _example(spec: ToolSpec) -> dict[str, Any]:
    props: Mapping[str, Any] = spec.parameters.get("properties", {})
    samples = {"string": "...", "integer": 1, "boolean": False}
    return {
        k: samples.get(props[k].get("type", "string"), "...") for k in spec.parameters.get("required", [])
    }


# ---------------------------------------------------------------------------------------------
# run_command approval policy

PolicyMode = Literal["ask", "allow_list", "never"]
Decision = Literal["allow", "ask", "deny"]
_SHELL_META = re.compile(r"[;&|`$<>()\n\\*?{}~]")


def split_command(command: str) -> list[str] | None:
    """The argv of a plain command, or None when it needs a shell (operators, substitutions,
    redirections, globs of the shell, or unbalanced quotes)."""
    if _SHELL_META.search(command):
        return None
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    return words or None


@dataclass(frozen=True, slots=True)
class CommandPolicy:
    """ask: always ask the user (default); allow_list: run listed commands without asking; never: refuse.

    An allow-list entry matches one exact argv ("npm test" allows `npm test`, not `npm test --x`),
    or, when the entry holds a glob character (`*`, `?`, `[`), the command line as that explicit
    pattern, which the user wrote and saw ("pytest -q *"). Never a word prefix. A command that needs
    a shell (;, &&, |, $(), redirections, backquotes) is never allowed without asking.
    """

    mode: PolicyMode = "ask"
    allow: tuple[str, ...] = ()

    def decide(self, command: str | Sequence[str]) -> Decision:
        if self.mode == "never":
            return "deny"
        words = list(command) if not isinstance(command, str) else split_command(command)
        if self.mode == "ask" or words is None:
            return "ask"
        line = shlex.join(words)
        for entry in self.allow:
            if any(c in entry for c in "*?["):
                if fnmatch.fnmatchcase(line, entry):
                    return "allow"
                continue
            try:
                if shlex.split(entry) == words:
                    return "allow"
            except ValueError:
                continue
        return "ask"

    def with_allowed(self, command: str | Sequence[str]) -> CommandPolicy:
        """The policy after the user chose "always allow" for exactly `command` (all its words)."""
        words = list(command) if not isinstance(command, str) else split_command(command)
        if not words:
            return self
        entry = shlex.join(words)
        if entry in self.allow:
            return self
        return CommandPolicy("allow_list" if self.mode == "ask" else self.mode, (*self.allow, entry))
