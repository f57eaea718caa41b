"""`POST /v1/responses/compact`, sans I/O: the request parsed into a window, the answer built.

Request (Open Responses `CompactResponseMethodPublicBody`): `model` (required), `input`,
`previous_response_id`, `instructions`, `prompt_cache_key`. The window to compact is the stored
parent's chain (when `previous_response_id` is given) followed by the input, with references and
earlier compaction items resolved. The answer is a `CompactResource`:
`{id, object: "response.compaction", output: [...], created_at, usage}`; the output is what the
engine made of the window (by default one `compaction` item packing it, `app.protocol.compaction`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from app.protocol.codec import encode_json, param_from_error
from app.protocol.compaction import pack
from app.protocol.errors import RemoteProtocolError
from app.protocol.events import UNSET, UnsetType
from app.protocol.inputs import normalize_input, resolve_items
from app.protocol.resource import usage_object
from app.protocol.store import ResponseStore
from app.protocol.tokens import tokens_for_chars
from app.protocol.turns import Item

__all__ = ["CompactJob", "compaction_items", "compaction_resource", "parse_compact"]


class _CompactBody(msgspec.Struct, kw_only=True):
    model: str | UnsetType | None = UNSET
    input: str | list[Any] | UnsetType | None = UNSET
    previous_response_id: str | UnsetType | None = UNSET
    instructions: str | UnsetType | None = UNSET
    prompt_cache_key: str | UnsetType | None = UNSET


@dataclass(frozen=True, slots=True)
class CompactJob:
    """A parsed compaction request: the whole window, oldest item first."""

    model: str
    items: list[Item]
    instructions: str | None
    input_chars: int


def parse_compact(body: bytes, store: ResponseStore | None) -> CompactJob:
    """The window to compact; RemoteProtocolError (status 400, with words) for a bad request."""
    try:
        req = msgspec.json.decode(body, type=_CompactBody)
    except msgspec.ValidationError as exc:
        raise RemoteProtocolError(
            f"Invalid request body: {exc}", code="invalid_type", param=param_from_error(exc)
        ) from None
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise RemoteProtocolError(f"Request body is not valid JSON ({exc}).", code="invalid_json") from None
    if not isinstance(req.model, str) or not req.model:
        raise RemoteProtocolError(
            "Missing required parameter: 'model'.", code="missing_required_parameter", param="model"
        )
    history: Sequence[Item] = ()
    if isinstance(req.previous_response_id, str) and req.previous_response_id:
        parent = store.get(req.previous_response_id) if store is not None else None
        if parent is None or not parent.store:
            raise RemoteProtocolError(
                f"Previous response with id '{req.previous_response_id}' not found.",
                code="previous_response_not_found",
                param="previous_response_id",
            )
        history = parent.chain()

    def lookup(item_id: str) -> Item | None:
        return store.item(item_id) if store is not None else None

    new = resolve_items(normalize_input(req.input), lookup)
    items = [*history, *new]
    if not items:
        raise RemoteProtocolError(
            "Nothing to compact: give 'input' or a 'previous_response_id'.",
            code="missing_required_parameter",
            param="input",
        )
    instructions = req.instructions if isinstance(req.instructions, str) else None
    chars = sum(len(encode_json(it)) for it in items) + len(instructions or "")
    return CompactJob(req.model, items, instructions, chars)


def compaction_items(items: Sequence[Item], new_id: Callable[[str], str]) -> list[Item]:
    """The default compacted output: one `compaction` item packing the window as it is."""
    return [{"type": "compaction", "id": new_id("cmp"), "encrypted_content": pack(items)}]


def compaction_resource(
    job: CompactJob, output: Sequence[Item], *, compaction_id: str, created_at: int
) -> dict[str, Any]:
    """The `response.compaction` object answering `job`."""
    out_chars = sum(len(encode_json(it)) for it in output)
    return {
        "id": compaction_id,
        "object": "response.compaction",
        "output": list(output),
        "created_at": created_at,
        "usage": usage_object(tokens_for_chars(job.input_chars), tokens_for_chars(out_chars), 0, 0),
    }
