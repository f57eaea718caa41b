"""The hostile-repository corpus (tests/security/attacks.py), asserted as counts: 0 escapes, 0 secrets
out, 0 lost checkpoints, every flood answered. `make soak` prints the same rows with figures."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from app.adapters.project_fs import ProjectFS, Target
from app.context.ledger import Ledger
from app.tools.fileops import ToolContext, execute
from app.tools.patch import ChangeSet
from tests.security import attacks


def _plan(fs: ProjectFS, patch: str) -> ChangeSet:
    """The change set apply_patch plans for the user's review (what `fs.apply` writes)."""
    change_set = execute("apply_patch", {"patch": patch}, ToolContext(fs)).change_set
    assert change_set is not None
    return change_set


def test_links_case_folds_and_windows_spellings_never_reach_git_or_env(tmp_path: Path) -> None:
    """Links into .git and onto .env, `.Git/config`, `.git.`, `GIT~1`, `.env:x`: 0 escapes in ≥ 100 attempts."""
    report = attacks.symlink_and_casefold_attacks(tmp_path)
    assert report.attempts >= 100
    assert report.escapes == []


def test_the_escape_detector_sees_a_leak(tmp_path: Path) -> None:
    """A view that follows links on reads does escape in the same replay (the check can fail)."""

    class Following(ProjectFS):
        def read_bytes(self, path: str, limit: int | None = None) -> bytes | None:
            try:
                return (self.root / path).read_bytes()
            except OSError:
                return None

    report = attacks.symlink_and_casefold_attacks(tmp_path, make_fs=Following)
    assert report.escapes


def test_the_nofollow_open_holds_even_when_the_rule_check_is_bypassed(tmp_path: Path) -> None:
    """Second line of defence: a target whose check was skipped (a link swapped in after it) fails the
    O_NOFOLLOW open instead of reading .git/config."""

    class SkipsCheck(ProjectFS):
        def target(self, raw: object, *, write: bool = False, allow_root: bool = False):  # type: ignore[no-untyped-def]
            return Target(str(raw), str(raw)) if raw == "docs/notes.cfg" else super().target(raw, write=write)

    project = tmp_path / "p"
    project.mkdir()
    attacks.hostile_tree(project)
    fs = SkipsCheck(project, state_dir=tmp_path / "state")
    out = execute("read_file", {"path": "docs/notes.cfg"}, ToolContext(fs))
    assert not out.ok and "link" in out.output_text and attacks.GIT_MARK not in out.output_text


def test_secrets_corpus_nothing_goes_out(tmp_path: Path) -> None:
    """≥ 30 kinds of secret through the snapshot, an update, read_file, search and a link to .env: 0 out."""
    report = attacks.secrets_corpus(tmp_path)
    assert report.kinds >= 30
    assert report.out == []


def test_the_secrets_check_sees_a_leak(tmp_path: Path) -> None:
    """The same read_file with redaction switched off does show the secrets (the check can fail)."""
    project = tmp_path / "s"
    project.mkdir()
    (project / "bot.py").write_text('SLACK = "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"\n')
    fs = ProjectFS(project, state_dir=tmp_path / "state")
    assert "AbCdEfGhIjKl" in execute("read_file", {"path": "bot.py"}, ToolContext(fs)).output_text
    shown = execute("read_file", {"path": "bot.py"}, ToolContext(fs, redact=fs.redact)).output_text
    assert "AbCdEfGhIjKl" not in shown and "withheld from this output" in shown


def test_parallel_applies_6_by_20(tmp_path: Path) -> None:
    """6 appliers × 20 rounds on one project: every apply lands and says so, ids unique, all undoable."""
    report = attacks.parallel_applies(tmp_path, workers=6, rounds=20)
    assert (report.applies, report.reported_failed, report.wrong_content) == (120, 0, 0), report.notes[:3]
    assert (report.duplicate_ids, report.lost_checkpoints, report.index_errors, report.temp_files) == (
        0,
        0,
        0,
        0,
    )


