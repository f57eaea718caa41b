"""Check Qt's system libraries before PySide6 is imported, so a missing one gets a useful message.

Without this, a bare Debian/Ubuntu prints Qt's own abort ("could not load the Qt platform plugin
xcb", or even a misleading "xcb-cursor0 is needed" when libxcb-icccm4 is the one missing) and dumps
core. Here each library is dlopen()ed by its soname with ctypes; a PyInstaller bundle or PySide6's
own ``Qt/lib`` folder also count, since those ship copies. This module must not import PySide6.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DebianPlan",
    "QtLib",
    "check_qt_libs",
    "debian_plan",
    "detect_platform",
    "detect_platforms",
    "display_problem",
    "ensure_debian_packages",
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


HaveLib = Callable[[str], bool]  # soname -> loadable here?


def system_has_lib(dirs: Iterable[Path] | None = None) -> HaveLib:
    """The real check: dlopen() by soname, or a copy in a bundled folder."""
    search = list(_bundled_dirs() if dirs is None else dirs)
    return lambda soname: _loadable(soname, search)


def missing_libs(
    platform: str, *, dirs: Iterable[Path] | None = None, have: HaveLib | None = None
) -> list[QtLib]:
    """The libraries for `platform` that neither the system nor a bundled folder provides.

    `have` replaces the real check (tests feed a fake list of installed libraries).
    """
    if have is None:
        if not sys.platform.startswith("linux"):
            return []  # Windows and macOS wheels/bundles carry everything Qt needs
        have = system_has_lib(dirs)
    return [lib for lib in required_libs(platform) if not have(lib.soname)]


def check_qt_libs(platform: str, *, have: HaveLib | None = None) -> list[str]:
    """One line per missing library, naming the Debian package to install; [] when all load."""
    return [
        f"{lib.soname} not found (Debian/Ubuntu package: {lib.package})"
        for lib in missing_libs(platform, have=have)
    ]


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


def preflight(env: Mapping[str, str] | None = None, *, have: HaveLib | None = None) -> str | None:
    """None when Qt can start; else the message to print before exiting with status 1.

    Qt tries the platforms of a fallback list in order, so one fully loadable platform is enough.
    """
    platforms = detect_platforms(env)
    missing: list[QtLib] = []
    for platform in platforms:
        libs = missing_libs(platform, have=have)
        if not libs:
            return None
        missing += [lib for lib in libs if lib not in missing]
    return format_problems("/".join(platforms), missing)


# --------------------------------------------------------------------------------------------------
# No display


# Platform plugins that draw without a display server (QT_QPA_PLATFORM=...).
HEADLESS_PLATFORMS = frozenset({"offscreen", "minimal", "vnc", "eglfs", "linuxfb", "vkkhrdisplay"})


def display_problem(env: Mapping[str, str] | None = None, *, system: str = sys.platform) -> str | None:
    """One line when the window has nowhere to go (Linux/BSD without $DISPLAY and $WAYLAND_DISPLAY
    and no headless platform chosen); None when it can open."""
    env = os.environ if env is None else env
    if system.startswith(("win", "darwin", "cygwin")):
        return None
    if any(p in HEADLESS_PLATFORMS for p in detect_platforms(env)):
        return None
    if env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"):
        return None
    return (
        "slipstream: no display: neither $DISPLAY nor $WAYLAND_DISPLAY is set, so the window cannot "
        "open (`slipstream --smoke` runs offscreen; `slipstream serve`, `watch`, `ask` and `test` "
        "need no display)"
    )


# --------------------------------------------------------------------------------------------------
# `make run` / `make test` on a fresh Debian/Ubuntu: install what Qt needs, or say exactly how


@dataclass(frozen=True, slots=True)
class Tool:
    """A program the tests run, and the Debian package that ships it."""

    command: str
    package: str


# `make test` also runs the real window under Xvfb (tests/ui/test_quit.py).
TEST_TOOLS: tuple[Tool, ...] = (Tool("Xvfb", "xvfb"), Tool("xauth", "xauth"))
PURPOSES = ("run", "test")


def needed_for(purpose: str) -> tuple[tuple[QtLib, ...], tuple[Tool, ...]]:
    """What `make run` (a real window: xcb, which XWayland also serves) and `make test` need."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown purpose {purpose!r}; one of {', '.join(PURPOSES)}")
    return required_libs("xcb"), TEST_TOOLS if purpose == "test" else ()


