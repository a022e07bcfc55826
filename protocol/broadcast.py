"""memberlist's TransmitLimitedQueue (queue.go): gossip broadcasts piggybacked on outgoing packets.

Each broadcast is sent about retransmit_mult * log10(n + 1) times, the least-sent first so that news spreads
before old news is repeated. A broadcast with a key (the node name, for alive/suspect/dead) is replaced by a
newer one with the same key: only the latest word about a node is worth gossiping.

The order is memberlist's btree order: fewest transmits, then largest message, then newest. It is kept as one
bucket per (transmits, length), each sorted by the broadcast's id, newest last: a member of a 5,000-member cluster
has every member's alive queued at once, and a packet takes ~50 same-length alives from one bucket, so the k newest
are one slice off its end and move one tier up as one run (issue 14). Ids only grow, so a run is nearly always
newer or older than all of the bucket it joins (an extend or one insert at the front); anything else is placed by
bisection.

A bucket is three parallel lists (ids, keys, messages) rather than a list of entry tuples: at N = 5,000 the queues
hold 25M broadcasts at once, and a tuple per broadcast was 64 bytes of the ~100 each cost. The transmit count is
the bucket's tier, the rare callback sits in a dict by id, and `_by_key` maps a key to its broadcast's id. Each
queue has its own lists; only the immutable keys and messages (and, in a simulation, the id ints) are shared.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable

import attrs

from protocol.interning import QUEUE_IDS
from protocol.suspicion import retransmit_limit

OnFinished = Callable[[], None]

# One bucket, or a run of broadcasts moving between buckets: [ids, keys, msgs], parallel, ascending by id.
_Bucket = list[list]


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
        self._buckets: dict[tuple[int, int], _Bucket] = {}  # (transmits, length) -> [ids, keys, msgs]
        self._by_key: dict[str, int] = {}  # key -> id of its queued broadcast
        self._callbacks: dict[int, OnFinished] = {}  # id -> on_finished, for the broadcasts that have one
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
        old_done = None  # the invalidated broadcast's callback, run once this one is queued
        if key is not None:
            old = self._by_key.get(key)
            if old is not None:
                old_done = self._remove(old)
            self._by_key[key] = ident
        if on_finished is not None:
            self._callbacks[ident] = on_finished
        bucket = self._buckets.get((initial_transmits, len(msg)))
        if bucket is None:
            self._insert([[ident], [key], [msg]], initial_transmits, len(msg))
        else:  # the newest broadcast of the queue (ids only grow): the end of its bucket
            bucket[0].append(ident)
            bucket[1].append(key)
            bucket[2].append(msg)
            self._len += 1
        if old_done is not None:
            old_done()

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
        bumped: list[tuple[_Bucket, int, int]] = []  # (run, new tier, length), reinserted after the walk
        retired: list[int] = []  # ids, in the order sent
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
                ids, keys, msgs = bucket
                take = _fitting(room, overhead, size, len(ids))
                if take >= len(ids):
                    run = bucket
                    del buckets[tier, size]
                    del lens[i]
                else:
                    run = [ids[-take:], keys[-take:], msgs[-take:]]
                    del ids[-take:], keys[-take:], msgs[-take:]
                used += len(run[0]) * (overhead + size)
                sent.extend(reversed(run[2]))
                if retires:
                    retired.extend(reversed(run[0]))
                    for key in run[1]:
                        if key is not None:
                            del by_key[key]
                else:
                    bumped.append((run, tier + 1, size))
            if not lens:
                del lens_of[tier]
                self._tiers.remove(tier)
            if limit - used - overhead <= 0:
                break
        self._len -= len(sent)
        for run, tier, size in bumped:
            self._insert(run, tier, size)
        callbacks = self._callbacks
        if callbacks:
            for ident in retired:
                done = callbacks.pop(ident, None)
                if done is not None:
                    done()
        return sent

    def prune(self, max_retained: int) -> None:
        """Drop the most-sent (then smallest, oldest) broadcasts until at most `max_retained` remain."""
        excess = self._len - max(max_retained, 0)
        if excess <= 0:
            return
        dropped = self._ordered()[-excess:][::-1]
        done = [self._remove(b.id) for b in dropped]
        for fn in done:
            if fn is not None:
                fn()

    def reset(self) -> None:
        """Drop everything, finishing each broadcast in queue order (ordered only when some broadcast has a
        callback: a large simulation resets queues of thousands that have none)."""
        dropped = self._ordered() if self._callbacks else []
        self._tiers, self._lens, self._buckets, self._by_key, self._callbacks = [], {}, {}, {}, {}
        self._len = 0
        self._next_id = 0
        for b in dropped:
            if b.on_finished is not None:
                b.on_finished()

    def snapshot(self) -> list[QueuedBroadcast]:
        """The queue in transmit order (what get_broadcasts would consider first), for tests and logs."""
        return self._ordered()

    # --- internals ---

    def _ordered(self) -> list[QueuedBroadcast]:
        """The queue in memberlist's btree order: fewest transmits, then largest message, then newest."""
        cb = self._callbacks.get
        items = [
            QueuedBroadcast(key, msg, tier, ident, cb(ident))
            for (tier, _size), (ids, keys, msgs) in self._buckets.items()
            for ident, key, msg in zip(ids, keys, msgs, strict=True)
        ]
        return sorted(items, key=lambda b: (b.transmits, -len(b.msg), -b.id))

    def _insert(self, run: _Bucket, tier: int, size: int) -> None:
        """Put `run` (broadcasts of one length, oldest first) into its bucket; the run may become the bucket."""
        bucket = self._buckets.get((tier, size))
        if bucket is None:
            self._buckets[tier, size] = run
            lens = self._lens.get(tier)
            if lens is None:
                lens = self._lens[tier] = []
                bisect.insort(self._tiers, tier)
            bisect.insort(lens, size)
        elif run[0][0] > bucket[0][-1]:  # newer than all of it: a new broadcast, or a run taken from a tier's end
            for column, new in zip(bucket, run, strict=True):
                column += new
        elif run[0][-1] < bucket[0][0]:  # older than all of it: the next run of a tier drained newest first
            for column, new in zip(bucket, run, strict=True):
                column[:0] = new
        else:
            ids, keys, msgs = bucket
            for ident, key, msg in zip(*run, strict=True):
                at = bisect.bisect_left(ids, ident)
                ids.insert(at, ident)
                keys.insert(at, key)
                msgs.insert(at, msg)
        self._len += len(run[0])

    def _remove(self, ident: int) -> OnFinished | None:
        """Take one broadcast out of the middle of its bucket (invalidation, prune): rare, so a bisection in each
        bucket (at most L + 1 tiers of a few lengths) is fine. Returns its callback, to run once consistent."""
        (tier, size), bucket, at = self._locate(ident)
        ids = bucket[0]
        del ids[at]
        key = bucket[1].pop(at)
        del bucket[2][at]
        if not ids:
            del self._buckets[tier, size]
            lens = self._lens[tier]
            lens.remove(size)
            if not lens:
                del self._lens[tier]
                self._tiers.remove(tier)
        self._len -= 1
        if key is not None and self._by_key.get(key) == ident:
            del self._by_key[key]
        return self._callbacks.pop(ident, None)

    def _locate(self, ident: int) -> tuple[tuple[int, int], _Bucket, int]:
        """(bucket's tier and length, bucket, index) of the broadcast `ident`."""
        for where, bucket in self._buckets.items():
            ids = bucket[0]
            at = bisect.bisect_left(ids, ident)
            if at < len(ids) and ids[at] == ident:
                return where, bucket, at
        raise KeyError("broadcast not queued")


def _fitting(room: int, overhead: int, size: int, queued: int) -> int:
    """How many messages of `size` one at a time fit `room`: each needs overhead + size, and some room must be
    left before it (the one-by-one loop memberlist runs, counted at once)."""
    if size > 0:
        return room // (overhead + size)
    return (room - 1) // overhead if overhead > 0 else queued
