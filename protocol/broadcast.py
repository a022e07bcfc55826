"""memberlist's TransmitLimitedQueue (queue.go): gossip broadcasts piggybacked on outgoing packets.

Each broadcast is sent about retransmit_mult * log10(n + 1) times, the least-sent first so that news spreads
before old news is repeated. A broadcast with a key (the node name, for alive/suspect/dead) is replaced by a
newer one with the same key: only the latest word about a node is worth gossiping.

The order is memberlist's btree order: fewest transmits, then largest message, then newest. It is kept as one
bucket per (transmits, length), each a list sorted by the broadcast's id, newest last: a member of a 5,000-member
cluster has every member's alive queued at once, and a packet takes ~50 same-length alives from one bucket, so the
k newest are one slice off its end and move one tier up as one run (issue 14). Ids only grow, so a run is nearly
always newer or older than all of the bucket it joins (an extend or one insert at the front); anything else is
placed by bisection. An entry is one tuple.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from operator import itemgetter
from typing import Any

import attrs

from protocol.interning import QUEUE_IDS
from protocol.suspicion import retransmit_limit

OnFinished = Callable[[], None]

# One queued broadcast: (id, key, msg), or (id, key, msg, on_finished) when there is a callback. The id comes first
# so that a bucket sorts by it (ids are unique within a queue, so no comparison looks further). The transmit count is
# not in the entry but is the tier of the bucket holding it: a transmit moves the same tuple one tier up instead of
# building a new one (each member of a large cluster queues every other one's alive and sends each L times, issue
# 14), and an entry without a callback is one slot smaller. Each queue has its own entries; only the immutable key
# and msg may be shared with other queues.
_Entry = tuple[Any, ...]
_msg_of = itemgetter(2)


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
        self._buckets: dict[tuple[int, int], list[_Entry]] = {}  # (transmits, length) -> entries, oldest first
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
        ident = QUEUE_IDS[n] if n < len(QUEUE_IDS) else n  # shared int objects in a simulation (interning.py)
        msg = bytes(msg)
        entry: _Entry = (ident, key, msg) if on_finished is None else (ident, key, msg, on_finished)
        old = None
        if key is not None:
            old = self._by_key.get(key)
            if old is not None:
                self._remove(old)
            self._by_key[key] = entry
        self._insert([entry], initial_transmits, len(msg))
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
        bumped: list[tuple[list[_Entry], int, int]] = []  # (entries, new tier, length), reinserted after the walk
        retired: list[_Entry] = []
        lens_of, buckets, by_key = self._lens, self._buckets, self._by_key
        for tier in list(self._tiers):  # bumped entries are reinserted after the walk, not met again in it
            lens = lens_of[tier]
            retires = tier + 1 >= transmit_limit
            while True:
                room = limit - used
                if room - overhead <= 0:
                    break
                i = bisect.bisect_right(lens, room - overhead) - 1
                if i < 0:
                    break  # nothing in this tier fits: try the next
                size = lens[i]
                bucket = buckets[tier, size]
                take = _fitting(room, overhead, size, len(bucket))
                if take >= len(bucket):
                    run = bucket
                    del buckets[tier, size]
                    del lens[i]
                else:
                    run = bucket[-take:]
                    del bucket[-take:]
                used += len(run) * (overhead + size)
                sent.extend(map(_msg_of, reversed(run)))
                if retires:
                    retired.extend(reversed(run))
                    for entry in run:
                        if entry[1] is not None:
                            del by_key[entry[1]]
                else:
                    bumped.append((run, tier + 1, size))
                if limit - used - overhead <= 0:
                    break
            if not lens:
                del lens_of[tier]
                self._tiers.remove(tier)
            if limit - used - overhead <= 0:
                break
        self._len -= len(sent)
        for run, tier, size in bumped:
            self._insert(run, tier, size)
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
        return [QueuedBroadcast(e[1], e[2], tier, e[0], e[3] if len(e) > 3 else None) for tier, e in self._ordered()]

    # --- internals ---

    def _ordered(self) -> list[tuple[int, _Entry]]:
        """(transmits, entry) in memberlist's btree order: fewest transmits, then largest message, then newest."""
        items = [(tier, e) for (tier, _size), bucket in self._buckets.items() for e in bucket]
        return sorted(items, key=lambda te: (te[0], -len(te[1][2]), -te[1][0]))

    def _insert(self, run: list[_Entry], tier: int, size: int) -> None:
        """Put `run` (entries of one length, oldest first) into its bucket; the list may become the bucket."""
        bucket = self._buckets.get((tier, size))
        if bucket is None:
            self._buckets[tier, size] = run
            lens = self._lens.get(tier)
            if lens is None:
                lens = self._lens[tier] = []
                bisect.insort(self._tiers, tier)
            bisect.insort(lens, size)
        elif run[0][0] > bucket[-1][0]:
            bucket += run  # newer than all of it: a new broadcast, or a run taken from the end of its tier
        elif run[-1][0] < bucket[0][0]:
            bucket[:0] = run  # older than all of it: the next run of a tier drained newest first
        else:
            for entry in run:
                bisect.insort(bucket, entry)
        self._len += len(run)

    def _remove(self, entry: _Entry, tier: int | None = None) -> None:
        """Take one entry out of the middle of its bucket (invalidation, prune): rare, so O(bucket) is fine.
        Without `tier` the entry is looked for in each tier's bucket of its size (at most L + 1 of them)."""
        size = len(entry[2])
        tiers = self._tiers if tier is None else (tier,)
        for t in tiers:
            bucket = self._buckets.get((t, size))
            if bucket is not None:
                idx = bisect.bisect_left(bucket, entry[0], key=_ident)
                if idx < len(bucket) and bucket[idx] is entry:
                    break
        else:
            raise KeyError("broadcast not queued")
        del bucket[idx]
        if not bucket:
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


def _fitting(room: int, overhead: int, size: int, queued: int) -> int:
    """How many messages of `size` one at a time fit `room`: each needs overhead + size, and some room must be
    left before it (the one-by-one loop memberlist runs, counted at once)."""
    if size > 0:
        return room // (overhead + size)
    return (room - 1) // overhead if overhead > 0 else queued


def _ident(entry: _Entry) -> int:
    return entry[0]


def _finish(entry: _Entry) -> None:
    """Notify the owner once the queue no longer holds the broadcast (state is consistent by then)."""
    if len(entry) > 3:
        entry[3]()
