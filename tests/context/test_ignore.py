"""Ignore rules: gitignore at several levels, negation, defaults, secrets, user settings."""

from __future__ import annotations

import pytest

from app.context.ignore import (
    DEFAULT_EXCLUDES,
    PROTECTED_PATTERNS,
    SECRET_PATTERNS,
    Exclusion,
    IgnoreRules,
    normalise_rel,
)


def _rules() -> IgnoreRules:
    r = IgnoreRules(user_patterns=["*.huge"], slipstreamignore="docs/generated/\n!.env.example\n")
    r.add_gitignore("", "*.log\n!keep.log\nout_dir/\n")
    r.add_gitignore("pkg", "local.txt\n!important.log\n")
    r.add_gitignore("pkg/sub", "*.txt\n")
    return r


def test_root_gitignore_and_negation() -> None:
    """Root patterns apply everywhere; a negation re-includes."""
    r = _rules()
    assert r.exclusion("app.log") is not None and r.exclusion("app.log").reason == "gitignored"  # type: ignore[union-attr]
    assert r.exclusion("keep.log") is None
    assert r.is_excluded("a/b/c.log")


def test_nested_gitignore_overrides_parent() -> None:
    """A deeper .gitignore wins over the root one, and only applies below its directory."""
    r = _rules()
    assert r.exclusion("pkg/important.log") is None
    assert r.exclusion("pkg/local.txt").source == "pkg/.gitignore"  # type: ignore[union-attr]
    assert not r.is_excluded("local.txt")
    assert r.is_excluded("pkg/sub/notes.txt")
    assert not r.is_excluded("pkg/notes.txt")


def test_files_inside_excluded_directory_cannot_be_reincluded() -> None:
    """As in git, an excluded directory hides everything below it."""
    r = IgnoreRules()
    r.add_gitignore("", "out_dir/\n!out_dir/keep.py\n")
    assert r.is_excluded("out_dir/keep.py")
    assert r.is_excluded("out_dir", is_dir=True)


def test_defaults_exclude_vcs_venv_and_caches() -> None:
    """.git is protected; virtualenvs, node_modules, __pycache__ are excluded with reason 'default'."""
    r = IgnoreRules()
    assert r.exclusion(".git/config") == Exclusion("protected", "defaults")
    for p in (".venv/lib/x.py", "node_modules/a/index.js", "src/__pycache__/m.pyc"):
        e = r.exclusion(p)
        assert e is not None and e.reason == "default", p
    assert r.exclusion("src/main.py") is None


def test_secrets_excluded_even_when_gitignore_negates() -> None:
    """A `!.env` in .gitignore does not expose secrets; templates like .env.example are not secrets."""
    r = _rules()
    r.add_gitignore("", "!.env\n")
    for p in (
        ".env",
        ".env.local",
        "deploy/server.pem",
        "keys/id_rsa",
        "id_ed25519.pub",
        "x/credentials.json",
    ):
        e = r.exclusion(p)
        assert e is not None and e.reason == "secret", p
    assert r.exclusion(".env.example") is None


def test_only_the_users_settings_opt_secrets_or_git_in() -> None:
    """A committed .slipstreamignore or .gitignore with `!.env !*.pem !.git/` opts nothing in; settings do."""
    repo = IgnoreRules(slipstreamignore="!.env\n!*.pem\n!.git/\n!.git/config\n")
    repo.add_gitignore("", "!.env\n!.git/\n")
    assert [repo.exclusion(p) for p in (".env", "a/key.pem", ".git/config")] == [
        Exclusion("secret", "defaults"),
        Exclusion("secret", "defaults"),
        Exclusion("protected", "defaults"),
    ]
    user = IgnoreRules(user_patterns=["!.env"])
    assert user.exclusion(".env") is None


def test_secret_and_protected_names_match_in_any_case() -> None:
    """`.ENV`, `.Git/config` and `KEY.PEM` are secrets or protected on every file system."""
    r = IgnoreRules()
    assert [
        getattr(r.exclusion(p), "reason", None) for p in (".ENV", ".Git/config", ".GIT/hooks/x", "KEY.PEM")
    ] == ["secret", "protected", "protected", "secret"]


def test_casefold_applies_the_other_layers_case_insensitively() -> None:
    """On a case-insensitive root, `Build/` is excluded by `build/` and a .gitignore's `*.LOG` hides `a.log`."""
    sensitive, folded = IgnoreRules(), IgnoreRules(casefold=True)
    for r in (sensitive, folded):
        r.add_gitignore("", "*.LOG\n")
    assert (sensitive.is_excluded("Build/x.py"), folded.is_excluded("Build/x.py")) == (False, True)
    assert (sensitive.is_excluded("a.log"), folded.is_excluded("a.log")) == (False, True)


def test_project_and_user_rules() -> None:
    """.slipstreamignore and settings patterns exclude with their own reasons."""
    r = _rules()
    assert r.exclusion("docs/generated/api.md").reason == "slipstreamignore"  # type: ignore[union-attr]
    assert r.exclusion("data/big.huge").reason == "settings"  # type: ignore[union-attr]


def test_remove_gitignore() -> None:
    """Forgetting a .gitignore clears its effect (and the directory cache)."""
    r = _rules()
    assert r.is_excluded("pkg/sub/a.txt")
    r.remove_gitignore("pkg/sub")
    assert not r.is_excluded("pkg/sub/a.txt")


@pytest.mark.parametrize("bad", ["/etc/passwd", "../x", "a/../../b", "", "C:\\x"])
def test_paths_outside_root_rejected(bad: str) -> None:
    """Absolute or climbing paths are a clear error."""
    with pytest.raises(ValueError):
        normalise_rel(bad)


