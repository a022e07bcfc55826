"""memberlist's TransmitLimitedQueue (queue.go): gossip broadcasts piggybacked on outgoing packets.

Each broadcast is sent about retransmit_mult * log10(n + 1) times, the least-sent first so that news spreads
before old news is repeated. A broadcast with a key (the node name, for alive/suspect/dead) is replaced by a
newer one with the same key: only the latest word about a node is worth gossiping.

The order is memberlist's btree order: fewest transmits, then largest message, then newest. It is kept as one
bucket per (transmits, length), each a heap on the broadcast's id, so that taking, bumping and queueing a
broadcast cost O(log n) whatever the queue holds: a member of a 5,000-member cluster has every member's alive
queued at once, and one sorted list of them made each transmit a 40 KB memmove (issue 14). An entry is one tuple.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Callable
from typing import Any

import attrs

from protocol.interning import NEG_IDS
from protocol.suspicion import retransmit_limit

OnFinished = Callable[[], None]

# One queued broadcast: (-id, key, msg), or (-id, key, msg, on_finished) when there is a callback. The negated id
# comes first so that a bucket's heap pops its newest entry (ids are unique within a queue). The transmit count is
# not in the entry but is the tier of the bucket holding it: a transmit moves the same tuple one tier up instead of
# building a new one (each member of a large cluster queues every other one's alive and sends each L times, issue
# 14), and an entry without a callback is one slot smaller. Each queue has its own entries; only the immutable key
# and msg may be shared with other queues.
_Entry = tuple[Any, ...]


@attrs.frozen(eq=False)
class QueuedBroadcast:
    """One queued message as `snapshot` shows it; identity-compared, since two equal messages are still two
    broadcasts."""

    key: str | None
    msg: bytes
    transmits: int
    id: int
    on_finished: OnFinished | None = None


class BroadcastQueue:
    """A transmit-limited broadcast queue with memberlist's ordering and packing, deterministic."""

    def __init__(self, retransmit_mult: int) -> None:
        self.retransmit_mult = retransmit_mult
        self._tiers: list[int] = []  # transmit counts present, ascending
        self._lens: dict[int, list[int]] = {}  # transmit count -> message lengths present in it, ascending
        self._buckets: dict[tuple[int, int], list[_Entry]] = {}  # (transmits, length) -> heap of entries
        self._by_key: dict[str, _Entry] = {}
        self._len = 0
        self._next_id = 0

    def __len__(self) -> int:
        return self._len

    def queue(
        self,
        key: str | None,
        msg: bytes,
        on_finished: OnFinished | None = None,
        *,
        initial_transmits: int = 0,
    ) -> None:
        """Queue `msg`; an older broadcast with the same (non-None) key is invalidated and finished.

        `on_finished` runs once, when the broadcast retires, is invalidated, pruned or reset.
        """
        self._next_id += 1
        n = self._next_id
        neg_id = NEG_IDS[n] if n < len(NEG_IDS) else -n  # shared int objects in a simulation (interning.py)
        msg = bytes(msg)
        entry: _Entry = (neg_id, key, msg) if on_finished is None else (neg_id, key, msg, on_finished)
        old = None
        if key is not None:
            old = self._by_key.get(key)
            if old is not None:
                self._remove(old)
            self._by_key[key] = entry
        self._insert(entry, initial_transmits)
        if old is not None:
            _finish(old)

    def get_broadcasts(self, overhead: int, limit: int, num_nodes: int) -> list[bytes]:
        """Messages to piggyback on one packet: each costs len + overhead, the total stays within `limit`.

        Tier by tier (transmit count) the largest message that still fits is taken, newest first among
        equal sizes; each taken message counts one transmit and retires at retransmit_limit.
        """
        if not self._len:
            return []
        transmit_limit = retransmit_limit(self.retransmit_mult, num_nodes)
        used = 0
        sent: list[bytes] = []
        bumped: list[tuple[int, list[_Entry]]] = []  # (new tier, entries), reinserted after the walk
        retired: list[_Entry] = []
        lens_of, buckets, by_key = self._lens, self._buckets, self._by_key
        for tier in list(self._tiers):  # bumped entries are reinserted after the walk, not met again in it
            lens = lens_of[tier]
            retires = tier + 1 >= transmit_limit
            up: list[_Entry] = []
            while True:
                free = limit - used - overhead
                if free <= 0:
                    break
                i = bisect.bisect_right(lens, free) - 1
                if i < 0:
                    break  # nothing in this tier fits: try the next
                size = lens[i]
                heap = buckets[tier, size]
                entry = heapq.heappop(heap)
                if not heap:
                    del buckets[tier, size]
                    del lens[i]
                used += overhead + size
                sent.append(entry[2])
                if retires:
                    retired.append(entry)
                    if entry[1] is not None:
                        del by_key[entry[1]]
                else:
                    up.append(entry)
            if up:
                bumped.append((tier + 1, up))
            if not lens:
                del lens_of[tier]
                self._tiers.remove(tier)
            if limit - used - overhead <= 0:
                break
        self._len -= len(sent)
        for tier, entries in bumped:
            for entry in entries:
                self._insert(entry, tier)
        for entry in retired:
            _finish(entry)
        return sent

    def prune(self, max_retained: int) -> None:
        """Drop the most-sent (then smallest, oldest) broadcasts until at most `max_retained` remain."""
        excess = self._len - max(max_retained, 0)
        if excess <= 0:
            return
        dropped = self._ordered()[-excess:][::-1]
        for tier, entry in dropped:
            self._remove(entry, tier)
        for _tier, entry in dropped:
            _finish(entry)

    def reset(self) -> None:
        """Drop everything, finishing each broadcast in queue order."""
        dropped = self._ordered()
        self._tiers, self._lens, self._buckets, self._by_key = [], {}, {}, {}
        self._len = 0
        self._next_id = 0
        for _tier, entry in dropped:
            _finish(entry)

    def snapshot(self) -> list[QueuedBroadcast]:
        """The queue in transmit order (what get_broadcasts would consider first), for tests and logs."""
        return [QueuedBroadcast(e[1], e[2], tier, -e[0], e[3] if len(e) > 3 else None) for tier, e in self._ordered()]

    # --- internals ---

    def _ordered(self) -> list[tuple[int, _Entry]]:
        """(transmits, entry) in memberlist's btree order: fewest transmits, then largest message, then newest."""
        items = [(tier, e) for (tier, _size), heap in self._buckets.items() for e in heap]
        return sorted(items, key=lambda te: (te[0], -len(te[1][2]), te[1][0]))

    def _insert(self, entry: _Entry, tier: int) -> None:
        size = len(entry[2])
        heap = self._buckets.get((tier, size))
        if heap is None:
            heap = self._buckets[tier, size] = []
            lens = self._lens.get(tier)
            if lens is None:
                lens = self._lens[tier] = []
                bisect.insort(self._tiers, tier)
            bisect.insort(lens, size)
        heapq.heappush(heap, entry)
        self._len += 1

    def _remove(self, entry: _Entry, tier: int | None = None) -> None:
        """Take one entry out of the middle of its bucket (invalidation, prune): rare, so O(bucket) is fine.
        Without `tier` the entry is looked for in each tier's bucket of its size (at most L + 1 of them)."""
        size = len(entry[2])
        tiers = self._tiers if tier is None else (tier,)
        for t in tiers:
            heap = self._buckets.get((t, size))
            idx = None if heap is None else next((i for i, e in enumerate(heap) if e is entry), None)
            if idx is not None:
                break
        else:
            raise KeyError("broadcast not queued")
        assert heap is not None
        last = heap.pop()
        if idx < len(heap):
            heap[idx] = last
            heapq.heapify(heap)
        if not heap:
            del self._buckets[t, size]
            lens = self._lens[t]
            lens.remove(size)
            if not lens:
                del self._lens[t]
                self._tiers.remove(t)
        self._len -= 1
        key = entry[1]
        if key is not None and self._by_key.get(key) is entry:
            del self._by_key[key]


def _finish(entry: _Entry) -> None:
    """Notify the owner once the queue no longer holds the broadcast (state is consistent by then)."""
    if len(entry) > 3:
        entry[3]()
