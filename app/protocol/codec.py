"""Frames ⇄ events: strict decoding with clear errors, and the SSE envelope for HTTP.

Public API::

    decode_server(frame: str | bytes) -> ServerEvent      # client side: what the server sent
    decode_client(frame: str | bytes) -> ClientEvent      # server side: what the client sent
    encode(event) -> bytes                                # one WebSocket text frame (UTF-8 JSON)
    encode_sse(event) -> bytes                            # b"event: T\\ndata: JSON\\n\\n"
    encode_json(value) -> bytes                           # any JSON value (e.g. a response object)
    event_type(event) -> str                              # the wire `type` of an event
    SSEDecoder().feed(chunk: bytes) -> list[ServerEvent]  # incremental SSE parsing
    SSEParser().feed(chunk: bytes) -> list[bytes]         # the same framing, raw `data` payloads

Decoding rules:
- Server frames: a known `type` decodes to its Struct through one reused typed decoder (the
  `response.output_text.delta` hot path never builds a dict). An unknown `type` becomes
  `UnknownEvent` (never dropped); `response.done` becomes `ResponseCompleted`; a flat SSE-style
  `error` ({type, code, message, param}) becomes the nested `ErrorEvent`.
- Client frames: an unknown `type` is an error (`unknown_event_type`), and so is any field of the
  wrong type (`invalid_event`, with `param` naming the field).
- Malformed JSON raises `RemoteProtocolError(code="invalid_json")`; a frame that is JSON but not an
  object with a string `type` raises `RemoteProtocolError(code="invalid_event", param="type")`.
"""

from __future__ import annotations

import re
from typing import Any, Final

import msgspec

from app.protocol.errors import LocalProtocolError, RemoteProtocolError
from app.protocol.events import (
    KNOWN_CLIENT_TYPES,
    KNOWN_SERVER_TYPES,
    UNSET,
    ClientEvent,
    ErrorDetail,
    ErrorEvent,
    KnownServerEvent,
    ResponseCompleted,
    ServerEvent,
    UnknownEvent,
)

__all__ = [
    "SSEDecoder",
    "SSEParser",
    "decode_client",
    "decode_server",
    "encode",
    "encode_json",
    "encode_sse",
    "event_type",
    "param_from_error",
]

_SERVER_DECODER: Final[msgspec.json.Decoder[KnownServerEvent]] = msgspec.json.Decoder(KnownServerEvent)
_CLIENT_DECODER: Final[msgspec.json.Decoder[ClientEvent]] = msgspec.json.Decoder(ClientEvent)
_ANY_DECODER: Final = msgspec.json.Decoder()
_ENCODER: Final = msgspec.json.Encoder()

_AT_PATH = re.compile(r" - at `\$\.?([^`]*)`$")
_MISSING = re.compile(r"Object missing required field `([^`]+)`")


def param_from_error(exc: msgspec.ValidationError) -> str | None:
    """The dotted field path msgspec names in a validation error, e.g. "error.message"."""
    text = str(exc)
    at = _AT_PATH.search(text)
    base = at.group(1) if at else ""
    missing = _MISSING.search(text)
    if missing:
        return f"{base}.{missing.group(1)}" if base else missing.group(1)
    return base or None


def _preview(frame: str | bytes, limit: int = 80) -> str:
    text = frame if isinstance(frame, str) else frame[: limit * 4].decode("utf-8", "replace")
    return text if len(text) <= limit else text[:limit] + "…"


def _load_object(frame: str | bytes, who: str) -> tuple[dict[str, Any], str]:
    """Parse a frame that failed typed decoding: must be a JSON object with a string `type`."""
    try:
        data = _ANY_DECODER.decode(frame)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:  # bad UTF-8, nested too deep
        raise RemoteProtocolError(
            f"{who} frame is not valid JSON ({exc}): {_preview(frame)!r}", code="invalid_json"
        ) from None
    if not isinstance(data, dict):
        raise RemoteProtocolError(
            f"{who} frame must be a JSON object, got {type(data).__name__}",
            code="invalid_event",
            param="type",
        )
    typ = data.get("type")
    if not isinstance(typ, str):
        raise RemoteProtocolError(
            f"{who} event has no string 'type' field", code="invalid_event", param="type"
        )
    return data, typ


