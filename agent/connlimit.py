"""Connection caps that favour active clients (the HTTP API and DNS over TCP share them).

A server asks for a slot when it accepts a connection.  Under the caps it gets one.  At the global cap, or at
the client's own cap (Consul's ``limits.http_max_conns_per_client``), the connection that has waited longest for
its next request is evicted to make room: an idle keep-alive connection, a client that connected and said
nothing, a slowloris still trickling its request.  Only when every slot holds a request in progress (a parked
blocking query, a websocket stream, a query being answered) is the newcomer refused.  So idle and slow
connections can never shut out a client that has something to ask; a flood of them only evicts itself.

A connection marks the stretch where it waits for a request with ``idle(slot, scope)``: eviction cancels that
scope and sets ``slot.evicted``, and the slot is free at once (the evicted task closes on its own a moment later).
"""

from __future__ import annotations

import errno
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import attrs
import trio

__all__ = ["ACCEPT_CAPACITY_ERRNOS", "ConnectionSlots", "Slot", "SlotStatistics"]

#: Errors from accept() that mean "out of resources, try again shortly" (as trio.serve_listeners): a listener
#: backs off on these rather than spin or die.
ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})


@attrs.define(eq=False)
class Slot:
    """One admitted connection.  ``evicted`` says why its idle wait was cancelled."""

    client: str
    evicted: bool = False
    released: bool = False
    scope: trio.CancelScope | None = None


@attrs.frozen
class SlotStatistics:
    open: int
    idle: int
    evicted: int  # idle connections closed to make room, since start
    refused: int  # newcomers refused because every slot was busy, since start


class ConnectionSlots:
    """The open connections of one server, with the idle ones in the order they became idle (oldest first)."""

    def __init__(self, max_total: int, max_per_client: int = 0) -> None:
        self.max_total = max_total
        self.max_per_client = max_per_client  # 0: no per-client cap (as Consul's connlimit)
        self.open = 0
        self.per_client: Counter[str] = Counter()
        self._idle: dict[Slot, None] = {}
        self._idle_by_client: dict[str, dict[Slot, None]] = {}
        self._evicted = 0
        self._refused = 0

    def statistics(self) -> SlotStatistics:
        return SlotStatistics(open=self.open, idle=len(self._idle), evicted=self._evicted, refused=self._refused)

    def admit(self, client: str) -> Slot | None:
        """A slot for a new connection from ``client`` (an IP), evicting an idle one if needed; None: refuse."""
        at_own_cap = 0 < self.max_per_client <= self.per_client[client]
        if (at_own_cap and not self._evict_oldest(self._idle_by_client.get(client, {}))) or (
            self.open >= self.max_total and not self._evict_oldest(self._idle)
        ):
            self._refused += 1
            return None
        self.open += 1
        self.per_client[client] += 1
        return Slot(client)

    def release(self, slot: Slot) -> None:
        """The connection is closed (idempotent: an evicted slot was released when it was evicted)."""
        self.working(slot)
        if slot.released:
            return
        slot.released = True
        self.open -= 1
        self.per_client[slot.client] -= 1
        if self.per_client[slot.client] <= 0:
            del self.per_client[slot.client]

    @contextmanager
    def idle(self, slot: Slot, scope: trio.CancelScope) -> Iterator[None]:
        """While inside, ``slot`` waits for a request and may be evicted (``scope`` is cancelled)."""
        self.waiting(slot, scope)
        try:
            yield
        finally:
            self.working(slot)

    def waiting(self, slot: Slot, scope: trio.CancelScope) -> None:
        """From now on ``slot`` waits for a request and may be evicted (``scope`` is cancelled): ``idle`` without
        a context manager, for a connection that marks it once per request."""
        slot.scope = scope
        self._idle[slot] = None
        self._idle_by_client.setdefault(slot.client, {})[slot] = None

    def working(self, slot: Slot) -> None:
        """``slot`` has a request in progress again (idempotent)."""
        slot.scope = None
        if slot not in self._idle:
            return
        del self._idle[slot]
        mine = self._idle_by_client[slot.client]
        del mine[slot]
        if not mine:
            del self._idle_by_client[slot.client]

    def _evict_oldest(self, idle: dict[Slot, None]) -> bool:
        if not idle:
            return False
        victim = next(iter(idle))
        scope = victim.scope
        victim.evicted = True
        self.release(victim)
        self._evicted += 1
        if scope is not None:
            scope.cancel()
        return True
