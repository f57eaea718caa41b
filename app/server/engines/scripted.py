"""The scripted engine: deterministic output with no language model, for demos, tests and offline use.

It answers from what the conversation holds (files and messages it was given, what changed since the
last turn, the user's question) and streams at a configurable rate, so the whole app can be exercised
end to end -- tool calls, chained turns, fast token streams -- without a model. A script file can
replace the default answers turn by turn.

Pacing: tokens (about 4 characters each) are paced against a schedule of one-second cycles, the first
`BURST_S` of each cycle at `burst_tps` and the rest at `rate_tps`. The pacer sleeps once per batch
(at least `MIN_SLEEP_S`), never once per token. `rate_tps=0` streams as fast as possible, yielding to
the event loop every `YIELD_EVERY` tokens so other lanes and connections keep moving.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.protocol.compact import compaction_items
from app.protocol.inputs import message_text
from app.protocol.tokens import tokens_for_chars
from app.server.engines.base import (
    CompactJob,
    EngineOutput,
    Item,
    ItemDone,
    ReasoningDelta,
    TextDelta,
    ToolCallArgsDelta,
    ToolCallStart,
    Turn,
    Usage,
)
from app.tools.demo import DEMO_COMMANDS, LONG_MAX_TOKENS

__all__ = ["ScriptError", "ScriptedConnection", "ScriptedEngine", "load_script", "minimal_value"]

CHARS_PER_TOKEN = 4
BURST_S = 0.1  # burst at the start of each one-second cycle (fast first tokens)
CYCLE_S = 1.0
MIN_SLEEP_S = 0.008
YIELD_EVERY = 64

Step = Mapping[str, Any]
Script = list[list[Step]]


class ScriptError(ValueError):
    """A script file does not have the documented shape."""


# --------------------------------------------------------------------------------------------------
# script files


def validate_script(data: Any) -> Script:
    """Check a parsed script: a list of turns, each a list of {text|tool_call|reasoning} steps."""
    if not isinstance(data, list):
        raise ScriptError("script must be a JSON list of turns")
    turns: Script = []
    for t, turn in enumerate(data):
        if not isinstance(turn, list):
            raise ScriptError(f"turn {t}: must be a list of steps, got {type(turn).__name__}")
        for s, step in enumerate(turn):
            where = f"turn {t} step {s}"
            if not isinstance(step, dict) or len(step) != 1:
                raise ScriptError(
                    f"{where}: must be an object with exactly one of text, tool_call, reasoning"
                )
            ((kind, value),) = step.items()
            if kind in ("text", "reasoning"):
                if not isinstance(value, str):
                    raise ScriptError(f"{where}: {kind} must be a string")
            elif kind == "tool_call":
                if not isinstance(value, dict) or not isinstance(value.get("name"), str) or not value["name"]:
                    raise ScriptError(f"{where}: tool_call needs a non-empty string 'name'")
                args = value.get("arguments", {})
                if not isinstance(args, dict | str):
                    raise ScriptError(f"{where}: tool_call arguments must be an object or a JSON string")
            else:
                raise ScriptError(
                    f"{where}: unknown step kind {kind!r} (expected text, tool_call, reasoning)"
                )
        turns.append(list(turn))
    return turns


def load_script(path: str | Path) -> Script:
    """Read and validate a script file (JSON list of turns)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScriptError(f"cannot read script {path}: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise ScriptError(f"script {path} is not valid JSON: {exc}") from exc
    return validate_script(data)


# --------------------------------------------------------------------------------------------------
# minimal values from a JSON schema


def minimal_value(schema: Any, *, name: str = "", root: Any = None, depth: int = 0) -> Any:
    """A small value that satisfies `schema` (required props, types, enums, defaults, bounds)."""
    if root is None:
        root = schema
    if depth > 32 or not isinstance(schema, Mapping):
        return {} if depth == 0 else None
    if "$ref" in schema:
        target = _resolve_ref(root, schema["$ref"])
        return minimal_value(target, name=name, root=root, depth=depth + 1)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf", "allOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and branches:
            if key == "allOf":
                merged: dict[str, Any] = {}
                for branch in branches:
                    if isinstance(branch, Mapping):
                        merged.update(branch)
                rest = {k: v for k, v in schema.items() if k != "allOf"}
                return minimal_value({**merged, **rest}, name=name, root=root, depth=depth + 1)
            non_null = [b for b in branches if not (isinstance(b, Mapping) and b.get("type") == "null")]
            return minimal_value((non_null or branches)[0], name=name, root=root, depth=depth + 1)
    typ = schema.get("type")
    if isinstance(typ, list):
        typ = next((t for t in typ if t != "null"), "null")
    if typ is None:
        typ = "object" if "properties" in schema else "string"
    if typ == "object":
        props = schema.get("properties") or {}
        required = schema.get("required") or []
        return {
            key: minimal_value(props.get(key, {}), name=key, root=root, depth=depth + 1)
            for key in required
            if isinstance(key, str)
        }
    if typ == "array":
        count = int(schema.get("minItems", 0))
        return [minimal_value(schema.get("items", {}), name=name, root=root, depth=depth + 1)] * count
    if typ == "string":
        return _minimal_string(schema, name)
    if typ in ("integer", "number"):
        return _minimal_number(schema, integer=typ == "integer")
    if typ == "boolean":
        return False
    return None


def _resolve_ref(root: Any, ref: Any) -> Any:
    if not isinstance(ref, str) or not ref.startswith("#"):
        return {}
    node = root
    for part in ref.lstrip("#").strip("/").split("/"):
        if not part:
            continue
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, Mapping) or part not in node:
            return {}
        node = node[part]
    return node


