"""FakeServices: the services façade's shape, recording calls; tests drive its models and signals by hand.

mypy checks this file (pyproject `files`): `fake_services` is a `ServicesFactory`, so the fake provably
satisfies the `Services` protocol the window is built on.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from app.protocol import events as ev
from app.render.transcript import Transcript
from app.services.api import (
    ApprovalRequest,
    ConnectionStatus,
    FileBadge,
    FileChanges,
    Services,
    ServicesFactory,
    SessionInfo,
    SideConversation,
    StreamStats,
)
from app.services.inspector import Inspector
from app.services.settings import KeychainInfo, Settings
from app.services.signals import Signal
from app.tools.testrun import TestRun


class FakeSide:
    """A side conversation the test feeds by hand (`conversation.apply(...)`)."""

    def __init__(self, side_id: str, title: str) -> None:
        self.id = side_id
        self.title = title
        self.conversation = Transcript()
        self.busy = False
        self.transport: Literal["lane", "connection", "http", ""] = "lane"
        self.changed: Signal[[]] = Signal("changed")


@dataclass
class FakeServices:
    """Records every call in `calls`; `scripted_reply` makes send_message stream a canned answer."""

    project_root: Path = field(default_factory=lambda: Path("/tmp/project"))
    settings: Settings = field(default_factory=Settings)
    keychain: KeychainInfo = field(default_factory=lambda: KeychainInfo(True, "memory Keyring", ""))
    scripted_reply: str | None = None
    sessions: list[SessionInfo] = field(default_factory=list)
    calls: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    keys: dict[str, str] = field(default_factory=dict)
    started: bool = False
    closed: bool = False
    session_id: str | None = None

    def __post_init__(self) -> None:
        self.conversation = Transcript()
        self.test_run = TestRun()
        self.inspector = Inspector()  # tests feed it with record_send / record_end
        self.connection_changed: Signal[[ConnectionStatus]] = Signal("connection_changed")
        self.stats_changed: Signal[[StreamStats]] = Signal("stats_changed")
        self.files_changed: Signal[[FileChanges]] = Signal("files_changed")
        self.approval_requested: Signal[[ApprovalRequest]] = Signal("approval_requested")
        self.busy_changed: Signal[[bool]] = Signal("busy_changed")
        self.banner_changed: Signal[[str]] = Signal("banner_changed")
        self.side_opened: Signal[[SideConversation]] = Signal("side_opened")
        self.side_removed: Signal[[SideConversation]] = Signal("side_removed")
        self.sides: dict[str, FakeSide] = {}

    async def start(self) -> None:
        self.started = True
        self._watch = asyncio.ensure_future(self._watch_folder())
        self.connection_changed.emit(
            ConnectionStatus("warm", "connected", "scripted — no model", "ws://fake")
        )

    async def _watch_folder(self) -> None:
        """A stand-in for the real watcher: each file shows pending once, then in view."""
        seen: set[str] = set()
        while True:
            try:
                names = sorted(p.name for p in self.project_root.iterdir() if p.is_file())
            except OSError:
                names = []
            fresh = [n for n in names if n not in seen]
            if fresh:
                self.files_changed.emit(
                    FileChanges.listing(FileBadge(n, "pending" if n in fresh else "in_view") for n in names)
                )
                seen.update(fresh)
            seen &= set(names)
            self.files_changed.emit(FileChanges.listing(FileBadge(n, "in_view") for n in names))
            await asyncio.sleep(0.02)

    async def aclose(self) -> None:
        self.closed = True
        watch = getattr(self, "_watch", None)
        if watch is not None:
            watch.cancel()

    def send_message(self, text: str) -> None:
        self.calls.append(("send_message", (text,)))
        self.conversation.add_user_message(text)
        if self.scripted_reply is not None:
            self.busy_changed.emit(True)
            self.reply(self.scripted_reply)
            self.busy_changed.emit(False)

    def reply(self, text: str, response_id: str = "resp_1") -> None:
        """Stream `text` into the conversation, a word a delta, as the socket's events would."""
        c = self.conversation
        c.apply(ev.ResponseCreated(response={"id": response_id, "status": "in_progress"}))
        for word in text.split(" "):
            c.apply(ev.OutputTextDelta(item_id="msg_1", output_index=0, delta=word + " "))
        c.apply(ev.OutputItemDone(output_index=0, item={"id": "msg_1"}))
        c.apply(ev.ResponseCompleted(response={"id": response_id, "status": "completed"}))

    def stop(self) -> None:
        self.calls.append(("stop", ()))

    def run_tests(self) -> None:
        self.calls.append(("run_tests", ()))

    def rerun_failed(self) -> None:
        self.calls.append(("rerun_failed", ()))

    def list_sessions(self) -> list[SessionInfo]:
        return list(self.sessions)

    def open_session(self, session_id: str) -> None:
        self.calls.append(("open_session", (session_id,)))

    def new_session(self) -> None:
        self.calls.append(("new_session", ()))

    def pin(self, path: str, pinned: bool) -> None:
        self.calls.append(("pin", (path, pinned)))

    def undo_last_patch(self) -> None:
        self.calls.append(("undo_last_patch", ()))

    def ask_side(self, text: str, side_id: str | None = None) -> SideConversation | None:
        self.calls.append(("ask_side", (text, side_id)))
        if side_id is None:
            side = FakeSide(f"side-{len(self.sides) + 1}", text[:60])
            self.sides[side.id] = side
            self.side_opened.emit(side)
        else:
            side = self.sides[side_id]
        side.conversation.add_user_message(text)
        return side

    def close_side(self, side_id: str) -> None:
        self.calls.append(("close_side", (side_id,)))
        side = self.sides.pop(side_id, None)
        if side is not None:
            self.side_removed.emit(side)

    def promote_side(self, side_id: str) -> None:
        self.calls.append(("promote_side", (side_id,)))
        self.close_side(side_id)

    # settings extension (SettingsFacade)
    def save_settings(self, settings: Settings) -> None:
        settings.validate()
        self.settings = settings
        self.calls.append(("save_settings", (settings,)))

    def keychain_info(self) -> KeychainInfo:
        return self.keychain

    def has_api_key(self, provider: str) -> bool:
        return provider in self.keys

    def set_api_key(self, provider: str, key: str) -> None:
        if not self.keychain.available:
            raise RuntimeError(self.keychain.message)
        self.keys[provider] = key
        self.calls.append(("set_api_key", (provider, "***")))

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def record_wire_demo(self) -> None:
        """Feed `inspector` a realistic session, as the real session would: a snapshot push on a fresh
        chain, a question, a context update with a diff, a stopped answer (chain kept), the next
        question (only new input), and a reconnect that re-sent everything."""
        feed_wire_demo(self.inspector)


