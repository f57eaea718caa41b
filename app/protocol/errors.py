"""Protocol errors, split by who erred (the h11 convention).

Hierarchy::

    ProtocolError                 base: `code`, `message`, `param`, `status`
    ├── LocalProtocolError        we erred: our own code broke the protocol (e.g. feeding output
    │                             for a response that already ended, encoding a bad event)
    └── RemoteProtocolError       the peer erred: a frame that is not JSON, not a known event,
                                  or an event with a field of the wrong type

`code` is the machine-readable reason that goes on the wire in an `error` event
("invalid_json", "invalid_event", "unknown_event_type", "frame_too_large", ...), `param` names the
offending field when one is at fault, and `status` is the HTTP-equivalent status (400 for
peer errors, 500 for ours).
"""

from __future__ import annotations

__all__ = ["LocalProtocolError", "ProtocolError", "RemoteProtocolError"]


class ProtocolError(Exception):
    """Base class: a protocol rule was broken."""

    status = 400

    def __init__(self, message: str, *, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, param={self.param!r}, message={self.message!r})"


class LocalProtocolError(ProtocolError):
    """Our side broke the protocol (a bug in the caller of the sans-I/O core)."""

    status = 500


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow. `event_type` is the frame's `type`
    when it could be read, so a caller can tolerate known non-standard events."""

    status = 400

    def __init__(
        self, message: str, *, code: str, param: str | None = None, event_type: str | None = None
    ) -> None:
        super().__init__(message, code=code, param=param)
        self.event_type = event_type