@pytest.mark.slow
@pytest.mark.skipif(os.name != "posix", reason="kill -9 needs POSIX signals")
def test_kill_9_mid_apply_is_all_or_nothing(tmp_path: Path) -> None:
    """A child killed -9 while applying 30 files: after recovery never half-applied, no checkpoint lost,
    no temp file left; some kills land mid-write (the test would see a torn set)."""
    report = attacks.kill_mid_apply(tmp_path, runs=8, files=30, seed=7)
    assert report.applies == 8
    assert (report.half_applied, report.lost_checkpoints, report.temp_files) == (0, 0, 0), report.notes


def test_recovery_rolls_back_a_pending_set(tmp_path: Path) -> None:
    """Deterministic crash: the checkpoint is pending and half the files are written; opening rolls back."""
    project = tmp_path / "p"
    project.mkdir()
    for i in range(4):
        (project / f"m{i}.txt").write_text(f"old {i}\n")
    fs = ProjectFS(project, state_dir=tmp_path / "state")
    patch = "*** Begin Patch\n" + "".join(
        f"*** Update File: m{i}.txt\n@@\n-old {i}\n+new {i}\n" for i in range(4)
    )
    cs = _plan(fs, patch + "*** End Patch")
    calls = 0
    real = fs._write_one

    def crash_after_two(t, data):  # type: ignore[no-untyped-def]
        nonlocal calls
        if calls == 2:
            raise SystemExit("killed")  # not an OSError: nothing rolls back in-process, like kill -9
        calls += 1
        real(t, data)

    fs._write_one = crash_after_two  # type: ignore[method-assign]
    with pytest.raises(SystemExit):
        fs.apply(cs)
    assert [(project / f"m{i}.txt").read_text() for i in range(4)] == [
        "new 0\n",
        "new 1\n",
        "old 2\n",
        "old 3\n",
    ]
    assert [c.state for c in fs.checkpoints.all()] == ["pending"]
    again = ProjectFS(project, state_dir=tmp_path / "state")
    assert [(project / f"m{i}.txt").read_text() for i in range(4)] == [f"old {i}\n" for i in range(4)]
    assert [c.state for c in again.checkpoints.all()] == ["rolled_back"] and "rolled back" in again.recovered[
        0
    ]


def test_redos_and_hunk_floods_answer_with_words(tmp_path: Path) -> None:
    """Catastrophic regexes and a 2,000-line hunk on a repetitive file all answer; the hunk is refused
    with words. (Loop lag is measured and printed by `make soak`; here only a generous hang guard.)"""
    report = attacks.redos_and_hunk_floods(tmp_path)
    assert report.attempts == len(attacks.REDOS) + 1
    assert report.refused_with_words >= 1 and "too costly" in report.notes[-1]
    assert report.worst_call_s < 30  # hang guard only


def test_checkpoints_are_pruned_by_age_and_size(tmp_path: Path) -> None:
    """Old checkpoints go, and the blob store stays under its byte budget; pending ones stay."""
    project = tmp_path / "p"
    project.mkdir()
    fs = ProjectFS(project, state_dir=tmp_path / "state")
    fs.checkpoints.max_bytes = 64 * 1024
    for n in range(6):
        (project / "big.txt").write_text(f"{n}\n" + "x" * 30_000 + "\n")
        patch = f"*** Begin Patch\n*** Update File: big.txt\n@@\n-{n}\n+{n}!\n*** End Patch"
        fs.apply(_plan(fs, patch), now=1000.0 + n)
    assert fs.checkpoints.size_bytes() <= 64 * 1024
    assert 1 <= len(fs.checkpoints.all()) < 6
    fs.checkpoints.max_age_s = 10
    assert fs.checkpoints.prune(now=10_000.0) >= 1 and fs.checkpoints.all() == []


def test_state_files_are_private(tmp_path: Path) -> None:
    """Checkpoint folder 0700, its index and blobs 0600."""
    project = tmp_path / "p"
    project.mkdir()
    (project / "a.txt").write_text("a\n")
    fs = ProjectFS(project, state_dir=tmp_path / "state")
    patch = "*** Begin Patch\n*** Update File: a.txt\n@@\n-a\n+b\n*** End Patch"
    fs.apply(_plan(fs, patch))
    folder = fs.checkpoints.folder
    assert folder.stat().st_mode & 0o777 == 0o700
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert files and all(p.stat().st_mode & 0o777 == 0o600 for p in files)


