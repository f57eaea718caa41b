"""Ledger: idle push, queued while busy, ack on completion, chain loss, renames, storms, secrets."""

from __future__ import annotations

import hashlib

import pytest

from app.context.ignore import Exclusion
from app.context.ledger import (
    UPDATE_MARKER,
    BadgeTable,
    Ledger,
    LedgerStateError,
    StatusChanges,
    is_context_item,
)
from app.context.snapshot import FileVersion, make_version

BUDGET = 4000


def v(path: str, text: str, mtime: float = 0.0) -> FileVersion:
    data = text.encode()
    return make_version(path, data, size=len(data), mtime=mtime, digest=hashlib.blake2b(data).hexdigest())


def gone(path: str) -> FileVersion:
    return FileVersion(path, "missing")


def started(*files: FileVersion) -> Ledger:
    """A ledger whose snapshot was sent and acknowledged on chain c1."""
    led = Ledger()
    led.observe_many(files)
    snap = led.build_snapshot(BUDGET, now=0.0)
    led.mark_sent(snap.id, "c1")
    led.acknowledge(snap.id)
    return led


def badges(led: Ledger) -> dict[str, tuple[str, str]]:
    return {s.path: (s.state, s.reason) for s in led.status()}


def test_update_before_snapshot_is_an_error() -> None:
    """No chain yet: build_snapshot first."""
    with pytest.raises(LedgerStateError):
        Ledger().build_update(BUDGET)


def test_idle_push_is_one_message_with_diff() -> None:
    """A modification becomes one user message with the marker and a unified diff."""
    led = started(v("a.py", "x = 1\ny = 2\n"))
    assert badges(led)["a.py"] == ("in_view", "")
    led.observe(v("a.py", "x = 1\ny = 3\n"))
    assert badges(led)["a.py"][0] == "pending"
    up = led.build_update(BUDGET)
    assert up is not None and up.kind == "update" and up.paths == ("a.py",)
    assert up.item["type"] == "message" and up.item["role"] == "user"
    text = up.item["content"][0]["text"]
    assert text.startswith(UPDATE_MARKER) and "--- a/a.py\n+++ b/a.py" in text and "-y = 2\n+y = 3" in text
    assert is_context_item(up.item)
    assert led.build_update(BUDGET) is None  # nothing is sent twice into one chain


def test_ack_only_when_the_carrying_response_completed() -> None:
    """Sent but unacknowledged stays pending; the ack flips it to in view."""
    led = started(v("a.py", "1\n"))
    led.observe(v("a.py", "2\n"))
    up = led.build_update(BUDGET)
    assert up is not None
    led.mark_sent(up.id, "c1")
    assert badges(led)["a.py"][0] == "pending"
    led.acknowledge(up.id)
    assert badges(led)["a.py"] == ("in_view", "")


def test_queued_while_busy_then_sent_with_next_turn() -> None:
    """Changes while a response is in flight accumulate into one update built at the next turn."""
    led = started(v("a.py", "1\n"), v("b.py", "1\n"))
    led.observe(v("a.py", "2\n"))
    led.observe(v("b.py", "2\n"))
    led.observe(v("a.py", "3\n"))
    assert led.has_pending()
    up = led.build_update(BUDGET)
    assert up is not None and set(up.paths) == {"a.py", "b.py"}
    assert "+3" in up.text and "+2" not in up.text.split("b/a.py", 1)[1].split("b/b.py")[0]


def test_failed_response_resends_the_change() -> None:
    """A failed carrying response rolls back; the next update carries the change again."""
    led = started(v("a.py", "1\n"))
    led.observe(v("a.py", "2\n"))
    u1 = led.build_update(BUDGET)
    assert u1 is not None
    led.mark_sent(u1.id, "c1")
    led.observe(v("c.py", "new\n"))
    u2 = led.build_update(BUDGET)
    assert u2 is not None and u2.paths == ("c.py",)
    led.fail(u1.id)  # u2 was chained after u1: rolled back as well
    u3 = led.build_update(BUDGET)
    assert u3 is not None and set(u3.paths) == {"a.py", "c.py"} and "-1\n+2" in u3.text


