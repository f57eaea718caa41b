"""What the UI may see and call: the services façade, as a Protocol plus plain value types.

The UI subscribes to the signals and calls the methods; it never touches adapters or the protocol.
`app.services.app.AppServices` implements it for real; UI tests use a fake with the same shape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from app.context.ledger import BadgeState as BadgeState
from app.context.ledger import FileStatus
from app.services.settings import KeychainInfo, Settings
from app.services.signals import Signal

ConnectionState = Literal["connecting", "warm", "streaming", "reconnecting", "offline", "error"]


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


# One row of the Context panel: path, state, reason ("secret", "gitignored", "binary", "too large"...).
# The ledger's own value, so 100,000 rows reach the UI without a copy per row.
FileBadge = FileStatus


@dataclass(frozen=True, slots=True)
class FileChanges:
    """The Context panel rows that changed since the last `files_changed` (never the whole list:
    a save in a 100,000-file project hands over one row).

    `rows`: new or changed badges by path; `added`: the paths among them without a row before, and
    `removed`: the paths whose row goes, both sorted; `counts`: totals per state after the change;
    `reset`: drop every row first (another project); `indexing`: the first index is still running;
    `order`: when many rows came or went, every path with a row, sorted (built off the GUI thread)."""

    rows: Mapping[str, FileBadge]
    added: Sequence[str] = ()
    removed: Sequence[str] = ()
    counts: Mapping[str, int] = field(default_factory=dict)
    reset: bool = False
    indexing: bool = False
    order: Sequence[str] | None = None

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


@dataclass(slots=True)
class ApprovalRequest:
    """A patch or a command waiting for the user. The UI calls `resolve` exactly once.

    kind "patch": `payload` = {"files": [{"path", "op", "hunks": [{"header", "lines"}]}], "patch": str};
    decision = {"accept": True/False, "hunks": {path: [bool per hunk]}}.
    kind "command": `payload` = {"command": str, "cwd": str}; decision = {"accept": bool, "always": bool}.
    """

    kind: Literal["patch", "command"]
    title: str
    payload: dict[str, Any]
    resolve: Callable[[dict[str, Any]], None]
    # Emitted when the question no longer stands (the user pressed Stop): the UI closes its dialog.
    withdrawn: Signal[[]] = field(default_factory=lambda: Signal("withdrawn"))


@dataclass(frozen=True, slots=True)
class TestEvent:
    """One pytest phase event or a runner line, as streamed by the test adapter."""

    __test__ = False  # not a pytest test class
    kind: str  # "run_started", "collected", "started", "passed", "failed", "skipped", "xfailed", "error", "output", "run_finished"
    nodeid: str = ""
    duration: float = 0.0
    text: str = ""  # failure text / output line / summary
    data: dict[str, Any] = field(default_factory=dict)


class TranscriptSignals:
    """The stream of transcript operations, mirroring `app.render.transcript.Transcript`'s input API."""

    def __init__(self) -> None:
        self.user_message: Signal[[str]] = Signal("user_message")
        self.assistant_begin: Signal[[str]] = Signal("assistant_begin")  # response_id
        self.text_delta: Signal[[str, str]] = Signal("text_delta")  # item_id, delta
        self.reasoning_delta: Signal[[str, str]] = Signal("reasoning_delta")
        self.tool_call_begin: Signal[[str, str, str]] = Signal("tool_call_begin")  # item_id, name, call_id
        self.tool_args_delta: Signal[[str, str]] = Signal("tool_args_delta")
        self.item_end: Signal[[str]] = Signal("item_end")
        self.tool_output: Signal[[str, str, bool]] = Signal("tool_output")  # call_id, text, ok
        # kind ("info" | "warning" | "error" | "context" | "banner"), text
        self.notice: Signal[[str, str]] = Signal("notice")
        self.response_end: Signal[[str]] = Signal("response_end")  # completed | incomplete | failed | cancelled
        self.cleared: Signal[[]] = Signal("cleared")  # another session was opened: start the view afresh


class Services(Protocol):
    """The façade the main window is built on."""

    project_root: Path
    transcript: TranscriptSignals
    connection_changed: Signal[[ConnectionStatus]]
    stats_changed: Signal[[StreamStats]]
    files_changed: Signal[[FileChanges]]  # rows that changed, never the whole list
    approval_requested: Signal[[ApprovalRequest]]
    test_event: Signal[[TestEvent]]
    busy_changed: Signal[[bool]]  # a turn (or tool loop) is running
    banner_changed: Signal[[str]]  # "" hides it

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

    # settings and keys (the settings dialog)
    settings: Settings
    session_id: str | None

    def save_settings(self, settings: Settings) -> None: ...
    def keychain_info(self) -> KeychainInfo: ...
    def has_api_key(self, provider: str) -> bool: ...
    def set_api_key(self, provider: str, key: str) -> None: ...
