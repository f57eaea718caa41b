"""PyInstaller spec sanity: entry script, metadata for --version, lazily imported modules, exclusions."""

from __future__ import annotations

import ast
import re

import pytest

from tests.packaging.helpers import PACKAGING, ROOT

SPEC = PACKAGING / "slipstream.spec"


def _spec_list(name: str) -> list[str]:
    tree = ast.parse(SPEC.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            value = ast.literal_eval(node.value)
            return list(value)
    raise AssertionError(f"{name} not found in {SPEC.name}")


def test_spec_wires_entry_metadata_and_hidden_imports() -> None:
    """The spec runs packaging/entry.py, copies slipstream's metadata and collects every app module."""
    text = SPEC.read_text(encoding="utf-8")
    ast.parse(text)
    assert '"packaging" / "entry.py"' in text and (PACKAGING / "entry.py").is_file()
    assert 'copy_metadata("slipstream")' in text
    assert 'collect_submodules("app"' in text
    assert '(str(ROOT / "resources"), "resources")' in text
    entry = (PACKAGING / "entry.py").read_text(encoding="utf-8")
    assert "from app.main import main" in entry and "sys.exit(main())" in entry


def test_excluded_qt_modules_are_unused_by_the_app() -> None:
    """No module under app/ imports a Qt module the spec leaves out of the bundle."""
    excluded = set(_spec_list("QT_UNUSED"))
    used: set[str] = set()
    for path in (ROOT / "app").rglob("*.py"):
        used |= set(re.findall(r"PySide6\.(Qt\w+)", path.read_text(encoding="utf-8")))
    assert excluded and not {f"PySide6.{m}" for m in used} & excluded


def test_workflow_builds_all_three_with_committed_configs() -> None:
    """The Actions matrix covers Linux, Windows and macOS and points at files that exist."""
    yaml = pytest.importorskip("yaml")
    text = (ROOT / ".github" / "workflows" / "build.yml").read_text(encoding="utf-8")
    flow = yaml.safe_load(text)
    kinds = {row["kind"] for row in flow["jobs"]["build"]["strategy"]["matrix"]["include"]}
    assert kinds == {"linux", "windows", "macos"}
    for ref in (
        "packaging/slipstream.spec",
        "packaging/windows/slipstream.iss",
        "packaging/macos/build_dmg.sh",
        "packaging/smoke_turn.py",
    ):
        assert ref.replace("/", "\\") in text or ref in text
        assert (ROOT / ref).is_file()
    assert "make package" in text and "make package-smoke" in text


def test_windows_and_macos_configs_match_the_linux_bundle() -> None:
    """Inno Setup installs dist/slipstream/ with the committed .ico; the .app uses the .icns."""
    iss = (PACKAGING / "windows" / "slipstream.iss").read_text(encoding="utf-8")
    assert 'Source: "dist\\slipstream\\*"' in iss and "recursesubdirs" in iss
    assert "SetupIconFile=resources\\icons\\slipstream.ico" in iss
    assert (ROOT / "resources" / "icons" / "slipstream.ico").is_file()
    spec = SPEC.read_text(encoding="utf-8")
    assert 'name="Slipstream.app"' in spec and "slipstream.icns" in spec
    assert "dist/Slipstream.app" in (PACKAGING / "macos" / "build_dmg.sh").read_text(encoding="utf-8")
