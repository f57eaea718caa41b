"""Tests for app.tools.patch: parsing, fuzzy hunks, line endings, three-way merge, planning."""

from __future__ import annotations

import pytest

from app.tools.patch import (
    PatchApplyError,
    PatchConflict,
    PatchParseError,
    apply_chunks,
    merge3,
    parse_patch,
    plan_patch,
)


def P(*lines: str) -> str:
    return "\n".join(["*** Begin Patch", *lines, "*** End Patch"])


def reader(files: dict[str, bytes]):  # type: ignore[no-untyped-def]
    return files.get


def test_parse_all_sections() -> None:
    """Add, delete, update with move and EOF marker all parse."""
    p = parse_patch(P(
        "*** Add File: new.txt", "+a", "+b",
        "*** Delete File: gone.txt",
        "*** Update File: a.py", "*** Move to: b.py", "@@ def f():", " x", "-y", "+z", "*** End of File",
    ))  # fmt: skip
    kinds = [(o.kind, o.path, o.move_to) for o in p.ops]
    assert kinds == [("add", "new.txt", None), ("delete", "gone.txt", None), ("update", "a.py", "b.py")]
    assert p.ops[0].content == "a\nb\n"
    ch = p.ops[2].chunks[0]
    assert (ch.anchor, ch.old_lines, ch.new_lines, ch.is_eof) == ("def f():", ("x", "y"), ("x", "z"), True)


def test_parse_accepts_heredoc_wrapper_and_crlf() -> None:
    """The shell form and CRLF patch text are accepted."""
    text = "apply_patch <<'EOF'\r\n" + P("*** Add File: a", "+x").replace("\n", "\r\n") + "\r\nEOF\r\n"
    assert parse_patch(text).ops[0].content == "x\n"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "empty"),
        ("hello", "Begin Patch"),
        ("*** Begin Patch\n*** Add File: a\n+x", "End Patch"),
        (P("*** Add File: a", "x"), "must start with '\\+'"),
        (P("*** Frobnicate: a"), "expected"),
        (P("*** Update File: a"), "no hunks"),
        (P("*** Update File: a", "@@", "?bad"), "hunk lines must start"),
        (P(), "changes no files"),
        (P("*** Add File: a", "+x", "*** Delete File: a"), "line 4: 'a' is already changed at line 2"),
        (
            P("*** Update File: src/a.py", "@@", "-x", "+y", "*** Update File: ./src/a.py", "@@", "-y", "+z"),
            "line 6: './src/a.py' is already changed at line 2 of this patch \\(as 'src/a.py'\\)",
        ),
        (P("*** Add File: "), "needs a path"),
    ],
)
def test_parse_errors(text: str, match: str) -> None:
    """Malformed patches raise PatchParseError with a useful message."""
    with pytest.raises(PatchParseError, match=match):
        parse_patch(text)


def chunks(*lines: str):  # type: ignore[no-untyped-def]
    return parse_patch(P("*** Update File: f", *lines)).ops[0].chunks


def test_apply_exact_and_fuzzy_whitespace() -> None:
    """Context matches exactly, then ignoring trailing whitespace, then all surrounding whitespace."""
    text = "a  \n    b\nc\n"
    assert apply_chunks(text, chunks("@@", " a", "-b", "+B"), "f") == "a  \nB\nc\n"
    assert apply_chunks("x\n“q”\n", chunks("@@", '-"q"', "+r"), "f") == "x\nr\n"


def test_apply_anchor_and_order() -> None:
    """An @@ anchor selects the occurrence after it."""
    text = "def f():\n    return 1\ndef g():\n    return 1\n"
    out = apply_chunks(text, chunks("@@ def g():", "-    return 1", "+    return 2"), "f")
    assert out == "def f():\n    return 1\ndef g():\n    return 2\n"


def test_apply_failure_names_the_hunk() -> None:
    """A hunk that does not match names its number and anchor."""
    with pytest.raises(PatchApplyError, match=r"hunk 2 of 2 \(@@ nope\)"):
        apply_chunks("a\nb\n", chunks("@@", "-a", "+A", "@@ nope", "-b", "+B"), "f")
    with pytest.raises(PatchApplyError, match=r"hunk 1 of 1.*not found"):
        apply_chunks("a\nb\n", chunks("@@", "-zzz", "+A"), "f")


def test_line_endings_and_final_newline_kept() -> None:
    """CRLF files stay CRLF; a missing final newline stays missing."""
    assert apply_chunks("a\r\nb\r\nc", chunks("@@", " b", "-c", "+C", "+D"), "f") == "a\r\nb\r\nC\r\nD"
    assert apply_chunks("a\nb\n", chunks("@@", " b", "+c"), "f") == "a\nb\nc\n"
    assert apply_chunks("a\r\nb", chunks("@@", " b", "+c"), "f") == "a\r\nb\r\nc"


