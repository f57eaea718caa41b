"""Settings apply live (issue 15): a change of where turns go reconnects at once; a failure is a
banner with the reason (never a line above an old conversation), and fixing it clears the banner."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from app.adapters.local_server import start_local_server
from app.adapters.secrets import SecretStore
from app.adapters.store import HistoryStore
from app.render.transcript import BlockKind
from app.services.api import ConnectionStatus
from app.services.app import AppServices
from app.services.endpoints import BANNER
from app.services.settings import Settings
from tests.adapters.test_secrets import MemoryKeyring
from tests.conftest import wait_until
from tests.render.stream import drain

pytestmark = pytest.mark.asyncio


async def test_failing_settings_show_a_banner_and_fixing_them_clears_it(tmp_path: Path) -> None:
    root = tmp_path / "project"
    root.mkdir()
    (root / "main.py").write_text("print('hi')\n")
    keyring = MemoryKeyring()
    svc = AppServices(
        root,
        Settings(),
        store=HistoryStore(tmp_path / "h.db"),
        secrets=SecretStore(keyring),
        persist_settings=False,
        watch=False,
    )
    banners: list[str] = []
    states: list[ConnectionStatus] = []
    svc.banner_changed.connect(banners.append)
    svc.connection_changed.connect(states.append)
    server = None
    try:
        await svc.start()
        assert banners[-1] == BANNER  # no model yet
        # 1. OpenAI without a key: refused, said in the banner, the scripted engine keeps the app usable.
        svc.save_settings(replace(svc.settings, provider="openai", model="gpt-5.3-codex"))
        assert svc._restart is not None
        await svc._restart
        assert banners[-1].startswith("**Settings not applied: OpenAI cannot be used.**")
        assert "No API key for OpenAI" in banners[-1]
        assert any(b.startswith("Applying the new settings") for b in banners)  # progress was shown
        drain(svc.conversation)
        notices = [b.text for b in svc.conversation.blocks if b.kind is BlockKind.NOTICE]
        assert not any("API key" in n for n in notices)  # not a line in the conversation
        # 2. Fixed: a key and an endpoint that answers (a scripted server of ours, standing in for OpenAI).
        server = await start_local_server()
        svc.set_api_key("openai", server.token)
        svc.save_settings(replace(svc.settings, endpoint=server.url))
        await svc._restart
        try:
            await wait_until(lambda: bool(states) and states[-1].state == "warm", 20)
        except TimeoutError:
            raise AssertionError((states[-5:], banners[-3:])) from None
        assert banners[-1] == ""
        assert states[-1].engine == "gpt-5.3-codex via openai"
        assert svc.endpoint is not None and svc.endpoint.url == server.url
        # 3. Nothing that decides where turns go changed: no reconnect.
        before = svc._restart
        svc.save_settings(replace(svc.settings, theme="dark"))
        assert svc._restart is before
    finally:
        await svc.aclose()
        if server is not None:
            await server.aclose()


async def test_an_unreachable_endpoint_is_a_banner_with_the_reason(tmp_path: Path) -> None:
    root = tmp_path / "project"
    root.mkdir()
    keyring = MemoryKeyring()
    svc = AppServices(
        root,
        Settings(),
        store=HistoryStore(tmp_path / "h.db"),
        secrets=SecretStore(keyring),
        persist_settings=False,
        watch=False,
    )
    banners: list[str] = []
    svc.banner_changed.connect(banners.append)
    server = await start_local_server()
    url = server.url
    await server.aclose()  # its port is closed now: nothing answers there
    try:
        await svc.start()
        svc.set_api_key("openai_compatible", "not-a-real-key")
        svc.save_settings(replace(svc.settings, provider="openai_compatible", endpoint=url, model="m"))
        assert svc._restart is not None
        await svc._restart
        await wait_until(lambda: banners[-1].startswith("**Cannot reach**"), 20)
        assert "m via openai_compatible" in banners[-1] and "Settings" in banners[-1]
    finally:
        await svc.aclose()
