"""Frame pacing for a streaming view, Qt-free, on an injected clock.

A view repaints on a frame clock (~16 ms). Within a frame it does at most `budget_s` of work, cut into
slices of at most `slice_s` with the event loop turning in between (input, timers, paint), so one
slice, not one frame, is the longest stall. Model work (markdown, pygments: `Model.advance`) and
render work (`Renderer.draw`, document edits) never share a slice; model work gets at most
`model_share` of a frame and at most `max_feed` characters, so rendering is never starved. Every
frame feeds the model at least once and renders at least once, so it always makes progress; what
does not fit continues next frame.

The view owns the timers: it calls `start_frame()` on each frame tick and `run_slice()` until it
returns False, turning the event loop between slices. Tests drive it with a fake clock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Protocol

__all__ = ["FRAME_BUDGET_S", "MAX_FEED_PER_FRAME", "MODEL_SHARE", "SLICE_S", "FramePacer", "Model", "Renderer"]

FRAME_BUDGET_S: Final = 0.010  # work per frame, over all its slices
SLICE_S: Final = 0.004  # the longest run of work before the event loop gets a turn
MODEL_SHARE: Final = 0.5  # of the frame budget at most for model work per frame
MAX_FEED_PER_FRAME: Final = 24 * 1024  # characters fed to the model per frame at most


class Model(Protocol):
    """What the pacer drives: `app.render.transcript.Transcript` is one."""

    @property
    def pending(self) -> bool: ...

    def advance(self, deadline: float, clock: Callable[[], float], max_chars: int = ...) -> int: ...


class Renderer(Protocol):
    """The view's side: draw what changed, stopping after the unit that passes the deadline."""

    def has_work(self) -> bool: ...

    def draw(self, deadline: float) -> None: ...


class FramePacer:
    """Splits each frame's work into model and render slices by time (see the module docstring)."""

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        budget_s: float = FRAME_BUDGET_S,
        slice_s: float = SLICE_S,
        model_share: float = MODEL_SHARE,
        max_feed: int = MAX_FEED_PER_FRAME,
    ) -> None:
        self.clock = clock
        self.budget_s = budget_s
        self.slice_s = slice_s
        self.model_share = model_share
        self.max_feed = max_feed
        self._feed_left = 0  # characters the current frame may still feed to the model
        self._model_left = 0.0  # seconds of model work the current frame may still do
        self._time_left = 0.0  # seconds of work the current frame may still do
        self._fed = False  # each frame feeds and renders at least once
        self._rendered = False
        self.frames = 0
        self.slices = 0

    def start_frame(self) -> None:
        self._feed_left = self.max_feed
        self._model_left = self.budget_s * self.model_share
        self._time_left = self.budget_s
        self._fed = self._rendered = False
        self.frames += 1

    def run_slice(self, model: Model, renderer: Renderer) -> bool:
        """One slice of the current frame; True if the frame has work left and time for it."""
        clock = self.clock
        self.slices += 1
        t0 = clock()
        deadline = t0 + max(min(self.slice_s, self._time_left), 0.0)
        if self._model_may_run(model):
            fed = model.advance(min(deadline, t0 + max(self._model_left, 0.0)), clock, self._feed_left)
            self._feed_left -= fed
            self._model_left -= clock() - t0
            self._fed = True
        elif renderer.has_work():
            renderer.draw(deadline)
            self._rendered = True
        self._time_left -= clock() - t0
        if self._time_left <= 0:  # out of time: only the one render a frame always gets
            return renderer.has_work() and not self._rendered and not self._model_may_run(model)
        return self._model_may_run(model) or renderer.has_work()

    def _model_may_run(self, model: Model) -> bool:
        return model.pending and self._feed_left > 0 and (self._model_left > 0 or not self._fed)
