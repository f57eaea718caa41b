"""A tiny Qt-free signal: services publish, the UI's bridge re-emits as Qt signals.

Handlers run synchronously on the caller's thread — services only emit on the event-loop thread.
A handler that raises is logged and does not stop the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Generic, ParamSpec

P = ParamSpec("P")
log = logging.getLogger(__name__)


class Signal(Generic[P]):
    """`sig.connect(fn)`, `sig.disconnect(fn)`, `sig.emit(*args)`."""

    __slots__ = ("_handlers", "_name")

    def __init__(self, name: str = "") -> None:
        self._name = name
        self._handlers: list[Callable[P, object]] = []

    def connect(self, handler: Callable[P, object]) -> None:
        if handler not in self._handlers:
            self._handlers.append(handler)

    def disconnect(self, handler: Callable[P, object]) -> None:
        try:
            self._handlers.remove(handler)
        except ValueError:
            pass

    def emit(self, *args: P.args, **kwargs: P.kwargs) -> None:
        for handler in tuple(self._handlers):
            try:
                handler(*args, **kwargs)
            except Exception:
                log.exception("handler of signal %s failed", self._name or "?")
