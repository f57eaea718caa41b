"""The tool loop over the socket: function calls in, tool outputs back as the next turn's input.

One `Agent.run(text)` is one user request: a turn, then as long as the model calls tools, their
outputs go back as `function_call_output` items on the same chain (only the new items cross the
wire). Calls of one response run concurrently (`parallel_tool_calls`). The loop ends when the model
answers without calling a tool, at the tool-turn cap, when the same test failures repeat
(fix-until-green is stuck), or when the user presses Stop.

Test results reach the model as a digest (`app.tools.digest`: counts, each failure's id, message
and key traceback lines, within `AgentConfig.test_digest_tokens`), never as raw output: as the
output of run_tests / rerun_failed, and for runs the user started (`note_test_run`) as a message
on the next request. Stuck means the same failures (ids and messages) `stuck_repeats` runs in a
row within one request.

Patches and commands need the user's approval unless the policy says otherwise; the approval is
asked through `approve(kind, title, payload) -> decision` (the UI shows the diff review / command
prompt), so this module never blocks on a dialog and runs headless in tests.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from app.adapters.proc import detect_test_command, run_process, run_tests
from app.adapters.project_fs import AppliedChange, ProjectFS
from app.protocol.events import ServerEvent
from app.protocol.tokens import estimate_tokens
from app.render.transcript import NoticeKind
from app.services.approvals import ApprovalDecision, ApprovalKind
from app.services.session import TurnResult
from app.services.settings import ApprovalPolicy
from app.services.workspace import ContextSync
from app.tools.digest import DEFAULT_BUDGET, Digest, build_digest, rerun_targets
from app.tools.fileops import ToolContext, ToolResult, execute
from app.tools.specs import CommandPolicy, responses_tools, split_command
from app.tools.testrun import TestRun, stuck

if TYPE_CHECKING:  # app.tools.patch loads with the first patch (startup time)
    from app.tools.patch import ChangeSet

log = logging.getLogger(__name__)

Approver = Callable[[ApprovalKind, str, dict[str, Any]], Awaitable[ApprovalDecision]]
RunStatus = Literal["completed", "failed", "cancelled", "cap", "stuck"]

INSTRUCTIONS = (
    "You are Slipstream's coding assistant, working on the user's project through tools. "
    "The project's files arrive as a snapshot and then as '[slipstream context update]' messages with "
    "unified diffs whenever files change on disk: trust them over your memory. Read files with read_file, "
    "find code with search, change code only with apply_patch (the user reviews every patch), and check "
    "your work with run_tests. Keep answers short; use fenced code blocks for code."
)


@dataclass
class AgentConfig:
    approval_policy: ApprovalPolicy = "ask"
    command_policy: CommandPolicy = field(default_factory=CommandPolicy)
    max_tool_turns: int = 25
    command_timeout_s: float = 120.0
    test_timeout_s: float = 600.0
    stuck_repeats: int = 3
    test_digest_tokens: int = DEFAULT_BUDGET  # the token budget of one test run's digest
    python: str | None = None  # the project's interpreter for pytest; None: its .venv or ours
    test_command: str | None = None  # a custom test command instead of auto-detection


@dataclass
class RunOutcome:
    """How one user request ended."""

    status: RunStatus
    turns: int = 0
    tool_calls: int = 0
    message: str = ""
    last: TurnResult | None = None


class Agent:
    def __init__(
        self,
        sync: ContextSync,
        fs: ProjectFS,
        *,
        config: AgentConfig | None = None,
        approve: Approver | None = None,
        on_event: Callable[[ServerEvent], None] | None = None,
        on_tool_output: Callable[[str, str, bool], None] | None = None,
        on_test_event: Callable[[dict[str, Any]], None] | None = None,
        on_notice: Callable[[NoticeKind, str], None] | None = None,
        instructions: str = INSTRUCTIONS,
    ) -> None:
        self.sync = sync
        self.fs = fs
        self.config = config or AgentConfig()
        self._approve = approve
        self._on_event = on_event or (lambda e: None)
        self._on_tool_output = on_tool_output or (lambda call_id, text, ok: None)
        self._on_test_event = on_test_event or (lambda ev: None)
        self._notice = on_notice or (lambda kind, text: None)
        self.instructions = instructions
        self.tools = responses_tools()
        # Extra request fields for this endpoint, e.g. include=["reasoning.encrypted_content"] so that a
        # store=false chain can be rebuilt with its reasoning items (PROTOCOL §4.4).
        self.extra_settings: dict[str, Any] = {}
        sync.settings = (
            self.settings()
        )  # context pushes share the turns' settings: the chain stays incremental
        self._stop = asyncio.Event()
        self._turn_no = 0
        self._failures: list[frozenset[tuple[str, str]]] = []  # digest signatures of this request's runs
        self._pending_tests: dict[str, Any] | None = None  # a run the user started, for the next request
        # Outputs owed to calls of a loop that ended early (Stop, cap): the next request carries them,
        # since a chain whose last response has unanswered function calls is refused upstream.
        self._owed: list[dict[str, Any]] = []
        self.applied: list[AppliedChange] = []
        self.last_test_run: TestRun | None = None
        self.last_digest: Digest | None = None

    @property
    def root(self) -> Path:
        return self.sync.workspace.root

    def stop(self) -> None:
        """Stop the loop: the running turn is cut, running tools and commands are killed."""
        self._stop.set()
        self.sync.stop()

    def settings(self) -> dict[str, Any]:
        return {
            "instructions": self.instructions,
            "tools": self.tools,
            "tool_choice": "auto",
            "parallel_tool_calls": True,
            **self.extra_settings,
        }

    async def run(self, text: str, *, on_retry: Callable[[str], None] | None = None) -> RunOutcome:
        """One user request, through as many tool turns as it takes (see module docstring)."""
        self._stop.clear()
        self._turn_no += 1
        self._failures = []  # a new request gets fresh attempts
        items: list[dict[str, Any]] = [*self._owed, *self._take_pending_tests(), _user(text)]
        self._owed = []
        outcome = RunOutcome("completed")
        while True:
            result = await self.sync.turn(
                items, settings=self.settings(), on_event=self._on_event, on_retry=on_retry
            )
            outcome.turns += 1
            outcome.last = result
            calls = [i for i in result.output if i.get("type") == "function_call"] if result.ok else []
            if result.status == "cancelled" or self._stop.is_set():
                self._owed = [_output(c, "not run: the user pressed Stop") for c in calls]
                outcome.status, outcome.message = "cancelled", "stopped by the user"
                return outcome
            if not result.ok:
                outcome.status, outcome.message = "failed", result.error
                return outcome
            if not calls:
                return outcome
            if outcome.turns > self.config.max_tool_turns:
                self._owed = [_output(c, "not run: the tool turn cap was reached") for c in calls]
                outcome.status = "cap"
                outcome.message = (
                    f"Stopped after {self.config.max_tool_turns} consecutive tool turns "
                    "(Settings: tool turn cap)."
                )
                self._notice("warning", outcome.message)
                return outcome
            outputs = await asyncio.gather(*(self._call(c) for c in calls))
            outcome.tool_calls += len(calls)
            items = [_output(c, out.output_text) for c, out in zip(calls, outputs, strict=True)]
            items += self._take_pending_tests()
            if self._stop.is_set():
                self._owed = items
                outcome.status, outcome.message = "cancelled", "stopped by the user"
                return outcome
            if self._is_stuck():
                outcome.status = "stuck"
                outcome.message = self._stuck_message()
                self._notice("warning", outcome.message)
                # The model still gets the tool outputs, so the chain stays consistent next time.
                await self.sync.turn(
                    [*items, _user(outcome.message + " Stop and summarise.")],
                    settings={**self.settings(), "tool_choice": "none"},
                    on_event=self._on_event,
                )
                return outcome

    def _is_stuck(self) -> bool:
        return stuck(self._failures, repeats=self.config.stuck_repeats)

    def _stuck_message(self) -> str:
        """Words for the user and the model: how many failures, how often, which ones."""
        same = sorted(self._failures[-1])
        n, times = len(same), _times(self.config.stuck_repeats)
        ids = ", ".join(i for i, _ in same[:5]) + (f" and {n - 5} more" if n > 5 else "")
        what = "failure" if n == 1 else "failures"
        return (
            f"The same {n} {what} came back {times} in a row ({ids}); stopping — the fix-until-green "
            "loop is not making progress."
        )

    # ---- test runs -----------------------------------------------------------------------------

    def digest(self, run: TestRun) -> Digest:
        """The model's view of `run` (see app.tools.digest)."""
        return build_digest(
            run, estimate=estimate_tokens, budget=self.config.test_digest_tokens, root=self.root.as_posix()
        )

    def note_test_run(self, run: TestRun, *, label: str = "The user ran the tests") -> Digest:
        """A run the app started (Run tests, Rerun failed, rerun-on-save): it becomes the last run
        (what rerun_failed reruns) and its digest rides on the model's next request."""
        self.last_test_run = run
        digest = self.last_digest = self.digest(run)
        text = f"[slipstream test run] {label} (`{run.command}`); the results:\n{digest.text}"
        self._pending_tests = _user(text)  # only the latest run matters to the model
        return digest

    def _take_pending_tests(self) -> list[dict[str, Any]]:
        item, self._pending_tests = self._pending_tests, None
        return [item] if item is not None else []

    def _finish_run(self, run: TestRun, prefix: str = "") -> ToolResult:
        self.last_test_run = run
        digest = self.last_digest = self.digest(run)
        self._pending_tests = None  # this run supersedes one the user started before
        self._failures.append(digest.signature)
        return ToolResult(run.ok, prefix + digest.text, {"digest": digest})

    # ---- tools ---------------------------------------------------------------------------------

    async def _call(self, call: Mapping[str, Any]) -> ToolResult:
        name = str(call.get("name", ""))
        call_id = str(call.get("call_id", ""))
        args = call.get("arguments", "")
        try:
            result = await self._dispatch(name, args)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a tool bug must not kill the loop: the model reads the error
            log.exception("tool %s failed", name)
            result = ToolResult(False, f"error: {name} failed inside Slipstream: {exc}")
        self._on_tool_output(call_id, result.output_text, result.ok)
        return result

    async def _dispatch(self, name: str, args: Any) -> ToolResult:
        loop = asyncio.get_running_loop()
        ctx = ToolContext(self.fs, seen=self.sync.workspace.ledger.seen_text, redact=self.fs.redact)
        # Validation and file tools are plain code over the project: off the loop for big trees.
        result = await loop.run_in_executor(None, execute, name, args, ctx)
        for notice in result.data.get("withheld") or ():
            self._notice("warning", f"{name}: {notice.strip('[]')}")
        if not result.ok:
            return result
        if result.change_set is not None:
            return await self._apply_patch(result.change_set)
        if result.deferred is not None:
            if name == "run_tests":
                return await self._run_tests(result.deferred)
            if name == "rerun_failed":
                return await self._rerun_failed()
            if name == "run_command":
                return await self._run_command(result.deferred)
        return result

    async def _ask(self, kind: ApprovalKind, title: str, payload: dict[str, Any]) -> ApprovalDecision:
        """Ask the user; Stop while the question is open counts as a refusal (nothing runs)."""
        if self._approve is None:
            return ApprovalDecision(False, reason="no one to ask")
        answer = asyncio.ensure_future(self._approve(kind, title, payload))
        stopped = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({answer, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if answer.done():
            return answer.result()
        answer.cancel()
        return ApprovalDecision(False, reason="the user pressed Stop")

    async def _apply_patch(self, change_set: ChangeSet) -> ToolResult:
        from app.tools.patch import PatchError

        payload = self.fs.describe(change_set.payload())  # shows where a link really writes
        if self.config.approval_policy in ("auto_patches", "auto_all"):
            decision = ApprovalDecision(True)
        else:
            decision = await self._ask("patch", "Review the proposed patch", payload)
        if not decision.accept:
            why = decision.reason or "the user rejected it"
            return ToolResult(False, f"patch not applied: {why}. Ask the user what they want instead.")
        hunks = decision.hunks or None
        try:
            applied = await asyncio.get_running_loop().run_in_executor(
                None, lambda: self.fs.apply(change_set, hunks, turn=self._turn_no, now=time.time())
            )
        except PatchError as exc:
            return ToolResult(False, f"error: patch not applied: {exc}")
        self.applied.append(applied)
        return ToolResult(True, applied.for_model())

    async def _run_tests(self, args: Mapping[str, Any]) -> ToolResult:
        # Arguments are data: the path is confined like any tool path, never an option.
        try:
            targets = [self.fs.target(str(args["path"])).rel] if args.get("path") else []
            cmd = detect_test_command(
                self.root, targets=targets, python=self.config.python, custom=self.config.test_command
            )
            if (
                args.get("keyword") and cmd.runner == "pytest"
            ):  # -k is pytest's; other runners take no keyword
                cmd = detect_test_command(
                    self.root, targets=targets, python=self.config.python, keyword=str(args["keyword"])
                )
        except ValueError as exc:  # PathRefused is a ValueError too
            return ToolResult(False, f"error: {exc}")
        if cmd.runner != "none" and not await self._command_allowed(cmd.display, tests=True, argv=cmd.argv):
            return ToolResult(False, "the user did not allow the test command to run")
        run = await run_tests(
            cmd, on_event=self._on_test_event, timeout=self.config.test_timeout_s, stop=self._stop
        )
        return self._finish_run(run)

    def failed_targets(self) -> list[str]:
        """The node ids to rerun: the failures the last run reported (never the model's text), each
        file part confined like any tool path. RerunRefused / PathRefused (both ValueError) say why not."""
        ids = rerun_targets(self.last_test_run)
        for nodeid in ids:
            self.fs.target(nodeid.split("::", 1)[0])
        return ids

    async def _rerun_failed(self) -> ToolResult:
        """Exactly the failed node ids of the last run, through run_tests' hardened path: an argv,
        the ids after "--", and the allow-list compared on that argv."""
        try:
            targets = self.failed_targets()
            cmd = detect_test_command(self.root, targets=targets, python=self.config.python)
        except ValueError as exc:
            return ToolResult(False, f"error: {exc}")
        if not await self._command_allowed(cmd.display, tests=True, argv=cmd.argv):
            return ToolResult(False, "the user did not allow the test command to run")
        run = await run_tests(
            cmd, on_event=self._on_test_event, timeout=self.config.test_timeout_s, stop=self._stop
        )
        n = len(targets)
        return self._finish_run(run, f"rerun of the {n} test{'s' if n > 1 else ''} that failed last time\n")

    async def _command_allowed(
        self,
        command: str,
        *,
        tests: bool = False,
        shell: bool = False,
        argv: Sequence[str] | str | None = None,
    ) -> bool:
        """Policy, then the user. `argv` (when known) is what the allow-list compares, exactly."""
        exact: Sequence[str] | str = argv if argv is not None else command
        if self.config.approval_policy == "auto_all":
            return True
        decision = self.config.command_policy.decide(exact)
        if decision == "deny":
            return False
        if decision == "allow":
            return True
        title = (
            "Run this test command?" if tests else ("Run this shell line?" if shell else "Run this command?")
        )
        answer = await self._ask(
            "command", title, {"command": command, "cwd": str(self.root), "shell": shell}
        )
        if answer.accept and answer.always:
            self.config.command_policy = self.config.command_policy.with_allowed(exact)
        return answer.accept

    async def _run_command(self, args: Mapping[str, Any]) -> ToolResult:
        command = str(args.get("command", ""))
        if self.config.command_policy.mode == "never" and self.config.approval_policy != "auto_all":
            return ToolResult(False, "refused: the approval policy does not allow commands in this project")
        argv = split_command(command)  # None: the line needs a shell, which only an approval grants
        if not await self._command_allowed(command, shell=argv is None):
            return ToolResult(False, f"the user did not allow `{command}` to run")
        timeout = float(args.get("timeout_s") or self.config.command_timeout_s)
        res = await run_process(
            command if argv is None else argv, cwd=self.root, timeout=timeout, stop=self._stop
        )
        return ToolResult(res.exit_code == 0, res.for_model())

    def undo_last(self) -> list[str]:
        """Undo the most recent applied patch; returns the paths restored."""
        restored = self.fs.undo()
        return [p for cp in restored for p in cp.post]


def _times(n: int) -> str:
    return {2: "twice", 3: "three times", 4: "four times", 5: "five times"}.get(n, f"{n} times")


def _user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def _output(call: Mapping[str, Any], text: str) -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": str(call.get("call_id", "")), "output": text}


__all__: Sequence[str] = ["INSTRUCTIONS", "Agent", "AgentConfig", "RunOutcome"]
