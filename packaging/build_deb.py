"""Build dist/slipstream_VERSION_ARCH.deb from the PyInstaller bundle in dist/slipstream/.

Layout: the bundle in /opt/slipstream, /usr/bin/slipstream -> /opt/slipstream/slipstream, a .desktop
entry, hicolor icons (PNG sizes + scalable SVG). `dpkg-deb -Zzstd` takes about a second where the
default xz takes ~40 s (QT-CI.md §5).

Depends is computed, not guessed: every library some ELF file of the bundle needs (readelf -d) that
the bundle does not carry itself is looked up with `dpkg -S` on the build machine, plus the packages
Qt dlopen()s at run time (BASE_DEPENDS, which NEEDED cannot show). A library no package provides
stops the build: that is the "install the xcb libraries before building" pitfall, caught early.

    .venv/bin/python packaging/build_deb.py [--bundle dist/slipstream] [--out dist]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app.ui.preflight import BASE_LIBS, PLATFORM_LIBS  # noqa: E402 - Qt-free, runs before PySide6

PACKAGE = "slipstream"
INSTALL_DIR = f"/opt/{PACKAGE}"
ICON_SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)
MAINTAINER = "Slipstream developers <slipstream@example.invalid>"
# Loaded with dlopen() by Qt (GL/EGL via the xcb-glx/egl integrations, fonts via fontconfig) or needed
# for readable text, so absent from NEEDED; verified on a stock Debian 12 (QT-CI.md §5).
BASE_DEPENDS = ("libgl1", "libegl1", "libxcb1", "libfontconfig1", "fonts-dejavu-core | fonts-liberation2")
# The sonames Qt's platform plugins need, with their packages: one table, shared with the start-up check.
KNOWN_SONAMES = {lib.soname: lib.package for libs in (BASE_LIBS, *PLATFORM_LIBS.values()) for lib in libs}
NEEDED_RE = re.compile(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]")
# Provided by the kernel/loader or libc6 itself, never a separate package to depend on.
LOADER = re.compile(r"^(ld-linux.*|linux-vdso.*|ld64.*)$")


class BuildError(RuntimeError):
    """The .deb cannot be built; the message says what to fix."""


def project_version(pyproject: Path = ROOT / "pyproject.toml") -> str:
    """The one version, from pyproject.toml's [project] table."""
    return str(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["version"])


def deb_arch() -> str:
    """Debian architecture name of this machine."""
    try:
        return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def glibc_version() -> str:
    """The build machine's glibc: the bundle's own libraries link against it (floor for libc6)."""
    got = os.confstr("CS_GNU_LIBC_VERSION") or "glibc 2.36"
    return got.split()[-1]


def elf_files(bundle: Path) -> list[Path]:
    out = []
    for p in sorted(bundle.rglob("*")):
        if p.is_file() and not p.is_symlink():
            with p.open("rb") as f:
                if f.read(4) == b"\x7fELF":
                    out.append(p)
    return out


def external_sonames(bundle: Path) -> set[str]:
    """Sonames NEEDED by the bundle's ELF files that no file in the bundle provides."""
    files = elf_files(bundle)
    if not files:
        return set()
    res = subprocess.run(["readelf", "-d", "-W", *map(str, files)], capture_output=True, text=True)
    needed = set(NEEDED_RE.findall(res.stdout))
    provided = {p.name for p in bundle.rglob("*")}
    return {s for s in needed - provided if not LOADER.match(s)}


def packages_for(sonames: set[str]) -> dict[str, str]:
    """soname -> Debian package providing it on this machine (dpkg -S on the multiarch path)."""
    if not sonames:
        return {}
    multiarch = sysconfig.get_config_var("MULTIARCH") or f"{platform.machine()}-linux-gnu"
    patterns = [f"*/{multiarch}/{s}" for s in sorted(sonames)]
    res = subprocess.run(["dpkg", "-S", *patterns], capture_output=True, text=True)
    found: dict[str, str] = {}
    for line in res.stdout.splitlines():
        pkg, _, path = line.partition(": ")
        if "," in pkg or not path:  # diversions / several owners: not a plain library line
            continue
        found.setdefault(Path(path.strip()).name, pkg.split(":")[0])
    return found


def compute_depends(bundle: Path) -> list[str]:
    """The Depends list for this bundle; BuildError names any library nothing provides."""
    external = external_sonames(bundle)
    owners = packages_for(external)
    # Not installed on this build machine, but known (the platform plugins' libraries): map by table.
    owners |= {s: KNOWN_SONAMES[s] for s in external - owners.keys() if s in KNOWN_SONAMES}
    unresolved = sorted(external - owners.keys())
    if unresolved:
        raise BuildError(
            "the bundle needs libraries that are neither bundled nor installed here: "
            + ", ".join(unresolved)
            + ". Install them (apt-get install ...) and rebuild the bundle, so PyInstaller copies them."
        )
    pkgs = {p for p in owners.values() if p != "libc6"}
    deps = [f"libc6 (>= {glibc_version()})"]
    deps += list(BASE_DEPENDS)
    deps += sorted(pkgs - set(BASE_DEPENDS))
    return deps