def _invalid(who: str, typ: str, exc: msgspec.ValidationError) -> RemoteProtocolError:
    param = param_from_error(exc)
    return RemoteProtocolError(
        f"Invalid {who} event {typ!r}: {exc}", code="invalid_event", param=param, event_type=typ
    )


def _flat_error(data: dict[str, Any]) -> ErrorEvent:
    """The flat SSE error shape ({type, code, message, param}) as a nested ErrorEvent."""
    status = data.get("status", data.get("status_code", UNSET))
    seq = data.get("sequence_number", UNSET)
    sid = data.get("stream_id", UNSET)
    message = data.get("message")
    detail = ErrorDetail(
        type=str(data.get("error_type") or "invalid_request_error"),
        code=data.get("code") if isinstance(data.get("code"), str) else None,
        message=message if isinstance(message, str) else "",
        param=data.get("param") if isinstance(data.get("param"), str) else None,
    )
    return ErrorEvent(
        status=status if isinstance(status, int) else UNSET,
        sequence_number=seq if isinstance(seq, int) else UNSET,
        stream_id=sid if isinstance(sid, str) else UNSET,
        error=detail,
    )


def decode_server(frame: str | bytes) -> ServerEvent:
    """Decode one server event (a WS text frame, or one SSE `data:` payload)."""
    try:
        return _SERVER_DECODER.decode(frame)
    except msgspec.ValidationError as exc:
        first = exc
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:  # bad UTF-8, nested too deep
        raise RemoteProtocolError(
            f"Server frame is not valid JSON ({exc}): {_preview(frame)!r}", code="invalid_json"
        ) from None
    data, typ = _load_object(frame, "Server")
    if typ == "response.done":  # legacy terminal name (PROTOCOL §10.5)
        try:
            return msgspec.convert({**data, "type": "response.completed"}, ResponseCompleted)
        except msgspec.ValidationError as exc:
            raise _invalid("server", typ, exc) from None
    if typ == "error" and not isinstance(data.get("error"), dict):
        return _flat_error(data)
    if typ in KNOWN_SERVER_TYPES:
        raise _invalid("server", typ, first) from None
    return UnknownEvent(type=typ, data=data)


def decode_client(frame: str | bytes) -> ClientEvent:
    """Decode one client event; anything but a valid `response.create`/`response.steer` raises."""
    try:
        return _CLIENT_DECODER.decode(frame)
    except msgspec.ValidationError as exc:
        first = exc
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:  # bad UTF-8, nested too deep
        raise RemoteProtocolError(
            f"Client frame is not valid JSON ({exc}): {_preview(frame)!r}", code="invalid_json"
        ) from None
    _data, typ = _load_object(frame, "Client")
    if typ not in KNOWN_CLIENT_TYPES:
        known = ", ".join(sorted(KNOWN_CLIENT_TYPES))
        raise RemoteProtocolError(
            f"Unknown client event type {typ!r}; expected one of: {known}",
            code="unknown_event_type",
            param="type",
            event_type=typ,
        )
    raise _invalid("client", typ, first) from None


def event_type(event: ServerEvent | ClientEvent) -> str:
    """The wire `type` of an event."""
    if isinstance(event, UnknownEvent):
        return event.type
    tag = type(event).__struct_config__.tag
    if not isinstance(tag, str):
        raise LocalProtocolError(f"{type(event).__name__} is not a wire event", code="invalid_event")
    return tag


def encode(event: ServerEvent | ClientEvent) -> bytes:
    """One WebSocket text frame (UTF-8 JSON bytes)."""
    if isinstance(event, UnknownEvent):
        return _ENCODER.encode(event.data)
    return _ENCODER.encode(event)


def encode_json(value: Any) -> bytes:
    """Any JSON value as UTF-8 bytes (response objects, HTTP error bodies)."""
    return _ENCODER.encode(value)


def _sse_payload(event: ServerEvent) -> bytes:
    if isinstance(event, ErrorEvent):  # the spec's SSE `error`: sequence_number + the error object
        seq = event.sequence_number
        detail = event.error
        nested: dict[str, Any] = {
            "type": "error",
            "sequence_number": seq if isinstance(seq, int) else 0,
            "error": {
                "type": detail.type,
                "code": detail.code,
                "message": detail.message,
                "param": detail.param,
            },
        }
        return _ENCODER.encode(nested)
    return encode(event)


