"""Zero-dependency pytest plugin: one JSON line per test phase, streamed to Slipstream as it happens.

Loaded into the *project's* interpreter with `-p slipstream_pytest_plugin`: the app copies this file
into a folder of its own and puts that folder on PYTHONPATH (app.adapters.proc.plugin_dir), so no
other module of ours can shadow the project's imports. Standard library only, and
it must keep working on the Python versions the user's project runs (3.8+): no newer syntax.

The channel never mixes with the tests' own output:
  SLIPSTREAM_EVENTS_FD=<n>        an inherited pipe (POSIX; the app passes it with pass_fds)
  SLIPSTREAM_EVENTS_FILE=<path>   a file (or FIFO) to append to (any platform)
Without either, the plugin does nothing. Each line: {"kind", "nodeid", "t" (wall clock), ...}.
"""

from __future__ import annotations  # annotations stay strings: the syntax below runs on 3.8

import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for mypy only: at run time this file needs nothing but the standard library
    from collections.abc import Sequence

    import pytest

_ENV_FD = "SLIPSTREAM_EVENTS_FD"
_ENV_FILE = "SLIPSTREAM_EVENTS_FILE"
_MAX_TEXT = 64 * 1024


class _Channel:
    def __init__(self, fd: int, close: bool) -> None:
        self.fd = fd
        self._close = close
        self.broken = False

    def send(self, event: dict[str, Any]) -> None:
        if self.broken:
            return
        event["t"] = time.time()
        data = (json.dumps(event, default=str, ensure_ascii=False) + "\n").encode("utf-8", "replace")
        try:
            while data:
                n = os.write(self.fd, data)
                data = data[n:]
        except OSError:
            self.broken = True  # the app went away: keep the test run itself alive

    def close(self) -> None:
        if self._close:
            try:
                os.close(self.fd)
            except OSError:
                pass


def _open_channel() -> _Channel | None:
    fd = os.environ.get(_ENV_FD)
    if fd:
        try:
            return _Channel(int(fd), close=False)
        except ValueError:
            return None
    path = os.environ.get(_ENV_FILE)
    if path:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0)
        return _Channel(os.open(path, flags, 0o600), close=True)
    return None


def _text(report: pytest.CollectReport | pytest.TestReport) -> str:
    try:
        text = report.longreprtext
    except Exception:
        text = str(getattr(report, "longrepr", "") or "")
    if len(text) > _MAX_TEXT:
        text = text[:2048] + "\n...\n" + text[-(_MAX_TEXT - 2048) :]
    return text


class SlipstreamReporter:
    def __init__(self, config: pytest.Config, channel: _Channel) -> None:
        self.config = config
        self.channel = channel
        self.t0 = time.time()
        self.deselected = 0

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.channel.send(
            {
                "kind": "run_started",
                "pid": os.getpid(),
                "python": sys.version.split()[0],
                "rootdir": str(self.config.rootpath) if hasattr(self.config, "rootpath") else "",
            }
        )

    def pytest_deselected(self, items: Sequence[pytest.Item]) -> None:
        self.deselected += len(items)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.channel.send({"kind": "collect_error", "nodeid": report.nodeid, "text": _text(report)})

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        ids = [item.nodeid for item in session.items]
        self.channel.send(
            {"kind": "collected", "count": len(ids), "nodeids": ids, "deselected": self.deselected}
        )

    def pytest_runtest_logstart(self, nodeid: str, location: tuple[str, int | None, str]) -> None:
        self.channel.send({"kind": "started", "nodeid": nodeid})

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        try:
            res = self.config.hook.pytest_report_teststatus(report=report, config=self.config)
            category = res[0] if isinstance(res, tuple) else ""
        except Exception:
            category = report.outcome
        if category == "error" or (report.failed and report.when != "call"):
            category = "error"
        ev: dict[str, Any] = {
            "kind": "phase",
            "nodeid": report.nodeid,
            "when": report.when,
            "category": category,
            "outcome": report.outcome,
            "duration": round(report.duration, 6),
        }
        if report.failed:
            ev["text"] = _text(report)
        elif report.skipped:
            longrepr = getattr(report, "longrepr", None)
            if isinstance(longrepr, tuple) and len(longrepr) == 3:
                ev["text"] = str(longrepr[2])
            wasxfail = getattr(report, "wasxfail", None)
            if wasxfail:
                ev["text"] = "xfail: " + str(wasxfail)
        self.channel.send(ev)

    def pytest_runtest_logfinish(self, nodeid: str, location: tuple[str, int | None, str]) -> None:
        self.channel.send({"kind": "finished", "nodeid": nodeid})

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int | pytest.ExitCode) -> None:
        self.channel.send(
            {
                "kind": "run_finished",
                "exitstatus": int(exitstatus),
                "duration": round(time.time() - self.t0, 6),
            }
        )
        self.channel.close()


def pytest_configure(config: pytest.Config) -> None:
    # xdist workers report through the controller; only the controller streams.
    if hasattr(config, "workerinput"):
        return
    channel = _open_channel()
    if channel is not None:
        config.pluginmanager.register(SlipstreamReporter(config, channel), "slipstream-reporter")