def test_chain_loss_rebuilds_from_disk_and_sends_nothing_twice() -> None:
    """Sent-but-unacked changes land in the new snapshot; no diff of them follows into the new chain."""
    led = started(v("a.py", "old\n"))
    led.observe(v("a.py", "new\n"))
    up = led.build_update(BUDGET)
    assert up is not None
    led.mark_sent(up.id, "c1")
    led.chain_lost()
    assert led.needs_snapshot
    with pytest.raises(LedgerStateError):
        led.mark_sent(up.id, "c2")  # a stale update never goes into the new chain
    led.acknowledge(up.id)  # a late ack from the old chain is ignored
    assert badges(led)["a.py"][0] == "pending"
    snap = led.build_snapshot(BUDGET, now=0.0)
    assert "new\n" in snap.text and "old" not in snap.text
    led.mark_sent(snap.id, "c2")
    assert led.build_update(BUDGET) is None
    led.acknowledge(snap.id)
    assert badges(led)["a.py"] == ("in_view", "")


def test_chain_switch_without_loss_is_refused() -> None:
    """Two chains in one generation would double-send: refused."""
    led = started(v("a.py", "1\n"))
    led.observe(v("a.py", "2\n"))
    up = led.build_update(BUDGET)
    assert up is not None
    with pytest.raises(LedgerStateError):
        led.mark_sent(up.id, "other-chain")


def test_created_deleted_and_recreated() -> None:
    """Created files carry content, deletions are listed, a recreated file comes back as created."""
    led = started(v("a.py", "a\n"))
    led.observe(v("new.py", "print(1)\n"))
    up = led.build_update(BUDGET)
    assert up is not None and "Created:\n  new.py" in up.text and "print(1)" in up.text
    led.acknowledge(up.id)
    led.observe(gone("a.py"))
    up = led.build_update(BUDGET)
    assert up is not None and "Deleted:\n  a.py" in up.text
    led.acknowledge(up.id)
    assert "a.py" not in badges(led)
    led.observe(v("a.py", "back\n"))
    up = led.build_update(BUDGET)
    assert up is not None and "Created:\n  a.py" in up.text and "back" in up.text


def test_delete_and_recreate_within_one_batch_is_a_modification() -> None:
    """Atomic replace: the file is re-read, so the model gets a diff, not a delete + create."""
    led = started(v("a.py", "1\n"))
    led.observe(gone("a.py"))
    led.observe(v("a.py", "2\n"))
    up = led.build_update(BUDGET)
    assert up is not None and "Deleted" not in up.text and "-1\n+2" in up.text


def test_rename_with_edit_and_pure_rename_by_content() -> None:
    """An event-paired rename diffs a/old b/new; an unpaired delete+create of equal content is a rename."""
    led = started(v("old.py", "a\nb\n"), v("x.py", "same\n"))
    led.rename("old.py", "new.py")
    led.observe(v("new.py", "a\nb\nc\n"))
    led.observe(gone("x.py"))
    led.observe(v("y.py", "same\n"))
    up = led.build_update(BUDGET)
    assert up is not None
    assert "--- a/old.py\n+++ b/new.py" in up.text
    assert "x.py -> y.py (same content)" in up.text and "Deleted" not in up.text
    led.acknowledge(up.id)
    assert set(badges(led)) == {"new.py", "y.py"}
    assert led.build_update(BUDGET) is None


