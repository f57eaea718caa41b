"""Tests for app.adapters.project_fs: confinement, ignore rules, atomic apply, checkpoints and undo."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.adapters.project_fs import ProjectFS, UndoError
from app.tools.fileops import ToolContext, ToolResult, execute
from app.tools.patch import ChangeSet, PatchConflict, plan_patch
from app.tools.paths import PathRefused


def P(*lines: str) -> str:
    return "\n".join(["*** Begin Patch", *lines, "*** End Patch"])


@pytest.fixture
def project(tmp_path: Path) -> ProjectFS:
    root = tmp_path / "proj"
    (root / "src").mkdir(parents=True)
    (root / "src" / "a.py").write_bytes(b"one\r\ntwo\r\nthree\r\n")
    (root / "notes.txt").write_text("alpha\nbeta\n", encoding="utf-8")
    (root / ".gitignore").write_text("build/\n", encoding="utf-8")
    (root / "build").mkdir()
    (root / "build" / "out.txt").write_text("gen\n", encoding="utf-8")
    (root / ".env").write_text("KEY=1\n", encoding="utf-8")
    (tmp_path / "outside.txt").write_text("secret outside\n", encoding="utf-8")
    return ProjectFS(root, state_dir=tmp_path / "state")


def test_confinement(project: ProjectFS, tmp_path: Path) -> None:
    """Symlinks out, '..', absolute paths, secrets and device files are refused."""
    os.symlink(tmp_path / "outside.txt", project.root / "link.txt")
    os.symlink(tmp_path, project.root / "linkdir")
    for raw, word in [
        ("link.txt", "outside the project"),
        ("linkdir/outside.txt", "outside the project"),
        ("../outside.txt", "'..'"),
        (str(tmp_path / "outside.txt"), "absolute"),
        (".env", "secret"),
    ]:
        with pytest.raises(PathRefused, match=word):
            project.read_bytes(raw)
    os.mkfifo(project.root / "pipe")
    with pytest.raises(PathRefused, match="not a regular file"):
        project.read_bytes("pipe")
    paths = [e.path for e in project.walk()]
    assert "link.txt" not in paths and "pipe" not in paths and "linkdir" not in paths


def test_walk_respects_ignore_rules(project: ProjectFS) -> None:
    """.gitignore'd folders and secrets are not listed."""
    paths = [e.path for e in project.walk()]
    assert paths == [".gitignore", "notes.txt", "src", "src/a.py"]
    res = execute("search", '{"query": "gen"}', ToolContext(project))
    assert res.output_text.startswith("no matches")


def test_symlink_inside_is_followed(project: ProjectFS) -> None:
    """A symlink to a file inside the project reads fine."""
    os.symlink(project.root / "notes.txt", project.root / "alias.txt")
    assert project.read_bytes("alias.txt") == b"alpha\nbeta\n"


def _planned(res: ToolResult) -> ChangeSet:
    assert res.change_set is not None, res.output_text
    return res.change_set


def _apply(project: ProjectFS, patch: str, turn: int = 1, **kw):  # type: ignore[no-untyped-def]
    res = execute("apply_patch", {"patch": patch}, ToolContext(project))
    assert res.ok, res.output_text
    return project.apply(_planned(res), turn=turn, now=1.0, **kw)


def test_apply_keeps_crlf_and_undo(project: ProjectFS) -> None:
    """Applying keeps CRLF; undo restores the exact bytes, including adds and deletes."""
    applied = _apply(
        project,
        P(
            "*** Update File: src/a.py",
            "@@",
            " one",
            "-two",
            "+TWO",
            "*** Add File: new/b.txt",
            "+hi",
            "*** Delete File: notes.txt",
        ),
    )
    assert (project.root / "src/a.py").read_bytes() == b"one\r\nTWO\r\nthree\r\n"
    assert (project.root / "new/b.txt").read_text() == "hi\n" and not (project.root / "notes.txt").exists()
    assert applied.checkpoint is not None and sorted(applied.written) == [
        "new/b.txt",
        "notes.txt",
        "src/a.py",
    ]
    project.undo()
    assert (project.root / "src/a.py").read_bytes() == b"one\r\ntwo\r\nthree\r\n"
    assert not (project.root / "new/b.txt").exists() and (project.root / "notes.txt").exists()
    with pytest.raises(UndoError, match="nothing to undo"):
        project.undo()


