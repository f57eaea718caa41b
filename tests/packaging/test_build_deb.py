"""The .deb builder: control fields, desktop entry, layout and computed Depends, on a tiny fake bundle."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.packaging.helpers import ROOT, load

build_deb = load("build_deb")
debian_only = pytest.mark.skipif(
    shutil.which("dpkg-deb") is None or shutil.which("readelf") is None,
    reason="needs dpkg-deb and readelf (Debian)",
)


def _fields(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    key = ""
    for line in text.splitlines():
        if line.startswith(" "):
            out[key] += "\n" + line
        else:
            key, _, value = line.partition(": ")
            out[key] = value
    return out


def test_control_has_required_fields() -> None:
    """Package, Version, Architecture, Maintainer, Installed-Size, Depends and a wrapped Description."""
    text = build_deb.control_text("1.2.3", "amd64", 4096, ["libc6 (>= 2.36)", "libgl1"])
    fields = _fields(text)
    assert fields["Package"] == "slipstream"
    assert fields["Version"] == "1.2.3"
    assert fields["Architecture"] == "amd64"
    assert fields["Installed-Size"] == "4096"
    assert fields["Depends"] == "libc6 (>= 2.36), libgl1"
    assert "<" in fields["Maintainer"] and ">" in fields["Maintainer"]
    assert text.endswith("\n")
    desc = fields["Description"].splitlines()
    assert len(desc[0]) <= 80 and all(line.startswith(" ") and len(line) <= 81 for line in desc[1:])


def test_version_is_the_one_in_pyproject() -> None:
    """The package version comes from pyproject.toml, the same one `slipstream --version` reports."""
    import app

    assert build_deb.project_version() == app.__version__


def test_desktop_entry_is_valid() -> None:
    """The .desktop entry has the keys desktop environments need, and desktop-file-validate agrees."""
    text = build_deb.desktop_text()
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(text)
    entry = parser["Desktop Entry"]
    assert entry["Type"] == "Application"
    assert entry["Exec"].split()[0] == "/usr/bin/slipstream"
    assert entry["TryExec"] == "/usr/bin/slipstream"
    assert entry["Icon"] == "slipstream"
    assert entry["Categories"].endswith(";") and "Development" in entry["Categories"]
    assert "@" not in text  # every template placeholder was filled
    validator = shutil.which("desktop-file-validate")
    if validator:
        path = ROOT / "build" / "test-slipstream.desktop"
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        res = subprocess.run([validator, str(path)], capture_output=True, text=True)
        assert res.returncode == 0 and not res.stdout.strip(), res.stdout + res.stderr


def _fake_bundle(tmp_path: Path) -> Path:
    bundle = tmp_path / "bundle"
    (bundle / "_internal").mkdir(parents=True)
    true = Path(shutil.which("true") or "/bin/true").resolve()
    shutil.copy2(true, bundle / "slipstream")  # a real ELF: NEEDS libc.so.6
    (bundle / "_internal" / "data.txt").write_text("x", encoding="utf-8")
    return bundle


@debian_only
def test_depends_are_computed_from_the_bundle(tmp_path: Path) -> None:
    """libc.so.6 needed by the executable becomes `libc6 (>= glibc)`; Qt's dlopen()ed libs are added."""
    deps = build_deb.compute_depends(_fake_bundle(tmp_path))
    assert deps[0] == f"libc6 (>= {build_deb.glibc_version()})"
    assert {"libgl1", "libegl1", "libfontconfig1"} <= set(deps)
    assert len(deps) == len(set(deps))


def test_unknown_library_stops_the_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A library neither bundled nor provided by any package is named in the error."""
    monkeypatch.setattr(build_deb, "external_sonames", lambda bundle: {"libslipstream-nowhere.so.7"})
    monkeypatch.setattr(build_deb, "packages_for", lambda sonames: {})
    with pytest.raises(build_deb.BuildError, match=r"libslipstream-nowhere\.so\.7"):
        build_deb.compute_depends(tmp_path)


def test_missing_bundle_is_a_clear_error(tmp_path: Path) -> None:
    """Building without a bundle says to build the bundle first."""
    with pytest.raises(build_deb.BuildError, match="make bundle"):
        build_deb.build(
            tmp_path / "nothing",
            tmp_path / "out",
            version="0.0.1",
            arch="amd64",
            depends=["libc6"],
            work=tmp_path / "work",
        )


@debian_only
def test_deb_layout(tmp_path: Path) -> None:
    """The .deb installs the bundle in /opt, links /usr/bin, and ships the .desktop and every icon size."""
    deb = build_deb.build(_fake_bundle(tmp_path), tmp_path / "out", version="9.8.7", work=tmp_path / "work")
    assert deb.name == f"slipstream_9.8.7_{build_deb.deb_arch()}.deb"
    info = subprocess.run(
        ["dpkg-deb", "--field", str(deb)], capture_output=True, text=True, check=True
    ).stdout
    fields = _fields(info)
    assert fields["Version"] == "9.8.7"
    assert fields["Depends"].startswith("libc6 (>= ")
    assert int(fields["Installed-Size"]) > 0
    listing = subprocess.run(
        ["dpkg-deb", "--contents", str(deb)], capture_output=True, text=True, check=True
    ).stdout
    names = {line.split()[5].removeprefix(".") for line in listing.splitlines()}
    assert "/opt/slipstream/slipstream" in names
    assert "/opt/slipstream/_internal/data.txt" in names
    assert "/usr/share/applications/slipstream.desktop" in names
    assert "/usr/share/icons/hicolor/scalable/apps/slipstream.svg" in names
    for size in build_deb.ICON_SIZES:
        assert f"/usr/share/icons/hicolor/{size}x{size}/apps/slipstream.png" in names
    assert "/usr/bin/slipstream -> /opt/slipstream/slipstream" in listing
    assert " root/root " in listing  # owned by root whoever built it
    assert not (tmp_path / "work").exists() or not any((tmp_path / "work").iterdir())


def test_ci_smoke_script_parses() -> None:
    """packaging/ci_smoke.sh is valid bash (it only runs for real after `make package`)."""
    res = subprocess.run(
        ["bash", "-n", str(ROOT / "packaging" / "ci_smoke.sh")], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX server start-up")
def test_smoke_turn_against_the_source_server() -> None:
    """packaging/smoke_turn.py completes one scripted turn against `python -m app serve`."""
    smoke_turn = load("smoke_turn")
    assert smoke_turn.main(["--timeout", "30", "--", sys.executable, "-m", "app"]) == 0
