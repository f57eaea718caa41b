"""What the UI may see and call: the services façade, as a Protocol plus plain value types.

The UI paints the models the services own, subscribes to the signals and calls the methods; it never
touches adapters or the protocol. `app.services.app.AppServices` implements it for real and UI tests
use `tests/ui/fakes.FakeServices`; both are checked against it by mypy (typed factories).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from app.render.transcript import Transcript
from app.services.approvals import ApprovalDecision, ApprovalKind, ApprovalRequest
from app.services.settings import Settings, SettingsFacade
from app.services.signals import Signal
from app.tools.testrun import TestRun

__all__ = [
    "ApprovalDecision",
    "ApprovalKind",
    "ApprovalRequest",
    "BadgeState",
    "ConnectionState",
    "ConnectionStatus",
    "FileBadge",
    "Services",
    "ServicesFactory",
    "SessionInfo",
    "StreamStats",
]

ConnectionState = Literal["connecting", "warm", "streaming", "reconnecting", "offline", "error"]
BadgeState = Literal["in_view", "pending", "excluded", "summarised"]


@dataclass(frozen=True, slots=True)
class ConnectionStatus:
    state: ConnectionState
    detail: str = ""  # words for the user: "connected to ws://127.0.0.1:8765", "401: wrong key", ...
    engine: str = ""  # "scripted — no model", "gpt-5.3-codex via OpenAI", "llama.cpp (bridge)"
    endpoint: str = ""


@dataclass(frozen=True, slots=True)
class StreamStats:
    tokens_per_s_now: float = 0.0
    tokens_per_s_peak: float = 0.0
    context_tokens: int = 0
    last_turn_input_tokens: int = 0
    last_turn_cached_tokens: int = 0
    session_input_tokens: int = 0
    session_cached_tokens: int = 0


@dataclass(frozen=True, slots=True)
class FileBadge:
    path: str
    state: BadgeState
    reason: str = ""  # for excluded/summarised: "secret", "gitignored", "binary", "too large", ...


@dataclass(frozen=True, slots=True)
class SessionInfo:
    id: str
    title: str
    project: str
    updated_at: float
    turns: int


class Services(SettingsFacade, Protocol):
    """The façade the main window is built on (the settings dialog's part included).

    `conversation` and `test_run` are Qt-free models the services own and feed; the UI is handed
    them and paints (the transcript view and the tests panel). The signals carry typed values.
    """

    @property
    def project_root(self) -> Path: ...
    @property
    def conversation(self) -> Transcript: ...
    @property
    def test_run(self) -> TestRun: ...
    @property
    def connection_changed(self) -> Signal[[ConnectionStatus]]: ...
    @property
    def stats_changed(self) -> Signal[[StreamStats]]: ...
    @property
    def files_changed(self) -> Signal[[Sequence[FileBadge]]]: ...  # the whole list; the UI diffs it
    @property
    def approval_requested(self) -> Signal[[ApprovalRequest]]: ...
    @property
    def busy_changed(self) -> Signal[[bool]]: ...  # a turn (or tool loop) is running
    @property
    def banner_changed(self) -> Signal[[str]]: ...  # "" hides it
    @property
    def session_id(self) -> str | None: ...

    async def start(self) -> None: ...
    async def aclose(self) -> None: ...
    def send_message(self, text: str) -> None: ...
    def stop(self) -> None: ...
    def run_tests(self) -> None: ...
    def list_sessions(self) -> list[SessionInfo]: ...
    def open_session(self, session_id: str) -> None: ...
    def new_session(self) -> None: ...
    def pin(self, path: str, pinned: bool) -> None: ...
    def undo_last_patch(self) -> None: ...


# The composition root's factory: one services object per opened project.
ServicesFactory = Callable[[Path, Settings], Services]
