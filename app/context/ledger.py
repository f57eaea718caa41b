"""What the model has seen of each file versus what is on disk, per chain.

Each file has a disk version (the last `observe`), a *sent* view (what the current chain has been
given, acknowledged or not) and an *acked* view (what responses that completed carried). A view
records the path the model knows the content under, its digest and the scanned text, so renames,
deletions and diffs all fall out of comparing a view with the disk:

    disk gone, view present          -> deleted        view.path != path -> renamed (+ diff)
    view absent or gone, disk there  -> created        digests differ    -> modified (diff)

Lifecycle of an update: `build_update` advances the sent views at once (so nothing is sent twice
into one chain), `mark_sent` pins it to a chain, `acknowledge` (the carrying response completed)
advances the acked views, `fail` (the response failed, the chain survives) rolls this and later
updates back to the acked views so the change is sent again. `chain_lost` forgets every view; the
next `build_snapshot` describes the current disk state for a fresh chain, so what was sent but
never acknowledged is not lost, and nothing from the old chain leaks into the new one.

A storm is capped at the token budget: the files that do not fit are listed with stats and become
"summarised" (the model knows they changed and can read them with a tool).

Everything a save touches costs O(changed files), not O(project): the ledger keeps a dirty set of
paths whose badge may have changed (`take_changes` reports only those) and a set of paths whose
disk differs from the sent view (`has_pending`, `build_update` look at those only). Only a fresh
chain (`chain_lost`, `build_snapshot`, its acknowledgement) touches every file, and its badges change
in bulk: a new base badge for every row plus the few rows that differ (`StatusChanges`), found by
set operations, never a row built per file.
"""

from __future__ import annotations

import bisect
import itertools
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, Protocol

from app.context.diffing import diff_text, human_size
from app.context.secrets_scan import Finding, scan
from app.context.snapshot import (
    SNAPSHOT_MARKER,
    FileVersion,
    RankFacts,
    build_initial_context,
    fence,
    message_item,
    snapshot_candidates,
)
from app.context.tokens import estimate_tokens

__all__ = [
    "UPDATE_MARKER",
    "BadgeState",
    "BadgeTable",
    "ContextUpdate",
    "FileStatus",
    "Ledger",
    "LedgerStateError",
    "StatusChanges",
    "is_context_item",
]

UPDATE_MARKER = "[slipstream context update]"
BadgeState = Literal["in_view", "pending", "excluded", "summarised"]
ViewKind = Literal["content", "summary", "gone"]
_MAX_LIST_LINES = 40
ORDER_AT = 1000  # rows added or removed at once from which `StatusChanges.order` is handed out
Base = tuple[BadgeState, str]  # (state, reason) of every row not listed on its own (`StatusChanges.base`)
PENDING: Base = ("pending", "")
LISTED_ONLY = "listed only"  # the summary reason of a file a snapshot lists without its content
SUMMARISED: Base = ("summarised", LISTED_ONLY)  # most files of a big tree once its snapshot is acknowledged


class LedgerStateError(RuntimeError):
    """The caller used the ledger out of order (a stale update, no snapshot yet)."""


class _View(NamedTuple):  # one per file per snapshot: a tuple is built three times faster
    path: str  # the path the model knows this content under
    kind: ViewKind
    digest: str = ""
    text: str | None = None  # scanned text, for kind "content"
    reason: str = ""  # for "summary": binary, too large, over the update budget, listed only


_new_view = tuple.__new__  # _View(...) without the Python-level __new__ of a named tuple


class _Entry:
    __slots__ = ("acked", "acked_seq", "disk", "filled", "path", "sent")

    def __init__(self, disk: FileVersion) -> None:
        self.path = disk.path
        self.disk = disk
        self.sent: _View | None = None
        self.acked: _View | None = None
        self.acked_seq = -1
        # The digest found by `Ledger.fill` for a file first listed unhashed: what a view without a
        # digest (sent while the file was unhashed) stands for.
        self.filled = ""


class FileStatus(NamedTuple):
    """A badge for the UI's context panel. A named tuple, not a dataclass: every file of the tree gets
    one on each chain change, and a tuple is built three times faster (100,000 files: 0.1 s a flush)."""

    path: str
    state: BadgeState
    reason: str = ""


_new_status = tuple.__new__  # FileStatus(...) without the Python-level __new__ of a named tuple


ChangeKind = Literal["added", "changed", "deleted", "renamed", "excluded"]
_CHANGE_KINDS: dict[str, ChangeKind] = {
    "A": "added",
    "M": "changed",
    "S": "changed",
    "D": "deleted",
    "R": "renamed",
    "X": "excluded",
}


