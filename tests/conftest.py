"""Shared fixtures. Qt runs offscreen; see ../shared/design/QT-CI.md for why these patterns.

Every test runs in a throwaway profile of its own (settings, history, checkpoints; no keychain), so no
test reads or writes the user's files and none sees what an earlier one left. Every test must also
leave nothing running: `_nothing_left_behind` fails a test that leaves a thread, a child process, a
visible Qt window or an active Qt timer, and `pytest_pyfunc_call` fails an async test that returns
with tasks still pending on its loop (they are cancelled first, within a bound, so the loop's teardown
cannot hang on them).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before any QApplication exists

import psutil
import pytest

from app import profile

# Anything spawned before the first test (collection, plugins) is in a throwaway profile too.
_SESSION_PROFILE = profile.use_throwaway_profile(Path(tempfile.mkdtemp(prefix="slipstream-tests-")))

LEAK_GRACE_S = 3.0  # threads and children get this long to end by themselves after a test


# ---- the throwaway profile, per test ------------------------------------------------------------


@pytest.fixture(autouse=True)
def _throwaway_profile(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh profile per test: SLIPSTREAM_PROFILE_DIR and the XDG folders point into it."""
    root = tmp_path_factory.mktemp("profile")
    env: dict[str, str] = {}
    profile.use_throwaway_profile(root, environ=env)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return root


# ---- nothing left behind ------------------------------------------------------------------------


def _threads() -> set[threading.Thread]:
    # Dummy threads are foreign threads (Qt's) that once ran Python; they stay listed after they end.
    return {t for t in threading.enumerate() if not isinstance(t, threading._DummyThread) and t.is_alive()}


def _children() -> dict[int, str]:
    out = {}
    for p in psutil.Process().children(recursive=True):
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                out[p.pid] = " ".join(p.cmdline())[:160] or p.name()
        except psutil.Error:
            continue
    return out


def _qt_state() -> tuple[dict[int, str], dict[int, str]]:
    """(visible top-level widgets, active QTimers under the app and the top-level widgets), by id."""
    widgets_mod = sys.modules.get("PySide6.QtWidgets")
    if widgets_mod is None:
        return {}, {}
    from PySide6.QtCore import QCoreApplication, QEvent, QTimer

    app = widgets_mod.QApplication.instance()
    if app is None:
        return {}, {}
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete.value)
    tops = list(widgets_mod.QApplication.topLevelWidgets())
    visible = {
        id(w): f"{type(w).__name__} {w.objectName() or w.windowTitle()!r}" for w in tops if w.isVisible()
    }
    timers: dict[int, str] = {}
    for owner in [app, *tops]:
        for t in owner.findChildren(QTimer):
            if t.isActive():
                timers[id(t)] = (
                    f"QTimer {t.objectName()!r} every {t.interval()} ms under {type(owner).__name__}"
                )
    return visible, timers


def _wait_until(check: Callable[[], bool], seconds: float) -> None:
    end = time.monotonic() + seconds
    while not check() and time.monotonic() < end:
        time.sleep(0.02)


