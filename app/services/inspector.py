"""The context inspector's model: what went on the wire for every turn and every context push.

`ResponsesSession` reports each request it sends (`record_send`: the frame as sent, the transport, why a
fresh chain started, and the lane's whole transcript, i.e. what a stateless client would have sent) and
each request's end (`record_end`: response id, usage, time to first token). One `SendRecord` per request:
the items it carried (context diffs kept as diffs), its bytes against a full resend's, the tokens the
server read new and from its cache (`usage.input_tokens_details.cached_tokens`), and the chain it
extended (`previous_response_id` -> `response_id`). Chain rebuilds are counted with their cause.

Memory stays bounded in a session of any length: the last `keep_frames` records keep their items; older
ones keep only their figures (`items is None`), and at most `keep_records` records are kept at all (the
session totals still count every request). Plain data, no Qt: the UI paints `records` and listens to
`changed`.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from app.context.ledger import UPDATE_MARKER
from app.protocol.codec import encode_json
from app.protocol.inputs import message_text
from app.services.signals import Signal

__all__ = [
    "DiffLine",
    "Inspector",
    "SendRecord",
    "SentItem",
    "compact",
    "describe_item",
    "diff_lines",
    "human_bytes",
    "request_summary",
]

KEEP_FRAMES = 30
KEEP_RECORDS = 2000
SNAPSHOT_MARKER_PREFIX = "[slipstream context"  # snapshot and update messages both start with it
Item = Mapping[str, Any]
LineKind = Literal["add", "del", "hunk", "file", "plain"]
FIRST_CAUSE = "first request of this conversation"


@dataclass(frozen=True, slots=True)
class SentItem:
    """One input item of a request, as the inspector shows it."""

    kind: str  # "your message", "context update", "context snapshot", "tool output", "tool call", ...
    title: str  # one line
    text: str  # the whole text (a context update's diffs verbatim)
    size: int  # bytes of the item's JSON
    diff: bool = False  # the text holds unified diff hunks (shown as a diff)


@dataclass(slots=True)
class SendRecord:
    """One request on the wire (a turn, or a context push with generate:false)."""

    seq: int
    kind: Literal["turn", "push"]
    transport: str  # "websocket" | "http"
    at: float  # wall-clock time it was sent
    previous_response_id: str | None  # the chain it extended; None: a fresh chain (full input)
    bytes_sent: int
    full_bytes: int  # what a stateless client would have sent: the whole conversation
    input_items: int
    fresh_cause: str = ""  # why a fresh chain started ("" when it extended one)
    items: tuple[SentItem, ...] | None = ()  # None once trimmed (only the figures are kept)
    response_id: str | None = None
    status: str = "sending"  # sending | completed | incomplete | failed | cancelled
    input_tokens: int | None = None
    cached_tokens: int | None = None
    output_tokens: int | None = None
    ttft_ms: float | None = None
    error: str = ""
    kept_chain: bool = False  # stopped, and the chain continues from it (no full resend next time)

    @property
    def fresh(self) -> bool:
        return self.previous_response_id is None

    @property
    def new_tokens(self) -> int | None:
        """Input tokens the server had to read anew (not from its cache)."""
        if self.input_tokens is None:
            return None
        return max(self.input_tokens - (self.cached_tokens or 0), 0)


@dataclass(frozen=True, slots=True)
class DiffLine:
    text: str
    kind: LineKind


def diff_lines(text: str) -> list[DiffLine]:
    """Lines of `text` with their role in a unified diff. Only lines inside a hunk (after `@@`) are
    additions or deletions, so a file's full content with `- list` lines is never painted as a diff."""
    lines = text.split("\n")
    out: list[DiffLine] = []
    in_hunk = False
    for n, line in enumerate(lines):
        header = (line.startswith("--- ") and n + 1 < len(lines) and lines[n + 1].startswith("+++ ")) or (
            line.startswith("+++ ") and n > 0 and lines[n - 1].startswith("--- ")
        )
        if line.startswith("@@"):
            in_hunk = True
            out.append(DiffLine(line, "hunk"))
        elif header:
            in_hunk = False
            out.append(DiffLine(line, "file"))
        elif in_hunk and line.startswith("+"):
            out.append(DiffLine(line, "add"))
        elif in_hunk and line.startswith("-"):
            out.append(DiffLine(line, "del"))
        elif in_hunk and line.startswith((" ", "\\")):
            out.append(DiffLine(line, "plain"))
        else:
            in_hunk = False
            out.append(DiffLine(line, "plain"))
    return out