def _slow_normalise(path: str) -> str:
    """normalise_rel without its fast path (the reference it must agree with)."""
    p = path.replace("\\", "/")
    if p.startswith("/") or (len(p) > 1 and p[1] == ":"):
        raise ValueError(p)
    parts = [s for s in p.split("/") if s not in ("", ".")]
    if any(s == ".." for s in parts) or not parts:
        raise ValueError(p)
    return "/".join(parts)


@pytest.mark.parametrize(
    "path",
    [
        "a",
        "a/b.py",
        "a//b",
        "a/./b",
        "./a",
        "a/",
        ".git/x",
        "a/.env",
        "a\\b",
        "c:x",
        "x:/y",
        "a/..",
        "..",
        ".",
        "a/.../b",
        "a/b.",
        " /x",
        "ä/ö.py",
    ],
)
def test_normalise_fast_path_agrees_with_the_slow_one(path: str) -> None:
    """The fast path for already-normal paths answers exactly as the full normalisation."""
    try:
        want: str | None = _slow_normalise(path)
    except ValueError:
        want = None
    if want is None:
        with pytest.raises(ValueError):
            normalise_rel(path)
    else:
        assert normalise_rel(path) == want


_CORPUS = [
    "a.py",
    "a.log",
    "keep.log",
    "pkg/local.txt",
    "pkg/important.log",
    "pkg/x.log",
    "pkg/sub/a.txt",
    "pkg/sub/b.py",
    "out_dir",
    "out_dir/x.py",
    "docs/generated/x.md",
    "docs/y.md",
    ".env",
    ".env.example",
    "src/.ENV",
    ".git/config",
    "x/.Git/HEAD",
    "node_modules/x/i.js",
    "build",
    "src/build/a.py",
    "a.huge",
    "pkg/sub/deep/er/c.txt",
    "id_rsa.pub",
    "config/credentials.json",
    "Thumbs.db",
    "src/__pycache__/m.pyc",
]


@pytest.mark.parametrize("casefold", [False, True])
def test_answers_equal_checking_every_spec_with_check_file(
    monkeypatch: pytest.MonkeyPatch, casefold: bool
) -> None:
    """Matching through the spec's backend, skipping empty specs and caching folder chains gives
    the same answer, path by path, as asking every spec with pathspec's public check_file."""
    from app.context import ignore

    def build() -> IgnoreRules:
        r = IgnoreRules(
            user_patterns=["*.huge"], slipstreamignore="docs/generated/\n!.env.example\n", casefold=casefold
        )
        r.add_gitignore("", "*.log\n!keep.log\nout_dir/\n")
        r.add_gitignore("pkg", "local.txt\n!important.log\n")
        r.add_gitignore("pkg/sub", "*.txt\n")
        r.add_gitignore("empty", "# nothing\n")
        return r

    fast = build()
    monkeypatch.setattr(ignore, "_matcher", lambda spec: lambda p: spec.check_file(p).include)
    ref = build()
    for path in _CORPUS:
        for is_dir in (False, True):
            assert fast.exclusion(path, is_dir=is_dir) == ref.exclusion(path, is_dir=is_dir), (path, is_dir)


def test_a_new_gitignore_reaches_folders_already_decided() -> None:
    """The cached verdict of a folder's ancestry is dropped when a .gitignore comes or goes."""
    r = IgnoreRules()
    assert r.exclusion("a/b/c.py") is None
    r.add_gitignore("", "a/b/\n")
    assert r.exclusion("a/b/c.py") == Exclusion("gitignored", ".gitignore")
    r.remove_gitignore("")
    assert r.exclusion("a/b/c.py") is None


def test_very_deep_paths_are_decided_without_recursion() -> None:
    """A path deeper than Python's recursion limit still gets its answer."""
    deep = "/".join(["d"] * 3000) + "/x.py"
    r = IgnoreRules()
    assert r.exclusion(deep) is None
    r.add_gitignore("d/d", "x.py\n")
    assert r.exclusion(deep) == Exclusion("gitignored", "d/d/.gitignore")


@pytest.mark.parametrize("casefold", [False, True])
def test_quick_negatives_answer_as_every_list_would(casefold: bool) -> None:
    """The one-match shortcut for files no built-in list names gives the answer of checking the
    protected, secret and default lists one by one, for every spelling (case matters to it)."""
    names = [
        *(p.strip("/*") for p in (*SECRET_PATTERNS, *PROTECTED_PATTERNS, *DEFAULT_EXCLUDES)),
        "id_rsa",
        "ID_RSA",
        ".ENV",
        "Credentials.JSON",
        "main.py",
        "README.md",
        "Thumbs.db",
        "node_modules",
        "x.PEM",
        ".Git",
        "app.log",
        "keep.log",
    ]
    paths = [f"{d}{n}" for n in names if n for d in ("", "src/", "Src/Deep/", "pkg/sub/")]
    quick = _rules() if not casefold else IgnoreRules(casefold=True)
    slow = _rules() if not casefold else IgnoreRules(casefold=True)
    slow._builtin = slow._guarded = lambda p: True  # no shortcut: every list is asked
    for path in paths:
        for is_dir in (False, True):
            assert quick.exclusion(path, is_dir=is_dir) == slow.exclusion(path, is_dir=is_dir), (path, is_dir)
    assert sum(quick.exclusion(p) is not None for p in paths) > len(paths) // 3  # the corpus does hit
