"""Approvals: the agent asks, the UI answers, as typed values.

`Approvals.ask(kind, title, payload)` emits an `ApprovalRequest` on `requested` and waits for the
UI's `ApprovalDecision` (the diff review or the command prompt calls `request.resolve` exactly once).
If the agent stops waiting (the user pressed Stop), the request's `withdrawn` signal fires so the UI
closes its dialog.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from app.services.signals import Signal

__all__ = ["ApprovalDecision", "ApprovalKind", "ApprovalRequest", "Approvals"]

ApprovalKind = Literal["patch", "command"]


@dataclass(frozen=True, slots=True)
class ApprovalDecision:
    """The user's answer. Patch: `hunks` = {path: [accepted per hunk]} (None: all of it).
    Command: `always` = allow this command from now on. `reason` says why it was refused."""

    accept: bool
    hunks: Mapping[str, Sequence[bool]] | None = None
    always: bool = False
    reason: str = ""


@dataclass(slots=True)
class ApprovalRequest:
    """A patch or a command waiting for the user. The UI calls `resolve` exactly once.

    kind "patch": `payload` = {"files": [{"path", "op", "hunks": [{"header", "lines"}]}], "patch": str}.
    kind "command": `payload` = {"command": str, "cwd": str}.
    """

    kind: ApprovalKind
    title: str
    payload: dict[str, Any]
    resolve: Callable[[ApprovalDecision], None]
    # Emitted when the question no longer stands (the user pressed Stop): the UI closes its dialog.
    withdrawn: Signal[[]] = field(default_factory=lambda: Signal("withdrawn"))


class Approvals:
    """One future per question (see the module docstring)."""

    def __init__(self) -> None:
        self.requested: Signal[[ApprovalRequest]] = Signal("approval_requested")

    async def ask(self, kind: ApprovalKind, title: str, payload: dict[str, Any]) -> ApprovalDecision:
        fut: asyncio.Future[ApprovalDecision] = asyncio.get_running_loop().create_future()

        def resolve(decision: ApprovalDecision) -> None:
            if not fut.done():
                fut.set_result(decision)

        request = ApprovalRequest(kind, title, payload, resolve)
        self.requested.emit(request)
        try:
            return await fut
        except asyncio.CancelledError:  # Stop: the agent no longer waits for this answer
            request.withdrawn.emit()
            raise
