"""`slipstream --smoke`: one scripted turn end to end through the real window, then a screenshot.

The message goes in through the composer (the same path a user takes); the run waits for the
conversation model to show the response's end and for the tool loop to go idle, for the transcript
to be painted, saves a screenshot and returns one line of result. Everything is bounded by
`timeout` (60 s by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from app.render.transcript import BlockKind
from app.services.api import ApprovalDecision, ApprovalRequest, BadgeTable, FileChanges, Services
from app.ui.main_window import MainWindow

SMOKE_MESSAGE = "Smoke test: say hello and show me some code."
SMOKE_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class SmokeResult:
    ok: bool
    line: str

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1


def save_screenshot(window: MainWindow, path: Path, *, screen: bool = False) -> Path:
    """widget.grab() (works offscreen), or the whole screen with `screen` (a real framebuffer, e.g. Xvfb)."""
    while window.transcript.pending:
        window.transcript.flush()
    QApplication.processEvents()
    if screen:
        qscreen = window.screen() or QApplication.primaryScreen()
        pixmap = qscreen.grabWindow(0)
    else:
        pixmap = window.grab()
    path.parent.mkdir(parents=True, exist_ok=True)
    if not pixmap.save(str(path)):
        raise OSError(f"could not write the screenshot to {path}")
    return path


async def run_smoke(
    window: MainWindow,
    services: Services | None,
    *,
    screenshot: Path | None = None,
    screen: bool = False,
    timeout: float = SMOKE_TIMEOUT,
    message: str = SMOKE_MESSAGE,
    unavailable_reason: str = "",
) -> SmokeResult:
    """Send one message, wait for the turn to finish, screenshot; never raises, never hangs."""
    if services is None:
        return SmokeResult(False, f"smoke: FAIL — no services ({unavailable_reason or 'not available'})")
    loop = asyncio.get_running_loop()
    t0 = time.perf_counter()
    conv = services.conversation
    before, first = conv.response_id, conv.next_id
    idle = asyncio.Event()
    idle.set()

    def on_busy(busy: bool) -> None:
        (idle.clear if busy else idle.set)()

    def ended() -> bool:  # the model shows a response that began after the send, and its end
        return conv.response_id != before and bool(conv.status)

    asked: list[str] = []

    def refuse(request: ApprovalRequest) -> None:
        # Nobody answers a smoke run, and it must never run a project's code or patch it: every
        # question (a test command, a patch) is refused, as a user pressing "Refuse" would.
        asked.append(request.kind)

        def answer() -> None:
            request.resolve(ApprovalDecision(False, reason="a smoke run approves nothing"))
            request.withdrawn.emit()  # and its dialog closes

        QTimer.singleShot(0, answer)  # after the controller has shown its dialog

    services.busy_changed.connect(on_busy)
    services.approval_requested.connect(refuse)
    try:
        window.composer.edit.setPlainText(message)
        window.composer.edit.submit()
        deadline = loop.time() + timeout
        if not await _until(ended, deadline):
            conn = window.status.status
            return SmokeResult(
                False,
                f"smoke: FAIL — no response end within {timeout:g} s "
                f"(connection: {conn.state} {conn.detail})".rstrip(),
            )
        if not await _until(lambda: idle.is_set() and not window.transcript.pending, deadline):
            return SmokeResult(False, f"smoke: FAIL — no end of the tool loop within {timeout:g} s")
        status = conv.status
        elapsed = time.perf_counter() - t0
        chars = sum(
            len(b.text)
            for b in (conv.block(i) for i in range(first, conv.next_id))
            if b.kind not in _NOT_ANSWER
        )
        synced = await _edit_synced(services, max(deadline - loop.time(), 1.0))
        if not synced.ok:
            return synced
        shot = ""
        if screenshot is not None:
            try:
                shot = f", screenshot {save_screenshot(window, screenshot, screen=screen)}"
            except OSError as exc:
                return SmokeResult(False, f"smoke: FAIL — {exc}")
        engine = window.status.status.engine or "unknown engine"
        ok = status == "completed"
        verdict = "ok" if ok else "FAIL"
        return SmokeResult(
            ok,
            f"smoke: {verdict} — response {status} in {elapsed:.2f} s, {chars} chars, "
            f"{synced.line}, {engine}{shot}" + (f", refused {len(asked)} approval(s)" if asked else ""),
        )
    finally:
        services.busy_changed.disconnect(on_busy)
        services.approval_requested.disconnect(refuse)


_NOT_ANSWER = frozenset({BlockKind.USER, BlockKind.NOTICE, BlockKind.TOOL_CALL, BlockKind.TOOL_OUTPUT})


async def _until(pred: Callable[[], bool], deadline: float) -> bool:
    """Poll `pred` each frame until it holds (True) or the loop's clock passes `deadline` (False)."""
    loop = asyncio.get_running_loop()
    while not pred():
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.016)
    return True


async def _edit_synced(services: Services, timeout: float) -> SmokeResult:
    """Edit a file as the user would in their editor and wait for the model's view to follow:
    the new file shows up pending, then in view; deleting it again leaves the project as it was."""
    loop = asyncio.get_running_loop()
    name = f"slipstream-smoke-{os.getpid()}.txt"
    path = services.project_root / name
    states = BadgeTable()
    changed = asyncio.Event()

    def on_files(changes: FileChanges) -> None:
        states.take(changes)
        changed.set()

    async def until(pred: Callable[[], bool], what: str) -> None:
        end = loop.time() + timeout
        while not pred():
            changed.clear()
            left = end - loop.time()
            if left <= 0:
                raise TimeoutError(what)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), min(left, 0.5))

    services.files_changed.connect(on_files)
    t0 = time.perf_counter()
    try:
        path.write_text("edited by slipstream --smoke\n", encoding="utf-8")
        await until(lambda: states.state(name) == "in_view", f"{name} in the model's view")
        took = time.perf_counter() - t0
        path.unlink()
        await until(lambda: name not in states, f"the deletion of {name} synced")
        return SmokeResult(True, f"file edit synced in {took * 1000:.0f} ms")
    except OSError as exc:
        return SmokeResult(False, f"smoke: FAIL — could not edit a file in {services.project_root}: {exc}")
    except TimeoutError as exc:
        return SmokeResult(False, f"smoke: FAIL — no sync within {timeout:.0f} s: waiting for {exc}")
    finally:
        services.files_changed.disconnect(on_files)
        with contextlib.suppress(OSError):
            path.unlink()
