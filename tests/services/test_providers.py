"""Provider presets, endpoint_for, and detection of local servers on loopback ports."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from app.services.providers import PROVIDERS, detect_local_servers, endpoint_for
from app.services.session import Endpoint


def test_presets_carry_urls_and_limits() -> None:
    """OpenAI 60 min, xAI 25 min; a provider with its own URL has both a ws and an HTTP one."""
    assert PROVIDERS["openai"].ws_url == "wss://api.openai.com/v1/responses"
    assert PROVIDERS["xai"].max_age_s == 25 * 60
    assert PROVIDERS["openai"].max_age_s == 60 * 60
    for p in PROVIDERS.values():
        if p.ws_url:
            assert p.ws_url.startswith(("ws://", "wss://")) and p.http_url.startswith(("http://", "https://"))


def test_one_table_for_settings_dialog_and_resolver() -> None:
    """The settings file accepts exactly the table's ids, and the dialog lists exactly those (no Azure
    entry that could never be selected); the dialog's hints and key rule come from the same table."""
    from typing import get_args

    from app.services import settings
    from app.ui import settings_dialog

    assert set(get_args(settings.Provider)) == set(PROVIDERS)
    assert {p.id: p.label for p in PROVIDERS.values()} == settings.PROVIDERS
    assert {"openai", "xai", "openai_compatible"} == settings_dialog.NEEDS_KEY
    assert set(settings_dialog.ENDPOINT_HINTS) == set(PROVIDERS)
    assert "azure" not in PROVIDERS


def test_endpoint_for_builds_a_session_endpoint() -> None:
    """The helper's dict is accepted by the session's Endpoint as is; the first model is the default."""
    ep = Endpoint(**endpoint_for("xai", "grok-4.6", "xai-key"))
    assert ep.url == "wss://api.x.ai/v1/responses" and ep.max_age_s == 1500 and ep.token == "xai-key"
    assert ep.model == "grok-4.6" and ep.label == "grok-4.6 via xai"
    assert endpoint_for("openai", None, "k")["model"] == PROVIDERS["openai"].models[0] == "gpt-5.3-codex"
    local = endpoint_for("local", None, None, url="http://127.0.0.1:8765/v1")
    assert local["url"] == "ws://127.0.0.1:8765/v1/responses" and local["token"] is None


def test_endpoint_for_rejects_missing_key_and_missing_endpoint() -> None:
    """A keyed provider without a key, and a provider without a URL of its own and none given, are errors."""
    with pytest.raises(ValueError, match="API key"):
        endpoint_for("openai", "gpt-5.5", None)
    with pytest.raises(ValueError, match="No endpoint"):
        endpoint_for("openai_compatible", "m", "k")
    with pytest.raises(ValueError, match="No endpoint"):
        endpoint_for("local", None, None)


@contextlib.asynccontextmanager
async def models_server(payload: Any, status: int = 200) -> AsyncIterator[int]:
    async def models(request: web.Request) -> web.Response:
        return web.json_response(payload, status=status)

    app = web.Application()
    app.router.add_get("/v1/models", models)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.asyncio
async def test_detect_local_servers_probes_ports_and_names_the_backend() -> None:
    """Answering servers are found and classified; closed ports and non-OpenAI answers are skipped."""
    ollama = {"object": "list", "data": [{"id": "qwen3:8b", "owned_by": "library"}]}
    vllm = {"object": "list", "data": [{"id": "Qwen/Qwen3-8B", "owned_by": "vllm"}]}
    async with (
        models_server(ollama) as p1,
        models_server(vllm) as p2,
        models_server({"error": "nope"}, 404) as p3,
        models_server({"hello": 1}) as p4,
    ):
        found = await detect_local_servers([p1, p2, p3, p4, _closed_port()], timeout_s=1)
    assert [(s.kind, s.models) for s in found] == [("ollama", ("qwen3:8b",)), ("vllm", ("Qwen/Qwen3-8B",))]
    assert found[0].url == f"http://127.0.0.1:{p1}/v1"