def control_text(version: str, arch: str, installed_kb: int, depends: list[str]) -> str:
    """DEBIAN/control (Installed-Size in KiB, as dpkg wants)."""
    return (
        f"Package: {PACKAGE}\n"
        f"Version: {version}\n"
        f"Architecture: {arch}\n"
        f"Maintainer: {MAINTAINER}\n"
        f"Installed-Size: {installed_kb}\n"
        f"Depends: {', '.join(depends)}\n"
        "Section: devel\n"
        "Priority: optional\n"
        "Description: desktop companion keeping a model's view of your project current\n"
        " Slipstream watches a project folder and streams every settled batch of changes\n"
        " as diffs over one persistent Responses API WebSocket session. It also ships\n"
        " `slipstream serve`, a local server speaking the same protocol, so it works\n"
        " offline.\n"
    )


def desktop_text(exec_path: str = f"/usr/bin/{PACKAGE}", icon: str = PACKAGE) -> str:
    template = (ROOT / "packaging" / "linux" / "slipstream.desktop.in").read_text(encoding="utf-8")
    return template.replace("@EXEC@", exec_path).replace("@ICON@", icon)


def _du_kib(root: Path) -> int:
    total = sum(p.lstat().st_size for p in root.rglob("*") if p.is_file() or p.is_symlink())
    return (total + 1023) // 1024


def stage(bundle: Path, root: Path, version: str, arch: str, depends: list[str]) -> None:
    """Lay out the package tree under `root` (cleared first)."""
    if not (bundle / PACKAGE).is_file():
        raise BuildError(f"{bundle}/{PACKAGE} not found: build the bundle first (make bundle)")
    if root.exists():
        shutil.rmtree(root)
    opt = root / INSTALL_DIR.lstrip("/")
    shutil.copytree(bundle, opt, symlinks=True)
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin" / PACKAGE).symlink_to(f"{INSTALL_DIR}/{PACKAGE}")
    apps = root / "usr/share/applications"
    apps.mkdir(parents=True)
    (apps / f"{PACKAGE}.desktop").write_text(desktop_text(), encoding="utf-8")
    icons = ROOT / "resources" / "icons"
    for size in ICON_SIZES:
        dest = root / f"usr/share/icons/hicolor/{size}x{size}/apps"
        dest.mkdir(parents=True)
        shutil.copy2(icons / f"slipstream-{size}.png", dest / f"{PACKAGE}.png")
    scalable = root / "usr/share/icons/hicolor/scalable/apps"
    scalable.mkdir(parents=True)
    shutil.copy2(icons / "slipstream.svg", scalable / f"{PACKAGE}.svg")
    doc = root / f"usr/share/doc/{PACKAGE}"
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(
        "Slipstream\nLicense: MIT\nBundled third-party components (Qt, PySide6, Python) keep their own"
        " licenses; see /opt/slipstream/_internal.\n", encoding="utf-8")
    control = root / "DEBIAN"
    control.mkdir()
    (control / "control").write_text(control_text(version, arch, _du_kib(root), depends), encoding="utf-8")
    for p in [root, *root.rglob("*")]:  # dpkg-deb refuses group/world-writable control dirs
        if p.is_dir() and not p.is_symlink():
            p.chmod(0o755)


def build(bundle: Path, out: Path, *, version: str | None = None, arch: str | None = None,
          depends: list[str] | None = None, work: Path | None = None) -> Path:
    """Stage and pack the .deb; returns its path."""
    version = version or project_version()
    arch = arch or deb_arch()
    depends = compute_depends(bundle) if depends is None else depends
    work = work or ROOT / "build" / "deb"
    root = work / f"{PACKAGE}_{version}_{arch}"
    stage(bundle, root, version, arch, depends)
    out.mkdir(parents=True, exist_ok=True)
    deb = out / f"{PACKAGE}_{version}_{arch}.deb"
    res = subprocess.run(["dpkg-deb", "--root-owner-group", "-Zzstd", "--build", str(root), str(deb)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise BuildError(f"dpkg-deb failed: {res.stderr.strip()}")
    shutil.rmtree(root)
    return deb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="build the Slipstream .deb from the PyInstaller bundle")
    parser.add_argument("--bundle", type=Path, default=ROOT / "dist" / PACKAGE)
    parser.add_argument("--out", type=Path, default=ROOT / "dist")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    try:
        deb = build(args.bundle, args.out)
    except BuildError as e:
        print(f"build_deb: error: {e}", file=sys.stderr)
        return 1
    size = deb.stat().st_size / 1e6
    print(f"build_deb: wrote {deb} ({size:.1f} MB) in {time.perf_counter() - t0:.1f} s")
    info = subprocess.run(["dpkg-deb", "--field", str(deb), "Depends"], capture_output=True, text=True)
    print(f"  Depends: {info.stdout.strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
