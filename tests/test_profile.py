"""The throwaway profile: everything of the user's (settings, history, checkpoints, keys) stays out of reach."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import platformdirs
import pytest

from app import profile, runtime
from app.adapters.secrets import SecretStore
from app.runtime import runtime_dir


def test_use_throwaway_profile_points_this_process_and_children_there(tmp_path: Path) -> None:
    """The profile variable and the XDG folders all land in the profile (children inherit them)."""
    env: dict[str, str] = {}
    root = profile.use_throwaway_profile(tmp_path / "p", environ=env)
    assert root == tmp_path / "p" and env[profile.PROFILE_ENV] == str(root)
    assert {env[v] for v in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME")} == {
        str(root / "xdg" / sub) for sub in ("config", "data", "state", "cache")
    }


def test_folders_follow_the_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """config, data, state and the runtime folder are all under the profile; the real ones are not asked."""
    monkeypatch.setattr(platformdirs, "user_config_dir", lambda *a, **k: pytest.fail("asked"))
    monkeypatch.setenv(profile.PROFILE_ENV, str(tmp_path))
    assert profile.is_throwaway()
    assert profile.config_dir() == tmp_path / "config"
    assert profile.data_dir() == tmp_path / "data"
    assert profile.state_dir() == tmp_path / "state"
    monkeypatch.setattr(runtime, "SHORT_PATH", 10_000)
    run = runtime_dir()
    assert run == tmp_path / "run" and stat.S_IMODE(os.stat(run).st_mode) == 0o700


def test_a_deep_profile_gets_a_short_runtime_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A socket path must fit in sun_path: a profile too deep for that gets a short private folder."""
    deep = tmp_path / ("d" * 80)
    monkeypatch.setenv(profile.PROFILE_ENV, str(deep))
    run = runtime_dir()
    try:
        assert len(str(run)) <= runtime.SHORT_PATH and run.name.startswith("slipstream-")
        assert stat.S_IMODE(os.stat(run).st_mode) == 0o700 and runtime_dir() == run
    finally:
        run.rmdir()


def test_runtime_dir_skips_a_folder_it_cannot_trust(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A default runtime folder open to others, or a file in the way, is skipped (never tightened and
    reused: another user may already have planted files in it); the state dir's `run/` is the fallback."""
    monkeypatch.delenv(profile.PROFILE_ENV, raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(platformdirs, "user_state_dir", lambda *a, **k: str(tmp_path / "state"))
    loose = tmp_path / "rt" / "slipstream"
    loose.mkdir(parents=True, mode=0o755)
    os.chmod(loose, 0o755)
    monkeypatch.setattr(platformdirs, "user_runtime_dir", lambda *a, **k: str(loose))
    assert runtime_dir() == tmp_path / "state" / "run"
    assert stat.S_IMODE(os.stat(loose).st_mode) == 0o755  # not touched
    blocked = tmp_path / "file"
    blocked.write_text("x")
    monkeypatch.setattr(platformdirs, "user_runtime_dir", lambda *a, **k: str(blocked))
    assert runtime_dir() == tmp_path / "state" / "run"
    private = tmp_path / "ok" / "slipstream"
    monkeypatch.setattr(platformdirs, "user_runtime_dir", lambda *a, **k: str(private))
    assert runtime_dir() == private and stat.S_IMODE(os.stat(private).st_mode) == 0o700


def test_no_keychain_in_a_throwaway_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The secret store never reaches the OS keychain in a throwaway profile: nothing read, nothing stored."""
    monkeypatch.setenv(profile.PROFILE_ENV, str(tmp_path))
    store = SecretStore()
    assert not store.status("openai").available
    assert not store.has("openai")
    with pytest.raises(Exception, match="keychain"):
        store.set("openai", "sk-test-key")
