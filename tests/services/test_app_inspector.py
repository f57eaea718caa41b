"""AppServices feeds the context inspector and tells the connection state truthfully, end to end on the
scripted `slipstream serve`: a Stop keeps the chain, and the next message sends only new input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.adapters.store import HistoryStore
from app.render.transcript import BlockKind
from app.services.api import ConnectionStatus
from app.services.app import AppServices
from app.services.settings import Settings
from tests.conftest import wait_until
from tests.render.stream import drain

pytestmark = pytest.mark.asyncio


async def test_stop_then_next_message_sends_only_new_input(tmp_path: Path) -> None:
    root = tmp_path / "p"
    root.mkdir()
    (root / "main.py").write_text("print('hello, world')\n" * 1000)
    svc = AppServices(root, Settings(), store=HistoryStore(tmp_path / "history.db"), persist_settings=False)
    statuses: list[ConnectionStatus] = []
    svc.connection_changed.connect(statuses.append)
    await svc.start()
    try:
        assert svc.sync is not None and svc.session is not None
        session = svc.session
        await wait_until(lambda: svc.sync is not None and svc.sync.pushes >= 1 and not session.busy, 15)
        snapshot = svc.inspector.records[0]
        assert snapshot.kind == "push" and snapshot.fresh and snapshot.bytes_sent > 20_000
        svc.send_message("/long 50000")
        await wait_until(lambda: svc.stats.chars_total > 50, 15)
        svc.stop()
        await wait_until(lambda: not svc.busy, 15)
        assert await session.settled() is True
        stopped = svc.inspector.last
        assert stopped is not None and stopped.status == "cancelled" and stopped.kept_chain
        assert statuses[-1].state == "warm" and all(s.state != "offline" for s in statuses)
        svc.send_message("and now a short one")
        await wait_until(
            lambda: (
                not svc.busy
                and (rec := svc.inspector.last) is not None
                and rec is not stopped
                and rec.status == "completed"
            ),
            15,
        )
        last = svc.inspector.last
        assert last is not None
        assert last.previous_response_id == stopped.response_id and last.input_items == 1
        assert last.items is not None and last.items[0].kind == "your message"
        assert last.bytes_sent < 6000 < 20_000 < last.full_bytes  # the tools and instructions go every time
        assert last.cached_tokens and last.new_tokens is not None and last.new_tokens < last.cached_tokens
        assert session.connections == 1 and svc.inspector.rebuild_count == 0
        drain(svc.conversation)
        notices = [b for b in svc.conversation.blocks if b.kind is BlockKind.NOTICE and b.item_id]
        assert notices and notices[-1].item_id == last.response_id and "only new input" in notices[-1].text
        status: Any = svc.connection_status()
        assert status.transport == "websocket" and status.rotate_at is not None and status.sent_ratio < 1
    finally:
        await svc.aclose()
