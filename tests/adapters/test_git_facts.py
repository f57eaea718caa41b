"""git's recent files for ranking: read when git and a repository exist, nothing otherwise."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from app.adapters.git_facts import recent_commits


def _git(root: Path, *args: str) -> None:
    subprocess.run(
        [
            "git",
            "-C",
            str(root),
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.invalid",
            "-c",
            "commit.gpgsign=false",
            *args,
        ],
        check=True,
        capture_output=True,
    )


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_recent_commits_newest_first_relative_to_the_project(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    proj = repo / "proj"
    proj.mkdir(parents=True)
    _git(repo, "init", "-q")
    (proj / "old.py").write_text("a\n")
    (repo / "outside.txt").write_text("o\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "one")
    (proj / "new.py").write_text("b\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "two")
    assert recent_commits(proj) == ("new.py", "old.py")  # the project's files only, relative to it


def test_no_repository_or_no_git_gives_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    assert recent_commits(tmp_path) == ()
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    assert recent_commits(tmp_path) == ()
