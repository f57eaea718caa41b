"""User settings: a small dataclass saved as JSON in the platform's config folder.

API keys are deliberately NOT settings: they live in the OS keychain (app.adapters.secrets). The
file format rejects them both ways: unknown fields such as "api_key" are dropped on load (and
reported), and a value that looks like a key refuses to be saved, so a key pasted into the wrong
field never reaches the disk in clear text.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, Protocol, get_args

from app import profile
from app.services import providers

APP_NAME = "slipstream"
CONFIG_FILE = "settings.json"
MAX_RECENT = 10

Provider = Literal["scripted", "local", "openai", "xai", "openai_compatible"]
ApprovalPolicy = Literal["ask", "auto_patches", "auto_all"]
ThemeChoice = Literal["system", "light", "dark"]

# id -> label, from the one provider table; `Provider` above names the same ids for the type checker.
PROVIDERS: dict[str, str] = {p.id: p.label for p in providers.PROVIDERS.values()}
APPROVAL_POLICIES: dict[str, str] = {
    "ask": "Ask before every patch and command",
    "auto_patches": "Apply patches, ask before commands",
    "auto_all": "Never ask (trusted projects only)",
}
THEMES: dict[str, str] = {"system": "Follow the system", "light": "Light", "dark": "Dark"}
# The names the settings dialog shows for the fields, for messages about them.
FIELD_LABELS: dict[str, str] = {
    "provider": "Provider",
    "endpoint": "Endpoint",
    "model": "Model",
    "pins": "Pinned files",
    "ignore_patterns": "Also ignore",
    "recent_projects": "Recent projects",
    "theme": "Theme",
    "approval_policy": "Approvals",
}

# Shapes of well-known API keys, anywhere in a value: a key typed into the wrong field is often glued
# to what was there ("gpt-5.3-codexsk-proj-…"). The body must look random (mixed case and digits), so
# "mistral-task-specific-v1" is not one.
_KEY_STRONG = re.compile(r"(?:sk-(?:proj|ant|svcacct|admin)-[A-Za-z0-9_\-]{16,}|xai-[A-Za-z0-9]{16,})")
_KEY_PREFIXED = re.compile(
    r"(?:^|(?<=[^A-Za-z0-9])|(?<=[a-z]))(?:sk-|gsk_|ghp_|github_pat_|hf_)([A-Za-z0-9_\-]{20,})"
)
_ALNUM_RUN = re.compile(r"[A-Za-z0-9]{20,}")
_UPPER, _LOWER, _DIGIT = re.compile("[A-Z]"), re.compile("[a-z]"), re.compile("[0-9]")


def _random_looking(token: str) -> bool:
    """Mixed upper case, lower case and digits, with few repeats: how generated secrets look, and
    how model names, paths and URLs (words joined by - / . :) do not."""
    classes = sum(1 for rx in (_UPPER, _LOWER, _DIGIT) if rx.search(token))
    if classes < 3:
        return False
    counts = Counter(token)
    entropy = -sum(n / len(token) * math.log2(n / len(token)) for n in counts.values())
    return entropy >= 3.5


def looks_like_key(value: str) -> bool:
    """Whether `value` holds something shaped like an API key or another long random secret.

    A known prefix (sk-, xai-, ...) followed by a random-looking body, or any run of 20+ letters and
    digits that is random-looking (a key without its prefix)."""
    if _KEY_STRONG.search(value):
        return True
    for m in _KEY_PREFIXED.finditer(value):
        body = m.group(1)
        at_boundary = m.start() == 0 or not value[m.start() - 1].isalnum()
        if _random_looking(body.replace("-", "").replace("_", "")) or (at_boundary and _DIGIT.search(body)):
            return True
    return any(_random_looking(m.group(0)) for m in _ALNUM_RUN.finditer(value))


class SettingsError(ValueError):
    """The config file is unreadable or a value is invalid; the message says which and why."""


@dataclass(slots=True)
class Settings:
    """Everything the user configures, except secrets."""

    provider: Provider = "scripted"
    endpoint: str = ""  # ws(s):// or http(s):// base of the Responses endpoint; "" = provider default
    model: str = ""
    context_budget_tokens: int = 32_000
    pins: list[str] = field(default_factory=list)  # project-relative paths always kept in view
    ignore_patterns: list[str] = field(default_factory=list)  # gitignore-style, on top of the project's rules
    approval_policy: ApprovalPolicy = "ask"
    theme: ThemeChoice = "system"
    recent_projects: list[str] = field(default_factory=list)
    # Explicit opt-in to read keys from environment variables when no OS keychain exists.
    allow_env_key_fallback: bool = False
    rerun_tests_on_save: bool = False
    max_tool_turns: int = 25  # consecutive tool turns before the agent stops and asks

    @property
    def model_configured(self) -> bool:
        """True when the user picked a real model (not the scripted demo)."""
        return self.provider != "scripted"

    def validate(self) -> Settings:
        """Raise SettingsError on a bad value; return self so calls chain.

        Key-shaped values are checked first, and no message quotes a value that could be one."""
        self._refuse_keys()
        _check_choice("provider", self.provider, Provider)
        _check_choice("approval_policy", self.approval_policy, ApprovalPolicy)
        _check_choice("theme", self.theme, ThemeChoice)
        if not isinstance(self.context_budget_tokens, int) or isinstance(self.context_budget_tokens, bool):
            raise SettingsError(
                f"context_budget_tokens must be an integer, not {self.context_budget_tokens!r}"
            )
        if not 1_000 <= self.context_budget_tokens <= 10_000_000:
            raise SettingsError(
                f"context_budget_tokens must be between 1,000 and 10,000,000, not {self.context_budget_tokens:,}"
            )
        if self.endpoint and not re.match(r"^(wss?|https?)://[^\s/]+", self.endpoint):
            raise SettingsError(
                f"endpoint must start with ws://, wss://, http:// or https://, not {self.endpoint!r}"
            )
        if not isinstance(self.max_tool_turns, int) or not 1 <= self.max_tool_turns <= 200:
            raise SettingsError(
                f"max_tool_turns must be an integer from 1 to 200, not {self.max_tool_turns!r}"
            )
        if not isinstance(self.rerun_tests_on_save, bool):
            raise SettingsError("rerun_tests_on_save must be true or false")
        for name in ("pins", "recent_projects", "ignore_patterns"):
            value = getattr(self, name)
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise SettingsError(f"{name} must be a list of strings")
        return self

    def _refuse_keys(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            values = value if isinstance(value, list) else [value]
            if any(isinstance(v, str) and looks_like_key(v) for v in values):
                label = FIELD_LABELS.get(f.name, f.name)
                raise SettingsError(
                    f"{label} looks like it holds an API key, so it was not saved. Keys are kept in the OS "
                    "keychain (the API key field) or read from OPENAI_API_KEY / XAI_API_KEY, never in the "
                    "settings file; remove it from that field."
                )

    def with_recent(self, project: str | os.PathLike[str]) -> Settings:
        """A copy with `project` first in the recent list (deduplicated, capped)."""
        path = str(Path(project).expanduser().resolve())
        recent = [path] + [p for p in self.recent_projects if p != path]
        return replace(self, recent_projects=recent[:MAX_RECENT])

    def to_json(self) -> str:
        return json.dumps(asdict(self.validate()), indent=2, sort_keys=True) + "\n"


def _check_choice(name: str, value: object, literal: object) -> None:
    allowed = get_args(literal)
    if value not in allowed:
        raise SettingsError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def config_dir() -> Path:
    """The platform's per-user config folder for Slipstream, or the throwaway profile's (created on
    save, not here): smoke runs, benchmarks and tests never see the user's settings."""
    return profile.config_dir()


