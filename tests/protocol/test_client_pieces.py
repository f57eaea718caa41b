"""A long streamed answer is kept in a bounded number of strings and assembled exactly."""

from __future__ import annotations

from app.protocol import events as ev
from app.protocol.client import ClientSession, Completed


def test_a_million_deltas_are_kept_in_chunks_and_assembled_whole() -> None:
    client = ClientSession()
    client.create([{"type": "message", "role": "user", "content": "go"}], model="m")
    client.receive_event(ev.ResponseCreated(response={"id": "r1"}))
    client.receive_event(ev.OutputItemAdded(output_index=0, item={"type": "message", "id": "m1"}))
    deltas = [f"{i % 10}" for i in range(100_000)]
    for d in deltas:
        client.receive_event(ev.OutputTextDelta(item_id="m1", output_index=0, delta=d))
    turn = client._lanes[None].turn
    assert turn is not None and len(turn.pieces[0]) <= 1024 + 100_000 // 1024
    client.receive_event(ev.ResponseCompleted(response={"id": "r1", "output": []}))  # output omitted
    (done,) = [o for o in client.outcomes() if isinstance(o, Completed)]
    assert done.output[0]["content"][0]["text"] == "".join(deltas)
