"""The log as the core sees it: what storage holds, plus the unstable tail (and snapshot) not yet persisted.

Entries enter at the unstable tail; the driver persists them from a Ready and `stable_to` lets them go.
A conflicting suffix is cut only in the unstable part: the next Ready's entries overwrite storage from
their first index (the driver's contract). Committed entries are never cut: trying to raises.
"""

from __future__ import annotations

from .storage import Compacted, Storage, Unavailable, limit_size
from .types import Entry, Snapshot


class LogInvariantError(AssertionError):
    """The core was asked to break a log invariant (commit a missing entry, rewrite a committed one)."""


class Unstable:
    """Entries from `offset` on (and maybe a snapshot just before them) that storage does not hold yet."""

    def __init__(self, offset: int) -> None:
        self.offset = offset
        self.entries: list[Entry] = []
        self.snapshot: Snapshot | None = None

    def last_index(self) -> int | None:
        if self.entries:
            return self.offset + len(self.entries) - 1
        if self.snapshot is not None:
            return self.snapshot.meta.index
        return None

    def term(self, index: int) -> int | None:
        if index < self.offset:
            if self.snapshot is not None and self.snapshot.meta.index == index:
                return self.snapshot.meta.term
            return None
        if index - self.offset < len(self.entries):
            return self.entries[index - self.offset].term
        return None

    def truncate_and_append(self, entries: list[Entry]) -> None:
        after = entries[0].index
        if after == self.offset + len(self.entries):
            self.entries.extend(entries)
        elif after <= self.offset:
            # replaces the unstable part and, once persisted, everything stored from `after` on
            self.offset = after
            self.entries = list(entries)
        else:
            del self.entries[after - self.offset:]
            self.entries.extend(entries)

    def stable_to(self, index: int, term: int) -> None:
        if self.term(index) != term or index < self.offset:
            return  # rewritten since that Ready: the newer entries are still to persist
        del self.entries[: index + 1 - self.offset]
        self.offset = index + 1

    def restore(self, snapshot: Snapshot) -> None:
        self.offset = snapshot.meta.index + 1
        self.entries = []
        self.snapshot = snapshot


