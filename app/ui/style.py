"""The application stylesheet and palette, derived from a `Theme` (light or dark).

One place for spacing, borders and accent colours so every panel looks the same; widgets only set
object names ("primaryButton", "panelSummary", "banner", ...) that the sheet targets.
"""

from __future__ import annotations

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

from app.ui.theme import DARK, LIGHT, Theme, system_theme


def theme_for(choice: str, app: QApplication | None = None) -> Theme:
    """ "light" / "dark" / anything else follows the system."""
    if choice == "light":
        return LIGHT
    if choice == "dark":
        return DARK
    return system_theme(app)


def _surface(theme: Theme) -> str:
    return "#161b22" if theme.dark else "#f6f8fa"


def _accent(theme: Theme) -> str:
    return "#2f81f7" if theme.dark else "#0969da"


def palette(theme: Theme) -> QPalette:
    p = QPalette()
    bg, fg, surface = QColor(theme.background), QColor(theme.foreground), QColor(_surface(theme))
    R = QPalette.ColorRole
    for role, colour in (
        (R.Window, surface),
        (R.WindowText, fg),
        (R.Base, bg),
        (R.AlternateBase, surface),
        (R.Text, fg),
        (R.Button, surface),
        (R.ButtonText, fg),
        (R.ToolTipBase, bg),
        (R.ToolTipText, fg),
        (R.PlaceholderText, QColor(theme.muted)),
        (R.Highlight, QColor(_accent(theme))),
        (R.HighlightedText, QColor("#ffffff")),
        (R.Link, QColor(theme.link)),
        (R.Mid, QColor(theme.border)),
    ):
        p.setColor(role, colour)
    p.setColor(QPalette.ColorGroup.Disabled, R.Text, QColor(theme.muted))
    p.setColor(QPalette.ColorGroup.Disabled, R.ButtonText, QColor(theme.muted))
    return p


def stylesheet(theme: Theme) -> str:
    t = theme
    surface, accent = _surface(t), _accent(t)
    hover = "#21262d" if t.dark else "#eaeef2"
    banner_bg, banner_fg = ("#1c2636", "#c9d1d9") if t.dark else ("#ddf4ff", "#0a3069")
    return f"""
QMainWindow, QDialog {{ background: {surface}; }}
QToolBar {{ background: {surface}; border: none; border-bottom: 1px solid {t.border}; padding: 4px 8px; spacing: 6px; }}
QToolBar QToolButton {{ padding: 4px 10px; border-radius: 6px; color: {t.foreground}; }}
QToolBar QToolButton:hover {{ background: {hover}; }}
QToolButton#projectButton {{ font-weight: 600; }}
QToolButton#projectButton::menu-indicator {{ image: none; width: 0; }}
QSplitter::handle {{ background: {t.border}; }}
QSplitter::handle:horizontal {{ width: 1px; }}
QSplitter::handle:vertical {{ height: 1px; }}
QTabWidget::pane {{ border: none; border-top: 1px solid {t.border}; background: {t.background}; }}
QTabBar {{ qproperty-drawBase: 0; background: {surface}; }}
QTabWidget::tab-bar {{ left: 6px; }}
QTabBar::tab {{ padding: 6px 14px; border: none; color: {t.muted}; background: transparent; }}
QTabBar::tab:selected {{ color: {t.foreground}; border-bottom: 2px solid {accent}; }}
QTabBar::tab:hover {{ color: {t.foreground}; }}
QTreeWidget, QListWidget, QPlainTextEdit, QLineEdit, QSpinBox, QComboBox {{
    background: {t.background}; color: {t.foreground}; border: 1px solid {t.border}; border-radius: 6px;
    selection-background-color: {accent}; selection-color: #ffffff;
}}
QLineEdit, QSpinBox, QComboBox {{ padding: 4px 6px; }}
QLineEdit:focus, QPlainTextEdit:focus, QSpinBox:focus, QComboBox:focus {{ border-color: {accent}; }}
QTreeWidget::item, QListWidget::item {{ padding: 3px 2px; }}
QListWidget#sessionList::item {{ padding: 6px 6px; border-bottom: 1px solid {t.border}; }}
QHeaderView::section {{ background: {surface}; color: {t.muted}; border: none;
    border-bottom: 1px solid {t.border}; padding: 4px 6px; font-weight: 600; }}
QWidget#composer {{ background: {surface}; border-top: 1px solid {t.border}; }}
QPlainTextEdit#composerEdit {{ padding: 6px 8px; border-radius: 8px; }}
QPushButton {{ padding: 5px 14px; border-radius: 6px; border: 1px solid {t.border};
    background: {t.background}; color: {t.foreground}; }}
QPushButton:hover {{ background: {hover}; }}
QPushButton:disabled {{ color: {t.muted}; }}
QPushButton#primaryButton {{ background: {accent}; color: #ffffff; border-color: {accent}; font-weight: 600; }}
QPushButton#primaryButton:hover {{ background: {t.link}; }}
QPushButton#stopButton:enabled {{ color: {t.error}; border-color: {t.error}; }}
QLabel#panelSummary {{ color: {t.muted}; }}
QLabel#errorText {{ color: {t.error}; }}
QFrame#banner {{ background: {banner_bg}; border-bottom: 1px solid {t.border}; }}
QFrame#banner QLabel {{ color: {banner_fg}; }}
QFrame#diffCard {{ background: {t.background}; border: 1px solid {t.border}; border-radius: 8px; }}
QGroupBox {{ border: 1px solid {t.border}; border-radius: 8px; margin-top: 14px; padding: 10px 8px 8px 8px;
    font-weight: 600; }}
QGroupBox::title {{ subcontrol-origin: margin; left: 10px; padding: 0 4px; color: {t.muted}; }}
QStatusBar {{ background: {surface}; border-top: 1px solid {t.border}; color: {t.muted}; }}
QStatusBar QLabel {{ color: {t.muted}; padding: 0 8px; }}
QStatusBar QLabel#statusConnection {{ color: {t.foreground}; padding-left: 0; }}
QStatusBar QLabel#statusDot {{ padding-left: 6px; padding-right: 2px; }}
QStatusBar QLabel#statusEngine {{ color: {t.foreground}; font-weight: 600; }}
QStatusBar::item {{ border: none; border-left: 1px solid {t.border}; }}
"""


def apply_theme(app: QApplication, theme: Theme) -> None:
    app.setStyle("Fusion")  # the same look on every platform; the palette carries the colours
    app.setPalette(palette(theme))
    app.setStyleSheet(stylesheet(theme))
