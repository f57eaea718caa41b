"""Tests for app.tools.fileops over an in-memory project."""

from __future__ import annotations

from collections.abc import Iterator

from app.tools.fileops import Entry, ToolContext, execute, format_read, search_text
from app.tools.paths import PathRefused, confine


class MemFS:
    """A dict-backed ProjectAccess; `secret.env` is refused like a secret."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    def read_bytes(self, path: str, limit: int | None = None) -> bytes | None:
        rel = confine(path)
        if rel == "secret.env":
            raise PathRefused("secret.env is a secret")
        if any(p.startswith(rel + "/") for p in self.files):
            raise PathRefused(f"{rel} is a folder; use list_files")
        data = self.files.get(rel)
        return data if data is None or limit is None else data[:limit]

    def walk(self, under: str = "") -> Iterator[Entry]:
        dirs: set[str] = set()
        for p in sorted(self.files):
            if under and not p.startswith(under + "/"):
                continue
            parts = p.split("/")
            for i in range(1, len(parts)):
                d = "/".join(parts[:i])
                if d not in dirs and (not under or d.startswith(under + "/")):
                    dirs.add(d)
                    yield Entry(d, True)
            yield Entry(p, False, len(self.files[p]))


FILES = {
    "src/app.py": b"import os\n\ndef main():\n    return os.getcwd()\n",
    "src/util.py": b"def helper():\n    return 'MAIN'\n",
    "README.md": b"# Project\nrun main\n",
    "logo.png": b"\x89PNG\x00\x00",
}


def ctx() -> ToolContext:
    return ToolContext(MemFS(dict(FILES)))


def test_read_file_with_range() -> None:
    """Lines come back numbered, in the asked range."""
    res = execute("read_file", '{"path": "src/app.py", "start_line": 3, "end_line": 4}', ctx())
    assert res.ok
    assert res.output_text.splitlines() == [
        "src/app.py (lines 3-4 of 4)",
        "3\tdef main():",
        "4\t    return os.getcwd()",
    ]


def test_read_file_errors() -> None:
    """Missing, binary, out-of-range, escaping, secret and malformed calls are clear tool errors."""
    cases = {
        '{"path": "nope.py"}': "no such file",
        '{"path": "logo.png"}': "binary",
        '{"path": "README.md", "start_line": 50}': "has 2 lines",
        '{"path": "../etc/passwd"}': "'..'",
        '{"path": "/etc/passwd"}': "absolute",
        '{"path": "secret.env"}': "secret",
        '{"path": "src"}': "folder",
        "{oops": "not valid JSON",
        "{}": "missing required field",
    }
    for args, word in cases.items():
        res = execute("read_file", args, ctx())
        assert not res.ok and res.output_text.startswith("error:") and word in res.output_text, (args, res)


def test_format_read_caps_long_files() -> None:
    """Long files are cut with a hint to continue."""
    data = "".join(f"line {i}\n" for i in range(5000)).encode()
    text = format_read("big.txt", data)
    assert "lines 1-2000 of 5000" in text and "start_line=2001" in text


def test_list_files_and_glob() -> None:
    """Folders end with '/', glob filters at any depth."""
    res = execute("list_files", "{}", ctx())
    assert res.ok and "src/" in res.output_text.splitlines()
    res = execute("list_files", '{"glob": "*.py"}', ctx())
    assert [ln.split()[0] for ln in res.output_text.splitlines()] == ["src/app.py", "src/util.py"]
    res = execute("list_files", '{"max_entries": 2}', ctx())
    assert "more entries not shown" in res.output_text


def test_search_literal_regex_and_cap() -> None:
    """Literal is case-insensitive by default; regex works; results are capped; bad regex is an error."""
    res = execute("search", '{"query": "main"}', ctx())
    assert res.ok and res.data["hits"] == 3
    assert "src/app.py:3: def main():" in res.output_text
    res = execute("search", '{"query": "main", "case_sensitive": true, "glob": "*.py"}', ctx())
    assert res.data["hits"] == 1
    res = execute("search", '{"query": "def \\\\w+\\\\(", "regex": true}', ctx())
    assert res.data["hits"] == 2
    res = execute("search", '{"query": "e", "max_results": 2}', ctx())
    assert res.data["capped"] and "capped at 2" in res.output_text
    res = execute("search", '{"query": "(", "regex": true}', ctx())
    assert not res.ok and "invalid regular expression" in res.output_text
    res = execute("search", '{"query": "helper", "path": "src/util.py"}', ctx())
    assert res.data["hits"] == 1


def test_search_text_skips_nothing_silently() -> None:
    """search_text reports whether the cap cut results."""
    hits, capped = search_text([("a", "x\nx\nx\n")], "x", max_results=3)
    assert len(hits) == 3 and not capped


def test_apply_patch_proposes_only() -> None:
    """apply_patch returns a change set for review and writes nothing."""
    c = ctx()
    patch = "*** Begin Patch\n*** Update File: src/util.py\n@@\n-    return 'MAIN'\n+    return 'main'\n*** End Patch"
    res = execute("apply_patch", {"patch": patch}, c)
    assert res.ok and "M src/util.py (+1 -1)" in res.output_text
    assert (
        res.change_set is not None
        and res.change_set.files[0].new_text == "def helper():\n    return 'main'\n"
    )
    assert c.fs.read_bytes("src/util.py") == FILES["src/util.py"]
    bad = execute("apply_patch", {"patch": "*** Begin Patch\n*** Add File: ../x\n+y\n*** End Patch"}, c)
    assert not bad.ok and "'..'" in bad.output_text
    bad = execute("apply_patch", {"patch": "garbage"}, c)
    assert not bad.ok and "patch not applied" in bad.output_text


def test_deferred_tools_are_validated() -> None:
    """run_tests/run_command are validated and handed back to the agent."""
    res = execute("run_command", '{"command": "ls"}', ctx())
    assert res.ok and res.deferred == {"command": "ls"} and res.change_set is None
    assert not execute("run_command", "{}", ctx()).ok
