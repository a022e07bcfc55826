"""MemoryStorage: the Storage protocol in memory, for simulations and tests (the durable one is agent/server/).

Besides what the core reads, it takes what a driver writes from a Ready: `append` (cutting a conflicting
suffix), `set_hard_state`, `apply_snapshot`; and the driver's log compaction: `create_snapshot` then
`compact`. Entries before the snapshot may stay until compacted: first_index() - 1 is the compaction point.
"""

from __future__ import annotations

from collections.abc import Iterable

from .membership import conf_at_end
from .storage import Compacted, SnapshotOutOfDate, Unavailable, limit_size
from .types import ConfState, Entry, HardState, Snapshot, SnapshotMeta


class MemoryStorage:
    def __init__(self) -> None:
        self.hard_state = HardState()
        self._snapshot = Snapshot()
        self._base_index = 0  # the compaction point: entries start after it
        self._base_term = 0
        self._entries: list[Entry] = []

    # ------------------------------------------------------------------ Storage
    def initial_state(self) -> tuple[HardState, ConfState]:
        return self.hard_state, conf_at_end(self._snapshot, self._entries)

    def first_index(self) -> int:
        return self._base_index + 1

    def last_index(self) -> int:
        return self._base_index + len(self._entries)

    def term(self, index: int) -> int:
        if index < self._base_index:
            raise Compacted(f"index {index} is compacted (first index {self.first_index()})")
        if index > self.last_index():
            raise Unavailable(f"index {index} is after the last index {self.last_index()}")
        if index == self._base_index:
            return self._base_term
        return self._entries[index - self._base_index - 1].term

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        if lo <= self._base_index:
            raise Compacted(f"index {lo} is compacted (first index {self.first_index()})")
        if hi > self.last_index() + 1:
            raise Unavailable(f"entries to {hi} pass the last index {self.last_index()}")
        out = self._entries[lo - self._base_index - 1: hi - self._base_index - 1]
        return limit_size(out, max_bytes)

    def snapshot(self) -> Snapshot:
        return self._snapshot

    # ------------------------------------------------------------------ writes from a Ready
    def append(self, entries: Iterable[Entry]) -> None:
        """Write entries, replacing whatever is stored from the first one's index on."""
        new = [e for e in entries if e.index > self._base_index]
        if not new:
            return
        first = new[0].index
        if first > self.last_index() + 1:
            raise ValueError(f"append at {first} leaves a gap after {self.last_index()}")
        del self._entries[first - self._base_index - 1:]
        self._entries.extend(new)

    def set_hard_state(self, hs: HardState) -> None:
        self.hard_state = hs

    def apply_snapshot(self, snap: Snapshot) -> None:
        if snap.meta.index <= self._snapshot.meta.index:
            raise SnapshotOutOfDate(f"snapshot at {snap.meta.index} is not newer than {self._snapshot.meta.index}")
        self._snapshot = snap
        self._base_index, self._base_term = snap.meta.index, snap.meta.term
        self._entries = []

    # ------------------------------------------------------------------ compaction (the driver's choice)
    def create_snapshot(self, index: int, conf: ConfState, data: bytes) -> Snapshot:
        if index <= self._snapshot.meta.index:
            raise SnapshotOutOfDate(f"snapshot at {index} is not newer than {self._snapshot.meta.index}")
        if index > self.last_index():
            raise Unavailable(f"snapshot at {index} passes the last index {self.last_index()}")
        self._snapshot = Snapshot(SnapshotMeta(index, self.term(index), conf), data)
        return self._snapshot

    def compact(self, index: int) -> None:
        """Drop entries up to index; a snapshot must already cover them (followers behind get it instead)."""
        if index <= self._base_index:
            return
        if index > self._snapshot.meta.index:
            raise ValueError(f"compact to {index}: the snapshot covers only up to {self._snapshot.meta.index}")
        term = self.term(index)
        del self._entries[: index - self._base_index]
        self._base_index, self._base_term = index, term
