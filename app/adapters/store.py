"""History in SQLite: sessions, their transcript items, chain heads, and each project's last session.

One file in the platform's data folder (platformdirs' user_data_dir). Transcript items are stored
as the operations the UI replays (kind + JSON data), appended in order, so reopening a project can
rebuild the transcript exactly and the client can rebuild a lost chain from the same items. Chain
heads are per lane: a stored head may be stale (the server forgot it); the caller then rebuilds.

All calls are short synchronous statements on the event-loop thread; WAL keeps readers cheap.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app import profile

APP_NAME = "slipstream"
DB_FILE = "history.sqlite3"
SCHEMA_VERSION = 1
TITLE_MAX = 80

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    title TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    turns INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS sessions_by_project ON sessions (project, updated_at DESC);
CREATE TABLE IF NOT EXISTS items (
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (session_id, seq)
);
CREATE TABLE IF NOT EXISTS chain_heads (
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    lane TEXT NOT NULL,
    response_id TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (session_id, lane)
);
CREATE TABLE IF NOT EXISTS projects (
    project TEXT PRIMARY KEY,
    last_session_id TEXT REFERENCES sessions (id) ON DELETE SET NULL
);
"""


def _private_file(path: Path) -> None:
    """Create `path` readable by the user only (0600), or tighten an existing file (and its journals)."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            if os.stat(p).st_mode & 0o077:
                os.chmod(p, 0o600)
        except FileNotFoundError:
            continue


class StoreError(RuntimeError):
    """The history database cannot be opened or used; the message names the file."""


@dataclass(frozen=True, slots=True)
class SessionRecord:
    id: str
    project: str
    title: str
    created_at: float
    updated_at: float
    turns: int


@dataclass(frozen=True, slots=True)
class StoredItem:
    seq: int
    kind: str  # e.g. "user_message", "assistant_text", "tool_call", "tool_output", "notice", or a wire item type
    data: dict[str, Any]
    created_at: float


def data_dir() -> Path:
    """The platform's per-user data folder, or the throwaway profile's (see app.adapters.profile)."""
    return profile.data_dir()


def project_key(project: str | Path) -> str:
    """Projects are identified by their resolved absolute path."""
    return str(Path(project).expanduser().resolve())


class HistoryStore:
    """`HistoryStore(path)` opens (and creates) the database; `close()` when done."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or data_dir() / DB_FILE
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _private_file(self.path)  # before SQLite opens it: its -wal/-shm files copy the mode
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.execute("PRAGMA journal_mode = WAL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"history database {self.path} was written by a newer Slipstream (schema {version})"
                )
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open history database {self.path}: {exc}") from exc
        except OSError as exc:
            raise StoreError(
                f"cannot create history folder {self.path.parent}: {exc.strerror or exc}"
            ) from exc

    def close(self) -> None:
        self._db.close()

    def release_memory(self) -> None:
        """Drop SQLite's page cache (it refills on demand): after a long session is put away."""
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("PRAGMA shrink_memory")

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # sessions -----------------------------------------------------------------------------------

    def create_session(self, project: str | Path, title: str = "", now: float | None = None) -> SessionRecord:
        now = time.time() if now is None else now
        rec = SessionRecord(uuid.uuid4().hex, project_key(project), title[:TITLE_MAX], now, now, 0)
        with self._tx() as db:
            db.execute(
                "INSERT INTO sessions (id, project, title, created_at, updated_at, turns) VALUES (?, ?, ?, ?, ?, ?)",
                (rec.id, rec.project, rec.title, rec.created_at, rec.updated_at, rec.turns),
            )
            self._set_last(db, rec.project, rec.id)
        return rec

    def get_session(self, session_id: str) -> SessionRecord | None:
        row = self._db.execute(
            "SELECT id, project, title, created_at, updated_at, turns FROM sessions WHERE id = ?",
            (session_id,),
        ).fetchone()
        return SessionRecord(*row) if row else None

    def list_sessions(self, project: str | Path | None = None) -> list[SessionRecord]:
        """Newest first; all projects when `project` is None."""
        sql = "SELECT id, project, title, created_at, updated_at, turns FROM sessions"
        args: tuple[str, ...] = ()
        if project is not None:
            sql += " WHERE project = ?"
            args = (project_key(project),)
        rows = self._db.execute(sql + " ORDER BY updated_at DESC, rowid DESC", args).fetchall()
        return [SessionRecord(*r) for r in rows]

    def rename_session(self, session_id: str, title: str) -> None:
        self._db.execute("UPDATE sessions SET title = ? WHERE id = ?", (title[:TITLE_MAX], session_id))

    def delete_session(self, session_id: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM sessions WHERE id = ?", (session_id,))

    # items --------------------------------------------------------------------------------------

    def append_item(self, session_id: str, kind: str, data: dict[str, Any], now: float | None = None) -> int:
        """Append one transcript item; returns its sequence number. A user message counts a turn and
        titles an untitled session."""
        now = time.time() if now is None else now
        payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        with self._tx() as db:
            row = db.execute("SELECT title FROM sessions WHERE id = ?", (session_id,)).fetchone()
            if row is None:
                raise StoreError(f"no session {session_id!r} in {self.path}")
            seq = db.execute(
                "SELECT COALESCE(MAX(seq), -1) + 1 FROM items WHERE session_id = ?", (session_id,)
            ).fetchone()[0]
            db.execute(
                "INSERT INTO items (session_id, seq, kind, data, created_at) VALUES (?, ?, ?, ?, ?)",
                (session_id, seq, kind, payload, now),
            )
            if kind == "user_message":
                title = row[0] or " ".join(str(data.get("text", "")).split())[:TITLE_MAX]
                db.execute(
                    "UPDATE sessions SET turns = turns + 1, title = ?, updated_at = ? WHERE id = ?",
                    (title, now, session_id),
                )
            else:
                db.execute("UPDATE sessions SET updated_at = ? WHERE id = ?", (now, session_id))
        return int(seq)

    def items(self, session_id: str, after_seq: int = -1) -> list[StoredItem]:
        rows = self._db.execute(
            "SELECT seq, kind, data, created_at FROM items WHERE session_id = ? AND seq > ? ORDER BY seq",
            (session_id, after_seq),
        ).fetchall()
        return [StoredItem(seq, kind, json.loads(data), created) for seq, kind, data, created in rows]

    # chain heads --------------------------------------------------------------------------------

    def set_chain_head(
        self, session_id: str, lane: str, response_id: str | None, now: float | None = None
    ) -> None:
        """Record the lane's latest response id; None forgets it (the chain was lost)."""
        now = time.time() if now is None else now
        if response_id is None:
            self._db.execute("DELETE FROM chain_heads WHERE session_id = ? AND lane = ?", (session_id, lane))
            return
        self._db.execute(
            "INSERT INTO chain_heads (session_id, lane, response_id, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (session_id, lane) DO UPDATE SET response_id = excluded.response_id, "
            "updated_at = excluded.updated_at",
            (session_id, lane, response_id, now),
        )

    def chain_heads(self, session_id: str) -> dict[str, str]:
        rows = self._db.execute(
            "SELECT lane, response_id FROM chain_heads WHERE session_id = ?", (session_id,)
        ).fetchall()
        return dict(rows)

    # projects -----------------------------------------------------------------------------------

    def set_last_session(self, project: str | Path, session_id: str) -> None:
        with self._tx() as db:
            self._set_last(db, project_key(project), session_id)

    def last_session(self, project: str | Path) -> SessionRecord | None:
        row = self._db.execute(
            "SELECT last_session_id FROM projects WHERE project = ?", (project_key(project),)
        ).fetchone()
        return self.get_session(row[0]) if row and row[0] else None

    @staticmethod
    def _set_last(db: sqlite3.Connection, project: str, session_id: str) -> None:
        db.execute(
            "INSERT INTO projects (project, last_session_id) VALUES (?, ?) "
            "ON CONFLICT (project) DO UPDATE SET last_session_id = excluded.last_session_id",
            (project, session_id),
        )
