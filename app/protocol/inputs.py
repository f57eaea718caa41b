"""Request input, sans I/O: normalised to items, references resolved, continuations checked.

- `normalize_input`: a bare string is one user message; anything but a list of objects is refused.
- `resolve_items`: `item_reference` items become the items they name (looked up by the caller's
  `lookup`, e.g. the connection's recent outputs then the response store); `compaction` items become
  the items they carry (`app.protocol.compaction`). Engines therefore never see either kind.
- `check_call_outputs`: every `function_call_output` must answer a `function_call` that the chain
  (the parent's history and output) or the same input issued; otherwise the request fails with 400,
  as the Open Responses spec requires of a continuation.

Errors are `RemoteProtocolError`s with a string `code`, words, and `param` naming the item.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from app.protocol.compaction import unpack
from app.protocol.errors import RemoteProtocolError
from app.protocol.events import UNSET
from app.protocol.turns import Item

__all__ = ["check_call_outputs", "message_text", "normalize_input", "resolve_items"]


def normalize_input(value: object) -> list[Item]:
    """`input` as a list of items: a bare string is one user message."""
    if value is UNSET or value is None:
        return []
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    if isinstance(value, list):
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                raise RemoteProtocolError(
                    f"Invalid 'input[{i}]': expected an object, got {type(item).__name__}.",
                    code="invalid_type",
                    param=f"input[{i}]",
                )
        return value
    raise RemoteProtocolError(
        "Invalid 'input': expected a string or an array.", code="invalid_type", param="input"
    )


def _needs_resolving(items: Sequence[Item]) -> bool:
    return any(item.get("type") in ("item_reference", "compaction") for item in items)


def resolve_items(items: list[Item], lookup: Callable[[str], Item | None]) -> list[Item]:
    """`items` with every `item_reference` and `compaction` item replaced (the same list when none)."""
    if not _needs_resolving(items):
        return items
    out: list[Item] = []
    for i, item in enumerate(items):
        kind = item.get("type")
        if kind == "item_reference":
            ref = item.get("id")
            found = lookup(ref) if isinstance(ref, str) else None
            if found is None:
                raise RemoteProtocolError(
                    f"Item with id {ref!r} not found: 'input[{i}]' references an item this server does not "
                    "have (it was never produced here, was created with store=false on another "
                    "connection, or has been evicted). Send the item itself instead of a reference.",
                    code="item_not_found",
                    param=f"input[{i}].id",
                )
            out.append(found)
        elif kind == "compaction":
            out.extend(unpack(item.get("encrypted_content"), param=f"input[{i}].encrypted_content"))
        else:
            out.append(item)
    return out


def _issued(items: Sequence[Item]) -> set[str]:
    return {str(it.get("call_id")) for it in items if it.get("type") == "function_call"}


def check_call_outputs(new: Sequence[Item], parent_output: Sequence[Item], chain: Sequence[Item]) -> None:
    """Refuse a `function_call_output` whose `call_id` no `function_call` issued. The parent's own
    output is looked at first (the usual case); the whole chain only when that misses."""
    outputs = [(i, it) for i, it in enumerate(new) if it.get("type") == "function_call_output"]
    if not outputs:
        return
    known = _issued(new) | _issued(parent_output)
    scanned_chain = False
    for i, item in outputs:
        call_id = item.get("call_id")
        if not isinstance(call_id, str) or not call_id:
            raise RemoteProtocolError(
                f"Invalid 'input[{i}].call_id': a function_call_output needs the call_id of the call it answers.",
                code="missing_required_parameter",
                param=f"input[{i}].call_id",
            )
        if call_id not in known and not scanned_chain:
            known |= _issued(chain)
            scanned_chain = True
        if call_id not in known:
            raise RemoteProtocolError(
                f"No tool call found for function call output with call_id {call_id!r}: neither the previous "
                "response nor this input issued it.",
                code="function_call_output_not_found",
                param=f"input[{i}].call_id",
            )


def message_text(item: Mapping[str, Any]) -> str:
    """The text of a message item: string content, or its text parts (input_text, output_text...)
    joined by newlines."""
    content = item.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            p["text"] for p in content if isinstance(p, Mapping) and isinstance(p.get("text"), str)
        )
    return ""
