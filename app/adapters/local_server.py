"""Start `slipstream serve` as a child process and learn its URL and token.

Used by `slipstream ask`/`watch` without --endpoint and by the app on first start (no model
configured). The child prints `slipstream serve: listening on ws://HOST:PORT/v1/responses ...`
as its first stdout line; we read the port from it rather than racing for a free port.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import signal
import sys
from dataclasses import dataclass, field

LISTEN_RE = re.compile(r"listening on (ws://[^\s]+)")


class LocalServerError(RuntimeError):
    """The child server did not start; the message carries what it printed."""


@dataclass
class LocalServer:
    url: str  # ws://127.0.0.1:PORT/v1/responses
    token: str
    process: asyncio.subprocess.Process
    _drains: list[asyncio.Future[None]] = field(default_factory=list, repr=False)

    @property
    def http_base(self) -> str:
        return self.url.replace("ws://", "http://", 1).removesuffix("/responses")

    async def aclose(self) -> None:
        """Stop the child politely, then firmly."""
        if self.process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()
        for d in self._drains:
            d.cancel()


def serve_command() -> list[str]:
    """How to run `slipstream serve` from here (a PyInstaller bundle runs itself)."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "serve"]
    return [sys.executable, "-m", "app", "serve"]


async def start_local_server(
    *, engine: str = "scripted", extra_args: list[str] | None = None, timeout: float = 20.0,
    token: str | None = None,
) -> LocalServer:
    """Spawn the server on 127.0.0.1 with an ephemeral port and a fresh token."""
    token = token or secrets.token_urlsafe(24)
    # "--token=VALUE": a generated token may start with "-", which argparse would take for an option.
    cmd = [*serve_command(), "--host", "127.0.0.1", "--port", "0", f"--token={token}", "--engine", engine]
    cmd += extra_args or []
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env, start_new_session=True,
    )
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
        proc.kill()
        await proc.wait()
        raise LocalServerError(f"slipstream serve did not start within {timeout:.0f} s") from None
    except BaseException:  # cancelled (the app closed while starting): the child is in its own session
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    # Keep draining the child's pipes so it never blocks on a full pipe.
    server = LocalServer(url=m.group(1), token=token, process=proc)
    server._drains = [asyncio.ensure_future(_drain(proc.stdout)), asyncio.ensure_future(_drain(proc.stderr))]
    return server


async def _drain(stream: asyncio.StreamReader) -> None:
    with contextlib.suppress(Exception):
        while await stream.read(65536):
            pass
