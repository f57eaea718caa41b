"""Secrets: keys in a keychain backend; without one, a clear message and an explicit opt-in."""

from __future__ import annotations

import logging

import pytest
from keyring.backend import KeyringBackend
from keyring.backends import fail, null
from keyring.errors import PasswordDeleteError

from app.adapters.secrets import NoKeychainError, SecretStore


class MemoryKeyring(KeyringBackend):
    """In-memory keyring backend for tests."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # keyring leaves its constructors unannotated
        self.data: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.data.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.data[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if (service, username) not in self.data:
            raise PasswordDeleteError("not found")
        del self.data[(service, username)]


def test_memory_backend_round_trip(caplog: pytest.LogCaptureFixture) -> None:
    """set/get/delete go through the keychain; the key is never logged."""
    kr = MemoryKeyring()
    store = SecretStore(kr, environ={})
    caplog.set_level(logging.DEBUG)
    assert store.status().available
    assert store.get("openai") is None
    store.set("openai", "  sk-secret-value-123  ")
    assert kr.data[("slipstream", "openai")] == "sk-secret-value-123"
    assert store.get("openai") == "sk-secret-value-123"
    assert store.has("openai")
    assert "sk-secret" not in caplog.text
    assert "sk-secret" not in repr(store)
    assert store.delete("openai") is True
    assert store.delete("openai") is False
    assert store.get("openai") is None


def test_rejects_empty_and_whitespace_keys() -> None:
    """Bad input gives words, not a stored garbage key."""
    store = SecretStore(MemoryKeyring(), environ={})
    with pytest.raises(ValueError, match="empty"):
        store.set("openai", "   ")
    with pytest.raises(ValueError, match="whitespace"):
        store.set("openai", "sk-abc def")


@pytest.mark.parametrize("backend", [fail.Keyring(), null.Keyring()])  # type: ignore[no-untyped-call]
def test_no_keychain_says_so_and_requires_opt_in(backend: KeyringBackend) -> None:
    """fail/null backends: a clear message; the env var is read only after opting in."""
    env = {"OPENAI_API_KEY": "sk-from-env"}
    store = SecretStore(backend, environ=env)
    status = store.status("openai")
    assert not status.available
    assert "No OS keychain" in status.message and "OPENAI_API_KEY" in status.message
    with pytest.raises(NoKeychainError, match="No OS keychain"):
        store.get("openai")
    assert not store.has("openai")
    with pytest.raises(NoKeychainError):
        store.set("openai", "sk-x")
    store.allow_env_fallback(True)
    assert store.get("openai") == "sk-from-env"
    with pytest.raises(NoKeychainError):  # opting in to read never makes writing possible
        store.set("openai", "sk-x")


def test_env_fallback_not_used_with_keychain_unless_opted_in() -> None:
    """With a keychain and no stored key, the environment is ignored without the opt-in."""
    env = {"SLIPSTREAM_API_KEY": "sk-env"}
    assert SecretStore(MemoryKeyring(), environ=env).get("custom") is None
    assert SecretStore(MemoryKeyring(), environ=env, allow_env_fallback=True).get("custom") == "sk-env"
