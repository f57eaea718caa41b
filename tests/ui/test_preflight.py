"""Preflight: missing Qt system libraries are named with their Debian package before Qt aborts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from app.ui import preflight
from app.ui.preflight import (
    BASE_LIBS,
    DebianPlan,
    QtLib,
    check_qt_libs,
    debian_plan,
    detect_platform,
    detect_platforms,
    display_problem,
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


def _have(*sonames: str) -> preflight.HaveLib:
    """A fake system on which exactly these libraries load (nothing is asked of the host)."""
    present = set(sonames)
    return lambda soname: soname in present


ALL_XCB = tuple(lib.soname for lib in required_libs("xcb"))
ALL = ALL_XCB + tuple(lib.soname for lib in required_libs("wayland"))


def test_a_complete_system_has_nothing_missing() -> None:
    """With every library present, nothing is reported for offscreen or xcb."""
    assert check_qt_libs("offscreen", have=_have(*ALL)) == []
    assert check_qt_libs("xcb", have=_have(*ALL)) == []
    assert preflight.preflight({"QT_QPA_PLATFORM": "xcb"}, have=_have(*ALL)) is None


def test_missing_library_is_reported_with_package() -> None:
    """A soname that cannot be loaded is reported with the package to install; offscreen needs less."""
    have = _have(*(s for s in ALL if s != "libxcb-icccm.so.4"))
    assert check_qt_libs("xcb", have=have) == [
        "libxcb-icccm.so.4 not found (Debian/Ubuntu package: libxcb-icccm4)"
    ]
    assert check_qt_libs("offscreen", have=have) == []


def test_preflight_falls_back_like_qt() -> None:
    """With wayland libraries missing but xcb complete, a wayland session still starts (via xcb)."""
    have = _have(*ALL_XCB)
    assert preflight.preflight({"WAYLAND_DISPLAY": "wayland-0"}, have=have) is None
    msg = preflight.preflight({"QT_QPA_PLATFORM": "wayland"}, have=have)
    assert msg is not None and "libwayland-client0" in msg


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
    libs = [
        QtLib("libxcb-cursor.so.0", "libxcb-cursor0"),
        QtLib("libxcb-icccm.so.4", "libxcb-icccm4"),
        QtLib("libxcb-icccm.so.4", "libxcb-icccm4"),
    ]
    text = format_problems("xcb", libs)
    assert "sudo apt-get install libxcb-cursor0 libxcb-icccm4\n" in text + "\n"
    assert "libxcb-cursor.so.0" in text
    assert "QT_QPA_PLATFORM=offscreen" in text  # only display libraries are missing
    base = format_problems("offscreen", [BASE_LIBS[0]])
    assert "QT_QPA_PLATFORM=offscreen needs none" not in base


def test_preflight_does_not_import_qt() -> None:
    """Importing and running the check leaves PySide6 unimported (it must run before Qt loads)."""
    code = (
        "import sys; from app.ui.preflight import preflight; preflight({'QT_QPA_PLATFORM': 'offscreen'});"
        "sys.exit(1 if any(m.startswith('PySide6') for m in sys.modules) else 0)"
    )
    root = Path(__file__).resolve().parents[2]
    assert subprocess.run([sys.executable, "-c", code], cwd=root, timeout=60).returncode == 0


def _plan(installed: set[str], commands: set[str], **kw: bool) -> DebianPlan:
    opts = {"has_apt": True, "is_root": False, "sudo_without_prompt": False} | kw
    return debian_plan(
        "test", have_lib=lambda s: s in installed, have_command=lambda c: c in commands, **opts
    )


FRESH = set(ALL_XCB) - {"libxcb-icccm.so.4", "libxcb-keysyms.so.1"}  # this project's CI image before .ci/run


def test_debian_plan_names_what_is_missing_in_order() -> None:
    """The missing libraries' packages, then the test tools, each once; nothing missing: nothing to do."""
    plan = _plan(FRESH, {"xauth"})
    assert plan.missing == ("libxcb-icccm4", "libxcb-keysyms1", "xvfb")
    assert _plan(set(ALL_XCB), {"Xvfb", "xauth"}) == DebianPlan(())
    assert _plan(set(ALL_XCB), {"Xvfb", "xauth"}).ok
    run = debian_plan(
        "run",
        have_lib=lambda s: s in FRESH,
        have_command=lambda c: False,
        has_apt=True,
        is_root=False,
        sudo_without_prompt=False,
    )
    assert run.missing == ("libxcb-icccm4", "libxcb-keysyms1")  # a window needs no Xvfb


