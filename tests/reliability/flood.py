"""A flood of idle unauthenticated sockets against `slipstream serve`, with an authenticated client
asking all along (issue 11: 1,100 idle sockets, past the server's 1,024 file descriptors, once locked
every client out and wrote 116 MB of tracebacks in 40 s).

The server runs in its own process with its file limit set to 1,024; this process raises its own
limit to open the flood. Reports how many authenticated requests were answered and how many bytes
the server wrote to stderr.

    python -m tests.reliability.flood [--sockets 1100]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import secrets
import sys
import tempfile
import time
from dataclasses import dataclass

import httpx

__all__ = ["FloodReport", "run_flood"]


@dataclass
class FloodReport:
    sockets: int  # idle sockets the flood opened (some were closed by the server at once)
    asked: int
    answered: int
    stderr_bytes: int
    seconds: float
    worst_ms: float  # the slowest authenticated answer

    @property
    def failed(self) -> int:
        return self.asked - self.answered


def _server_limits() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))


async def run_flood(sockets: int = 1100, hold_s: float = 5.0) -> FloodReport:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, sockets + 256))
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    token = secrets.token_urlsafe(16)
    with tempfile.TemporaryFile() as errlog:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "app.main",
            "serve",
            "--port",
            "0",
            "--rate",
            "0",
            f"--token={token}",  # "=": a token may start with "-"
            stdout=asyncio.subprocess.PIPE,
            stderr=errlog,
            preexec_fn=_server_limits,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        assert proc.stdout is not None
        writers: list[asyncio.StreamWriter] = []
        asked = answered = 0
        worst = 0.0
        t0 = time.perf_counter()
        try:
            line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
            url = line.split("listening on ", 1)[1].split()[0]
            port = int(url.rsplit(":", 1)[1].split("/")[0])
            http_url = f"http://127.0.0.1:{port}/v1/responses"
            stop = asyncio.Event()

            async def flood() -> None:
                for _ in range(sockets):
                    with contextlib.suppress(OSError):
                        _, writer = await asyncio.open_connection("127.0.0.1", port)
                        writers.append(writer)
                await asyncio.sleep(hold_s)  # hold them idle while the client keeps asking
                stop.set()

            async def client() -> None:
                nonlocal asked, answered, worst
                body = {"model": "scripted", "input": "are you there?"}
                # a fresh connection per request: a new client needs a file descriptor on the server too
                limits = httpx.Limits(max_keepalive_connections=0)
                async with httpx.AsyncClient(timeout=10.0, limits=limits) as http:
                    while not stop.is_set():
                        asked += 1
                        t = time.perf_counter()
                        with contextlib.suppress(httpx.HTTPError):
                            resp = await http.post(
                                http_url, json=body, headers={"Authorization": f"Bearer {token}"}
                            )
                            answered += resp.status_code == 200
                        worst = max(worst, time.perf_counter() - t)
                        await asyncio.sleep(0.05)

            await asyncio.gather(flood(), client())
        finally:
            for w in writers:
                w.close()
            proc.terminate()
            await proc.wait()
        errlog.seek(0, os.SEEK_END)
        return FloodReport(
            len(writers), asked, answered, errlog.tell(), time.perf_counter() - t0, worst * 1e3
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.reliability.flood", description=__doc__.splitlines()[0])
    p.add_argument("--sockets", type=int, default=1100)
    args = p.parse_args(argv)
    report = asyncio.run(run_flood(args.sockets))
    print(report)
    return 0 if report.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
