"""`slipstream watch PATH [--endpoint URL]`: live context sync, headless.

Prints one JSON line per push: {"kind", "files", "bytes", "response_id", "latency_ms", "ok"}.
Without --endpoint it starts a local scripted `slipstream serve`. Stops on Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from pathlib import Path

from app.services.cli_common import EndpointUnavailable, endpoint_from_args
from app.services.session import Endpoint, ResponsesSession
from app.services.workspace import ContextSync, Push, Workspace


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="slipstream watch", description="Keep a model's view of PATH current.")
    p.add_argument("path", nargs="?", default=".")
    p.add_argument("--endpoint", help="ws(s)://host/v1/responses (default: start a local scripted server)")
    p.add_argument("--token", default=None)
    p.add_argument("--model", default="scripted")
    p.add_argument("--budget", type=int, default=32_000, help="token budget of the initial snapshot")
    p.add_argument("--quiet-ms", type=float, default=50.0)
    p.add_argument("--max-window-ms", type=float, default=1000.0)
    p.add_argument("--polling", action="store_true", help="poll instead of inotify")
    p.add_argument("--once", action="store_true", help="push the snapshot and exit")
    return p


async def _watch(args: argparse.Namespace) -> int:
    root = Path(args.path).resolve()
    if not root.is_dir():
        print(f"slipstream watch: {root} is not a folder", file=sys.stderr)
        return 2
    try:
        url, token, server = await endpoint_from_args("watch", args.endpoint, args.token)
    except EndpointUnavailable:
        return 1
    ws = Workspace(root, budget_tokens=args.budget, quiet_s=args.quiet_ms / 1000,
                   max_window_s=args.max_window_ms / 1000, force_polling=args.polling)
    session = ResponsesSession(Endpoint(url, token, model=args.model), rebuild=ws.rebuild)

    def on_push(p: Push) -> None:
        line = {"kind": p.kind, "files": p.files, "bytes": p.bytes, "response_id": p.response_id,
                "latency_ms": round(p.latency_ms, 2), "ok": p.ok}
        if p.error:
            line["error"] = p.error
        print(json.dumps(line), flush=True)

    ws.notice.connect(lambda kind, text: print(f"[{kind}] {text}", file=sys.stderr, flush=True))
    sync = ContextSync(ws, session, on_push=on_push)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await ws.start(watch=not args.once)
        await sync.push()
        if not args.once:
            print(f"[info] watching {root} ({ws.watch_mode})", file=sys.stderr, flush=True)
            await stop.wait()
    finally:
        await sync.aclose()
        await ws.aclose()
        await session.aclose()
        if server is not None:
            await server.aclose()
    return 0


def main(argv: list[str]) -> int:
    return asyncio.run(_watch(_parser().parse_args(argv)))
