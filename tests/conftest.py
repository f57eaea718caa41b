"""Shared fixtures. Qt runs offscreen; see ../shared/design/QT-CI.md for why these patterns."""

from __future__ import annotations

import asyncio
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before any QApplication exists

import pytest


@pytest.fixture
def qloop(qapp):  # type: ignore[no-untyped-def]
    """Pattern A: a sync test drives a coroutine with qloop.run_until_complete(coro)."""
    import qasync

    loop = qasync.QEventLoop(qapp)
    asyncio.set_event_loop(loop)
    try:
        yield loop
    finally:
        loop.close()
        asyncio.set_event_loop(None)


@pytest.fixture
def running_qloop(qapp):  # type: ignore[no-untyped-def]
    """Pattern B: tasks from asyncio.ensure_future() advance inside qtbot.waitUntil()/waitSignal()."""
    import qasync

    loop = qasync.QEventLoop(qapp, already_running=True)
    asyncio.set_event_loop(loop)
    try:
        yield loop
    finally:
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for t in pending:
            t.cancel()
        if pending:
            qapp.processEvents()
        loop.stop()
        asyncio.events._set_running_loop(None)  # undo already_running
        loop.close()
        asyncio.set_event_loop(None)


async def wait_until(pred, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    """Use instead of qtbot.waitUntil inside async tests (which would wedge the loop)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.01)
