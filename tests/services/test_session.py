"""ResponsesSession against a real `slipstream serve` (scripted engine) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from app.protocol.events import OutputTextDelta, ServerEvent
from app.server.app import run_server
from app.server.engines.scripted import ScriptedEngine
from app.services.session import Endpoint, ResponsesSession

pytestmark = pytest.mark.asyncio


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def text_of(events: list[ServerEvent]) -> str:
    return "".join(e.delta for e in events if isinstance(e, OutputTextDelta))


async def test_turns_chain_incrementally_and_stream_events() -> None:
    """Second turn sends only the new item; both answers stream as deltas."""
    async with run_server(ScriptedEngine(rate_tps=0)) as srv:
        s = ResponsesSession(Endpoint(srv.url, srv.token))
        seen: list[ServerEvent] = []
        r1 = await s.run_turn([user("first question")], on_event=seen.append)
        assert r1.ok and r1.transport == "websocket" and "first question" in text_of(seen)
        seen.clear()
        r2 = await s.run_turn([user("second")], on_event=seen.append)
        assert r2.ok and "second" in text_of(seen)
        assert r2.bytes_sent < r1.bytes_sent + 200  # incremental: not the whole history again
        frame_items = s.client.transcript()
        assert len(frame_items) == 4 and s.connections == 1
        await s.aclose()


async def test_warm_up_then_turn_reuses_the_chain() -> None:
    """generate:false is cached and chainable: the next turn continues from it."""
    async with run_server(ScriptedEngine(rate_tps=0)) as srv:
        s = ResponsesSession(Endpoint(srv.url, srv.token))
        w = await s.run_turn([user("project context here")], generate=False)
        assert w.ok and list(w.output) == []
        head = s.client.head()
        r = await s.run_turn([user("what changed?")])
        assert r.ok and s.client.head() == r.response_id != head
        await s.aclose()


async def test_server_restart_mid_session_rebuilds_the_chain() -> None:
    """A restarted server has no cache: the next turn goes out in full on a new socket and completes."""
    async with run_server(ScriptedEngine(rate_tps=0)) as srv:
        port, token = srv.port, srv.token
        s = ResponsesSession(Endpoint(srv.url, token), initial_delay=0.01)
        assert (await s.run_turn([user("one")])).ok
    async with run_server(ScriptedEngine(rate_tps=0), port=port, token=token) as srv2:
        retries: list[str] = []
        r = await s.run_turn([user("two")], on_retry=retries.append)
        assert r.ok and s.connections == 2
        sent_users = [i for i in s.client.transcript() if i.get("role") == "user"]
        assert len(sent_users) == 2  # "one" was replayed into the new chain, "two" appended
        assert srv2.stats.connections == 1
        await s.aclose()


async def test_upgrade_refused_turn_goes_over_http_then_back_to_websocket() -> None:
    """426 on the upgrade: this turn uses HTTP/SSE; the next one returns to the WebSocket."""
    async with run_server(ScriptedEngine(rate_tps=0)) as srv:
        s = ResponsesSession(Endpoint(srv.url, srv.token), initial_delay=0.01)
        srv.config.websocket = False
        seen: list[ServerEvent] = []
        r1 = await s.run_turn([user("over http please")], on_event=seen.append)
        assert r1.ok and r1.transport == "http" and "over http please" in text_of(seen)
        srv.config.websocket = True
        r2 = await s.run_turn([user("and now?")])
        assert r2.ok and r2.transport == "websocket"
        await s.aclose()


async def test_wrong_key_fails_with_words() -> None:
    """A 401 on the upgrade ends the turn with a clear message, not a crash or a retry loop."""
    async with run_server(ScriptedEngine(rate_tps=0)) as srv:
        s = ResponsesSession(Endpoint(srv.url, "wrong-token"))
        r = await s.run_turn([user("hi")])
        assert r.status == "failed" and "refused the key" in r.error and s.state == "error"
        assert not s.client.in_flight()


async def test_unreachable_endpoint_fails_with_words() -> None:
    """Nothing listening: a failed result naming the endpoint, after bounded retries."""
    async with run_server(ScriptedEngine(rate_tps=0)) as srv:
        url = srv.url
    s = ResponsesSession(Endpoint(url, "t"), initial_delay=0.01, max_delay=0.02)
    r = await s.run_turn([user("hi")])
    assert r.status == "failed" and "127.0.0.1" in r.error
    # the user's message is kept for the next attempt
    assert any(i.get("role") == "user" for i in s.client.transcript())


async def test_age_limit_rotates_without_losing_a_turn() -> None:
    """With a 0.5 s server age limit, turns keep completing across rotations."""
    async with run_server(ScriptedEngine(rate_tps=0), max_age_s=0.5) as srv:
        s = ResponsesSession(Endpoint(srv.url, srv.token, max_age_s=0.5), initial_delay=0.01)
        for i in range(4):
            r = await s.run_turn([user(f"turn {i}")])
            assert r.ok, r.error
            await asyncio.sleep(0.3)
        assert s.connections >= 2
        users = [json.dumps(i) for i in s.client.transcript() if i.get("role") == "user"]
        assert len(users) == 4
        await s.aclose()


async def test_stop_cancels_a_long_answer_and_keeps_the_session_usable() -> None:
    """stop() during a long stream ends the turn as cancelled; the next turn works."""
    async with run_server(ScriptedEngine(rate_tps=2000)) as srv:
        s = ResponsesSession(Endpoint(srv.url, srv.token))
        got: list[ServerEvent] = []

        def on_event(e: ServerEvent) -> None:
            got.append(e)
            if len(got) == 20:
                s.stop()

        r = await s.run_turn([user("/long 20000")], on_event=on_event)
        assert r.status == "cancelled"
        r2 = await s.run_turn([user("still there?")])
        assert r2.ok
        await s.aclose()


async def test_fatal_close_code_fails_the_turn_without_retrying() -> None:
    """A server closing with 1008 (policy) mid-turn: one failed result naming the code, no reconnect storm."""
    from websockets.asyncio.server import serve

    accepted = 0

    async def handler(conn: Any) -> None:
        nonlocal accepted
        accepted += 1
        await conn.recv()
        await conn.send(
            json.dumps(
                {
                    "type": "response.created",
                    "sequence_number": 0,
                    "response": {"id": "resp_x", "status": "in_progress", "output": []},
                }
            )
        )
        await conn.close(1008, "you are not reading")

    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        s = ResponsesSession(Endpoint(f"ws://127.0.0.1:{port}/v1/responses", "t"), initial_delay=0.01)
        r = await s.run_turn([user("hi")])
        assert r.status == "failed" and "1008" in r.error and "you are not reading" in r.error
        assert accepted == 1 and not s.client.in_flight()
        assert any(i.get("role") == "user" for i in s.client.transcript())  # kept for a retry


async def test_garbage_over_the_http_fallback_fails_with_words() -> None:
    """Upgrade refused, then a malformed SSE event: a failed turn that says so, no exception escapes."""
    from aiohttp import web

    async def upgrade(request: web.Request) -> web.Response:
        return web.Response(status=426, text="no websocket here")

    async def post(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b"event: response.created\ndata: {this is not json\n\n")
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/v1/responses", upgrade)
    app.router.add_post("/v1/responses", post)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        s = ResponsesSession(Endpoint(f"ws://127.0.0.1:{port}/v1/responses", "t"), initial_delay=0.01)
        r = await s.run_turn([user("hi")])
        assert r.status == "failed" and "malformed" in r.error and not s.client.in_flight()
    finally:
        await runner.cleanup()


async def test_a_failing_rebuild_does_not_wedge_the_session() -> None:
    """If building the fresh chain raises, the turn is abandoned and the next one goes through."""
    calls = 0

    def rebuild(lane: str | None, items: list[Any]) -> list[Any]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("disk hiccup")
        return items

    async with run_server(ScriptedEngine(rate_tps=0)) as srv:
        s = ResponsesSession(Endpoint(srv.url, srv.token), rebuild=rebuild)
        with pytest.raises(RuntimeError):
            await s.run_turn([user("one")])
        assert not s.client.in_flight()
        assert (await s.run_turn([user("two")])).ok
        await s.aclose()


# ---- the retry policy in memory: transport, poster, sleep and delays passed in as values ----------

DONE = {
    "id": "resp_h",
    "object": "response",
    "status": "completed",
    "output": [
        {
            "type": "message",
            "id": "msg_h",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": "over http", "annotations": []}],
        }
    ],
}


class Recorder:
    """Fake `connect` and `post`: records calls; connect fails with the given upgrade status."""

    def __init__(self, status: int | None) -> None:
        self.status = status
        self.opens: list[str] = []
        self.posts: list[dict[str, Any]] = []
        self.sleeps: list[float] = []

    async def connect(self, url: str, **_: Any) -> Any:
        from app.adapters.ws_client import TransportError

        self.opens.append(url)
        raise TransportError(f"{url} refused: HTTP {self.status}", status=self.status)

    async def post(self, url: str, body: bytes, **_: Any) -> Any:
        from app.protocol.events import ResponseCompleted, ResponseCreated

        self.posts.append(json.loads(body))
        yield ResponseCreated(response={**DONE, "status": "in_progress", "output": []})
        yield ResponseCompleted(sequence_number=1, response=DONE)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def fake_session(url: str, rec: Recorder) -> ResponsesSession:
    return ResponsesSession(
        Endpoint(url, "t"),
        connect=rec.connect,
        post=rec.post,
        sleep=rec.sleep,
        delays=lambda: iter([0.1, 0.2, 0.4, 0.8, 1.6, 3.2]),
    )


async def test_http_endpoint_goes_straight_to_http() -> None:
    """An http:// endpoint never tries a socket: one POST per turn, the full input, stream: true."""
    rec = Recorder(None)
    s = fake_session("http://127.0.0.1:9/v1/responses", rec)
    r = await s.run_turn([user("hi")])
    assert r.ok and r.transport == "http" and r.output[0]["id"] == "msg_h"
    assert rec.opens == [] and rec.sleeps == [] and len(rec.posts) == 1
    assert rec.posts[0]["stream"] is True and "type" not in rec.posts[0]
    await s.run_turn([user("again")])
    assert len(rec.posts) == 2 and [i.get("role") for i in rec.posts[1]["input"]][-1] == "user"


