"""Bearer-token auth for the local server, the private token file, and the loopback rule.

The server is reachable by every local process, so even on 127.0.0.1 it requires a token: a fresh
`secrets.token_urlsafe` per start unless one is given, written to a file only the user can read
(0600, in a 0700 folder under the platform's runtime dir, else its state dir).
"""

from __future__ import annotations

import contextlib
import hmac
import os
import secrets
from pathlib import Path

from app.runtime import is_loopback, runtime_dir, serve_token_path

__all__ = [
    "bearer_ok",
    "is_loopback",
    "new_token",
    "remove_token_file",
    "token_dir",
    "write_token_file",
]

APP_NAME = "slipstream"


def new_token() -> str:
    """A fresh random token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def bearer_ok(header: str | None, token: str) -> bool:
    """Whether an `Authorization` header value carries exactly `Bearer <token>` (constant time)."""
    if not header:
        return False
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    try:
        given = value.strip().encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes in the header (surrogates): not our token
        return False
    return hmac.compare_digest(given, token.encode("utf-8"))


def token_dir() -> Path:
    """The folder for token files: the private runtime folder (app.runtime), checked every time."""
    return runtime_dir()


def write_token_file(token: str, port: int, folder: Path | None = None) -> Path:
    """Write `token` to `<folder>/serve-<port>.token`, readable by the user only (0600)."""
    path = serve_token_path(port, folder if folder is not None else token_dir())
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o600)
    try:
        if os.name == "posix":
            os.fchmod(fd, 0o600)  # the file may have existed with looser bits
        os.write(fd, (token + "\n").encode())
    finally:
        os.close(fd)
    return path


def remove_token_file(path: Path | None) -> None:
    """Remove a token file written by this process; missing is fine."""
    if path is not None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
