"""Where finished responses live: the shared chain view, the stored entry, and the server-wide store.

Plain data, no I/O. A chain's items live in one append-only list; a response remembers how much
of it is its own (`length`), so a child that extends the tip shares the list and a fork copies it.

`ResponseStore` is bounded twice: by entries and by bytes. Each entry is charged what it added to
its chain (its input and its output, as JSON), so a long chain costs its total size once, not once
per turn. It also indexes output items by id, so `item_reference` input items resolve (§ the Open
Responses `ItemReferenceParam`); an evicted response takes its items out of the index.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, overload

from app.protocol.turns import Item

__all__ = ["HistoryView", "ResponseStore", "StoredResponse"]

MiB = 1024 * 1024


class HistoryView(Sequence[Item]):
    """Read-only view of the first `length` items of a shared append-only list (no copy)."""

    __slots__ = ("_items", "_length")

    def __init__(self, items: list[Item], length: int) -> None:
        self._items = items
        self._length = length

    def __len__(self) -> int:
        return self._length

    @overload
    def __getitem__(self, index: int) -> Item: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Item]: ...
    def __getitem__(self, index: int | slice) -> Item | Sequence[Item]:
        if isinstance(index, slice):
            return self._items[: self._length][index]
        if index < 0:
            index += self._length
        if not 0 <= index < self._length:
            raise IndexError("history index out of range")
        return self._items[index]

    def __iter__(self) -> Iterator[Item]:
        items = self._items
        for i in range(self._length):
            yield items[i]

    def __repr__(self) -> str:
        return f"HistoryView(len={self._length})"


@dataclass(slots=True)
class StoredResponse:
    """A finished response as the cache and the store keep it: its chain is `items[:length]`
    (history + its input + its output), `chars` the JSON size of that chain, `own_chars` the part
    this response added, and the last `output_len` items of the chain are its output."""

    id: str
    items: list[Item]
    length: int
    chars: int
    lane: str | None
    response: dict[str, Any]  # the final response object
    store: bool
    own_chars: int = 0
    output_len: int = 0

    def output(self) -> Sequence[Item]:
        return self.items[self.length - self.output_len : self.length]

    def chain(self) -> HistoryView:
        return HistoryView(self.items, self.length)


class ResponseStore:
    """Server-wide bounded LRU of responses created with `store: true` (plain data, no I/O).

    Lets HTTP clients chain with `previous_response_id` and lets WebSocket cache misses fall back
    (PROTOCOL §2.2). Sessions of one server share one store; they run on one event loop."""

    def __init__(self, max_entries: int = 1024, max_bytes: int = 256 * MiB) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("max_entries and max_bytes must be >= 1")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[str, StoredResponse] = OrderedDict()
        self._items: dict[str, tuple[str, Item]] = {}  # output item id -> (response id, item)

    def get(self, response_id: str) -> StoredResponse | None:
        entry = self._entries.get(response_id)
        if entry is not None:
            self._entries.move_to_end(response_id)
        return entry

    def item(self, item_id: str) -> Item | None:
        """An output item of a stored response, by its id."""
        found = self._items.get(item_id)
        return found[1] if found is not None else None

    def put(self, entry: StoredResponse) -> None:
        old = self._entries.pop(entry.id, None)
        if old is not None:
            self._forget(old)
        self._entries[entry.id] = entry
        self.bytes += entry.own_chars
        for item in entry.output():
            item_id = item.get("id")
            if isinstance(item_id, str):
                self._items[item_id] = (entry.id, item)
        while len(self._entries) > self.max_entries or (
            self.bytes > self.max_bytes and len(self._entries) > 1
        ):
            _, evicted = self._entries.popitem(last=False)
            self._forget(evicted)

    def _forget(self, entry: StoredResponse) -> None:
        self.bytes -= entry.own_chars
        for item in entry.output():
            item_id = item.get("id")
            if isinstance(item_id, str) and self._items.get(item_id, ("",))[0] == entry.id:
                del self._items[item_id]

    def __contains__(self, response_id: object) -> bool:
        return response_id in self._entries

    def __len__(self) -> int:
        return len(self._entries)
