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

__all__ = [
    "FRAME_BUDGET_S",
    "MAX_FEED_PER_FRAME",
    "MODEL_SHARE",
    "SLICE_S",
    "FramePacer",
    "GroupRenderer",
    "Model",
    "PacerGroup",
    "Renderer",
]

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


class GroupRenderer(Renderer, Protocol):
    """A renderer beside others on one frame clock (`PacerGroup`)."""

    def pass_due(self) -> bool:
        """Whether its next draw would run a forced eviction pass (see `FramePacer.may_evict`)."""
        ...


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
        self._forced_frame = -1  # the frame that ran a forced pass
        self.gate: Callable[[FramePacer], bool] | None = None  # a PacerGroup's: one pass a round
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

    @property
    def forced_left(self) -> bool:
        """This frame has not run its forced pass yet."""
        return self._forced_frame != self.frames

    def may_evict(self, forced: bool) -> bool:
        """Whether the renderer may run an eviction pass in this slice; a True answer is the pass taken.

        A pass (~6 ms: Qt lays out everything after the released pages again) is the longest piece
        of work a slice holds. A forced one (memory over budget while rendering lags, so no slice has
        spare time) runs at most once a frame; in a `PacerGroup` at most one pass of either kind runs
        in a round over all views, so two views' passes never add up in one stall."""
        if forced and not self.forced_left:
            return False
        if self.gate is not None and not self.gate(self):
            return False
        if forced:
            self._forced_frame = self.frames
        return True

    def _model_may_run(self, model: Model) -> bool:
        return model.pending and self._feed_left > 0 and (self._model_left > 0 or not self._fed)


class PacerGroup:
    """One frame clock for several streaming views (the agent's transcript and side conversations).

    Each frame, every member with work starts its own frame on an equal share of one frame's budget
    and of one slice: one `run_slice` call runs a slice of every member at work (a round), so the
    round is one slice long, a frame has as many rounds as a lone view's frame has slices, and every
    view is fed and rendered in every frame. Two streams at once cost the GUI thread what one did and
    the longest stall is still one slice. (Alternating whole slices instead would spread one frame
    over twice the rounds, with the event loop's other work between each, and the next tick would cut
    it before the views rendered.)

    An eviction pass (`FramePacer.may_evict`, ~6.5 ms) is the longest slice a view has: a round runs
    at most one over all views and ends with it (a pass beside another view's render slice and both
    paints was the longest stall of two fast streams), and a member whose forced pass is due goes first
    in its round, so the pass mostly runs alone; the others get their slices in the next round. The
    member that ran a pass goes to the back of the members' order (the order of every round), so views
    that all need passes take turns: a view waits at most one round per other view with work (every
    member runs at least one round a frame), so its memory stays bounded, only later.

    Each extra view also paints its viewport once a frame, outside any budget. So while several views
    stream, the group watches the frame period it is given (`start_frame(now)`): a frame that came
    late (over `LATE` x `frame_s`) moves `RESERVE_STEP_S` of the budget into `reserve_s`, time left for
    those paints; frames on time give it back slowly (never below 0, never over half the budget). A
    lone view always gets the whole budget, exactly as with its own pacer.
    """

    LATE = 1.25
    ON_TIME = 1.1
    RESERVE_STEP_S = 0.0005

    def __init__(
        self, budget_s: float = FRAME_BUDGET_S, frame_s: float = 0.016, slice_s: float = SLICE_S
    ) -> None:
        self.budget_s = budget_s
        self.slice_s = slice_s
        self.frame_s = frame_s
        self.reserve_s = 0.0
        self._members: list[tuple[FramePacer, Model, GroupRenderer]] = []
        self._turn: list[tuple[FramePacer, Model, GroupRenderer]] = []
        self._last_start: float | None = None
        self._pass_taken = False  # this round ran one
        self.frames = 0
        self.rounds = 0

    def add(self, pacer: FramePacer, model: Model, renderer: GroupRenderer) -> None:
        self.remove(renderer)
        pacer.gate = self._take_pass
        self._members.append((pacer, model, renderer))

    def remove(self, renderer: GroupRenderer) -> None:
        for pacer, _m, r in self._members:
            if r is renderer:
                pacer.gate = None
        self._members = [m for m in self._members if m[2] is not renderer]
        self._turn = [m for m in self._turn if m[2] is not renderer]

    def set_model(self, renderer: GroupRenderer, model: Model) -> None:
        """The member painted by `renderer` now paints `model`."""
        self._members = [(p, model if r is renderer else m, r) for p, m, r in self._members]
        self._turn = [(p, model if r is renderer else m, r) for p, m, r in self._turn]

    @property
    def pending(self) -> bool:
        return any(m.pending or r.has_work() for _p, m, r in self._members)

    def start_frame(self, now: float | None = None) -> int:
        """Start a frame for every member with work (`now`: this frame's start, for the reserve);
        returns how many members have work."""
        active = [t for t in self._members if t[1].pending or t[2].has_work()]
        last, self._last_start = self._last_start, now
        if len(active) > 1 and now is not None and last is not None:
            period = now - last
            if period > self.frame_s * self.LATE:
                self.reserve_s = min(self.reserve_s + self.RESERVE_STEP_S, self.budget_s / 2)
            elif period < self.frame_s * self.ON_TIME:
                self.reserve_s = max(self.reserve_s - self.RESERVE_STEP_S / 2, 0.0)
        total = self.budget_s - (self.reserve_s if len(active) > 1 else 0.0)
        n = max(len(active), 1)
        for pacer, _m, _r in active:
            pacer.budget_s = total / n
            pacer.slice_s = self.slice_s / n
            pacer.start_frame()
        self._turn = active
        self.frames += 1
        return len(active)

    def run_slice(self) -> bool:
        """One round: a slice of every member whose frame has work left; True while any has."""
        self._pass_taken = False
        self.rounds += 1
        order = {id(m[0]): n for n, m in enumerate(self._members)}
        # a due forced pass first, then the members' order (the last to run a pass is last)
        turn = sorted(self._turn, key=lambda m: (not m[2].pass_due(), order.get(id(m[0]), 0)))
        left: list[tuple[FramePacer, Model, GroupRenderer]] = []
        for n, (pacer, model, renderer) in enumerate(turn):
            if self._pass_taken:  # the round ends with a pass: the rest run their slices next round
                left += turn[n:]
                break
            if pacer.run_slice(model, renderer):
                left.append((pacer, model, renderer))
        self._turn = left
        return bool(left)

    def _take_pass(self, pacer: FramePacer) -> bool:
        if self._pass_taken:
            return False
        self._pass_taken = True
        self._members.sort(key=lambda m: m[0] is pacer)  # to the back of the queue for passes
        return True
