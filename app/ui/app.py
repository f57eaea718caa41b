"""The GUI entry: `run_gui(argv)` parses `[PATH] [--smoke] [--screenshot PNG] [--screen]` and runs
the window on a qasync loop (`asyncio.run(..., loop_factory=...)`, STYLE.md §4/§7.13).

Services come from the lead's factory `app.services.app.create_services(root, settings)`, imported
lazily. If it is missing or fails, the window still opens, offline, and says why (an error dialog,
or the smoke result line) — the app never dies with a bare traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import linecache
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, cast

from app.profile import PROFILE_ENV

if TYPE_CHECKING:  # the services stay unimported until a project opens (startup time)
    from app.services.api import ServicesFactory

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GuiArgs:
    path: Path
    smoke: bool = False
    screenshot: Path | None = None
    screen: bool = False


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line, not a usage dump, and status 2 (as the headless commands do)."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parse_args(argv: list[str]) -> GuiArgs:
    """Raises SystemExit (status 2, message on stderr) on bad arguments, like argparse."""
    p = _Parser(
        prog="slipstream",
        description="Slipstream desktop app.",
        epilog="Exit status: 0 closed normally (window, Ctrl+Q, SIGTERM/SIGINT/SIGHUP); 1 Qt cannot "
        "start or the smoke run failed; 2 bad arguments or no display.",
    )
    p.add_argument("path", nargs="?", default=".", help="project folder (default: the current folder)")
    p.add_argument("--smoke", action="store_true", help="run one scripted turn end to end, then exit")
    p.add_argument("--screenshot", metavar="PNG", type=Path, help="save a screenshot of the window")
    p.add_argument("--screen", action="store_true", help="grab the whole screen instead of the window")
    ns = p.parse_args(argv)
    path = Path(ns.path).expanduser()
    if not path.is_dir():
        p.error(f"{path} is not a folder")
    return GuiArgs(path.resolve(), ns.smoke, ns.screenshot, ns.screen)


def _seconds_since_process_start() -> float:
    """Wall time since this process started: /proc's start tick (1/100 s) against the boot clock."""
    try:
        with open("/proc/self/stat", encoding="ascii") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        return time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return time.time() - _IMPORTED_AT


_IMPORTED_AT = time.time()


def load_factory() -> tuple[ServicesFactory | None, str]:
    """The lead's services factory, or None and the reason."""
    # Imported by name: the factory (a composition root) reaches the adapters, which app.ui must not
    # import; import-linter follows static imports only, so it keeps guarding the widgets.
    try:
        module = importlib.import_module("app.services.app")
    except ImportError as exc:
        return None, f"the services are not available ({exc})"
    factory = getattr(module, "create_services", None)
    if not callable(factory):
        return None, "app.services.app has no create_services(root, settings)"
    return cast("ServicesFactory", factory), ""


def run_gui(
    argv: list[str], factory: ServicesFactory | None = None, *, watchdog_s: float | None = None
) -> int:
    """Open the desktop app; returns the process exit status (0 after any normal way to quit).

    `watchdog_s` (the real process only, see app.main): a shutdown still wedged that long after the
    quit was asked for dumps every stack and exits, so the process can never hang.
    """
    try:
        args = parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    from app.ui.preflight import display_problem, preflight

    no_display = display_problem(os.environ)
    if no_display and args.smoke:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"  # a smoke run needs no screen
    elif no_display:
        print(no_display, file=sys.stderr)
        return 2
    problem = preflight()
    if problem:
        print(problem, file=sys.stderr)
        return 1
    profile = _smoke_profile() if args.smoke else None
    try:
        return _run(args, factory, watchdog_s)
    finally:
        if profile is not None:
            shutil.rmtree(profile, ignore_errors=True)


def _smoke_profile() -> Path | None:
    """A smoke run uses a throwaway profile (settings, history, no keychain) unless one is set already."""
    from app.profile import use_throwaway_profile

    if os.environ.get(PROFILE_ENV):
        return None
    return use_throwaway_profile()


