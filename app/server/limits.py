"""Server limits: what keeps one client (or a flood of sockets) from exhausting the server.

- `ConnectionGuard` watches every accepted TCP connection. A connection is *pending* until one of
  its requests passes authentication. Pending connections are capped per client (peer host) and in
  total; past a cap the oldest pending connection is dropped, so a flood of idle sockets can never
  use up the file descriptors an authenticated client needs. A pending connection that has not
  authenticated within `header_timeout_s` is dropped too (slow or missing headers). Authenticated
  connections are capped per client (`max_per_client`). Idle keep-alive connections close after
  aiohttp's keep-alive timeout.
- `UploadBudget` bounds the bytes of request bodies being received at once, across all uploads:
  a body that does not fit is refused (503 with Retry-After) before it is read.

Both are plain objects driven by the server adapters (`app.server.app` on aiohttp; the guard also by
`app.server.ws_server` on websockets, which has no bodies); drops are counted, never logged per
connection, so a flood cannot fill the disk with log lines.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ConnectionGuard", "GuardStats", "UploadBudget"]


@dataclass
class GuardStats:
    """Counters: connections dropped and why."""

    dropped_pending_cap: int = 0
    dropped_header_timeout: int = 0
    refused_per_client: int = 0
    peak_pending: int = 0


@dataclass
class _Conn:
    peer: str
    transport: Any
    timer: asyncio.TimerHandle | None = None
    authenticated: bool = False


@dataclass
class ConnectionGuard:
    """Caps and timeouts for TCP connections (see the module docstring)."""

    header_timeout_s: float = 10.0
    max_pending: int = 256
    max_pending_per_client: int = 128
    max_per_client: int = 512
    stats: GuardStats = field(default_factory=GuardStats)
    _pending: OrderedDict[Any, _Conn] = field(default_factory=OrderedDict)
    _per_peer_pending: dict[str, int] = field(default_factory=dict)
    _authenticated: dict[Any, _Conn] = field(default_factory=dict)
    _per_peer_auth: dict[str, int] = field(default_factory=dict)

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def authenticated(self) -> int:
        return len(self._authenticated)

    def connection_made(self, key: Any, transport: Any) -> None:
        """A new TCP connection (key: aiohttp's request handler, or websockets' connection)."""
        peer = _peer_host(transport)
        conn = _Conn(peer, transport)
        self._pending[key] = conn
        self._per_peer_pending[peer] = self._per_peer_pending.get(peer, 0) + 1
        self.stats.peak_pending = max(self.stats.peak_pending, len(self._pending))
        with contextlib.suppress(RuntimeError):
            conn.timer = asyncio.get_running_loop().call_later(self.header_timeout_s, self._expire, key)
        while self._per_peer_pending.get(peer, 0) > self.max_pending_per_client:
            self._drop_oldest(peer)
        while len(self._pending) > self.max_pending:
            self._drop_oldest(None)

    def connection_lost(self, key: Any) -> None:
        conn = self._pending.pop(key, None)
        if conn is not None:
            self._unpend(conn)
            return
        conn = self._authenticated.pop(key, None)
        if conn is not None:
            self._per_peer_auth[conn.peer] -= 1
            if not self._per_peer_auth[conn.peer]:
                del self._per_peer_auth[conn.peer]

    def authenticate(self, key: Any) -> bool:
        """A request on `key` passed authentication. False: its client is over its connection cap
        (the caller answers 429 and the connection closes)."""
        if key in self._authenticated:
            return True
        conn = self._pending.pop(key, None)
        if conn is None:
            return True  # not tracked (e.g. a test transport): nothing to cap
        self._unpend(conn)
        if self._per_peer_auth.get(conn.peer, 0) >= self.max_per_client:
            self.stats.refused_per_client += 1
            return False
        conn.authenticated = True
        self._authenticated[key] = conn
        self._per_peer_auth[conn.peer] = self._per_peer_auth.get(conn.peer, 0) + 1
        return True

    def _unpend(self, conn: _Conn) -> None:
        if conn.timer is not None:
            conn.timer.cancel()
            conn.timer = None
        self._per_peer_pending[conn.peer] -= 1
        if not self._per_peer_pending[conn.peer]:
            del self._per_peer_pending[conn.peer]

    def _drop_oldest(self, peer: str | None) -> None:
        for key, conn in self._pending.items():
            if peer is None or conn.peer == peer:
                self.stats.dropped_pending_cap += 1
                self._drop(key, conn)
                return

    def _expire(self, key: Any) -> None:
        conn = self._pending.get(key)
        if conn is not None:
            self.stats.dropped_header_timeout += 1
            self._drop(key, conn)

    def _drop(self, key: Any, conn: _Conn) -> None:
        self._pending.pop(key, None)
        self._unpend(conn)
        with contextlib.suppress(Exception):
            conn.transport.abort()


def _peer_host(transport: Any) -> str:
    try:
        peer = transport.get_extra_info("peername")
    except Exception:
        return "?"
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer or "?")


class UploadBudget:
    """Bytes of request bodies being received at once, across all requests."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.in_use = 0
        self.refused = 0

    def reserve(self, size: int) -> bool:
        if self.in_use + size > self.max_bytes and self.in_use > 0:
            self.refused += 1
            return False
        self.in_use += size
        return True

    def release(self, size: int) -> None:
        self.in_use -= size
