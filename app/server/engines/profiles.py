"""Per-backend profiles for the Chat Completions bridge: known quirks and prefix-cache reuse.

Every backend speaks "OpenAI-compatible" Chat Completions with SSE, but they differ in the knobs
that keep a conversation's prefix cache warm and in where they report cached tokens:

- llama.cpp's llama-server: `cache_prompt: true` reuses the slot's KV cache; `id_slot` pins a
  connection to one slot so another conversation does not evict it; cached tokens come in the final
  chunk's `timings.cache_n` (and, in recent builds, `usage.prompt_tokens_details.cached_tokens`).
- Ollama: `keep_alive` keeps the model (and its cache) loaded between turns; no cached-token count.
- vLLM / SGLang: automatic prefix caching; `usage.prompt_tokens_details.cached_tokens` when the
  server enables it. A router in front of a cluster can pin a session by header.
- LM Studio, LocalAI, llama-cpp-python's server: plain OpenAI shape.

Warm-ups (`generate: false`) become a prefill where the backend has a documented way to process a
prompt into its cache: llama-server's `n_predict: 0` ("no tokens will be generated but the prompt is
evaluated into the cache", with `cache_prompt` and the connection's `id_slot`); vLLM's and SGLang's
automatic prefix caching keep the KV of any prompt they processed, so a one-token request warms
them (their `max_tokens` must be >= 1); Ollama and llama-cpp-python's server keep the last prompt of
a slot and treat `max_tokens: 0` as "no limit", so they get one token too (Ollama's `keep_alive`
keeps the model, and so the cache, loaded). Elsewhere (hosted or unknown servers, which may bill a
request) warm-ups are not forwarded.

Profiles are plain values; the engine merges `extra_body` into each request and asks
`cached_tokens()` to read a final chunk. `detect()` picks one from a GET /v1/models answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

__all__ = ["PROFILES", "BackendProfile", "cached_tokens", "detect", "get_profile"]


@dataclass(frozen=True, slots=True)
class BackendProfile:
    """What the bridge does differently for one kind of upstream server."""

    name: str
    label: str
    default_port: int | None = None
    extra_body: Mapping[str, Any] = field(default_factory=dict)  # merged into every request body
    include_usage: bool = True  # send stream_options.include_usage
    slot_pinning: bool = False  # llama-server: send id_slot (when the slot count is known)
    session_header: str | None = None  # header carrying the connection key, for cache-aware routers
    developer_role: bool = False  # accepts role "developer"; otherwise it is sent as "system"
    prefill: Mapping[str, Any] | None = None  # merged into a warm-up's request; None: not forwarded


_ONE_TOKEN: Mapping[str, Any] = {"max_tokens": 1}

PROFILES: dict[str, BackendProfile] = {
    p.name: p
    for p in (
        BackendProfile("generic", "OpenAI-compatible server"),
        BackendProfile(
            "llama-server",
            "llama.cpp llama-server",
            default_port=8080,
            extra_body={"cache_prompt": True},
            slot_pinning=True,
            prefill={"n_predict": 0},
        ),
        BackendProfile(
            "ollama", "Ollama", default_port=11434, extra_body={"keep_alive": "30m"}, prefill=_ONE_TOKEN
        ),
        BackendProfile("vllm", "vLLM", default_port=8000, session_header="X-Session-Id", prefill=_ONE_TOKEN),
        BackendProfile(
            "sglang", "SGLang", default_port=30000, session_header="X-Session-Id", prefill=_ONE_TOKEN
        ),
        BackendProfile("lmstudio", "LM Studio", default_port=1234),
        BackendProfile("localai", "LocalAI", default_port=8080),
        BackendProfile("llama-cpp-python", "llama-cpp-python server", default_port=8000, prefill=_ONE_TOKEN),
    )
}

# `owned_by` values in GET /v1/models answers, as the servers send them.
_OWNED_BY = {
    "llamacpp": "llama-server",
    "llama.cpp": "llama-server",
    "ollama": "ollama",
    "library": "ollama",
    "vllm": "vllm",
    "sglang": "sglang",
    "me": "llama-cpp-python",  # llama-cpp-python's server
    "organization_owner": "lmstudio",
}


def get_profile(name: str) -> BackendProfile:
    """The profile called `name`; ValueError listing the known ones otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown upstream profile {name!r} (known: {', '.join(PROFILES)})") from None


def detect(models: Any, url: str = "") -> BackendProfile:
    """Guess the backend from a GET /v1/models answer (its `owned_by` fields), then the URL's port."""
    data = models.get("data") if isinstance(models, Mapping) else None
    if isinstance(data, list):
        for entry in data:
            owner = entry.get("owned_by") if isinstance(entry, Mapping) else None
            if isinstance(owner, str) and owner.lower() in _OWNED_BY:
                return PROFILES[_OWNED_BY[owner.lower()]]
    if isinstance(models, Mapping) and isinstance(models.get("models"), list):
        return PROFILES["ollama"]  # Ollama's /api/tags shape
    port = urlsplit(url).port if url else None
    if port == 11434:
        return PROFILES["ollama"]
    if port == 30000:
        return PROFILES["sglang"]
    if port == 1234:
        return PROFILES["lmstudio"]
    return PROFILES["generic"]


def cached_tokens(chunk: Mapping[str, Any]) -> int | None:
    """Cached prompt tokens a chunk reports, wherever the backend puts them; None if it does not say."""
    usage = chunk.get("usage")
    if isinstance(usage, Mapping):
        details = usage.get("prompt_tokens_details")
        if isinstance(details, Mapping) and isinstance(details.get("cached_tokens"), int):
            return int(details["cached_tokens"])
        if isinstance(usage.get("cached_tokens"), int):  # a few servers flatten it
            return int(usage["cached_tokens"])
    timings = chunk.get("timings")  # llama-server
    if isinstance(timings, Mapping) and isinstance(timings.get("cache_n"), int):
        return int(timings["cache_n"])
    return None
