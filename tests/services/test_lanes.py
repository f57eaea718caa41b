"""Side conversations on their own lanes: routing as plain data, then the agent and side lanes on one
real socket (`slipstream serve`, scripted engine): concurrency, isolation of the chains, a dropped
socket, the age limit, and a server without lanes (a second connection)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

import app.protocol.server as server_core
from app.adapters.store import HistoryStore
from app.context.ledger import UPDATE_MARKER, is_context_item
from app.context.snapshot import SNAPSHOT_MARKER
from app.protocol.events import ErrorEvent, ResponseCompleted, ServerEvent
from app.server.app import RunningServer, run_server
from app.server.engines.scripted import ScriptedEngine
from app.services.app import AppServices
from app.services.lanes import Route, SharedSocket, SideLane, SideLanes, route_frame
from app.services.session import Endpoint, ResponsesSession
from app.services.settings import Settings
from tests.conftest import wait_until
from tests.render.stream import drain


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def texts(items: Sequence[Mapping[str, Any]]) -> str:
    return json.dumps(list(items))


def user_texts(items: Sequence[Mapping[str, Any]]) -> list[str]:
    out = []
    for i in items:
        if i.get("type") == "message" and i.get("role") == "user":
            content = i.get("content")
            out.append(content if isinstance(content, str) else content[0]["text"])  # type: ignore[index]
    return out


# ---- routing (plain data) ----------------------------------------------------------------------


def test_default_lane_frames_route_without_a_parse() -> None:
    frame = (
        '{"type":"response.output_text.delta","item_id":"m","output_index":0,"content_index":0,"delta":"x"}'
    )
    assert route_frame(frame) == Route(None)
    # text about stream_id is escaped inside the JSON string: still the default lane
    tricky = json.dumps({"type": "response.output_text.delta", "delta": '"stream_id":"side-9"'})
    assert route_frame(tricky) == Route(None)


def test_named_lane_and_its_errors_route_to_that_lane() -> None:
    assert route_frame('{"type":"response.created","stream_id":"side-1","response":{}}') == Route("side-1")
    err = {
        "type": "error",
        "status": 400,
        "stream_id": "side-2",
        "error": {"code": "previous_response_not_found", "message": "gone", "param": "previous_response_id"},
    }
    assert route_frame(json.dumps(err)).lane == "side-2"
    assert route_frame(json.dumps(err).encode()).lane == "side-2"


def test_connection_level_limit_goes_to_every_lane() -> None:
    err = {
        "type": "error",
        "status": 400,
        "error": {"code": "websocket_connection_limit_reached", "message": "m"},
    }
    assert route_frame(json.dumps(err)) == Route(None, broadcast=True)
    # lane-scoped (a queued create refused at the limit): that lane only
    assert route_frame(json.dumps({**err, "stream_id": "side-1"})) == Route("side-1")


def test_a_refused_stream_id_is_told_apart_from_the_agents_errors() -> None:
    nested = {
        "type": "error",
        "status": 400,
        "error": {"code": "invalid_request", "message": "'stream_id' is not supported", "param": "stream_id"},
    }
    flat = {
        "type": "error",
        "code": "unknown_parameter",
        "message": "Unknown parameter: 'stream_id'.",
        "param": None,
    }
    agent = {"type": "error", "status": 400, "error": {"code": "previous_response_not_found", "message": "m"}}
    assert route_frame(json.dumps(nested)).stream_refused
    assert route_frame(json.dumps(flat)).stream_refused
    assert route_frame(json.dumps(agent)) == Route(None)


# ---- real sockets ------------------------------------------------------------------------------


class Lanes:
    """The agent's session and side lanes on one SharedSocket, as AppServices builds them."""

    def __init__(
        self,
        srv: RunningServer,
        *,
        max_age_s: float | None = 3600.0,
        main_context: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        ep = Endpoint(srv.url, srv.token, max_age_s=max_age_s)
        self.hub = SharedSocket()
        self.main = ResponsesSession(ep, connect=self.hub.connector(None), initial_delay=0.01)
        self.main_context = list(main_context)
        self.side = SideLanes(
            ep, hub=self.hub, main_transcript=self.main.client.transcript, session_kw={"initial_delay": 0.01}
        )
        self.main_events: list[ServerEvent] = []

    async def aclose(self) -> None:
        await self.side.aclose()
        await self.main.aclose()
        await self.hub.aclose()


async def side_done(side: SideLane, timeout: float = 30) -> None:
    await wait_until(lambda: side.last is not None and not side.busy, timeout)


@pytest.mark.asyncio
async def test_side_question_runs_beside_a_long_agent_turn_on_one_socket() -> None:
    """The side answer completes while the agent's long answer still streams; one socket, two lanes;
    neither chain holds the other's items."""
    async with run_server(ScriptedEngine(rate_tps=4000)) as srv:
        lanes = Lanes(srv)
        order: list[str] = []

        def on_main(e: ServerEvent) -> None:
            lanes.main_events.append(e)
            if isinstance(e, ResponseCompleted):
                order.append("main done")

        main = asyncio.ensure_future(lanes.main.run_turn([user("/long 4000")], on_event=on_main))
        await wait_until(lambda: len(lanes.main_events) > 20, 20)
        side = lanes.side.open("what does the project do?")
        await side_done(side)
        order.append("side done")
        result = await main
        assert result.ok and side.last is not None and side.last.ok, side.last
        assert order == ["side done", "main done"]  # the side lane was not queued behind the agent
        assert srv.stats.connections == 1 and lanes.hub.opened == 1 and lanes.hub.lanes_supported is True
        assert side.transport == "lane" and side.session.lane == "side-1"
        assert all(e.lane is None for e in lanes.main_events)
        main_items, side_items = lanes.main.client.transcript(), side.items()
        assert user_texts(main_items) == ["/long 4000"]
        assert user_texts(side_items) == ["what does the project do?"]
        assert "what does the project do" not in texts(main_items)
        assert "/long" not in texts(side_items)
        drain(side.conversation)
        assert "what does the project do?" in side.conversation.plain_text()
        await lanes.aclose()


@pytest.mark.asyncio
async def test_several_side_lanes_run_at_once_beside_the_agent() -> None:
    """Three side lanes and the agent stream together on one socket; each chain holds only its own."""
    async with run_server(ScriptedEngine(rate_tps=3000)) as srv:
        lanes = Lanes(srv)
        main = asyncio.ensure_future(
            lanes.main.run_turn([user("/long 3000")], on_event=lanes.main_events.append)
        )
        log: list[tuple[str, str]] = []
        sides = [lanes.side.open(f"/long {600 + i}") for i in range(3)]

        def recorder(side: SideLane) -> Callable[[ServerEvent], None]:
            inner = side._on_event

            def on_event(e: ServerEvent) -> None:
                log.append((side.id, type(e).__name__))
                inner(e)

            return on_event

        for s in sides:  # before their tasks run: record each side's events in one sequence
            s._on_event = recorder(s)  # type: ignore[method-assign,assignment]
        for s in sides:
            await side_done(s)
        first_done = log.index(("side-1", "ResponseCompleted"))
        assert ("side-2", "ResponseCreated") in log[:first_done]  # not queued behind side-1's answer
        assert ("side-3", "ResponseCreated") in log[:first_done]
        assert (await main).ok
        assert srv.stats.connections == 1 and lanes.hub.lanes_seen == {None, "side-1", "side-2", "side-3"}
        for i, s in enumerate(sides):
            assert s.last is not None and s.last.ok and user_texts(s.items()) == [f"/long {600 + i}"]
        assert user_texts(lanes.main.client.transcript()) == ["/long 3000"]
        await lanes.aclose()


@pytest.mark.asyncio
async def test_stop_on_the_agents_lane_does_not_lose_the_side_answer() -> None:
    """Stop keeps the shared socket (our server cancels the agent's response): the agent's turn is
    cancelled, the side question goes on streaming on the same socket and completes."""
    async with run_server(ScriptedEngine(rate_tps=3000)) as srv:
        lanes = Lanes(srv)
        main = asyncio.ensure_future(
            lanes.main.run_turn([user("/long 3000")], on_event=lanes.main_events.append)
        )
        side = lanes.side.open("/long 1500")
        await wait_until(lambda: len(lanes.main_events) > 20 and side.conversation.pending, 20)
        lanes.main.stop()
        assert (await main).status == "cancelled"
        await side_done(side)
        assert side.last is not None and side.last.ok and user_texts(side.items()) == ["/long 1500"]
        await lanes.main.settled()  # the stopped response has ended on the socket
        assert lanes.hub.opened == 1 and srv.stats.connections == 1
        await lanes.aclose()


@pytest.mark.asyncio
async def test_a_dropped_socket_mid_stream_loses_neither_lane() -> None:
    """Both lanes streaming, the socket dies: both resend in full on one new socket and complete."""
    async with run_server(ScriptedEngine(rate_tps=3000)) as srv:
        lanes = Lanes(srv)
        main = asyncio.ensure_future(
            lanes.main.run_turn([user("/long 3000")], on_event=lanes.main_events.append)
        )
        side = lanes.side.open("/long 3000")
        await wait_until(lambda: len(lanes.main_events) > 20 and side.conversation.pending, 20)
        current = lanes.hub._current
        assert current is not None
        current.ws.abort()  # the network drops
        result = await main
        await side_done(side)
        assert result.ok and side.last is not None and side.last.ok
        assert srv.stats.connections == 2 and lanes.hub.opened == 2
        assert user_texts(lanes.main.client.transcript()) == ["/long 3000"]
        assert user_texts(side.items()) == ["/long 3000"]
        assert [i["type"] for i in lanes.main.client.transcript()] == ["message", "message"]
        await lanes.aclose()


@pytest.mark.asyncio
async def test_both_lanes_survive_the_age_limit() -> None:
    """Turns on both lanes keep completing across age-limit closes (0.5 s); nothing is lost."""
    async with run_server(ScriptedEngine(rate_tps=0), max_age_s=0.5) as srv:
        lanes = Lanes(srv, max_age_s=0.5)
        side = lanes.side.open()
        for i in range(4):
            side.ask(f"side {i}")
            r = await lanes.main.run_turn([user(f"main {i}")])
            await side_done(side)
            assert r.ok and side.last is not None and side.last.ok, (r, side.last)
            side.last = None
            await asyncio.sleep(0.3)
        assert lanes.hub.opened >= 2 and srv.stats.connections >= 2
        assert user_texts(lanes.main.client.transcript()) == [f"main {i}" for i in range(4)]
        assert user_texts(side.items()) == [f"side {i}" for i in range(4)]
        await lanes.aclose()


@pytest.mark.asyncio
async def test_side_lane_gets_the_agents_project_context_not_its_conversation() -> None:
    """The side chain starts with the context items of the agent's chain, then only new ones."""
    snapshot = user(f"{SNAPSHOT_MARKER}\nproject files: a.py")
    async with run_server(ScriptedEngine(rate_tps=0)) as srv:
        lanes = Lanes(srv)
        assert (await lanes.main.run_turn([snapshot], generate=False)).ok
        assert (await lanes.main.run_turn([user("agent work")])).ok
        side = lanes.side.open("first")
        await side_done(side)
        side_items = side.items()
        assert texts(side_items).count(SNAPSHOT_MARKER) == 1
        assert "agent work" not in texts(side_items)
        update = user(f"{UPDATE_MARKER}\nchanged: a.py")
        assert (await lanes.main.run_turn([update], generate=False)).ok
        side.last = None
        side.ask("second")
        await side_done(side)
        assert texts(side.items()).count(UPDATE_MARKER) == 1
        assert texts(side.items()).count(SNAPSHOT_MARKER) == 1
        assert "first" not in texts(lanes.main.client.transcript())
        await lanes.aclose()


@pytest.mark.asyncio
async def test_a_server_without_lanes_gets_a_second_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """stream_id refused: the agent's turn is untouched, the side lane moves to its own connection
    and says so; later side lanes go there at once."""
    monkeypatch.setattr(server_core, "_WS", dataclasses.replace(server_core._WS, lanes=False))
    async with run_server(ScriptedEngine(rate_tps=3000)) as srv:
        lanes = Lanes(srv)
        main = asyncio.ensure_future(
            lanes.main.run_turn([user("/long 1500")], on_event=lanes.main_events.append)
        )
        await wait_until(lambda: len(lanes.main_events) > 5, 20)
        side = lanes.side.open("side question")
        await side_done(side)
        result = await main
        assert result.ok and side.last is not None and side.last.ok, side.last
        assert lanes.hub.lanes_supported is False and side.transport == "connection"
        assert srv.stats.connections == 2 and lanes.hub.opened == 1
        assert not any(isinstance(e, ErrorEvent) for e in lanes.main_events)
        assert user_texts(lanes.main.client.transcript()) == ["/long 1500"]
        assert user_texts(side.items()) == ["side question"]
        drain(side.conversation)
        assert "second connection" in side.conversation.plain_text()
        second = lanes.side.open("another")
        await side_done(second)
        assert second.transport == "connection" and second.session.lane is None
        await lanes.aclose()


@pytest.mark.asyncio
async def test_app_services_agent_tool_loop_and_side_question_on_one_socket(tmp_path: Path) -> None:
    """The real services: the scripted agent calls a tool while a side question streams; one socket;
    the side conversation is promoted to a stored session."""
    root = tmp_path / "p"
    root.mkdir()
    (root / "a.py").write_text("def f():\n    return 42\n")
    async with run_server(ScriptedEngine(rate_tps=3000)) as srv:
        svc = AppServices(
            root,
            Settings(),
            store=HistoryStore(tmp_path / "h.db"),
            persist_settings=False,
            endpoint=Endpoint(srv.url, srv.token),
            watch=False,
        )
        opened: list[Any] = []
        svc.side_opened.connect(opened.append)
        await svc.start()
        try:
            assert svc.session is not None and svc.side is not None
            await wait_until(lambda: svc.session is not None and svc.session.client.head() is not None, 20)
            svc.send_message('/call read_file {"path": "a.py"}')
            side = svc.ask_side("/long 1500")
            assert isinstance(side, SideLane) and opened == [side]
            await wait_until(lambda: not svc.busy, 30)
            await side_done(side)
            assert side.last is not None and side.last.ok
            assert (
                srv.stats.connections == 1 and svc.hub is not None and svc.hub.lanes_seen == {None, "side-1"}
            )
            main_items = svc.session.client.transcript()
            assert any(i.get("type") == "function_call_output" for i in main_items)
            assert "/long" not in texts(main_items)
            assert not any(i.get("type", "").startswith("function_call") for i in side.items())
            assert texts(side.items()).count("a.py") >= 1  # the project context came along
            before = {s.id for s in svc.list_sessions()}
            svc.promote_side(side.id)
            await wait_until(lambda: side.closed, 10)
            new = [s for s in svc.list_sessions() if s.id not in before]
            assert len(new) == 1 and svc.session_id == new[0].id
            assert user_texts(svc.session.client.transcript()) == ["/long 1500"]
        finally:
            await svc.aclose()


@pytest.mark.asyncio
async def test_app_services_reconnect_mid_tool_loop_loses_nothing_on_either_lane(tmp_path: Path) -> None:
    """The socket drops while the agent's tool loop and a side answer both run: both finish on one
    new socket; the user's message is in each chain once, calls keep their outputs, nothing crosses."""
    root = tmp_path / "p"
    root.mkdir()
    (root / "a.py").write_text("def f():\n    return 42\n")
    async with run_server(ScriptedEngine(rate_tps=2000)) as srv:
        svc = AppServices(
            root,
            Settings(),
            store=HistoryStore(tmp_path / "h.db"),
            persist_settings=False,
            endpoint=Endpoint(srv.url, srv.token),
            watch=False,
        )
        await svc.start()
        try:
            assert svc.session is not None and svc.hub is not None
            await wait_until(lambda: svc.session is not None and svc.session.client.head() is not None, 20)
            side = svc.ask_side("/long 2000")
            assert isinstance(side, SideLane)
            svc.send_message('/call read_file {"path": "a.py"}')
            await wait_until(
                lambda: (
                    side.conversation.pending and svc.session is not None and svc.session.client.in_flight()
                ),
                20,
            )
            current = svc.hub._current
            assert current is not None
            current.ws.abort()  # the network drops under both lanes
            await wait_until(lambda: not svc.busy, 30)
            await side_done(side)
            assert side.last is not None and side.last.ok, side.last
            assert srv.stats.connections == 2
            main_items = svc.session.client.transcript()
            kinds = [i.get("type") for i in main_items]
            # every call has its output (the scripted engine may call again when a fresh chain replays
            # the /call message as new input: its rule, not a lane's); the last item is the answer
            assert kinds.count("function_call") == kinds.count("function_call_output") >= 1
            assert main_items[-1].get("role") == "assistant"
            assert user_texts([i for i in main_items if not is_context_item(i)]) == [
                '/call read_file {"path": "a.py"}'
            ]
            assert user_texts([i for i in side.items() if not is_context_item(i)]) == ["/long 2000"]
            assert "/long" not in texts(main_items) and "read_file" not in texts(side.items())
        finally:
            await svc.aclose()


@pytest.mark.asyncio
async def test_side_lanes_close_when_settings_move_turns_elsewhere(tmp_path: Path) -> None:
    """A reconnect to another endpoint (Settings) closes the side conversations of the old one, said
    through `side_removed`; a new side question runs on the new endpoint's socket."""
    root = tmp_path / "p"
    root.mkdir()
    (root / "a.py").write_text("x = 1\n")
    svc = AppServices(
        root, Settings(), store=HistoryStore(tmp_path / "h.db"), persist_settings=False, watch=False
    )
    removed: list[Any] = []
    svc.side_removed.connect(removed.append)
    await svc.start()
    try:
        side = svc.ask_side("first")
        assert isinstance(side, SideLane)
        await side_done(side)
        old_hub = svc.hub
        svc.apply_endpoint()
        assert svc._restart is not None
        await svc._restart
        assert removed == [side] and side.closed and svc.hub is not old_hub and svc.hub is not None
        again = svc.ask_side("second")
        assert isinstance(again, SideLane) and again is not side
        await side_done(again)
        assert again.last is not None and again.last.ok and svc.hub.lanes_seen >= {"side-1"}
    finally:
        await svc.aclose()
