"""`slipstream ask "text" [--endpoint URL] [--model M]`: one turn, the answer streamed to stdout.

Without --endpoint it starts a `slipstream serve` (scripted engine) of its own and stops it after.
The key for a remote endpoint comes from --token, $SLIPSTREAM_TOKEN or $OPENAI_API_KEY.
"""

from __future__ import annotations

import argparse
import sys

from app.cli.common import (
    FAILED,
    OK,
    STATUS_HELP,
    USAGE,
    CliError,
    Command,
    Parser,
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
    p.add_argument("--token", default=None, help="bearer token / API key")
    p.add_argument("--instructions", default=None)
    return p


async def _ask(cmd: Command, args: argparse.Namespace, text: str) -> int:
    try:
        resolved = await endpoints.from_command_line(args.endpoint, args.token, args.model)
    except endpoints.EndpointUnavailable as exc:
        raise CliError(str(exc)) from None
    session = ResponsesSession(resolved.endpoint)
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