def _minimal_string(schema: Mapping[str, Any], name: str) -> str:
    lowered = name.lower()
    if "path" in lowered or "file" in lowered:
        text = "README.md"
    elif schema.get("format") == "uri":
        text = "http://localhost/"
    else:
        text = "example"
    lo = int(schema.get("minLength", 0))
    hi = schema.get("maxLength")
    if hi is not None:
        text = text[: int(hi)]
    if len(text) < lo:
        text = text + "x" * (lo - len(text))
    return text


def _minimal_number(schema: Mapping[str, Any], *, integer: bool) -> int | float:
    step = 1 if integer else 0.5
    value: float = 0
    low, high = schema.get("minimum"), schema.get("maximum")
    x_low, x_high = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if isinstance(low, int | float):
        value = low
    if isinstance(x_low, int | float) and value <= x_low:
        value = x_low + step
    if isinstance(high, int | float) and value > high:
        value = high
    if isinstance(x_high, int | float) and value >= x_high:
        value = x_high - step
    if integer:
        return math.ceil(value)
    return float(value)


# --------------------------------------------------------------------------------------------------
# reading the conversation

_DIFF_GIT = re.compile(r"^diff --git a/(\S+) b/(\S+)")
_MINUS_HDR = re.compile(r"^--- (?:a/)?(\S+)")
_PLUS_HDR = re.compile(r"^\+\+\+ (?:b/)?(\S+)")
_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})\s*(\S*)\s*(.*)$")
_FILE_TAG = re.compile(r"""<file\s+(?:path|name)=["']([^"']+)["']""")
_FILE_LINE = re.compile(r"^(?:#+\s*)?(?:File|Path):\s*`?([^\s`]+)`?\s*$", re.IGNORECASE)
_PATH_ATTR = re.compile(r"""(?:path|file|title)=["']?([^"'\s]+)""")

_LONG = DEMO_COMMANDS[0].pattern
_CALL = DEMO_COMMANDS[1].pattern


# Files without an extension that projects hold at their top (Slipstream's own snapshot labels a
# fence with the bare path: "```Makefile"); a language tag never takes one of these names.
_BARE_FILE_NAMES = frozenset(
    {"Makefile", "GNUmakefile", "Dockerfile", "Containerfile", "Jenkinsfile", "Procfile", "Gemfile",
     "Rakefile", "Vagrantfile", "Brewfile", "Justfile", "justfile", "LICENSE", "COPYING", "NOTICE",
     "AUTHORS", "CHANGELOG", "README", "CODEOWNERS"}
)  # fmt: skip


def _looks_like_path(token: str) -> bool:
    return bool(token) and (
        (("/" in token or "." in token) and not token.startswith(("http:", "https:")))
        or token in _BARE_FILE_NAMES
    )


@dataclass
class FileStats:
    """Lines added and removed for one file in the new input."""

    added: int = 0
    removed: int = 0