@pytest.mark.parametrize("status", [403, 404, 405, 426, 501])
async def test_refused_upgrade_falls_back_to_http_at_once_with_a_notice(status: int) -> None:
    """A server without WebSocket mode: one upgrade attempt, no backoff, this turn over HTTP, and the
    notice says why (not that the key was refused)."""
    rec = Recorder(status)
    s = fake_session("ws://127.0.0.1:9/v1/responses", rec)
    notices: list[str] = []
    r = await s.run_turn([user("hi")], on_retry=notices.append)
    assert r.ok and r.transport == "http"
    assert len(rec.opens) == 1 and rec.sleeps == [] and len(rec.posts) == 1
    assert notices and "no WebSocket mode" in notices[0] and str(status) in notices[0]


async def test_401_on_the_upgrade_says_the_key_was_refused() -> None:
    """401: no HTTP attempt, no retry; the words name the key."""
    rec = Recorder(401)
    s = fake_session("ws://127.0.0.1:9/v1/responses", rec)
    r = await s.run_turn([user("hi")])
    assert r.status == "failed" and "refused the key" in r.error and rec.posts == [] and rec.sleeps == []


async def test_unreachable_socket_backs_off_with_the_given_delays_then_uses_http() -> None:
    """No HTTP status (connection failed): the injected delays are slept, bounded, then HTTP."""
    rec = Recorder(None)
    s = fake_session("ws://127.0.0.1:9/v1/responses", rec)
    r = await s.run_turn([user("hi")])
    assert r.ok and r.transport == "http"
    assert len(rec.opens) == 6 and rec.sleeps == [0.1, 0.2, 0.4, 0.8, 1.6]


async def test_turn_result_reports_time_to_first_token() -> None:
    """ttft_ms: from the send to the first output token, on the injected clock; a warm-up has none."""
    ticks = iter(range(10**6))
    async with run_server(ScriptedEngine(rate_tps=0)) as srv:
        s = ResponsesSession(Endpoint(srv.url, srv.token), clock=lambda: float(next(ticks)))
        warm = await s.run_turn([user("project context")], generate=False)
        assert warm.ok and warm.ttft_ms is None and s.last_ttft_ms is None
        r = await s.run_turn([user("hello")])
        assert r.ok and r.ttft_ms is not None and 0 < r.ttft_ms < r.latency_ms
        assert s.last_ttft_ms == r.ttft_ms
        await s.aclose()
