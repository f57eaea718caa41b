"""Screenshot of the real app while the agent and a side question stream at once (for looking, not asserting).

Real services, window and controller on a scripted `slipstream serve` child (paced), a small project;
the agent answers a long question, and a side question streams in the side pane on the same socket.

    xvfb-run -a -s "-screen 0 1440x900x24" env QT_QPA_PLATFORM=xcb \\
        .venv/bin/python -m tests.ui.screenshot_lanes build/screenshots/lanes.png --screen
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from app.services.settings import ThemeChoice

PROJECT = {
    "parsekit/__init__.py": '"""Parse HTTP-style headers."""\n',
    "parsekit/parse.py": (
        "def parse_header(lines: list[str]) -> dict[str, str]:\n"
        "    out: dict[str, str] = {}\n"
        "    for line in lines:\n"
        "        if not line.strip():\n"
        "            break\n"
        "        key, _, value = line.partition(':')\n"
        "        out[key.strip().lower()] = value.strip()\n"
        "    return out\n"
    ),
    "tests/test_parse.py": "from parsekit.parse import parse_header\n\n\ndef test_blank():\n"
    "    assert parse_header(['a: 1', '', 'b: 2']) == {'a': '1', 'b': '2'}\n",
    "README.md": "# parsekit\n\nA tiny header parser.\n",
}


async def shoot(out: Path, screen: bool, theme: ThemeChoice) -> None:
    from PySide6.QtWidgets import QApplication

    from app.adapters.local_server import start_local_server
    from app.adapters.store import HistoryStore
    from app.services.app import AppServices
    from app.services.session import Endpoint
    from app.services.settings import Settings
    from app.ui.controller import Controller
    from app.ui.main_window import MainWindow

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "parsekit"
        for rel, text in PROJECT.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
        server = await start_local_server(extra_args=["--rate", "250"])
        svc = AppServices(
            root,
            Settings(theme=theme),
            endpoint=Endpoint(server.url, server.token, label="scripted"),
            store=HistoryStore(Path(tmp) / "h.db"),
            persist_settings=False,
            watch=False,
        )
        win = MainWindow()
        ctl = Controller(win)
        ctl.bind(svc)
        win.resize(1440, 900)
        win.move(0, 0)
        win.show()
        try:
            await svc.start()
            while svc.session is None or svc.session.client.head() is None:
                await asyncio.sleep(0.05)
            svc.send_message("/long 4000")
            await asyncio.sleep(0.4)
            svc.ask_side("/long 3000")
            await asyncio.sleep(3.0)  # both mid-stream
            win.frames.run_frame()
            await asyncio.sleep(0.1)  # let Qt paint (no nested processEvents inside a task)
            qscreen = win.screen() or QApplication.primaryScreen()
            pixmap = qscreen.grabWindow(0) if screen else win.grab()
            out.parent.mkdir(parents=True, exist_ok=True)
            if not pixmap.save(str(out)):
                raise OSError(f"could not write {out}")
            print(f"wrote {out}")
        finally:
            ctl.unbind()
            await svc.aclose()
            await server.aclose()
            win.close()


def main(argv: list[str]) -> int:
    import qasync
    from PySide6.QtWidgets import QApplication

    p = argparse.ArgumentParser()
    p.add_argument("out", type=Path)
    p.add_argument("--theme", default="dark", choices=["system", "light", "dark"])
    p.add_argument("--screen", action="store_true")
    a = p.parse_args(argv)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    asyncio.run(shoot(a.out, a.screen, a.theme), loop_factory=lambda: qasync.QEventLoop(app))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