@pytest.fixture(autouse=True)
def _nothing_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test that leaves a thread, a child process, a visible window or an active timer."""
    threads, children = _threads(), set(_children())
    widgets, timers = _qt_state()
    yield
    problems: list[str] = []
    _wait_until(lambda: not (_threads() - threads), LEAK_GRACE_S)
    problems += [f"thread {t.name!r} ({type(t).__name__})" for t in _threads() - threads]
    _wait_until(lambda: not (set(_children()) - children), LEAK_GRACE_S)
    left = {pid: cmd for pid, cmd in _children().items() if pid not in children}
    for pid, cmd in left.items():
        problems.append(f"child process {pid}: {cmd}")
        try:  # do not let it disturb the tests after this one
            psutil.Process(pid).kill()
        except psutil.Error:
            pass
    now_widgets, now_timers = _qt_state()
    problems += [f"visible window {desc}" for key, desc in now_widgets.items() if key not in widgets]
    problems += [f"active {desc}" for key, desc in now_timers.items() if key not in timers]
    if problems and not request.node.get_closest_marker("leaks_ok"):
        pytest.fail(f"{request.node.nodeid} left running: " + "; ".join(problems), pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> Generator[None, Any, Any]:
    """pytest-asyncio's per-test loop: when the test and its async fixtures are done, and before the loop
    is closed (which would wait without a limit), tasks still pending fail the test; they are
    cancelled first, with a bound."""
    result = yield
    if fixturedef.argname == "_function_scoped_runner" and hasattr(result, "get_loop"):
        # Finalizers run last-in first-out: the async fixtures set up after this one tear down first.
        fixturedef.addfinalizer(lambda: _check_loop(result, request.node.nodeid))
    return result


def _check_loop(runner: Any, nodeid: str) -> None:
    try:
        loop = runner.get_loop()
    except RuntimeError:
        return  # never started
    if loop.is_closed() or loop.is_running():
        return
    leaked = _cancel_pending(loop)
    if leaked:
        pytest.fail(f"{nodeid} left tasks pending on its loop: {'; '.join(leaked)}", pytrace=False)


def _cancel_pending(loop: asyncio.AbstractEventLoop, grace: float = 1.0) -> list[str]:
    """Tasks still pending on `loop` after it ran `grace` s more (the loop's own housekeeping, such as
    closing a collected async generator, finishes in that time): cancelled, given `grace` s again,
    and described (saying which ignored the cancellation)."""
    from app.services.lifetime import cancel_leftovers, describe, run_for

    pending = {t for t in asyncio.all_tasks(loop) if not t.done()}
    if pending:
        run_for(loop, pending, grace)
    pending = {t for t in pending if not t.done()}
    names = [describe(t) for t in pending]
    stuck = set(cancel_leftovers(loop, grace))
    return [f"{n}{' (ignored its cancellation)' if n in stuck else ''}" for n in names]


# ---- Qt + asyncio patterns (QT-CI.md §3) --------------------------------------------------------


@pytest.fixture
def qloop(qapp: Any) -> Iterator[asyncio.AbstractEventLoop]:
    """Pattern A: a sync test drives a coroutine with qloop.run_until_complete(coro)."""
    import qasync

    loop = qasync.QEventLoop(qapp)
    asyncio.set_event_loop(loop)
    leaked: list[str] = []
    try:
        yield loop
    finally:
        leaked = _cancel_pending(loop)
        loop.close()
        asyncio.set_event_loop(None)
    if leaked:
        pytest.fail(f"the test left tasks pending on its loop: {'; '.join(leaked)}", pytrace=False)


@pytest.fixture
def running_qloop(qapp: Any) -> Iterator[asyncio.AbstractEventLoop]:
    """Pattern B: tasks from asyncio.ensure_future() advance inside qtbot.waitUntil()/waitSignal()."""
    import qasync

    loop = qasync.QEventLoop(qapp, already_running=True)
    asyncio.set_event_loop(loop)
    leaked: list[str] = []
    try:
        yield loop
    finally:
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        leaked = [t.get_name() for t in pending]
        for t in pending:
            t.cancel()
        if pending:
            qapp.processEvents()
        loop.stop()
        asyncio.events._set_running_loop(None)  # undo already_running
        loop.close()
        asyncio.set_event_loop(None)
    if leaked:
        pytest.fail(f"the test left tasks pending on its loop: {'; '.join(leaked)}", pytrace=False)


async def wait_until(pred: Callable[[], object], timeout: float = 5.0) -> None:
    """Use instead of qtbot.waitUntil inside async tests (which would wedge the loop)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.01)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "leaks_ok: the test knowingly leaves something running (say why)")


def pytest_unconfigure(config: pytest.Config) -> None:
    import shutil

    shutil.rmtree(_SESSION_PROFILE, ignore_errors=True)