@dataclass(frozen=True, slots=True)
class PathChange:
    """One file an update tells the model about, and how it changed (`slipstream watch` prints these)."""

    kind: ChangeKind
    path: str
    renamed_from: str = ""  # for "renamed": the path the model knew it under


@dataclass(frozen=True, slots=True)
class StatusChanges:
    """The badges that changed since the last `Ledger.take_changes()`, for a UI that keeps rows.

    A row's badge is its entry in `rows`, else the *base* badge (`base`: state and reason): so a
    fresh chain (every file pending) or its acknowledged snapshot (most files summarised, "listed
    only") changes 100,000 badges without 100,000 rows being built, handed over and stored.

    `rows` holds the new or changed badges by path that differ from the base (a row that changed to
    the base badge is listed too); `added` the paths that had no row before (those not in `rows` have
    the base badge) and `removed` the paths whose row is gone, both sorted; `rebased`: the base
    changed, so every row not in `rows` now has the new base badge (a receiver drops the badges it
    holds per row: `rows` then lists every row that differs from the base); `counts` the totals per
    state after the change (so a view need not count 100,000 rows itself); `order`, when many rows
    came or went, every path with a row, sorted (a view takes it instead of merging), else None.
    `BadgeTable` is the receiving side."""

    rows: dict[str, FileStatus]
    added: list[str]
    removed: list[str]
    counts: dict[str, int]
    order: list[str] | None = None
    base: Base = PENDING
    rebased: bool = False

    def __bool__(self) -> bool:
        return bool(self.rows or self.removed or self.added or self.rebased)


class _Changes(Protocol):
    """What `BadgeTable.take` reads: a `StatusChanges`, or the services' `FileChanges` (`reset` too)."""

    @property
    def rows(self) -> Mapping[str, FileStatus]: ...
    @property
    def added(self) -> Sequence[str]: ...
    @property
    def removed(self) -> Sequence[str]: ...
    @property
    def base(self) -> Base: ...
    @property
    def rebased(self) -> bool: ...


class BadgeTable:
    """The badges a receiver of `StatusChanges` holds (the services' copy, the Context panel): the
    rows that differ from the base badge by path, the base, and the set of paths with a row.
    Taking a change costs O(rows in it); a rebase of 100,000 badges costs O(rows that differ)."""

    __slots__ = ("base", "odd", "paths")

    def __init__(self) -> None:
        self.base: Base = PENDING
        self.odd: dict[str, FileStatus] = {}  # rows whose badge is their own (any not here: `base`)
        self.paths: set[str] = set()  # every path with a row

    def take(self, changes: _Changes) -> None:
        """Fold `changes` in (a `reset` attribute, when true, drops every row first)."""
        if getattr(changes, "reset", False):
            self.clear()
        odd, paths = self.odd, self.paths
        for p in changes.removed:
            paths.discard(p)
            odd.pop(p, None)
        if changes.rebased:
            self.base = changes.base
            self.odd = dict(changes.rows)
        else:
            odd.update(changes.rows)
        paths.update(changes.added)
        paths.update(changes.rows)

    def clear(self) -> None:
        self.odd.clear()
        self.paths.clear()
        self.base = PENDING

    def get(self, path: str) -> FileStatus | None:
        """The badge of `path`, or None when it has no row."""
        b = self.odd.get(path)
        if b is not None or path not in self.paths:
            return b
        return _new_status(FileStatus, (path, *self.base))

    def state(self, path: str) -> str:
        """The state of `path`'s row (a path without a row: "")."""
        b = self.odd.get(path)
        if b is not None:
            return b.state
        return self.base[0] if path in self.paths else ""

    def __contains__(self, path: object) -> bool:
        return path in self.paths

    def __len__(self) -> int:
        return len(self.paths)

    def rows(self) -> list[FileStatus]:
        """Every badge, sorted by path (O(rows): listings and tests)."""
        get = self.get
        return [b for p in sorted(self.paths) if (b := get(p)) is not None]


@dataclass(frozen=True, slots=True)
class ContextUpdate:
    """One message for the chain: a snapshot (warm-up) or a batch of changes."""

    id: str
    kind: Literal["snapshot", "update"]
    item: dict[str, Any]
    text: str
    paths: tuple[str, ...]  # files whose view this message changes
    tokens: int
    findings: Mapping[str, tuple[Finding, ...]] = field(default_factory=dict)
    summarised: tuple[str, ...] = ()  # files that did not fit and were only listed
    changes: tuple[PathChange, ...] = ()  # an update's files and how each changed

    @property
    def notices(self) -> list[str]:
        """Words for the user about lines held back by the secret scanner."""
        out = []
        for path, found in sorted(self.findings.items()):
            kinds = sorted({f.kind for f in found})
            n = len(found)
            out.append(
                f"Held back {n} line{'s' if n != 1 else ''} in {path} that look{'s' if n == 1 else ''} "
                f"like {', '.join(kinds)}."
            )
        return out