def scan_files(text: str) -> tuple[set[str], dict[str, FileStats]]:
    """Files mentioned by diffs and fenced/tagged file blocks, and +/- stats of the diffed ones."""
    mentioned: set[str] = set()
    stats: dict[str, FileStats] = {}
    current: str | None = None  # file whose hunk lines are being counted
    pending_minus: str | None = None
    fence: str | None = None  # the open fence marker, if any
    file_fence = False  # the open fence holds a whole file: its lines are content, not a diff
    for line in text.splitlines():
        stripped = line.strip()
        if fence is not None and stripped.startswith(fence) and not stripped.lstrip(fence[0]):
            fence, file_fence = None, False
            continue
        if file_fence:
            continue
        m = _DIFF_GIT.match(line)
        if m:
            current = m.group(2)
            mentioned.add(current)
            stats.setdefault(current, FileStats())
            continue
        m = _MINUS_HDR.match(line)
        if m:
            pending_minus = m.group(1)
            continue
        m = _PLUS_HDR.match(line)
        if m:
            path = m.group(1)
            if path == "/dev/null" and pending_minus:
                path = pending_minus
            current = path
            mentioned.add(current)
            stats.setdefault(current, FileStats())
            pending_minus = None
            continue
        if current is not None and line[:1] in ("+", "-"):
            if line.startswith("+"):
                stats[current].added += 1
            else:
                stats[current].removed += 1
            continue
        m = _FENCE.match(line) if len(line) - len(line.lstrip(" ")) <= 3 else None
        if m and fence is None:
            marker, info, rest = m.groups()
            path = _fence_path(info, rest)
            fence, file_fence, current = marker, path is not None, None
            if path:
                mentioned.add(path)
            continue
        for tag in _FILE_TAG.findall(line):
            mentioned.add(tag)
        m = _FILE_LINE.match(stripped)
        if m and _looks_like_path(m.group(1)):
            mentioned.add(m.group(1))
    return mentioned, stats


def _fence_path(info: str, rest: str) -> str | None:
    attr = _PATH_ATTR.search(f"{info} {rest}")
    if attr and _looks_like_path(attr.group(1)):
        return attr.group(1)
    for token in (info, *rest.split()):
        if ":" in token and not token.startswith(("http:", "https:")):
            token = token.split(":", 1)[1]  # ```python:app/x.py
        if _looks_like_path(token):
            return token
    return None


def _is_message(item: Item) -> bool:
    return item.get("type", "message") == "message" and "role" in item


def _is_output(item: Item) -> bool:
    kind = item.get("type", "message")
    if kind == "message":
        return item.get("role") == "assistant"
    return kind in ("function_call", "reasoning", "custom_tool_call")


def model_turns_in(history: Sequence[Item]) -> int:
    """How many model turns produced output in `history` (runs of consecutive output items)."""
    return ChainSummary.of(history).model_turns


def _has_context(text: str) -> bool:
    files, _ = scan_files(text)
    return bool(files)


@dataclass(frozen=True)
class Reading:
    """What the scripted engine sees in one turn."""

    messages: int
    files: int
    changed: dict[str, FileStats]
    question: str | None
    tool_outputs: list[tuple[str, str]]  # (tool name, output text)


class ChainSummary:
    """What the scripted engine needs to know about a chain, kept up to date item by item, so a turn
    costs work for its new items only (a connection's chain is an append-only list it has seen)."""

    __slots__ = ("calls", "chars", "files", "last", "length", "messages", "model_turns", "prev_output")

    def __init__(self) -> None:
        self.length = 0  # items summarised so far
        self.last: object = None  # the last item summarised (identity check: is this the same chain?)
        self.messages = 0
        self.files: set[str] = set()
        self.calls: dict[str, str] = {}  # call_id -> function name
        self.chars = 0  # for the token estimate
        self.model_turns = 0
        self.prev_output = False

    def feed(self, items: Sequence[Item]) -> None:
        for item in items:
            if _is_message(item):
                self.messages += 1
                text = message_text(item)
                self.chars += len(text)
                found, _ = scan_files(text)
                self.files |= found
            else:
                self.chars += len(json.dumps(item, default=str))
            if item.get("type") == "function_call":
                self.calls[str(item.get("call_id"))] = str(item.get("name", "?"))
            out = _is_output(item)
            if out and not self.prev_output:
                self.model_turns += 1
            self.prev_output = out
            self.last = item
        self.length += len(items)

    @classmethod
    def of(cls, items: Sequence[Item]) -> ChainSummary:
        acc = cls()
        acc.feed(items)
        return acc

    def extended(self, history: Sequence[Item]) -> ChainSummary:
        """This summary brought up to `history` (itself when `history` extends what it saw, else anew)."""
        n = self.length
        if n and len(history) >= n and history[n - 1] is self.last:
            self.feed(history[n:])
            return self
        return ChainSummary.of(history)

    def with_new(self, new: Sequence[Item]) -> ChainSummary:
        """A copy that also counts this turn's new input (the chain itself advances only by history)."""
        acc = ChainSummary()
        acc.length, acc.last, acc.messages = self.length, self.last, self.messages
        acc.files, acc.calls, acc.chars = set(self.files), dict(self.calls), self.chars
        acc.model_turns, acc.prev_output = self.model_turns, self.prev_output
        acc.feed(new)
        return acc