SETTINGS = {
    "model": "gpt-5.3-codex",
    "store": False,
    "instructions": "You are Slipstream's coding assistant.",
    "tools": [{"type": "function", "name": "apply_patch", "parameters": {"type": "object"}}],
}
DEMO_DIFF = (
    "--- a/app/parse.py\n+++ b/app/parse.py\n@@ -3,6 +3,6 @@ def parse_header(lines):\n"
    "     out: dict[str, str] = {}\n     for line in lines:\n         if not line.strip():\n"
    "-            break\n+            continue  # a blank line inside the header\n"
    '         key, _, value = line.partition(":")\n'
)


def _msg(text: str, role: str = "user") -> dict[str, Any]:
    kind = "input_text" if role == "user" else "output_text"
    return {"type": "message", "role": role, "content": [{"type": kind, "text": text}]}


def feed_wire_demo(insp: Inspector) -> None:
    """See `FakeServices.record_wire_demo`."""
    import json

    convo: list[dict[str, Any]] = []

    def send(
        items: list[dict[str, Any]],
        prev: str | None,
        rid: str,
        usage: tuple[int, int, int],
        status: str = "completed",
        generate: bool = True,
        cause: str = "",
        answer: str = "",
        kept: bool = False,
        transport: str = "websocket",
    ) -> None:
        convo.extend(items)
        body: dict[str, Any] = {"type": "response.create", **SETTINGS, "input": items}
        if prev:
            body["previous_response_id"] = prev
        if not generate:
            body["generate"] = False
        insp.record_send(
            json.dumps(body).encode(), transport=transport, fresh_cause=cause, transcript=list(convo)
        )
        inp, cached, out = usage
        insp.record_end(
            status=status,
            response_id=rid,
            ttft_ms=180.0 if generate else None,
            kept_chain=kept,
            usage={
                "input_tokens": inp,
                "input_tokens_details": {"cached_tokens": cached},
                "output_tokens": out,
            },
        )
        if answer:
            convo.append(_msg(answer, "assistant"))

    snapshot = "[slipstream context snapshot] 14 files, 9 shown in full (budget 32k tokens)\n\n" + "".join(
        f"=== app/module_{n}.py ===\n" + "def f():\n    return 42\n" * 40 for n in range(9)
    )
    send([_msg(snapshot)], None, "resp_a1", (9120, 0, 0), generate=False)
    send(
        [_msg("Why does test_parse_header fail?")],
        "resp_a1",
        "resp_a2",
        (9160, 9120, 310),
        answer="parse_header stops at the first blank line.",
    )
    update = "[slipstream context update] 1 file changed: app/parse.py (+1 -1)\n\n" + DEMO_DIFF
    send([_msg(update)], "resp_a2", "resp_a3", (9590, 9470, 0), generate=False)
    send(
        [_msg("/long 20000 explain the whole parser")],
        "resp_a3",
        "resp_a4",
        (9610, 9590, 212),
        status="cancelled",
        kept=True,
        answer="The parser reads the header line by line",
    )
    send([_msg("Thanks. Now run the tests.")], "resp_a4", "resp_a5", (9835, 9822, 95), answer="11 passed.")
    send(
        [_msg("And the client tests?")],
        None,
        "resp_b1",
        (9900, 0, 120),
        cause="connection lost (code 1006)",
        answer="All 7 passed.",
    )


def fake_services(root: Path, settings: Settings) -> Services:
    """A `ServicesFactory` (the composition root's type) making fakes: mypy proves the fit."""
    return FakeServices(project_root=root, settings=settings)


_FACTORY: ServicesFactory = fake_services
