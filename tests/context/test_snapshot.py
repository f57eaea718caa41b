"""Classification of files and the budgeted initial context."""

from __future__ import annotations

import pytest

from app.context.ignore import Exclusion
from app.context.snapshot import FileVersion, RankFacts, build_initial_context, make_version, tree_listing


def _t(path: str, text: str, mtime: float = 0.0) -> FileVersion:
    return make_version(path, text.encode(), size=len(text.encode()), mtime=mtime, digest=path + "1")


def test_make_version_kinds() -> None:
    """Binary, oversized, excluded, unreadable and non-UTF-8 text are told apart."""
    assert make_version("b.bin", b"\x00\x01", size=2, mtime=0).kind == "binary"
    assert make_version("big", None, size=10, mtime=0, max_bytes=5).kind == "oversized"
    assert (
        make_version(".env", None, size=1, mtime=0, exclusion=Exclusion("secret", "defaults")).reason
        == "secret"
    )
    assert make_version("x", None, size=1, mtime=0, error="Permission denied").kind == "unreadable"
    v = make_version("latin.txt", "café".encode("latin-1"), size=4, mtime=0)
    assert v.kind == "text" and v.lossy and v.text == "caf\ufffd"


def test_priority_pins_then_touched_then_small_source() -> None:
    """The pin and the file the user touched since open win over a small source file (modification
    times alone rank nothing: on a fresh clone every file is recent)."""
    now = 1_000_000.0
    files = [
        _t("pinned.md", "p" * 400, mtime=0),
        _t("recent.py", "r" * 400, mtime=now - 60),
        _t("small.py", "s" * 40, mtime=0),
        _t("other.dat", "o" * 40, mtime=0),
    ]
    touched = RankFacts(touched=("recent.py",))
    ctx = build_initial_context(
        files, {v.path: v for v in files}, 2000, pins=["pinned.md"], now=now, facts=touched
    )
    assert list(ctx.included) == ["pinned.md", "recent.py", "small.py", "other.dat"]
    assert "```pinned.md" in ctx.text and "```recent.py" in ctx.text
    tight = build_initial_context(
        files, {v.path: v for v in files}, 300, pins=["pinned.md"], now=now, facts=touched
    )
    assert "pinned.md" in tight.included and "recent.py" not in tight.included  # over the per-file cap
    assert tight.tokens <= 300 and "recent.py" in tight.listed_only


def test_snapshot_lists_excluded_binary_and_oversized_without_content() -> None:
    """The tree shows badges; no content of excluded/binary/oversized files is sent."""
    files = [
        make_version(".env", None, size=9, mtime=0, exclusion=Exclusion("secret", "defaults")),
        make_version("logo.png", b"\x89PNG\x00", size=5, mtime=0, digest="d"),
        make_version("dump.sql", None, size=10_000_000, mtime=0, digest="d2"),
        _t("a.py", "print('hi')\n"),
    ]
    ctx = build_initial_context(files, {f.path: f for f in files}, 1000)
    assert ".env  [excluded: secret]" in ctx.text
    assert "logo.png  [binary" in ctx.text and "dump.sql  [too large" in ctx.text
    assert list(ctx.included) == ["a.py"] and "print('hi')" in ctx.text


def test_snapshot_scans_secrets_and_marks_non_utf8() -> None:
    """File content passes the scanner; lossy text is marked."""
    key = "AKIA" + "IOSFODNN7EXAMPLQ"
    files = [
        _t("conf.py", f"K = '{key}'\n"),
        make_version("l.txt", b"caf\xe9\n", size=5, mtime=0, digest="x"),
    ]
    ctx = build_initial_context(files, {f.path: f for f in files}, 2000)
    assert key not in ctx.text and "conf.py" in ctx.findings
    assert "not valid UTF-8" in ctx.text


def test_tree_listing_collapses_when_too_long() -> None:
    """10,000 paths do not fit 500 tokens: directories with counts, and a note of what is left."""
    files = [_t(f"pkg{i % 20}/mod{i}.py", "x") for i in range(10_000)]
    text = tree_listing(files, 500)
    assert "pkg0/  (500 files)" in text
    assert len(text) < 500 * 4 + 200


def test_budget_must_be_positive() -> None:
    """A zero budget is a caller error."""
    with pytest.raises(ValueError):
        build_initial_context([], {}, 0)


def test_fence_longer_than_backticks_inside() -> None:
    """A file containing ``` is fenced with four backticks."""
    f = _t("README.md", "```py\nx\n```\n")
    ctx = build_initial_context([f], {f.path: f}, 1000)
    assert "````README.md\n```py" in ctx.text
