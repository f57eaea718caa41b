"""The main window: layout only. Wiring to the services lives in app.ui.controller.

┌ toolbar: project ▾ · New session · Run tests ·············· Settings · About ┐
│ banner (first start: ways to connect a model)                                  │
│ transcript ┊ side questions (when open) │ [Context | Tests | Sessions]         │
│ composer (Send / Stop)                  │                                      │
└ status: ● state — detail ········ tok/s · context · cache · engine ───────────┘
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QAction, QIcon, QKeySequence
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMenu,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QTabWidget,
    QToolBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.render.transcript import NoticeKind, Transcript
from app.tools.testrun import TestRun
from app.ui.composer import Composer
from app.ui.context_panel import ContextPanel
from app.ui.help import COMPOSER_KEYS, HelpDialog, action_shortcuts
from app.ui.sessions import SessionsPanel
from app.ui.side_pane import FrameTicker, SidePane
from app.ui.status import StatusBar
from app.ui.tests_panel import TestsPanel
from app.ui.transcript_view import TranscriptView

ICON_PATH = Path(__file__).resolve().parents[2] / "resources" / "icons" / "slipstream.svg"


def app_icon() -> QIcon | None:
    return QIcon(str(ICON_PATH)) if ICON_PATH.is_file() else None


class Banner(QFrame):
    """A dismissable strip above the transcript; empty text hides it. Everything it says (no model, a
    setting that could not be used, an endpoint out of reach) is fixed in Settings: its button."""

    settings_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("banner")
        self.label = QLabel(self)
        self.label.setWordWrap(True)
        self.label.setTextFormat(Qt.TextFormat.MarkdownText)
        self.label.setOpenExternalLinks(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        self.close_button = QToolButton(self)
        self.close_button.setText("✕")
        self.close_button.setAutoRaise(True)
        self.close_button.setToolTip("Hide")
        self.close_button.clicked.connect(self.hide)
        self.settings_button = QPushButton("Open Settings…", self)
        self.settings_button.setObjectName("bannerSettings")
        self.settings_button.clicked.connect(self.settings_requested)
        row = QHBoxLayout(self)
        row.setContentsMargins(14, 10, 8, 10)
        row.addWidget(self.label, 1)
        row.addWidget(self.settings_button, 0, Qt.AlignmentFlag.AlignVCenter)
        row.addWidget(self.close_button, 0, Qt.AlignmentFlag.AlignTop)
        self.hide()

    def set_text(self, text: str) -> None:
        self.label.setText(text)
        self.setVisible(bool(text))


class MainWindow(QMainWindow):
    """Widgets and actions; emits intents (`open_project_requested`, ...) for the controller."""

    open_project_requested = Signal(object)  # Path, or None to ask with a dialog
    settings_requested = Signal()
    about_requested = Signal()
    new_session_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("mainWindow")
        self.resize(1280, 800)
        icon = app_icon()
        if icon is not None:
            self.setWindowIcon(icon)

        # Empty models until services are bound (the controller hands the views theirs).
        self.transcript = TranscriptView(Transcript(), self)
        self.frames = FrameTicker(self)  # one frame clock for the agent's and the side transcripts
        self.frames.add(self.transcript)
        self.side_pane = SidePane(self.frames, self)
        self.composer = Composer(self)
        self.context_panel = ContextPanel(self)
        self.tests_panel = TestsPanel(TestRun(), self)
        self.sessions_panel = SessionsPanel(self)
        self.banner = Banner(self)
        self.banner.settings_requested.connect(self.settings_requested)
        self.status = StatusBar(self)
        self.setStatusBar(self.status)

        left = QWidget(self)
        col = QVBoxLayout(left)
        col.setContentsMargins(0, 0, 0, 0)
        col.setSpacing(0)
        col.addWidget(self.banner)
        self.lanes_splitter = QSplitter(Qt.Orientation.Horizontal, left)
        self.lanes_splitter.addWidget(self.transcript)
        self.lanes_splitter.addWidget(self.side_pane)
        self.lanes_splitter.setStretchFactor(0, 3)
        self.lanes_splitter.setStretchFactor(1, 2)
        self.lanes_splitter.setChildrenCollapsible(False)
        col.addWidget(self.lanes_splitter, 1)
        col.addWidget(self.composer)

        self.side = QTabWidget(self)
        self.side.setDocumentMode(True)
        self.side.addTab(self.context_panel, "Context")
        self.side.addTab(self.tests_panel, "Tests")
        self.side.addTab(self.sessions_panel, "Sessions")

        self.splitter = QSplitter(Qt.Orientation.Horizontal, self)
        self.splitter.addWidget(left)
        self.splitter.addWidget(self.side)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.setSizes([780, 500])
        self.setCentralWidget(self.splitter)

        self._build_toolbar()
        self.set_project(None)
        self.composer.edit.setFocus()

    def _build_toolbar(self) -> None:
        bar = QToolBar("Main", self)
        bar.setMovable(False)
        bar.setFloatable(False)
        bar.setIconSize(QSize(16, 16))
        bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, bar)
        self.toolbar = bar

        self.project_menu = QMenu(self)
        self.project_button = QToolButton(self)
        self.project_button.setObjectName("projectButton")
        self.project_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.project_button.setMenu(self.project_menu)
        self.project_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        bar.addWidget(self.project_button)
        bar.addSeparator()

        self.new_session_action = QAction("New session", self)
        self.new_session_action.setShortcut("Ctrl+N")
        self.new_session_action.triggered.connect(self.new_session_requested)
        self.run_tests_action = QAction("Run tests", self)
        self.run_tests_action.setShortcut("Ctrl+T")
        self.run_tests_action.triggered.connect(self.tests_panel.run_requested)
        self.open_action = QAction("Open folder…", self)
        self.open_action.setShortcut("Ctrl+O")
        self.open_action.triggered.connect(lambda: self.open_project_requested.emit(None))
        bar.addAction(self.new_session_action)
        bar.addAction(self.run_tests_action)

        spacer = QWidget(self)
        spacer.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        bar.addWidget(spacer)
        self.settings_action = QAction("Settings", self)
        self.settings_action.setShortcut("Ctrl+,")
        self.settings_action.triggered.connect(self.settings_requested)
        self.about_action = QAction("About", self)
        self.about_action.triggered.connect(self.about_requested)
        self.help_action = QAction("?", self)
        self.help_action.setShortcut(QKeySequence(QKeySequence.StandardKey.HelpContents))
        self.help_action.setToolTip("Help: demo commands and shortcuts (F1)")
        self.help_action.triggered.connect(self.show_help)
        bar.addAction(self.settings_action)
        bar.addAction(self.help_action)
        bar.addAction(self.about_action)
        self.addAction(self.open_action)  # shortcut works without a visible button
        self.transcript.empty_view.set_shortcuts(self.shortcuts())
        self.transcript.empty_view.help_requested.connect(self.show_help)
        self.help_dialog: HelpDialog | None = None

    def shortcuts(self) -> list[tuple[str, str]]:
        """Every shortcut the window answers to: its actions' and the transcript's keys (for the help)."""
        acts = [
            self.help_action,
            self.new_session_action,
            self.run_tests_action,
            self.open_action,
            self.settings_action,
            *self.actions(),
        ]
        keys = action_shortcuts(acts)
        keys = [(k, "this help" if what == "?" else what) for k, what in keys]
        return keys + list(TranscriptView.KEYS) + list(COMPOSER_KEYS)

    def show_help(self) -> HelpDialog:
        """The help window (one, raised again when open)."""
        if self.help_dialog is None:
            self.help_dialog = HelpDialog(self.shortcuts(), self)
        self.help_dialog.show()
        self.help_dialog.raise_()
        return self.help_dialog

    def set_project(self, root: Path | None, recent: list[str] | None = None) -> None:
        """Show the project name and fill the project menu (open dialog + recent projects)."""
        name = (root.name or str(root)) if root is not None else "No project"
        self.project_button.setText(f"{name}  ▾")
        self.project_button.setToolTip(str(root) if root else "Open a project folder")
        self.setWindowTitle(f"{name} — Slipstream" if root else "Slipstream")
        self.transcript.empty_view.set_project(str(root) if root else "")
        self.project_menu.clear()
        self.project_menu.addAction(self.open_action)
        others = [p for p in (recent or []) if root is None or p != str(root)]
        if others:
            self.project_menu.addSection("Recent projects")
            for path in others:
                act = self.project_menu.addAction(path)
                act.triggered.connect(lambda _=False, p=path: self.open_project_requested.emit(Path(p)))

    def notice(self, kind: NoticeKind, text: str) -> None:
        """A word from the app itself, at the end of the conversation shown."""
        self.transcript.model.add_notice(kind, text)

    def set_tests_tab_text(self, text: str) -> None:
        self.side.setTabText(self.side.indexOf(self.tests_panel), text)
