"""The per-user private runtime folder: 0700, ours, checked on every use.

Runtime files another local user must neither plant nor read live here: the pytest plugin folder put
first on a test run's PYTHONPATH (app.adapters.proc), and the single-instance socket (app.ui).
Standard library and platformdirs only, so every layer may use it.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

__all__ = ["UnsafeRuntimeDir", "check_private_dir", "runtime_dir"]


class UnsafeRuntimeDir(OSError):
    """The private runtime folder is owned by someone else or open to others: refused."""


def runtime_dir(base: Path | None = None) -> Path:
    """Our per-user private folder for runtime files (0700, ours, checked every time).

    `$XDG_RUNTIME_DIR/slipstream` where the session has one, else platformdirs' user runtime dir,
    else a per-uid folder under the temp dir. A folder that exists but is not ours, is a link, or is
    open to the group or others is refused (UnsafeRuntimeDir), never trusted or silently reused.
    """
    if base is None:
        xdg = os.environ.get("XDG_RUNTIME_DIR")
        if xdg and os.path.isdir(xdg):
            base = Path(xdg) / "slipstream"
        else:
            try:
                import warnings

                import platformdirs

                with warnings.catch_warnings():  # "XDG_RUNTIME_DIR is not set": the fallback is checked below
                    warnings.simplefilter("ignore")
                    base = Path(platformdirs.user_runtime_dir("slipstream", appauthor=False))
            except Exception:
                base = Path(tempfile.gettempdir()) / f"slipstream-{os.getuid() if hasattr(os, 'getuid') else 0}"
    base.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(base, 0o700)
    except FileExistsError:
        pass
    check_private_dir(base)
    return base


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
        raise UnsafeRuntimeDir(f"{folder} is open to other users (mode {stat.S_IMODE(st.st_mode):o}); "
                               "refusing to use it")
