"""FramePacer on a fake clock: slices by time, model and render never share a slice, progress always."""

from __future__ import annotations

from collections.abc import Callable

from app.render.pacer import FramePacer


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeModel:
    """`chunks` pieces of input; each advance step costs `cost` seconds on the clock."""

    def __init__(self, clock: Clock, chunks: int, cost: float, size: int = 100) -> None:
        self.clock, self.left, self.cost, self.size = clock, chunks, cost, size
        self.log: list[str] = []
        self.calls: list[tuple[float, int]] = []

    @property
    def pending(self) -> bool:
        return self.left > 0

    def advance(self, deadline: float, clock: Callable[[], float], max_chars: int = 1 << 62) -> int:
        self.calls.append((deadline, max_chars))
        fed = 0
        while self.left and fed < max_chars:  # at least one step, then until the deadline
            self.left -= 1
            fed += self.size
            self.clock.now += self.cost
            self.log.append("model")
            if clock() >= deadline:
                break
        return fed


class FakeRenderer:
    def __init__(self, clock: Clock, model: FakeModel, cost: float) -> None:
        self.clock, self.model, self.cost = clock, model, cost
        self.todo = 0
        self.seen = model.left
        self.log: list[str] = []
        model.log = self.log

    def has_work(self) -> bool:
        return self.todo > 0 or self.seen != self.model.left

    def pass_due(self) -> bool:
        return False

    def draw(self, deadline: float) -> None:
        self.todo += self.seen - self.model.left
        self.seen = self.model.left
        while self.todo:
            self.todo -= 1
            self.clock.now += self.cost
            self.log.append("render")
            if self.clock() >= deadline:
                break


def _frame(pacer: FramePacer, model: FakeModel, renderer: FakeRenderer) -> int:
    pacer.start_frame()
    slices = 1
    renderer.log.append("|")
    while pacer.run_slice(model, renderer):
        renderer.log.append("|")
        slices += 1
    return slices


def test_a_frame_alternates_model_and_render_slices_within_its_budget() -> None:
    """Model work gets at most its share, then rendering; each slice is one kind of work."""
    clock = Clock()
    pacer = FramePacer(clock, budget_s=0.010, slice_s=0.004, model_share=0.5)
    model = FakeModel(clock, chunks=100, cost=0.001)
    renderer = FakeRenderer(clock, model, cost=0.001)
    t0 = clock.now
    _frame(pacer, model, renderer)
    slices = " ".join(renderer.log).strip("| ").split("|")
    assert len(slices) >= 2
    assert all(set(s.split()) in ({"model"}, {"render"}) for s in slices)
    assert clock.now - t0 <= 0.010 + 0.001
    assert renderer.log.count("model") == 5  # the model share: 5 ms of 1 ms steps
    assert model.left == 95


def test_a_zero_budget_frame_still_feeds_and_renders_once() -> None:
    """Even when every step overruns, each frame feeds once and renders once: the stream always moves."""
    clock = Clock()
    pacer = FramePacer(clock, budget_s=0.0, slice_s=0.0)
    model = FakeModel(clock, chunks=3, cost=0.050)
    renderer = FakeRenderer(clock, model, cost=0.050)
    frames = 0
    while model.pending or renderer.has_work():
        _frame(pacer, model, renderer)
        frames += 1
        assert frames < 10
    assert frames == 3 and renderer.log.count("render") == 3


def test_the_feed_limit_caps_characters_per_frame() -> None:
    """No more than max_feed characters reach the model in one frame, however fast it is."""
    clock = Clock()
    pacer = FramePacer(clock, max_feed=250)
    model = FakeModel(clock, chunks=10, cost=0.0, size=100)
    renderer = FakeRenderer(clock, model, cost=0.0)
    _frame(pacer, model, renderer)
    assert model.left == 7  # steps of 100 until 250 is passed: three, then the frame feeds no more
    assert [limit for _, limit in model.calls] == [250]
    assert pacer.frames == 1


# ---- PacerGroup: several views on one frame clock -------------------------------------------------


def _member(clock: Clock, chunks: int) -> tuple[FramePacer, FakeModel, FakeRenderer]:
    model = FakeModel(clock, chunks, cost=0.0005)
    return FramePacer(clock), model, FakeRenderer(clock, model, cost=0.0005)


def test_group_paces_both_views_in_one_frame_within_one_budget() -> None:
    """Two streaming views: every round (one event-loop callback) runs a slice of each, a round is
    one slice long, and a frame's work together stays within one frame's budget; both views are fed
    and rendered in every frame."""
    from app.render.pacer import FRAME_BUDGET_S, SLICE_S, PacerGroup

    clock = Clock()
    group = PacerGroup()
    a, b = _member(clock, 1000), _member(clock, 1000)
    group.add(*a)
    group.add(*b)
    step = 0.0005  # one model step or one render unit: the most a slice overshoots its deadline
    for _ in range(5):
        assert group.start_frame() == 2
        t0 = clock.now
        log_a, log_b = len(a[2].log), len(b[2].log)
        more = True
        while more:
            before = (a[0].slices, b[0].slices, clock.now)
            more = group.run_slice()
            assert clock.now - before[2] <= SLICE_S + 2 * step + 1e-9  # a round is one slice
            assert a[0].slices - before[0] <= 1 and b[0].slices - before[1] <= 1
        assert clock.now - t0 <= FRAME_BUDGET_S + 2 * step + 1e-9
        for (_p, _m, r), n in ((a, log_a), (b, log_b)):
            assert {"model", "render"} <= set(r.log[n:])  # fed and rendered this frame
    assert a[0].budget_s == FRAME_BUDGET_S / 2 and a[0].slice_s == SLICE_S / 2


