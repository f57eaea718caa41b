"""Preflight: missing Qt system libraries are named with their Debian package before Qt aborts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from app.ui import preflight
from app.ui.preflight import (
    BASE_LIBS,
    QtLib,
    check_qt_libs,
    detect_platform,
    detect_platforms,
    format_problems,
    missing_libs,
    required_libs,
)

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="checks Linux sonames")


def test_detect_platform_from_env() -> None:
    """QT_QPA_PLATFORM wins (options and fallbacks stripped); else the session type decides."""
    assert detect_platform({"QT_QPA_PLATFORM": "offscreen"}) == "offscreen"
    assert detect_platforms({"QT_QPA_PLATFORM": "wayland;xcb"}) == ["wayland", "xcb"]
    assert detect_platform({"QT_QPA_PLATFORM": "xcb:nograb"}) == "xcb"
    assert detect_platforms({"WAYLAND_DISPLAY": "wayland-0"}) == ["wayland", "xcb"]
    assert detect_platforms({"DISPLAY": ":0"}) == ["xcb"]


def test_required_libs_per_platform() -> None:
    """xcb needs the xcb helper libraries on top of the base set; offscreen needs only the base."""
    assert required_libs("offscreen") == BASE_LIBS
    xcb = {lib.package for lib in required_libs("xcb")}
    assert {"libxcb-cursor0", "libxcb-icccm4", "libxcb-keysyms1", "libegl1"} <= xcb


@linux_only
def test_this_machine_has_everything() -> None:
    """The dev/CI machine has the offscreen and xcb libraries (installed by .ci/run)."""
    assert check_qt_libs("offscreen") == []
    assert check_qt_libs("xcb") == []


@linux_only
def test_missing_library_is_reported_with_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """A soname that cannot be loaded anywhere is reported with the package to install."""
    fake = QtLib("libslipstream-does-not-exist.so.9", "libslipstream-nothing9")
    monkeypatch.setitem(preflight.PLATFORM_LIBS, "xcb", (*preflight.PLATFORM_LIBS["xcb"], fake))
    problems = check_qt_libs("xcb")
    assert problems == ["libslipstream-does-not-exist.so.9 not found (Debian/Ubuntu package: libslipstream-nothing9)"]
    assert check_qt_libs("offscreen") == []


@linux_only
def test_bundled_copy_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A library shipped in a bundle folder counts as present even when dlopen cannot find it."""
    fake = QtLib("libslipstream-bundled.so.1", "libslipstream-bundled1")
    monkeypatch.setitem(preflight.PLATFORM_LIBS, "offscreen", (fake,))
    assert missing_libs("offscreen", dirs=[tmp_path]) == [fake]
    (tmp_path / fake.soname).write_bytes(b"")
    assert missing_libs("offscreen", dirs=[tmp_path]) == []


def test_message_names_the_apt_line() -> None:
    """The message lists each library and one apt-get line with every package once."""
    libs = [QtLib("libxcb-cursor.so.0", "libxcb-cursor0"), QtLib("libxcb-icccm.so.4", "libxcb-icccm4"),
            QtLib("libxcb-icccm.so.4", "libxcb-icccm4")]
    text = format_problems("xcb", libs)
    assert "sudo apt-get install libxcb-cursor0 libxcb-icccm4\n" in text + "\n"
    assert "libxcb-cursor.so.0" in text
    assert "QT_QPA_PLATFORM=offscreen" in text  # only display libraries are missing
    base = format_problems("offscreen", [BASE_LIBS[0]])
    assert "QT_QPA_PLATFORM=offscreen needs none" not in base


@linux_only
def test_preflight_falls_back_like_qt(monkeypatch: pytest.MonkeyPatch) -> None:
    """With wayland libraries missing but xcb complete, a wayland session still starts (via xcb)."""
    fake = QtLib("libslipstream-wl-missing.so.0", "libslipstream-wl0")
    monkeypatch.setitem(preflight.PLATFORM_LIBS, "wayland", (fake,))
    assert preflight.preflight({"WAYLAND_DISPLAY": "wayland-0"}) is None
    msg = preflight.preflight({"QT_QPA_PLATFORM": "wayland"})
    assert msg is not None and "libslipstream-wl0" in msg


def test_preflight_does_not_import_qt() -> None:
    """Importing and running the check leaves PySide6 unimported (it must run before Qt loads)."""
    code = ("import sys; from app.ui.preflight import preflight; preflight({'QT_QPA_PLATFORM': 'offscreen'});"
            "sys.exit(1 if any(m.startswith('PySide6') for m in sys.modules) else 0)")
    root = Path(__file__).resolve().parents[2]
    assert subprocess.run([sys.executable, "-c", code], cwd=root, timeout=60).returncode == 0
