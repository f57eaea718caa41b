"""The settings dialog: provider, endpoint, model, context budget and pins, approvals, theme, API key.

The API key field never round-trips through `Settings`: on OK it goes to `set_api_key` (the OS
keychain, via the services) and the field is cleared. Without a keychain there is no key field at
all (a disabled one looked enabled, and a key typed "into" it went into the field that had focus):
the dialog says why and offers the explicit opt-in to read the key from an environment variable
(OPENAI_API_KEY, XAI_API_KEY); it never offers to write the key anywhere else. The lists ignore
typed letters (a key typed into the Provider list re-selected a provider), and `Settings.validate`
refuses a key-shaped value in any other field.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QKeyEvent, QKeySequence
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.services.providers import PROVIDERS as PROVIDER_TABLE
from app.services.settings import (
    APPROVAL_POLICIES,
    PROVIDERS,
    THEMES,
    Settings,
    SettingsError,
    SettingsFacade,
)

# From the one provider table (app.services.providers), like the list of providers itself.
ENDPOINT_HINTS = {p.id: p.endpoint_hint for p in PROVIDER_TABLE.values()}
NEEDS_KEY = {p.id for p in PROVIDER_TABLE.values() if p.needs_key}
# The environment variables a key is read from under the opt-in (app.adapters.secrets.ENV_VARS).
KEY_ENV_VARS = {"openai": "OPENAI_API_KEY", "xai": "XAI_API_KEY"}
_LIST_KEYS = frozenset(
    {
        Qt.Key.Key_Up,
        Qt.Key.Key_Down,
        Qt.Key.Key_PageUp,
        Qt.Key.Key_PageDown,
        Qt.Key.Key_Home,
        Qt.Key.Key_End,
        Qt.Key.Key_Space,
        Qt.Key.Key_F4,
        Qt.Key.Key_Tab,
        Qt.Key.Key_Backtab,
        Qt.Key.Key_Escape,
        Qt.Key.Key_Return,
        Qt.Key.Key_Enter,
    }
)


class _NoTypeAhead(QObject):
    """Swallows typed text on a list (QComboBox): its keyboard search picked an item by the letters of
    whatever was typed, a pasted key included. Arrows, Page keys, Space, F4 still work."""

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        typed = event.type() in (QEvent.Type.KeyPress, QEvent.Type.ShortcutOverride) and isinstance(
            event, QKeyEvent
        )
        return bool(
            typed
            and event.key() not in _LIST_KEYS  # type: ignore[attr-defined]
            and (event.text().strip() or event.matches(QKeySequence.StandardKey.Paste))  # type: ignore[attr-defined]
        )


class SettingsDialog(QDialog):
    """`SettingsDialog(host)`; on OK, saves through `host.save_settings` and stores a new key."""

    def __init__(self, host: SettingsFacade, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.host = host
        self.setWindowTitle("Settings")
        self.setObjectName("settingsDialog")
        self.setMinimumWidth(560)
        s = host.settings

        self.provider = QComboBox()
        for key, label in PROVIDERS.items():
            self.provider.addItem(label, key)
        self.endpoint = QLineEdit()
        self.model = QLineEdit()
        self.model.setPlaceholderText("e.g. gpt-5.3-codex, grok-code-fast, qwen3-coder")
        self.api_key = QLineEdit()
        self.api_key.setObjectName("apiKey")
        self.api_key.setEchoMode(QLineEdit.EchoMode.Password)
        self.key_status = QLabel()
        self.key_status.setWordWrap(True)
        self.key_status.setObjectName("panelSummary")
        self.env_fallback = QCheckBox("Read the key from the environment variable (no keychain)")
        self.budget = QSpinBox()
        self.budget.setRange(1_000, 10_000_000)
        self.budget.setSingleStep(4_000)
        self.budget.setGroupSeparatorShown(True)
        self.budget.setSuffix(" tokens")
        self.pins = QPlainTextEdit()
        self.pins.setPlaceholderText("One project-relative path per line, always kept in the model's view")
        self.pins.setFixedHeight(90)
        self.approval = QComboBox()
        for key, label in APPROVAL_POLICIES.items():
            self.approval.addItem(label, key)
        self.ignores = QPlainTextEdit()
        self.ignores.setPlaceholderText(
            "Extra ignore patterns, gitignore syntax, one per line (e.g. *.log, data/)"
        )
        self.ignores.setFixedHeight(70)
        self.rerun_tests = QCheckBox("Rerun the tests when a file is saved")
        self.max_tool_turns = QSpinBox()
        self.max_tool_turns.setRange(1, 200)
        self.max_tool_turns.setToolTip("The agent stops after this many consecutive tool turns")
        self.theme = QComboBox()
        for key, label in THEMES.items():
            self.theme.addItem(label, key)
        self.error = QLabel()
        self.error.setObjectName("errorText")
        self.error.setWordWrap(True)
        self.error.hide()

        self._no_type_ahead = _NoTypeAhead(self)
        for combo in (self.provider, self.approval, self.theme):
            combo.installEventFilter(self._no_type_ahead)
        model_box = QGroupBox("Model")
        form = QFormLayout(model_box)
        self._model_form = form
        form.addRow("Provider", self.provider)
        form.addRow("Endpoint", self.endpoint)
        self.detect = QPushButton("Detect local servers")
        self.detect.setToolTip("Look for llama.cpp, Ollama, vLLM, SGLang, LM Studio on their default ports")
        self.detect.clicked.connect(self._detect)
        self.detected = QLabel()
        self.detected.setWordWrap(True)
        form.addRow("", self.detect)
        form.addRow("", self.detected)
        form.addRow("Model", self.model)
        form.addRow("API key", self.api_key)
        form.addRow("", self.key_status)
        form.addRow("", self.env_fallback)
        ctx_box = QGroupBox("Context and approvals")
        form2 = QFormLayout(ctx_box)
        form2.addRow("Context budget", self.budget)
        form2.addRow("Pinned files", self.pins)
        form2.addRow("Also ignore", self.ignores)
        form2.addRow("Approvals", self.approval)
        form2.addRow("Tool turn cap", self.max_tool_turns)
        form2.addRow("", self.rerun_tests)
        look_box = QGroupBox("Appearance")
        form3 = QFormLayout(look_box)
        form3.addRow("Theme", self.theme)

        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(16, 16, 16, 16)
        lay.setSpacing(12)
        for w in (model_box, ctx_box, look_box, self.error, self.buttons):
            lay.addWidget(w)

        self._load(s)
        self.provider.currentIndexChanged.connect(self._update_key_state)

    def _load(self, s: Settings) -> None:
        self.provider.setCurrentIndex(max(self.provider.findData(s.provider), 0))
        self.endpoint.setText(s.endpoint)
        self.model.setText(s.model)
        self.budget.setValue(s.context_budget_tokens)
        self.pins.setPlainText("\n".join(s.pins))
        self.approval.setCurrentIndex(max(self.approval.findData(s.approval_policy), 0))
        self.theme.setCurrentIndex(max(self.theme.findData(s.theme), 0))
        self.env_fallback.setChecked(s.allow_env_key_fallback)
        self.rerun_tests.setChecked(s.rerun_tests_on_save)
        self.ignores.setPlainText("\n".join(s.ignore_patterns))
        self.max_tool_turns.setValue(s.max_tool_turns)
        self._update_key_state()

    def _detect(self) -> None:
        """Probe the default loopback ports (off the UI thread's time: an asyncio task)."""
        finder = getattr(self.host, "detect_local_servers", None)
        if finder is None:
            return
        self.detect.setEnabled(False)
        self.detected.setText("Looking…")

        async def go() -> None:
            try:
                found = await finder()
            except Exception as exc:
                self.detected.setText(f"Detection failed: {exc}")
                return
            finally:
                self.detect.setEnabled(True)
            if not found:
                self.detected.setText(
                    "No local server answered on the usual ports (8080, 11434, 1234, 8000, 30000)."
                )
                return
            _label, url, models = found[0]
            self.endpoint.setText(url)
            if models and not self.model.text().strip():
                self.model.setText(models[0])
            self.detected.setText(
                "Found: "
                + "; ".join(f"{lb} at {u}" for lb, u, _ in found)
                + ". Slipstream bridges it to the WebSocket session."
            )

        self._detect_task = asyncio.ensure_future(go())

    def _update_key_state(self) -> None:
        provider = str(self.provider.currentData())
        detect = provider == "local" and hasattr(self.host, "detect_local_servers")
        self._model_form.setRowVisible(self.detect, detect)  # hidden rows leave no gap
        self._model_form.setRowVisible(self.detected, detect)
        self.endpoint.setPlaceholderText(ENDPOINT_HINTS.get(provider, ""))
        info = self.host.keychain_info()
        needs = provider in NEEDS_KEY
        usable = needs and info.available
        # The key field exists only where a key can go: a keychain, and a provider that takes one.
        self.api_key.setEnabled(usable)
        self._model_form.setRowVisible(self.api_key, usable)
        if not usable:
            self.api_key.clear()
        self.env_fallback.setVisible(needs and not info.available)
        env = KEY_ENV_VARS.get(provider, "SLIPSTREAM_API_KEY")
        self.env_fallback.setText(f"Read the key from ${env} (no keychain)")
        if not needs:
            self.key_status.setText("This provider needs no API key.")
        elif not info.available:
            backend = f" ({info.backend})" if info.backend else ""
            self.key_status.setText(
                f"No OS keychain is available{backend}, so Slipstream cannot store an API key and shows no key "
                f"field. Set {env} in the environment you start Slipstream from and tick the box below, or "
                "install and unlock a keychain (GNOME Keyring, KWallet) and reopen Settings."
            )
        elif self.host.has_api_key(provider):
            self.key_status.setText(
                f"A key is stored in the OS keychain ({info.backend}). Type a new one to replace it."
            )
            self.api_key.setPlaceholderText("••••••••  (stored)")
        else:
            self.key_status.setText(
                f"The key will be stored in the OS keychain ({info.backend}), never in the settings file."
            )
            self.api_key.setPlaceholderText("paste the key")

    def settings(self) -> Settings:
        """The settings as edited (validated). Raises SettingsError with words for the user."""
        pins = [line.strip() for line in self.pins.toPlainText().splitlines() if line.strip()]
        s = replace(
            self.host.settings,
            provider=self.provider.currentData(),
            endpoint=self.endpoint.text().strip(),
            model=self.model.text().strip(),
            context_budget_tokens=self.budget.value(),
            pins=pins,
            approval_policy=self.approval.currentData(),
            theme=self.theme.currentData(),
            allow_env_key_fallback=self.env_fallback.isChecked() and self.env_fallback.isVisibleTo(self),
            rerun_tests_on_save=self.rerun_tests.isChecked(),
            ignore_patterns=[ln.strip() for ln in self.ignores.toPlainText().splitlines() if ln.strip()],
            max_tool_turns=self.max_tool_turns.value(),
        )
        return s.validate()

    def accept(self) -> None:
        try:
            new = self.settings()
            key = self.api_key.text().strip()
            if key and self.api_key.isEnabled():
                self.host.set_api_key(str(new.provider), key)
                self.api_key.clear()  # stored: the key no longer lingers in the widget
            self.host.save_settings(new)
        except (SettingsError, ValueError, RuntimeError, OSError) as exc:
            self.error.setText(str(exc))
            self.error.show()
            return
        super().accept()

    def done(self, result: int) -> None:
        self.api_key.clear()  # however the dialog closes, the key does not stay in memory here
        super().done(result)
