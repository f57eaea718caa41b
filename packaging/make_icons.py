"""Render resources/icons/slipstream.svg to the PNG sizes desktops want, plus .ico and .icns.

The outputs are committed, so building a package needs no renderer. Run after editing the SVG:

    .venv/bin/python packaging/make_icons.py            # rewrite resources/icons/*
    .venv/bin/python packaging/make_icons.py --check    # exit 1 if an output is missing or the wrong size

Rendering uses QtSvg's QSvgRenderer (in PySide6-Essentials). The .ico and .icns containers are
written here with PNG payloads (both formats allow that), so no Pillow or iconutil is needed.
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ICONS = ROOT / "resources" / "icons"
SVG = ICONS / "slipstream.svg"
SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
# ICNS PNG-payload types: (OSType, pixel size); ic10 is 512@2x = 1024 px, rendered from the SVG too.
ICNS_TYPES = (("icp4", 16), ("icp5", 32), ("icp6", 64), ("ic07", 128), ("ic08", 256), ("ic09", 512),
              ("ic10", 1024))


def png_name(size: int) -> str:
    return f"slipstream-{size}.png"


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk; ValueError if `data` is not a PNG."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG file")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def build_ico(pngs: dict[int, bytes]) -> bytes:
    """An .ico holding one PNG per size (Windows Vista+ reads PNG entries; 256 is written as 0)."""
    sizes = sorted(pngs)
    header = struct.pack("<HHH", 0, 1, len(sizes))
    offset = 6 + 16 * len(sizes)
    entries, blobs = b"", b""
    for s in sizes:
        data = pngs[s]
        dim = 0 if s >= 256 else s
        entries += struct.pack("<BBBBHHII", dim, dim, 0, 0, 1, 32, len(data), offset + len(blobs))
        blobs += data
    return header + entries + blobs


def read_ico(data: bytes) -> list[int]:
    """The pixel sizes listed in an .ico directory."""
    reserved, kind, count = struct.unpack("<HHH", data[:6])
    if reserved != 0 or kind != 1:
        raise ValueError("not an .ico file")
    out = []
    for i in range(count):
        w = data[6 + 16 * i]
        out.append(256 if w == 0 else w)
    return out


def build_icns(pngs: dict[str, bytes]) -> bytes:
    """An .icns of PNG-payload entries keyed by OSType (macOS 10.7+)."""
    body = b"".join(struct.pack(">4sI", t.encode(), 8 + len(d)) + d for t, d in pngs.items())
    return struct.pack(">4sI", b"icns", 8 + len(body)) + body


def read_icns(data: bytes) -> dict[str, int]:
    """OSType -> PNG width of each entry in an .icns file."""
    magic, total = struct.unpack(">4sI", data[:8])
    if magic != b"icns" or total != len(data):
        raise ValueError("not an .icns file")
    out, pos = {}, 8
    while pos < len(data):
        kind, length = struct.unpack(">4sI", data[pos:pos + 8])
        out[kind.decode()] = png_size(data[pos + 8:pos + length])[0]
        pos += length
    return out


def render(svg: Path, sizes: list[int]) -> dict[int, bytes]:
    """PNG bytes of the SVG at each size, antialiased on a transparent background."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    _app = QGuiApplication.instance() or QGuiApplication([])
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"{svg}: QSvgRenderer cannot parse it")
    out: dict[int, bytes] = {}
    for size in sizes:
        image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
        image.fill(Qt.GlobalColor.transparent)
        painter = QPainter(image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        renderer.render(painter)
        painter.end()
        buf = QByteArray()
        dev = QBuffer(buf)
        dev.open(QIODevice.OpenModeFlag.WriteOnly)
        image.save(dev, "PNG")  # type: ignore[call-overload]  # the stubs want bytes, the binding wants str
        dev.close()
        out[size] = bytes(buf.data())
    return out


def check(folder: Path = ICONS) -> list[str]:
    """Problems with the committed outputs (missing file, wrong size, broken container)."""
    problems = []
    for size in SIZES:
        path = folder / png_name(size)
        if not path.exists():
            problems.append(f"{path.name}: missing")
        elif png_size(path.read_bytes()) != (size, size):
            problems.append(f"{path.name}: is {png_size(path.read_bytes())}, want {size}x{size}")
    for name, reader, want in (("slipstream.ico", read_ico, list(ICO_SIZES)),
                               ("slipstream.icns", read_icns, dict(ICNS_TYPES))):
        path = folder / name
        try:
            got = reader(path.read_bytes())
        except (OSError, ValueError, struct.error) as e:
            problems.append(f"{name}: {e}")
            continue
        if got != want:
            problems.append(f"{name}: holds {got}, want {want}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only verify the committed outputs")
    parser.add_argument("--out", type=Path, default=ICONS, help="output folder (default: resources/icons)")
    args = parser.parse_args(argv)
    if args.check:
        problems = check(args.out)
        for p in problems:
            print(p, file=sys.stderr)
        return 1 if problems else 0
    wanted = sorted({*SIZES, *ICO_SIZES, *(s for _, s in ICNS_TYPES)})
    pngs = render(SVG, wanted)
    args.out.mkdir(parents=True, exist_ok=True)
    for size in SIZES:
        (args.out / png_name(size)).write_bytes(pngs[size])
    (args.out / "slipstream.ico").write_bytes(build_ico({s: pngs[s] for s in ICO_SIZES}))
    (args.out / "slipstream.icns").write_bytes(build_icns({t: pngs[s] for t, s in ICNS_TYPES}))
    print(f"wrote {len(SIZES)} PNGs, slipstream.ico and slipstream.icns to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