def _uncache_inspected_sources() -> None:
    """PySide6 reads the source of every module imported after it, to see whether it mentions
    PySide6 (PYSIDE-2029, `support.feature._mod_uses_pyside`); `inspect.getsource` leaves each file
    in linecache: ~13 MB of an idle app's heap that nothing reads, and too fragmented to free later.
    Wrapped so the same answer is given and the lines it cached are dropped at once (a traceback
    reads them from disk again). Does nothing where PySide6 has no such hook. Measured on the real
    entry (`python -m app <2k-file project>`, idle): the app's RSS 127 -> 113 MB."""
    feature = sys.modules.get("PySide6.support.feature")
    check = getattr(feature, "_mod_uses_pyside", None)
    if check is None or getattr(check, "_slipstream_uncached", False):
        return

    def uses_pyside(module: Any) -> bool:
        # The answer is whether the module's source mentions PySide6; Python source is in an
        # ASCII-compatible encoding, so its bytes spell PySide6 exactly when the decoded text does
        # (a module that imported has a valid encoding). Read once, the same answer without inspect's
        # decoding, line splitting and caching, which was a quarter of importing aiohttp on a thread
        # while a project opened, and ~7 ms for the app's own UI modules at every start. Anything
        # without a readable .py file is asked as before.
        path = getattr(module, "__file__", None)
        if isinstance(path, str) and path.endswith(".py"):
            try:
                with open(path, "rb") as f:
                    return b"PySide6" in f.read()
            except OSError:
                pass
        before = set(linecache.cache)
        try:
            return bool(check(module))
        finally:
            for name in linecache.cache.keys() - before:
                linecache.cache.pop(name, None)

    uses_pyside._slipstream_uncached = True  # type: ignore[attr-defined]
    feature._mod_uses_pyside = uses_pyside  # type: ignore[union-attr]
    linecache.clearcache()  # what was imported before this (early: what follows reuses the memory)


def _run(args: GuiArgs, factory: ServicesFactory | None, watchdog_s: float | None) -> int:
    from PySide6.QtWidgets import QApplication

    _uncache_inspected_sources()

    from app.services.lifetime import QuitRequest
    from app.ui.lifecycle import run_app_loop

    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setApplicationName("Slipstream")
    app.setOrganizationName("Slipstream")
    app.setDesktopFileName("slipstream")
    # Closing the window asks for an orderly quit (gui_main); Qt must not end the loop under us.
    quit_on_last = app.quitOnLastWindowClosed()
    app.setQuitOnLastWindowClosed(False)
    instance = None
    if not args.smoke:  # a smoke run never hands over to (or blocks) a running app
        from app.ui.single_instance import SingleInstance

        instance = SingleInstance(args.path, parent=app)
        if not instance.try_primary():
            print(f"Slipstream is already open on {args.path}; brought that window to the front.")
            instance.close()
            instance.deleteLater()
            return 0
    quit_request = QuitRequest()
    try:
        return run_app_loop(
            app, gui_main(app, args, factory, instance, quit_request), quit_request, watchdog_s=watchdog_s
        )
    finally:
        if instance is not None:
            instance.close()
            instance.deleteLater()
        app.setQuitOnLastWindowClosed(quit_on_last)


def _close_filter(window: Any, quit_request: Any) -> Any:
    """An event filter: closing the main window (title bar, Alt+F4, the window manager at logout)
    hides it at once and asks for the orderly quit, instead of Qt ending the loop under the tasks."""
    from PySide6.QtCore import QEvent, QObject

    class CloseToQuit(QObject):
        def eventFilter(self, watched: QObject, event: QEvent) -> bool:
            if watched is window and event.type() == QEvent.Type.Close and not quit_request.requested:
                quit_request.request("the window was closed")
            return False  # the close goes ahead: the window hides now, gui_main finishes the rest

    f = CloseToQuit(window)
    window.installEventFilter(f)
    return f