def encode_sse(event: ServerEvent) -> bytes:
    """One SSE event: `event: <type>`, `data: <json>`, blank line."""
    return b"event: " + event_type(event).encode() + b"\ndata: " + _sse_payload(event) + b"\n\n"


class SSEParser:
    """Incremental `text/event-stream` parser: bytes in any chunking -> each event's `data` payload.

    Handles LF, CRLF and CR line ends (also a CR/LF pair split across chunks), `:` comment lines,
    multi-line `data:` (joined with newlines), a UTF-8 BOM, and the `data: [DONE]` sentinel (sets
    `done`, yields nothing; what follows it is ignored). `event`, `id`, `retry` and unknown fields
    are ignored. Never raises:
    what a payload means is the caller's business (`SSEDecoder` decodes Responses events; the
    Chat Completions bridge decodes chat chunks).
    """

    def __init__(self) -> None:
        self._buf = b""  # unterminated tail (no line end yet)
        self._data: list[bytes] = []  # data lines of the event being built
        self._started = False
        self.done = False  # saw `data: [DONE]`

    def feed(self, chunk: bytes) -> list[bytes]:
        """Parse `chunk` and return the payloads of the events it completed."""
        if self.done:
            return []
        buf = self._buf + chunk
        if not self._started and buf:
            if len(buf) < 3 and b"\xef\xbb\xbf".startswith(buf):
                self._buf = buf
                return []
            self._started = True
            if buf.startswith(b"\xef\xbb\xbf"):
                buf = buf[3:]
        hold = b""
        if buf.endswith(b"\r"):  # could be the first half of CRLF
            buf, hold = buf[:-1], b"\r"
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = buf.split(b"\n")
        self._buf = lines.pop() + hold
        out: list[bytes] = []
        for line in lines:
            self._line(line, out)
            if self.done:
                self._buf, self._data = b"", []
                break
        return out

    def close(self) -> list[bytes]:
        """End of stream: dispatch a last event that lacked its blank line."""
        out: list[bytes] = []
        if self.done:
            return out
        if self._buf.strip(b"\r"):
            line, self._buf = self._buf.rstrip(b"\r"), b""
            self._line(line, out)
        self._buf = b""
        if self._data:
            self._line(b"", out)
        return out

    def _line(self, line: bytes, out: list[bytes]) -> None:
        if not line:
            if self._data:
                payload = self._data[0] if len(self._data) == 1 else b"\n".join(self._data)
                self._data = []
                if payload == b"[DONE]":
                    self.done = True
                else:
                    out.append(payload)
            return
        if line[0] == 0x3A:  # ':' comment / keep-alive
            return
        name, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value)


class SSEDecoder:
    """Incremental `text/event-stream` decoder for server events: `SSEParser` + `decode_server`.

    Feed raw bytes in any chunking; get whole events back (see `SSEParser` for the framing rules;
    the `event:` line is informational: the JSON `type` decides the event).

    If a payload is bad, `feed` raises `RemoteProtocolError`; events parsed before it in the
    same chunk are kept and returned by the next `feed` call (`feed(b"")` is fine).
    """

    def __init__(self) -> None:
        self._parser = SSEParser()
        self._events: list[ServerEvent] = []  # decoded, held back by an error
        self._payloads: list[bytes] = []  # not decoded yet, held back by an error

    @property
    def done(self) -> bool:
        """Saw `data: [DONE]`."""
        return self._parser.done

    def feed(self, chunk: bytes) -> list[ServerEvent]:
        """Parse `chunk` and return the events it completed."""
        return self._decode(self._parser.feed(chunk))

    def close(self) -> list[ServerEvent]:
        """End of stream: dispatch a last event that lacked its blank line."""
        return self._decode(self._parser.close())

    def _decode(self, payloads: list[bytes]) -> list[ServerEvent]:
        if self._payloads:
            payloads = self._payloads + payloads
            self._payloads = []
        out, self._events = self._events, []
        for i, payload in enumerate(payloads):
            try:
                out.append(decode_server(payload))
            except RemoteProtocolError:
                # Keep the decoder consistent: later payloads and earlier events wait for the next call.
                self._events, self._payloads = out, payloads[i + 1 :]
                raise
        return out
