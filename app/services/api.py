"""What the UI may see and call: the services façade, as a Protocol plus plain value types.

The UI paints the models the services own, subscribes to the signals and calls the methods; it never
touches adapters or the protocol. `app.services.app.AppServices` implements it for real and UI tests
use `tests/ui/fakes.FakeServices`; both are checked against it by mypy (typed factories).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from app.context.ledger import PENDING, Base, FileStatus
from app.context.ledger import BadgeState as BadgeState
from app.context.ledger import BadgeTable as BadgeTable
from app.render.transcript import Transcript
from app.services.approvals import ApprovalDecision, ApprovalKind, ApprovalRequest
from app.services.inspector import Inspector
from app.services.settings import Settings, SettingsFacade
from app.services.signals import Signal
from app.tools.testrun import TestRun

__all__ = [
    "ApprovalDecision",
    "ApprovalKind",
    "ApprovalRequest",
    "BadgeState",
    "BadgeTable",
    "ConnectionState",
    "ConnectionStatus",
    "FileBadge",
    "FileChanges",
    "Services",
    "ServicesFactory",
    "SessionInfo",
    "SideConversation",
    "SnapshotSummary",
    "StreamStats",
]

# connecting: the first socket is opening; warm: connected and idle; streaming: a request is running;
# reconnecting: the socket was lost, retrying (`attempt`); rotating: renewing the socket early, before
# the provider's age limit; idle: no socket open and nothing wrong (after a Stop that had to drop it);
# offline: cannot reach the endpoint; error: the endpoint refused us (a key, a policy).
ConnectionState = Literal[
    "connecting", "warm", "streaming", "reconnecting", "rotating", "idle", "offline", "error"
]


@dataclass(frozen=True, slots=True)
class ConnectionStatus:
    state: ConnectionState
    detail: str = ""  # words for the user: "connected to ws://127.0.0.1:8765", "401: wrong key", ...
    engine: str = ""  # "scripted — no model", "gpt-5.3-codex via OpenAI", "llama.cpp (bridge)"
    endpoint: str = ""
    transport: str = ""  # "websocket" | "http" | "" (none yet)
    attempt: int = 0  # reconnecting: this attempt's number (1-based) ...
    max_attempts: int = 0  # ... of at most this many before HTTP is tried
    rotate_at: float | None = None  # time.monotonic() when the socket is renewed early (None: no socket)
    rebuilds: int = 0  # fresh chains after the first: each one re-sent the whole conversation
    rebuild_causes: tuple[tuple[str, int], ...] = ()  # (cause, count), most frequent first
    ttft_ms: float | None = None  # the last turn's time to first token
    sent_ratio: float | None = None  # bytes sent / bytes a stateless client would have sent (session)


@dataclass(frozen=True, slots=True)
class StreamStats:
    tokens_per_s_now: float = 0.0
    tokens_per_s_peak: float = 0.0
    context_tokens: int = 0
    last_turn_input_tokens: int = 0
    last_turn_cached_tokens: int = 0
    session_input_tokens: int = 0
    session_cached_tokens: int = 0


# One row of the Context panel: path, state, reason ("secret", "gitignored", "binary", "too large"...).
# The ledger's own value, so 100,000 rows reach the UI without a copy per row.
FileBadge = FileStatus


@dataclass(frozen=True, slots=True)
class SnapshotSummary:
    """What a fresh chain's first context holds: the budget and its choices (the Context panel's header)."""

    budget_tokens: int
    tokens: int
    full: tuple[str, ...]  # files sent in full, best first
    listed: int  # files only listed (path and size)


@dataclass(frozen=True, slots=True)
class FileChanges:
    """The Context panel rows that changed since the last `files_changed` (never the whole list:
    a save in a 100,000-file project hands over one row).

    `rows`: new or changed badges by path (a row not in it has the base badge, `base`); `added`: the
    paths without a row before, and `removed`: the paths whose row goes, both sorted; `rebased`: the
    base badge changed, every row not in `rows` now has it (`rows` lists every row that differs);
    `counts`: totals per state after the change; `reset`: drop every row first (another project);
    `indexing`: the first index is still running; `order`: when many rows came or went, every path
    with a row, sorted (built off the GUI thread); `snapshot`: what a fresh chain's first context
    chose, when one was just built. `BadgeTable.take` folds these in (see `StatusChanges`)."""

    rows: Mapping[str, FileBadge]
    added: Sequence[str] = ()
    removed: Sequence[str] = ()
    counts: Mapping[str, int] = field(default_factory=dict)
    reset: bool = False
    indexing: bool = False
    order: Sequence[str] | None = None
    snapshot: SnapshotSummary | None = None  # set when a fresh chain's first context was just built
    base: Base = PENDING
    rebased: bool = False

    @classmethod
    def listing(cls, badges: Iterable[FileBadge], *, reset: bool = True) -> FileChanges:
        """Every row at once (fakes, tests, a small project): a reset followed by these rows."""
        rows = {b.path: b for b in badges}
        counts: dict[str, int] = {}
        for b in rows.values():
            counts[b.state] = counts.get(b.state, 0) + 1
        return cls(rows, sorted(rows), (), counts, reset=reset)


@dataclass(frozen=True, slots=True)
class SessionInfo:
    id: str
    title: str
    project: str
    updated_at: float
    turns: int


class SideConversation(Protocol):
    """A side conversation on its own lane (`app.services.lanes.SideLane`): the pane paints
    `conversation` and listens to `changed` (busy, transport, closed)."""

    @property
    def id(self) -> str: ...  # its stream_id, "side-1", ...
    @property
    def title(self) -> str: ...
    @property
    def conversation(self) -> Transcript: ...
    @property
    def busy(self) -> bool: ...
    @property
    def transport(self) -> Literal["lane", "connection", "http", ""]: ...  # "" until its first turn
    @property
    def changed(self) -> Signal[[]]: ...


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
    def inspector(self) -> Inspector: ...  # what went on the wire, request by request (context inspector)
    @property
    def connection_changed(self) -> Signal[[ConnectionStatus]]: ...
    @property
    def stats_changed(self) -> Signal[[StreamStats]]: ...
    @property
    def files_changed(self) -> Signal[[FileChanges]]: ...  # rows that changed, never the whole list
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
    def rerun_failed(self) -> None: ...  # exactly the failed tests of the last run
    def list_sessions(self) -> list[SessionInfo]: ...
    def open_session(self, session_id: str) -> None: ...
    def new_session(self) -> None: ...
    def pin(self, path: str, pinned: bool) -> None: ...
    def undo_last_patch(self) -> None: ...
    # side conversations: concurrent with the agent, on their own lanes of its socket
    @property
    def side_opened(self) -> Signal[[SideConversation]]: ...
    @property
    def side_removed(self) -> Signal[[SideConversation]]: ...
    def ask_side(
        self, text: str, side_id: str | None = None
    ) -> SideConversation | None: ...  # None: a new one
    def close_side(self, side_id: str) -> None: ...
    def promote_side(
        self, side_id: str
    ) -> None: ...  # becomes a stored session (opened when the agent is idle)


# The composition root's factory: one services object per opened project.
ServicesFactory = Callable[[Path, Settings], Services]
