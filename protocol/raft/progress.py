"""What a leader knows of each follower: how far their logs match, and how it sends them more.

PROBE: one APPEND at a time until one is accepted (back off on each rejection, using the reject hint).
REPLICATE: APPENDs pipelined optimistically, at most `max_inflight_msgs` unacknowledged.
SNAPSHOT: the follower needs entries we compacted; nothing else is sent until it answers (or the send is
given up after an election timeout, in case the snapshot was lost).
"""

from __future__ import annotations

import enum
from collections import deque

import attrs


class ProgressState(enum.Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


class Inflights:
    """The last index of each APPEND in flight, oldest first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._q: deque[int] = deque()

    def add(self, last_index: int) -> None:
        self._q.append(last_index)

    def free_le(self, index: int) -> None:
        while self._q and self._q[0] <= index:
            self._q.popleft()

    def free_first(self) -> None:
        if self._q:
            self._q.popleft()

    def full(self) -> bool:
        return len(self._q) >= self.capacity

    def count(self) -> int:
        return len(self._q)

    def reset(self) -> None:
        self._q.clear()


@attrs.define
class Progress:
    next: int
    inflights: Inflights
    match: int = 0
    state: ProgressState = ProgressState.PROBE
    probe_sent: bool = False  # PROBE: an APPEND is out; wait for its answer or a heartbeat answer
    pending_snapshot: int = 0  # SNAPSHOT: the index of the snapshot sent
    snapshot_ticks: int = 0
    recent_active: bool = True  # answered since the last check-quorum round

    def become_probe(self) -> None:
        if self.state is ProgressState.SNAPSHOT:
            self.next = max(self.match + 1, self.pending_snapshot + 1)
        else:
            self.next = self.match + 1
        self._reset(ProgressState.PROBE)

    def become_replicate(self) -> None:
        self.next = self.match + 1
        self._reset(ProgressState.REPLICATE)

    def become_snapshot(self, index: int) -> None:
        self._reset(ProgressState.SNAPSHOT)
        self.pending_snapshot = index

    def _reset(self, state: ProgressState) -> None:
        self.state = state
        self.probe_sent = False
        self.pending_snapshot = 0
        self.snapshot_ticks = 0
        self.inflights.reset()

    def maybe_update(self, index: int) -> bool:
        """An acknowledgement up to index; False when it is stale."""
        updated = index > self.match
        if updated:
            self.match = index
            self.probe_sent = False
        self.next = max(self.next, index + 1)
        return updated

    def maybe_decrease_to(self, rejected: int, hint: int) -> bool:
        """A rejection of the APPEND after `rejected`; `hint` is where the follower's log may match.
        False when the rejection is stale (not about the APPEND we are waiting on)."""
        if self.state is ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, hint + 1), self.match + 1)
        self.probe_sent = False
        return True

    def is_paused(self) -> bool:
        if self.state is ProgressState.PROBE:
            return self.probe_sent
        if self.state is ProgressState.REPLICATE:
            return self.inflights.full()
        return True
