"""Bridge: façade signals come out as Qt signals; close() cuts them off."""

from __future__ import annotations

from app.services.api import ConnectionStatus
from app.ui.bridge import TRANSCRIPT_OPS, Bridge
from tests.ui.fakes import FakeServices


def test_forwards_and_disconnects(qtbot) -> None:  # type: ignore[no-untyped-def]
    """Every façade signal is forwarded with its arguments until close()."""
    fake = FakeServices()
    bridge = Bridge(fake)
    got: list[object] = []
    bridge.connection_changed.connect(got.append)
    bridge.transcript.tool_output.connect(lambda *a: got.append(a))
    status = ConnectionStatus("warm", "ok")
    fake.connection_changed.emit(status)
    fake.transcript.tool_output.emit("call_1", "out", False)
    assert got == [status, ("call_1", "out", False)]
    bridge.close()
    fake.connection_changed.emit(ConnectionStatus("offline"))
    assert len(got) == 2
    assert set(TRANSCRIPT_OPS) == set(vars(fake.transcript))
