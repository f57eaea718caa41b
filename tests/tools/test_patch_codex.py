"""The Codex CLI's own parser cases (openai/codex: codex-rs/apply-patch/src/parser.rs tests and the
tests/fixtures/scenarios patches), replayed as one table against app.tools.patch.parse_patch.

Each accepted case lists the parsed sections as plain tuples; each refused one, the words and the
line number our error must carry. Where we deliberately differ from Codex, the row says why.
"""

from __future__ import annotations

from typing import Any

import pytest

from app.tools.patch import FileOp, PatchParseError, parse_patch, plan_patch

Add = tuple[str, str, str]  # ("add", path, content)
Row = tuple[str, str, list[Any] | None, str | None]  # id, text, sections or None, error regex or None


def _shape(op: FileOp) -> tuple[Any, ...]:
    if op.kind == "add":
        return ("add", op.path, op.content)
    if op.kind == "delete":
        return ("delete", op.path)
    return (
        "update",
        op.path,
        op.move_to,
        [(c.anchor, list(c.old_lines), list(c.new_lines), c.is_eof) for c in op.chunks],
    )


FILE2 = "*** Begin Patch\n*** Update File: file2.py\n import foo\n+bar\n*** End Patch"
FILE2_OPS = [("update", "file2.py", None, [(None, ["import foo"], ["import foo", "bar"], False)])]

STREAMED = """*** Begin Patch
*** Add File: docs/release-notes.md
+# Release notes
+
+## CLI
*** Update File: src/config.rs
@@ impl Config
-    pub apply_patch_progress: bool,
+    pub stream_apply_patch_progress: bool,
     pub include_diagnostics: bool,
@@ fn default_progress_interval()
-    Duration::from_millis(500)
+    Duration::from_millis(250)
*** Delete File: src/legacy_patch_progress.rs
*** Update File: crates/cli/src/main.rs
*** Move to: crates/cli/src/bin/codex.rs
@@ fn run()
-    let args = Args::parse();
+    let cli = Cli::parse();
*** Add File: tests/fixtures/apply_patch_progress.json
+{
+}
*** Update File: README.md
@@ Development workflow
 Build the Rust workspace before opening a pull request.
+When touching streamed tool calls, include parser coverage for partial input.
*** Delete File: docs/old-apply-patch-progress.md
*** End Patch"""