class RaftLog:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        first, last = storage.first_index(), storage.last_index()
        self.unstable = Unstable(last + 1)
        self.committed = first - 1
        self.applied = first - 1
        self.applying = first - 1  # the last index handed to the driver to apply

    # ------------------------------------------------------------------ indexes and terms
    def first_index(self) -> int:
        if self.unstable.snapshot is not None:
            return self.unstable.snapshot.meta.index + 1
        return self.storage.first_index()

    def last_index(self) -> int:
        last = self.unstable.last_index()
        return last if last is not None else self.storage.last_index()

    def term(self, index: int) -> int:
        """The term at index; raises Compacted / Unavailable outside first_index()-1 ... last_index()."""
        if index < self.first_index() - 1:
            raise Compacted(f"index {index} is compacted (first index {self.first_index()})")
        if index > self.last_index():
            raise Unavailable(f"index {index} is after the last index {self.last_index()}")
        t = self.unstable.term(index)
        return t if t is not None else self.storage.term(index)

    def term_or_none(self, index: int) -> int | None:
        try:
            return self.term(index)
        except (Compacted, Unavailable):
            return None

    def last_stable_index(self) -> int:
        """The last index the driver has persisted that is still in our log (the log before the unstable
        tail); 0 while a received snapshot is unpersisted."""
        return self.unstable.offset - 1 if self.unstable.snapshot is None else 0

    def last_term(self) -> int:
        return self.term(self.last_index())

    def match_term(self, index: int, term: int) -> bool:
        return self.term_or_none(index) == term

    def is_up_to_date(self, last_index: int, term: int) -> bool:
        """Whether a log ending at (last_index, term) is at least as up to date as ours (§5.4.1)."""
        ours = self.last_term()
        return term > ours or (term == ours and last_index >= self.last_index())

    def find_conflict(self, entries: tuple[Entry, ...] | list[Entry]) -> int:
        """The first index of `entries` that we lack or hold with another term; 0 when all match."""
        for e in entries:
            if not self.match_term(e.index, e.term):
                return e.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """The largest index <= `index` whose term is <= `term` (and that term): a back-off hint that skips a
        whole term of entries the other side cannot match."""
        index = min(index, self.last_index())
        while index > 0:
            t = self.term_or_none(index)
            if t is None:
                break  # compacted: the snapshot decides
            if t <= term:
                return index, t
            index -= 1
        return index, self.term_or_none(index) or 0

    # ------------------------------------------------------------------ changes
    def append(self, entries: list[Entry]) -> None:
        if not entries:
            return
        if entries[0].index <= self.committed:
            raise LogInvariantError(f"append at {entries[0].index} would rewrite committed {self.committed}")
        if entries[0].index > self.last_index() + 1:
            raise LogInvariantError(f"append at {entries[0].index} leaves a gap after {self.last_index()}")
        self.unstable.truncate_and_append(entries)

    def maybe_append(self, index: int, log_term: int, committed: int,
                     entries: tuple[Entry, ...]) -> tuple[int, list[Entry]] | None:
        """An APPEND's entries after (index, log_term): None if our log does not hold that entry; else the
        last index they reach and the entries actually written (from the first conflict on)."""
        if not self.match_term(index, log_term):
            return None
        last_new = index + len(entries)
        conflict = self.find_conflict(entries)
        written: list[Entry] = []
        if conflict:
            if conflict <= self.committed:
                raise LogInvariantError(f"entry {conflict} conflicts with the committed prefix ({self.committed})")
            written = list(entries[conflict - index - 1:])
            self.append(written)
        self.commit_to(min(committed, last_new))
        return last_new, written

    def commit_to(self, index: int) -> None:
        if index <= self.committed:
            return
        if index > self.last_index():
            raise LogInvariantError(f"commit {index} is beyond the last index {self.last_index()}")
        self.committed = index

    def maybe_commit(self, index: int, term: int) -> bool:
        """Commit up to index if its entry is of `term` (a leader counts only its own term: Figure 8)."""
        if index > self.committed and self.term_or_none(index) == term:
            self.commit_to(index)
            return True
        return False

    def restore(self, snapshot: Snapshot) -> None:
        self.committed = snapshot.meta.index
        self.unstable.restore(snapshot)

    # ------------------------------------------------------------------ reading
    def slice(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries [lo, hi), at least one if lo < hi, then while they fit in max_bytes."""
        if lo >= hi:
            return []
        if lo < self.first_index():
            raise Compacted(f"index {lo} is compacted (first index {self.first_index()})")
        if hi > self.last_index() + 1:
            raise Unavailable(f"slice to {hi} passes the last index {self.last_index()}")
        out: list[Entry] = []
        off = self.unstable.offset
        if lo < off:
            out.extend(self.storage.entries(lo, min(hi, off), max_bytes))
            if len(out) < min(hi, off) - lo:
                return out  # storage stopped at the size limit
        if hi > off:
            start = max(lo, off)
            out.extend(self.unstable.entries[start - off: hi - off])
        return limit_size(out, max_bytes)

    def snapshot(self) -> Snapshot:
        return self.unstable.snapshot if self.unstable.snapshot is not None else self.storage.snapshot()

    def has_next_committed(self) -> bool:
        return self.unstable.snapshot is None and self.committed > max(self.applying, self.first_index() - 1)

    def next_committed(self, max_bytes: int | None = None) -> list[Entry]:
        if self.unstable.snapshot is not None:
            return []  # the snapshot is applied first
        lo = max(self.applying + 1, self.first_index())
        return self.slice(lo, self.committed + 1, max_bytes)

    def applied_to(self, index: int) -> None:
        if index > self.committed:
            raise LogInvariantError(f"applied {index} passes the commit index {self.committed}")
        self.applied = max(self.applied, index)
        self.applying = max(self.applying, index)
