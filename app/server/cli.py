"""`slipstream serve`: run the local Responses server from the command line.

The first line on stdout is machine-readable, so tests and the app can spawn the server on port 0
and learn the real port and the token file::

    slipstream serve: listening on ws://127.0.0.1:PORT/v1/responses (token file: PATH)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Any, NoReturn

from app.adapters.local_server import TOKEN_ENV
from app.server.auth import is_loopback, new_token, remove_token_file, write_token_file
from app.server.engines.base import Engine
from app.server.engines.profiles import PROFILES
from app.server.engines.scripted import ScriptedEngine, ScriptError, load_script

__all__ = ["build_engine", "build_parser", "main", "server_options"]

DEFAULT_PORT = 8765
ENGINES = ("scripted", "chat", "gguf")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line, not a usage dump: `slipstream serve: error: ...` and status 2."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The `serve` argument parser."""
    p = _Parser(
        prog="slipstream serve",
        description="Run the local Responses server: WebSocket mode and HTTP/SSE on /v1/responses.",
        epilog=f"The token may also come from the environment variable {TOKEN_ENV} (how the app passes "
        "it to a server of its own: a command line is visible to every local user). Exit status: 0 "
        "stopped by SIGINT/SIGTERM, 2 bad arguments or cannot listen.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port (0 = ephemeral; default: %(default)s)"
    )
    p.add_argument(
        "--token",
        default=os.environ.get(TOKEN_ENV) or None,
        help=f"bearer token clients must send (default: ${TOKEN_ENV}, else a fresh one, written to a file)",
    )
    p.add_argument("--engine", choices=ENGINES, default="scripted", help="what answers (default: scripted)")
    p.add_argument("--script", type=Path, help="scripted engine: JSON list of turns to follow")
    p.add_argument(
        "--rate", type=float, default=1000.0, help="scripted engine: tokens/s, bursts at 4x (0 = unpaced)"
    )
    p.add_argument(
        "--upstream",
        action="append",
        default=[],
        metavar="URL",
        help="chat engine: Chat Completions server, e.g. http://127.0.0.1:8080 (repeat for replicas; "
        "each connection is pinned to one)",
    )
    p.add_argument(
        "--upstream-model", help="chat engine: upstream model name (default: the request's, if listed)"
    )
    p.add_argument(
        "--upstream-key-env",
        metavar="VAR",
        help="chat engine: environment variable holding the upstream API key",
    )
    p.add_argument(
        "--upstream-profile",
        choices=sorted(PROFILES),
        help="chat engine: backend quirks to apply (default: detected from GET /v1/models)",
    )
    p.add_argument(
        "--upstream-timeout", type=float, default=300.0, help="chat engine: seconds to wait for upstream data"
    )
    p.add_argument(
        "--force-tool",
        metavar="NAME",
        help="chat engine: make the first step after each user message call tool NAME (sent upstream "
        "as a named tool_choice, which llama.cpp servers enforce with a grammar; for demos and tests "
        "with tiny models)",
    )
    p.add_argument("--model-file", type=Path, help="gguf engine: the GGUF model file to run in-process")
    p.add_argument(
        "--max-age", type=float, default=3600.0, help="connection age limit in seconds (default: 3600)"
    )
    p.add_argument("--max-frame-bytes", type=int, default=16 * 1024 * 1024, help=argparse.SUPPRESS)
    p.add_argument(
        "--ws-deflate",
        action="store_true",
        help="allow permessage-deflate on WebSockets (off by default: on loopback it costs throughput "
        "and saves nothing; it can pay over slow remote links)",
    )
    p.add_argument(
        "--no-websocket",
        action="store_true",
        help="HTTP/SSE only: answer WebSocket upgrades with 426, like servers without WebSocket mode",
    )
    p.add_argument("--no-coalesce", action="store_true", help=argparse.SUPPRESS)  # bench baseline only
    p.add_argument(  # 0: one event per engine delta (bench baselines that count frames)
        "--coalesce-chars", type=int, default=None, help=argparse.SUPPRESS
    )
    p.add_argument(
        "--allow-remote", action="store_true", help="allow a non-loopback --host (needs an explicit --token)"
    )
    return p


def build_engine(args: argparse.Namespace) -> Engine:
    """The engine the arguments ask for; ScriptError/ValueError on bad settings."""
    engine = getattr(args, "engine", "scripted")
    if engine == "chat":
        return _chat_engine(args)
    if engine == "gguf":
        return _gguf_engine(args)
    if args.rate < 0:
        raise ValueError("--rate must be >= 0")
    script = load_script(args.script) if args.script is not None else None
    return ScriptedEngine(rate_tps=args.rate, burst_tps=args.rate * 4, script=script)


def _chat_engine(args: argparse.Namespace) -> Engine:
    from app.server.engines.chat_completions import ChatCompletionsEngine  # httpx loads only when used

    if not args.upstream:
        raise ValueError("--engine chat needs --upstream URL (e.g. http://127.0.0.1:8080 for llama-server)")
    key = None
    if args.upstream_key_env:
        key = os.environ.get(args.upstream_key_env)
        if not key:
            raise ValueError(
                f"--upstream-key-env: the environment variable {args.upstream_key_env} is not set"
            )
    if args.upstream_timeout <= 0:
        raise ValueError("--upstream-timeout must be > 0")
    return ChatCompletionsEngine(
        args.upstream,
        model=args.upstream_model,
        api_key=key,
        profile=args.upstream_profile,
        read_timeout_s=args.upstream_timeout,
        force_tool=args.force_tool,
    )


def _gguf_engine(args: argparse.Namespace) -> Engine:
    from app.server.engines.llama_cpp import LlamaCppEngine, missing_reason

    if args.model_file is None:
        raise ValueError("--engine gguf needs --model-file PATH.gguf")
    if not args.model_file.is_file():
        raise ValueError(f"--model-file: no such file: {args.model_file}")
    why = missing_reason()
    if why:
        raise ValueError(why)
    return LlamaCppEngine(args.model_file)


def server_options(args: argparse.Namespace) -> dict[str, Any]:
    """`run_server`'s settings from the parsed arguments (shared with the in-process host,
    app.server.inprocess, so the app's own scripted engine behaves as `slipstream serve` does)."""
    options: dict[str, Any] = {
        "max_age_s": args.max_age,
        "max_frame_bytes": args.max_frame_bytes,
        "ws_deflate": args.ws_deflate,
        "websocket": not args.no_websocket,
        "coalesce_writes": not args.no_coalesce,
    }
    if args.coalesce_chars is not None:
        options["coalesce_chars"] = max(0, args.coalesce_chars)
    return options


def _fail(message: str) -> int:
    print(f"slipstream serve: error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str]) -> int:
    """Parse `argv`, start the server and serve until SIGINT/SIGTERM. Returns the exit code."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse already printed why
        return int(exc.code or 0)
    os.environ.pop(TOKEN_ENV, None)  # read once; not passed on to anything this server starts
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
    async with run_server(engine, host=args.host, port=args.port, token=token, **server_options(args)) as srv:
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