def test_group_gives_a_lone_view_the_whole_budget_and_skips_idle_ones() -> None:
    from app.render.pacer import FRAME_BUDGET_S, PacerGroup

    clock = Clock()
    group = PacerGroup()
    busy, idle = _member(clock, 1000), _member(clock, 0)
    group.add(*busy)
    group.add(*idle)
    assert group.start_frame() == 1
    while group.run_slice():
        pass
    assert busy[0].budget_s == FRAME_BUDGET_S and idle[0].frames == 0
    group.remove(busy[2])
    assert group.start_frame() == 0 and not group.run_slice() and not group.pending


def test_group_reserves_paint_time_while_frames_come_late_and_gives_it_back() -> None:
    """Late frames with two views: part of the budget is kept for their paints; on-time frames
    return it; a lone view always has the whole budget."""
    from app.render.pacer import FRAME_BUDGET_S, PacerGroup

    clock = Clock()
    group = PacerGroup(frame_s=0.016)
    a, b = _member(clock, 10_000), _member(clock, 10_000)
    group.add(*a)
    group.add(*b)
    t = 0.0
    for _ in range(20):  # frames every 30 ms: late
        group.start_frame(t)
        t += 0.030
    assert group.reserve_s == FRAME_BUDGET_S / 2  # capped
    assert a[0].budget_s == b[0].budget_s == (FRAME_BUDGET_S - group.reserve_s) / 2
    late = group.reserve_s
    for _ in range(4):  # on time again
        group.start_frame(t)
        t += 0.016
    assert 0 < group.reserve_s < late
    group.remove(b[2])
    group.start_frame(t)
    assert a[0].budget_s == FRAME_BUDGET_S  # alone: no reserve


class EvictingRenderer(FakeRenderer):
    """A view whose document is over its budget while rendering lags: every slice it asks for a
    forced eviction pass (`cost` 6 ms), and renders when it may not run one."""

    def __init__(self, clock: Clock, model: FakeModel, pacer: FramePacer) -> None:
        super().__init__(clock, model, cost=0.0005)
        self.pacer = pacer
        self.over = True
        self.passes: list[int] = []  # the group round of each pass
        self.group_rounds: Callable[[], int] = lambda: 0

    def has_work(self) -> bool:
        return self.over or super().has_work()

    def pass_due(self) -> bool:
        return self.over and self.pacer.forced_left

    def draw(self, deadline: float) -> None:
        if self.over and self.pacer.may_evict(forced=True):
            self.clock.now += 0.006
            self.passes.append(self.group_rounds())
            self.log.append("evict")
            return
        super().draw(deadline)


def _evicting_group(n: int, chunks: int = 100_000) -> tuple[object, list[EvictingRenderer]]:
    from app.render.pacer import PacerGroup

    clock = Clock()
    group = PacerGroup()
    views = []
    for _ in range(n):
        model = FakeModel(clock, chunks, cost=0.0005)
        pacer = FramePacer(clock)
        view = EvictingRenderer(clock, model, pacer)
        view.group_rounds = lambda: group.rounds
        group.add(pacer, model, view)
        views.append(view)
    return group, views


def test_a_group_round_runs_one_eviction_pass_and_lagging_views_take_turns() -> None:
    """Two views both over their memory budget: a round with a pass runs nothing else (two passes, or
    a pass and the other view's render slice, with both viewports' paints after them were the
    longest stalls), and each view still gets its pass at least every other frame: eviction is
    delayed, not starved."""
    from app.render.pacer import PacerGroup

    group, views = _evicting_group(2)
    assert isinstance(group, PacerGroup)
    frames = 40
    for _ in range(frames):
        group.start_frame()
        more = True
        while more:
            slices = [v.pacer.slices for v in views]
            passes = [len(v.passes) for v in views]
            more = group.run_slice()
            ran = [v.pacer.slices - n for v, n in zip(views, slices, strict=True)]
            if [len(v.passes) for v in views] != passes:  # a round with a pass runs nothing else
                assert sum(ran) == 1
    rounds = [r for v in views for r in v.passes]
    assert len(rounds) == len(set(rounds))  # one pass a round over all views
    for v in views:
        assert len(v.passes) >= frames // 2
        assert v.pacer.frames == frames


def test_a_view_that_is_always_first_in_the_round_does_not_starve_the_others() -> None:
    """Three views over budget (nothing left to feed), frames one round long (the next tick cuts each
    frame after its first round): the pass goes round among them, each waits at most two frames."""
    from app.render.pacer import PacerGroup

    group, views = _evicting_group(3, chunks=0)
    assert isinstance(group, PacerGroup)
    for _ in range(30):
        group.start_frame()
        group.run_slice()  # the frame is cut after one round (the next tick came)
    for v in views:
        assert len(v.passes) == 10
        gaps = [b - a for a, b in zip(v.passes, v.passes[1:], strict=False)]
        assert max(gaps) <= 3


def test_a_lone_pacer_runs_one_forced_pass_a_frame_and_any_spare_time_pass() -> None:
    clock = Clock()
    pacer = FramePacer(clock)
    pacer.start_frame()
    assert pacer.may_evict(forced=True)
    assert not pacer.may_evict(forced=True)
    assert pacer.may_evict(forced=False)
    pacer.start_frame()
    assert pacer.may_evict(forced=True)
