"""Where Slipstream keeps the user's files: settings, history, checkpoints (the
private runtime folder, app.runtime, follows it too).

A root module, not an adapter: the settings (services), the history store (adapters) and the GUI's
smoke run all ask it, and it imports nothing of the app.

By default these are the platform's per-user folders (platformdirs). With `SLIPSTREAM_PROFILE_DIR`
set, everything lives under that one folder instead and the OS keychain is never touched: smoke
runs, benchmarks and the test suite use such a throwaway profile, so they never read or write the
user's settings, keys or history. `use_throwaway_profile()` sets it up for this process and its
children (the XDG variables are pointed there too, for libraries that read them directly).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import MutableMapping
from pathlib import Path

import platformdirs

__all__ = [
    "APP_NAME",
    "PROFILE_ENV",
    "config_dir",
    "data_dir",
    "is_throwaway",
    "profile_dir",
    "state_dir",
    "use_throwaway_profile",
]

APP_NAME = "slipstream"
PROFILE_ENV = "SLIPSTREAM_PROFILE_DIR"
_XDG = {
    "XDG_CONFIG_HOME": "config",
    "XDG_DATA_HOME": "data",
    "XDG_STATE_HOME": "state",
    "XDG_CACHE_HOME": "cache",
}


def profile_dir() -> Path | None:
    """The throwaway profile folder, or None for the user's real one."""
    value = os.environ.get(PROFILE_ENV, "").strip()
    return Path(value).expanduser() if value else None


def is_throwaway() -> bool:
    """True when a throwaway profile is in use: no keychain, no real settings or history."""
    return profile_dir() is not None


def config_dir() -> Path:
    """Settings live here (created on save, not here)."""
    root = profile_dir()
    return root / "config" if root else Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))


def data_dir() -> Path:
    """The history database lives here."""
    root = profile_dir()
    return root / "data" if root else Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def state_dir() -> Path:
    """Checkpoints (undo) and other state that is not worth a backup."""
    root = profile_dir()
    return root / "state" if root else Path(platformdirs.user_state_dir(APP_NAME, appauthor=False))


def use_throwaway_profile(
    folder: Path | None = None, environ: MutableMapping[str, str] | None = None
) -> Path:
    """Point this process (and every child it starts) at a throwaway profile; returns its folder.

    Without `folder`, a fresh private temporary folder is made (the caller removes it when done).
    """
    env = os.environ if environ is None else environ
    root = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="slipstream-profile-"))
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    env[PROFILE_ENV] = str(root)
    for var, sub in _XDG.items():
        env[var] = str(root / "xdg" / sub)
    return root
