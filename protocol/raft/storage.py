"""What the core reads from the log it does not hold in memory: etcd-io/raft's Storage interface.

The core never writes storage: it hands the driver a `Ready` batch, and the driver persists it (to a
`MemoryStorage` in simulations, to the segmented log of `agent/server/` on a real server) before calling
`advance()`. Indexes start at 1; index 0 / term 0 is the empty log's sentinel, and after compaction the
snapshot's (index, term) takes its place, so `term(first_index() - 1)` always answers.
"""

from __future__ import annotations

from typing import Protocol

from .types import ConfState, Entry, HardState, Snapshot


def entry_size(e: Entry) -> int:
    """What an entry counts against a max_bytes budget: its data plus a fixed allowance for index, term, kind."""
    return len(e.data) + 16


def limit_size(entries: list[Entry], max_bytes: int | None) -> list[Entry]:
    """The longest prefix within max_bytes, but never fewer than one entry (so a huge entry still moves)."""
    if max_bytes is None:
        return entries
    size = 0
    for n, e in enumerate(entries):
        size += entry_size(e)
        if n and size > max_bytes:
            return entries[:n]
    return entries


class StorageError(Exception):
    """Base of the errors a Storage raises for indexes it cannot serve."""


class Compacted(StorageError):
    """The index is at or before the last snapshot: its entry is gone (send a snapshot instead)."""


class Unavailable(StorageError):
    """The index is after the last entry."""


class SnapshotOutOfDate(StorageError):
    """A snapshot older than the one already held was offered."""


class Storage(Protocol):
    def initial_state(self) -> tuple[HardState, ConfState]:
        """The hard state and the configuration in force at the last entry (or the snapshot):
        `membership.conf_at_end(snapshot, entries)` is the rule. (The core itself rebuilds the configuration
        history from snapshot() and entries(), since a change in force may still be cut from the log.)"""
        ...

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries [lo, hi); at least one when lo < hi, then as many as fit in max_bytes of data."""
        ...

    def term(self, index: int) -> int:
        """The term of the entry at index; valid for first_index() - 1 ... last_index()."""
        ...

    def first_index(self) -> int:
        """The first index still held as an entry (snapshot index + 1)."""
        ...

    def last_index(self) -> int:
        ...

    def snapshot(self) -> Snapshot:
        """The most recent snapshot (an empty one when none was taken)."""
        ...