@dataclass(frozen=True, slots=True)
class DebianPlan:
    """What is missing and what to do about it."""

    missing: tuple[str, ...]  # Debian packages, in order, each once
    commands: tuple[tuple[str, ...], ...] = ()  # to run now (root, or sudo without a prompt)
    manual: str = ""  # the exact command for the user when we cannot run it ourselves

    @property
    def ok(self) -> bool:
        return not self.missing


def debian_plan(
    purpose: str,
    *,
    have_lib: HaveLib,
    have_command: Callable[[str], bool],
    has_apt: bool,
    is_root: bool,
    sudo_without_prompt: bool,
) -> DebianPlan:
    """Pure decision: which packages are missing, and whether we install them or tell the user how."""
    libs, tools = needed_for(purpose)
    missing = [lib.package for lib in libs if not have_lib(lib.soname)]
    missing += [t.package for t in tools if not have_command(t.command)]
    packages = tuple(dict.fromkeys(missing))
    if not packages:
        return DebianPlan(())
    install = ("apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages)
    update = ("apt-get", "update", "-qq")
    manual = "sudo apt-get update && sudo apt-get install -y --no-install-recommends " + " ".join(packages)
    if not has_apt:
        return DebianPlan(
            packages, manual=f"install the equivalents of these Debian packages: {' '.join(packages)}"
        )
    if is_root:
        return DebianPlan(packages, (update, install), manual)
    if sudo_without_prompt:
        return DebianPlan(packages, (("sudo", "-n", *update), ("sudo", "-n", *install)), manual)
    return DebianPlan(packages, manual=manual)


def _sudo_without_prompt() -> bool:
    if shutil.which("sudo") is None:
        return False
    try:
        return (
            subprocess.run(
                ["sudo", "-n", "true"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=10,
            ).returncode
            == 0
        )
    except (OSError, subprocess.SubprocessError):
        return False


def ensure_debian_packages(purpose: str, *, out: Callable[[str], None] = print) -> int:
    """Install what `purpose` needs (apt-get as root, or sudo -n), else print the exact command.

    Returns 0 when everything is there (now), 1 when the user has to act.
    """
    if not sys.platform.startswith("linux"):
        return 0
    have_lib = system_has_lib()
    has_apt = shutil.which("apt-get") is not None
    is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    plan = debian_plan(
        purpose,
        have_lib=have_lib,
        have_command=lambda c: shutil.which(c) is not None,
        has_apt=has_apt,
        is_root=is_root,
        sudo_without_prompt=has_apt and not is_root and _sudo_without_prompt(),
    )
    if plan.ok:
        return 0
    if plan.commands:
        out(f"slipstream: installing the Debian packages Qt needs: {' '.join(plan.missing)}")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for cmd in plan.commands:
            try:
                done = subprocess.run(
                    list(cmd),
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    timeout=900,
                )
            except (OSError, subprocess.SubprocessError) as exc:
                out(f"slipstream: {' '.join(cmd)} failed: {exc}")
                break
            if done.returncode != 0:
                tail = done.stdout.decode(errors="replace").strip().splitlines()[-5:]
                out(f"slipstream: {' '.join(cmd)} failed (exit status {done.returncode}):")
                for line in tail:
                    out(f"  {line}")
                break
        else:
            return 0
    out(f"slipstream: missing Debian packages: {' '.join(plan.missing)}")
    out(f"slipstream: run this, then try again:\n  {plan.manual}")
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m app.ui.preflight --ensure run|test` (the Makefile), or a plain check of Qt's libraries."""
    ap = argparse.ArgumentParser(prog="python -m app.ui.preflight", description=main.__doc__)
    ap.add_argument("--ensure", choices=PURPOSES, help="install what `make run`/`make test` need, or say how")
    args = ap.parse_args(argv)
    if args.ensure:
        return ensure_debian_packages(args.ensure)
    problem = preflight()
    if problem:
        print(problem, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
