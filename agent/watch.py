"""Who waits on what: blocking queries are woken only by writes to what they read (trio-free).

Shared by both sides of a blocking query: the servers' state store (`agent.server.state`) and the agent's member
table (`agent.members`, whose catalog reads name their interests in `agent.catalog.indexes`).  It lives here, below
both, so that neither imports the other.

A read (`agent.server.state.reads`) names its `Interest`s: a table and an exact key (``kvs``/``a/b``), a table
and a key prefix (``kvs``/``a/``, prefix=True), or a whole table (key None).  Each apply reports the
``(table, key)`` pairs it wrote (`agent.server.state.tables.Tx.changes`); `WatchHub.notify` fires exactly the
waiters whose interests match, each once.  Consul does the same with memdb watch channels (a write to
``web/x`` does not wake a reader of ``db/``).

The hub only calls callbacks: `agent.server.state.wait.wait_past` and `agent.members.MemberTable.wait_for` are the
thin trio layers (a ``trio.Event`` per waiter).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import attrs

__all__ = ["Interest", "Waiter", "WatchHub"]


@attrs.frozen
class Interest:
    table: str
    key: str | None = None
    prefix: bool = False

    def matches(self, table: str, key: str) -> bool:
        if table != self.table:
            return False
        if self.key is None:
            return True
        return key.startswith(self.key) if self.prefix else key == self.key


class Waiter:
    """One registration: ``fire`` is called at most once, on the first matching change; `cancel` to leave."""

    __slots__ = ("_hub", "fire", "fired", "interests")

    def __init__(self, hub: WatchHub, interests: tuple[Interest, ...], fire: Callable[[], None]) -> None:
        self._hub = hub
        self.interests = interests
        self.fire = fire
        self.fired = False

    def cancel(self) -> None:
        self._hub._remove(self)


class WatchHub:
    """Waiters indexed by exact key, by table, and by prefix: a notify costs the changes times the matching
    buckets, plus a scan of the (few) distinct prefixes of the tables written."""

    def __init__(self) -> None:
        self._exact: dict[tuple[str, str], set[Waiter]] = {}
        self._table: dict[str, set[Waiter]] = {}
        self._prefix: dict[str, dict[str, set[Waiter]]] = {}

    def register(self, interests: Iterable[Interest], fire: Callable[[], None]) -> Waiter:
        waiter = Waiter(self, tuple(interests), fire)
        for i in waiter.interests:
            if i.key is None:
                self._table.setdefault(i.table, set()).add(waiter)
            elif i.prefix:
                self._prefix.setdefault(i.table, {}).setdefault(i.key, set()).add(waiter)
            else:
                self._exact.setdefault((i.table, i.key), set()).add(waiter)
        return waiter

    def _remove(self, waiter: Waiter) -> None:
        for i in waiter.interests:
            if i.key is None:
                bucket = self._table.get(i.table)
                if bucket is not None:
                    bucket.discard(waiter)
                    if not bucket:
                        del self._table[i.table]
            elif i.prefix:
                prefixes = self._prefix.get(i.table, {})
                bucket = prefixes.get(i.key)
                if bucket is not None:
                    bucket.discard(waiter)
                    if not bucket:
                        del prefixes[i.key]
                    if not prefixes:
                        self._prefix.pop(i.table, None)
            else:
                bucket = self._exact.get((i.table, i.key))
                if bucket is not None:
                    bucket.discard(waiter)
                    if not bucket:
                        del self._exact[(i.table, i.key)]

    def notify(self, changes: Iterable[tuple[str, str]]) -> int:
        """Fire every waiter interested in one of ``changes``; returns how many fired."""
        woken: list[Waiter] = []
        for table, key in changes:
            for bucket in (self._exact.get((table, key)), self._table.get(table)):
                if bucket:
                    woken.extend(bucket)
            for prefix, bucket in self._prefix.get(table, {}).items():
                if key.startswith(prefix):
                    woken.extend(bucket)
        return self._fire(woken)

    def wake_all(self) -> int:
        """Fire every waiter (a snapshot was restored: any answer may have changed)."""
        everyone: list[Waiter] = [w for bucket in (*self._exact.values(), *self._table.values()) for w in bucket]
        for prefixes in self._prefix.values():
            for bucket in prefixes.values():
                everyone.extend(bucket)
        return self._fire(everyone)

    def _fire(self, waiters: list[Waiter]) -> int:
        """Fire each waiter once (one may sit in several buckets) and unregister it; how many fired."""
        fired = 0
        for waiter in waiters:
            if not waiter.fired:
                waiter.fired = True
                self._remove(waiter)
                waiter.fire()
                fired += 1
        return fired

    def waiting(self) -> int:
        """Registered waiters (for statistics and tests)."""
        seen: set[Waiter] = set()
        for bucket in (*self._exact.values(), *self._table.values()):
            seen.update(bucket)
        for prefixes in self._prefix.values():
            for bucket in prefixes.values():
                seen.update(bucket)
        return len(seen)
