"""App icon: the SVG source, every PNG size, and the .ico/.icns containers made from it."""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET

import pytest

from tests.packaging.helpers import ROOT, load

make_icons = load("make_icons")
ICONS = ROOT / "resources" / "icons"


def test_committed_icons_are_complete() -> None:
    """Every PNG size exists at its size; the .ico and .icns hold the expected entries."""
    assert make_icons.check(ICONS) == []


def test_check_reports_a_missing_or_wrong_size(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """check() names a missing file and a PNG of the wrong size."""
    for size in make_icons.SIZES:
        (tmp_path / make_icons.png_name(size)).write_bytes((ICONS / make_icons.png_name(size)).read_bytes())
    (tmp_path / make_icons.png_name(16)).write_bytes((ICONS / make_icons.png_name(32)).read_bytes())
    (tmp_path / make_icons.png_name(512)).unlink()
    problems = make_icons.check(tmp_path)
    assert any(p.startswith("slipstream-16.png: is (32, 32)") for p in problems)
    assert "slipstream-512.png: missing" in problems
    assert any(p.startswith("slipstream.ico") for p in problems)


def test_svg_source_is_square_and_parses() -> None:
    """The SVG is well-formed with a square viewBox (desktops scale it as the scalable icon)."""
    root = ET.parse(ICONS / "slipstream.svg").getroot()
    assert root.tag.endswith("svg")
    _, _, w, h = (float(v) for v in root.attrib["viewBox"].split())
    assert w == h > 0


def test_ico_and_icns_round_trip() -> None:
    """The container writers produce what the readers (and the OS loaders' layout) expect."""
    png16 = (ICONS / "slipstream-16.png").read_bytes()
    png256 = (ICONS / "slipstream-256.png").read_bytes()
    ico = make_icons.build_ico({16: png16, 256: png256})
    assert make_icons.read_ico(ico) == [16, 256]
    assert struct.unpack("<I", ico[6 + 16 + 12 : 6 + 16 + 16])[0] == 6 + 32 + len(png16)  # 2nd offset
    icns = make_icons.build_icns({"icp4": png16, "ic08": png256})
    assert make_icons.read_icns(icns) == {"icp4": 16, "ic08": 256}
    with pytest.raises(ValueError):
        make_icons.png_size(b"GIF89a" + b"\0" * 30)


def test_render_matches_requested_sizes(qapp) -> None:  # type: ignore[no-untyped-def]
    """QSvgRenderer renders the SVG at each size, with opaque pixels in the middle."""
    from PySide6.QtGui import QImage

    pngs = make_icons.render(ICONS / "slipstream.svg", [16, 48])
    for size, data in pngs.items():
        assert make_icons.png_size(data) == (size, size)
        image = QImage.fromData(data)  # format sniffed (PySide6 wants a str format, its stub says bytes)
        assert image.pixelColor(size // 2, size // 2).alpha() == 255
        assert image.pixelColor(0, 0).alpha() < 255  # rounded corner stays transparent
