"""Compaction items, sans I/O: a conversation window packed into one `compaction` item and back.

`POST /v1/responses/compact` answers a compacted window whose output holds one item
`{"type": "compaction", "id", "encrypted_content"}`. A client continues by sending that item back as
input (over HTTP, or as the first input of a fresh WebSocket chain). This server does not encrypt:
`encrypted_content` is `slc1.` + base64url(zlib(JSON list of items)), opaque to clients (the spec
only promises an opaque string), and the server expands it back into the items it carries. An
engine may carry a summary instead of the items (a message saying what happened so far); the
packing is the same, so expansion never depends on the engine that compacted.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import Sequence
from typing import Any, Final

import msgspec

from app.protocol.errors import RemoteProtocolError
from app.protocol.turns import Item

__all__ = ["MAX_EXPANDED_BYTES", "PREFIX", "pack", "unpack"]

PREFIX: Final = "slc1."
MAX_EXPANDED_BYTES: Final = 64 * 1024 * 1024  # a compaction item never expands beyond this
_ENC: Final = msgspec.json.Encoder()
_DEC: Final = msgspec.json.Decoder()


def pack(items: Sequence[Item]) -> str:
    """The `encrypted_content` carrying `items`."""
    raw = zlib.compress(_ENC.encode(list(items)), 6)
    return PREFIX + base64.urlsafe_b64encode(raw).decode("ascii")


def unpack(content: object, *, param: str = "input") -> list[Item]:
    """The items a compaction item carries; RemoteProtocolError (with words) when it is not ours."""
    if not isinstance(content, str) or not content.startswith(PREFIX):
        raise RemoteProtocolError(
            "This compaction item was not produced by this server (its encrypted_content is not "
            "recognised); send the conversation items instead.",
            code="invalid_compaction",
            param=param,
        )
    try:
        raw = base64.urlsafe_b64decode(content[len(PREFIX) :].encode("ascii"))
        inflater = zlib.decompressobj()
        data = inflater.decompress(raw, MAX_EXPANDED_BYTES)
        if inflater.unconsumed_tail:
            raise RemoteProtocolError(
                f"The compaction item expands beyond {MAX_EXPANDED_BYTES} bytes.",
                code="invalid_compaction",
                param=param,
            )
        value: Any = _DEC.decode(data)
    except (binascii.Error, ValueError, zlib.error, msgspec.DecodeError, UnicodeError) as exc:
        raise RemoteProtocolError(
            f"The compaction item is damaged ({exc}); send the conversation items instead.",
            code="invalid_compaction",
            param=param,
        ) from None
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise RemoteProtocolError(
            "The compaction item does not hold a list of items.", code="invalid_compaction", param=param
        )
    return value