def test_binary_oversized_and_excluded_are_summarised_not_sent() -> None:
    """No content for binary or oversized files; a file turned secret is reported as no longer visible."""
    led = started(v("a.py", "1\n"), make_version("img.png", b"\x89PNG\x00..", size=7, mtime=0, digest="p1"))
    assert badges(led)["img.png"] == ("summarised", "binary")
    led.observe(make_version("img.png", b"\x89PNG\x00.!", size=7, mtime=0, digest="p2"))
    led.observe(make_version("dump.sql", None, size=9_000_000, mtime=0, digest="d", max_bytes=1000))
    led.observe(make_version("a.py", None, size=2, mtime=0, exclusion=Exclusion("gitignored", ".gitignore")))
    up = led.build_update(BUDGET)
    assert up is not None
    assert "img.png (binary" in up.text and "dump.sql (too large" in up.text and "\x00" not in up.text
    assert "No longer visible:\n  a.py (excluded: gitignored)" in up.text
    led.acknowledge(up.id)
    b = badges(led)
    assert b["a.py"] == ("excluded", "gitignored") and b["dump.sql"] == ("summarised", "too large")


def test_non_utf8_sent_with_replacement_and_marked() -> None:
    """Latin-1 bytes become replacement characters and the message says so."""
    led = started(v("a.py", "1\n"))
    data = "naïve\n".encode("latin-1")
    led.observe(make_version("l.txt", data, size=len(data), mtime=0, digest="l"))
    up = led.build_update(BUDGET)
    assert up is not None and "na\ufffdve" in up.text and "not valid UTF-8" in up.text


def test_secret_in_new_line_is_withheld_with_notice() -> None:
    """Only new lines are scanned; the key never leaves, and the user gets a notice."""
    key = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
    led = started(v("cfg.py", "A = 1\n"))
    led.observe(v("cfg.py", f"A = 1\nTOKEN = '{key}'\n"))
    up = led.build_update(BUDGET)
    assert up is not None and key not in up.text and "line withheld" in up.text
    assert up.findings["cfg.py"][0].kind == "a GitHub token"
    assert up.notices == ["Held back 1 line in cfg.py that looks like a GitHub token."]
    led.acknowledge(up.id)
    led.observe(v("cfg.py", f"A = 2\nTOKEN = '{key}'\n"))
    up2 = led.build_update(BUDGET)
    assert up2 is not None and key not in up2.text and not up2.findings


def test_storm_is_capped_at_the_budget_and_summarised() -> None:
    """1,000 changed files: one message under budget, the rest listed with stats and 'summarised'."""
    files = [v(f"src/m{i:04}.py", "".join(f"line {j}\n" for j in range(20))) for i in range(1000)]
    led = started(*files)
    for f in files:
        assert f.text is not None
        led.observe(v(f.path, f.text.replace("line 5\n", "line five\n")))
    up = led.build_update(2000)
    assert up is not None
    assert up.tokens <= 2000 + 100
    assert 0 < len(up.summarised) < 1000
    assert "Over this update's budget" in up.text
    led.acknowledge(up.id)
    states = {s for s, _ in badges(led).values()}
    assert states == {"in_view", "summarised"}
    assert led.build_update(2000) is None  # the storm does not echo into later pushes


def test_seen_text_is_what_the_chain_was_sent() -> None:
    """seen_text follows the sent view: the snapshot's text, then the update's, None for unknown files."""
    from app.context.snapshot import make_version

    led = Ledger()
    led.observe(make_version("a.py", b"x = 1\n", size=6, mtime=1.0, digest="d1"))
    led.build_snapshot(
        10_000, 2.0, contents={"a.py": make_version("a.py", b"x = 1\n", size=6, mtime=1.0, digest="d1")}
    )
    assert led.seen_text("a.py") == "x = 1\n" and led.seen_text("b.py") is None
    led.observe(make_version("a.py", b"x = 2\n", size=6, mtime=3.0, digest="d2"))
    assert led.seen_text("a.py") == "x = 1\n"  # disk changed, the model has not seen it yet
    assert led.build_update(10_000) is not None
    assert led.seen_text("a.py") == "x = 2\n"