@dataclass(slots=True)
class _Outstanding:
    seq: int
    generation: int
    carried: list[tuple[_Entry, _View | None]]
    chain_id: str | None = None
    # A snapshot: the paths it carried as anything but a "listed only" summary (None: an update)
    odd: set[str] | None = None


def is_context_item(item: Mapping[str, Any]) -> bool:
    """True for snapshot/update messages: drop them when replaying a transcript into a new chain."""
    if item.get("type") != "message":
        return False
    content = item.get("content")
    if not isinstance(content, list) or not content:
        return False
    first = content[0]
    text = first.get("text", "") if isinstance(first, dict) else ""
    return isinstance(text, str) and text.startswith((UPDATE_MARKER, SNAPSHOT_MARKER))


def _view_of(v: FileVersion, text: str | None = None, reason: str = "") -> _View:
    if text is not None:
        return _View(v.path, "content", v.digest, text)
    return _View(v.path, "summary", v.digest, None, reason or _summary_reason(v))


_SUMMARY_REASONS = {"binary": "binary", "oversized": "too large", "unreadable": "unreadable"}


def _summary_reason(v: FileVersion) -> str:
    return _SUMMARY_REASONS.get(v.kind, LISTED_ONLY)


def _group_by_dir(paths: Iterable[str]) -> list[str]:
    counts: Counter[str] = Counter()
    for p in paths:
        parts = p.split("/")
        counts[
            "/".join(parts[:2]) + "/" if len(parts) > 2 else (parts[0] + "/" if len(parts) > 1 else ".")
        ] += 1
    return [f"{d}: {n} file{'s' if n != 1 else ''}" for d, n in sorted(counts.items())]


def _compact(lines: list[str], paths: list[str]) -> list[str]:
    if len(lines) <= _MAX_LIST_LINES:
        return lines
    return [*_group_by_dir(paths), f"({len(paths)} in total)"]


@dataclass(slots=True)
class _Section:
    entry: _Entry
    op: str  # "M", "A", "D", "R", "X", "S" (summary of a binary/oversized/unreadable file)
    body: str  # diff or fenced content; "" for list-only entries
    line: str  # one-line description used in lists and when the body does not fit
    view: _View | None  # the view once this section is carried
    cost: int
    findings: tuple[Finding, ...] = ()
    hidden: bool = False
    src: str = ""  # the path the model knew: a rename's old path, a deletion's path


