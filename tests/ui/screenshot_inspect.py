"""Screenshots of the context inspector and the connection state, from real sessions (for looking).

The records and states are real: `AppServices` runs against its scripted `slipstream serve` (a context
push with a diff, a Stop, the next message), and a `ResponsesSession` against an in-process server goes
through a reconnect (the server's socket killed) and an early rotation (injected clock, 60 s limit).
The window then paints them through FakeServices, so the pictures show exactly what was recorded.

    xvfb-run -a -s "-screen 0 1280x800x24" env QT_QPA_PLATFORM=xcb \\
        .venv/bin/python -m tests.ui.screenshot_inspect build/screenshots --theme light
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from app.adapters.store import HistoryStore
from app.server.app import run_server
from app.server.engines.scripted import ScriptedEngine
from app.services.api import ConnectionStatus, StreamStats
from app.services.app import AppServices
from app.services.inspector import Inspector
from app.services.session import Endpoint, ResponsesSession
from app.services.settings import Settings
from tests.conftest import wait_until
from tests.render import stream as st
from tests.render.stream import drain
from tests.services.test_session_stop import drop_sockets_at_first_token
from tests.ui.fakes import FakeServices
from tests.ui.screenshot_demo import open_window

PARSE = (
    "def parse_header(lines):\n    out = {}\n    for line in lines:\n        if not line.strip():\n"
    "            break\n        key, _, value = line.partition(':')\n        out[key] = value\n    return out\n"
)


async def real_inspector(tmp: Path) -> tuple[Inspector, list[tuple[str, str, str]]]:
    """AppServices end to end: snapshot, a question, an edit on disk (a diff push), a stopped long answer,
    the next question. Returns the inspector and the conversation (role, text, response id)."""
    root = tmp / "parsekit"
    root.mkdir()
    (root / "parse.py").write_text(PARSE)
    (root / "README.md").write_text("# parsekit\n\nHeader parsing.\n")
    for n in range(6):  # a small project: the snapshot is most of what a full resend costs
        (root / f"module_{n}.py").write_text(
            "".join(f"def f{i}(x):\n    return x * {i}\n\n" for i in range(120))
        )
    svc = AppServices(root, Settings(), store=HistoryStore(tmp / "h.db"), persist_settings=False)
    await svc.start()
    talk: list[tuple[str, str, str]] = []
    try:
        assert svc.sync is not None and svc.session is not None
        session = svc.session
        await wait_until(lambda: svc.sync is not None and svc.sync.pushes >= 1 and not session.busy, 20)
        svc.send_message("Why does parse_header stop early?")
        await wait_until(lambda: not svc.busy, 20)
        (root / "parse.py").write_text(
            PARSE.replace("            break", "            continue  # blank lines")
        )
        await wait_until(lambda: svc.sync is not None and svc.sync.pushes >= 2 and not session.busy, 20)
        svc.send_message("/long 50000")
        await wait_until(lambda: svc.stats.chars_total > 400, 20)
        svc.stop()
        await wait_until(lambda: not svc.busy, 20)
        await session.settled()
        svc.send_message("Thanks, that is enough. Does it handle blank lines now?")
        await wait_until(
            lambda: (
                not svc.busy and svc.inspector.last is not None and svc.inspector.last.status == "completed"
            ),
            20,
        )
        drain(svc.conversation)
        return svc.inspector, talk
    finally:
        await svc.aclose()


async def real_states() -> tuple[ConnectionStatus, ConnectionStatus, ConnectionStatus]:
    """The statuses AppServices publishes during a reconnect, during an early rotation, and after it."""
    got: list[ConnectionStatus] = []
    async with run_server(ScriptedEngine(rate_tps=2000)) as srv:
        now = [1000.0]
        session = ResponsesSession(
            Endpoint(srv.url, srv.token, max_age_s=3600), initial_delay=0.2, clock=lambda: now[0]
        )
        shell = AppServices(Path(tempfile.gettempdir()), Settings(), persist_settings=False)
        shell.session, shell.endpoint = session, session.endpoint
        shell._engine_label = "scripted — no model"
        session.state_changed.connect(shell._on_state)
        session.sent.connect(shell._on_sent)
        session.ended.connect(shell._on_ended)
        shell.connection_changed.connect(got.append)
        await session.run_turn([_user("hello")])
        await session.run_turn([_user("/long 3000")], on_event=drop_sockets_at_first_token(srv))
        reconnecting = next(s for s in got if s.state == "reconnecting")
        now[0] = 1000.0 + 3600 - 300  # the early renewal falls due at the next turn boundary
        await session.run_turn([_user("still there?")])
        rotating = next(s for s in got if s.state == "rotating")
        after = got[-1]
        await session.aclose()
        shell.history.close()
    mono = time.monotonic()
    # rotate_at is on the injected clock; the status bar counts down on time.monotonic()
    return (
        dataclasses.replace(reconnecting, rotate_at=None),
        dataclasses.replace(rotating, rotate_at=None),
        dataclasses.replace(after, rotate_at=mono + (after.rotate_at or now[0]) - now[0]),
    )


def _user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def main(argv: list[str]) -> int:
    from PySide6.QtWidgets import QApplication

    from app.ui.main_window import MainWindow
    from app.ui.smoke import save_screenshot

    p = argparse.ArgumentParser()
    p.add_argument("out", type=Path)
    p.add_argument("--theme", default="light")
    a = p.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        insp, _talk = asyncio.run(real_inspector(Path(tmp)))
    reconnecting, rotating, after = asyncio.run(real_states())

    app = QApplication.instance() or QApplication(sys.argv[:1])
    fake = FakeServices(project_root=Path("/home/dev/parsekit"), settings=Settings(theme=a.theme))
    fake.inspector = insp
    win, ctl = open_window(fake)
    t = fake.conversation
    recs = insp.records
    stopped = next(r for r in recs if r.status == "cancelled")
    last = recs[list(recs).index(stopped) + 1]  # the message sent after Stop
    t.add_user_message("Please explain the whole parser in detail.")
    t.apply(st.created(stopped.response_id or "r"))
    t.apply(st.text("m1", "The parser reads the header line by line and keeps a dictionary of "))
    t.end_response("cancelled")
    t.add_user_message("Thanks, that is enough. Does it handle blank lines now?")
    t.apply(st.created(last.response_id or "r2"))
    t.apply(st.text("m2", "Yes: a blank line is skipped now instead of ending the header."))
    t.apply(st.item_done("m2"))
    t.apply(st.completed(last.response_id or "r2"))
    from app.services.inspector import request_summary

    t.add_notice("status", request_summary(last), ref=last.response_id or "")

    def settle() -> None:
        for _ in range(15):
            app.processEvents()
            time.sleep(0.02)

    def shoot(name: str, widget: Any) -> None:
        settle()
        path = a.out / name
        if isinstance(widget, MainWindow):
            save_screenshot(widget, path, screen=False)
        elif not widget.grab().save(str(path)):
            raise OSError(f"could not write {path}")
        print(path)

    # 1. the inspector on the push that carried a diff
    base = ConnectionStatus(
        "warm",
        "connected to ws://127.0.0.1:8765/v1/responses",
        "scripted — no model",
        "ws://127.0.0.1:8765/v1/responses",
        transport="websocket",
        rotate_at=time.monotonic() + 3240,
        ttft_ms=recs[-1].ttft_ms,
        sent_ratio=insp.ratio,
        rebuilds=insp.rebuild_count,
    )
    fake.connection_changed.emit(base)
    fake.stats_changed.emit(
        StreamStats(
            0.0,
            2400.0,
            last.input_tokens or 0,
            last.input_tokens or 0,
            last.cached_tokens or 0,
            insp.input_tokens,
            insp.cached_tokens,
        )
    )
    diff_push = next(r for r in recs if r.items and any(i.kind == "context update" for i in r.items))
    win_i = ctl.show_inspector(diff_push.response_id)
    assert win_i is not None
    win_i.move(90, 60)
    shoot("inspector-diff.png", win_i)
    # 2. the turn after Stop: only new input went out
    ctl.show_inspector(last.response_id)
    shoot("inspector-after-stop.png", win_i)
    win_i.close()
    # 3. the main window: the summary notice with its Inspect link, the status bar after Stop
    shoot("window-after-stop.png", win)
    # 4. the connection state during a reconnect and during a rotation (real statuses)
    for name, status in (("reconnecting", reconnecting), ("rotating", rotating), ("after-rotation", after)):
        fake.connection_changed.emit(status)
        shoot(f"status-{name}.png", win)
        shoot(f"status-{name}-bar.png", win.status)
    ctl.unbind()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
