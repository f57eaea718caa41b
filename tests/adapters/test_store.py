"""History store: sessions, items, chain heads and per-project last session in SQLite."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import platformdirs
import pytest

from app import profile
from app.adapters.store import HistoryStore, StoreError


def test_round_trip(tmp_path: Path) -> None:
    """Items, chain heads and the last session survive closing and reopening the file."""
    db = tmp_path / "h.sqlite3"
    project = tmp_path / "proj"
    with HistoryStore(db) as st:
        s = st.create_session(project, now=10.0)
        assert st.append_item(s.id, "user_message", {"text": "Fix   the\nbug please"}, now=11.0) == 0
        assert st.append_item(s.id, "assistant_text", {"text": "Done ✓"}, now=12.0) == 1
        st.set_chain_head(s.id, "main", "resp_1", now=12.0)
        st.set_chain_head(s.id, "main", "resp_2", now=13.0)
    with HistoryStore(db) as st:
        rec = st.last_session(project)
        assert rec is not None and rec.id == s.id
        assert rec.title == "Fix the bug please" and rec.turns == 1 and rec.updated_at == 12.0
        items = st.items(s.id)
        assert [(i.seq, i.kind, i.data) for i in items] == [
            (0, "user_message", {"text": "Fix   the\nbug please"}),
            (1, "assistant_text", {"text": "Done ✓"}),
        ]
        assert [i.seq for i in st.items(s.id, after_seq=0)] == [1]
        assert st.chain_heads(s.id) == {"main": "resp_2"}
        st.set_chain_head(s.id, "main", None)
        assert st.chain_heads(s.id) == {}


def test_sessions_per_project_and_switching(tmp_path: Path) -> None:
    """Listing is per project, newest first; last session follows the switch; delete cascades."""
    with HistoryStore(tmp_path / "h.db") as st:
        a = st.create_session(tmp_path / "a", now=1.0)
        b = st.create_session(tmp_path / "a", now=2.0)
        other = st.create_session(tmp_path / "b", now=3.0)
        assert [r.id for r in st.list_sessions(tmp_path / "a")] == [b.id, a.id]
        assert len(st.list_sessions()) == 3
        st.set_last_session(tmp_path / "a", a.id)
        assert st.last_session(tmp_path / "a").id == a.id  # type: ignore[union-attr]
        assert st.last_session(tmp_path / "b").id == other.id  # type: ignore[union-attr]
        st.append_item(a.id, "notice", {"text": "x"})
        st.delete_session(a.id)
        assert st.last_session(tmp_path / "a") is None
        assert st.items(a.id) == []
        with pytest.raises(StoreError, match="no session"):
            st.append_item(a.id, "notice", {})


def test_default_path_in_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a path the database lives in platformdirs' user_data_dir, or the throwaway profile's."""
    monkeypatch.delenv(profile.PROFILE_ENV, raising=False)
    monkeypatch.setattr(platformdirs, "user_data_dir", lambda *a, **k: str(tmp_path / "data"))
    with HistoryStore() as st:
        assert st.path == tmp_path / "data" / "history.sqlite3"
    assert (tmp_path / "data" / "history.sqlite3").exists()
    monkeypatch.setenv(profile.PROFILE_ENV, str(tmp_path / "prof"))
    with HistoryStore() as st:
        assert st.path == tmp_path / "prof" / "data" / "history.sqlite3"


def test_corrupt_file_gives_clear_error(tmp_path: Path) -> None:
    """Garbage in the database file: StoreError naming the file."""
    bad = tmp_path / "h.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match=str(bad)):
        HistoryStore(bad)


def test_newer_schema_refused(tmp_path: Path) -> None:
    """A database from a newer version is not silently rewritten."""
    path = tmp_path / "h.db"
    con = sqlite3.connect(path)
    con.execute("PRAGMA user_version = 99")
    con.close()
    with pytest.raises(StoreError, match="newer"):
        HistoryStore(path)


def test_history_database_is_private(tmp_path: Path) -> None:
    """The history file (and its WAL journal) is readable by the user only, even under a loose umask."""
    import os

    old = os.umask(0o022)
    try:
        store = HistoryStore(tmp_path / "h.sqlite3")
        store.create_session(tmp_path, "chat")
        files = [p for p in tmp_path.iterdir() if p.name.startswith("h.sqlite3")]
        assert files and all(p.stat().st_mode & 0o077 == 0 for p in files), [
            oct(p.stat().st_mode) for p in files
        ]
        store.close()
    finally:
        os.umask(old)