def test_take_changes_reports_only_rows_that_changed() -> None:
    """First call: every row; a save: that row only; a chain loss and its snapshot: a new base badge
    and the rows that differ from it; a deletion: the row goes once the model has it gone. Counts are
    the totals after each change, and the rows folded in are the listing at every step."""
    led = Ledger()
    table = BadgeTable()

    def take() -> StatusChanges:
        ch = led.take_changes()
        table.take(ch)
        assert {b.path: (b.state, b.reason) for b in table.rows()} == badges(led)
        return ch

    led.observe_many([v("b.py", "b\n"), v("a.py", "a\n"), FileVersion(".env", "excluded", reason="secret")])
    first = take()
    assert first.added == [".env", "a.py", "b.py"] and first.removed == []
    assert {p: s.state for p, s in first.rows.items()} == {
        ".env": "excluded",
        "a.py": "pending",
        "b.py": "pending",
    }
    assert first.counts == {"excluded": 1, "pending": 2}
    assert not take()  # nothing changed since
    snap = led.build_snapshot(BUDGET, now=0.0)
    led.mark_sent(snap.id, "c1")
    assert not take()  # sent, not acknowledged: still pending
    led.acknowledge(snap.id)
    acked = take()
    # a new base (what a file listed only becomes), and every row that differs from it
    assert acked.rebased and acked.base == ("summarised", "listed only") and acked.added == []
    assert {p: s.state for p, s in acked.rows.items()} == {
        ".env": "excluded",
        "a.py": "in_view",
        "b.py": "in_view",
    }
    assert acked.counts == {"excluded": 1, "in_view": 2}
    led.observe(v("a.py", "a2\n"))
    assert badges(led)["a.py"] == ("pending", "")  # a listing in between takes nothing away
    saved = take()
    assert list(saved.rows) == ["a.py"] and saved.rows["a.py"].state == "pending" and not saved.rebased
    led.chain_lost()
    lost = take()  # every file is pending (the base): only the rows that differ are listed
    assert lost.rebased and lost.base == ("pending", "") and set(lost.rows) == {".env"}
    assert lost.counts == {"excluded": 1, "pending": 2}
    snap = led.build_snapshot(BUDGET, now=0.0)
    led.mark_sent(snap.id, "c2")
    led.acknowledge(snap.id)
    assert {p: s.state for p, s in take().rows.items()} == {
        ".env": "excluded",
        "a.py": "in_view",
        "b.py": "in_view",
    }
    led.observe(gone("b.py"))
    assert take().rows["b.py"].reason == "deleted"
    up = led.build_update(BUDGET)
    assert up is not None
    led.mark_sent(up.id, "c2")
    led.acknowledge(up.id)
    done = take()
    assert done.removed == ["b.py"] and not done.rows and done.counts == {"excluded": 1, "in_view": 1}
    assert badges(led) == {".env": ("excluded", "secret"), "a.py": ("in_view", "")}


def test_a_save_costs_the_changed_files_not_the_project(monkeypatch: pytest.MonkeyPatch) -> None:
    """With 2,000 files, a save looks at one file in has_pending, build_update and take_changes."""
    led = started(*(v(f"m{i}.py", f"x = {i}\n") for i in range(2000)))
    led.take_changes()
    looked: list[str] = []
    real = Ledger._delta

    def counting(e: object, view: object) -> str | None:
        looked.append(getattr(e, "path", ""))
        return real(e, view)  # type: ignore[arg-type]

    monkeypatch.setattr(Ledger, "_delta", staticmethod(counting))
    led.observe(v("m7.py", "x = 'changed'\n"))
    assert led.has_pending()
    assert [s.state for s in led.take_changes().rows.values()] == ["pending"]
    up = led.build_update(BUDGET)
    assert up is not None and up.paths == ("m7.py",)
    led.mark_sent(up.id, "c1")
    led.acknowledge(up.id)
    assert not led.has_pending()
    assert list(led.take_changes().rows) == ["m7.py"]
    assert set(looked) == {"m7.py"} and len(looked) <= 6