def test_debian_plan_installs_as_root_or_with_sudo_without_a_prompt() -> None:
    """Root runs apt-get itself; a user with password-less sudo goes through sudo -n; else nothing runs."""
    root = _plan(FRESH, {"xauth"}, is_root=True)
    assert root.commands == (
        ("apt-get", "update", "-qq"),
        (
            "apt-get",
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            "libxcb-icccm4",
            "libxcb-keysyms1",
            "xvfb",
        ),
    )
    sudo = _plan(FRESH, {"xauth"}, sudo_without_prompt=True)
    assert [c[:3] for c in sudo.commands] == [("sudo", "-n", "apt-get")] * 2
    user = _plan(FRESH, {"xauth"})
    assert user.commands == ()
    assert user.manual == (
        "sudo apt-get update && sudo apt-get install -y --no-install-recommends "
        "libxcb-icccm4 libxcb-keysyms1 xvfb"
    )


def test_debian_plan_without_apt_names_the_packages() -> None:
    """Not Debian/Ubuntu: no command runs; the message names the Debian packages to look for."""
    plan = _plan(FRESH, {"xauth"}, has_apt=False, is_root=True)
    assert plan.commands == () and "libxcb-icccm4 libxcb-keysyms1 xvfb" in plan.manual


def test_no_display_is_one_line_unless_headless() -> None:
    """No $DISPLAY/$WAYLAND_DISPLAY on Linux: one line; offscreen, a display, or macOS/Windows: none."""
    msg = display_problem({}, system="linux")
    assert msg is not None and "\n" not in msg and "no display" in msg
    assert display_problem({"QT_QPA_PLATFORM": "xcb"}, system="linux") == msg
    assert display_problem({"DISPLAY": ":0"}, system="linux") is None
    assert display_problem({"WAYLAND_DISPLAY": "wayland-0"}, system="linux") is None
    assert display_problem({"QT_QPA_PLATFORM": "offscreen"}, system="linux") is None
    assert display_problem({}, system="darwin") is None
    assert display_problem({}, system="win32") is None


def test_ensure_runs_the_plan_or_prints_the_exact_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """The plan's commands run in order; a failure (or no way to install) prints the command and says 1."""
    lines: list[str] = []

    def plan_with(*commands: tuple[str, ...]) -> None:
        plan = DebianPlan(("libxcb-icccm4",), commands, "sudo apt-get install -y libxcb-icccm4")
        monkeypatch.setattr(preflight, "debian_plan", lambda *a, **k: plan)

    monkeypatch.setattr(sys, "platform", "linux")
    plan_with(("true",), ("true",))
    assert preflight.ensure_debian_packages("test", out=lines.append) == 0
    plan_with(("true",), ("false",))
    lines.clear()
    assert preflight.ensure_debian_packages("test", out=lines.append) == 1
    assert "false failed (exit status 1)" in lines[1]
    assert lines[-1].endswith("sudo apt-get install -y libxcb-icccm4")
    plan_with()
    lines.clear()
    assert preflight.ensure_debian_packages("test", out=lines.append) == 1
    assert lines == [
        "slipstream: missing Debian packages: libxcb-icccm4",
        "slipstream: run this, then try again:\n  sudo apt-get install -y libxcb-icccm4",
    ]
    monkeypatch.setattr(preflight, "debian_plan", lambda *a, **k: DebianPlan(()))
    assert preflight.ensure_debian_packages("test", out=lines.append) == 0
