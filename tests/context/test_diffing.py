"""Unified diffs with a/ b/ paths; only new lines are scanned; no-newline-at-end marker."""

from __future__ import annotations

from app.context.diffing import diff_text

AWS = "AKIA" + "IOSFODNN7EXAMPLQ"


def test_unified_diff_with_paths_and_stats() -> None:
    """A changed line gives a diff with a/ and b/ paths and +1 -1."""
    d = diff_text("x.py", "x.py", "a\nb\nc\n", "a\nB\nc\n")
    assert d.diff.startswith("--- a/x.py\n+++ b/x.py\n")
    assert "-b\n+B\n" in d.diff and (d.added, d.removed) == (1, 1)


def test_rename_diff_uses_both_paths() -> None:
    """A rename with an edit names the old and new path."""
    d = diff_text("old.py", "new.py", "a\n", "a\nb\n")
    assert "--- a/old.py" in d.diff and "+++ b/new.py" in d.diff


def test_new_secret_line_withheld_and_view_is_clean() -> None:
    """An added key never appears in the diff nor in the new view text."""
    d = diff_text("c.py", "c.py", "x = 1\n", f"x = 1\nKEY = '{AWS}'\n")
    assert AWS not in d.diff and AWS not in d.new_text
    assert len(d.findings) == 1 and d.findings[0].line == 1
    # a later edit elsewhere does not resurrect the secret as context
    d2 = diff_text("c.py", "c.py", d.new_text, f"x = 2\nKEY = '{AWS}'\n")
    assert AWS not in d2.diff


def test_missing_final_newline_marked() -> None:
    """Files without a trailing newline get git's marker, keeping the diff well-formed."""
    d = diff_text("n.txt", "n.txt", "a\nb", "a\nc")
    assert "\\ No newline at end of file\n" in d.diff
    assert all(line.endswith("\n") for line in d.diff.splitlines(keepends=True))
