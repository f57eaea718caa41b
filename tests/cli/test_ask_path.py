"""`slipstream ask --path DIR` sends the project snapshot before the question, with the app's rules
(ignores, the secret scanner, the ranking); a local serve's token comes from its token file."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.cli import ask
from app.server.app import run_server
from app.server.auth import remove_token_file, write_token_file
from app.services.endpoints import local_serve_token
from tests.services.test_workspace import Recorder, chain_text


class ServerThread:
    """A Responses server with a recording engine on its own loop and thread (ask runs its own loop)."""

    def __init__(self, token: str) -> None:
        self.engine = Recorder()
        self.token = token
        self.url = ""
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="ask-test-server")

    def _run(self) -> None:
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with run_server(self.engine, token=self.token) as srv:
            self.url, self.port = srv.url, srv.port
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> ServerThread:
        self._thread.start()
        assert self._ready.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "pkg").mkdir(parents=True)
    (root / "README.md").write_text("# Marker project README-7f3a\n")
    (root / "pkg" / "main.py").write_text("def main():\n    return 'MAIN-SOURCE-91b2'\n")
    (root / ".env").write_text("SECRET_TOKEN=never-sent-5c1d\n")
    (root / "build.log").write_text("LOG-LINE-ignored-33e0\n")
    (root / ".gitignore").write_text("*.log\n")
    return root


@pytest.fixture
def no_env_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SLIPSTREAM_TOKEN", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server() -> Iterator[ServerThread]:
    with ServerThread("tok-file-8d2e") as srv:
        yield srv


def test_ask_path_sends_the_snapshot_first_and_finds_the_local_token(
    project: Path, server: ServerThread, no_env_tokens: None, capsys: pytest.CaptureFixture[str]
) -> None:
    token_file = write_token_file(server.token, server.port)  # what `slipstream serve` writes
    try:
        status = ask.main(["what does main return?", "--endpoint", server.url, "--path", str(project)])
    finally:
        remove_token_file(token_file)
    out = capsys.readouterr()
    assert status == 0, out.err
    assert "ok" in out.out and "sent the project" in out.err
    sent = chain_text(server.engine.turns[-1])
    assert "README-7f3a" in sent and "MAIN-SOURCE-91b2" in sent
    assert sent.index("README-7f3a") < sent.index("what does main return?")  # the project, then the question
    assert "never-sent-5c1d" not in sent and "LOG-LINE-ignored-33e0" not in sent


def test_without_path_only_the_question_goes(
    server: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ask.main(["hello", "--endpoint", server.url, "--token", server.token]) == 0
    assert chain_text(server.engine.turns[-1]).strip() == "hello"
    assert "sent the project" not in capsys.readouterr().err


def test_token_file_only_for_loopback_endpoints(server: ServerThread) -> None:
    token_file = write_token_file(server.token, server.port)
    try:
        assert local_serve_token(server.url) == server.token
        assert local_serve_token(f"ws://localhost:{server.port}/v1/responses") == server.token
        assert local_serve_token(f"wss://example.com:{server.port}/v1/responses") is None
        assert local_serve_token("ws://127.0.0.1/v1/responses") is None  # no port, no file to pick
    finally:
        remove_token_file(token_file)
    assert local_serve_token(server.url) is None  # the serve is gone: no stale guess


def test_ask_path_that_is_not_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert ask.main(["hi", "--path", str(tmp_path / "nope")]) == 2
    assert "is not a folder" in capsys.readouterr().err
