"""`slipstream watch PATH [--endpoint URL]`: live context sync, headless.

Prints one JSON line per push, naming each file and how it changed:

    {"kind": "update", "files": [{"path": "b.py", "change": "renamed", "from": "a.py"},
     {"path": "c.py", "change": "changed"}], "count": 2, "bytes": 812, "response_id": "resp_...",
     "latency_ms": 3.1, "ok": true}

`change` is one of added, changed, deleted, renamed (with "from"), excluded; a snapshot (the first
push, and after the chain was rebuilt) lists its files with "snapshot". Without --endpoint it starts
a local scripted `slipstream serve` of its own, stopped again on every way out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
from pathlib import Path
from typing import Any

from app.cli.common import (
    FAILED,
    GONE,
    OK,
    USAGE,
    CliError,
    Command,
    Parser,
    int_at_least,
    number_at_least,
    parse,
    run_command,
)
from app.services import endpoints
from app.services.lifetime import close_within
from app.services.session import ResponsesSession
from app.services.workspace import ContextSync, Push, Workspace

CLOSE_S = 1.5  # each part gets this long to close
ROOT_CHECK_S = 0.25  # how often the folder is checked for being moved or deleted

STATUS = (
    "Exit status: 0 stopped by Ctrl-C/SIGTERM (or --once pushed); 1 a push failed with --once, or no "
    "endpoint; 2 bad options or PATH is not a folder; 3 the folder was moved or deleted while watched; "
    "141 stdout closed by its reader."
)


def _parser() -> argparse.ArgumentParser:
    p = Parser(prog="slipstream watch", description="Keep a model's view of PATH current.", epilog=STATUS)
    p.add_argument("path", nargs="?", default=".")
    p.add_argument("--endpoint", help="ws(s)://host/v1/responses (default: start a local scripted server)")
    p.add_argument("--token", default=None)
    p.add_argument("--model", default="scripted")
    p.add_argument(
        "--budget", type=int_at_least(1), default=32_000, help="token budget of the initial snapshot"
    )
    p.add_argument("--quiet-ms", type=number_at_least(0), default=50.0, help="quiet period before a push")
    p.add_argument(
        "--max-window-ms",
        type=number_at_least(0, above=True),
        default=1000.0,
        help="longest a batch of changes waits",
    )
    p.add_argument("--polling", action="store_true", help="poll instead of inotify")
    p.add_argument("--once", action="store_true", help="push the snapshot and exit")
    return p


def push_line(p: Push) -> dict[str, Any]:
    """The JSON object `watch` prints for one push."""
    if p.kind == "update":
        files = [
            {"path": c.path, "change": c.kind, **({"from": c.renamed_from} if c.renamed_from else {})}
            for c in p.changes
        ]
    else:
        files = [{"path": path, "change": "snapshot"} for path in p.paths]
    line: dict[str, Any] = {
        "kind": p.kind,
        "files": files,
        "count": p.files,
        "bytes": p.bytes,
        "response_id": p.response_id,
        "latency_ms": round(p.latency_ms, 2),
        "ok": p.ok,
    }
    if p.error:
        line["error"] = p.error
    return line


def _identity(root: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(root)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if root.is_dir() else None


async def _root_lost(
    root: Path, first: tuple[int, int] | None, poke: asyncio.Event, interval: float = ROOT_CHECK_S
) -> None:
    """Returns once `root` no longer is the folder `first` identified (moved, deleted, replaced)."""
    while first is not None and _identity(root) == first:
        poke.clear()
        try:
            await asyncio.wait_for(poke.wait(), interval)
        except TimeoutError:
            pass


async def _watch(cmd: Command, args: argparse.Namespace) -> int:
    root = Path(args.path).expanduser().resolve()
    identity = _identity(root)  # taken first: a move at any later moment is noticed
    if identity is None:
        raise CliError(f"{root} is not a folder", USAGE)
    if args.max_window_ms < args.quiet_ms:
        raise CliError(
            f"--max-window-ms ({args.max_window_ms:g}) must not be shorter than --quiet-ms "
            f"({args.quiet_ms:g})",
            USAGE,
        )
    try:
        resolved = await endpoints.from_command_line(args.endpoint, args.token, args.model)
    except endpoints.EndpointUnavailable as exc:
        raise CliError(str(exc)) from None
    ws = Workspace(
        root,
        budget_tokens=args.budget,
        quiet_s=args.quiet_ms / 1000,
        max_window_s=args.max_window_ms / 1000,
        force_polling=args.polling,
    )
    session = ResponsesSession(resolved.endpoint, rebuild=ws.rebuild)
    poke = asyncio.Event()

    def on_push(p: Push) -> None:
        cmd.out.write(json.dumps(push_line(p)) + "\n")

    def on_notice(kind: str, text: str) -> None:
        cmd.error(f"[{kind}] {text}")
        poke.set()  # "removed or moved" and friends: look at the folder now

    ws.notice.connect(on_notice)
    sync = ContextSync(ws, session, on_push=on_push)
    lost: asyncio.Task[None] | None = None
    try:
        try:
            await ws.start(watch=not args.once)
        except FileNotFoundError:
            raise CliError(f"the folder {root} was moved or deleted", GONE) from None
        ok = await sync.push()
        if args.once:
            return OK if ok else FAILED
        cmd.error(f"[info] watching {root} ({ws.watch_mode})")
        lost = asyncio.ensure_future(_root_lost(root, identity, poke))
        await lost
        raise CliError(f"the folder {root} was moved or deleted; stopped watching", GONE)
    finally:
        if lost is not None:
            lost.cancel()
        await close_within(sync.aclose(), CLOSE_S, "the context sync")
        await close_within(ws.aclose(), CLOSE_S, "the watcher")
        await close_within(session.aclose(), CLOSE_S, "the session")
        if resolved.server is not None:
            await close_within(resolved.server.aclose(), CLOSE_S, "the local server")


def main(argv: list[str]) -> int:
    args = parse(_parser(), argv)
    if isinstance(args, int):
        return args
    # Ctrl-C and SIGTERM are how watching normally ends: status 0.
    return run_command(
        "watch", lambda cmd: _watch(cmd, args), on_signal={int(signal.SIGINT): OK, int(signal.SIGTERM): OK}
    )
