"""Screenshot of the main window on FakeServices with realistic content (for looking, not asserting).

    xvfb-run -a -s "-screen 0 1280x800x24" env QT_QPA_PLATFORM=xcb \
        .venv/bin/python -m tests.ui.screenshot_demo shot.png --theme dark --screen

`--scene cards`: a turn with a GFM table, an apply_patch card, a run_command card and a long folded
output; `--scene empty`: a new session (the empty-session view); `--scene help`: the help window.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from app.protocol import events as ev
from app.services.api import (
    ApprovalRequest,
    ConnectionStatus,
    FileBadge,
    FileChanges,
    SessionInfo,
    SnapshotSummary,
    StreamStats,
)
from app.services.settings import KeychainInfo, Settings
from tests.render import stream as st
from tests.ui.fakes import FakeServices

ANSWER = """The failing test comes from `parse_header` treating an empty line as the end of input.

```python
def parse_header(lines: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in lines:
        if not line.strip():
            continue  # was: break
        key, _, value = line.partition(":")
        out[key.strip().lower()] = value.strip()
    return out
```

I changed `break` to `continue` and re-ran the tests: **11 passed, 1 failed** (an unrelated timeout).
"""

TRACE = """    def test_timeout():
        client = Client(timeout=0.01)
>       assert client.fetch("/slow") == b"ok"
E       TimeoutError: read timed out after 0.01 s

tests/test_client.py:42: TimeoutError"""


TESTS = [
    ("tests/test_parse.py::test_parse_header", "passed", 0.004, ""),
    ("tests/test_parse.py::test_parse_empty", "passed", 0.002, ""),
    ("tests/test_parse.py::test_parse_unicode", "passed", 0.003, ""),
    ("tests/test_client.py::test_fetch", "passed", 0.051, ""),
    ("tests/test_client.py::test_timeout", "failed", 0.013, TRACE),
    ("tests/test_client.py::test_retry", "passed", 0.120, ""),
    ("tests/test_client.py::test_proxy", "skipped", 0.0, "needs a proxy"),
]


def populate(fake: FakeServices, now: float) -> None:
    t = fake.conversation
    fake.connection_changed.emit(
        ConnectionStatus(
            "warm",
            "connected to ws://127.0.0.1:8765",
            "scripted — no model",
            "ws://127.0.0.1:8765/v1/responses",
        )
    )
    fake.banner_changed.emit(
        "**No model configured — running the scripted demo engine.** Connect a model in *Settings*: "
        "OpenAI or xAI (API key in your keychain), a local server (`slipstream serve` with llama.cpp, "
        "Ollama, vLLM, SGLang, LM Studio), or any Responses-compatible endpoint."
    )
    t.add_user_message("Why does test_parse_header fail? Fix it and run the tests.")
    t.apply(st.created("resp_1"))
    t.apply(st.reasoning("rs_1", "The header parser stops at the first blank line; the test feeds one."))
    t.apply(st.item_done("rs_1"))
    t.apply(st.tool_call("fc_1", "run_tests", "call_1"))
    t.apply(st.args("fc_1", '{"select": "tests/test_parse.py"}'))
    t.apply(st.item_done("fc_1"))
    t.add_tool_output("call_1", "1 failed, 5 passed in 0.21s", False)
    for chunk in ANSWER.split(" "):
        t.apply(st.text("msg_1", chunk + " "))
    t.apply(st.item_done("msg_1"))
    t.apply(st.completed("resp_1"))
    t.add_notice("info", "Undid the last patch: src/parse.py")
    fake.stats_changed.emit(StreamStats(412.0, 2380.0, 18_420, 19_100, 17_900, 146_000, 128_500))
    fake.files_changed.emit(
        FileChanges.listing(
            [
                FileBadge("src/parse.py", "pending"),
                FileBadge("src/client.py", "in_view"),
                FileBadge("src/__init__.py", "in_view"),
                FileBadge("tests/test_parse.py", "in_view"),
                FileBadge("tests/test_client.py", "in_view"),
                FileBadge("README.md", "in_view"),
                FileBadge("pyproject.toml", "in_view"),
                FileBadge("docs/logo.png", "summarised", "binary"),
                FileBadge("data/fixtures.json", "summarised", "too large"),
                FileBadge(".env", "excluded", "secret"),
                FileBadge("build/out.o", "excluded", "gitignored"),
            ]
        )
    )
    run = fake.test_run
    names = [name for name, *_ in TESTS]
    run.apply({"kind": "run_started"})
    run.apply({"kind": "collected", "count": len(names), "nodeids": names})
    for name, outcome, dur, text in TESTS:
        run.apply({"kind": "started", "nodeid": name})
        run.apply(
            {
                "kind": "phase",
                "nodeid": name,
                "when": "call",
                "category": outcome,
                "duration": dur,
                "text": text,
            }
        )
    run.apply({"kind": "run_finished", "exitstatus": 1, "duration": 0.19})
    fake.sessions[:] = [
        SessionInfo("s3", "Why does test_parse_header fail?", str(fake.project_root), now - 20, 1),
        SessionInfo("s2", "Add retries to the client", str(fake.project_root), now - 7200, 6),
        SessionInfo("s1", "Explain the project layout", str(fake.project_root), now - 3 * 86400, 2),
    ]


def open_window(fake: FakeServices) -> tuple[Any, Any]:
    """A 1280x800 main window at the screen's corner, bound to `fake` through the real Controller."""
    from app.ui.controller import Controller
    from app.ui.main_window import MainWindow

    win = MainWindow()
    ctl = Controller(win)
    ctl.bind(fake)
    win.resize(1280, 800)
    win.move(0, 0)
    win.show()
    return win, ctl


