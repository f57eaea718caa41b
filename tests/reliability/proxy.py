"""A TCP proxy for chaos tests: sits between a client and `slipstream serve` and cuts connections.

`cut_after_bytes(n)` arms a cut: the next connection that has relayed n more bytes (either way) is
aborted mid-stream (RST-like: both sides closed without a WebSocket close frame), which lands
mid-frame, mid-response or during a warm-up depending on n. Binds 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import random


class ChaosProxy:
    def __init__(self, target_host: str, target_port: int, *, seed: int = 0) -> None:
        self.target = (target_host, target_port)
        self.rng = random.Random(seed)
        self.cuts = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._armed: int | None = None
        self._live: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def aclose(self) -> None:
        if self._server:
            self._server.close()
        for w in list(self._live):
            w.close()
        if self._server:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    def cut_after_bytes(self, n: int) -> None:
        """Abort the connection once n more bytes have crossed it."""
        self._armed = max(0, n)

    def cut_now(self) -> None:
        for w in list(self._live):
            self._abort(w)
        self.cuts += 1

    @staticmethod
    def _abort(w: asyncio.StreamWriter) -> None:
        transport = w.transport
        if transport is not None:
            transport.abort()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            self._abort(writer)
            return
        self._live.update((writer, up_writer))

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(4096):
                    if self._armed is not None:
                        if len(data) >= self._armed:
                            head = data[: self._armed]
                            self._armed = None
                            if head:
                                dst.write(head)
                            self.cuts += 1
                            self._abort(writer)
                            self._abort(up_writer)
                            return
                        self._armed -= len(data)
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    dst.close()

        try:
            await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        finally:
            self._live.discard(writer)
            self._live.discard(up_writer)
