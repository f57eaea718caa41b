"""A key typed anywhere in the settings dialog reaches the keychain or nowhere: never a file, a log
record or a history row (issue 15: a key typed "into" a disabled key field landed in the Model field
and was saved; typed into the Provider list it re-selected a provider)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from keyring.backend import KeyringBackend
from keyring.backends import null
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QDialogButtonBox, QWidget

from app import profile
from app.adapters.secrets import SecretStore
from app.adapters.store import HistoryStore
from app.services.app import AppServices
from app.services.settings import Settings, SettingsError, config_path, load_settings, looks_like_key
from app.ui.settings_dialog import SettingsDialog
from tests.adapters.test_secrets import MemoryKeyring

KEY = "sk-proj-Zq8Xv2Lm9Tr4Wb7Nc1Yd6Kp3Hs5Gf0JuQa"
KEY_BODY = KEY.removeprefix("sk-proj-")


def _focusable(dlg: SettingsDialog) -> list[QWidget]:
    """Every widget of the dialog a user can put the keyboard focus on (tab order), as shown."""
    out = []
    for w in dlg.findChildren(QWidget):
        if w.isVisibleTo(dlg) and w.isEnabled() and w.focusPolicy() & Qt.FocusPolicy.TabFocus:
            if w.objectName() == "qt_spinbox_lineedit":  # the spin box's own editor: typed via the spin box
                continue
            out.append(w)
    return out


def _bytes_hold_key(folder: Path) -> list[str]:
    found = []
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            if KEY.encode() in data or KEY_BODY.encode() in data:
                found.append(str(path))
    return found


@pytest.mark.parametrize("keychain", [False, True], ids=["no-keychain", "keychain"])
def test_key_typed_into_every_field_reaches_no_file_log_or_history(  # type: ignore[no-untyped-def]
    qtbot, tmp_path: Path, caplog: pytest.LogCaptureFixture, keychain: bool
) -> None:
    caplog.set_level(logging.DEBUG)
    root = tmp_path / "project"
    root.mkdir()
    (root / "main.py").write_text("print('hi')\n")
    backend: KeyringBackend = MemoryKeyring() if keychain else null.Keyring()  # type: ignore[no-untyped-call]
    store = HistoryStore()
    services = AppServices(
        root,
        Settings(provider="openai", model="gpt-5.3-codex"),
        store=store,
        secrets=SecretStore(backend),
        watch=False,
    )
    services.history.open()
    services.save_settings(services.settings)  # a settings file exists to be (not) overwritten
    typed_into: list[str] = []
    probe = SettingsDialog(services)
    qtbot.addWidget(probe)
    names = [f"{type(w).__name__}:{w.objectName()}" for w in _focusable(probe)]
    count = len(names)
    assert count >= 10, names
    assert ("QLineEdit:apiKey" in names) is keychain  # no key field at all without a keychain
    for i in range(count):
        dlg = SettingsDialog(services)
        qtbot.addWidget(dlg)
        dlg.show()
        qtbot.waitExposed(dlg)
        w = _focusable(dlg)[i]
        w.setFocus()
        QTest.keyClicks(w, KEY)
        typed_into.append(f"{type(w).__name__}:{w.objectName()}")
        ok = dlg.buttons.button(QDialogButtonBox.StandardButton.Ok)
        QTest.mouseClick(ok, Qt.MouseButton.LeftButton)
        assert KEY not in dlg.error.text() and KEY_BODY not in dlg.error.text()
        if dlg.isVisible():  # refused: the reason is shown, in words
            assert "API key" in dlg.error.text(), (typed_into[-1], dlg.error.text())
            dlg.reject()
        assert services.settings.provider == "openai", typed_into[-1]  # the list ignored typed letters
    assert len(typed_into) == count
    store.close()
    holders = _bytes_hold_key(profile.profile_dir() or tmp_path) + _bytes_hold_key(root)
    assert holders == []
    assert config_path().is_file() and load_settings().settings.model == "gpt-5.3-codex"
    for rec in caplog.records:
        assert KEY_BODY not in rec.getMessage() and KEY_BODY not in str(rec.args)
    check = HistoryStore()
    try:
        for sess in check.list_sessions():
            for item in check.items(sess.id):
                assert KEY_BODY not in repr(item.data)
    finally:
        check.close()
    if keychain:  # typed into the key field, it went to the keychain (and only there)
        assert isinstance(backend, MemoryKeyring) and KEY in backend.data.values()


@pytest.mark.parametrize(
    "value",
    [
        "gpt-5.3-codexsk-proj-Zq8Xv2Lm9Tr4Wb7Nc1Yd6Kp3",
        "xai-AbCdEfGh0123456789xyzXYZ",
        "Zq8Xv2Lm9Tr4Wb7Nc1Yd6Kp3Hs",
    ],
)
@pytest.mark.parametrize("field", ["model", "endpoint", "pins", "ignore_patterns"])
def test_validate_refuses_key_shapes_without_quoting_them(field: str, value: str) -> None:
    bad = {"endpoint": "https://example.com/" + value}.get(field, value)
    s = Settings(**{field: [bad] if field in ("pins", "ignore_patterns") else bad})  # type: ignore[arg-type]
    with pytest.raises(SettingsError, match="looks like it holds an API key") as err:
        s.validate()
    assert value not in str(err.value)


@pytest.mark.parametrize(
    "model",
    [
        "gpt-5.3-codex",
        "mistral-task-specific-instruct-v1",
        "Qwen3-Coder-30B-A3B-Instruct-GGUF",
        "hf.co/unsloth/Qwen3-Coder-30B-A3B-Instruct-GGUF:Q4_K_M",
        "meta-llama/Llama-3.3-70B-Instruct-Turbo",
        "qwen2.5-coder-32b-instruct-q4_k_m",
        "grok-code-fast-1",
    ],
)
def test_real_model_names_pass(model: str) -> None:
    assert not looks_like_key(model)
    Settings(model=model, endpoint="http://127.0.0.1:11434/v1").validate()  # raises on a key-like value
