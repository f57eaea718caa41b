"""Settings: JSON round trip in the config folder, validation, and no API keys on disk."""

from __future__ import annotations

import json
from pathlib import Path

import platformdirs
import pytest

from app import profile
from app.services import settings as settings_mod
from app.services.settings import Settings, SettingsError, load_settings, save_settings


def test_round_trip(tmp_path: Path) -> None:
    """Saved settings load back equal."""
    path = tmp_path / "cfg" / "settings.json"
    s = Settings(provider="openai", model="gpt-5", context_budget_tokens=64_000, pins=["a.py"], theme="dark")
    save_settings(s, path)
    loaded = load_settings(path)
    assert loaded.settings == s
    assert loaded.warnings == ()


def test_missing_file_gives_defaults(tmp_path: Path) -> None:
    """No file yet: defaults, scripted provider, no model configured."""
    loaded = load_settings(tmp_path / "nope.json")
    assert loaded.settings == Settings()
    assert not loaded.settings.model_configured


def test_default_path_is_platform_config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a path or a throwaway profile, the file lands in platformdirs' user_config_dir."""
    monkeypatch.delenv(profile.PROFILE_ENV, raising=False)
    monkeypatch.setattr(platformdirs, "user_config_dir", lambda *a, **k: str(tmp_path / "conf"))
    written = save_settings(Settings(model="m"))
    assert written == tmp_path / "conf" / "settings.json"
    assert load_settings().settings.model == "m"


def test_a_throwaway_profile_keeps_the_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With SLIPSTREAM_PROFILE_DIR set, the settings go there, never to the user's config folder."""
    monkeypatch.setattr(platformdirs, "user_config_dir", lambda *a, **k: str(tmp_path / "real"))
    monkeypatch.setenv(profile.PROFILE_ENV, str(tmp_path / "prof"))
    assert save_settings(Settings(model="m")) == tmp_path / "prof" / "config" / "settings.json"
    assert not (tmp_path / "real").exists()


def test_unknown_and_key_fields_are_dropped_with_warning(tmp_path: Path) -> None:
    """An api_key in the file is ignored and reported, never loaded."""
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"model": "x", "api_key": "hunter2"}), encoding="utf-8")
    loaded = load_settings(path)
    assert loaded.settings.model == "x"
    assert not hasattr(loaded.settings, "api_key")
    assert any("api_key" in w and "keychain" in w for w in loaded.warnings)


def test_key_shaped_value_is_refused(tmp_path: Path) -> None:
    """A key pasted into a settings field is never written to disk."""
    path = tmp_path / "s.json"
    with pytest.raises(SettingsError, match="keychain"):
        save_settings(Settings(model="sk-proj-abcdefghijklmnopqrstuvwx"), path)
    assert not path.exists()


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"theme": "purple"}', "theme must be one of"),
        ('{"context_budget_tokens": 10}', "between"),
        ('{"endpoint": "ftp://x"}', "endpoint must start"),
        ('{"pins": "a.py"}', "pins must be a list"),
    ],
)
def test_bad_files_give_clear_errors(tmp_path: Path, text: str, match: str) -> None:
    """Corrupt or invalid files raise SettingsError naming the problem and the file."""
    path = tmp_path / "s.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SettingsError, match=match) as info:
        load_settings(path)
    assert str(path) in str(info.value)


def test_with_recent_dedupes_and_caps(tmp_path: Path) -> None:
    """Recent projects: newest first, no duplicates, at most MAX_RECENT."""
    s = Settings()
    for i in range(12):
        s = s.with_recent(tmp_path / f"p{i}")
    s = s.with_recent(tmp_path / "p5")
    assert s.recent_projects[0] == str((tmp_path / "p5").resolve())
    assert len(s.recent_projects) == settings_mod.MAX_RECENT
    assert len(set(s.recent_projects)) == len(s.recent_projects)