def test_mixed_endings_untouched_lines_keep_theirs() -> None:
    """Only new lines take the dominant ending."""
    out = apply_chunks("a\r\nb\nc\r\nd\r\n", chunks("@@", " c", "+x"), "f")
    assert out == "a\r\nb\nc\r\nx\r\nd\r\n"


def test_eof_chunk_prefers_end() -> None:
    """An End of File hunk matches the last occurrence."""
    out = apply_chunks("x\ny\nx\n", chunks("@@", "-x", "+Z", "*** End of File"), "f")
    assert out == "x\ny\nZ\n"


def test_selected_hunks_only() -> None:
    """Rejected hunks are left out."""
    cs = chunks("@@", "-a", "+A", "@@", "-c", "+C")
    assert apply_chunks("a\nb\nc\n", cs, "f", selected=[False, True]) == "a\nb\nC\n"


def test_merge3_clean_and_conflict() -> None:
    """Disjoint edits merge; overlapping ones report a conflict showing both sides."""
    base = "1\n2\n3\n4\n5\n"
    ours = "1 user\n2\n3\n4\n5\n"
    theirs = "1\n2\n3\n4\n5 model\n"
    assert merge3(base, ours, theirs).text == "1 user\n2\n3\n4\n5 model\n"
    res = merge3(base, "1\n2 user\n3\n4\n5\n", "1\n2 model\n3\n4\n5\n")
    assert not res.clean
    shown = res.conflicts[0].render()
    assert "2 user" in shown and "2 model" in shown


def test_plan_update_add_delete_move() -> None:
    """A plan computes every file's new text before anything is written."""
    files = {"a.py": b"x = 1\n", "old.txt": b"bye\n", "m.py": b"k\n"}
    cs = plan_patch(P(
        "*** Update File: a.py", "@@", "-x = 1", "+x = 2",
        "*** Add File: n.txt", "+hi",
        "*** Delete File: old.txt",
        "*** Update File: m.py", "*** Move to: sub/m.py", "@@", "-k", "+K",
    ), reader(files))  # fmt: skip
    got = {(f.op, f.target): f.new_text for f in cs.files}
    assert got == {
        ("update", "a.py"): "x = 2\n",
        ("add", "n.txt"): "hi\n",
        ("delete", "old.txt"): None,
        ("move", "sub/m.py"): "K\n",
    }
    assert "M a.py (+1 -1)" in cs.summary()
    payload = cs.payload()
    assert [f["op"] for f in payload["files"]] == ["update", "add", "delete", "move"]
    assert payload["files"][0]["hunks"][0]["lines"] == ["-x = 1", "+x = 2"]


@pytest.mark.parametrize(
    ("patch", "files", "match"),
    [
        (P("*** Update File: nope.py", "@@", "-a", "+b"), {}, "no such file"),
        (P("*** Delete File: nope.py"), {}, "no such file"),
        (P("*** Update File: img.png", "@@", "-a", "+b"), {"img.png": b"\x89PNG\x00\x01"}, "binary"),
        (P("*** Update File: l1.txt", "@@", "-a", "+b"), {"l1.txt": b"caf\xe9\n"}, "not UTF-8"),
    ],
)
def test_plan_errors(patch: str, files: dict[str, bytes], match: str) -> None:
    """Missing, existing and binary files are refused with clear errors."""
    with pytest.raises(PatchApplyError, match=match):
        plan_patch(patch, reader(files))


def test_plan_merges_user_change_since_model_saw_it() -> None:
    """The model's hunks apply to what it saw; the user's later edit is kept."""
    seen = "a\nb\nc\nd\ne\n"
    disk = b"a USER\nb\nc\nd\ne\n"
    cs = plan_patch(P("*** Update File: f", "@@", " d", "-e", "+E"), reader({"f": disk}), {"f": seen}.get)
    assert cs.files[0].new_text == "a USER\nb\nc\nd\nE\n"
    assert cs.files[0].merged


def test_plan_conflict_never_overwrites() -> None:
    """Overlapping edits raise PatchConflict showing the conflict."""
    seen = "a\nb\nc\n"
    with pytest.raises(PatchConflict, match="b USER"):
        plan_patch(
            P("*** Update File: f", "@@", " a", "-b", "+b MODEL"),
            reader({"f": b"a\nb USER\nc\n"}),
            {"f": seen}.get,
        )


def test_render_subset_of_hunks() -> None:
    """FilePlan.render applies only accepted hunks; rejecting all keeps the disk text."""
    cs = plan_patch(P("*** Update File: f", "@@", "-a", "+A", "@@", "-c", "+C"), reader({"f": b"a\nb\nc\n"}))
    plan = cs.files[0]
    assert plan.render([True, False]) == "A\nb\nc\n"
    assert plan.render([False, False]) == "a\nb\nc\n"
    assert plan.render() == "A\nb\nC\n"
