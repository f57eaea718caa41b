"""Child-process server for bench_protocol: the real aiohttp server with the scripted engine.

The bench client and the server run in separate processes (as the app runs `slipstream serve`), so
on a 2-core machine each side gets its own core and client-side costs are not hidden by the server's.

The engine is `ScriptedEngine(rate_tps=0)` behind one thin decision, the way a model would decide:
while the conversation (history + new input) holds fewer than `--calls` function_call_output items,
the turn is forced to call the next tool of the offered list (tools in order, round robin); after
that it answers in text (`tool_choice: "none"`). The client's settings stay the same every turn, so
the WebSocket client can stay incremental. Turns without tools (e.g. `/long N`) pass through as-is.

First stdout line: `proto-serve: listening on ws://HOST:PORT/v1/responses token TOKEN`. Stops on
SIGTERM/SIGINT, or when stdin reaches EOF (the bench process died), so it never outlives the bench.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import signal
import sys
import threading
from collections.abc import AsyncIterator

from app.server.app import run_server
from app.server.engines.base import EngineOutput, Turn
from app.server.engines.scripted import ScriptedConnection, ScriptedEngine

__all__ = ["RolloutEngine", "main"]


class _RolloutConnection:
    def __init__(self, inner: ScriptedConnection, calls: int) -> None:
        self._inner = inner
        self._calls = calls

    def run(self, turn: Turn) -> AsyncIterator[EngineOutput]:
        names = [t["name"] for t in turn.tools if isinstance(t.get("name"), str)]
        if names:
            done = sum(1 for i in turn.history if i.get("type") == "function_call_output")
            done += sum(1 for i in turn.new_input if i.get("type") == "function_call_output")
            choice: object = (
                {"type": "function", "name": names[done % len(names)]} if done < self._calls else "none"
            )
            turn = dataclasses.replace(turn, tool_choice=choice)
        return self._inner.run(turn)

    async def aclose(self) -> None:
        await self._inner.aclose()


class RolloutEngine:
    """ScriptedEngine (unpaced) that calls `calls` tools in a row, then answers in text."""

    name = "scripted"

    def __init__(self, calls: int) -> None:
        self._scripted = ScriptedEngine(rate_tps=0)
        self._calls = calls

    def connect(self) -> _RolloutConnection:
        return _RolloutConnection(self._scripted.connect(), self._calls)

    async def aclose(self) -> None:
        await self._scripted.aclose()


async def _serve(token: str, calls: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)

    def watch_stdin() -> None:
        sys.stdin.buffer.read()  # returns at EOF: the parent is gone
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch_stdin, name="stdin watch", daemon=True).start()
    async with run_server(RolloutEngine(calls), port=0, token=token) as srv:
        print(f"proto-serve: listening on {srv.url} token {srv.token}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--token", required=True)
    ap.add_argument("--calls", type=int, default=20)
    args = ap.parse_args(argv)
    asyncio.run(_serve(args.token, args.calls))


if __name__ == "__main__":
    main()