def config_path() -> Path:
    return config_dir() / CONFIG_FILE


@dataclass(frozen=True, slots=True)
class LoadResult:
    settings: Settings
    warnings: tuple[str, ...] = ()  # words for the user: ignored fields, reset values


def load_settings(path: Path | None = None) -> LoadResult:
    """Read settings; a missing file gives defaults. Unknown fields are dropped with a warning.

    Raises SettingsError when the file exists but is not a JSON object, or a value is invalid.
    """
    path = path or config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return LoadResult(Settings())
    except OSError as exc:
        raise SettingsError(f"cannot read settings file {path}: {exc.strerror or exc}") from exc
    try:
        raw: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"settings file {path} is not valid JSON (line {exc.lineno}: {exc.msg})") from exc
    if not isinstance(raw, dict):
        raise SettingsError(f"settings file {path} must hold a JSON object, not {type(raw).__name__}")
    known = {f.name for f in fields(Settings)}
    warnings = []
    for name in sorted(set(raw) - known):
        hint = " (API keys belong in the OS keychain)" if "key" in name.lower() else ""
        warnings.append(f"ignored unknown setting {name!r}{hint}")
    try:
        settings = Settings(**{k: v for k, v in raw.items() if k in known})
    except TypeError as exc:  # pragma: no cover - dataclass arguments are keyword-checked above
        raise SettingsError(f"settings file {path}: {exc}") from exc
    try:
        settings.validate()
    except SettingsError as exc:
        raise SettingsError(f"settings file {path}: {exc}") from exc
    return LoadResult(settings, tuple(warnings))


def save_settings(settings: Settings, path: Path | None = None) -> Path:
    """Validate, then write atomically (temp file + rename) so a crash never leaves half a file."""
    path = path or config_path()
    text = settings.to_json()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".settings-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@dataclass(frozen=True, slots=True)
class KeychainInfo:
    """Whether an OS keychain is there, in words the settings dialog can show."""

    available: bool
    backend: str = ""
    message: str = ""


class SettingsFacade(Protocol):
    """What the settings dialog needs from the services (to be merged into `Services`)."""

    settings: Settings

    def save_settings(self, settings: Settings) -> None: ...
    def keychain_info(self) -> KeychainInfo: ...
    def has_api_key(self, provider: str) -> bool: ...
    def set_api_key(self, provider: str, key: str) -> None:
        """Store in the keychain; raise ValueError/RuntimeError with words for the user on failure."""
        ...
