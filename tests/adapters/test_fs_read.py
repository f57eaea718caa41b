"""Reading the tree through ProjectFS: ignore rules, symlinks, errors as values, batches re-read from disk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.adapters.fs_read import RootMissingError, rel_path
from app.adapters.project_fs import ProjectFS
from app.context.coalesce import Batch


def _fs(root: Path) -> ProjectFS:
    return ProjectFS(root, state_dir=root.parent / f"{root.name}-state")


def _tree(root: Path) -> None:
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "src" / "main.py").write_text("print('hi')\n")
    (root / "src" / "pkg" / "mod.py").write_text("x = 1\n")
    (root / "src" / "pkg" / "gen.txt").write_text("generated\n")
    (root / "src" / "pkg" / ".gitignore").write_text("gen.txt\n")
    (root / ".gitignore").write_text("*.log\n")
    (root / "app.log").write_text("log\n")
    (root / ".env").write_text("KEY=1\n")
    (root / "node_modules" / "x").mkdir(parents=True)
    (root / "node_modules" / "x" / "i.js").write_text("//\n")
    (root / "logo.png").write_bytes(b"\x89PNG\x00\x00")


def test_scan_respects_rules_and_classifies(tmp_path: Path) -> None:
    """Nested .gitignore, defaults and secrets apply; excluded files are listed with a reason."""
    _tree(tmp_path)
    fs = _fs(tmp_path)
    idx = {v.path: v for v in fs.scan_tree()}
    assert idx["src/main.py"].kind == "text" and idx["src/main.py"].text is None and idx["src/main.py"].digest
    assert idx["src/pkg/gen.txt"].reason == "gitignored"
    assert idx["app.log"].reason == "gitignored"
    assert idx[".env"].reason == "secret"
    assert idx["logo.png"].kind == "binary"
    assert not any(p.startswith("node_modules") for p in idx)


def test_symlink_loop_and_outside_links(tmp_path: Path) -> None:
    """Directory links are never followed; file links outside the root are excluded."""
    root = tmp_path / "proj"
    root.mkdir()
    (root / "a.py").write_text("a\n")
    (root / "loop").symlink_to(root, target_is_directory=True)
    (tmp_path / "secret.txt").write_text("s\n")
    (root / "out.txt").symlink_to(tmp_path / "secret.txt")
    (root / "in.txt").symlink_to(root / "a.py")
    (root / "self").symlink_to(root / "self")  # a link to itself: ELOOP
    idx = {v.path: v for v in _fs(root).scan_tree()}
    assert set(idx) == {"a.py", "out.txt", "in.txt", "self"}
    assert idx["out.txt"].kind == "excluded" and idx["in.txt"].kind == "text"
    assert idx["self"].kind == "unreadable"


def test_errors_become_values(tmp_path: Path) -> None:
    """A vanished file is 'missing'; an unreadable one is 'unreadable'; non-UTF-8 is lossy text."""
    fs = _fs(tmp_path)
    assert fs.read_version("nope.py").kind == "missing"
    (tmp_path / "l.txt").write_bytes(b"caf\xe9\n")
    v = fs.read_version("l.txt")
    assert v.lossy and v.text == "caf\ufffd\n"
    p = tmp_path / "locked.py"
    p.write_text("x\n")
    p.chmod(0)
    try:
        if os.access(p, os.R_OK):
            pytest.skip("running as root: permissions are not enforced")
        assert fs.read_version("locked.py").kind == "unreadable"
    finally:
        p.chmod(0o644)


def test_rel_path_outside_root(tmp_path: Path) -> None:
    """Paths outside the root map to None."""
    assert rel_path(tmp_path, tmp_path / "a" / "b.py") == "a/b.py"
    assert rel_path(tmp_path, tmp_path.parent / "x") is None
    assert rel_path(tmp_path, tmp_path) is None


def test_read_batch_rescans_dirs_and_reports_vanished(tmp_path: Path) -> None:
    """A deleted directory's known files come back 'missing'; named paths are read with text."""
    _tree(tmp_path)
    fs = _fs(tmp_path)
    known = [v.path for v in fs.scan_tree() if v.kind != "excluded"]
    for f in (tmp_path / "src" / "pkg").iterdir():
        f.unlink()
    (tmp_path / "src" / "pkg").rmdir()
    (tmp_path / "src" / "main.py").write_text("print('bye')\n")
    batch = Batch(frozenset({"src/main.py"}), frozenset({"src/pkg"}), (), 3, 0.0, 0.1)
    out = fs.read_batch(batch, lambda d: [p for p in known if p.startswith(d + "/")])
    by = {v.path: v for v in out.versions}
    assert by["src/main.py"].text == "print('bye')\n"
    assert by["src/pkg/mod.py"].kind == "missing"
    assert not out.rules_changed


