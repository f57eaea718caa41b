"""API keys in the OS keychain through keyring; never in the config file, the logs or the transcript.

Where keyring finds no real backend (it falls back to `keyring.backends.fail` or `.null`), this
module says so in words and refuses to store anything. Reading a key from an environment variable
is the only fallback, and only when the caller passes `allow_env_fallback=True` — the user's
explicit opt-in, asked for by the UI. Keys never appear in reprs or exception messages.

keyring is imported when a store is first made, not with this module: it drags in importlib.metadata,
email, tarfile and friends (~4 MB resident), and an app on the scripted engine never needs it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app import profile

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend

SERVICE = "slipstream"
log = logging.getLogger(__name__)

# Environment variables read only under the explicit opt-in, per provider (first one set wins).
ENV_VARS: dict[str, tuple[str, ...]] = {
    "openai": ("SLIPSTREAM_API_KEY", "OPENAI_API_KEY"),
    "xai": ("SLIPSTREAM_API_KEY", "XAI_API_KEY"),
}
DEFAULT_ENV_VARS = ("SLIPSTREAM_API_KEY",)

NO_KEYCHAIN_MESSAGE = (
    "No OS keychain is available ({backend}), so API keys cannot be stored safely. "
    "Install and unlock a keychain (GNOME Keyring / KWallet via Secret Service, macOS Keychain, "
    "Windows Credential Locker), or allow reading the key from the environment variable {env} "
    "for this session."
)


class NoKeychainError(RuntimeError):
    """No usable keychain backend; the message says what to do instead."""


class SecretsError(RuntimeError):
    """The keychain exists but refused the operation (locked, denied, ...)."""


@dataclass(frozen=True, slots=True)
class KeychainStatus:
    available: bool
    backend: str  # e.g. "SecretService Keyring", "fail Keyring"
    message: str  # words for the user; "" when all is well


def _backend_name(backend: KeyringBackend) -> str:
    return f"{type(backend).__module__.rsplit('.', 1)[-1]} {type(backend).__name__}"


def _is_usable(backend: KeyringBackend) -> bool:
    from keyring.backends import chainer, fail, null

    if isinstance(backend, fail.Keyring | null.Keyring):
        return False
    if isinstance(backend, chainer.ChainerBackend):
        return any(_is_usable(b) for b in backend.backends)
    return True


def _env_names(provider: str) -> tuple[str, ...]:
    return ENV_VARS.get(provider, DEFAULT_ENV_VARS)


class SecretStore:
    """Get, set and delete one API key per provider ("openai", "xai", an endpoint URL, ...)."""

    def __init__(
        self,
        backend: KeyringBackend | None = None,
        *,
        allow_env_fallback: bool = False,
        environ: Mapping[str, str] | None = None,
        service: str = SERVICE,
    ) -> None:
        if backend is None:
            import keyring
            from keyring.backends import null

            # A throwaway profile (smoke runs, benchmarks, tests) never touches the user's keychain.
            backend = null.Keyring() if profile.is_throwaway() else keyring.get_keyring()  # type: ignore[no-untyped-call]
        self._backend = backend
        self._allow_env = allow_env_fallback
        self._environ = os.environ if environ is None else environ
        self._service = service

    def __repr__(self) -> str:
        return f"SecretStore(backend={_backend_name(self._backend)!r}, env_fallback={self._allow_env})"

    def status(self, provider: str = "") -> KeychainStatus:
        name = _backend_name(self._backend)
        if _is_usable(self._backend):
            return KeychainStatus(True, name, "")
        env = " or ".join(_env_names(provider))
        return KeychainStatus(False, name, NO_KEYCHAIN_MESSAGE.format(backend=name, env=env))

    @property
    def env_fallback_allowed(self) -> bool:
        return self._allow_env

    def allow_env_fallback(self, allowed: bool) -> None:
        """Record the user's explicit answer to "read the key from the environment instead?"."""
        self._allow_env = allowed

    def get(self, provider: str) -> str | None:
        """The key, or None when none is stored. Raises NoKeychainError without a keychain and opt-in."""
        import keyring.errors

        if _is_usable(self._backend):
            try:
                value = self._backend.get_password(self._service, provider)
            except keyring.errors.KeyringError as exc:
                raise SecretsError(
                    f"the keychain refused to read the key for {provider}: {type(exc).__name__}"
                ) from None
            if value:
                return value
            return self._from_env(provider) if self._allow_env else None
        if not self._allow_env:
            raise NoKeychainError(self.status(provider).message)
        return self._from_env(provider)

    def has(self, provider: str) -> bool:
        try:
            return self.get(provider) is not None
        except (NoKeychainError, SecretsError):
            return False

    def set(self, provider: str, key: str) -> None:
        """Store a key in the keychain. There is no fallback store: without a keychain this raises."""
        import keyring.errors

        key = key.strip()
        if not key:
            raise ValueError("the API key is empty")
        if any(c in key for c in "\r\n\t "):
            raise ValueError("the API key contains whitespace; paste only the key itself")
        if not _is_usable(self._backend):
            raise NoKeychainError(self.status(provider).message)
        try:
            self._backend.set_password(self._service, provider, key)
        except keyring.errors.KeyringError as exc:
            # Never include the key: keyring errors may echo arguments.
            raise SecretsError(
                f"the keychain refused to store the key for {provider}: {type(exc).__name__}"
            ) from None
        log.info("stored API key for %s in %s", provider, _backend_name(self._backend))

    def delete(self, provider: str) -> bool:
        """Remove the key; True if one was there."""
        import keyring.errors

        if not _is_usable(self._backend):
            raise NoKeychainError(self.status(provider).message)
        try:
            self._backend.delete_password(self._service, provider)
        except keyring.errors.PasswordDeleteError:
            return False
        except keyring.errors.KeyringError as exc:
            raise SecretsError(
                f"the keychain refused to delete the key for {provider}: {type(exc).__name__}"
            ) from None
        return True

    def _from_env(self, provider: str) -> str | None:
        for name in _env_names(provider):
            value = self._environ.get(name, "").strip()
            if value:
                log.info(
                    "using the API key for %s from the environment variable %s (opted in)", provider, name
                )
                return value
        return None
