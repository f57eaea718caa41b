"""`slipstream ask "text" [--endpoint URL] [--model M]`: one turn, the answer streamed to stdout.

Without --endpoint it starts a `slipstream serve` (scripted engine) of its own and stops it after.
The key for a remote endpoint comes from --token, $SLIPSTREAM_TOKEN or $OPENAI_API_KEY.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from app.protocol.events import (
    FunctionCallArgumentsDelta,
    OutputItemAdded,
    OutputTextDelta,
    ReasoningContentDelta,
    ReasoningTextDelta,
    ServerEvent,
)
from app.services.cli_common import EndpointUnavailable, endpoint_from_args
from app.services.session import Endpoint, ResponsesSession


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="slipstream ask", description="Run one turn and stream the answer.")
    p.add_argument("text", help="what to ask ('-' reads stdin)")
    p.add_argument(
        "--endpoint",
        help="ws(s)://host/v1/responses (WebSocket, HTTP fallback) or http(s)://host/v1/responses (HTTP/SSE "
        "only); default: start a local scripted server",
    )
    p.add_argument("--model", default=None, help="model name (default: the server's; 'scripted' locally)")
    p.add_argument("--token", default=None, help="bearer token / API key")
    p.add_argument("--instructions", default=None)
    return p


async def _ask(args: argparse.Namespace) -> int:
    text = sys.stdin.read() if args.text == "-" else args.text
    try:
        url, token, server = await endpoint_from_args("ask", args.endpoint, args.token)
    except EndpointUnavailable:
        return 1
    session = ResponsesSession(Endpoint(url, token, model=args.model or "scripted"))
    out = sys.stdout

    def on_event(ev: ServerEvent) -> None:
        if isinstance(ev, OutputTextDelta):
            out.write(ev.delta)
            out.flush()
        elif isinstance(ev, (ReasoningTextDelta, ReasoningContentDelta)):
            sys.stderr.write(ev.delta)
        elif isinstance(ev, OutputItemAdded) and ev.item.get("type") == "function_call":
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
        await session.aclose()
        if server is not None:
            await server.aclose()
    if any(i.get("type") == "function_call" for i in result.output):
        out.write(")")
    out.write("\n")
    out.flush()
    if not result.ok:
        print(f"slipstream ask: {result.error}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        return asyncio.run(_ask(args))
    except KeyboardInterrupt:
        return 130