ROWS: list[Row] = [
    # -- test_parse_patch ------------------------------------------------------------------
    ("not a patch", "bad", None, r"line 1: the first line of the patch must be '\*\*\* Begin Patch'"),
    (
        "no end marker",
        "*** Begin Patch\nbad",
        None,
        r"line 2: the last line of the patch must be '\*\*\* End Patch'",
    ),
    (
        "padded begin and end",
        "*** Begin Patch \n*** Add File: foo\n+hi\n *** End Patch",
        [("add", "foo", "hi\n")],
        None,
    ),
    (
        "empty update",
        "*** Begin Patch\n*** Update File: test.py\n*** End Patch",
        None,
        r"line 2: '\*\*\* Update File: test.py' has no hunks",
    ),
    # Codex parses an empty patch to zero sections and refuses it when applying; we refuse at once.
    ("empty patch", "*** Begin Patch\n*** End Patch", None, "changes no files"),
    (
        "add, delete, update with move",
        "*** Begin Patch\n*** Add File: path/add.py\n+abc\n+def\n*** Delete File: path/delete.py\n"
        "*** Update File: path/update.py\n*** Move to: path/update2.py\n@@ def f():\n-    pass\n+    return 123\n"
        "*** End Patch",
        [
            ("add", "path/add.py", "abc\ndef\n"),
            ("delete", "path/delete.py"),
            (
                "update",
                "path/update.py",
                "path/update2.py",
                [("def f():", ["    pass"], ["    return 123"], False)],
            ),
        ],
        None,
    ),
    (
        "update then add",
        "*** Begin Patch\n*** Update File: file.py\n@@\n+line\n*** Add File: other.py\n+content\n*** End Patch",
        [("update", "file.py", None, [(None, [], ["line"], False)]), ("add", "other.py", "content\n")],
        None,
    ),
    ("first hunk without @@", FILE2, FILE2_OPS, None),
    # -- test_parse_patch_lenient: heredoc wrappers ---------------------------------------------
    ("heredoc <<EOF", f"<<EOF\n{FILE2}\nEOF\n", FILE2_OPS, None),
    ("heredoc <<'EOF'", f"<<'EOF'\n{FILE2}\nEOF\n", FILE2_OPS, None),
    ('heredoc <<"EOF"', f'<<"EOF"\n{FILE2}\nEOF\n', FILE2_OPS, None),
    ("heredoc with the command", f"apply_patch <<'EOF'\n{FILE2}\nEOF\n", FILE2_OPS, None),
    (
        "heredoc, mismatched quotes",
        f"<<\"EOF'\n{FILE2}\nEOF\n",
        None,
        r"line 1: the first line of the patch must be '\*\*\* Begin Patch'",
    ),
    (
        "heredoc without End Patch",
        "<<EOF\n*** Begin Patch\n*** Update File: file2.py\nEOF\n",
        None,
        r"line 3: the last line of the patch must be '\*\*\* End Patch'",
    ),
    # -- test_parse_one_hunk / test_update_file_chunk ---------------------------------------------
    (
        "bad file header",
        "*** Begin Patch\nbad\n*** End Patch",
        None,
        r"line 2: 'bad' is not a valid file header",
    ),
    (
        "first hunk line is not a diff line",
        "*** Begin Patch\n*** Update File: f\nbad\n*** End Patch",
        None,
        r"line 3: in f, hunk lines must start with ' ', '-' or '\+'",
    ),
    (
        "@@ with no lines",
        "*** Begin Patch\n*** Update File: f\n@@\n*** End Patch",
        None,
        r"line 4: in f, hunk @@ has no lines",
    ),
    (
        "@@ then a bad line",
        "*** Begin Patch\n*** Update File: f\n@@\nbad\n*** End Patch",
        None,
        r"line 4: in f, hunk lines must start with",
    ),
    (
        "@@ then End of File",
        "*** Begin Patch\n*** Update File: f\n@@\n*** End of File\n*** End Patch",
        None,
        r"line 4: in f, the hunk before '\*\*\* End of File' has no lines",
    ),
    (
        "empty line is empty context",
        "*** Begin Patch\n*** Update File: f\n@@ change_context\n\n context\n-remove\n+add\n context2\n*** End Patch",
        [
            (
                "update",
                "f",
                None,
                [
                    (
                        "change_context",
                        ["", "context", "remove", "context2"],
                        ["", "context", "add", "context2"],
                        False,
                    )
                ],
            )
        ],
        None,
    ),
    (
        "addition at the end of file",
        "*** Begin Patch\n*** Update File: f\n@@\n+line\n*** End of File\n*** End Patch",
        [("update", "f", None, [(None, [], ["line"], True)])],
        None,
    ),
    (
        "second hunk needs @@",
        "*** Begin Patch\n*** Update File: f\n@@\n-a\n+b\n@@ g\n-c\n+d\n*** End Patch",
        [("update", "f", None, [(None, ["a"], ["b"], False), ("g", ["c"], ["d"], False)])],
        None,
    ),
    # -- the streaming test's full patch, parsed whole ---------------------------------------------
    (
        "seven sections",
        STREAMED,
        [
            ("add", "docs/release-notes.md", "# Release notes\n\n## CLI\n"),
            (
                "update",
                "src/config.rs",
                None,
                [
                    (
                        "impl Config",
                        ["    pub apply_patch_progress: bool,", "    pub include_diagnostics: bool,"],
                        ["    pub stream_apply_patch_progress: bool,", "    pub include_diagnostics: bool,"],
                        False,
                    ),
                    (
                        "fn default_progress_interval()",
                        ["    Duration::from_millis(500)"],
                        ["    Duration::from_millis(250)"],
                        False,
                    ),
                ],
            ),
            ("delete", "src/legacy_patch_progress.rs"),
            (
                "update",
                "crates/cli/src/main.rs",
                "crates/cli/src/bin/codex.rs",
                [("fn run()", ["    let args = Args::parse();"], ["    let cli = Cli::parse();"], False)],
            ),
            ("add", "tests/fixtures/apply_patch_progress.json", "{\n}\n"),
            (
                "update",
                "README.md",
                None,
                [
                    (
                        "Development workflow",
                        ["Build the Rust workspace before opening a pull request."],
                        [
                            "Build the Rust workspace before opening a pull request.",
                            "When touching streamed tool calls, include parser coverage for partial input.",
                        ],
                        False,
                    )
                ],
            ),
            ("delete", "docs/old-apply-patch-progress.md"),
        ],
        None,
    ),
    # -- scenarios 017, 018, 020: padded markers -------------------------------------------------
    (
        "017 padded file header",
        "*** Begin Patch\n  *** Update File: foo.txt\n@@\n-old\n+new\n*** End Patch\n",
        [("update", "foo.txt", None, [(None, ["old"], ["new"], False)])],
        None,
    ),
    (
        "018 padded begin/end",
        " *** Begin Patch\n*** Update File: file.txt\n@@\n-one\n+two\n*** End Patch \n",
        [("update", "file.txt", None, [(None, ["one"], ["two"], False)])],
        None,
    ),
    (
        "020 padded marker lines",
        "*** Begin Patch \n*** Update File: file.txt\n@@\n-one\n+two\n *** End Patch\n",
        [("update", "file.txt", None, [(None, ["one"], ["two"], False)])],
        None,
    ),
    (
        "tabs around markers",
        "\t*** Begin Patch\t\n\t*** Add File: t.txt \t\n+x\n\t*** Delete File: u.txt\t\n*** End Patch\t",
        [("add", "t.txt", "x\n"), ("delete", "u.txt")],
        None,
    ),
    # -- the same path twice ----------------------------------------------------------------------
    (
        "delete then add one path",
        "*** Begin Patch\n*** Delete File: a.txt\n*** Add File: a.txt\n+new\n*** End Patch",
        [("delete", "a.txt"), ("add", "a.txt", "new\n")],
        None,
    ),
    (
        "two spellings of one file",
        "*** Begin Patch\n*** Update File: src/a.py\n@@\n-x\n+y\n*** Update File: ./src/a.py\n@@\n-y\n+z\n*** End Patch",
        None,
        r"line 6: './src/a.py' is already changed at line 2",
    ),
    (
        "move onto a file the patch adds",
        "*** Begin Patch\n*** Add File: b.py\n+x\n*** Update File: a.py\n*** Move to: b.py\n@@\n-a\n+b\n*** End Patch",
        None,
        r"line 4: 'b.py' is already changed at line 2",
    ),
]


