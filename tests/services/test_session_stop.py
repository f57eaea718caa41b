"""ResponsesSession: Stop keeps the socket and the chain; the connection state tells the truth
(reconnect attempts, early rotation, "stopped" is not "offline"). Against a real `slipstream serve`
(scripted engine) on 127.0.0.1; the clock is injected where time matters."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from app.adapters.ws_client import WsTransport
from app.protocol.events import OutputTextDelta, ServerEvent
from app.server.app import run_server
from app.server.engines.scripted import ScriptedEngine
from app.services.inspector import Inspector
from app.services.session import Endpoint, ResponsesSession, SentFrame

pytestmark = pytest.mark.asyncio


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def stop_after(s: ResponsesSession, n: int) -> Callable[[ServerEvent], None]:
    got: list[ServerEvent] = []

    def on_event(e: ServerEvent) -> None:
        got.append(e)
        if sum(isinstance(x, OutputTextDelta) for x in got) == n:
            s.stop()

    return on_event


def watch(s: ResponsesSession) -> tuple[list[SentFrame], Inspector]:
    """Every frame the session sends, and an inspector fed the way the app feeds it."""
    frames: list[SentFrame] = []
    insp = Inspector()
    s.sent.connect(frames.append)
    s.sent.connect(
        lambda f: insp.record_send(
            f.frame, transport=f.transport, fresh_cause=f.fresh_cause, transcript=f.transcript
        )
    )
    s.ended.connect(
        lambda r: insp.record_end(
            status=r.status, response_id=r.response_id, usage=r.usage, kept_chain=r.kept_chain
        )
    )
    return frames, insp


def drop_sockets_at_first_token(srv: Any) -> Callable[[ServerEvent], None]:
    """An `on_event` that kills every server-side socket (TCP reset, close code 1006) at the first delta."""
    killed = False

    def on_event(e: ServerEvent) -> None:
        nonlocal killed
        if isinstance(e, OutputTextDelta) and not killed:
            killed = True
            for conn in list(srv.state.connections):
                conn._abort_transport()

    return on_event


class NoCancel:
    """A transport whose server does not announce `response.cancel` (OpenAI, xAI, ...)."""

    def __init__(self, ws: WsTransport) -> None:
        self._ws = ws

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ws, name)

    def header(self, name: str) -> str | None:
        return None


async def test_stop_cancels_on_our_server_and_the_next_turn_sends_only_new_input() -> None:
    """Stop mid-answer: `response.cancel` goes out, the socket stays, the chain continues from the
    stopped response; the next request carries one item and the server reads the history from cache."""
    async with run_server(ScriptedEngine(rate_tps=2000)) as srv:
        s = ResponsesSession(Endpoint(srv.url, srv.token))
        frames, insp = watch(s)
        big = user("project notes " * 2000)
        assert (await s.run_turn([big], generate=False)).ok
        stopped = await s.run_turn([user("/long 20000")], on_event=stop_after(s, 10))
        assert stopped.status == "cancelled" and stopped.kept_chain and stopped.response_id
        assert s.cancel_supported and s.state == "warm"  # a stop is not "offline"
        assert await s.settled() is True
        assert s.client.head() == stopped.response_id  # the stopped response is the chain head
        nxt = await s.run_turn([user("next question")])
        assert nxt.ok and s.connections == 1
        body = json.loads(frames[-1].frame)
        assert body["previous_response_id"] == stopped.response_id
        assert body["input"] == [user("next question")]
        assert len(frames[-1].frame) < 1000 < 16000 < len(frames[0].frame)
        details = nxt.usage["input_tokens_details"]
        assert details["cached_tokens"] > 0.9 * nxt.usage["input_tokens"]
        rec = insp.records[-1]
        assert rec.input_items == 1 and not rec.fresh and rec.full_bytes > 20 * rec.bytes_sent
        assert insp.records[-2].status == "cancelled" and insp.records[-2].kept_chain
        assert insp.records[-2].input_tokens is not None  # the stopped response's usage arrived later
        assert insp.rebuild_count == 0
        await s.aclose()


async def test_stop_without_server_cancel_drains_the_answer_and_keeps_the_chain() -> None:
    """A server without `response.cancel`: the stopped response finishes unseen (bounded), then the
    chain continues from it; nothing is re-sent."""

    async def connect(url: str, **kw: Any) -> Any:
        return NoCancel(await WsTransport.open(url, **kw))

    async with run_server(ScriptedEngine(rate_tps=0)) as srv:
        s = ResponsesSession(Endpoint(srv.url, srv.token), connect=connect)
        frames, _ = watch(s)
        shown: list[ServerEvent] = []
        stopper = stop_after(s, 5)

        def on_event(e: ServerEvent) -> None:
            shown.append(e)
            stopper(e)

        stopped = await s.run_turn([user("/long 3000")], on_event=on_event)
        assert stopped.status == "cancelled" and stopped.kept_chain and not s.cancel_supported
        assert await s.settled() is True
        answer = s.client.transcript()[-1]
        shown_text = "".join(e.delta for e in shown if isinstance(e, OutputTextDelta))
        assert len(answer["content"][0]["text"]) > len(shown_text)  # finished on the server, not shown
        nxt = await s.run_turn([user("next")])
        assert nxt.ok and s.connections == 1
        body = json.loads(frames[-1].frame)
        assert body["previous_response_id"] == stopped.response_id and body["input"] == [user("next")]
        assert all(b'"response.cancel"' not in f.frame for f in frames)
        await s.aclose()


async def test_a_drain_past_its_limit_drops_the_socket_and_says_so() -> None:
    """The stopped response does not end in time: the socket goes, the chain too; the state says the
    next message reconnects (not "offline"); the next turn sends everything on a new socket."""

    async def connect(url: str, **kw: Any) -> Any:
        return NoCancel(await WsTransport.open(url, **kw))

    async with run_server(ScriptedEngine(rate_tps=200)) as srv:
        s = ResponsesSession(Endpoint(srv.url, srv.token), connect=connect, drain_limit_s=0)
        frames, insp = watch(s)
        stopped = await s.run_turn([user("/long 20000")], on_event=stop_after(s, 2))
        assert stopped.kept_chain
        assert await s.settled() is False
        assert s.state == "idle" and "next message" in s.detail
        nxt = await s.run_turn([user("again")])
        assert nxt.ok and s.connections == 2
        assert "previous_response_id" not in json.loads(frames[-1].frame)
        assert insp.rebuilds == {"the stopped reply could not be ended on the connection": 1}
        await s.aclose()


async def test_stop_before_anything_was_sent_is_idle_not_offline() -> None:
    """Stop while the fresh chain is still being built: nothing went out, so nothing to keep."""
    gate = asyncio.Event()

    async def rebuild(lane: str | None, items: list[Any]) -> list[Any]:
        await gate.wait()
        return items

    async with run_server(ScriptedEngine(rate_tps=0)) as srv:
        s = ResponsesSession(Endpoint(srv.url, srv.token), rebuild=rebuild)
        frames, _ = watch(s)
        task = asyncio.ensure_future(s.run_turn([user("hi")]))
        while not s.busy:
            await asyncio.sleep(0)
        for _ in range(5):
            await asyncio.sleep(0)
        s.stop()
        r = await task
        assert r.status == "cancelled" and not r.kept_chain and frames == []
        assert s.state == "idle"  # nothing is wrong: not "offline"
        gate.set()
        assert (await s.run_turn([user("now")])).ok
        await s.aclose()


async def test_reconnect_after_the_server_drops_the_socket_reports_attempt_and_reason() -> None:
    """The server's socket dies mid-answer: "reconnecting" with attempt 1 and the close code, then the
    turn completes on a new socket; the inspector counts one rebuild with that cause."""
    async with run_server(ScriptedEngine(rate_tps=2000)) as srv:
        s = ResponsesSession(Endpoint(srv.url, srv.token), initial_delay=0.01)
        _, insp = watch(s)
        states: list[tuple[str, str, int]] = []
        s.state_changed.connect(lambda st, d: states.append((st, d, s.attempt)))
        r = await s.run_turn([user("/long 4000")], on_event=drop_sockets_at_first_token(srv))
        assert r.ok and s.connections == 2
        reconnecting = [x for x in states if x[0] == "reconnecting"]
        assert reconnecting and reconnecting[0][2] == 1 and "connection lost" in reconnecting[0][1]
        assert [x[0] for x in states][-2:] == ["streaming", "warm"]
        assert insp.rebuild_count == 1 and next(iter(insp.rebuilds)).startswith("connection lost")
        await s.aclose()


async def test_rotation_before_the_age_limit_is_visible_and_counted() -> None:
    """With a 60 s limit the socket is renewed at 54 s, at a turn boundary: the state says "rotating",
    `rotate_at` tells when, and the rebuild is counted with its cause."""
    now = [1000.0]
    async with run_server(ScriptedEngine(rate_tps=0)) as srv:
        s = ResponsesSession(Endpoint(srv.url, srv.token, max_age_s=60), clock=lambda: now[0])
        _, insp = watch(s)
        states: list[tuple[str, str]] = []
        s.state_changed.connect(lambda st, d: states.append((st, d)))
        assert (await s.run_turn([user("one")])).ok
        assert s.rotate_at() == 1054.0
        now[0] = 1053.0
        assert (await s.run_turn([user("two")])).ok and s.connections == 1
        now[0] = 1054.0
        assert (await s.run_turn([user("three")])).ok and s.connections == 2 and s.rotations == 1
        rotating = [d for st, d in states if st == "rotating"]
        assert rotating == ["before its 1-min limit"]
        assert s.rotate_at() == 1054.0 + 54
        assert insp.rebuilds == {"the connection was renewed before its age limit": 1}
        await s.aclose()
