"""Tests for `slipstream apply-patch`."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from app.cli import patch as cli_patch


def _run(monkeypatch: pytest.MonkeyPatch, root: Path, patch: str) -> int:
    monkeypatch.setattr(sys, "stdin", io.StringIO(patch))
    monkeypatch.setenv("XDG_STATE_HOME", str(root.parent / "state"))
    return cli_patch.main(["--root", str(root)])


def test_apply_patch_from_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A good patch is applied and summarised."""
    root = tmp_path / "p"
    root.mkdir()
    (root / "a.txt").write_text("x\ny\n", encoding="utf-8")
    code = _run(monkeypatch, root, "*** Begin Patch\n*** Update File: a.txt\n@@\n-y\n+Y\n*** End Patch\n")
    assert code == 0 and (root / "a.txt").read_text() == "x\nY\n"
    assert "M a.txt (+1 -1)" in capsys.readouterr().out


def test_apply_patch_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Malformed patches and missing files exit 1 with the reason and write nothing."""
    root = tmp_path / "p"
    root.mkdir()
    assert _run(monkeypatch, root, "nonsense") == 1
    assert "Begin Patch" in capsys.readouterr().err
    assert _run(monkeypatch, root, "*** Begin Patch\n*** Delete File: gone.txt\n*** End Patch") == 1
    assert "no such file" in capsys.readouterr().err
    assert _run(monkeypatch, root, "*** Begin Patch\n*** Add File: ../evil\n+x\n*** End Patch") == 1
    assert "'..'" in capsys.readouterr().err
    assert list(root.iterdir()) == []