class Ledger:
    """Per-file model view vs disk; builds snapshots and update messages. Sans-I/O, single-threaded."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._generation = 0
        self._chain_id: str | None = None
        self._needs_snapshot = True
        self._seq = itertools.count()
        self._outstanding: dict[str, _Outstanding] = {}
        self._dirty: set[str] = set()  # paths whose badge may differ from the one reported
        # The badges last reported: per path where it is not the base badge, else the base
        self._reported: dict[str, FileStatus] = {}
        self._base: Base = PENDING
        self._listed: set[str] = set()  # every path with a reported row
        self._next_base: Base | None = None  # a bulk change of badges, reported by the next flush
        self._order: list[str] = []  # the reported paths, sorted (never mutated once handed out)
        self._counts: Counter[str] = Counter()  # of the reported badges, per state
        self._touched: set[str] = set()  # paths whose disk may differ from the sent view
        self._gone: set[str] = set()  # entries whose disk version is not present
        self._excluded: set[str] = set()  # entries whose disk version is excluded

    # ---- disk side -------------------------------------------------------------------------------

    def observe(self, version: FileVersion) -> None:
        """Record the disk state of one file (a read, a deletion as kind "missing", an exclusion)."""
        path, kind = version.path, version.kind
        e = self._entries.get(path)
        if e is None:
            if kind == "missing":  # not `present`: an index observes every file, plain reads are faster
                return
            self._entries[path] = _Entry(version)
        else:
            e.disk = version
        if kind == "missing":
            self._gone.add(path)
        elif self._gone:
            self._gone.discard(path)
        if kind == "excluded":
            self._excluded.add(path)
        elif self._excluded:
            self._excluded.discard(path)
        self._dirty.add(path)
        self._touched.add(path)

    def observe_many(self, versions: Iterable[FileVersion]) -> None:
        """`observe` for each version."""
        for v in versions:
            self.observe(v)

    def fill(self, version: FileVersion) -> None:
        """The hashed `version` of a file that was indexed by its metadata only (see
        `FileVersion.hashed`). Unchanged size and modification time: the same file, so nothing the
        model was told about it changes (views sent without a digest now stand for this one).
        Otherwise it is observed as any change. A file read since (an event) or gone is left alone."""
        e = self._entries.get(version.path)
        if e is None or e.disk.hashed:
            return
        d = e.disk
        if not version.hashed:
            return
        if version.kind not in ("text", "binary") or (version.size, version.mtime) != (d.size, d.mtime):
            self.observe(version)  # changed, gone, grown too large, unreadable or excluded since: news
            return
        e.disk, e.filled = version, version.digest
        if version.kind != d.kind:
            self._dirty.add(version.path)  # a badge may say "binary" now

    def unhashed_paths(self) -> list[str]:
        """Files listed by their metadata only, still to be read and hashed (`fill`)."""
        return [p for p, e in self._entries.items() if not e.disk.hashed]

    def rename(self, src: str, dst: str) -> None:
        """`src` was moved to `dst`: the model's view travels with it (observe `dst` afterwards)."""
        e = self._entries.pop(src, None)
        if e is None or src == dst:
            if e is not None:
                self._entries[src] = e
            return
        e.path = dst
        e.disk = FileVersion(
            dst,
            e.disk.kind,
            e.disk.size,
            e.disk.mtime,
            e.disk.digest,
            e.disk.text,
            e.disk.lossy,
            e.disk.reason,
        )
        self._entries[dst] = e
        self._gone.discard(src)
        if e.disk.present:
            self._gone.discard(dst)
        else:
            self._gone.add(dst)
        self._excluded.discard(src)
        if e.disk.kind == "excluded":
            self._excluded.add(dst)
        else:
            self._excluded.discard(dst)
        self._dirty.update((src, dst))
        self._touched.update((src, dst))

    def known_paths(self, under: str = "") -> list[str]:
        """Paths present on disk as far as the ledger knows, optionally under a directory."""
        prefix = under.rstrip("/") + "/" if under else ""
        return sorted(p for p, e in self._entries.items() if e.disk.present and p.startswith(prefix))

    def present_paths(self) -> list[str]:
        """`known_paths()` of the whole tree, unsorted (a 100,000-path sort holds the GIL ~50 ms)."""
        return [p for p, e in self._entries.items() if e.disk.kind != "missing"]

    def index(self) -> list[FileVersion]:
        """The disk versions of all present files (for listings and the snapshot)."""
        return [d for e in self._entries.values() if (d := e.disk).kind != "missing"]  # `present`, faster

    def disk_version(self, path: str) -> FileVersion | None:
        """The last observed version of `path`, if any."""
        e = self._entries.get(path)
        return e.disk if e else None

    # ---- chain side ------------------------------------------------------------------------------

    @property
    def needs_snapshot(self) -> bool:
        """True at start and after `chain_lost`: the next message must be `build_snapshot`."""
        return self._needs_snapshot

    def snapshot_candidates(
        self, budget_tokens: int, pins: Sequence[str] = (), now: float = 0.0, facts: RankFacts | None = None
    ) -> list[str]:
        """Paths whose content the caller should read and pass to `build_snapshot` (text not held),
        best first (`app.context.snapshot.rank_key`; `facts` from the adapters)."""
        wanted = snapshot_candidates(self.index(), budget_tokens, pins, now, facts)
        return [p for p in wanted if self._entries[p].disk.text is None]

    def build_snapshot(
        self,
        budget_tokens: int,
        now: float,
        pins: Sequence[str] = (),
        contents: Mapping[str, FileVersion] | None = None,
        facts: RankFacts | None = None,
    ) -> ContextUpdate:
        """The warm-up message for a fresh chain, from the current disk state; resets every view."""
        for v in (contents or {}).values():
            self.observe(v)
        self._generation += 1
        self._chain_id = None
        self._outstanding.clear()
        index = self.index()
        held = {v.path: v for v in index if v.text is not None}
        ctx = build_initial_context(index, held, budget_tokens, pins, now, facts=facts)
        carried: list[tuple[_Entry, _View | None]] = []
        odd: set[str] = set()  # carried as anything but a "listed only" summary
        included = ctx.included
        add, summary_reason = carried.append, _SUMMARY_REASONS.get
        for e in self._entries.values():  # every file of the tree: `_view_of` inlined
            e.acked = None
            e.acked_seq = -1
            d = e.disk
            kind = d.kind
            if kind == "missing" or kind == "excluded":
                e.sent = None
                continue
            if d.path in included:
                e.sent = view = _view_of(d, included[d.path].text)
                odd.add(e.path)
            else:
                reason = summary_reason(kind, LISTED_ONLY)
                e.sent = view = _new_view(_View, (d.path, "summary", d.digest, None, reason))
                if reason != LISTED_ONLY:
                    odd.add(e.path)
            add((e, view))
        # Every file is "pending" until the snapshot is acknowledged. It already was when a snapshot
        # was due (the usual case: O(gone files) here, not O(files)); otherwise every badge changes.
        if self._needs_snapshot:
            self._dirty.update(self._gone)
        else:
            self._rebase(PENDING, self._gone | self._excluded)
        self._touched.clear()  # every sent view is the disk now
        self._drop_gone()
        self._needs_snapshot = False
        uid = self._register(carried)
        self._outstanding[uid].odd = odd
        findings = {p: tuple(f) for p, f in ctx.findings.items()}
        return ContextUpdate(
            uid,
            "snapshot",
            ctx.items[0],
            ctx.text,
            tuple(ctx.included),
            ctx.tokens,
            findings,
            tuple(ctx.listed_only),
        )

    def build_update(self, budget_tokens: int) -> ContextUpdate | None:
        """One message with every change since the sent views, capped at `budget_tokens`; None if none."""
        if self._needs_snapshot:
            raise LedgerStateError("no chain: call build_snapshot first")
        entries = self._entries
        touched, self._touched = self._touched, set()
        sections = [
            s for p in touched if (e := entries.get(p)) is not None and (s := self._section(e)) is not None
        ]
        if not sections:
            return None
        sections.sort(key=lambda s: s.entry.path)
        self._pair_content_renames(sections)
        shown = [s for s in sections if not s.hidden]
        counts = Counter(s.op for s in shown)
        words = {
            "M": "modified",
            "A": "created",
            "D": "deleted",
            "R": "renamed",
            "X": "now excluded",
            "S": "changed (content not sent)",
        }
        head = [
            UPDATE_MARKER,
            "Files changed on disk since your last view: "
            + ", ".join(f"{n} {words[op]}" for op, n in sorted(counts.items()))
            + ".",
        ]
        for op, label in (
            ("A", "Created"),
            ("D", "Deleted"),
            ("R", "Renamed"),
            ("X", "No longer visible"),
            ("S", "Changed, content not sent"),
        ):
            group = [s for s in shown if s.op == op]
            if group:
                head.append(f"{label}:")
                head += ["  " + ln for ln in _compact([s.line for s in group], [s.entry.path for s in group])]
        text_head = "\n".join(head) + "\n"
        used = estimate_tokens(text_head) + 40  # room for the overflow note
        chosen: set[int] = set()
        for i in sorted(range(len(sections)), key=lambda k: sections[k].cost):
            s = sections[i]
            if not s.body:
                chosen.add(i)
            elif used + s.cost <= budget_tokens:
                chosen.add(i)
                used += s.cost
        bodies = [sections[i].body for i in range(len(sections)) if i in chosen and sections[i].body]
        left = [s for i, s in enumerate(sections) if i not in chosen]
        tail = ""
        if left:
            lines = [f"  {s.line}" for s in left]
            if estimate_tokens("\n".join(lines)) > max(200, budget_tokens - used):
                lines = ["  " + ln for ln in _group_by_dir(s.entry.path for s in left)]
            added = sum(int(s.line.split("(+", 1)[1].split(" ")[0]) for s in left if "(+" in s.line)
            tail = (
                f"\nOver this update's budget, {len(left)} more changed file(s) are listed only "
                f"({added} lines added in total); read them with a tool if you need them:\n"
                + "\n".join(lines)
                + "\n"
            )
        text = text_head + ("\n" + "\n".join(bodies) if bodies else "") + tail
        changes = tuple(
            PathChange(
                _CHANGE_KINDS[s.op], s.src if s.op == "D" else s.entry.path, s.src if s.op == "R" else ""
            )
            for s in shown
        )
        carried: list[tuple[_Entry, _View | None]] = []
        findings: dict[str, tuple[Finding, ...]] = {}
        for i, s in enumerate(sections):
            if i in chosen:
                view = s.view
                if s.findings:
                    findings[s.entry.path] = s.findings
            else:
                view = _View(s.entry.path, "summary", s.entry.disk.digest, None, "over the update budget")
            s.entry.sent = view
            carried.append((s.entry, view))
        uid = self._register(carried)
        return ContextUpdate(
            uid,
            "update",
            message_item(text),
            text,
            tuple(s.entry.path for s in shown),
            estimate_tokens(text),
            findings,
            tuple(s.entry.path for s in left),
            changes,
        )

    def mark_sent(self, update_id: str, chain_id: str) -> None:
        """The update went out on `chain_id`. Raises for stale updates or a chain switch without loss."""
        out = self._outstanding.get(update_id)
        if out is None or out.generation != self._generation:
            raise LedgerStateError(f"update {update_id} is stale or unknown; build a new one")
        if self._chain_id is None:
            self._chain_id = chain_id
        elif self._chain_id != chain_id:
            raise LedgerStateError(f"chain changed from {self._chain_id} to {chain_id} without chain_lost()")
        out.chain_id = chain_id

    def acknowledge(self, update_id: str) -> None:
        """The response that carried `update_id` completed: its views are now the model's. Stale: ignored."""
        out = self._outstanding.pop(update_id, None)
        if out is None or out.generation != self._generation:
            return
        if out.odd is not None:  # a snapshot: its files settle at once (see `_settle_snapshot`)
            self._settle_snapshot(out)
        else:
            dirty = self._dirty
            for e, view in out.carried:
                if out.seq > e.acked_seq:
                    e.acked, e.acked_seq = view, out.seq
                    dirty.add(e.path)
        self._drop_gone()

    def _settle_snapshot(self, out: _Outstanding) -> None:
        """A snapshot was acknowledged: every file it listed only is now "summarised, listed only" (the
        new base badge), except the paths that may differ, which are looked at one by one: what it
        carried otherwise (`out.odd`), files whose disk changed since (`_touched`) or that later
        updates carry, excluded and gone files, and any view a later acknowledgement had set."""
        special = out.odd | self._touched | self._gone | self._excluded if out.odd is not None else set()
        for e, view in out.carried:
            if out.seq > e.acked_seq:
                e.acked, e.acked_seq = view, out.seq
            else:
                special.add(e.path)
        for o in self._outstanding.values():
            special.update(e.path for e, _ in o.carried)
        self._rebase(SUMMARISED, special)

    def fail(self, update_id: str) -> None:
        """The carrying response failed but the chain lives: roll it and later updates back."""
        out = self._outstanding.get(update_id)
        if out is None or out.generation != self._generation:
            return
        for uid, o in list(self._outstanding.items()):
            if o.seq >= out.seq:
                del self._outstanding[uid]
                for e, _ in o.carried:
                    e.sent = e.acked
                    self._touched.add(e.path)

    def chain_lost(self) -> None:
        """The chain is gone (not found, age limit, socket, restart): next comes `build_snapshot`."""
        self._generation += 1
        self._chain_id = None
        self._outstanding.clear()
        if not self._needs_snapshot:  # every file is pending until the snapshot is acknowledged
            self._rebase(PENDING, self._gone | self._excluded)
        self._needs_snapshot = True

    def seen_text(self, path: str) -> str | None:
        """The text the model has of `path` (what was sent on this chain), or None if it has none.
        A patch planned against this text can tell a user's edit made since from the model's own."""
        e = self._entries.get(path)
        view = e.sent if e is not None else None
        if view is None or view.kind != "content":
            return None
        return view.text

    def has_pending(self) -> bool:
        """True when some disk change has not been put into a message for the current chain."""
        if self._needs_snapshot:
            return True
        entries = self._entries
        return any(self._delta(e, e.sent) for p in self._touched if (e := entries.get(p)) is not None)

    def status(self) -> list[FileStatus]:
        """Per-file badges, sorted by path: in_view / pending / excluded(reason) / summarised(reason).
        O(files): for listings and tests; a UI keeps rows with `take_changes` instead (which this
        leaves alone: what changed is still reported there)."""
        entries = self._entries
        return [b for p in sorted(entries) if (b := self._badge(entries[p])) is not None]

    def take_changes(self) -> StatusChanges:
        """The badges that changed since the last call (all of them on the first): O(changed files)."""
        return self._flush_status()

    def _rebase(self, base: Base, special: Iterable[str]) -> None:
        """Every row's badge becomes `base` at the next flush, except `special` paths (looked at one
        by one, with those already dirty and those whose reported badge is their own)."""
        self._next_base = base
        self._dirty.update(special)

    def _flush_status(self) -> StatusChanges:
        dirty, self._dirty = self._dirty, set()
        rebase, self._next_base = self._next_base, None
        if rebase is not None:
            return self._flush_rebase(dirty, rebase)
        entries, reported, counts, listed = self._entries, self._reported, self._counts, self._listed
        base = self._base
        added: list[str] = []
        if self._needs_snapshot and base == PENDING and len(dirty) > 64:
            # Indexing (or any change before the first snapshot): a present file that is not
            # excluded is pending, which is the base badge. Found by set operations, no row built.
            quick = entries.keys() & dirty  # iterates the smaller of the two
            quick -= self._gone
            quick -= self._excluded
            quick.difference_update(reported)
            fresh = quick - listed
            listed |= fresh
            added += fresh
            counts["pending"] += len(fresh)
            dirty -= quick
        rows: dict[str, FileStatus] = {}
        removed: list[str] = []
        badge, entry_of, reported_of = self._badge, entries.get, reported.get
        was: list[str] = []  # the states that rows left and entered, counted in C afterwards
        now: list[str] = []
        for p in dirty:
            e = entry_of(p)
            new = badge(e) if e is not None else None
            old = reported_of(p)
            if old is None and p in listed:
                old = _new_status(FileStatus, (p, *base))
            if new == old:
                continue
            if old is not None:
                was.append(old[1])
            if new is None:
                reported.pop(p, None)
                listed.discard(p)
                removed.append(p)
                continue
            if old is None:
                added.append(p)
                listed.add(p)
            if (new[1], new[2]) == base:
                reported.pop(p, None)
            else:
                reported[p] = new
            rows[p] = new
            now.append(new[1])
        counts.subtract(was)
        counts.update(now)
        added.sort()
        removed.sort()
        order = self._reorder(added, removed)
        return StatusChanges(rows, added, removed, {k: n for k, n in counts.items() if n}, order, base)

    def _flush_rebase(self, dirty: set[str], base: Base) -> StatusChanges:
        """A bulk change (`_rebase`): every row not looked at takes the new base badge."""
        old_reported, listed = self._reported, self._listed
        dirty.update(old_reported)
        reported: dict[str, FileStatus] = {}
        added: list[str] = []
        removed: list[str] = []
        badge, entry_of = self._badge, self._entries.get
        for p in dirty:
            e = entry_of(p)
            new = badge(e) if e is not None else None
            if new is None:
                if p in listed:
                    listed.discard(p)
                    removed.append(p)
                continue
            if p not in listed:
                listed.add(p)
                added.append(p)
            if (new[1], new[2]) != base:
                reported[p] = new
        self._reported, self._base = reported, base
        counts = self._counts = Counter(b[1] for b in reported.values())
        counts[base[0]] += len(listed) - len(reported)
        added.sort()
        removed.sort()
        order = self._reorder(added, removed)
        return StatusChanges(
            dict(reported), added, removed, {k: n for k, n in counts.items() if n}, order, base, rebased=True
        )

    def _reorder(self, added: list[str], removed: list[str]) -> list[str] | None:
        """Keep the sorted list of reported paths; a copy of it when many rows came or went."""
        if not added and not removed:
            return None
        many = len(added) + len(removed) >= ORDER_AT
        order = self._order
        if removed:
            if many:
                gone = set(removed)
                order = [p for p in order if p not in gone]
            else:
                for p in removed:
                    i = bisect.bisect_left(order, p)
                    if i < len(order) and order[i] == p:
                        del order[i]
        if added:
            if many or len(added) > 64:
                order = sorted(order + added)  # two sorted runs: one merge pass in C
            else:
                for p in added:
                    bisect.insort(order, p)
        self._order = order
        return list(order) if many else None

    def _badge(self, e: _Entry) -> FileStatus | None:
        # tuple.__new__ skips the named tuple's Python-level __new__: a flush builds 100,000 of these
        d, acked = e.disk, e.acked
        if d.kind == "excluded":
            return _new_status(FileStatus, (e.path, "excluded", d.reason))
        if not d.present:
            if acked is not None and acked.kind != "gone":
                return _new_status(FileStatus, (e.path, "pending", "deleted"))
            return None
        if self._needs_snapshot or self._delta(e, acked):
            return _new_status(FileStatus, (e.path, "pending", ""))
        if acked is not None and acked.kind == "content":
            return _new_status(FileStatus, (e.path, "in_view", ""))
        return _new_status(FileStatus, (e.path, "summarised", acked.reason if acked else ""))

    # ---- internals -------------------------------------------------------------------------------

    def _register(self, carried: list[tuple[_Entry, _View | None]]) -> str:
        seq = next(self._seq)
        uid = f"ctx-{self._generation}-{seq}"
        self._outstanding[uid] = _Outstanding(seq, self._generation, carried)
        return uid

    def _drop_gone(self) -> None:
        """Forget files that are gone and that no view (sent or acked) remembers. O(gone files)."""
        if not self._gone:
            return
        entries = self._entries
        forgettable = [
            p
            for p in self._gone
            if (e := entries.get(p)) is not None
            and not e.disk.present
            and (e.sent is None or e.sent.kind == "gone")
            and (e.acked is None or e.acked.kind == "gone")
        ]
        if not forgettable:
            return
        carried = {id(c) for o in self._outstanding.values() for c, _ in o.carried}
        for p in forgettable:
            if id(entries[p]) not in carried:
                del entries[p]
                self._gone.discard(p)
                self._dirty.add(p)

    @staticmethod
    def _delta(e: _Entry, view: _View | None) -> str | None:
        d = e.disk
        known = view is not None and view.kind != "gone"
        if not d.present:
            return "deleted" if known else None
        if d.kind == "excluded":
            return "excluded" if known else None
        if not known:
            return "created"
        assert view is not None
        if view.path != e.path:
            return "renamed"
        if (view.digest or e.filled) != d.digest or (not d.digest and view.text != d.text):
            return "modified"
        return None

    def _section(self, e: _Entry) -> _Section | None:
        delta = self._delta(e, e.sent)
        if delta is None:
            return None
        d, view, path = e.disk, e.sent, e.path
        if delta == "deleted":
            assert view is not None
            return _Section(e, "D", "", view.path, _View(view.path, "gone"), 0, src=view.path)
        if delta == "excluded":
            assert view is not None
            moved = f"{view.path} -> {path}" if view.path != path else path
            return _Section(e, "X", "", f"{moved} (excluded: {d.reason})", _View(path, "gone"), 0)
        lossy = "  (not valid UTF-8: shown with replacement characters)" if d.lossy else ""
        if d.kind != "text" or d.text is None:
            why = _summary_reason(d) if d.kind != "text" else "content not read"
            line = f"{path} ({why}, {human_size(d.size)})"
            op = "A" if delta == "created" else ("R" if delta == "renamed" else "S")
            if op == "R":
                assert view is not None
                line = f"{view.path} -> {line}"
            return _Section(
                e,
                op,
                "",
                line,
                _View(path, "summary", d.digest, None, why),
                0,
                src=view.path if op == "R" and view is not None else "",
            )
        if delta == "created" or (view is not None and view.kind != "content"):
            clean, found = scan(d.text)
            op = "A" if delta == "created" else ("R" if delta == "renamed" else "M")
            label = "new file" if op == "A" else "full content, not in your view before"
            body = fence(path, clean, label + lossy)
            prefix = f"{view.path} -> " if op == "R" and view is not None else ""
            line = f"{prefix}{path} (+{clean.count(chr(10)) + (0 if clean.endswith(chr(10)) else 1)} lines)"
            return _Section(
                e,
                op,
                body,
                line,
                _View(path, "content", d.digest, clean),
                estimate_tokens(body),
                tuple(found),
                src=view.path if op == "R" and view is not None else "",
            )
        assert view is not None and view.text is not None
        fd = diff_text(view.path, path, view.text, d.text)
        op = "R" if delta == "renamed" else "M"
        prefix = f"{view.path} -> " if op == "R" else ""
        body = (fd.diff.rstrip("\n") + lossy + "\n") if fd.diff else ""
        line = f"{prefix}{path} (+{fd.added} -{fd.removed})"
        return _Section(
            e,
            op,
            body,
            line,
            _View(path, "content", d.digest, fd.new_text),
            estimate_tokens(body),
            fd.findings,
            src=view.path if op == "R" else "",
        )

    def _pair_content_renames(self, sections: list[_Section]) -> None:
        """A deletion and a creation with the same content are a rename the events did not pair."""
        deleted = {
            s.entry.sent.digest: s
            for s in sections
            if s.op == "D" and s.entry.sent is not None and s.entry.sent.digest
        }
        for s in sections:
            if s.op != "A" or not s.entry.disk.digest or s.entry.disk.digest not in deleted:
                continue
            gone = deleted.pop(s.entry.disk.digest)
            old = gone.entry.sent
            assert old is not None
            s.op, s.body, s.cost, s.src = "R", "", 0, old.path
            s.line = f"{old.path} -> {s.entry.path} (same content)"
            s.view = _View(s.entry.path, old.kind, old.digest, old.text, old.reason)
            gone.hidden = True  # still carried (its view becomes "gone"), but not listed as a deletion
