"""Settings dialog round trip: values reach the config file, the key only the keychain."""

from __future__ import annotations

from pathlib import Path

from app.services.settings import KeychainInfo, Settings, config_path, load_settings, save_settings
from app.ui.settings_dialog import SettingsDialog
from tests.ui.fakes import FakeServices


class FileHost(FakeServices):
    """A fake host that really writes the settings file (platformdirs points into tmp_path)."""

    def save_settings(self, settings: Settings) -> None:
        save_settings(settings)
        super().save_settings(settings)


def test_round_trip_never_stores_key_in_file(qtbot) -> None:  # type: ignore[no-untyped-def]
    """Edited values are saved; the key goes to the keychain and nowhere in the file."""
    host = FileHost(settings=Settings(theme="dark", pins=["a.py"]))
    dlg = SettingsDialog(host)
    qtbot.addWidget(dlg)
    assert dlg.theme.currentData() == "dark" and dlg.pins.toPlainText() == "a.py"
    dlg.provider.setCurrentIndex(dlg.provider.findData("openai"))
    dlg.model.setText("gpt-5.3-codex")
    dlg.endpoint.setText("wss://api.openai.com/v1/responses")
    dlg.budget.setValue(64_000)
    dlg.pins.setPlainText("a.py\n\n src/b.py \n")
    dlg.approval.setCurrentIndex(dlg.approval.findData("auto_patches"))
    dlg.theme.setCurrentIndex(dlg.theme.findData("light"))
    assert dlg.api_key.isEnabled()
    dlg.api_key.setText("sk-test-secret-0123456789abcdef")
    dlg.accept()
    assert dlg.result() == dlg.DialogCode.Accepted
    assert host.keys == {"openai": "sk-test-secret-0123456789abcdef"}
    text = Path(config_path()).read_text(encoding="utf-8")
    assert "sk-test" not in text and "0123456789abcdef" not in text
    loaded = load_settings().settings
    assert loaded == Settings(
        provider="openai",
        endpoint="wss://api.openai.com/v1/responses",
        model="gpt-5.3-codex",
        context_budget_tokens=64_000,
        pins=["a.py", "src/b.py"],
        approval_policy="auto_patches",
        theme="light",
    )
    assert dlg.api_key.text() == ""


def test_key_in_wrong_field_is_refused(qtbot) -> None:  # type: ignore[no-untyped-def]
    """A key pasted into the model field shows an error and saves nothing."""
    host = FileHost()
    dlg = SettingsDialog(host)
    qtbot.addWidget(dlg)
    dlg.model.setText("sk-proj-abcdefghijklmnopqrstuvwxyz")
    dlg.accept()
    assert "keychain" in dlg.error.text()
    assert not dlg.error.isHidden()
    assert not config_path().exists()
    assert "save_settings" not in host.names()


def test_no_keychain_says_so_and_offers_opt_in(qtbot) -> None:  # type: ignore[no-untyped-def]
    """Without a keychain the key field is disabled, the reason shown, the env opt-in offered."""
    host = FileHost(
        keychain=KeychainInfo(False, "fail Keyring", "No OS keychain is available (fail Keyring).")
    )
    dlg = SettingsDialog(host)
    qtbot.addWidget(dlg)
    dlg.show()
    dlg.provider.setCurrentIndex(dlg.provider.findData("xai"))
    assert not dlg.api_key.isEnabled()
    assert "No OS keychain" in dlg.key_status.text()
    assert dlg.env_fallback.isVisible() and not dlg.env_fallback.isChecked()
    dlg.env_fallback.setChecked(True)
    dlg.accept()
    assert load_settings().settings.allow_env_key_fallback is True
    assert host.keys == {}


def test_scripted_provider_needs_no_key(qtbot) -> None:  # type: ignore[no-untyped-def]
    """The scripted engine disables the key field."""
    dlg = SettingsDialog(FileHost())
    qtbot.addWidget(dlg)
    assert dlg.provider.currentData() == "scripted"
    assert not dlg.api_key.isEnabled()
    assert "no API key" in dlg.key_status.text()