def _quit_action(window: Any, quit_request: Any) -> Any:
    """Ctrl+Q (the platform's Quit key) anywhere in the app."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QAction, QKeySequence

    action = QAction("Quit", window)
    action.setObjectName("quitAction")
    # The platform's Quit key, and Ctrl+Q where the theme has none (Windows schemes, offscreen).
    keys = [QKeySequence("Ctrl+Q"), *QKeySequence.keyBindings(QKeySequence.StandardKey.Quit)]
    action.setShortcuts(list({k.toString(): k for k in keys if not k.isEmpty()}.values()))
    action.setShortcutContext(Qt.ShortcutContext.ApplicationShortcut)
    action.triggered.connect(lambda: quit_request.request("Quit (Ctrl+Q)"))
    window.addAction(action)
    return action


async def gui_main(
    app: Any,
    args: GuiArgs,
    factory: ServicesFactory | None = None,
    instance: Any = None,
    quit_request: Any = None,
) -> int:
    """The window's life: open, start the services behind it, run until a quit is asked, close in order."""
    from app.services.api import ConnectionStatus
    from app.services.lifetime import QuitRequest, close_within
    from app.services.settings import Settings, SettingsError, load_settings, save_settings
    from app.ui.controller import Controller, settings_host
    from app.ui.main_window import MainWindow, app_icon

    quit_request = quit_request or QuitRequest()
    icon = app_icon()
    if icon is not None:
        app.setWindowIcon(icon)
    window = MainWindow()
    controller = Controller(window)
    _close_filter(window, quit_request)
    _quit_action(window, quit_request)
    if instance is not None:
        from app.ui.single_instance import bring_to_front

        instance.activated.connect(lambda: bring_to_front(window))
    # Show the window first; the services (sockets, the watcher, a local server) come up behind it.
    window.show()
    app.processEvents()
    if os.environ.get("SLIPSTREAM_STARTUP_PROBE"):  # tests/bench/bench_startup.py: process start -> window
        print(
            f"startup: window shown {_seconds_since_process_start():.3f} s after the process started",
            flush=True,
        )
        window.close()
        window.deleteLater()
        return 0
    problems: list[str] = []
    try:
        loaded = load_settings()
        settings, problems = loaded.settings, list(loaded.warnings)
    except SettingsError as exc:
        settings, problems = Settings(), [f"{exc} — using the defaults"]

    reason = ""
    if factory is None:
        factory, reason = load_factory()
    state: dict[str, Any] = {"services": None, "settings": settings}

    async def open_project(root: Path) -> None:
        nonlocal reason
        old = state["services"]
        if old is not None:
            controller.unbind()
            state["services"] = None
            await close_within(old.aclose(), CLOSE_SERVICES_S, "the previous project's services")
        s = state["settings"].with_recent(root)
        state["settings"] = s
        services = None
        if factory is not None:
            try:
                services = factory(root, s)
            except Exception as exc:
                log.exception("create_services failed")
                reason = f"could not start the services for {root}: {exc}"
        if services is None:
            window.set_project(root, s.recent_projects)
            controller.apply_theme()
            controller.show_connection(ConnectionStatus("offline", reason, "no engine"))
            window.notice("error", f"Slipstream is offline: {reason}")
            return
        state["services"] = services
        host = settings_host(services)
        try:
            if host is not None:
                host.save_settings(s)
            else:
                save_settings(s)
        except (SettingsError, OSError) as exc:
            window.notice("warning", f"could not save the recent projects list: {exc}")
        controller.bind(services)
        try:
            await services.start()
        except Exception as exc:
            log.exception("services.start failed")
            controller.show_connection(ConnectionStatus("error", f"could not start: {exc}"))
            window.notice("error", f"Could not connect: {exc}")

    tasks: set[asyncio.Task[None]] = set()

    async def switch_project(path: Path, earlier: list[asyncio.Task[None]]) -> None:
        # A project still opening is cancelled first, so its services never start behind the new ones
        # (cancelling their start also reaps a scripted server child that was booting).
        for task in earlier:
            task.cancel()
        if earlier:
            await asyncio.wait(earlier, timeout=CLOSE_SERVICES_S)
        await open_project(path)

    def on_open_requested(path: Path) -> None:
        if quit_request.requested:
            return
        task = asyncio.ensure_future(switch_project(path, [t for t in tasks if not t.done()]))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    controller.project_open_requested.connect(on_open_requested)
    first = asyncio.ensure_future(switch_project(args.path, []))
    tasks.add(first)
    first.add_done_callback(tasks.discard)
    quitting = asyncio.ensure_future(quit_request.wait())
    rc = 0
    try:
        # Until the first project is up, or a quit is asked for (the user may also open another one).
        await asyncio.wait({first, quitting}, return_when=asyncio.FIRST_COMPLETED)
        if not quit_request.requested:
            # Start-up garbage (imports, the first layout) is old and stays: move it out of the
            # collector's way, so a full collection during a fast stream does not stall a frame.
            # No gc.collect() first: on the GUI thread it stalled the window 100+ ms as the project opened.
            gc.freeze()
            for text in problems:
                window.notice("warning", text)
            if state["services"] is None and not args.smoke:
                _warn(
                    window, "Slipstream is offline", f"Slipstream could not start its services:\n\n{reason}"
                )
            if args.smoke:
                from app.ui.smoke import run_smoke

                result = await _until_quit(
                    run_smoke(
                        window,
                        state["services"],
                        screenshot=args.screenshot,
                        screen=args.screen,
                        unavailable_reason=reason,
                    ),
                    quitting,
                )
                if result is not None:
                    print(result.line, flush=True)
                    rc = result.exit_code
            else:
                if args.screenshot is not None:
                    from app.ui.smoke import save_screenshot

                    await asyncio.sleep(0.3)
                    save_screenshot(window, args.screenshot, screen=args.screen)
                _probe(window, quit_request)
                await quitting
    finally:
        # The orderly close: the project tasks, the window's links, the services (their sockets,
        # watcher, server child, history), then the window. Each step bounded (close_within).
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(set(tasks), timeout=0.5)
        quitting.cancel()
        services = state["services"]
        controller.unbind()
        if services is not None:
            await close_within(services.aclose(), CLOSE_SERVICES_S, "the services")
        window.hide()
        window.deleteLater()
        app.processEvents()
    return rc


