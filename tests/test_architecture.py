"""The sans-I/O cores stay free of sockets, clocks, threads, asyncio and Qt (import-linter covers app.*)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "app"
CORES = ["protocol", "context", "render", "tools"]
FORBIDDEN = {"asyncio", "socket", "selectors", "threading", "time", "subprocess", "PySide6", "qasync", "ssl"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("core", CORES)
def test_core_is_sans_io(core: str) -> None:
    """No core module imports an I/O, clock or GUI module."""
    offenders = {
        str(p.relative_to(ROOT)): sorted(_imports(p) & FORBIDDEN)
        for p in sorted((ROOT / core).rglob("*.py"))
        if _imports(p) & FORBIDDEN
    }
    assert offenders == {}


def test_forbidden_detection_works(tmp_path: Path) -> None:
    """The check itself catches a forbidden import."""
    bad = tmp_path / "bad.py"
    bad.write_text("import asyncio\nfrom time import monotonic\n", encoding="utf-8")
    assert _imports(bad) & FORBIDDEN == {"asyncio", "time"}
