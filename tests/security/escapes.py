"""Path-escape attempts through the file tools, shared by the bounded test and `make soak`.

An *escape* is any of: text of a file outside the project in a tool's output, or a file outside the
project created, changed or deleted by a tool (read_file, list_files, search, apply_patch planned
and then applied through ProjectFS). A hard link inside the project that shares an inode with an
outside file is, to the file system, a project file: reading it is not an escape, but writing
through it must replace the project's entry and leave the outside file alone.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.adapters.project_fs import ProjectFS
from app.tools.fileops import ToolContext, execute
from app.tools.patch import PatchError

SECRET = "OUTSIDE-SECRET-7f3a"  # only in files outside the project
HARD_TARGET = "hardlink target\n"


def _escapes(outside_rel: str) -> list[str]:
    """Path spellings that try to leave the project; `outside_rel` names ../outside/secret.txt."""
    outside = Path(outside_rel)
    absolute = str(outside.resolve())
    return [
        "../outside/secret.txt",
        "../../outside/secret.txt",
        "a/../../outside/secret.txt",
        "./../outside/secret.txt",
        "src/../../outside/secret.txt",
        absolute,
        "/etc/passwd",
        "//etc/passwd",
        "~/.ssh/id_rsa",
        "~root/.bashrc",
        "..\\outside\\secret.txt",
        "src\\..\\..\\outside\\secret.txt",
        "C:\\Windows\\win.ini",
        "C:/Windows/win.ini",
        "c:outside\\secret.txt",
        "\\\\server\\share\\secret.txt",
        "\\\\?\\C:\\secret.txt",
        absolute.replace("/", "\\"),
        "README.md\x00../../outside/secret.txt",
        "\x00",
        "../outside/secret.txt\x00.md",
        "link_out/secret.txt",
        "link_file",
        "src/deep_link/secret.txt",
        "link_loop/x",
        "a/" * 2000 + "../" * 2001 + "outside/secret.txt",
        "x" * 100_000,
        "a/" * 5000 + "f.txt",
        " ../outside/secret.txt",
        "../outside/secret.txt ",
        "..//outside//secret.txt",
        ".../outside/secret.txt",
    ]


@dataclass
class EscapeReport:
    attempts: int = 0
    refused: int = 0
    escapes: list[str] = field(default_factory=list)


def make_tree(base: Path) -> tuple[Path, Path]:
    """(project, outside): symlinks to a folder, a file and a loop lead out; a hard link too."""
    project, outside = base / "project", base / "outside"
    (project / "src").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.txt").write_text(SECRET + "\n")
    (outside / "hard_target.txt").write_text(HARD_TARGET)
    (project / "README.md").write_text("# inside\n")
    (project / "link_out").symlink_to(outside, target_is_directory=True)
    (project / "link_file").symlink_to(outside / "secret.txt")
    (project / "src" / "deep_link").symlink_to(Path("..") / ".." / "outside", target_is_directory=True)
    (project / "link_loop").symlink_to(project / "link_loop")
    os.link(outside / "hard_target.txt", project / "hard.txt")
    return project, outside


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _patches(path: str) -> Iterator[str]:
    yield f"*** Begin Patch\n*** Update File: {path}\n@@\n-{SECRET}\n+pwned\n*** End Patch"
    yield f"*** Begin Patch\n*** Add File: {path}.new\n+pwned\n*** End Patch"
    yield f"*** Begin Patch\n*** Delete File: {path}\n*** End Patch"
    yield f"*** Begin Patch\n*** Update File: README.md\n*** Move to: {path}.moved\n@@\n-# inside\n+# moved\n*** End Patch"


def run_escapes(base: Path, make_fs: Callable[[Path, Path], Any] | None = None) -> EscapeReport:
    """Every spelling through every tool (and every patch form); counts attempts and escapes.
    `make_fs(project, state_dir)` replaces ProjectFS (the test proves the detector with a leaky one)."""
    project, outside = make_tree(base)
    fs = (make_fs or (lambda root, state: ProjectFS(root, state_dir=state)))(project, base / "state")
    ctx = ToolContext(fs)
    before = _digest(outside)
    report = EscapeReport()

    def attempt(label: str, name: str, args: dict[str, object]) -> None:
        report.attempts += 1
        result = execute(name, args, ctx)
        if SECRET in result.output_text:
            report.escapes.append(f"{label}: {name} showed the outside secret")
        if not result.ok:
            report.refused += 1
        change_set = result.change_set
        if change_set is not None:  # a patch that planned: the user would approve it, apply it
            try:
                fs.apply(change_set)
            except (PatchError, ValueError, OSError, AttributeError):
                report.refused += 1
        after = _digest(outside)
        if after != before:
            report.escapes.append(f"{label}: {name} changed files outside the project")
            before.clear()
            before.update(after)

    for raw in _escapes(str(base / "project" / ".." / "outside" / "secret.txt")):
        label = repr(raw[:60])
        attempt(label, "read_file", {"path": raw})
        attempt(label, "list_files", {"path": raw})
        attempt(label, "search", {"query": SECRET[8:], "path": raw})
        for patch in _patches(raw):
            attempt(label, "apply_patch", {"patch": patch})
    attempt("root search", "search", {"query": SECRET[8:]})  # the output echoes the query
    attempt("root list", "list_files", {"path": "", "max_entries": 5000})
    for patch in _patches("hard.txt"):  # writing through the hard link must not reach the target
        attempt("hard link", "apply_patch", {"patch": patch.replace(SECRET, "hardlink target")})
    if (outside / "hard_target.txt").read_text() != HARD_TARGET:
        report.escapes.append("hard link: the outside target changed")
    return report
