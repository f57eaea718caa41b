"""Check Qt's system libraries before PySide6 is imported, so a missing one gets a useful message.

Without this, a bare Debian/Ubuntu prints Qt's own abort ("could not load the Qt platform plugin
xcb", or even a misleading "xcb-cursor0 is needed" when libxcb-icccm4 is the one missing) and dumps
core. Here each library is dlopen()ed by its soname with ctypes; a PyInstaller bundle or PySide6's
own ``Qt/lib`` folder also count, since those ship copies. This module must not import PySide6.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "QtLib",
    "check_qt_libs",
    "detect_platform",
    "detect_platforms",
    "format_problems",
    "missing_libs",
    "preflight",
    "required_libs",
]


@dataclass(frozen=True, slots=True)
class QtLib:
    """A shared library Qt loads, and the Debian package that ships it."""

    soname: str
    package: str


# What PySide6-Essentials needs from the system to even import QtGui and run offscreen
# (verified in a stock Debian 12 minbase chroot, shared/design/QT-CI.md §1 line (a)).
BASE_LIBS: tuple[QtLib, ...] = (
    QtLib("libEGL.so.1", "libegl1"),
    QtLib("libGL.so.1", "libgl1"),
    QtLib("libfontconfig.so.1", "libfontconfig1"),
    QtLib("libxkbcommon.so.0", "libxkbcommon0"),
    QtLib("libdbus-1.so.3", "libdbus-1-3"),
    QtLib("libglib-2.0.so.0", "libglib2.0-0"),
)

# Extra for the platform plugins (QT-CI.md §1 line (b), from readelf -d of libqxcb.so and friends).
PLATFORM_LIBS: dict[str, tuple[QtLib, ...]] = {
    "xcb": (
        QtLib("libxcb.so.1", "libxcb1"),
        QtLib("libX11-xcb.so.1", "libx11-xcb1"),
        QtLib("libxcb-cursor.so.0", "libxcb-cursor0"),
        QtLib("libxcb-icccm.so.4", "libxcb-icccm4"),
        QtLib("libxcb-image.so.0", "libxcb-image0"),
        QtLib("libxcb-keysyms.so.1", "libxcb-keysyms1"),
        QtLib("libxcb-render-util.so.0", "libxcb-render-util0"),
        QtLib("libxcb-shape.so.0", "libxcb-shape0"),
        QtLib("libxcb-xkb.so.1", "libxcb-xkb1"),
        QtLib("libxkbcommon-x11.so.0", "libxkbcommon-x11-0"),
    ),
    "wayland": (
        QtLib("libwayland-client.so.0", "libwayland-client0"),
        QtLib("libwayland-cursor.so.0", "libwayland-cursor0"),
        QtLib("libwayland-egl.so.1", "libwayland-egl1"),
    ),
    "offscreen": (),
    "minimal": (),
}


def required_libs(platform: str) -> tuple[QtLib, ...]:
    """The libraries Qt needs for `platform` ("xcb", "wayland", "offscreen", ...)."""
    return BASE_LIBS + PLATFORM_LIBS.get(platform, ())


def detect_platforms(env: Mapping[str, str] | None = None) -> list[str]:
    """The Qt platform plugins Qt will try, in order: QT_QPA_PLATFORM's list, else the session's."""
    env = os.environ if env is None else env
    chosen = env.get("QT_QPA_PLATFORM", "").strip()
    if chosen:
        # "wayland;xcb" is a fallback list, "xcb:option=..." carries options.
        names = [part.split(":")[0].strip() for part in chosen.split(";")]
        return [n for n in names if n] or ["xcb"]
    if env.get("WAYLAND_DISPLAY") or env.get("XDG_SESSION_TYPE") == "wayland":
        return ["wayland", "xcb"]  # Qt falls back to xcb (XWayland) when wayland cannot load
    return ["xcb"]


def detect_platform(env: Mapping[str, str] | None = None) -> str:
    """The Qt platform plugin Qt tries first."""
    return detect_platforms(env)[0]


def _bundled_dirs() -> list[Path]:
    """Folders whose copies of the libraries Qt finds too (PyInstaller bundle, PySide6's Qt/lib)."""
    dirs: list[Path] = []
    meipass = getattr(sys, "_MEIPASS", None)
    if meipass:
        dirs.append(Path(meipass))
        dirs.append(Path(meipass) / "PySide6" / "Qt" / "lib")
    try:
        spec = importlib.util.find_spec("PySide6")  # locates the package without importing it
    except (ImportError, ValueError):
        spec = None
    for loc in (spec.submodule_search_locations or []) if spec else []:
        dirs.append(Path(loc) / "Qt" / "lib")
    return dirs


def _loadable(soname: str, dirs: Iterable[Path]) -> bool:
    try:
        ctypes.CDLL(soname)
        return True
    except OSError:
        pass
    return any((d / soname).exists() for d in dirs)


def missing_libs(platform: str, *, dirs: Iterable[Path] | None = None) -> list[QtLib]:
    """The libraries for `platform` that neither the system nor a bundled folder provides."""
    if not sys.platform.startswith("linux"):
        return []  # Windows and macOS wheels/bundles carry everything Qt needs
    search = list(_bundled_dirs() if dirs is None else dirs)
    return [lib for lib in required_libs(platform) if not _loadable(lib.soname, search)]


def check_qt_libs(platform: str) -> list[str]:
    """One line per missing library, naming the Debian package to install; [] when all load."""
    return [f"{lib.soname} not found (Debian/Ubuntu package: {lib.package})" for lib in missing_libs(platform)]


def format_problems(platform: str, libs: list[QtLib]) -> str:
    """The message shown instead of Qt's abort: what is missing and the apt-get line that fixes it."""
    packages = " ".join(dict.fromkeys(lib.package for lib in libs))
    lines = [f"slipstream: Qt cannot start its '{platform}' platform: system libraries are missing:"]
    lines += [f"  {lib.soname:<26} from package {lib.package}" for lib in libs]
    lines += ["", "Install them with:", f"  sudo apt-get install {packages}"]
    if not set(libs) & set(BASE_LIBS):
        lines += ["", "Without a display, QT_QPA_PLATFORM=offscreen needs none of these."]
    lines += ["`slipstream serve` and the other headless commands need no Qt at all."]
    return "\n".join(lines)


def preflight(env: Mapping[str, str] | None = None) -> str | None:
    """None when Qt can start; else the message to print before exiting with status 1.

    Qt tries the platforms of a fallback list in order, so one fully loadable platform is enough.
    """
    platforms = detect_platforms(env)
    missing: list[QtLib] = []
    for platform in platforms:
        libs = missing_libs(platform)
        if not libs:
            return None
        missing += [lib for lib in libs if lib not in missing]
    return format_problems("/".join(platforms), missing)