CLOSE_SERVICES_S = 1.5  # the services' aclose() budget at quit; the whole quit stays under 2 s


async def _until_quit(aw: Any, quitting: asyncio.Future[None]) -> Any:
    """`aw`'s result, or None when a quit was asked for first (then `aw` is cancelled)."""
    task = asyncio.ensure_future(aw)
    await asyncio.wait({task, quitting}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        return task.result()
    task.cancel()
    await asyncio.wait({task}, timeout=0.5)
    return None


def _warn(window: Any, title: str, text: str) -> None:
    """A non-blocking warning: a modal exec() inside a coroutine would stall every other task."""
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QMessageBox

    box = QMessageBox(QMessageBox.Icon.Warning, title, text, QMessageBox.StandardButton.Ok, window)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
    box.open()


def _probe(window: Any, quit_request: Any) -> None:
    """SLIPSTREAM_LIFECYCLE_PROBE (tests/ui/test_quit.py): say "ready" once the services are up, then
    quit by the route named: "close" (the window), "ctrl-q", "app-quit" (QApplication.quit), or just
    wait ("ready": the test sends a signal)."""
    route = os.environ.get("SLIPSTREAM_LIFECYCLE_PROBE", "")
    if not route:
        return
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    print(f"lifecycle: ready pid {os.getpid()}", flush=True)
    actions = {
        "close": window.close,
        "ctrl-q": lambda: _press_quit(window),
        "app-quit": QApplication.quit,
    }
    if route in actions:
        QTimer.singleShot(0, actions[route])


def _press_quit(window: Any) -> None:
    """The Quit action (its Ctrl+Q binding is checked in tests/ui/test_app.py, with QtTest)."""
    from PySide6.QtGui import QAction

    action = window.findChild(QAction, "quitAction")
    if action is not None:
        action.trigger()
