"""Unified diffs between the model's view of a file and the disk, with new lines secret-scanned.

Only inserted or replaced lines are new text, so only they pass the scanner; the model's view becomes
the *scanned* new text, so a withheld line never reappears later as diff context or a removed line.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from app.context.secrets_scan import Finding, scan_lines

__all__ = ["FileDiff", "diff_text", "human_size"]

_NO_EOL = "\\ No newline at end of file\n"


@dataclass(frozen=True, slots=True)
class FileDiff:
    """A unified diff (empty when nothing changed), the scanned new text, and line stats."""

    diff: str
    new_text: str
    added: int
    removed: int
    findings: tuple[Finding, ...]


def _fix_eol(lines: list[str]) -> str:
    out = []
    for ln in lines:
        if ln.endswith("\n"):
            out.append(ln)
        else:
            out.append(ln + "\n" + _NO_EOL)
    return "".join(out)


def diff_text(old_path: str, new_path: str, old: str, new: str, *, context: int = 3) -> FileDiff:
    """Diff `old` (what the model has, already clean) against `new` (disk), scanning only new lines."""
    old_lines = old.splitlines(keepends=True)
    new_lines = new.splitlines(keepends=True)
    matcher = difflib.SequenceMatcher(None, old_lines, new_lines, autojunk=False)
    clean: list[str] = []
    findings: list[Finding] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            clean.extend(new_lines[j1:j2])
            continue
        if j2 > j1:
            scanned, found = scan_lines(new_lines[j1:j2])
            clean.extend(scanned)
            # a line withheld in an earlier update is already a placeholder in the model's view
            before = set(old_lines[i1:i2])
            findings.extend(Finding(f.line + j1, f.kind) for f in found if scanned[f.line] not in before)
    diff_lines = list(
        difflib.unified_diff(old_lines, clean, fromfile=f"a/{old_path}", tofile=f"b/{new_path}", n=context)
    )
    added = sum(1 for ln in diff_lines[2:] if ln.startswith("+"))
    removed = sum(1 for ln in diff_lines[2:] if ln.startswith("-"))
    return FileDiff(_fix_eol(diff_lines), "".join(clean), added, removed, tuple(findings))


def human_size(n: int) -> str:
    """Bytes for people: 980 B, 12.3 KB, 4.1 MB."""
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n / (1024 * 1024):.1f} MB"