def test_undo_back_to_turn(project: ProjectFS) -> None:
    """Undoing to a turn reverts that turn and every later one."""
    _apply(project, P("*** Update File: notes.txt", "@@", "-alpha", "+A1"), turn=1)
    _apply(project, P("*** Update File: notes.txt", "@@", "-A1", "+A2"), turn=2)
    _apply(project, P("*** Update File: notes.txt", "@@", "-beta", "+B3"), turn=3)
    project.undo_turn(2)
    assert (project.root / "notes.txt").read_text() == "A1\nbeta\n"
    assert [c.turn for c in project.checkpoints.active()] == [1]
    # a new store on the same folder sees the same history (persisted, outside the project)
    again = ProjectFS(project.root, state_dir=project.checkpoints.folder)
    assert [c.turn for c in again.checkpoints.active()] == [1]
    assert not (project.root / ".slipstream").exists()


def test_undo_merges_or_refuses_after_user_edit(project: ProjectFS) -> None:
    """Undo after a later user edit merges when disjoint and refuses on overlap."""
    (project.root / "notes.txt").write_text("1\n2\n3\n4\n5\n6\n", encoding="utf-8")
    _apply(project, P("*** Update File: notes.txt", "@@", "-1", "+ONE"))
    (project.root / "notes.txt").write_text("ONE\n2\n3\n4\n5\nSIX\n", encoding="utf-8")
    project.undo()
    assert (project.root / "notes.txt").read_text() == "1\n2\n3\n4\n5\nSIX\n"
    _apply(project, P("*** Update File: notes.txt", "@@", "-2", "+TWO"))
    (project.root / "notes.txt").write_text("1\nTWO user\n3\n4\n5\nSIX\n", encoding="utf-8")
    with pytest.raises(UndoError, match="overlap"):
        project.undo()
    assert (project.root / "notes.txt").read_text() == "1\nTWO user\n3\n4\n5\nSIX\n"


def test_disk_change_during_review_is_merged_or_refused(project: ProjectFS) -> None:
    """A file edited while the patch waited for review is merged, or the apply is refused whole."""
    (project.root / "notes.txt").write_text("1\n2\n3\n4\n5\n6\n", encoding="utf-8")
    cs = plan_patch(P("*** Update File: notes.txt", "@@", "-6", "+SIX"), project.read_bytes)
    (project.root / "notes.txt").write_text("ONE\n2\n3\n4\n5\n6\n", encoding="utf-8")
    project.apply(cs)
    assert (project.root / "notes.txt").read_text() == "ONE\n2\n3\n4\n5\nSIX\n"
    cs = plan_patch(
        P("*** Update File: notes.txt", "@@", "-ONE", "+one", "*** Add File: z.txt", "+z"), project.read_bytes
    )
    (project.root / "notes.txt").write_text("uno\n2\n3\n4\n5\nSIX\n", encoding="utf-8")
    with pytest.raises(PatchConflict):
        project.apply(cs)
    assert (project.root / "notes.txt").read_text() == "uno\n2\n3\n4\n5\nSIX\n"
    assert not (project.root / "z.txt").exists()


def test_per_hunk_decisions(project: ProjectFS) -> None:
    """Rejected hunks and files are not written."""
    (project.root / "notes.txt").write_text("a\nb\nc\nd\ne\nf\ng\nh\n", encoding="utf-8")
    res = execute(
        "apply_patch",
        {
            "patch": P(
                "*** Update File: notes.txt", "@@", "-a", "+A", "@@", "-h", "+H", "*** Add File: x.txt", "+x"
            )
        },
        ToolContext(project),
    )
    applied = project.apply(_planned(res), {"notes.txt": [False, True], "x.txt": [False]})
    assert (project.root / "notes.txt").read_text() == "a\nb\nc\nd\ne\nf\ng\nH\n"
    assert applied.skipped == ["x.txt"] and not (project.root / "x.txt").exists()


def test_never_writes_git_or_secrets(project: ProjectFS) -> None:
    """Patches into .git or onto secrets are refused before anything is written."""
    (project.root / ".git").mkdir()
    for patch in (
        P("*** Add File: .git/hooks/x", "+x"),
        P("*** Update File: .env", "@@", "-KEY=1", "+KEY=2"),
    ):
        res = execute("apply_patch", {"patch": patch}, ToolContext(project))
        assert not res.ok and ("a secret" in res.output_text or "protected" in res.output_text), (
            res.output_text
        )
    assert not (project.root / ".git/hooks/x").exists()


def test_atomic_write_keeps_mode(project: ProjectFS) -> None:
    """The replaced file keeps its permissions and no temp files are left behind."""
    target = project.root / "run.sh"
    target.write_text("echo a\n", encoding="utf-8")
    target.chmod(0o755)
    project.write_atomic("run.sh", b"echo b\n")
    assert target.read_text() == "echo b\n" and (target.stat().st_mode & 0o777) == 0o755
    assert not [p for p in project.root.iterdir() if p.name.endswith(".slipstream-tmp")]
