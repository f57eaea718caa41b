"""Tests for app.tools.paths."""

from __future__ import annotations

import pytest

from app.tools.paths import PathRefused, confine, is_within


@pytest.mark.parametrize(
    ("raw", "want"),
    [("src/a.py", "src/a.py"), ("./src//a.py", "src/a.py"), ("src\\a.py", "src/a.py"), (" a ", "a")],
)
def test_confine_normalises(raw: str, want: str) -> None:
    """Relative paths come back normalised to POSIX form."""
    assert confine(raw) == want


@pytest.mark.parametrize(
    ("raw", "word"),
    [
        ("/etc/passwd", "absolute"),
        ("C:\\x", "absolute"),
        ("~/.ssh/id_rsa", "home"),
        ("a/../../x", "'..'"),
        ("..", "'..'"),
        ("a\x00b", "NUL"),
        ("", "required"),
    ],
)
def test_confine_refuses(raw: str, word: str) -> None:
    """Escapes are refused with a message naming the reason."""
    with pytest.raises(PathRefused, match=word):
        confine(raw)


def test_confine_root_and_types() -> None:
    """The root is allowed only when asked; non-strings are refused."""
    assert confine(".", allow_root=True) == ""
    with pytest.raises(PathRefused, match="string"):
        confine(3)


def test_is_within() -> None:
    """A sibling with a common prefix is not inside."""
    assert is_within("/p/root", "/p/root/a/b")
    assert is_within("/p/root", "/p/root")
    assert not is_within("/p/root", "/p/root2/a")
    assert not is_within("/p/root", "/p")
