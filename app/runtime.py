"""The per-user private runtime folder: 0700, ours, checked on every use.

Runtime files another local user must neither plant nor read live here: the pytest plugin folder put
first on a test run's PYTHONPATH (app.adapters.proc), and the single-instance socket (app.ui).
Standard library, platformdirs and app.profile only, so every layer may use it. The server's token
files live here too (app.server.auth).
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import stat
import tempfile
import warnings
from pathlib import Path

import platformdirs

from app import profile

__all__ = ["UnsafeRuntimeDir", "check_private_dir", "runtime_dir"]

SHORT_PATH = 60  # longest runtime folder path that leaves room for a socket name within sun_path


class UnsafeRuntimeDir(OSError):
    """The private runtime folder is owned by someone else or open to others: refused."""


def runtime_dir(base: Path | None = None) -> Path:
    """Our per-user private folder for runtime files (0700, ours, checked every time).

    `base` when given; else the throwaway profile's `run/` folder (app.profile), else
    `$XDG_RUNTIME_DIR/slipstream` / platformdirs' user runtime dir, else `<state dir>/run`. A folder
    that exists but is not ours, is a link, or is open to the group or others is never trusted or
    silently reused: `base` raises UnsafeRuntimeDir, a default candidate is skipped for the next.
    """
    if base is not None:
        return _private(base)
    last: OSError | None = None
    for folder in _candidates():
        try:
            return _private(folder)
        except OSError as exc:
            last = exc
    raise UnsafeRuntimeDir(f"no private runtime folder for Slipstream ({last})")


def serve_token_path(port: int, folder: Path | None = None) -> Path:
    """Where a local `slipstream serve` on `port` keeps its token (written by
    app.server.auth.write_token_file, read by the headless commands for a loopback --endpoint)."""
    return (folder if folder is not None else runtime_dir()) / f"serve-{port}.token"


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the server on this machine ("localhost" or a loopback IP)."""
    name = host.strip().strip("[]")
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # any other hostname may resolve to a routable address


def _candidates() -> list[Path]:
    root = profile.profile_dir()
    if root is not None:
        run = root / "run"
        if len(str(run)) <= SHORT_PATH:
            return [run]
        # A socket's path must fit in sun_path (104-108 bytes): a deep profile gets a short folder.
        tag = hashlib.sha256(str(run).encode()).hexdigest()[:12]
        return [
            Path(tempfile.gettempdir()) / f"slipstream-{os.getuid() if hasattr(os, 'getuid') else 0}-{tag}"
        ]
    out: list[Path] = []
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg):
        out.append(Path(xdg) / profile.APP_NAME)
    with warnings.catch_warnings():  # "XDG_RUNTIME_DIR is not set": the fallbacks are checked too
        warnings.simplefilter("ignore")
        out.append(Path(platformdirs.user_runtime_dir(profile.APP_NAME, appauthor=False)))
    out.append(profile.state_dir() / "run")
    return out


def _private(folder: Path) -> Path:
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass
    check_private_dir(folder)
    return folder


def check_private_dir(folder: Path) -> None:
    """Raise UnsafeRuntimeDir unless `folder` is a real folder, owned by us, mode 0700 (POSIX)."""
    st = os.lstat(folder)
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeRuntimeDir(f"{folder} is not a folder (a link or a file); refusing to use it")
    if os.name != "posix":
        return
    if st.st_uid != os.getuid():
        raise UnsafeRuntimeDir(f"{folder} belongs to another user (uid {st.st_uid}); refusing to use it")
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise UnsafeRuntimeDir(
            f"{folder} is open to other users (mode {stat.S_IMODE(st.st_mode):o}); refusing to use it"
        )