@pytest.mark.parametrize(("text", "sections", "error"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_codex_parser_cases(text: str, sections: list[Any] | None, error: str | None) -> None:
    """Accepted the way Codex accepts it; refused with a line number and words."""
    if error is not None:
        with pytest.raises(PatchParseError, match=error):
            parse_patch(text)
        return
    assert [_shape(op) for op in parse_patch(text).ops] == sections


def test_delete_then_add_plans_one_replacement() -> None:
    """Codex applies Delete then Add of one path as a replacement: one reviewed file, new content."""
    files = {"a.txt": b"old\n"}
    cs = plan_patch(
        "*** Begin Patch\n*** Delete File: a.txt\n*** Add File: a.txt\n+new\n*** End Patch", files.get
    )
    assert [(f.path, f.op, f.disk, f.new_text) for f in cs.files] == [("a.txt", "update", "old\n", "new\n")]
    assert cs.summary() == "M a.txt (+1 -1)"
    assert cs.payload()["files"][0]["hunks"] == [
        {"header": "replace the whole file", "lines": ["-old", "+new"]}
    ]


def test_add_over_an_existing_file_replaces_it() -> None:
    """Scenario 011: an Add File of an existing path overwrites it (the review shows the replacement)."""
    cs = plan_patch("*** Begin Patch\n*** Add File: d.txt\n+fresh\n*** End Patch", {"d.txt": b"stale\n"}.get)
    assert [(f.op, f.new_text) for f in cs.files] == [("update", "fresh\n")]
    assert cs.notes == ("d.txt exists: the patch replaces its whole content",)


def test_move_onto_an_existing_file_replaces_it() -> None:
    """Scenario 010: a Move to an existing destination overwrites it."""
    files = {"old/name.txt": b"from\n", "renamed/dir/name.txt": b"there\n"}
    cs = plan_patch(
        "*** Begin Patch\n*** Update File: old/name.txt\n*** Move to: renamed/dir/name.txt\n@@\n-from\n"
        "+new\n*** End Patch",
        files.get,
    )
    (plan,) = cs.files
    assert (plan.op, plan.target, plan.new_text, plan.target_bytes) == (
        "move",
        "renamed/dir/name.txt",
        "new\n",
        b"there\n",
    )
