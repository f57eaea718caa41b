"""A TCP proxy for chaos tests: sits between a client and `slipstream serve` and cuts connections.

`cut_after_bytes(n)` arms one cut: the connection that relays the n-th next byte (either way,
counted across connections) is aborted right there (RST-like: both sides closed without a WebSocket
close frame), which lands mid-frame, mid-response, during an upgrade or a warm-up depending on n.

`arm_random(lo, hi, total)` re-arms after every cut with a seeded random n in [lo, hi] until
`total` cuts were made. A client retries a turn a bounded number of times, so chaos that never
lets one attempt through is not a test of anything: after `max_blind` cuts in a row without the
client reporting `progress()` (a completed turn), the proxy waits for progress before it arms
again. Every cut is logged as a `Cut` with the phase it hit and what `label()` said the client
was doing. Binds 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Cut:
    """One cut: which connection, how far into it, which way, which phase, what the client did."""

    connection: int
    offset: int  # bytes this connection had relayed (both ways) when it was cut
    direction: str  # "up" (client -> server) or "down"
    phase: str  # "upgrade" (before the 101 answer got through), "websocket", "http"
    label: str


class ChaosProxy:
    def __init__(self, target_host: str, target_port: int, *, seed: int = 0, max_blind: int = 2) -> None:
        self.target = (target_host, target_port)
        self.rng = random.Random(seed)
        self.max_blind = max_blind
        self.cuts = 0
        self.connections = 0
        self.bytes = 0  # relayed in total, both ways
        self.log: list[Cut] = []
        self.label: Callable[[], str] = lambda: ""
        self._server: asyncio.Server | None = None
        self._armed: int | None = None
        self._auto: tuple[int, int, int] | None = None  # lo, hi, total
        self._blind = 0  # cuts since the last progress()
        self._near = (0.0, 600)
        self._live: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def aclose(self) -> None:
        self.disarm()
        if self._server:
            self._server.close()
        for w in list(self._live):
            self._abort(w)
        if self._server:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    # ---- arming --------------------------------------------------------------------------------

    def cut_after_bytes(self, n: int) -> None:
        """Abort the connection once n more bytes have crossed it."""
        self._armed = max(0, n)

    def cut_soon(self, lo: int, hi: int) -> bool:
        """Move the pending random cut to [lo, hi] bytes from now (if one is pending); True if moved."""
        if self._auto is None or self._armed is None:
            return False
        self._armed = self.rng.randint(lo, hi)
        return True

    def arm_random(self, lo: int, hi: int, total: int, *, near_share: float = 0.0, near: int = 600) -> None:
        """Cut at a random offset in [lo, hi] bytes, again after every cut, until `total` cuts; a
        `near_share` of the offsets is drawn from [1, near] instead (it hits the reconnect's upgrade)."""
        if not 0 <= lo <= hi:
            raise ValueError("need 0 <= lo <= hi")
        self._auto = (lo, hi, total)
        self._near = (near_share, near)
        self._rearm()

    def disarm(self) -> None:
        self._auto = None
        self._armed = None

    def progress(self) -> None:
        """The client completed something: the proxy may cut again."""
        self._blind = 0
        if self._armed is None:
            self._rearm()

    @property
    def done(self) -> bool:
        """All cuts asked of `arm_random` were made (or none were asked)."""
        return self._auto is None or self.cuts >= self._auto[2]

    def _rearm(self) -> None:
        if self._auto is None:
            return
        lo, hi, total = self._auto
        if self.cuts >= total or self._blind >= self.max_blind:
            self._armed = None
            return
        share, near = self._near
        self._armed = self.rng.randint(1, near) if self.rng.random() < share else self.rng.randint(lo, hi)

    def cut_now(self) -> None:
        for w in list(self._live):
            self._abort(w)
        self.cuts += 1

    @staticmethod
    def _abort(w: asyncio.StreamWriter) -> None:
        transport = w.transport
        if transport is not None:
            transport.abort()

    # ---- relaying ------------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        relayed = 0
        phase = "upgrade"
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            self._abort(writer)
            return
        self._live.update((writer, up_writer))

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, direction: str) -> None:
            nonlocal relayed, phase
            first = True
            try:
                while data := await src.read(4096):
                    if first and direction == "up" and data.startswith(b"POST "):
                        phase = "http"
                    first = False
                    if self._armed is not None:
                        if len(data) >= self._armed:
                            head = data[: self._armed]
                            if head:
                                dst.write(head)  # the socket is writable: this goes out now
                            relayed += len(head)
                            self.cuts += 1
                            self._blind += 1
                            self.log.append(Cut(number, relayed, direction, phase, self.label()))
                            self._armed = None
                            self._rearm()
                            self._abort(writer)
                            self._abort(up_writer)
                            return
                        self._armed -= len(data)
                    relayed += len(data)
                    self.bytes += len(data)
                    if phase == "upgrade" and direction == "down" and b"\r\n\r\n" in data:
                        phase = "websocket"
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    dst.close()

        try:
            await asyncio.gather(pump(reader, up_writer, "up"), pump(up_reader, writer, "down"))
        finally:
            self._live.discard(writer)
            self._live.discard(up_writer)