TABLE_ANSWER = """Here is where the time goes, slowest first:

| test | time | result |
|:-----|-----:|:------:|
| `test_retry` | 0.120 s | passed |
| `test_fetch` | 0.051 s | passed |
| `test_timeout` | 0.013 s | **failed** |
| `test_parse_header` | 0.004 s | passed |

The timeout test fails because `Client` reads with a 10 ms deadline. I propose a patch:
"""

PATCH = """*** Begin Patch
*** Update File: src/client.py
@@ class Client:
-    def __init__(self, timeout: float = 0.01) -> None:
+    def __init__(self, timeout: float = 5.0) -> None:
         self.timeout = timeout
*** End Patch
"""


def populate_cards(fake: FakeServices) -> None:
    """A turn with a table, a patch card, a command card and a long (folded) output."""
    import json

    t = fake.conversation
    fake.connection_changed.emit(ConnectionStatus("warm", "connected", "gpt-5.3-codex via OpenAI"))
    t.add_user_message("Which tests are slow, and why does test_timeout fail? Fix it.")
    t.apply(ev.ResponseCreated(response={"id": "resp_1", "model": "gpt-5.3-codex"}))
    for chunk in TABLE_ANSWER.split(" "):
        t.apply(st.text("msg_1", chunk + " "))
    t.apply(st.item_done("msg_1"))
    t.apply(st.tool_call("fc_1", "apply_patch", "call_1"))
    t.apply(st.args("fc_1", json.dumps({"patch": PATCH})))
    t.apply(st.item_done("fc_1"))
    t.apply(st.tool_call("fc_2", "run_command", "call_2"))
    t.apply(st.args("fc_2", json.dumps({"command": "pytest -q tests/test_client.py", "timeout_s": 60})))
    t.apply(st.item_done("fc_2"))
    t.apply(st.completed("resp_1"))
    t.add_tool_output("call_1", "patch applied: src/client.py (+1 -1)", True)
    t.add_tool_output(
        "call_2",
        "\n".join(
            f"tests/test_client.py::test_{n} PASSED"
            for n in (
                "fetch",
                "retry",
                "timeout",
                "proxy",
                "headers",
                "redirect",
                "cookies",
                "gzip",
                "chunked",
                "auth",
                "keepalive",
                "close",
                "unicode",
                "large",
                "empty",
                "stream",
                "cancel",
                "pool",
            )
        )
        + "\n18 passed in 0.41s\n",
        True,
    )
    t.apply(ev.ResponseCreated(response={"id": "resp_2", "model": "gpt-5.3-codex"}))
    t.apply(st.text("msg_2", "All 18 client tests pass now.\n"))
    t.apply(st.item_done("msg_2"))
    t.apply(st.completed("resp_2"))