def test_resync_marks_newly_ignored_as_excluded(tmp_path: Path) -> None:
    """After a .gitignore change, a known file now ignored is 'excluded', not 'deleted'."""
    _tree(tmp_path)
    fs = _fs(tmp_path)
    known = [v.path for v in fs.scan_tree() if v.kind != "excluded"]
    (tmp_path / ".gitignore").write_text("*.log\nsrc/\n")
    out = {v.path: v for v in fs.resync(known)}
    assert out["src/main.py"].kind == "excluded"


def test_root_missing_is_a_clear_error(tmp_path: Path) -> None:
    """A root that is gone raises RootMissingError with the path in the message."""
    root = tmp_path / "gone"
    root.mkdir()
    fs = _fs(root)
    root.rmdir()
    with pytest.raises(RootMissingError, match="no longer exists"):
        fs.scan_tree()


def test_scan_answers_as_read_version_does(tmp_path: Path) -> None:
    """The one-open-per-file scan gives, file by file, the answer of the careful `read_version`."""
    root = tmp_path / "proj"
    _tree(root)
    (root / "big.txt").write_text("x" * 5000)
    (root / "src" / "link.py").symlink_to(root / "src" / "main.py")
    (tmp_path / "outside.txt").write_text("o\n")
    (root / "src" / "out.txt").symlink_to(tmp_path / "outside.txt")
    if hasattr(os, "mkfifo"):
        os.mkfifo(root / "src" / "pipe")
    fs = _fs(root)
    got = fs.scan_tree(max_bytes=1000)
    assert {v.path for v in got} >= {"big.txt", "src/link.py", "src/out.txt", "src/pkg/mod.py", ".env"}
    for v in got:
        assert v == fs.read_version(v.path, max_bytes=1000, keep_text=False), v.path


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts descriptors through /proc")
def test_a_scan_stopped_early_closes_its_folders(tmp_path: Path) -> None:
    """Folder descriptors held by the walk are closed when the caller stops iterating."""
    for d in ("a/b/c", "a/d", "e"):
        (tmp_path / d).mkdir(parents=True)
        (tmp_path / d / "f.py").write_text("x\n")
    fs = _fs(tmp_path)
    before = _open_fds()
    it = fs.iter_tree()
    next(it)
    next(it)
    it.close()
    assert _open_fds() == before
    assert len(fs.scan_tree()) == 3
    assert _open_fds() == before


