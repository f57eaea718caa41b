"""The app's own client path through the bridge to a real (tiny) model: ResponsesSession and `slipstream ask`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import pytest

pytest.importorskip(
    "llama_cpp", reason="llama-cpp-python is not installed (optional extra slipstream[local])"
)
pytest.importorskip("gguf", reason="the gguf package is not installed (optional extra slipstream[local])")

from app.server.app import run_server
from app.server.engines.chat_completions import ChatCompletionsEngine
from app.services.session import Endpoint, ResponsesSession
from tests.server.fixtures.make_tiny_gguf import token_id
from tests.server.test_gguf_bridge import READ_FILE, llama_server, user

__all__ = ["llama_server"]  # the module-scoped fixture, shared with the server's bridge tests


@pytest.mark.asyncio
async def test_session_holds_a_tool_call_conversation_through_the_bridge(
    llama_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forced tool call, its output chained back, then text: three turns on one socket, incremental."""
    from app.adapters.ws_client import WsTransport

    frames: list[dict[str, Any]] = []
    real_send = WsTransport.send

    async def recording_send(self: WsTransport, frame: bytes | str) -> bool:
        frames.append(json.loads(frame))
        return await real_send(self, frame)

    monkeypatch.setattr(WsTransport, "send", recording_send)
    engine = ChatCompletionsEngine(llama_server, extra_body={"logit_bias": {str(token_id("o")): 100.0}})
    async with run_server(engine, token="t") as srv:
        s = ResponsesSession(Endpoint(srv.url, "t", model="tiny"))
        forced = {
            "tools": [READ_FILE],
            "tool_choice": {"type": "function", "name": "read_file"},
            "temperature": 0,
            "max_output_tokens": 40,
        }
        r1 = await s.run_turn([user("read a.py")], settings=forced)
        assert r1.ok, r1.error
        call = next(i for i in r1.output if i.get("type") == "function_call")
        assert json.loads(call["arguments"]) == {"path": "a.py"}
        after = {"tools": [READ_FILE], "tool_choice": "auto", "temperature": 0, "max_output_tokens": 5}
        out = {"type": "function_call_output", "call_id": call["call_id"], "output": "print('hi')"}
        r2 = await s.run_turn([out], settings=after)
        assert r2.status == "incomplete" and r2.output  # capped at 5 tokens: "ooooo"
        r3 = await s.run_turn([user("again")], settings=after)
        assert r3.status == "incomplete" and s.connections == 1
        assert frames[2]["previous_response_id"] == r2.response_id
        assert frames[2]["input"] == [user("again")]  # only the new item crossed the wire
        await s.aclose()


def test_ask_through_a_bridge_server(llama_server: str) -> None:
    """`slipstream serve --engine chat` + `slipstream ask` stream an answer from the real model."""
    serve = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "app",
            "serve",
            "--port",
            "0",
            "--token",
            "t",
            "--engine",
            "chat",
            "--upstream",
            llama_server,
            "--upstream-model",
            "tiny",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert serve.stdout is not None
        line = serve.stdout.readline()
        m = re.search(r"listening on (ws://\S+)", line)
        assert m, line
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "app",
                "ask",
                "hello",
                "--endpoint",
                m.group(1),
                "--token",
                "t",
                "--model",
                "tiny",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip()  # some text came back from the model
    finally:
        serve.terminate()
        serve.wait(10)
