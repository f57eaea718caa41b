"""Bearer check, loopback rule and the private token file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from app.server.auth import bearer_ok, is_loopback, new_token, remove_token_file, token_dir, write_token_file


def test_bearer_ok_accepts_only_the_exact_token() -> None:
    """Right token (any scheme case) passes; wrong, missing, other schemes fail."""
    assert bearer_ok("Bearer abc", "abc")
    assert bearer_ok("bearer abc", "abc")
    assert not bearer_ok("Bearer abd", "abc")
    assert not bearer_ok("Bearer ", "abc")
    assert not bearer_ok("Basic abc", "abc")
    assert not bearer_ok(None, "abc")
    assert not bearer_ok("abc", "abc")


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("127.5.6.7", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("192.168.1.5", False),
        ("::", False),
        ("example.com", False),
    ],
)
def test_is_loopback(host: str, expected: bool) -> None:
    """Only loopback addresses and 'localhost' count as local."""
    assert is_loopback(host) is expected


def test_new_tokens_are_long_and_distinct() -> None:
    """Tokens are random and long enough to guess-proof a local port."""
    a, b = new_token(), new_token()
    assert a != b and len(a) >= 40


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_token_file_is_private(tmp_path: Path) -> None:
    """The token file is 0600 even if it existed with looser bits, and removal is idempotent."""
    pre = tmp_path / "serve-1234.token"
    pre.write_text("old")
    pre.chmod(0o644)
    path = write_token_file("tok", 1234, tmp_path)
    assert path == pre and path.read_text() == "tok\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    remove_token_file(path)
    remove_token_file(path)
    assert not path.exists()


@pytest.mark.skipif(os.name != "posix", reason="XDG runtime dir")
def test_token_dir_uses_runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default folder (outside a throwaway profile) is under XDG_RUNTIME_DIR and only the user may enter it."""
    monkeypatch.delenv("SLIPSTREAM_PROFILE_DIR", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    folder = token_dir()
    assert folder.is_relative_to(tmp_path)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
