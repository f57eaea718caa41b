"""Light and dark palettes, and code colours taken from pygments styles.

Highlight spans carry pygments token type names ("Token.Keyword.Namespace"); `Theme.code_style`
resolves a name to a colour by walking up its parents, so switching themes needs no re-lex.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pygments.styles import get_style_by_name
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication

__all__ = ["DARK", "LIGHT", "Theme", "TokenStyle", "system_theme"]


@dataclass(frozen=True, slots=True)
class TokenStyle:
    color: str = ""
    bold: bool = False
    italic: bool = False


def _code_styles(style_name: str) -> dict[str, TokenStyle]:
    out: dict[str, TokenStyle] = {}
    for ttype, st in get_style_by_name(style_name):
        if st["color"] or st["bold"] or st["italic"]:
            out[str(ttype)] = TokenStyle("#" + st["color"] if st["color"] else "", st["bold"], st["italic"])
    return out


@dataclass(frozen=True)
class Theme:
    name: str
    dark: bool
    background: str
    foreground: str
    muted: str
    code_background: str
    code_foreground: str
    border: str
    link: str
    user_background: str
    error: str
    ok: str
    code: dict[str, TokenStyle] = field(default_factory=dict)

    def code_style(self, key: str) -> TokenStyle | None:
        """Style for a token type name, inherited from the nearest styled parent type."""
        while key:
            st = self.code.get(key)
            if st is not None:
                return st
            cut = key.rfind(".")
            key = key[:cut] if cut > 0 else ""
        return None


LIGHT = Theme(
    name="light",
    dark=False,
    background="#ffffff",
    foreground="#1f2328",
    muted="#656d76",
    code_background="#f6f8fa",
    code_foreground="#1f2328",
    border="#d0d7de",
    link="#0969da",
    user_background="#eef4ff",
    error="#cf222e",
    ok="#1a7f37",
    code=_code_styles("default"),
)

DARK = Theme(
    name="dark",
    dark=True,
    background="#0d1117",
    foreground="#e6edf3",
    muted="#8d96a0",
    code_background="#161b22",
    code_foreground="#e6edf3",
    border="#30363d",
    link="#4493f8",
    user_background="#1c2636",
    error="#f85149",
    ok="#3fb950",
    code=_code_styles("github-dark"),
)


def system_theme(app: QGuiApplication | None = None) -> Theme:
    """The theme that matches the system colour scheme (light when unknown)."""
    app = app or QGuiApplication.instance()  # type: ignore[assignment]
    if app is None:
        return LIGHT
    scheme = app.styleHints().colorScheme()
    return DARK if scheme == Qt.ColorScheme.Dark else LIGHT
