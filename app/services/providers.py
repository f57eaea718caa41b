"""Provider presets (where a WebSocket-mode endpoint is, its models and limits) and detection of
local Chat Completions servers the bridge can sit in front of.

Presets are values: the settings dialog lists them, `endpoint_for()` turns one into the keyword
arguments of `app.services.session.Endpoint`. API keys never live here: `key_name` names the
keychain entry (app.adapters.secrets) the caller reads the key from.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

__all__ = ["LOCAL_SERVERS", "PROVIDERS", "DetectedServer", "Provider", "detect_local_servers", "endpoint_for"]


@dataclass(frozen=True, slots=True)
class Provider:
    """A Responses WebSocket-mode endpoint preset."""

    id: str
    label: str
    ws_url: str  # may hold {resource} (Azure); see `endpoint_for(..., url_fields=...)`
    http_url: str
    models: tuple[str, ...]
    max_age_s: float  # the provider's connection age limit
    key_name: str | None  # keychain entry; None = no key (local server)
    notes: str = ""


PROVIDERS: dict[str, Provider] = {
    p.id: p
    for p in (
        Provider(
            "openai",
            "OpenAI",
            "wss://api.openai.com/v1/responses",
            "https://api.openai.com/v1/responses",
            ("gpt-5.5", "gpt-5.5-mini", "gpt-5.3-codex"),
            3600.0,
            "openai",
            "Connections close after 60 minutes; the app rotates before that.",
        ),
        Provider(
            "xai",
            "xAI",
            "wss://api.x.ai/v1/responses",
            "https://api.x.ai/v1/responses",
            ("grok-4.6", "grok-4.6-fast"),
            1500.0,
            "xai",
            "Connections close after 25 minutes; the app rotates before that.",
        ),
        Provider(
            "azure",
            "Azure OpenAI",
            "wss://{resource}.openai.azure.com/openai/v1/responses",
            "https://{resource}.openai.azure.com/openai/v1/responses",
            (),
            3600.0,
            "azure",
            "Replace {resource} with your Azure OpenAI resource name; the model is your deployment name.",
        ),
        Provider(
            "local",
            "Local server (slipstream serve)",
            "ws://127.0.0.1:8765/v1/responses",
            "http://127.0.0.1:8765/v1/responses",
            (),
            3600.0,
            None,
            "Start it with `slipstream serve --engine chat --upstream URL` in front of llama.cpp, Ollama, "
            "vLLM, SGLang or LM Studio; the token is read from the server's token file.",
        ),
    )
}


def endpoint_for(
    provider: Provider | str,
    model: str | None,
    key: str | None,
    *,
    url_fields: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Keyword arguments for `Endpoint(**...)`: url, token, model, max_age_s, label.

    ValueError when a URL placeholder is left unfilled or a provider that needs a key has none.
    """
    p = PROVIDERS[provider] if isinstance(provider, str) else provider
    url = p.ws_url
    if "{" in url:
        try:
            url = url.format(**(url_fields or {}))
        except KeyError as exc:
            raise ValueError(f"{p.label}: fill in {exc.args[0]} in the endpoint URL") from None
    if p.key_name is not None and not key:
        raise ValueError(f"{p.label} needs an API key (keychain entry {p.key_name!r})")
    chosen = model or (p.models[0] if p.models else "")
    if not chosen and p.id == "azure":
        raise ValueError("Azure OpenAI: the model is your deployment name; none given")
    return {
        "url": url,
        "token": key,
        "model": chosen or "default",
        "max_age_s": p.max_age_s,
        "label": f"{p.label} — {chosen}" if chosen else p.label,
    }


# --------------------------------------------------------------------------------------------------
# local Chat Completions servers


@dataclass(frozen=True, slots=True)
class DetectedServer:
    """A Chat Completions server answering on a loopback port."""

    kind: str  # profile name: llama-server, ollama, vllm, sglang, lmstudio, localai, generic
    label: str
    url: str  # base URL to pass to `slipstream serve --engine chat --upstream`
    models: tuple[str, ...]


# Default ports, in probe order; 8080 is shared by llama-server and LocalAI (told apart by owned_by).
LOCAL_SERVERS: tuple[tuple[int, str], ...] = (
    (8080, "llama.cpp llama-server / LocalAI"),
    (11434, "Ollama"),
    (1234, "LM Studio"),
    (8000, "vLLM"),
    (30000, "SGLang"),
)

_OWNERS = {
    "llamacpp": ("llama-server", "llama.cpp llama-server"),
    "ollama": ("ollama", "Ollama"),
    "library": ("ollama", "Ollama"),
    "vllm": ("vllm", "vLLM"),
    "sglang": ("sglang", "SGLang"),
    "organization_owner": ("lmstudio", "LM Studio"),
    "me": ("llama-cpp-python", "llama-cpp-python server"),
}
_BY_PORT = {
    11434: ("ollama", "Ollama"),
    1234: ("lmstudio", "LM Studio"),
    8000: ("vllm", "vLLM"),
    30000: ("sglang", "SGLang"),
    8080: ("llama-server", "llama.cpp llama-server"),
}


def _classify(port: int, payload: Any) -> tuple[str, str]:
    data = payload.get("data") if isinstance(payload, Mapping) else None
    for entry in data if isinstance(data, list) else []:
        owner = entry.get("owned_by") if isinstance(entry, Mapping) else None
        if isinstance(owner, str) and owner.lower() in _OWNERS:
            return _OWNERS[owner.lower()]
    if port == 8080 and isinstance(data, list):
        return ("localai", "LocalAI")  # 8080 without llama.cpp's owned_by
    return _BY_PORT.get(port, ("generic", "OpenAI-compatible server"))


async def _probe(client: httpx.AsyncClient, host: str, port: int) -> DetectedServer | None:
    base = f"http://{host}:{port}/v1"
    try:
        resp = await client.get(f"{base}/models")
        payload = resp.json() if resp.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None
    if not isinstance(payload, Mapping) or not isinstance(payload.get("data"), list):
        return None
    kind, label = _classify(port, payload)
    models = tuple(str(m["id"]) for m in payload["data"] if isinstance(m, Mapping) and "id" in m)
    return DetectedServer(kind, label, base, models)


async def detect_local_servers(
    ports: Sequence[int] | None = None, *, host: str = "127.0.0.1", timeout_s: float = 0.5
) -> list[DetectedServer]:
    """Servers answering GET /v1/models on the default loopback ports, probed concurrently."""
    wanted = list(ports) if ports is not None else [p for p, _ in LOCAL_SERVERS]
    async with httpx.AsyncClient(timeout=timeout_s) as client:
        found = await asyncio.gather(*(_probe(client, host, p) for p in wanted))
    return [s for s in found if s is not None]