def read_turn(turn: Turn, summary: ChainSummary | None = None) -> Reading:
    """Summarise the conversation of `turn`: counts, changes in the new input, the question.
    `summary` (the chain up to and including the new input) saves rescanning the history."""
    summary = summary or ChainSummary.of([*turn.history, *turn.new_input])
    changed: dict[str, FileStats] = {}
    question: str | None = None
    for item in turn.new_input:
        if not _is_message(item):
            continue
        text = message_text(item)
        _, stats = scan_files(text)
        for path, st in stats.items():
            acc = changed.setdefault(path, FileStats())
            acc.added += st.added
            acc.removed += st.removed
        if item.get("role") == "user" and text.strip() and not _has_context(text):
            question = text.strip()
    names = summary.calls
    outputs = []
    for item in turn.new_input:
        if item.get("type") == "function_call_output":
            raw = item.get("output", "")
            text = raw if isinstance(raw, str) else message_text({"content": raw})
            outputs.append((names.get(str(item.get("call_id")), "unknown tool"), text))
    return Reading(summary.messages, len(summary.files), changed, question, outputs)


# --------------------------------------------------------------------------------------------------
# composing answers


def _restate(question: str, limit: int = 300) -> str:
    flat = " ".join(question.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def compose_answer(reading: Reading, turn: Turn) -> str:
    """The default text answer: counts, changes, the question restated, a code block."""
    lines = ["**Scripted engine (no model).**", ""]
    if reading.tool_outputs:
        for name, output in reading.tool_outputs:
            out_lines = output.splitlines()
            first = _restate(out_lines[0], 120) if out_lines else "(empty)"
            lines.append(
                f"The tool `{name}` returned {len(output)} characters in {len(out_lines)} lines; "
                f"it starts with: {first}"
            )
        lines.append("")
    lines.append(f"I was given {reading.files} file(s) in {reading.messages} message(s).")
    if reading.changed:
        lines.append("")
        lines.append("Changed since the last turn:")
        for path in sorted(reading.changed):
            st = reading.changed[path]
            lines.append(f"- `{path}` (+{st.added} -{st.removed})")
    else:
        lines.append("No files changed since the last turn.")
    if reading.question:
        lines += ["", f'You asked: "{_restate(reading.question)}"']
    elif not reading.tool_outputs:
        lines += ["", "There was no question in this turn."]
    digest = hashlib.sha256((reading.question or "").encode()).hexdigest()[:8]
    lines += [
        "",
        "```python",
        "def scripted_answer() -> dict[str, int]:",
        f'    """Deterministic reply {digest}."""',
        f'    return {{"files": {reading.files}, "messages": {reading.messages}, '
        f'"changed": {len(reading.changed)}}}',
        "```",
    ]
    return "\n".join(lines) + "\n"


_LONG_PARTS = [
    "## Section {n}\n\nThis is paragraph {n} of a long scripted answer. It has **bold**, *italic* and "
    "`inline code`, so the renderer sees real markdown while the stream runs fast.\n\n",
    "- item one of list {n}\n- item two, with `code`\n- item three\n\n",
    '```python\ndef block_{n}(values: list[int]) -> int:\n    """Sum the even values."""\n'
    "    total = 0\n    for v in values:\n        if v % 2 == 0:\n            total += v\n"
    "    return total\n```\n\n",
    "> A quote in section {n}.\n\n1. first\n2. second\n\n",
]


def long_markdown(tokens: int) -> str:
    """About `tokens` tokens (x4 chars) of markdown with code blocks; code fences always closed."""
    target = max(1, tokens) * CHARS_PER_TOKEN
    out: list[str] = []
    size = 0
    n = 0
    while size < target:
        part = _LONG_PARTS[n % len(_LONG_PARTS)].format(n=n // len(_LONG_PARTS) + 1)
        out.append(part)
        size += len(part)
        n += 1
    return "".join(out)


def _chunks(text: str) -> Iterator[str]:
    for i in range(0, len(text), CHARS_PER_TOKEN):
        yield text[i : i + CHARS_PER_TOKEN]


def _tool_names(turn: Turn) -> list[str]:
    names = []
    for tool in turn.tools:
        if tool.get("type", "function") == "function" and isinstance(tool.get("name"), str):
            names.append(tool["name"])
    return names


def _tool_schema(turn: Turn, name: str) -> Mapping[str, Any]:
    for tool in turn.tools:
        if tool.get("name") == name:
            params = tool.get("parameters")
            return params if isinstance(params, Mapping) else {}
    return {}


def _last_user_text(turn: Turn) -> str | None:
    for item in reversed(turn.new_input):
        if _is_message(item) and item.get("role") == "user":
            text = message_text(item).strip()
            if text:
                return text
    return None


# --------------------------------------------------------------------------------------------------
# pacing


class Pacer:
    """Paces tokens against the burst/base schedule; sleeps once per batch. `clock` and `sleep`
    default to the running loop's and are injectable for tests."""

    def __init__(
        self,
        rate_tps: float,
        burst_tps: float,
        *,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[Any]] | None = None,
    ) -> None:
        self.rate = max(0.0, float(rate_tps))
        self.burst = max(self.rate, float(burst_tps))
        self.sent = 0
        self._clock = clock
        self._sleep = sleep or asyncio.sleep
        self._start: float | None = None
        self._burst_tokens = self.burst * BURST_S
        self._per_cycle = self._burst_tokens + self.rate * (CYCLE_S - BURST_S)

    def due(self, n: int) -> float:
        """Seconds after the start when token `n` (0-based) may be sent."""
        cycles, rem = divmod(float(n), self._per_cycle)
        if rem < self._burst_tokens:
            within = rem / self.burst
        else:
            within = BURST_S + (rem - self._burst_tokens) / self.rate
        return cycles * CYCLE_S + within

    async def tick(self) -> None:
        """Wait until the next token may go out."""
        n = self.sent
        self.sent += 1
        if self.rate <= 0:
            if self.sent % YIELD_EVERY == 0:
                await self._sleep(0)
            return
        now = self._clock() if self._clock else asyncio.get_running_loop().time()
        if self._start is None:
            self._start = now
        wait = self._start + self.due(n) - now
        if wait > 0:
            await self._sleep(max(wait, MIN_SLEEP_S))


# --------------------------------------------------------------------------------------------------
# the engine


class ScriptedEngine:
    """Deterministic engine with no model; `script` replaces the default answers turn by turn."""

    name = "scripted"

    def __init__(self, rate_tps: float = 1000, burst_tps: float = 4000, script: Script | None = None) -> None:
        if rate_tps < 0 or burst_tps < 0:
            raise ValueError("rate_tps and burst_tps must be >= 0")
        self.rate_tps = rate_tps
        self.burst_tps = burst_tps
        self.script = validate_script(script) if script is not None else None

    def connect(self) -> ScriptedConnection:
        """State for one client connection (the scripted engine keeps none)."""
        return ScriptedConnection(self)

    async def aclose(self) -> None:
        """Nothing to release."""


class ScriptedConnection:
    """One client connection of the scripted engine."""

    def __init__(self, engine: ScriptedEngine) -> None:
        self._engine = engine
        self._chain = ChainSummary()

    async def aclose(self) -> None:
        """Nothing to release."""

    async def compact(self, job: CompactJob, new_id: Callable[[str], str]) -> list[Item]:
        """Compaction without a model: the window packed as it is, so nothing is lost."""
        return compaction_items(job.items, new_id)

    async def run(self, turn: Turn) -> AsyncIterator[EngineOutput]:
        """Generate one turn (see the module docstring for what it says and how fast)."""
        pacer = Pacer(self._engine.rate_tps, self._engine.burst_tps)
        script = self._engine.script
        self._chain = self._chain.extended(turn.history)
        history_chars = self._chain.chars
        summary = self._chain.with_new(turn.new_input)
        index = summary.model_turns  # counted over history + new input: a fresh chain resends earlier outputs
        steps: list[Step]
        if script is not None and index < len(script):
            steps = list(script[index])
        else:
            steps = self._default_steps(turn, summary)
        call_n = 0
        open_kind: str | None = None
        for step in steps:
            ((kind, value),) = step.items()
            if open_kind is not None and (open_kind != kind or kind == "tool_call"):
                yield ItemDone()
                open_kind = None
            if kind == "text":
                open_kind = "text"
                for piece in _chunks(value):
                    await pacer.tick()
                    yield TextDelta(piece)
            elif kind == "reasoning":
                open_kind = "reasoning"
                for piece in _chunks(value):
                    await pacer.tick()
                    yield ReasoningDelta(piece)
            else:
                args = value.get("arguments", {})
                text = args if isinstance(args, str) else json.dumps(args, separators=(",", ":"))
                yield ToolCallStart(call_id=_call_id(turn.response_id, call_n), name=value["name"])
                call_n += 1
                for piece in _chunks(text):
                    await pacer.tick()
                    yield ToolCallArgsDelta(piece)
                open_kind = "tool_call"
        if open_kind is not None:
            yield ItemDone()
        yield Usage(
            input_tokens=tokens_for_chars(len(turn.instructions or "") + summary.chars),
            output_tokens=pacer.sent,
            cached_tokens=tokens_for_chars(history_chars),
        )

    def _default_steps(self, turn: Turn, summary: ChainSummary | None = None) -> list[Step]:
        names = _tool_names(turn)
        choice = turn.tool_choice
        user = _last_user_text(turn)
        command = _CALL.match(user) if user else None
        forced: str | None = None
        if names and choice != "none":
            if isinstance(choice, Mapping) and choice.get("type") == "function":
                forced = str(choice.get("name"))
            elif choice == "required":
                forced = command.group(1) if command and command.group(1) in names else names[0]
            elif command:
                forced = command.group(1)
            elif _asks_for_tool(turn):
                forced = match_tool(turn.tools, user or "")
        if forced is not None:
            if forced not in names:
                offered = ", ".join(names) or "none"
                return [{"text": f"I cannot call `{forced}`: no such tool was offered (tools: {offered}).\n"}]
            args = _command_args(command, forced) if command else None
            if args is None:
                args = minimal_value(_tool_schema(turn, forced))
            return [{"tool_call": {"name": forced, "arguments": args}}]
        if user:
            long = _LONG.match(user)
            if long:
                return [{"text": long_markdown(min(int(long.group(1)), LONG_MAX_TOKENS))}]
        return [{"text": compose_answer(read_turn(turn, summary), turn)}]


_WORD = re.compile(r"[a-z0-9]+")
# Words too common in tool descriptions to say what a tool is about.
_GENERIC = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "for",
        "to",
        "in",
        "on",
        "at",
        "by",
        "with",
        "and",
        "or",
        "from",
        "into",
        "this",
        "that",
        "these",
        "those",
        "it",
        "its",
        "is",
        "are",
        "be",
        "get",
        "set",
        "read",
        "write",
        "run",
        "list",
        "make",
        "create",
        "return",
        "returns",
        "given",
        "current",
        "some",
        "any",
        "all",
        "one",
        "each",
        "file",
        "files",
        "data",
        "value",
        "values",
        "item",
        "items",
        "thing",
        "things",
        "tool",
        "function",
        "call",
        "use",
        "using",
    ]
)


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def match_tool(tools: Sequence[Mapping[str, Any]], prompt: str) -> str | None:
    """The offered function tool the prompt asks for: it names the tool (`get_weather`, or "get
    weather"), or a word of the tool's description's subject ("weather" for "Current weather for a
    city"). None when no tool fits."""
    said = _words(prompt)
    flat = " ".join(_WORD.findall(prompt.lower()))
    best: tuple[int, str] | None = None
    for tool in tools:
        name = tool.get("name")
        if tool.get("type", "function") != "function" or not isinstance(name, str):
            continue
        parts = _WORD.findall(name.lower().replace("_", " ").replace("-", " "))
        if name.lower() in prompt.lower() or (parts and " ".join(parts) in flat):
            return name
        desc = tool.get("description")
        subject = {
            w for w in _words(desc if isinstance(desc, str) else "") | set(parts) if len(w) >= 4
        } - _GENERIC
        hits = len(subject & said)
        if hits and (best is None or hits > best[0]):
            best = (hits, name)
    return best[1] if best else None


def _asks_for_tool(turn: Turn) -> bool:
    """Whether this turn ends with a user request (not with tool results to answer)."""
    for item in reversed(turn.new_input):
        if item.get("type") == "function_call_output":
            return False
        if _is_message(item) and item.get("role") == "user":
            return True
    return False


def _command_args(command: re.Match[str], name: str) -> Any:
    if command.group(1) != name:
        return None
    raw = command.group(2).strip()
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _call_id(response_id: str, n: int) -> str:
    digest = hashlib.sha256(f"{response_id}:{n}".encode()).hexdigest()[:16]
    return f"call_{digest}"