def _first_line(text: str, limit: int = 90) -> str:
    line = text.strip().split("\n", 1)[0]
    return line if len(line) <= limit else line[: limit - 1] + "…"


def describe_item(item: Item) -> SentItem:
    """How one input item reads in the inspector."""
    size = len(encode_json(item))
    kind = item.get("type")
    if kind == "message" or (kind is None and "role" in item):
        role = str(item.get("role", ""))
        text = message_text(item)
        if text.startswith(UPDATE_MARKER):
            files = text.count("\n@@") + text.count("\n--- ")
            return SentItem(
                "context update",
                _first_line(text[len(UPDATE_MARKER) :]) or "changed files",
                text,
                size,
                diff="\n@@" in text or files > 0,
            )
        if text.startswith(SNAPSHOT_MARKER_PREFIX):
            return SentItem(
                "context snapshot",
                _first_line(text.split("\n", 1)[1] if "\n" in text else text),
                text,
                size,
                diff="\n@@" in text,
            )
        label = {
            "user": "your message",
            "assistant": "assistant message",
            "system": "system message",
            "developer": "instructions",
        }.get(role, f"{role} message")
        return SentItem(label, _first_line(text), text, size)
    if kind == "function_call_output":
        out = item.get("output")
        text = out if isinstance(out, str) else json.dumps(out, indent=2)
        return SentItem(
            "tool output",
            f"{item.get('call_id', '')}: {_first_line(text, 70)}",
            text,
            size,
            diff="\n@@" in text,
        )
    if kind == "function_call":
        args = str(item.get("arguments", ""))
        pretty = args
        try:
            parsed = json.loads(args)
            pretty = json.dumps(parsed, indent=2)
            patch = parsed.get("patch") if isinstance(parsed, dict) else None
            if isinstance(patch, str):
                pretty = patch
        except (ValueError, TypeError):
            pass
        return SentItem(
            "tool call",
            f"{item.get('name', '')}({_first_line(args, 60)})",
            pretty,
            size,
            diff="\n@@" in pretty or pretty.startswith("@@") or "*** Begin Patch" in pretty,
        )
    if kind == "reasoning":
        return SentItem(
            "reasoning", "the model's reasoning (carried for the chain)", json.dumps(item, indent=2), size
        )
    return SentItem(str(kind or "item"), _first_line(json.dumps(item)), json.dumps(item, indent=2), size)


@dataclass(slots=True)
class _Totals:
    requests: int = 0
    bytes_sent: int = 0
    full_bytes: int = 0
    input_tokens: int = 0
    cached_tokens: int = 0
    rebuilds: dict[str, int] = field(default_factory=dict)


