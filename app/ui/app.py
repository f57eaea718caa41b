"""The GUI entry: `run_gui(argv)` parses `[PATH] [--smoke] [--screenshot PNG] [--screen]` and runs
the window on a qasync loop (`asyncio.run(..., loop_factory=...)`, STYLE.md §4/§7.13).

Services come from the lead's factory `app.services.app.create_services(root, settings)`, imported
lazily. If it is missing or fails, the window still opens, offline, and says why (an error dialog,
or the smoke result line) — the app never dies with a bare traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

ServicesFactory = Callable[[Path, Any], Any]


@dataclass(frozen=True, slots=True)
class GuiArgs:
    path: Path
    smoke: bool = False
    screenshot: Path | None = None
    screen: bool = False


def parse_args(argv: list[str]) -> GuiArgs:
    """Raises SystemExit (status 2, message on stderr) on bad arguments, like argparse."""
    p = argparse.ArgumentParser(prog="slipstream", description="Slipstream desktop app.")
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
    return factory, ""


def run_gui(argv: list[str], factory: ServicesFactory | None = None) -> int:
    """Open the desktop app; returns the process exit status."""
    try:
        args = parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        from app.ui.preflight import preflight

        problem = preflight()
    except ImportError:
        problem = None
    if problem:
        print(problem, file=sys.stderr)
        return 1

    import qasync
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setApplicationName("Slipstream")
    app.setOrganizationName("Slipstream")
    app.setDesktopFileName("slipstream")
    instance = None
    if not args.smoke:  # a smoke run never hands over to (or blocks) a running app
        from app.ui.single_instance import SingleInstance

        instance = SingleInstance(args.path, parent=app)
        if not instance.try_primary():
            print(f"Slipstream is already open on {args.path}; brought that window to the front.")
            return 0
    try:
        return asyncio.run(gui_main(app, args, factory, instance), loop_factory=lambda: qasync.QEventLoop(app))
    finally:
        if instance is not None:
            instance.close()


async def gui_main(app: Any, args: GuiArgs, factory: ServicesFactory | None = None, instance: Any = None) -> int:
    from PySide6.QtWidgets import QMessageBox

    from app.services.api import ConnectionStatus
    from app.services.settings import Settings, SettingsError, load_settings, save_settings
    from app.ui.controller import Controller, settings_host
    from app.ui.main_window import MainWindow, app_icon
    from app.ui.smoke import run_smoke, save_screenshot

    icon = app_icon()
    if icon is not None:
        app.setWindowIcon(icon)
    window = MainWindow()
    controller = Controller(window)
    if instance is not None:
        from app.ui.single_instance import bring_to_front

        instance.activated.connect(lambda: bring_to_front(window))
    # Show the window first; the services (sockets, the watcher, a local server) come up behind it.
    window.show()
    app.processEvents()
    if os.environ.get("SLIPSTREAM_STARTUP_PROBE"):  # tests/bench/bench_startup.py: process start -> window
        print(f"startup: window shown {_seconds_since_process_start():.3f} s after the process started", flush=True)
        window.close()
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
            await _aclose(old)
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
            window.transcript.feed_notice("error", f"Slipstream is offline: {reason}")
            return
        state["services"] = services
        host = settings_host(services)
        try:
            if host is not None:
                host.save_settings(s)
            else:
                save_settings(s)
        except (SettingsError, OSError) as exc:
            window.transcript.feed_notice("warning", f"could not save the recent projects list: {exc}")
        controller.bind(services)
        try:
            await services.start()
        except Exception as exc:
            log.exception("services.start failed")
            controller.show_connection(ConnectionStatus("error", f"could not start: {exc}"))
            window.transcript.feed_notice("error", f"Could not connect: {exc}")

    tasks: set[asyncio.Task[None]] = set()

    async def switch_project(path: Path, earlier: list[asyncio.Task[None]]) -> None:
        # A project still opening is cancelled first, so its services never start behind the new ones
        # (cancelling their start also reaps a scripted server child that was booting).
        for task in earlier:
            task.cancel()
        for task in earlier:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await open_project(path)

    def on_open_requested(path: Path) -> None:
        task = asyncio.ensure_future(switch_project(path, [t for t in tasks if not t.done()]))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    controller.project_open_requested.connect(on_open_requested)
    quit_event = asyncio.Event()
    app.aboutToQuit.connect(quit_event.set)

    first = asyncio.ensure_future(switch_project(args.path, []))
    tasks.add(first)
    first.add_done_callback(tasks.discard)
    with contextlib.suppress(asyncio.CancelledError):  # the user may open another project meanwhile
        await first
    # Start-up garbage (imports, the first layout) is old and stays: move it out of the collector's
    # way, so a full collection during a fast stream does not stall a frame (measured: 16-27 ms).
    # No gc.collect() first: on the GUI thread it stalled the window 100+ ms as the project opened.
    gc.freeze()
    for text in problems:
        window.transcript.feed_notice("warning", text)
    if state["services"] is None and not args.smoke:
        QMessageBox.warning(window, "Slipstream is offline", f"Slipstream could not start its services:\n\n{reason}")

    rc = 0
    try:
        if args.smoke:
            result = await run_smoke(
                window, state["services"], screenshot=args.screenshot, screen=args.screen, unavailable_reason=reason
            )
            print(result.line, flush=True)
            rc = result.exit_code
        else:
            if args.screenshot is not None:
                await asyncio.sleep(0.3)
                save_screenshot(window, args.screenshot, screen=args.screen)
            await quit_event.wait()
    finally:
        for task in tasks:
            task.cancel()
        services = state["services"]
        controller.unbind()
        if services is not None:
            await _aclose(services)
        window.close()
        window.deleteLater()
    return rc


async def _aclose(services: Any) -> None:
    try:
        await asyncio.wait_for(services.aclose(), 10.0)
    except Exception:
        log.exception("closing the services failed")
