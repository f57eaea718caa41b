"""The Qt-free signal used between services and the UI bridge."""

from __future__ import annotations

from app.services.signals import Signal


def test_emit_reaches_handlers_in_order_and_survives_a_failing_one() -> None:
    """A raising handler is logged; the next handler still runs."""
    sig: Signal[[int]] = Signal("n")
    seen: list[str] = []

    def bad(n: int) -> None:
        raise RuntimeError("boom")

    sig.connect(lambda n: seen.append(f"a{n}"))
    sig.connect(bad)
    sig.connect(lambda n: seen.append(f"c{n}"))
    sig.emit(1)
    assert seen == ["a1", "c1"]


def test_disconnect_stops_delivery() -> None:
    """A disconnected handler is not called; disconnecting twice is harmless."""
    sig: Signal[[]] = Signal()
    calls: list[int] = []

    def h() -> None:
        calls.append(1)

    sig.connect(h)
    sig.connect(h)  # connected once only
    sig.emit()
    sig.disconnect(h)
    sig.disconnect(h)
    sig.emit()
    assert calls == [1]