class Inspector:
    """Records every request (see module docstring)."""

    def __init__(
        self,
        *,
        keep_frames: int = KEEP_FRAMES,
        keep_records: int = KEEP_RECORDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keep_frames = keep_frames
        self._records: deque[SendRecord] = deque(maxlen=keep_records)
        self._clock = clock
        self._seq = 0
        self._totals = _Totals()
        self.changed: Signal[[SendRecord]] = Signal("inspector_changed")

    # ---- feeding ---------------------------------------------------------------------------------

    def record_send(
        self, frame: bytes, *, transport: str, fresh_cause: str = "", transcript: Sequence[Item] = ()
    ) -> SendRecord:
        """One request as it went out. `transcript`: the lane's whole conversation at that moment,
        the input a client without `previous_response_id` would have had to send."""
        try:
            body = json.loads(frame)
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        raw_input = body.get("input")
        items = raw_input if isinstance(raw_input, list) else []
        prev = body.get("previous_response_id")
        prev = prev if isinstance(prev, str) else None
        sent_input = len(encode_json(items))
        full_input = len(encode_json(list(transcript))) if transcript else sent_input
        # the same request without previous_response_id and with every item of the conversation
        full_bytes = max(len(frame) - sent_input + full_input - (len(prev) + 26 if prev else 0), len(frame))
        self._seq += 1
        cause = ""
        if prev is None:
            cause = fresh_cause or (
                FIRST_CAUSE
                if self._totals.requests == 0
                else "the request settings changed or the session was reopened"
            )
        rec = SendRecord(
            seq=self._seq,
            kind="push" if body.get("generate") is False else "turn",
            transport=transport,
            at=self._clock(),
            previous_response_id=prev,
            bytes_sent=len(frame),
            full_bytes=full_bytes,
            input_items=len(items),
            fresh_cause=cause,
            items=tuple(describe_item(i) for i in items if isinstance(i, Mapping)),
        )
        t = self._totals
        t.requests += 1
        t.bytes_sent += rec.bytes_sent
        t.full_bytes += rec.full_bytes
        if prev is None and cause != FIRST_CAUSE:
            t.rebuilds[cause] = t.rebuilds.get(cause, 0) + 1
        self._records.append(rec)
        self._trim()
        self.changed.emit(rec)
        return rec

    def record_end(
        self,
        *,
        status: str,
        response_id: str | None = None,
        usage: Mapping[str, Any] | None = None,
        ttft_ms: float | None = None,
        error: str = "",
        kept_chain: bool = False,
    ) -> SendRecord | None:
        """The last request ended (or, after Stop, the stopped response finished on the server)."""
        if not self._records:
            return None
        rec = self._records[-1]
        if response_id is not None and rec.response_id not in (None, response_id):
            return None  # not this request's end
        rec.status = status
        rec.response_id = response_id or rec.response_id
        rec.error = error or rec.error
        rec.kept_chain = kept_chain or rec.kept_chain
        if ttft_ms is not None:
            rec.ttft_ms = ttft_ms
        if usage:
            details = usage.get("input_tokens_details") or {}
            inp = int(usage.get("input_tokens") or 0)
            cached = int(details.get("cached_tokens") or 0) if isinstance(details, Mapping) else 0
            if rec.input_tokens is None:  # counted once per request
                self._totals.input_tokens += inp
                self._totals.cached_tokens += cached
            rec.input_tokens, rec.cached_tokens = inp, cached
            rec.output_tokens = int(usage.get("output_tokens") or 0)
        self.changed.emit(rec)
        return rec

    def _trim(self) -> None:
        n = len(self._records)
        if n > self.keep_frames:
            old = self._records[n - self.keep_frames - 1]
            old.items = None  # only the figures stay

    # ---- reading -----------------------------------------------------------------------------------

    @property
    def records(self) -> Sequence[SendRecord]:
        """Oldest first."""
        return tuple(self._records)

    def __iter__(self) -> Iterator[SendRecord]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)

    @property
    def last(self) -> SendRecord | None:
        return self._records[-1] if self._records else None

    def find(self, response_id: str) -> SendRecord | None:
        for rec in reversed(self._records):
            if rec.response_id == response_id:
                return rec
        return None

    @property
    def requests(self) -> int:
        return self._totals.requests

    @property
    def bytes_sent(self) -> int:
        return self._totals.bytes_sent

    @property
    def full_bytes(self) -> int:
        """What a stateless client would have sent for the same requests."""
        return self._totals.full_bytes

    @property
    def ratio(self) -> float:
        """Bytes sent / bytes a full resend of every request would have taken (1.0: nothing saved)."""
        return self._totals.bytes_sent / self._totals.full_bytes if self._totals.full_bytes else 1.0

    @property
    def input_tokens(self) -> int:
        return self._totals.input_tokens

    @property
    def cached_tokens(self) -> int:
        return self._totals.cached_tokens

    @property
    def rebuilds(self) -> Mapping[str, int]:
        """Fresh chains after the first, by cause (each one sent the whole conversation again)."""
        return dict(self._totals.rebuilds)

    @property
    def rebuild_count(self) -> int:
        return sum(self._totals.rebuilds.values())


def human_bytes(n: float) -> str:
    """412 B, 1.2 kB, 3.4 MB."""
    if n < 1000:
        return f"{n:.0f} B"
    if n < 1_000_000:
        return f"{n / 1000:.1f} kB"
    return f"{n / 1_000_000:.1f} MB"


def compact(n: float) -> str:
    """1234 -> "1.2k", 2_500_000 -> "2.5M"; small numbers stay exact (token counts, rates)."""
    if n < 1000:
        return f"{n:.0f}"
    if n < 1_000_000:
        return f"{n / 1000:.1f}k".replace(".0k", "k")
    return f"{n / 1_000_000:.1f}M".replace(".0M", "M")


def request_summary(rec: SendRecord) -> str:
    """One line for a request: what it sent and what the server read anew."""
    what = "1 item" if rec.input_items == 1 else f"{rec.input_items} items"
    chain = "whole conversation, new chain" if rec.fresh else "only new input"
    parts = [f"Sent {human_bytes(rec.bytes_sent)} ({what}, {chain})"]
    if rec.input_tokens is not None:
        parts.append(f"{compact(rec.cached_tokens or 0)} tokens cached, {compact(rec.new_tokens or 0)} new")
    if rec.ttft_ms is not None:
        parts.append(f"first token {rec.ttft_ms:.0f} ms")
    return " · ".join(parts)