def test_many_new_rows_come_with_the_whole_order() -> None:
    """When many rows come or go at once the changes carry every path in order (a view swaps it in);
    a few rows do not, and the order kept inside follows them."""
    from app.context.ledger import ORDER_AT

    led = Ledger()
    names = [f"d/m{i:05}.py" for i in range(ORDER_AT + 10)]
    led.observe_many(v(p, "x\n") for p in reversed(names))
    first = led.take_changes()
    assert first.order == names
    led.observe(v("a.py", "new\n"))
    few = led.take_changes()
    assert few.order is None and few.added == ["a.py"]
    led.observe_many(v(f"z/n{i:05}.py", "y\n") for i in range(ORDER_AT))
    more = led.take_changes()
    assert more.order == sorted(["a.py", *names, *(f"z/n{i:05}.py" for i in range(ORDER_AT))])


def listed(path: str, text: str, mtime: float = 0.0) -> FileVersion:
    """`path` as a huge tree's first index sees it: its metadata only (`FileVersion.hashed` False)."""
    return make_version(path, None, size=len(text.encode()), mtime=mtime)


@pytest.mark.parametrize("ack_first", [True, False])
def test_hashing_a_listed_file_later_is_not_a_change(ack_first: bool) -> None:
    """Files listed unhashed in the snapshot and hashed afterwards (before or after the snapshot's
    acknowledgement): nothing to tell the model, and their badges settle as for any listed file."""
    led = Ledger()
    led.observe_many(
        [v("main.py", "print(1)\n"), listed("big/a.py", "a = 1\n"), listed("big/b.py", "b = 2\n")]
    )
    assert sorted(led.unhashed_paths()) == ["big/a.py", "big/b.py"]
    snap = led.build_snapshot(BUDGET, now=0.0)
    led.mark_sent(snap.id, "c1")
    if ack_first:
        led.acknowledge(snap.id)
    led.fill(v("big/a.py", "a = 1\n"))
    led.fill(v("big/b.py", "b = 2\n"))
    if not ack_first:
        led.acknowledge(snap.id)
    assert led.unhashed_paths() == [] and not led.has_pending()
    assert led.build_update(BUDGET) is None
    assert badges(led) == {
        "main.py": ("in_view", ""),
        "big/a.py": ("summarised", "listed only"),
        "big/b.py": ("summarised", "listed only"),
    }


def test_a_listed_file_that_changed_before_its_hash_is_news() -> None:
    """Size or time differs from the listing, or the file is gone: an update says so; a file an
    event already read is left alone (that read is newer than the hashing walk's)."""
    led = started(v("main.py", "print(1)\n"))
    for f in (listed("a.py", "a = 1\n"), listed("b.py", "b = 2\n"), listed("c.py", "c = 3\n")):
        led.observe(f)
    up = led.build_update(BUDGET)  # the three appear (listed, content not read)
    assert up is not None
    led.mark_sent(up.id, "c1")
    led.acknowledge(up.id)
    led.fill(v("a.py", "a = 100\n", mtime=5.0))  # edited since it was listed
    led.fill(gone("b.py"))  # deleted since
    led.observe(v("c.py", "c = 4\n", mtime=6.0))  # an event read it first
    led.fill(v("c.py", "c = 3\n"))  # the hashing walk's older read: ignored
    up = led.build_update(BUDGET)
    assert up is not None
    assert {(c.kind, c.path) for c in up.changes} == {
        ("changed", "a.py"),
        ("deleted", "b.py"),
        ("changed", "c.py"),
    }
    assert "c = 4" in up.text and "a = 100" in up.text


