"""Fuzz: 10,000 generated frames against the codec, both protocol sessions and a live server.

Cases are drawn from hypothesis strategies (tests/reliability/fuzzing.py): valid, mutated,
truncated, byte-flipped, wrongly typed, deeply nested and huge frames. derandomize=True: the same
cases every run, so CI is reproducible; `make soak` runs the same checks with fresh randomness.
"""

from __future__ import annotations

import json

import pytest

from app.protocol.codec import decode_client, decode_server
from app.protocol.errors import RemoteProtocolError
from tests.reliability.fuzzing import LiveClient, LiveServer, check_client_frame, check_server_frame, run_fuzz

CLIENT_CASES, SERVER_CASES, LIVE_CASES = 4_000, 3_000, 3_000


def test_client_frames_against_codec_and_server_session() -> None:
    """4,000 client frames: codec errors only, every refused frame answered, the session usable after."""
    counts = run_fuzz(CLIENT_CASES, 0, 0)
    assert counts.codec_client >= CLIENT_CASES


def test_server_frames_against_codec_and_client_session() -> None:
    """3,000 server frames: the client core raises RemoteProtocolError for junk and nothing else."""
    counts = run_fuzz(0, SERVER_CASES, 0)
    assert counts.codec_server >= SERVER_CASES


def test_client_frames_against_a_live_server() -> None:
    """3,000 frames on one socket: each answered or closed cleanly, never a hang or a dropped socket."""
    counts = run_fuzz(0, 0, LIVE_CASES)
    assert counts.live >= LIVE_CASES
    assert counts.live_answered + counts.live_closed >= LIVE_CASES
    assert counts.live_answered > counts.live_closed  # most bad frames leave the connection usable


DEEP = b'{"type":"response.create","input":' + b"[" * 30_000 + b"]" * 30_000 + b"}"
BAD_UTF8 = b'{"type": "response.create", "model": "\x80\xff"}'


@pytest.mark.parametrize("raw", [DEEP, BAD_UTF8], ids=["deeply-nested", "invalid-utf8"])
def test_regressions_found_by_the_fuzzer(raw: bytes) -> None:
    """Deep nesting (RecursionError) and bad UTF-8 (UnicodeDecodeError) are protocol errors, not crashes."""
    for decode in (decode_client, decode_server):
        with pytest.raises(RemoteProtocolError):
            decode(raw)
    check_client_frame(raw)
    check_server_frame(raw)


def test_deeply_nested_frame_on_a_live_server_is_answered() -> None:
    """The live server answers a 60 KB frame nested 30,000 deep with an error and keeps the socket."""
    with LiveServer.running() as srv:
        peer = LiveClient(srv)
        try:
            peer.exchange(DEEP)
            peer.exchange(json.dumps({"type": "response.create", "model": "m", "generate": False}).encode())
        finally:
            peer.close()
    assert peer.answered == 2 and peer.closed_cleanly == 0
