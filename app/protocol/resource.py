"""The response object (`ResponseResource` of the Open Responses spec, 2026-04-24) built from a request.

Every field the spec requires is present, nullable ones as null: `completed_at` (null until the
response ends), `presence_penalty`/`frequency_penalty` (0), `temperature`/`top_p` (1, numbers, never
null), `top_logprobs` (0), `background` (false), `service_tier` ("default"), `max_tool_calls`,
`safety_identifier`, `prompt_cache_key`. Echoed settings are normalised to the spec's shapes:
function tools carry `description`, `parameters` and `strict` (null when absent), `reasoning` is
`{effort, summary}` or null, `tool_choice` a mode or `{type: "function", name}`. Usage has exactly
the spec's keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from app.protocol.events import UNSET, ResponseCreate
from app.protocol.turns import Item, Usage

__all__ = ["normalize_tool", "response_object", "usage_object"]


def _opt(value: Any, default: Any) -> Any:
    return default if value is UNSET or value is None else value


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _number(value: Any, default: float) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


def normalize_tool(tool: Mapping[str, Any]) -> dict[str, Any]:
    """A function tool in the spec's response shape; other tool types pass through unchanged."""
    if tool.get("type", "function") != "function":
        return dict(tool)
    params = tool.get("parameters")
    strict = tool.get("strict")
    description = tool.get("description")
    return {
        "type": "function",
        "name": str(tool.get("name", "")),
        "description": description if isinstance(description, str) else None,
        "parameters": params if isinstance(params, dict) else None,
        "strict": strict if isinstance(strict, bool) else None,
    }


def _tool_choice(value: Any) -> Any:
    if isinstance(value, Mapping) and value.get("type") == "function":
        return {"type": "function", "name": _str_or_none(value.get("name"))}
    if isinstance(value, Mapping) or value in ("auto", "none", "required"):
        return value
    return "auto"


def _reasoning(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, Mapping):
        return None
    return {"effort": _str_or_none(value.get("effort")), "summary": _str_or_none(value.get("summary"))}


def _text(value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping) and isinstance(value.get("format"), Mapping):
        out: dict[str, Any] = {"format": dict(value["format"])}
        if isinstance(value.get("verbosity"), str):
            out["verbosity"] = value["verbosity"]
        return out
    return {"format": {"type": "text"}}


def usage_object(
    input_tokens: int, output_tokens: int, cached_tokens: int, reasoning_tokens: int
) -> dict[str, Any]:
    """`usage` with exactly the spec's keys."""
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": cached_tokens},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "total_tokens": input_tokens + output_tokens,
    }


def usage_from(u: Usage) -> dict[str, Any]:
    return usage_object(u.input_tokens, u.output_tokens, u.cached_tokens, u.reasoning_tokens)


def response_object(
    req: ResponseCreate,
    *,
    response_id: str,
    created_at: int,
    status: str,
    model: str,
    output: Sequence[Item] = (),
    completed_at: int | None = None,
    usage: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    incomplete_details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The whole response object for `req` in state `status`."""
    tools = req.tools if isinstance(req.tools, list) else []
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "completed_at": completed_at,
        "status": status,
        "incomplete_details": incomplete_details,
        "model": model,
        "previous_response_id": _str_or_none(req.previous_response_id),
        "instructions": _str_or_none(req.instructions),
        "output": list(output),
        "error": error,
        "tools": [normalize_tool(t) for t in tools],
        "tool_choice": _tool_choice(_opt(req.tool_choice, "auto")),
        "truncation": _opt(req.truncation, "disabled"),
        "parallel_tool_calls": bool(_opt(req.parallel_tool_calls, True)),
        "text": _text(req.text),
        "top_p": _number(req.top_p, 1.0),
        "presence_penalty": _number(req.presence_penalty, 0.0),
        "frequency_penalty": _number(req.frequency_penalty, 0.0),
        "top_logprobs": req.top_logprobs if isinstance(req.top_logprobs, int) else 0,
        "temperature": _number(req.temperature, 1.0),
        "reasoning": _reasoning(req.reasoning),
        "usage": usage,
        "max_output_tokens": _opt(req.max_output_tokens, None),
        "max_tool_calls": _opt(req.max_tool_calls, None),
        "store": req.store is not False,
        "background": False,
        "service_tier": _opt(req.service_tier, "default"),
        "metadata": _opt(req.metadata, {}),
        "safety_identifier": _str_or_none(req.safety_identifier),
        "prompt_cache_key": _str_or_none(req.prompt_cache_key),
    }