def test_rule_changes_apply_to_the_tools_and_the_context_at_once(tmp_path: Path) -> None:
    """Issue 18: a .slipstreamignore edit and new Settings patterns hide files from read_file, search and
    list_files, and from the context, on the very next call: one owner of the rules."""
    project = tmp_path / "p"
    (project / "gen").mkdir(parents=True)
    (project / "gen" / "out.py").write_text("NEEDLE = 1\n")
    (project / "big.data").write_text("NEEDLE = 2\n")
    fs = ProjectFS(project, state_dir=tmp_path / "state")
    ctx = ToolContext(fs)

    def visible() -> tuple[bool, bool, bool, bool]:
        read = execute("read_file", {"path": "gen/out.py"}, ctx).ok
        found = "gen/out.py" in execute("search", {"query": "NEEDLE"}, ctx).output_text
        listed = "gen/out.py" in execute("list_files", {}, ctx).output_text
        ctx_side = fs.read_version("gen/out.py").kind != "excluded"
        return read, found, listed, ctx_side

    assert visible() == (True, True, True, True)
    (project / ".slipstreamignore").write_text("gen/\n")
    from app.context.coalesce import Batch

    fs.read_batch(Batch(frozenset({".slipstreamignore"}), frozenset(), (), 1, 0.0, 0.1), lambda d: [])
    assert visible() == (False, False, False, False)
    assert execute("read_file", {"path": "big.data"}, ctx).ok
    fs.reload_rules(["*.data"])  # what Workspace.set_user_ignores does when Settings change
    assert not execute("read_file", {"path": "big.data"}, ctx).ok
    assert "big.data" not in execute("search", {"query": "NEEDLE"}, ctx).output_text
    assert "big.data" not in execute("list_files", {}, ctx).output_text
    (project / ".slipstreamignore").unlink()
    fs.reload_rules([])
    assert visible() == (True, True, True, True)


@pytest.mark.asyncio
async def test_workspace_and_tools_share_the_rules(tmp_path: Path) -> None:
    """The workspace's Settings change reaches the tools' read_file before any rescan finishes."""
    from app.services.workspace import Workspace

    project = tmp_path / "p"
    project.mkdir()
    (project / "notes.md").write_text("hello\n")
    ws = Workspace(project, files=ProjectFS(project, state_dir=tmp_path / "state"))
    await ws.start(watch=False)
    ctx = ToolContext(ws.files)
    assert execute("read_file", {"path": "notes.md"}, ctx).ok
    ws.set_user_ignores(["*.md"])
    assert not execute("read_file", {"path": "notes.md"}, ctx).ok
    await ws.settle()
    await ws.aclose()
    assert any(v.path == "notes.md" and v.kind == "excluded" for v in ws.ledger.index())


def test_case_insensitive_decision_is_detected_and_injectable(tmp_path: Path) -> None:
    """Linux tmp dirs are case-sensitive (detected); forcing folding makes `Build/` match `build/`."""
    project = tmp_path / "Proj"
    project.mkdir()
    (project / "Build").mkdir()
    (project / "Build" / "x.py").write_text("x\n")
    assert ProjectFS(project, state_dir=tmp_path / "s1").case_insensitive is (
        os.path.exists(tmp_path / "proj")
    )
    folded = ProjectFS(project, state_dir=tmp_path / "s2", case_insensitive=True)
    sensitive = ProjectFS(project, state_dir=tmp_path / "s3", case_insensitive=False)
    assert folded.is_excluded("Build/x.py") and not sensitive.is_excluded("Build/x.py")


def test_root_deleted_is_said_not_silent(tmp_path: Path) -> None:
    """A deleted project root is a clear RootMissingError for the context, which the workspace reports."""
    from app.adapters.fs_read import RootMissingError

    project = tmp_path / "p"
    project.mkdir()
    fs = ProjectFS(project, state_dir=tmp_path / "state")
    shutil.rmtree(project)
    with pytest.raises(RootMissingError, match="no longer exists"):
        fs.scan_tree()
    ledger = Ledger()
    assert ledger.index() == []
