"""Scenarios shared by the bounded reliability tests and `make soak`: each returns a report of counts.

The chaos scenario: a scripted agent (user request -> read_file call -> answer) works through
`ContextSync.turn` while an edit script appends one marker line per change to project files, and
`ChaosProxy` (between the client and the server) cuts the connection at seeded random byte offsets.
The engine is `ScriptedEngine` following a fixed script (its step is picked by how many model turns
the chain holds, so a replayed turn produces the same output), wrapped in `Recorder`, which keeps
every `Turn` the server ran: `turn.history + turn.new_input` is exactly what that chain held.

"Equal transcripts" (what `normalise` keeps): the client's transcript as a list of
(user text) / (assistant text) / (function_call name, arguments) / (function_call_output text),
in order. Left out: ids and call_ids (fresh per response, and a replayed response gets new ones),
and the project-context items (snapshot and diff messages), whose number and text depend on when
the chain was rebuilt and how edits were coalesced. Context delivery is checked separately, on the
server side, by `change_counts`.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.adapters.project_fs import ProjectFS
from app.context.ledger import UPDATE_MARKER, is_context_item
from app.context.snapshot import SNAPSHOT_MARKER
from app.server.app import run_server
from app.server.engines.base import EngineOutput, Turn
from app.server.engines.scripted import Script, ScriptedConnection, ScriptedEngine
from app.services.session import Endpoint, ResponsesSession, TurnResult
from app.services.workspace import ContextSync, Workspace
from app.tools.fileops import ToolContext, execute
from app.tools.specs import responses_tools
from tests.reliability.proxy import ChaosProxy

Item = Mapping[str, Any]
MARKER = re.compile(r"CHANGE_(\d+) = \d+")
README = "# Demo project\n\nThe agent reads this file; the edit script never touches it.\n"
SETTINGS: dict[str, Any] = {
    "instructions": "You are a test agent.",
    "tools": responses_tools(),
    "tool_choice": "auto",
}


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def agent_script(requests: int) -> Script:
    """Two model turns per request: a read_file call, then a few hundred characters of answer."""
    script: Script = []
    for i in range(requests):
        script.append([{"tool_call": {"name": "read_file", "arguments": {"path": "README.md"}}}])
        body = " ".join(f"word{i}_{k}" for k in range(15))
        script.append([{"text": f"Answer {i}: {body}."}])
    return script


SCRIPT = agent_script(5000)  # more requests than any run makes: every answer comes from the script


def expected_transcript(requests: Sequence[str]) -> list[tuple[str, ...]]:
    """The normalised transcript the script produces for these user requests, in order."""
    read = execute("read_file", {"path": "README.md"}, ToolContext(_ReadmeOnly())).output_text
    out: list[tuple[str, ...]] = []
    for i, text in enumerate(requests):
        call, answer = SCRIPT[2 * i][0]["tool_call"], SCRIPT[2 * i + 1][0]["text"]
        out += [
            ("user", text),
            ("function_call", call["name"], json.dumps(call["arguments"], sort_keys=True)),
            ("function_call_output", read),
            ("assistant", answer),
        ]
    return out


class _ReadmeOnly:
    def read_bytes(self, path: str, limit: int | None = None) -> bytes | None:
        return README.encode() if path == "README.md" else None

    def walk(self, under: str = "") -> list[Any]:
        return []


class Recorder:
    """An engine wrapper that keeps every turn the server ran (shared across server restarts)."""

    name = "scripted"

    def __init__(self, engine: ScriptedEngine) -> None:
        self.engine = engine
        self.turns: list[Turn] = []
        self.started = asyncio.Event()  # set whenever a turn starts: the server is mid-response

    def connect(self) -> _RecordingConnection:
        return _RecordingConnection(self, self.engine.connect())

    async def aclose(self) -> None:
        pass


class _RecordingConnection:
    def __init__(self, rec: Recorder, inner: ScriptedConnection) -> None:
        self._rec, self._inner = rec, inner

    async def run(self, turn: Turn) -> AsyncIterator[EngineOutput]:
        self._rec.turns.append(turn)
        self._rec.started.set()
        async for out in self._inner.run(turn):
            yield out

    async def aclose(self) -> None:
        await self._inner.aclose()


def _text(item: Item) -> str:
    content = item.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return ""


def normalise(transcript: Sequence[Item]) -> list[tuple[str, ...]]:
    """The transcript as comparable tuples (see the module docstring for what is left out)."""
    out: list[tuple[str, ...]] = []
    for item in transcript:
        kind = item.get("type", "message")
        if kind == "message":
            if is_context_item(item):
                continue
            out.append((str(item.get("role")), _text(item)))
        elif kind == "function_call":
            args = item.get("arguments", "")
            try:
                args = json.dumps(json.loads(str(args)), sort_keys=True)
            except ValueError:
                pass
            out.append(("function_call", str(item.get("name")), str(args)))
        elif kind == "function_call_output":
            out.append(("function_call_output", str(item.get("output"))))
        else:
            out.append((str(kind),))
    return out


def calls_are_paired(transcript: Sequence[Item]) -> bool:
    """Every function_call_output answers a function_call earlier in the same transcript, once."""
    open_calls: set[str] = set()
    answered: set[str] = set()
    for item in transcript:
        if item.get("type") == "function_call":
            open_calls.add(str(item.get("call_id")))
        elif item.get("type") == "function_call_output":
            cid = str(item.get("call_id"))
            if cid not in open_calls or cid in answered:
                return False
            answered.add(cid)
    return answered == open_calls


def change_counts(chain: Sequence[Item]) -> dict[int, int]:
    """How many times each marker line was *introduced* into one chain: a line of a snapshot, or an
    added ('+') line of a diff. Diff context lines (' ') repeat what the chain already holds."""
    counts: dict[int, int] = {}
    for item in chain:
        text = _text(item) if item.get("type", "message") == "message" else ""
        if text.startswith(SNAPSHOT_MARKER):
            lines = [ln for ln in text.splitlines() if not ln.startswith(("+", "-", " "))]
        elif text.startswith(UPDATE_MARKER):
            lines = [ln[1:] for ln in text.splitlines() if ln.startswith("+") and not ln.startswith("+++")]
        else:
            continue
        for ln in lines:
            m = MARKER.fullmatch(ln.strip())
            if m:
                k = int(m.group(1))
                counts[k] = counts.get(k, 0) + 1
    return counts


@dataclass
class ChaosReport:
    """What one chaos (or restart) run did and found; `lost` must be 0."""

    requests: int = 0
    turns_ok: int = 0
    turns_failed: list[str] = field(default_factory=list)
    pushes: int = 0
    cuts: int = 0
    cut_labels: dict[str, int] = field(default_factory=dict)  # what the client was doing
    cut_phases: dict[str, int] = field(default_factory=dict)  # upgrade / websocket / http
    restarts: int = 0
    rotations: int = 0  # connections replaced before the age limit, at a turn boundary
    retries: int = 0  # turns resent on a new connection (on_retry): a rotation never causes one
    edits: int = 0
    connections: int = 0  # WebSocket connections the session opened
    proxy_connections: int = 0  # TCP connections through the proxy (WebSocket and HTTP)
    cut_connections: int = 0  # distinct proxy connections that were cut
    http_turns: int = 0
    bytes: int = 0
    server_turns: int = 0
    transcript: list[tuple[str, ...]] = field(default_factory=list)
    paired: bool = True
    duplicated_changes: list[tuple[int, int]] = field(default_factory=list)  # (server turn, change)
    missing_changes: list[int] = field(default_factory=list)  # not exactly once in the final chain
    unacked: list[str] = field(default_factory=list)  # files not "in_view" at the end

    @property
    def lost(self) -> int:
        """Turns that did not complete plus changes that did not reach the final chain exactly once."""
        return len(self.turns_failed) + len(self.missing_changes)


class _Agent:
    """The scripted agent: sends a request, runs the file tools it is asked for, sends their outputs."""

    def __init__(
        self, sync: ContextSync, fs: ProjectFS, report: ChaosReport, on_done: Callable[[], None]
    ) -> None:
        self.sync, self.fs, self.report, self.on_done = sync, fs, report, on_done
        self.doing = "idle"

    def _retry(self, why: str) -> None:
        self.report.retries += 1

    async def request(self, text: str) -> None:
        items: list[dict[str, Any]] = [user(text)]
        for _ in range(4):
            self.doing = "turn"
            try:
                result: TurnResult = await self.sync.turn(items, settings=SETTINGS, on_retry=self._retry)
            finally:
                self.doing = "idle"
            if not result.ok:
                self.report.turns_failed.append(f"{text}: {result.status} {result.error}")
                return
            self.report.turns_ok += 1
            self.on_done()
            calls = [i for i in result.output if i.get("type") == "function_call"]
            if not calls:
                return
            items = [
                {
                    "type": "function_call_output",
                    "call_id": str(c.get("call_id")),
                    "output": execute(
                        str(c.get("name")), c.get("arguments"), ToolContext(self.fs)
                    ).output_text,
                }
                for c in calls
            ]


async def _edit_script(root: Path, count: int, rng: random.Random, pause: tuple[float, float]) -> None:
    """Append `CHANGE_k = k` to one of three files, `count` times, with random pauses."""
    for k in range(count):
        path = root / "src" / f"f{k % 3}.py"
        with path.open("a", encoding="utf-8") as fh:
            fh.write(f"CHANGE_{k} = {k}\n")
        await asyncio.sleep(rng.uniform(*pause))


def _make_project(root: Path) -> None:
    (root / "src").mkdir(parents=True, exist_ok=True)
    (root / "README.md").write_text(README, encoding="utf-8")
    for n in range(3):
        (root / "src" / f"f{n}.py").write_text(f'"""Module {n}."""\n', encoding="utf-8")


class RestartableServer:
    """`slipstream serve` in-process on a fixed port; `kill()` drops every socket without a close
    frame (as a killed process would) and stops listening; `start()` brings it back."""

    def __init__(self, engine: Any, **kwargs: Any) -> None:
        self.engine, self.kwargs = engine, kwargs
        self.port = 0
        self.token: str | None = None
        self._cm: Any = None

    async def start(self) -> None:
        self._cm = run_server(self.engine, port=self.port, token=self.token, **self.kwargs)
        srv = await self._cm.__aenter__()
        self.port, self.token = srv.port, srv.token
        self.srv = srv

    async def kill(self) -> None:
        for conn in list(self.srv.state.connections):
            conn._abort_transport()
        cm, self._cm = self._cm, None
        if cm is not None:
            await cm.__aexit__(None, None, None)

    async def aclose(self) -> None:
        if self._cm is not None:
            await self.kill()


async def run_chaos(
    root: Path,
    *,
    seed: int = 1,
    cuts: int = 100,
    restarts: int = 0,
    rotations: int = 0,
    max_age_s: float = 3600.0,
    requests: int = 20,
    edits: int = 30,
    cut_range: tuple[int, int] = (1, 30_000),
    warmup_share: float = 0.3,
    timeout_s: float = 120.0,
    virtual_clock: bool = False,
) -> ChaosReport:
    """One scripted session through the chaos proxy; `cuts=0, restarts=0` is the uncut reference.

    At least `requests` requests are made; more while cuts or restarts are still due. A share of
    the cuts is moved into warm-ups (context pushes) as they start. With `restarts`, the server is
    killed mid-response and restarted on the same port that many times, each after some progress.
    With `rotations`, the server's connection age limit is `max_age_s` and the session goes on until
    the client rotated that many times; the client is told a limit 20% under the server's, so its
    rotation at a turn boundary never races the server's close on a loaded machine.

    With `virtual_clock`, the client and the server read one `StepClock` instead of the wall clock,
    and it moves only between requests, by half the client's limit: connection ages are then a count
    of requests, the same on an idle and on a loaded machine (no real-time race decides a rotation).
    """
    rng = random.Random(seed)
    clock = StepClock() if virtual_clock else None
    step = max_age_s * 0.8 * 0.5
    _make_project(root)
    rec = Recorder(ScriptedEngine(rate_tps=0, script=SCRIPT))
    report = ChaosReport()
    server = RestartableServer(rec, max_age_s=max_age_s)
    restore_server_clock = _server_clock(clock) if clock is not None else (lambda: None)
    await server.start()
    proxy = ChaosProxy("127.0.0.1", server.port, seed=seed)
    await proxy.start()
    ws = Workspace(root, quiet_s=0.02, max_window_s=0.2)
    session = ResponsesSession(
        Endpoint(f"ws://127.0.0.1:{proxy.port}/v1/responses", server.token, max_age_s=max_age_s * 0.8),
        rebuild=ws.rebuild,
        initial_delay=0.02,
        max_delay=0.2,
        clock=clock if clock is not None else time.monotonic,
    )
    sync = ContextSync(ws, session)
    fs = ProjectFS(root, state_dir=root.parent / f"{root.name}-state")
    progress = asyncio.Event()

    def on_done() -> None:
        proxy.progress()
        progress.set()

    agent = _Agent(sync, fs, report, on_done)
    pushing = False
    plain_push = sync.push

    async def push() -> bool:  # the same push, told apart in the cut log; some cuts moved into it
        nonlocal pushing
        pushing = True
        if report.pushes < 3 or rng.random() < warmup_share:
            proxy.cut_soon(1, 4000)
        try:
            ok = await plain_push()
        finally:
            pushing = False
        report.pushes += 1
        if ok:
            on_done()
        return ok

    sync.push = push  # type: ignore[method-assign]
    proxy.label = lambda: "warm-up" if pushing else agent.doing

    async def restarter() -> None:
        for _ in range(restarts):
            progress.clear()
            await progress.wait()
            rec.started.clear()
            await rec.started.wait()  # an engine turn has started: kill the server mid-response
            await server.kill()
            await asyncio.sleep(rng.uniform(0.0, 0.3))
            await server.start()
            report.restarts += 1

    try:
        await ws.start()
        if not await sync.push():
            raise AssertionError("the first snapshot push failed before any chaos")
        if cuts:
            proxy.arm_random(cut_range[0], cut_range[1], cuts, near_share=0.2)
        editor = asyncio.ensure_future(_edit_script(root, edits, rng, (0.0, 0.05)))
        killer = asyncio.ensure_future(restarter())

        async def work() -> None:
            i = 0
            while i < requests or not proxy.done or not killer.done() or session.rotations < rotations:
                await agent.request(f"request {i}")
                if clock is not None:
                    clock.advance(step)
                await asyncio.sleep(rng.uniform(0.0, 0.03))  # idle: pushes go out as warm-ups
                i += 1
                if i == requests:
                    await editor
            report.requests = i  # the final request below comes on top

        await asyncio.wait_for(work(), timeout_s)
        await killer
        proxy.disarm()
        report.edits = edits
        await ws.settle()
        await _wait(lambda: not ws.has_pending() and not session.busy, 10)
        await agent.request("final request")
        final = rec.turns[-1]
        counts = change_counts([*final.history, *final.new_input])
        report.missing_changes = [k for k in range(edits) if counts.get(k, 0) != 1]
        for n, turn in enumerate(rec.turns):
            seen = change_counts([*turn.history, *turn.new_input])
            report.duplicated_changes += [(n, k) for k, c in seen.items() if c > 1]
        transcript = session.client.transcript()
        report.transcript = normalise(transcript)
        report.paired = calls_are_paired(transcript)
        report.cuts = proxy.cuts
        for c in proxy.log:
            report.cut_labels[c.label] = report.cut_labels.get(c.label, 0) + 1
            report.cut_phases[c.phase] = report.cut_phases.get(c.phase, 0) + 1
        report.connections = session.connections
        report.proxy_connections = proxy.connections
        report.cut_connections = len({c.connection for c in proxy.log})
        report.rotations = session.rotations
        report.http_turns = session.http_turns
        report.bytes = proxy.bytes
        report.server_turns = len(rec.turns)
        report.unacked = [s.path for s in ws.status() if s.path.endswith(".py") and s.state != "in_view"]
    finally:
        await sync.aclose()
        await ws.aclose()
        await session.aclose()
        await proxy.aclose()
        await server.aclose()
        restore_server_clock()
    return report


class StepClock:
    """A clock that moves only when told (`advance`): time as a count of steps, not of seconds."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _server_clock(clock: StepClock) -> Callable[[], None]:
    """Point the in-process server's wall clock (`app.server.app` and `app.server.connection` read
    `time.time()`) at `clock`; returns the undo. The server takes no clock argument, so its modules'
    `time` is swapped."""
    import types
    from unittest import mock

    import app.server.app as server_app
    import app.server.connection as server_connection

    fake = types.SimpleNamespace(**{n: getattr(time, n) for n in dir(time) if not n.startswith("__")})
    fake.time = clock
    patchers = [mock.patch.object(module, "time", fake) for module in (server_app, server_connection)]
    for patcher in patchers:
        patcher.start()

    def undo() -> None:
        for patcher in patchers:
            patcher.stop()

    return undo


async def _wait(pred: Callable[[], bool], timeout: float) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.005)
