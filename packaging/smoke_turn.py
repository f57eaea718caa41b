"""Start a `slipstream serve` binary, run one scripted turn over its WebSocket, check the answer.

Used by packaging/ci_smoke.sh on the *installed* package (`/usr/bin/slipstream serve`): it proves the
bundled server starts, authenticates, and streams a complete response. Runs with any Python that has
`websockets` (the build venv). Exit 0 on a completed turn with text, 1 otherwise.

    .venv/bin/python packaging/smoke_turn.py /usr/bin/slipstream
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import secrets
import sys
import time

LISTEN_RE = re.compile(r"listening on (ws://\S+)")
TERMINAL = {"response.completed", "response.failed", "response.incomplete", "error"}
DIFF = "diff --git a/a.py b/a.py\n--- a/a.py\n+++ b/a.py\n@@ -1 +1,2 @@\n-x = 1\n+x = 2\n+y = 3\n"


async def run_turn(url: str, token: str, question: str, timeout: float) -> tuple[str, str]:
    """(terminal event type, streamed text) of one response.create on a fresh connection."""
    from websockets.asyncio.client import connect

    frame = {
        "type": "response.create",
        "model": "scripted",
        "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": DIFF}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": question}]},
        ],
    }
    text: list[str] = []
    async with asyncio.timeout(timeout), connect(
        url, additional_headers={"Authorization": f"Bearer {token}"}, max_size=None
    ) as ws:
        await ws.send(json.dumps(frame))
        async for raw in ws:
            event = json.loads(raw)
            kind = event.get("type", "")
            if kind == "response.output_text.delta":
                text.append(event.get("delta", ""))
            if kind in TERMINAL:
                return kind, "".join(text)
    return "closed", "".join(text)


async def main_async(binary: list[str], question: str, timeout: float) -> int:
    token = secrets.token_urlsafe(16)
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *binary, "serve", "--host", "127.0.0.1", "--port", "0", "--token", token, "--engine", "scripted",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    try:
        url = None
        async with asyncio.timeout(timeout):
            while url is None:
                line = (await proc.stdout.readline()).decode(errors="replace")
                if not line:
                    print(f"smoke_turn: server exited ({await proc.wait()}) before listening", file=sys.stderr)
                    return 1
                print(f"  server: {line.rstrip()}")
                m = LISTEN_RE.search(line)
                url = m.group(1) if m else None
        started = time.perf_counter() - t0
        kind, text = await run_turn(url, token, question, timeout)
        took = time.perf_counter() - t0 - started
        print(f"smoke_turn: server up in {started:.2f} s; turn ended with {kind} in {took:.2f} s, "
              f"{len(text)} chars: {text[:120]!r}")
        return 0 if kind == "response.completed" and text.strip() else 1
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one scripted turn against a `slipstream serve` binary")
    parser.add_argument("binary", nargs="+", help="command that runs slipstream, e.g. /usr/bin/slipstream")
    parser.add_argument("--question", default="What changed?")
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args(argv)
    return asyncio.run(main_async(args.binary, args.question, args.timeout))


if __name__ == "__main__":
    sys.exit(main())
