"""Ignore rules: gitignore at several levels, negation, defaults, secrets, user settings."""

from __future__ import annotations

import pytest

from app.context.ignore import Exclusion, IgnoreRules, normalise_rel


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
    for p in (".env", ".env.local", "deploy/server.pem", "keys/id_rsa", "id_ed25519.pub", "x/credentials.json"):
        e = r.exclusion(p)
        assert e is not None and e.reason == "secret", p
    assert r.exclusion(".env.example") is None


def test_only_the_users_settings_opt_secrets_or_git_in() -> None:
    """A committed .slipstreamignore or .gitignore with `!.env !*.pem !.git/` opts nothing in; settings do."""
    repo = IgnoreRules(slipstreamignore="!.env\n!*.pem\n!.git/\n!.git/config\n")
    repo.add_gitignore("", "!.env\n!.git/\n")
    assert [repo.exclusion(p) for p in (".env", "a/key.pem", ".git/config")] == [
        Exclusion("secret", "defaults"), Exclusion("secret", "defaults"), Exclusion("protected", "defaults")]
    user = IgnoreRules(user_patterns=["!.env"])
    assert user.exclusion(".env") is None


def test_secret_and_protected_names_match_in_any_case() -> None:
    """`.ENV`, `.Git/config` and `KEY.PEM` are secrets or protected on every file system."""
    r = IgnoreRules()
    assert [getattr(r.exclusion(p), "reason", None) for p in (".ENV", ".Git/config", ".GIT/hooks/x", "KEY.PEM")] == [
        "secret", "protected", "protected", "secret"]


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
