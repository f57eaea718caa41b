"""Where turns go: the one endpoint resolver, for the app and the headless commands alike.

The app resolves from its settings (`resolve`): a hosted provider with a key from the keychain, a
Responses endpoint, a local Chat Completions server behind a bridge of our own, or — when none is
configured or the configured one cannot be used — a scripted `slipstream serve` of our own. The
headless commands resolve from their command line (`from_command_line`): an explicit --endpoint, or
the same scripted server. Whatever child server this starts comes back in `Resolved.server`; the
caller owns it and stops it (`ServerHandle.aclose`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from app.adapters.local_server import (
    LocalServerError,
    ServerHandle,
    start_local_server,
    start_scripted_server,
)
from app.adapters.secrets import NoKeychainError, SecretsError
from app.runtime import is_loopback, serve_token_path
from app.services.providers import PROVIDERS, endpoint_for
from app.services.session import Endpoint
from app.services.settings import Settings

__all__ = [
    "BANNER",
    "SCRIPTED_LABEL",
    "EndpointUnavailable",
    "Resolved",
    "from_command_line",
    "resolve",
    "scripted",
]

SCRIPTED_LABEL = "scripted — no model"
BANNER = (
    "No model is configured, so Slipstream runs its scripted engine (offline, no model). "
    "To connect a model: Settings → Provider → OpenAI or xAI (key kept in your OS keychain); "
    "a local server (llama.cpp, Ollama, vLLM, SGLang, LM Studio) through `slipstream serve --engine chat "
    "--upstream URL`; or any Responses-compatible endpoint."
)
# Where the headless commands read a token for --endpoint when --token is not given, in order (a local
# serve's token file comes between the two, for a loopback endpoint).
TOKEN_VARS = ("SLIPSTREAM_TOKEN", "OPENAI_API_KEY")

Notice = Callable[[str, str], None]  # kind ("error", ...), words


class EndpointUnavailable(Exception):
    """No endpoint could be had (not even the scripted server); the message says why."""


@dataclass(slots=True)
class Resolved:
    endpoint: Endpoint
    server: ServerHandle | None = None  # a server we started (a child, or in-process): the caller stops it
    banner: str = ""  # the scripted engine's explanation, "" otherwise
    encrypted_reasoning: bool = False  # ask the provider for encrypted reasoning items (hosted, store=false)

    @property
    def label(self) -> str:
        return self.endpoint.label or self.endpoint.model


async def scripted() -> Resolved:
    """A scripted server of our own (offline, no model): a `slipstream serve` child, or in the desktop
    app a thread of its own (app.adapters.local_server.start_scripted_server)."""
    try:
        server = await start_scripted_server()
    except LocalServerError as exc:
        raise EndpointUnavailable(str(exc)) from exc
    return Resolved(
        Endpoint(server.url, server.token, model="scripted", label=SCRIPTED_LABEL), server, BANNER
    )


async def _bridge(s: Settings) -> Resolved:
    """A local Chat Completions server (llama.cpp, Ollama, vLLM, SGLang, LM Studio): our own
    `slipstream serve --engine chat` in front of it gives it the incremental WebSocket session."""
    args = ["--upstream", s.endpoint] + (["--upstream-model", s.model] if s.model else [])
    server = await start_local_server(engine="chat", extra_args=args)
    model = s.model or "default"
    label = f"{model} via {s.endpoint} (bridge)"
    return Resolved(Endpoint(server.url, server.token, model=model, label=label), server)


async def resolve(settings: Settings, key_for: Callable[[str], str | None], notice: Notice) -> Resolved:
    """The app's endpoint for `settings`; falls back to the scripted engine, saying why in `notice`
    (the reason only: the caller says what happens instead, e.g. in the app's banner).

    `key_for(provider)` reads the keychain (it may raise NoKeychainError/SecretsError); it is asked
    only for providers that need a key. EndpointUnavailable when not even the fallback starts.
    """
    s = settings
    provider = PROVIDERS.get(s.provider)
    if s.provider == "local" and s.endpoint.startswith(("http://", "https://")):
        try:
            return await _bridge(s)
        except LocalServerError as exc:
            notice("error", f"Could not bridge to {s.endpoint}: {exc}")
    elif provider is not None and s.provider != "scripted" and (provider.ws_url or s.endpoint):
        try:
            key = key_for(s.provider) if provider.needs_key else None
            endpoint = Endpoint(**endpoint_for(provider, s.model, key, url=s.endpoint))
            return Resolved(endpoint, encrypted_reasoning=provider.encrypted_reasoning and not endpoint.store)
        except (ValueError, NoKeychainError, SecretsError) as exc:
            notice("error", str(exc))
    return await scripted()


def local_serve_token(endpoint: str) -> str | None:
    """The token a local `slipstream serve` wrote for itself (its private token file), when `endpoint`
    is a loopback URL with a port and the file is there; None otherwise."""
    try:
        parts = urlsplit(endpoint)
        port = parts.port
    except ValueError:
        return None
    host = (parts.hostname or "").strip("[]")
    if port is None or not is_loopback(host):
        return None
    try:
        text = serve_token_path(port).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text or None


async def from_command_line(endpoint: str | None, token: str | None, model: str | None) -> Resolved:
    """The headless commands' endpoint: --endpoint (token from --token, $SLIPSTREAM_TOKEN, the token
    file of a local `slipstream serve` when the endpoint is a loopback URL, then $OPENAI_API_KEY), else a
    scripted server of our own."""
    if not endpoint:
        resolved = await scripted()
        if model:
            resolved.endpoint = replace(resolved.endpoint, model=model)
        return resolved
    token = (
        token
        or os.environ.get("SLIPSTREAM_TOKEN")
        or local_serve_token(endpoint)
        or os.environ.get("OPENAI_API_KEY")
        or None
    )
    # http(s):// means HTTP + SSE only (a server without WebSocket mode); ws(s):// WebSocket first.
    return Resolved(Endpoint(endpoint, token, model=model or "scripted", label=endpoint))
