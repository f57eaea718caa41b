"""Start `slipstream serve` as a child process and learn its URL; stop it on every exit path.

Used by `slipstream ask`/`watch` without --endpoint and by the app when no model is configured.
The desktop app serves its scripted engine on a thread of its own instead (`host_scripted_here`,
installed by app.main; app.server.inprocess): `start_scripted_server` is the one way in for both,
and either way the caller gets a `ServerHandle` (url, token, `aclose()`) it owns and stops.
The child prints `slipstream serve: listening on ws://HOST:PORT/v1/responses ...` as its first
stdout line; we read the port from it rather than racing for a free port.

The child never outlives us and never shows its token:
- the token goes through the environment (`SLIPSTREAM_SERVE_TOKEN`), which only the same user can
  read, never the command line, which every local user can read with `ps`;
- the child runs in its own process group (its own session), so a terminal's Ctrl-C reaches only us
  and we stop the whole group, politely then firmly, within a bounded time (`aclose`);
- on Linux it gets a parent-death signal (prctl PR_SET_PDEATHSIG): if we are killed outright
  (SIGKILL, a crash), the kernel kills it too;
- every live child is also in a registry that `kill_all_sync()` empties at interpreter exit.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import logging
import os
import re
import secrets
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger(__name__)

LISTEN_RE = re.compile(r"listening on (ws://[^\s]+)")
TOKEN_ENV = "SLIPSTREAM_SERVE_TOKEN"  # `slipstream serve` reads its token from here (app/server/cli.py)
STOP_GRACE_S = 1.0  # SIGTERM -> this long -> SIGKILL
PR_SET_PDEATHSIG = 1

# pid -> process of every child started here and not reaped yet (its pgid is its pid).
_LIVE: dict[int, asyncio.subprocess.Process] = {}


class LocalServerError(RuntimeError):
    """The child server did not start; the message carries what it printed."""


class ServerHandle(Protocol):
    """A local server someone started and owns: where it listens, its token, how to stop it."""

    @property
    def url(self) -> str: ...  # ws://127.0.0.1:PORT/v1/responses

    @property
    def token(self) -> str: ...

    async def aclose(self, grace: float = ...) -> None: ...


# token -> a scripted server serving in this process (None: a `slipstream serve` child).
ScriptedHost = Callable[[str], Awaitable[ServerHandle]]
_scripted_host: ScriptedHost | None = None


def host_scripted_here(host: ScriptedHost | None) -> None:
    """From now on `start_scripted_server` serves the scripted engine with `host(token)` in this
    process (the desktop app: app.main installs app.server.inprocess); None: children again."""
    global _scripted_host
    _scripted_host = host


@dataclass
class LocalServer:
    url: str  # ws://127.0.0.1:PORT/v1/responses
    token: str = field(repr=False)
    process: asyncio.subprocess.Process
    _drains: list[asyncio.Future[None]] = field(default_factory=list, repr=False)

    @property
    def http_base(self) -> str:
        return self.url.replace("ws://", "http://", 1).removesuffix("/responses")

    @property
    def pid(self) -> int:
        return self.process.pid

    async def aclose(self, grace: float = STOP_GRACE_S) -> None:
        """Stop the child's whole group: SIGTERM, then SIGKILL after `grace` seconds; never hangs."""
        await stop_process(self.process, grace)
        drains, self._drains = self._drains, []
        if drains:  # the pipes hit EOF once the group is gone; a grandchild holding them is cut off
            _, pending = await asyncio.wait(drains, timeout=0.5)
            for d in pending:
                d.cancel()
            if pending:
                await asyncio.wait(pending, timeout=0.5)


