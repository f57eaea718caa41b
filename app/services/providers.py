"""The one provider table (what Settings → Provider offers, where each endpoint is, its models and
limits), and detection of local Chat Completions servers the bridge can sit in front of.

Providers are values: the settings file accepts exactly their ids, the settings dialog lists them,
`endpoint_for()` turns one into the keyword arguments of `app.services.session.Endpoint`. API keys
never live here: a provider that `needs_key` reads it from the keychain entry named by its id.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # loaded only when detecting: the settings import this table at start-up
    import httpx

__all__ = [
    "LOCAL_SERVERS",
    "PROVIDERS",
    "DetectedServer",
    "Provider",
    "detect_local_servers",
    "endpoint_for",
    "ws_url",
]


@dataclass(frozen=True, slots=True)
class Provider:
    """A provider the user can pick in Settings, and how to reach it."""

    id: str  # the value of `Settings.provider`
    label: str  # what the settings dialog lists
    ws_url: str  # the WebSocket-mode endpoint; "" = the user gives one (Settings → Endpoint)
    http_url: str
    models: tuple[str, ...]  # the first is the default model
    max_age_s: float  # the provider's connection age limit
    needs_key: bool  # an API key from the keychain (entry named by `id`)
    endpoint_hint: str  # placeholder of the dialog's endpoint field
    notes: str = ""
    # A hosted API that keeps nothing with store=false: ask it for encrypted reasoning to carry along.
    encrypted_reasoning: bool = False


# The one provider table: the settings file's allowed values, the dialog's list, the endpoint resolver.
PROVIDERS: dict[str, Provider] = {
    p.id: p
    for p in (
        Provider(
            "scripted",
            "Scripted demo (no model)",
            "",
            "",
            ("scripted",),
            3600.0,
            False,
            "built in — no endpoint needed",
            "Runs a `slipstream serve --engine scripted` of the app's own: offline, no model.",
        ),
        Provider(
            "local",
            "Local server (llama.cpp, Ollama, vLLM, SGLang, LM Studio)",
            "",
            "",
            (),
            3600.0,
            False,
            "http://127.0.0.1:11434/v1 (bridged) or ws://127.0.0.1:8765/v1/responses",
            "An http(s) URL is a Chat Completions server: the app bridges it with its own `slipstream serve "
            "--engine chat`; a ws(s) URL is a Responses server such as `slipstream serve`.",
        ),
        Provider(
            "openai",
            "OpenAI",
            "wss://api.openai.com/v1/responses",
            "https://api.openai.com/v1/responses",
            ("gpt-5.3-codex", "gpt-5.5", "gpt-5.5-mini"),
            3600.0,
            True,
            "wss://api.openai.com/v1/responses",
            "Connections close after 60 minutes; the app rotates before that.",
            encrypted_reasoning=True,
        ),
        Provider(
            "xai",
            "xAI",
            "wss://api.x.ai/v1/responses",
            "https://api.x.ai/v1/responses",
            ("grok-4.6", "grok-4.6-fast"),
            1500.0,
            True,
            "wss://api.x.ai/v1/responses",
            "Connections close after 25 minutes; the app rotates before that.",
            encrypted_reasoning=True,
        ),
        Provider(
            "openai_compatible",
            "Other Responses-compatible endpoint",
            "",
            "",
            (),
            3600.0,
            True,
            "ws(s)://host:port/v1/responses",
        ),
    )
}


def ws_url(url: str) -> str:
    """Accept http(s) bases too: http://host/v1 -> ws://host/v1/responses."""
    if url.startswith("http://"):
        url = "ws://" + url[len("http://") :]
    elif url.startswith("https://"):
        url = "wss://" + url[len("https://") :]
    return url if url.rstrip("/").endswith("/responses") else url.rstrip("/") + "/responses"


def endpoint_for(
    provider: Provider | str, model: str | None, key: str | None, *, url: str = ""
) -> dict[str, Any]:
    """Keyword arguments for `Endpoint(**...)`: url, token, model, max_age_s, label.

    `url` (Settings → Endpoint) replaces the provider's own. ValueError, in words, when there is no
    endpoint or a provider that needs a key has none.
    """
    p = PROVIDERS[provider] if isinstance(provider, str) else provider
    where = ws_url(url) if url else p.ws_url
    if not where:
        raise ValueError(f"No endpoint is set for {p.label} (Settings → Endpoint).")
    if p.needs_key and not key:
        raise ValueError(f"No API key for {p.label} in the keychain (Settings → API key).")
    chosen = model or (p.models[0] if p.models else "") or "default"
    return {
        "url": where,
        "token": key,
        "model": chosen,
        "max_age_s": p.max_age_s,
        "label": f"{chosen} via {p.id}",
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
    import httpx

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
    import httpx

    wanted = list(ports) if ports is not None else [p for p, _ in LOCAL_SERVERS]
    async with httpx.AsyncClient(timeout=timeout_s) as client:
        found = await asyncio.gather(*(_probe(client, host, p) for p in wanted))
    return [s for s in found if s is not None]
