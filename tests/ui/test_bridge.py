"""Bridge: façade signals come out as Qt signals; close() cuts them off."""

from __future__ import annotations

from app.services.api import ConnectionStatus, FileBadge, FileChanges, StreamStats
from app.ui.bridge import Bridge
from tests.ui.fakes import FakeServices


def test_forwards_and_disconnects(qtbot) -> None:  # type: ignore[no-untyped-def]
    """Every façade signal is forwarded with its arguments until close()."""
    fake = FakeServices()
    bridge = Bridge(fake)
    got: list[object] = []
    for qt_signal in (
        bridge.connection_changed,
        bridge.stats_changed,
        bridge.files_changed,
        bridge.busy_changed,
        bridge.banner_changed,
    ):
        qt_signal.connect(got.append)
    status, stats, files = (
        ConnectionStatus("warm", "ok"),
        StreamStats(1.0),
        FileChanges.listing([FileBadge("a", "pending")]),
    )
    fake.connection_changed.emit(status)
    fake.stats_changed.emit(stats)
    fake.files_changed.emit(files)
    fake.busy_changed.emit(True)
    fake.banner_changed.emit("hi")
    assert got == [status, stats, files, True, "hi"]
    bridge.close()
    fake.connection_changed.emit(ConnectionStatus("offline"))
    fake.banner_changed.emit("gone")
    assert len(got) == 5