async def stop_process(proc: asyncio.subprocess.Process, grace: float = STOP_GRACE_S) -> None:
    """Terminate `proc`'s process group and reap it, in at most about `grace` + 1 s."""
    try:
        if proc.returncode is None and grace > 0:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(proc.wait()), grace)
            except TimeoutError:
                log.warning("slipstream serve (pid %d) did not stop in %.1f s: killing it", proc.pid, grace)
        _signal_group(proc.pid, signal.SIGKILL)  # also stragglers left in the group by the child
        if proc.returncode is None:
            try:
                await asyncio.wait_for(asyncio.shield(proc.wait()), 1.0)
            except TimeoutError:
                log.error("slipstream serve (pid %d) was killed but not reaped in time", proc.pid)
    finally:
        if proc.returncode is not None:
            _LIVE.pop(proc.pid, None)


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if hasattr(os, "killpg"):
            os.killpg(pid, sig)
        else:  # pragma: no cover - Windows
            os.kill(pid, sig)


def kill_all_sync() -> list[int]:
    """SIGKILL every child group still registered (the last resort at exit); returns their pids."""
    pids = list(_LIVE)
    for pid in pids:
        proc = _LIVE.pop(pid)
        if proc.returncode is None:
            _signal_group(pid, signal.SIGKILL)
    return pids


def live_children() -> list[int]:
    """Pids of the children started here that were not reaped yet."""
    return [pid for pid, proc in _LIVE.items() if proc.returncode is None]


atexit.register(kill_all_sync)


def serve_command() -> list[str]:
    """How to run `slipstream serve` from here (a PyInstaller bundle runs itself)."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "serve"]
    return [sys.executable, "-m", "app", "serve"]


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec hook that asks Linux to SIGKILL the child when we die (None elsewhere)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved here, not in the forked child
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def setup() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # we died between fork and prctl: follow at once
            os._exit(1)

    return setup


async def start_local_server(
    *,
    engine: str = "scripted",
    extra_args: list[str] | None = None,
    timeout: float = 20.0,
    token: str | None = None,
) -> LocalServer:
    """Spawn the server on 127.0.0.1 with an ephemeral port and a fresh token."""
    token = token or secrets.token_urlsafe(24)
    cmd = [*serve_command(), "--host", "127.0.0.1", "--port", "0", "--engine", engine, *(extra_args or [])]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env[TOKEN_ENV] = token
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        start_new_session=True,
        preexec_fn=_die_with_parent(),
    )
    _LIVE[proc.pid] = proc
    assert proc.stdout is not None and proc.stderr is not None
    seen: list[str] = []
    try:
        async with asyncio.timeout(timeout):
            while True:
                raw = await proc.stdout.readline()
                if not raw:
                    err = (await proc.stderr.read()).decode(errors="replace")
                    raise LocalServerError(
                        f"slipstream serve exited ({await proc.wait()}) before listening: "
                        + ("".join(seen) + err).strip()[-2000:]
                    )
                line = raw.decode(errors="replace")
                seen.append(line)
                m = LISTEN_RE.search(line)
                if m:
                    break
    except TimeoutError:
        await stop_process(proc, 0)
        raise LocalServerError(f"slipstream serve did not start within {timeout:.0f} s") from None
    except BaseException:  # cancelled (the app closed while starting), or the child failed
        await asyncio.shield(stop_process(proc, 0))
        raise
    # Keep draining the child's pipes so it never blocks on a full pipe.
    server = LocalServer(url=m.group(1), token=token, process=proc)
    server._drains = [asyncio.ensure_future(_drain(proc.stdout)), asyncio.ensure_future(_drain(proc.stderr))]
    return server


async def start_scripted_server(timeout: float = 20.0) -> ServerHandle:
    """The scripted engine on 127.0.0.1 with an ephemeral port and a fresh token: in this process
    when a host is installed (`host_scripted_here`), else a `slipstream serve` child."""
    host = _scripted_host
    if host is None:
        return await start_local_server(timeout=timeout)
    try:
        async with asyncio.timeout(timeout):
            return await host(secrets.token_urlsafe(24))
    except TimeoutError:
        raise LocalServerError(f"the scripted engine did not start within {timeout:.0f} s") from None
    except Exception as exc:  # words for the banner, not a traceback
        raise LocalServerError(f"the scripted engine did not start: {exc}") from exc


async def _drain(stream: asyncio.StreamReader) -> None:
    with contextlib.suppress(Exception):
        while await stream.read(65536):
            pass