def test_a_folder_swapped_for_a_link_mid_scan_is_not_entered(tmp_path: Path) -> None:
    """A folder replaced by a link to elsewhere between listing and entering it is refused."""
    root = tmp_path / "proj"
    (root / "sub").mkdir(parents=True)
    (root / "a.py").write_text("a\n")
    (root / "sub" / "x.py").write_text("x\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "stolen.py").write_text("not yours\n")
    errors: list[str] = []
    it = _fs(root).iter_tree(on_error=lambda p, e: errors.append(p))
    first = next(it)  # the root is listed: its files come before its folders
    assert first.path == "a.py"
    (root / "sub").rename(tmp_path / "sub-moved")
    (root / "sub").symlink_to(elsewhere, target_is_directory=True)
    rest = list(it)
    assert not any("stolen" in v.path for v in rest)
    assert errors == ["sub"]


def test_a_file_swapped_for_a_link_mid_scan_is_judged_as_a_link(tmp_path: Path) -> None:
    """A file replaced by a link out of the project after listing is never read through it."""
    root = tmp_path / "proj"
    root.mkdir()
    (root / "a.py").write_text("a\n")
    (root / "b.py").write_text("b\n")
    (tmp_path / "secret.txt").write_text("s\n")
    it = _fs(root).iter_tree()
    assert next(it).path == "a.py"
    (root / "b.py").unlink()
    (root / "b.py").symlink_to(tmp_path / "secret.txt")
    b = next(it)
    assert b.path == "b.py" and b.kind == "excluded" and b.reason == "link outside the project"


def test_a_walk_can_list_by_metadata_then_hash_only_what_it_listed(tmp_path: Path) -> None:
    """`hash_first`: that many regular files are read and hashed, the rest listed by metadata (the
    same rules apply to both); `only` then reads exactly those, and agrees with a full walk."""
    _tree(tmp_path)
    fs = _fs(tmp_path)
    full = {v.path: v for v in fs.scan_tree()}
    first = {v.path: v for v in fs.iter_tree(hash_first=2)}
    assert first.keys() == full.keys()
    listed = {p for p, v in first.items() if not v.hashed}
    read = [v for v in first.values() if v.kind in ("text", "binary") and v.hashed]
    assert len(read) == 2 and all(v == full[v.path] for v in read) and listed
    for p in listed:  # a file's kind needs its bytes: listed ones are text until hashed
        assert (first[p].kind, first[p].size, first[p].text) == ("text", full[p].size, None)
    assert all(v == full[p] for p, v in first.items() if v.kind not in ("text", "binary"))  # same rules
    later = {v.path: v for v in fs.iter_tree(only=listed)}
    assert later == {p: full[p] for p in listed}


def _awkward_tree(root: Path) -> None:
    """Names every ignore rule and spelling check has an opinion on, in nested folders."""
    (root / ".gitignore").write_text("*.log\n/top_only.txt\ndocs/*.tmp\n!keep.log\nbuild/\n")
    (root / ".slipstreamignore").write_text("private_*\n")
    for d in ("", "docs", "src/pkg", "src/pkg/deep", "src/tests", "Docs"):
        (root / d).mkdir(parents=True, exist_ok=True)
        for name in (
            "a.py",
            "x.log",
            "keep.log",
            "top_only.txt",
            "n.tmp",
            ".env",
            ".env.example",
            "id_rsa",
            "credentials.json",
            "private_notes.md",
            ".hidden",
            "trailing.",
            "trailing ",
            "back\\slash.py",
            "co:lon.py",
            "README.MD",
            "Secrets.YAML",
        ):
            (root / d / name).write_text("x\n")
    (root / "src" / "pkg" / ".gitignore").write_text("deep/*.py\n*.md\n")


@pytest.mark.parametrize("casefold", [False, True])
def test_a_listing_by_metadata_excludes_exactly_what_a_full_walk_does(tmp_path: Path, casefold: bool) -> None:
    """Files listed by their metadata take the folder's share of the rules once (`_folder_judge`):
    every verdict equals the file-by-file one of a full walk, in both case modes."""
    root = tmp_path / "p"
    root.mkdir()
    _awkward_tree(root)

    def fresh() -> ProjectFS:
        return ProjectFS(
            root,
            state_dir=tmp_path / "state",
            case_insensitive=casefold,
            user_patterns=["*.yaml", "!docs/keep.log"],
        )

    full = {v.path: (v.kind, v.reason) for v in fresh().scan_tree()}
    listed = {v.path: (v.kind, v.reason) for v in fresh().iter_tree(hash_first=0)}
    assert listed == full
    fs = fresh()
    singly = {p: fs.exclusion(p) for p in full}
    assert {p: e.reason for p, e in singly.items() if e is not None} == {
        p: r for p, (k, r) in listed.items() if k == "excluded"
    }
    assert any(k == "excluded" for k, _ in listed.values()) and any(k == "text" for k, _ in listed.values())


def test_rules_reloaded_during_a_listing_apply_to_the_rest_of_the_folder(tmp_path: Path) -> None:
    """A folder's share of the rules is decided once, but new rules (Settings) count from the next file."""
    for i in range(6):
        (tmp_path / f"m{i}.py").write_text("x\n")
    fs = _fs(tmp_path)
    walk = fs.iter_tree(hash_first=0)
    first = next(walk)
    assert first.kind == "text"
    fs.reload_rules(["*.py"])
    rest = list(walk)
    assert len(rest) == 5 and all((v.kind, v.reason) == ("excluded", "settings") for v in rest)
