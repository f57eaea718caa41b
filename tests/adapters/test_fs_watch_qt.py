"""BatchPump on the Qt event loop the app runs (qasync), not only on plain asyncio."""

from __future__ import annotations


def test_batch_pump_runs_on_the_qt_event_loop(qloop) -> None:  # type: ignore[no-untyped-def]
    """On qasync (the app's loop) call_at returns a plain Handle: re-arming must not rely on .when()."""
    import asyncio

    from app.adapters.fs_watch import BatchPump
    from app.context.coalesce import Change, Coalescer

    batches: list[object] = []

    async def go() -> None:
        pump = BatchPump(Coalescer(0.02, 0.5), batches.append, asyncio.get_running_loop())
        pump.feed(Change("modified", "a.py"))
        pump.feed(Change("modified", "b.py"))  # arms again while a timer is pending
        for _ in range(100):
            if batches:
                return
            await asyncio.sleep(0.01)

    qloop.run_until_complete(go())
    assert len(batches) == 1
