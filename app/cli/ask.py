"""`slipstream ask "text" [--path DIR] [--endpoint URL] [--model M]`: one turn, the answer streamed to stdout.

With --path the project's snapshot goes first, built exactly as the app builds a fresh chain's first
context (the `Workspace`: ProjectFS reads, ignore rules and the secret scanner, the ranking and the
token budget), then the question. Without --endpoint it starts a `slipstream serve` (scripted engine)
of its own and stops it after. The key for --endpoint comes from --token, $SLIPSTREAM_TOKEN, the token
file a local `slipstream serve` wrote (a loopback endpoint), or $OPENAI_API_KEY.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.cli.common import (
    FAILED,
    OK,
    STATUS_HELP,
    USAGE,
    CliError,
    Command,
    Parser,
    int_at_least,
    parse,
    read_stdin_text,
    run_command,
)
from app.protocol.events import (
    FunctionCallArgumentsDelta,
    OutputItemAdded,
    OutputTextDelta,
    ReasoningContentDelta,
    ReasoningTextDelta,
    ServerEvent,
)
from app.services import endpoints
from app.services.lifetime import close_within
from app.services.session import ResponsesSession
from app.services.workspace import Workspace

CLOSE_S = 1.5  # each of the session and the server gets this long to close


def _parser() -> argparse.ArgumentParser:
    p = Parser(prog="slipstream ask", description="Run one turn and stream the answer.", epilog=STATUS_HELP)
    p.add_argument("text", help="what to ask ('-' reads stdin, UTF-8)")
    p.add_argument(
        "--endpoint",
        help="ws(s)://host/v1/responses (WebSocket, HTTP fallback) or http(s)://host/v1/responses (HTTP/SSE "
        "only); default: start a local scripted server",
    )
    p.add_argument("--model", default=None, help="model name (default: the server's; 'scripted' locally)")
    p.add_argument(
        "--token",
        default=None,
        help="bearer token / API key (default: $SLIPSTREAM_TOKEN, a local serve's token file for a "
        "loopback endpoint, then $OPENAI_API_KEY)",
    )
    p.add_argument(
        "--path",
        type=Path,
        default=None,
        metavar="DIR",
        help="send this project folder's snapshot before the question (ignore rules and the secret "
        "scanner apply)",
    )
    p.add_argument(
        "--budget",
        type=int_at_least(1000),
        default=32_000,
        metavar="TOKENS",
        help="token budget of the project snapshot (default 32000)",
    )
    p.add_argument("--instructions", default=None)
    return p


async def _ask(cmd: Command, args: argparse.Namespace, text: str) -> int:
    workspace = None
    if args.path is not None:
        root = args.path.expanduser()
        if not root.is_dir():
            raise CliError(f"{root} is not a folder", USAGE)
        workspace = Workspace(root, budget_tokens=args.budget)
        try:
            await workspace.start(watch=False)  # the index, through ProjectFS and its rules
        except BaseException:
            await workspace.aclose()
            raise
    try:
        return await _ask_with(cmd, args, text, workspace)
    finally:
        if workspace is not None:
            await close_within(workspace.aclose(), CLOSE_S, "the project index")


async def _ask_with(cmd: Command, args: argparse.Namespace, text: str, workspace: Workspace | None) -> int:
    try:
        resolved = await endpoints.from_command_line(args.endpoint, args.token, args.model)
    except endpoints.EndpointUnavailable as exc:
        raise CliError(str(exc)) from None
    # With a project, the session's fresh-chain hook puts the snapshot before the question.
    session = ResponsesSession(
        resolved.endpoint, rebuild=workspace.rebuild if workspace is not None else None
    )
    out = cmd.out
    calls = 0

    def on_event(ev: ServerEvent) -> None:
        nonlocal calls
        if isinstance(ev, OutputTextDelta):
            out.write(ev.delta)
        elif isinstance(ev, (ReasoningTextDelta, ReasoningContentDelta)):
            sys.stderr.write(ev.delta)
        elif isinstance(ev, OutputItemAdded) and ev.item.get("type") == "function_call":
            calls += 1
            out.write(f"\n[tool call] {ev.item.get('name')}(")
        elif isinstance(ev, FunctionCallArgumentsDelta):
            out.write(ev.delta)

    def on_retry(reason: str) -> None:
        print(f"\n[slipstream] {reason}", file=sys.stderr)

    try:
        settings = {"instructions": args.instructions} if args.instructions else None
        msg = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
        result = await session.run_turn([msg], settings=settings, on_event=on_event, on_retry=on_retry)
        snap = workspace.last_snapshot if workspace is not None else None
        if snap is not None:
            print(
                f"[slipstream] sent the project: {len(snap.paths)} files in full, {len(snap.summarised)} listed "
                f"(~{snap.tokens:,} tokens)",
                file=sys.stderr,
            )
            for note in snap.notices:
                print(f"[slipstream] {note}", file=sys.stderr)
    finally:
        await close_within(session.aclose(), CLOSE_S, "the session")
        if resolved.server is not None:
            await close_within(resolved.server.aclose(), CLOSE_S, "the local server")
    out.write((")" if calls else "") + "\n")
    if not result.ok:
        cmd.error(result.error or f"the response {result.status}")
        return FAILED
    return OK


def main(argv: list[str]) -> int:
    args = parse(_parser(), argv)
    if isinstance(args, int):
        return args
    if args.text == "-":
        try:
            text = read_stdin_text()
        except CliError as exc:
            print(f"slipstream ask: {exc}", file=sys.stderr)
            return exc.status
        except KeyboardInterrupt:
            return 130
    else:
        text = args.text
    if not text.strip():
        print("slipstream ask: nothing to ask (the text is empty)", file=sys.stderr)
        return USAGE
    return run_command("ask", lambda cmd: _ask(cmd, args, text))
