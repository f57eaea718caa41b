"""Frame fuzzing: hypothesis strategies for client and server frames, and the checks run on each.

A case is one frame: valid (a real frame), mutated (a field dropped or given a wrong type, the
`type` changed), truncated, byte-flipped, not an object, nested very deeply, or huge. The checks:

- codec: `decode_client` / `decode_server` return an event or raise `RemoteProtocolError`, nothing else;
- `ServerSession`: never raises; a frame the codec refuses is answered with exactly one `error`
  event, and the session then still completes a warm-up;
- `ClientSession` (a turn in flight): only `RemoteProtocolError` for junk, never another exception;
- a live `slipstream serve`: every frame gets an answer (an `error` or the request's terminal
  event) or a clean close (a close frame, never a dropped socket), within a timeout (no hang);
  the connection is then used for the next case (or reopened after a clean close).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from app.protocol.client import ClientSession
from app.protocol.codec import decode_client, decode_server
from app.protocol.errors import RemoteProtocolError
from app.protocol.server import ServerSession
from app.protocol.turns import ItemDone, ReasoningDelta, TextDelta, ToolCallArgsDelta, ToolCallStart, Usage
from app.server.app import run_server
from app.server.engines.scripted import ScriptedEngine

LIVE_MAX_FRAME = 64 * 1024  # the live server's frame limit: "huge" frames go past it cheaply
TERMINAL = {"response.completed", "response.failed", "response.incomplete", "response.steer.failed", "error"}
WARM_UP = json.dumps({"type": "response.create", "model": "m", "generate": False, "input": "ping"})


def _user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def _server_corpus() -> list[bytes]:
    """Real server frames: one response with text, reasoning and a tool call, plus error frames."""
    s = ServerSession(now=0.0)
    s.receive_frame(json.dumps({"type": "response.create", "model": "m", "input": [_user("hi")]}), 0.0)
    (turn,) = s.ready_turns(0.0)
    for out in (
        ReasoningDelta("think"),
        ItemDone(),
        TextDelta("Hello "),
        TextDelta("world"),
        ItemDone(),
        ToolCallStart("call_1", "read_file"),
        ToolCallArgsDelta('{"path":'),
        ToolCallArgsDelta('"a.py"}'),
        Usage(input_tokens=5, output_tokens=7, cached_tokens=0),
    ):
        s.feed(turn.response_id, out, 0.0)
    s.finish(turn.response_id, 0.0)
    s.receive_frame(b"{not json", 0.0)
    s.receive_frame(json.dumps({"type": "response.create", "previous_response_id": "resp_x"}), 0.0)
    s.ready_turns(0.0)
    return s.frames_to_send()


SERVER_CORPUS = _server_corpus()

_json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)
)
json_values = st.recursive(
    _json_leaf,
    lambda kids: st.one_of(
        st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=12,
)
wrong_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=30),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)
stream_ids = st.from_regex(r"[A-Za-z0-9_.\-]{1,12}", fullmatch=True)


@st.composite
def valid_creates(draw: st.DrawFn) -> dict[str, Any]:
    """A valid `response.create` (semantically it may still be refused: unknown parent, background)."""
    frame: dict[str, Any] = {"type": "response.create", "model": draw(st.sampled_from(["m", "scripted"]))}
    frame["input"] = draw(
        st.one_of(
            st.text(max_size=40), st.lists(st.builds(_user, st.text(max_size=40)), min_size=1, max_size=3)
        )
    )
    optional: dict[str, st.SearchStrategy[Any]] = {
        "generate": st.booleans(),
        "instructions": st.text(max_size=40),
        "previous_response_id": st.text(min_size=1, max_size=12),
        "stream_id": stream_ids,
        "store": st.booleans(),
        "stream": st.booleans(),
        "tool_choice": st.sampled_from(["auto", "none", "required"]),
        "tools": st.just([{"type": "function", "name": "read_file", "parameters": {"type": "object"}}]),
        "temperature": st.floats(0, 2),
        "max_output_tokens": st.integers(1, 64),
        "metadata": st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3),
        "background": st.booleans(),
    }
    for key in draw(st.lists(st.sampled_from(sorted(optional)), unique=True, max_size=5)):
        frame[key] = draw(optional[key])
    return frame


valid_steers = st.builds(
    lambda pid, text: {"type": "response.steer", "previous_response_id": pid, "input": text},
    st.text(min_size=1, max_size=12),
    st.text(max_size=30),
)


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[dict[str, Any]]) -> tuple[str, bytes]:
    """(kind, frame) from a valid frame, mutated or not."""
    frame = draw(base)
    kind = draw(
        st.sampled_from(
            [
                "valid",
                "drop",
                "wrong_type",
                "nested_wrong",
                "retype",
                "truncate",
                "flip",
                "not_object",
                "deep",
                "huge",
                "junk",
            ]
        )
    )
    if kind == "drop" and len(frame) > 1:
        frame.pop(draw(st.sampled_from(sorted(frame))))
    elif kind == "wrong_type":
        frame[draw(st.sampled_from(sorted(frame)))] = draw(wrong_values)
    elif kind == "nested_wrong":
        for value in frame.values():
            if isinstance(value, dict) and value:
                value[draw(st.sampled_from(sorted(value)))] = draw(wrong_values)
                break
        else:
            frame[draw(st.text(max_size=10))] = draw(json_values)
    elif kind == "retype":
        frame["type"] = draw(st.one_of(st.text(max_size=30), wrong_values))
    raw = json.dumps(frame).encode()
    if kind == "truncate":
        raw = raw[: draw(st.integers(0, max(0, len(raw) - 1)))]
    elif kind == "flip":
        at = draw(st.integers(0, len(raw) - 1))
        raw = raw[:at] + bytes([draw(st.integers(0, 255))]) + raw[at + 1 :]
    elif kind == "not_object":
        raw = json.dumps(draw(st.one_of(_json_leaf, st.lists(json_values, max_size=3)))).encode()
    elif kind == "deep":
        depth = draw(st.sampled_from([100, 5_000, 30_000]))
        raw = b'{"type":"response.create","input":' + b"[" * depth + b"]" * depth + b"}"
    elif kind == "huge":
        raw = json.dumps(
            {**frame, "instructions": "x" * draw(st.sampled_from([LIVE_MAX_FRAME + 1, 300_000]))}
        ).encode()
    elif kind == "junk":
        raw = draw(st.binary(max_size=64))
    return kind, raw


def client_frames() -> st.SearchStrategy[tuple[str, bytes]]:
    return mutated(st.one_of(valid_creates(), valid_creates(), valid_steers))


def server_frames() -> st.SearchStrategy[tuple[str, bytes]]:
    return mutated(st.sampled_from(SERVER_CORPUS).map(json.loads))


# ---- the checks ------------------------------------------------------------------------------


def _refused_by_codec(decode: Callable[[bytes], Any], raw: bytes) -> bool:
    try:
        decode(raw)
    except RemoteProtocolError:
        return True
    return False


def check_client_frame(raw: bytes) -> None:
    """Codec + ServerSession on one client frame (see the module docstring)."""
    refused = _refused_by_codec(decode_client, raw)
    s = ServerSession(now=0.0, max_frame_bytes=LIVE_MAX_FRAME)
    s.receive_frame(raw, 0.0)
    for turn in s.ready_turns(0.0):  # a generating request: let it end, lanes are FIFO
        s.finish(turn.response_id, 0.0)
    events = [json.loads(f) for f in s.frames_to_send()]
    if refused or len(raw) > LIVE_MAX_FRAME:
        assert [e["type"] for e in events] == ["error"], events
    else:
        assert events and events[-1]["type"] in TERMINAL, events
    s.receive_frame(WARM_UP, 0.0)
    s.ready_turns(0.0)
    after = [json.loads(f)["type"] for f in s.frames_to_send()]
    assert after[-1] == "response.completed", after


def check_server_frame(raw: bytes) -> None:
    """Codec + ClientSession (a turn in flight) on one server frame."""
    _refused_by_codec(decode_server, raw)
    c = ClientSession()
    c.create([_user("hi")], model="m")
    try:
        c.receive_frame(raw)
    except RemoteProtocolError:
        return
    c.events_received()
    c.outcomes()


@dataclass
class LiveServer:
    """`slipstream serve` (scripted, unpaced) on 127.0.0.1 in a thread of its own."""

    url: str = ""
    token: str = ""
    _stop: Callable[[], None] = field(default=lambda: None)

    @classmethod
    @contextmanager
    def running(cls) -> Iterator[LiveServer]:
        ready = threading.Event()
        live = cls()
        box: dict[str, Any] = {}

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            async with run_server(ScriptedEngine(rate_tps=0), max_frame_bytes=LIVE_MAX_FRAME) as srv:
                live.url, live.token = srv.url, srv.token
                box["stop"] = lambda: loop.call_soon_threadsafe(stop.set)
                ready.set()
                await stop.wait()

        thread = threading.Thread(target=lambda: asyncio.run(main()), name="fuzz server", daemon=True)
        thread.start()
        if not ready.wait(20):
            raise RuntimeError("the fuzz server did not start")
        try:
            yield live
        finally:
            box["stop"]()
            thread.join(10)


@dataclass
class LiveClient:
    """One connection to the live server; reopened after a clean close."""

    server: LiveServer
    timeout: float = 10.0
    answered: int = 0
    closed_cleanly: int = 0
    _ws: ClientConnection | None = None

    def _conn(self) -> ClientConnection:
        if self._ws is None:
            self._ws = connect(
                self.server.url,
                additional_headers={"Authorization": f"Bearer {self.server.token}"},
                max_size=None,
                open_timeout=self.timeout,
            )
        return self._ws

    def exchange(self, raw: bytes, *, binary: bool = False) -> None:
        """Send one frame; wait for its answer or a clean close (AssertionError otherwise)."""
        ws = self._conn()
        try:
            ws.send(raw, text=not binary)
            while True:
                msg = ws.recv(timeout=self.timeout)  # TimeoutError: the server hung
                data = msgspec.json.decode(msg)
                if data.get("type") in TERMINAL:
                    self.answered += 1
                    return
        except ConnectionClosed as exc:
            self._ws = None
            assert exc.rcvd is not None, f"socket dropped without a close frame after {raw[:80]!r}"
            assert exc.rcvd.code in (1000, 1001, 1008, 1009), exc.rcvd
            self.closed_cleanly += 1

    def close(self) -> None:
        if self._ws is not None:
            self._ws.close()
            self._ws = None


FUZZ_SETTINGS = dict(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)


@dataclass
class FuzzCounts:
    codec_client: int = 0
    codec_server: int = 0
    live: int = 0
    live_answered: int = 0
    live_closed: int = 0

    @property
    def total(self) -> int:
        return self.codec_client + self.codec_server + self.live


def run_fuzz(
    client_cases: int, server_cases: int, live_cases: int, *, derandomize: bool = True
) -> FuzzCounts:
    """Run the three fuzzers for that many cases each; any failed check raises (hypothesis shrinks it)."""
    counts = FuzzCounts()

    @settings(max_examples=max(1, client_cases), derandomize=derandomize, **FUZZ_SETTINGS)  # type: ignore[arg-type]
    @given(client_frames())
    def client(case: tuple[str, bytes]) -> None:
        counts.codec_client += 1
        check_client_frame(case[1])

    @settings(max_examples=max(1, server_cases), derandomize=derandomize, **FUZZ_SETTINGS)  # type: ignore[arg-type]
    @given(server_frames())
    def server(case: tuple[str, bytes]) -> None:
        counts.codec_server += 1
        check_server_frame(case[1])

    if client_cases:
        client()
    if server_cases:
        server()
    if live_cases:
        with LiveServer.running() as srv:
            peer = LiveClient(srv)

            @settings(max_examples=max(1, live_cases), derandomize=derandomize, **FUZZ_SETTINGS)  # type: ignore[arg-type]
            @given(client_frames(), st.booleans())
            def live(case: tuple[str, bytes], binary: bool) -> None:
                counts.live += 1
                peer.exchange(case[1], binary=binary and case[0] == "junk")

            try:
                live()
                peer.exchange(WARM_UP.encode())  # still usable at the end
            finally:
                peer.close()
            counts.live_answered, counts.live_closed = peer.answered, peer.closed_cleanly
    return counts
