"""`slipstream serve`: run the local Responses server from the command line.

The first line on stdout is machine-readable, so tests and the app can spawn the server on port 0
and learn the real port and the token file::

    slipstream serve: listening on ws://127.0.0.1:PORT/v1/responses (token file: PATH)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path

from app.server.auth import is_loopback, new_token, remove_token_file, write_token_file
from app.server.engines.base import Engine
from app.server.engines.scripted import ScriptedEngine, ScriptError, load_script

__all__ = ["build_engine", "build_parser", "main"]

DEFAULT_PORT = 8765
ENGINES = ("scripted",)


def build_parser() -> argparse.ArgumentParser:
    """The `serve` argument parser."""
    p = argparse.ArgumentParser(
        prog="slipstream serve",
        description="Run the local Responses server: WebSocket mode and HTTP/SSE on /v1/responses.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port (0 = ephemeral; default: %(default)s)"
    )
    p.add_argument("--token", help="bearer token clients must send (default: a fresh one, written to a file)")
    p.add_argument("--engine", choices=ENGINES, default="scripted", help="what answers (default: scripted)")
    p.add_argument("--script", type=Path, help="scripted engine: JSON list of turns to follow")
    p.add_argument(
        "--rate", type=float, default=1000.0, help="scripted engine: tokens/s, bursts at 4x (0 = unpaced)"
    )
    p.add_argument(
        "--max-age", type=float, default=3600.0, help="connection age limit in seconds (default: 3600)"
    )
    p.add_argument("--max-frame-bytes", type=int, default=16 * 1024 * 1024, help=argparse.SUPPRESS)
    p.add_argument(
        "--allow-remote", action="store_true", help="allow a non-loopback --host (needs an explicit --token)"
    )
    return p


def build_engine(args: argparse.Namespace) -> Engine:
    """The engine the arguments ask for; ScriptError/ValueError on bad settings."""
    if args.rate < 0:
        raise ValueError("--rate must be >= 0")
    script = load_script(args.script) if args.script is not None else None
    return ScriptedEngine(rate_tps=args.rate, burst_tps=args.rate * 4, script=script)


def _fail(message: str) -> int:
    print(f"slipstream serve: error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str]) -> int:
    """Parse `argv`, start the server and serve until SIGINT/SIGTERM. Returns the exit code."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse already printed why
        return int(exc.code or 0)
    if not is_loopback(args.host) and not (args.allow_remote and args.token):
        return _fail(
            f"refusing to bind non-loopback address {args.host!r}: anyone on the network could reach it. "
            "Pass --allow-remote AND an explicit --token to do it anyway."
        )
    if not 0 <= args.port <= 65535:
        return _fail(f"--port must be in 0..65535, got {args.port}")
    if args.max_age <= 0:
        return _fail("--max-age must be > 0")
    if args.max_frame_bytes <= 0:
        return _fail("--max-frame-bytes must be > 0")
    try:
        engine = build_engine(args)
    except (ScriptError, ValueError) as exc:
        return _fail(str(exc))
    try:
        asyncio.run(_serve(args, engine))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        return _fail(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")
    return 0


async def _serve(args: argparse.Namespace, engine: Engine) -> None:
    from app.server.app import run_server  # aiohttp loads only when serving

    token = args.token or new_token()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # Windows: no signal handlers
            loop.add_signal_handler(sig, stop.set)
    async with run_server(
        engine,
        host=args.host,
        port=args.port,
        token=token,
        max_age_s=args.max_age,
        max_frame_bytes=args.max_frame_bytes,
    ) as srv:
        token_file = None if args.token else write_token_file(token, srv.port)
        where = f"token file: {token_file}" if token_file else "token: given with --token"
        try:
            print(f"slipstream serve: listening on {srv.url} ({where})", flush=True)
            print(
                f"  HTTP: {srv.http_url}   health: {srv.base_url}/healthz   engine: {engine.name}", flush=True
            )
            print("  Ctrl+C to stop.", flush=True)
            await stop.wait()
        finally:
            remove_token_file(token_file)
    print("slipstream serve: stopped", flush=True)
