"""memberlist's TransmitLimitedQueue (queue.go): gossip broadcasts piggybacked on outgoing packets.

Each broadcast is sent about retransmit_mult * log10(n + 1) times, the least-sent first so that news spreads
before old news is repeated. A broadcast with a key (the node name, for alive/suspect/dead) is replaced by a
newer one with the same key: only the latest word about a node is worth gossiping.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable

import attrs

from protocol.suspicion import retransmit_limit

OnFinished = Callable[[], None]
_INF = float("inf")


@attrs.frozen(eq=False)
class QueuedBroadcast:
    """One queued message; identity-compared, since two equal messages are still two broadcasts."""

    key: str | None
    msg: bytes
    transmits: int
    id: int
    on_finished: OnFinished | None = None


def _order(b: QueuedBroadcast) -> tuple[int, int, int]:
    """memberlist's btree order: fewest transmits, then largest message, then newest."""
    return (b.transmits, -len(b.msg), -b.id)


class BroadcastQueue:
    """A transmit-limited broadcast queue with memberlist's ordering and packing, deterministic."""

    def __init__(self, retransmit_mult: int) -> None:
        self.retransmit_mult = retransmit_mult
        self._items: list[QueuedBroadcast] = []  # sorted by _order
        self._keys: list[tuple[int, int, int]] = []  # _order of each item, kept in step: bisect without calls
        self._by_key: dict[str, QueuedBroadcast] = {}
        self._next_id = 0

    def __len__(self) -> int:
        return len(self._items)

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
        entry = QueuedBroadcast(key, bytes(msg), initial_transmits, self._next_id, on_finished)
        old = self._by_key.get(key) if key is not None else None
        if old is not None:
            self._remove(old)
        self._insert(entry)
        if old is not None:
            _finish(old)

    def get_broadcasts(self, overhead: int, limit: int, num_nodes: int) -> list[bytes]:
        """Messages to piggyback on one packet: each costs len + overhead, the total stays within `limit`.

        Tier by tier (transmit count) the largest message that still fits is taken, newest first among
        equal sizes; each taken message counts one transmit and retires at retransmit_limit.
        """
        if not self._items:
            return []
        transmit_limit = retransmit_limit(self.retransmit_mult, num_nodes)
        used = 0
        sent: list[bytes] = []
        bumped: list[QueuedBroadcast] = []
        retired: list[QueuedBroadcast] = []
        tier: int | None = self._items[0].transmits
        while tier is not None:
            free = limit - used - overhead
            if free <= 0:
                break
            idx = self._first_fitting(tier, free)
            if idx is None:
                tier = self._next_tier(tier)
                continue
            entry = self._pop(idx)
            used += overhead + len(entry.msg)
            sent.append(entry.msg)
            if entry.transmits + 1 >= transmit_limit:
                retired.append(entry)
            else:
                # Reinserted after the walk, or it would be met again in the next tier.
                bumped.append(
                    QueuedBroadcast(entry.key, entry.msg, entry.transmits + 1, entry.id, entry.on_finished)
                )
        for entry in bumped:
            self._insert(entry)
        for entry in retired:
            _finish(entry)
        return sent

    def prune(self, max_retained: int) -> None:
        """Drop the most-sent (then smallest, oldest) broadcasts until at most `max_retained` remain."""
        dropped: list[QueuedBroadcast] = []
        while len(self._items) > max(max_retained, 0):
            entry = self._pop(len(self._items) - 1)
            dropped.append(entry)
        for entry in dropped:
            _finish(entry)

    def reset(self) -> None:
        """Drop everything, finishing each broadcast in queue order."""
        dropped, self._items, self._keys, self._by_key = self._items, [], [], {}
        self._next_id = 0
        for entry in dropped:
            _finish(entry)

    def snapshot(self) -> list[QueuedBroadcast]:
        """The queue in transmit order (what get_broadcasts would consider first), for tests and logs."""
        return list(self._items)

    # --- internals ---

    def _first_fitting(self, tier: int, free: int) -> int | None:
        """Index of the first entry in `tier` whose message fits in `free` bytes."""
        idx = bisect.bisect_left(self._keys, (tier, -free, -_INF))
        if idx < len(self._items) and self._items[idx].transmits == tier:
            return idx
        return None

    def _next_tier(self, tier: int) -> int | None:
        """The next transmit count present in the queue, skipping empty tiers."""
        idx = bisect.bisect_left(self._keys, (tier + 1, -_INF, -_INF))
        return self._items[idx].transmits if idx < len(self._items) else None

    def _insert(self, entry: QueuedBroadcast) -> None:
        order = _order(entry)
        idx = bisect.bisect_right(self._keys, order)
        self._keys.insert(idx, order)
        self._items.insert(idx, entry)
        if entry.key is not None:
            self._by_key[entry.key] = entry

    def _remove(self, entry: QueuedBroadcast) -> None:
        idx = bisect.bisect_left(self._keys, _order(entry))
        assert self._items[idx] is entry, "broadcast queue order corrupted"
        self._pop(idx)

    def _pop(self, idx: int) -> QueuedBroadcast:
        del self._keys[idx]
        entry = self._items.pop(idx)
        self._forget_key(entry)
        return entry

    def _forget_key(self, entry: QueuedBroadcast) -> None:
        if entry.key is not None and self._by_key.get(entry.key) is entry:
            del self._by_key[entry.key]


def _finish(entry: QueuedBroadcast) -> None:
    """Notify the owner once the queue no longer holds the broadcast (state is consistent by then)."""
    if entry.on_finished is not None:
        entry.on_finished()
