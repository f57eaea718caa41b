"""Wires one services façade to the main window, through the Bridge, and back.

The window only lays out widgets; this class connects façade signals to widget updates and widget
intents to façade calls. A façade call that raises never takes the UI down: the error is shown in
words as a transcript notice. `bind()` again with another services object (another project) and
the old bridge is closed first, so nothing from the old project can reach the window.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox, QWidget

from app.services.api import ApprovalRequest, ConnectionStatus, Services
from app.services.settings import SettingsFacade
from app.ui.bridge import Bridge
from app.ui.main_window import MainWindow, app_icon
from app.ui.style import apply_theme, theme_for
from app.ui.tests_panel import outcome_counts

if TYPE_CHECKING:  # the dialogs load when first opened, not before the window (startup time)
    from app.ui.inspector import InspectorWindow
    from app.ui.settings_dialog import SettingsDialog

log = logging.getLogger(__name__)

SETTINGS_METHODS = ("save_settings", "keychain_info", "has_api_key", "set_api_key")


def settings_host(services: object) -> SettingsFacade | None:
    """The services as a settings host, if they implement the settings extension."""
    ok = hasattr(services, "settings") and all(callable(getattr(services, m, None)) for m in SETTINGS_METHODS)
    return cast(SettingsFacade, services) if ok else None


class Controller(QObject):
    """`Controller(window)`, then `bind(services)`; emits `project_open_requested(Path)`."""

    project_open_requested = Signal(object)

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.services: Services | None = None
        self.bridge: Bridge | None = None
        self.dialogs: list[QWidget] = []  # open approval dialogs
        self.inspector_window: InspectorWindow | None = None
        self.last_status = ConnectionStatus("offline", "not connected")
        w = window
        w.composer.send_requested.connect(self._send)
        w.composer.stop_requested.connect(lambda: self._call("stop"))
        w.composer.side_requested.connect(lambda text: self._call("ask_side", text, None))
        w.side_pane.ask_requested.connect(lambda text, sid: self._call("ask_side", text, sid))
        w.side_pane.close_requested.connect(lambda sid: self._call("close_side", sid))
        w.side_pane.promote_requested.connect(self._promote_side)
        w.composer.stop_following.connect(w.transcript.stop_following)
        w.context_panel.pin_requested.connect(lambda path, on: self._call("pin", path, on))
        w.tests_panel.run_requested.connect(self._run_tests)
        w.tests_panel.updated.connect(self._update_tests_tab)
        w.tests_panel.rerun_failed_requested.connect(lambda: self._call("rerun_failed"))
        w.sessions_panel.open_requested.connect(self._open_session)
        w.sessions_panel.new_requested.connect(self._new_session)
        w.new_session_requested.connect(self._new_session)
        w.settings_requested.connect(self.show_settings)
        w.about_requested.connect(self.show_about)
        w.open_project_requested.connect(self._on_open_project)
        w.status.inspect_requested.connect(lambda: self.show_inspector())
        w.transcript.inspectRequested.connect(self.show_inspector)
        app = QApplication.instance()
        if isinstance(app, QApplication):
            app.styleHints().colorSchemeChanged.connect(lambda _s: self.apply_theme())

    # binding --------------------------------------------------------------------------------------

    def bind(self, services: Services) -> None:
        self.unbind()
        self.services = services
        b = self.bridge = Bridge(services, self)
        w = self.window
        w.transcript.set_model(services.conversation)  # the views paint the models the services own
        w.tests_panel.set_model(services.test_run)
        b.connection_changed.connect(self.show_connection)
        b.stats_changed.connect(w.status.set_stats)
        b.files_changed.connect(w.context_panel.update_files)
        b.approval_requested.connect(self.show_approval)
        b.busy_changed.connect(w.composer.set_busy)
        b.busy_changed.connect(self._on_busy)
        b.banner_changed.connect(w.banner.set_text)
        b.side_opened.connect(w.side_pane.add_side)
        b.side_removed.connect(w.side_pane.remove_side)
        host = settings_host(services)
        recent = host.settings.recent_projects if host else []
        w.set_project(services.project_root, recent)
        if host is not None:
            w.context_panel.set_pinned(host.settings.pins)
        self.refresh_sessions()
        self.apply_theme()

    def unbind(self) -> None:
        if self.bridge is not None:
            self.bridge.close()
            self.bridge.deleteLater()
        self.bridge = None
        for dlg in list(self.dialogs):
            dlg.close()  # resolves the pending request as refused
        self.dialogs.clear()
        if self.inspector_window is not None:
            self.inspector_window.close()  # it paints the old project's requests
        self.window.side_pane.clear()
        self.services = None

    # façade calls, guarded ------------------------------------------------------------------------

    def _call(self, name: str, *args: Any) -> Any:
        if self.services is None:
            self.window.notice("warning", "No project is open.")
            return None
        fn: Callable[..., Any] = getattr(self.services, name)
        try:
            return fn(*args)
        except Exception as exc:  # the UI stays up and says what happened
            log.exception("services.%s failed", name)
            self.window.notice("error", f"{name.replace('_', ' ')} failed: {exc}")
            return None

    def _send(self, text: str) -> None:
        self.window.transcript.follow()
        self._call("send_message", text)

    def _run_tests(self) -> None:
        self.window.side.setCurrentWidget(self.window.tests_panel)
        self._call("run_tests")

    def _open_session(self, session_id: str) -> None:
        self._call("open_session", session_id)  # on a real switch the services clear and replay the view
        self.refresh_sessions()

    def _promote_side(self, side_id: str) -> None:
        self._call("promote_side", side_id)
        self.refresh_sessions()

    def _new_session(self) -> None:
        self._call("new_session")
        self.refresh_sessions()

    def _on_busy(self, busy: bool) -> None:
        """A turn ended (and was saved): the live session is listed with its turns, not only after
        "New session" is pressed."""
        if not busy:
            self.refresh_sessions()

    def refresh_sessions(self) -> None:
        sessions = self._call("list_sessions") if self.services is not None else []
        current = str(getattr(self.services, "session_id", "") or "")
        self.window.sessions_panel.set_sessions(sessions or [], current)

    # signal handlers ------------------------------------------------------------------------------

    def show_connection(self, status: ConnectionStatus) -> None:
        self.last_status = status
        self.window.status.set_connection(status)
        self.window.transcript.empty_view.set_engine(status.engine)

    def _update_tests_tab(self) -> None:
        panel = self.window.tests_panel
        c = outcome_counts(panel.run)
        bad = c["failed"] + c["error"]
        label = "Tests"
        if panel.run.running:
            label = "Tests ⋯"
        elif bad:
            label = f"Tests · {bad} ✗"
        elif c["passed"]:
            label = f"Tests · {c['passed']} ✓"
        self.window.set_tests_tab_text(label)

    def show_approval(self, request: ApprovalRequest) -> QWidget:
        from app.ui.diff_review import approval_dialog

        dlg = approval_dialog(request, self.window)
        self.dialogs.append(dlg)
        dlg.finished.connect(lambda _r, d=dlg: self.dialogs.remove(d) if d in self.dialogs else None)
        dlg.setWindowModality(Qt.WindowModality.NonModal)
        request.withdrawn.connect(dlg.close)  # the services stopped waiting (Stop): close, refusing
        dlg.show()
        dlg.raise_()
        return dlg

    def show_inspector(self, response_id: str | None = None) -> InspectorWindow | None:
        """The context inspector, on the request behind `response_id` (None: the newest)."""
        if self.services is None:
            self.window.notice("warning", "No project is open.")
            return None
        win = self.inspector_window
        if win is None:
            from app.ui.inspector import InspectorWindow

            win = InspectorWindow(self.services.inspector, self.window, theme=self.window.transcript.theme)
            win.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            win.finished.connect(self._inspector_closed)
            self.inspector_window = win
        if not win.show_request(response_id or None) and response_id:
            self.window.status.showMessage("That request is too old to be kept; showing the newest.", 5000)
            win.show_request(None)
        win.show()
        win.raise_()
        win.activateWindow()
        return win

    def _inspector_closed(self) -> None:
        win, self.inspector_window = self.inspector_window, None
        if win is not None:
            win.detach()

    def show_settings(self) -> SettingsDialog | None:
        host = settings_host(self.services) if self.services is not None else None
        if host is None:
            QMessageBox.information(
                self.window, "Settings", "Settings are not available until a project is open."
            )
            return None
        from app.ui.settings_dialog import SettingsDialog

        dlg = SettingsDialog(host, self.window)
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dlg.accepted.connect(self.apply_theme)
        dlg.accepted.connect(lambda: self.window.context_panel.set_pinned(host.settings.pins))
        dlg.open()
        return dlg

    def show_about(self) -> QMessageBox:
        from app import __version__  # looked up only here: importlib.metadata is heavy at start-up

        box = QMessageBox(self.window)
        box.setWindowTitle("About Slipstream")
        box.setTextFormat(Qt.TextFormat.RichText)
        box.setText(f"<h3>Slipstream {__version__}</h3>")
        box.setInformativeText(
            "Keeps a model's view of your project current over one WebSocket session, "
            "and streams its answers and your test results live."
        )
        icon = app_icon()
        if icon is not None:
            box.setIconPixmap(icon.pixmap(64, 64))
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()
        return box

    def apply_theme(self) -> None:
        app = QApplication.instance()
        if not isinstance(app, QApplication):
            return
        host = settings_host(self.services) if self.services is not None else None
        theme = theme_for(host.settings.theme if host else "system", app)
        apply_theme(app, theme)
        self.window.transcript.set_theme(theme)
        self.window.side_pane.set_theme(theme)

    def _on_open_project(self, path: Path | None) -> None:
        if path is None:  # ask, without a nested event loop (the stream keeps running)
            start = str(self.services.project_root) if self.services is not None else str(Path.home())
            dlg = QFileDialog(self.window, "Open project folder", start)
            dlg.setFileMode(QFileDialog.FileMode.Directory)
            dlg.setOption(QFileDialog.Option.ShowDirsOnly, True)
            dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            dlg.fileSelected.connect(lambda chosen: self._on_open_project(Path(chosen)))
            dlg.open()
            return
        if not path.is_dir():
            self.window.notice("error", f"Cannot open {path}: not a folder.")
            return
        self.project_open_requested.emit(path)
