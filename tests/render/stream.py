"""Protocol events for feeding a conversation model in tests (the same typed values the socket gives)."""

from __future__ import annotations

from app.protocol import events as ev
from app.render.transcript import Transcript


def created(response_id: str = "r1") -> ev.ResponseCreated:
    return ev.ResponseCreated(response={"id": response_id, "status": "in_progress"})


def text(item_id: str, delta: str) -> ev.OutputTextDelta:
    return ev.OutputTextDelta(item_id=item_id, output_index=0, delta=delta)


def reasoning(item_id: str, delta: str) -> ev.ReasoningTextDelta:
    return ev.ReasoningTextDelta(item_id=item_id, output_index=0, content_index=0, delta=delta)


def tool_call(item_id: str, name: str, call_id: str) -> ev.OutputItemAdded:
    return ev.OutputItemAdded(
        output_index=0,
        item={"type": "function_call", "id": item_id, "name": name, "call_id": call_id, "arguments": ""},
    )


def args(item_id: str, delta: str) -> ev.FunctionCallArgumentsDelta:
    return ev.FunctionCallArgumentsDelta(item_id=item_id, output_index=0, delta=delta)


def item_done(item_id: str) -> ev.OutputItemDone:
    return ev.OutputItemDone(output_index=0, item={"id": item_id})


def completed(response_id: str = "r1") -> ev.ResponseCompleted:
    return ev.ResponseCompleted(response={"id": response_id, "status": "completed"})


def failed(message: str, response_id: str = "r1") -> ev.ResponseFailed:
    return ev.ResponseFailed(response={"id": response_id, "status": "failed", "error": {"message": message}})


def error(code: str, message: str) -> ev.ErrorEvent:
    return ev.ErrorEvent(error=ev.ErrorDetail(code=code, message=message))


def drain(model: Transcript) -> int:
    """Work through everything buffered, as a frame clock would; returns the characters fed."""
    fed = 0
    while model.pending:
        fed += model.advance(float("inf"), lambda: 0.0)
    return fed
