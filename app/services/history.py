"""Session history: which stored session the conversation is saved to, restoring and persisting it.

The store (`app.adapters.store.HistoryStore`) opens lazily, so a broken database only turns history
off (with a warning), never the app. `open()` returns the items of a session to restore; the caller
hands them to the protocol client and the conversation model (one mapping, in the model).
`persist()` appends the items the client's transcript gained since the last call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from app.adapters.store import HistoryStore, StoreError
from app.context.ledger import is_context_item
from app.protocol.inputs import message_text
from app.render.transcript import NoticeKind
from app.services.api import SessionInfo

__all__ = ["History", "pair_calls"]


class History:
    """One project's sessions in the store (see the module docstring)."""

    def __init__(
        self, root: Path, store: HistoryStore | None, notice: Callable[[NoticeKind, str], None]
    ) -> None:
        self._root = root
        self._store = store
        self._notice = notice
        self.session_id: str | None = None
        self._persisted = 0  # transcript items already in the store
        self.title = ""

    def _db(self) -> HistoryStore | None:
        if self._store is None:
            try:
                self._store = HistoryStore()
            except StoreError as exc:
                self._notice("warning", f"History is off: {exc}")
                return None
        return self._store

    def open(self, session_id: str | None = None) -> list[dict[str, Any]]:
        """Make `session_id` (else the project's last session, else a new one) current; its items."""
        store = self._db()
        if store is None:
            return []
        store.release_memory()
        rec = store.get_session(session_id) if session_id else store.last_session(self._root)
        if rec is None:
            rec = store.create_session(self._root)
        self.session_id = rec.id
        self.title = rec.title or "untitled"
        items = [
            i.data["item"] if i.kind == "user_message" else i.data
            for i in store.items(rec.id)
            if i.kind in ("item", "user_message")
        ]
        items = pair_calls(items)
        self._persisted = len(items)
        return items

    def create(self) -> bool:
        """Start a new, empty session; False if history is off."""
        store = self._db()
        if store is None:
            return False
        store.release_memory()  # the session put away may have been long
        rec = store.create_session(self._root)
        self.session_id = rec.id
        self.title = ""
        self._persisted = 0
        return True

    def persist(self, transcript: Sequence[Mapping[str, Any]], head: str | None) -> None:
        """Append the conversation items (context pushes left out) not stored yet, and the chain head."""
        store = self._db()
        if store is None or self.session_id is None:
            return
        items = [i for i in transcript if not is_context_item(i)]
        try:
            _append(store, self.session_id, items[self._persisted :])
            store.set_chain_head(self.session_id, "default", head)
        except StoreError as exc:
            self._notice("warning", f"Could not save the history: {exc}")
            return
        self._persisted = len(items)

    def save_new(self, transcript: Sequence[Mapping[str, Any]], title: str) -> str | None:
        """Store `transcript` (context pushes left out) as a new session of this project, without
        making it current (a promoted side conversation); its id, or None if history is off or failed."""
        store = self._db()
        if store is None:
            return None
        try:
            rec = store.create_session(self._root, title)
            _append(store, rec.id, [i for i in transcript if not is_context_item(i)])
            if self.session_id is not None:
                store.set_last_session(self._root, self.session_id)  # the current one stays the last opened
        except StoreError as exc:
            self._notice("warning", f"Could not save the history: {exc}")
            return None
        return rec.id

    def sessions(self) -> list[SessionInfo]:
        store = self._db()
        if store is None:
            return []
        return [
            SessionInfo(r.id, r.title or "untitled", r.project, r.updated_at, r.turns)
            for r in store.list_sessions(self._root)
        ]

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


def _append(store: HistoryStore, session_id: str, items: Sequence[Mapping[str, Any]]) -> None:
    for item in items:
        if item.get("type") == "message" and item.get("role") == "user":
            store.append_item(session_id, "user_message", {"text": message_text(item), "item": dict(item)})
        else:
            store.append_item(session_id, "item", dict(item))


def pair_calls(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A restored transcript whose last calls never got outputs (the app quit mid-loop) would be refused
    upstream; answer each such call with a stub saying so, right after it."""
    answered = {str(i.get("call_id")) for i in items if i.get("type") == "function_call_output"}
    out: list[dict[str, Any]] = []
    for item in items:
        out.append(item)
        if item.get("type") == "function_call" and str(item.get("call_id")) not in answered:
            out.append(
                {
                    "type": "function_call_output",
                    "call_id": str(item.get("call_id", "")),
                    "output": "not run: Slipstream was closed before this call ran",
                }
            )
    return out
