"""`slipstream --smoke`: one scripted turn end to end through the real window, then a screenshot.

The message goes in through the composer (the same path a user takes); the run waits for the
services' `response_end` and for the tool loop to go idle, flushes the transcript, saves a
screenshot and returns one line of result. Everything is bounded by `timeout` (60 s by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtWidgets import QApplication

from app.services.api import FileChanges, Services
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
    flush = getattr(window.transcript, "flush", None)
    if callable(flush):
        flush()
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
    ended: asyncio.Future[str] = loop.create_future()
    idle = asyncio.Event()
    idle.set()
    chars = 0

    def on_end(status: str) -> None:
        if not ended.done():
            ended.set_result(status)

    def on_busy(busy: bool) -> None:
        (idle.clear if busy else idle.set)()

    def on_text(_item: str, delta: str) -> None:
        nonlocal chars
        chars += len(delta)

    services.transcript.response_end.connect(on_end)
    services.busy_changed.connect(on_busy)
    services.transcript.text_delta.connect(on_text)
    try:
        window.composer.edit.setPlainText(message)
        window.composer.edit.submit()
        deadline = loop.time() + timeout
        try:
            status = await asyncio.wait_for(asyncio.shield(ended), timeout)
            await asyncio.wait_for(idle.wait(), max(deadline - loop.time(), 0.01))
        except TimeoutError:
            conn = window.status.status
            what = "response_end" if not ended.done() else "end of the tool loop"
            return SmokeResult(
                False, f"smoke: FAIL — no {what} within {timeout:g} s (connection: {conn.state} {conn.detail})".rstrip()
            )
        elapsed = time.perf_counter() - t0
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
        return SmokeResult(ok, f"smoke: {verdict} — response {status} in {elapsed:.2f} s, {chars} chars, "
                               f"{synced.line}, {engine}{shot}")
    finally:
        services.transcript.response_end.disconnect(on_end)
        services.busy_changed.disconnect(on_busy)
        services.transcript.text_delta.disconnect(on_text)


async def _edit_synced(services: Services, timeout: float) -> SmokeResult:
    """Edit a file as the user would in their editor and wait for the model's view to follow:
    the new file shows up pending, then in view; deleting it again leaves the project as it was."""
    loop = asyncio.get_running_loop()
    name = f"slipstream-smoke-{os.getpid()}.txt"
    path = services.project_root / name
    states: dict[str, str] = {}
    changed = asyncio.Event()

    def on_files(changes: FileChanges) -> None:
        if changes.reset:
            states.clear()
        for p in changes.removed:
            states.pop(p, None)
        states.update((p, b.state) for p, b in changes.rows.items())
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
        await until(lambda: states.get(name) == "in_view", f"{name} in the model's view")
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