@pytest.mark.parametrize("seed", range(12))
def test_badges_folded_from_changes_are_the_listing(seed: int) -> None:
    """Whatever happens (edits, deletions, renames, exclusions, chains lost, snapshots and updates
    acknowledged or failed, files hashed later), the rows a receiver folds from `take_changes` (a
    base badge plus the rows that differ) are `status()`, and the counts are its totals. Enough files
    that bulk changes take the set-based paths (indexing, a new base), few enough to check them all."""
    import random
    from collections import Counter

    rng = random.Random(seed)
    led = Ledger()
    table = BadgeTable()
    names = [f"d{i % 7}/f{i:03}.py" for i in range(150)] + ["img.png", ".env"]
    chain = 0
    out: list[str] = []  # update ids sent, not yet settled

    def disk(p: str) -> FileVersion:
        if p == ".env" or (p.endswith("3.py") and rng.random() < 0.5):
            return FileVersion(p, "excluded", reason="secret")
        if p == "img.png":
            return make_version(p, b"\0png", size=4, mtime=0.0, digest="png")
        if rng.random() < 0.3:
            return make_version(p, None, size=rng.randint(1, 9), mtime=float(rng.randint(0, 2)))  # listed
        return v(p, f"x = {rng.randint(0, 3)}\n")

    def check() -> None:
        ch = led.take_changes()
        table.take(ch)
        listing = {s.path: s for s in led.status()}
        assert {b.path: b for b in table.rows()} == listing
        assert ch.counts == {k: n for k, n in Counter(s.state for s in listing.values()).items() if n}

    led.observe_many(disk(p) for p in names)
    check()
    for _ in range(60):
        op = rng.choice(["edit", "edit", "delete", "rename", "lose", "push", "ack", "fail", "fill", "flush"])
        p = rng.choice(names)
        if op == "edit":
            led.observe(disk(p))
        elif op == "delete":
            led.observe(gone(p))
        elif op == "rename" and (e := led.disk_version(p)) is not None and e.present:
            dst = p + ".moved"
            led.rename(p, dst)
            led.observe(e._replace(path=dst))
        elif op == "lose":
            led.chain_lost()
            out.clear()
        elif op == "push":
            if led.needs_snapshot:
                chain += 1
                snap = led.build_snapshot(BUDGET, now=0.0)
                led.mark_sent(snap.id, f"c{chain}")
                out.append(snap.id)
            elif (up := led.build_update(BUDGET)) is not None:
                led.mark_sent(up.id, f"c{chain}")
                out.append(up.id)
        elif op == "ack" and out:
            led.acknowledge(out.pop(0))
        elif op == "fail" and out:
            led.fail(out.pop(0))
            out.clear()  # later updates are rolled back too
        elif op == "fill":
            for q in led.unhashed_paths()[:20]:
                d = led.disk_version(q)
                assert d is not None
                led.fill(v(q, "filled\n")._replace(size=d.size, mtime=d.mtime))
        if op == "flush" or rng.random() < 0.5:
            check()
    check()


def test_a_big_tree_settles_without_a_row_per_file() -> None:
    """Indexing adds pending rows and a snapshot's acknowledgement makes most files "summarised,
    listed only" without building a row for each: only the rows that differ are handed out."""
    led = Ledger()
    led.observe_many(v(f"m{i:04}.py", f"x = {i}\n" * 40) for i in range(3000))
    led.observe(FileVersion(".env", "excluded", reason="secret"))
    first = led.take_changes()
    assert len(first.added) == 3001 and set(first.rows) == {".env"} and first.base == ("pending", "")
    assert first.counts == {"pending": 3000, "excluded": 1}
    snap = led.build_snapshot(BUDGET, now=0.0)
    led.mark_sent(snap.id, "c1")
    led.observe(v("m2999.py", "changed\n"))  # after the snapshot was built: pending once it is acked
    led.acknowledge(snap.id)
    acked = led.take_changes()
    assert acked.rebased and acked.base == ("summarised", "listed only")
    in_view = {p for p, b in acked.rows.items() if b.state == "in_view"}
    assert in_view == set(snap.paths) and 0 < len(in_view) < 100
    assert acked.rows["m2999.py"].state == "pending" and acked.rows[".env"].state == "excluded"
    assert len(acked.rows) == len(in_view) + 2
    assert acked.counts == {
        "in_view": len(in_view),
        "pending": 1,
        "excluded": 1,
        "summarised": 2999 - len(in_view),
    }