def main(argv: list[str]) -> int:
    import time

    from PySide6.QtWidgets import QApplication

    from app.ui.smoke import save_screenshot

    p = argparse.ArgumentParser()
    p.add_argument("out", type=Path)
    p.add_argument("--theme", default="dark")
    p.add_argument("--screen", action="store_true")
    p.add_argument("--dialog", choices=["none", "patch", "command", "settings"], default="none")
    p.add_argument("--tab", type=int, default=0)
    p.add_argument(
        "--banner",
        choices=["demo", "settings-failure"],
        default="demo",
        help="settings-failure: the banner after Settings named OpenAI without a key",
    )
    p.add_argument("--no-keychain", action="store_true", help="the settings dialog without an OS keychain")
    p.add_argument("--scene", choices=["demo", "cards", "empty", "help"], default="demo")
    p.add_argument("--top", action="store_true", help="show the start of the conversation")
    a = p.parse_args(argv)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    fake = FakeServices(
        project_root=Path("/home/dev/parsekit"), settings=Settings(theme=a.theme, pins=["src/client.py"])
    )
    fake.settings.recent_projects = ["/home/dev/parsekit", "/home/dev/webapp"]
    win, ctl = open_window(fake)
    if a.no_keychain:
        fake.keychain = KeychainInfo(False, "fail Keyring", "")
        fake.settings.provider = "openai"
    if a.scene == "demo":
        populate(fake, time.time())
    elif a.scene == "cards":
        populate_cards(fake)
    else:
        fake.connection_changed.emit(
            ConnectionStatus(
                "warm",
                "connected to ws://127.0.0.1:8765",
                "scripted — no model",
                "ws://127.0.0.1:8765/v1/responses",
            )
        )
    if a.banner == "settings-failure":
        from app.services.app import failure_banner

        s = Settings(provider="openai", model="gpt-5.3-codex")
        fake.banner_changed.emit(
            failure_banner(s, ["No API key for OpenAI in the keychain (Settings → API key)."])
        )
    fake.files_changed.emit(
        FileChanges(
            {},
            counts={"in_view": 6, "pending": 1, "summarised": 2, "excluded": 2},
            snapshot=SnapshotSummary(
                32_000,
                21_400,
                ("README.md", "pyproject.toml", "src/__init__.py", "src/client.py", "src/parse.py"),
                6,
            ),
        )
    )
    if a.scene == "help":
        win.show_help().move(320, 90)
    ctl.refresh_sessions()
    win.side.setCurrentIndex(a.tab)
    if a.dialog == "patch":
        ctl.show_approval(
            ApprovalRequest(
                "patch",
                "Apply patch to 1 file?",
                {
                    "files": [
                        {
                            "path": "src/parse.py",
                            "op": "update",
                            "hunks": [
                                {
                                    "header": "@@ -12,7 +12,7 @@ def parse_header",
                                    "lines": [
                                        "     for line in lines:",
                                        "         if not line.strip():",
                                        "-            break",
                                        "+            continue",
                                        '         key, _, value = line.partition(":")',
                                    ],
                                },
                                {
                                    "header": "@@ -30,3 +30,4 @@",
                                    "lines": [" def helper():", "+    # keep order", "     pass"],
                                },
                            ],
                        }
                    ]
                },
                lambda d: None,
            )
        ).move(190, 80)
    elif a.dialog == "command":
        ctl.show_approval(
            ApprovalRequest(
                "command",
                "Run a command?",
                {"command": "pytest -q tests/test_client.py", "cwd": "/home/dev/parsekit"},
                lambda d: None,
            )
        ).move(360, 260)
    elif a.dialog == "settings":
        dlg = ctl.show_settings()
        if dlg is not None:
            dlg.move(360, 60)
    for _ in range(20):
        app.processEvents()
        time.sleep(0.02)
    win.tests_panel.refresh()
    if a.top:
        while win.transcript.pending:
            win.transcript.flush()
        win.transcript.stop_following()
        win.transcript.verticalScrollBar().setValue(0)
    save_screenshot(win, a.out, screen=a.screen)
    print(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
