"""The member table: one immutable snapshot of the gossip pool, swapped atomically on every change.

Why this shape (DESIGN.md, "Data flow"): each part of the snapshot has one writer, all on the trio thread (the
member feed writes members, the leader and the server list; the catalog runner the replicated records,
``apply_catalog``; the servers' mirror the registered nodes, ``set_registered``); DNS, HTTP, blocking queries and
websocket streams are readers.  A reader takes ``table.current`` (one attribute read) and gets a consistent
:class:`Snapshot` it may keep as long as it likes: an update never mutates it, it builds a new one
(``immutables.Map.set`` shares structure, O(log n)) and swaps the reference.  Nobody locks.

Every update bumps ``Snapshot.index`` by one.  Blocking catalog and health reads do not follow that index: each
snapshot carries the catalog's index table (``Snapshot.indexes``, `agent.catalog.indexes`: the last change to
each node, each node's services and checks, each service name, and the whole tables), each update notifies the
table's `agent.watch.WatchHub` of the ``(table, key)`` pairs it wrote, and a read parks in
:meth:`MemberTable.wait_read` on its own interests, so a change to service ``db`` wakes no reader of ``web``.
Readers of everything (the member stream) use :meth:`MemberTable.wait_past`; a
stream resumes with :meth:`MemberTable.changes_since` from the bounded history (ordered by index, so a reader
near the head pays only for what it has not seen).

Besides the catalog's tables (`agent.catalog.indexes`), updates write ``members``/name (every member event) and
``leader``/"" (the leader or the server list changed).

Rules:

- a snapshot, a member and a change are frozen; ``tags`` and ``members`` are ``immutables.Map``;
- ``apply`` keeps ``create_index`` from a member's first sighting and sets ``modify_index`` to the new index;
- ``member-reap`` removes the member (a reap of an unknown member changes nothing and bumps nothing);
- ``set_status`` (a status Serf changes without an event: leaving on a leave intent, alive on its refutation)
  adds no history entry either;
- ``set_leader`` bumps the index only when the leader or the server list really changes, and adds no history
  entry (the history holds member events only: a stream sees leader changes by comparing snapshots);
  ``apply_catalog`` and ``set_registered`` (the two catalog sources) likewise;
- the initial snapshot has index 0 and no members.  (Consul never sends ``X-Consul-Index: 0``; that clamp is
  the HTTP layer's business, not the table's.)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import attrs
import immutables
import trio

from agent.catalog.indexes import EMPTY, CatalogIndexes, advance
from agent.watch import Interest, WatchHub
from protocol.serf import MemberStatus

__all__ = [
    "KINDS",
    "STATUS_ALIVE",
    "STATUS_FAILED",
    "STATUS_LEAVING",
    "STATUS_LEFT",
    "STATUS_NONE",
    "Change",
    "Member",
    "MemberTable",
    "MemberTableStatistics",
    "Snapshot",
]

# Serf's MemberStatus values (defined once, in protocol.serf), as /v1/agent/members shows them (an integer,
# consul-compat §1.1).
STATUS_NONE = int(MemberStatus.NONE)
STATUS_ALIVE = int(MemberStatus.ALIVE)
STATUS_LEAVING = int(MemberStatus.LEAVING)
STATUS_LEFT = int(MemberStatus.LEFT)
STATUS_FAILED = int(MemberStatus.FAILED)

#: The event kinds ``apply`` accepts (Serf's member event names).
KINDS = frozenset({"member-join", "member-update", "member-leave", "member-failed", "member-reap"})

_EMPTY_TAGS: immutables.Map[str, str] = immutables.Map()


def _as_map(value: Mapping[str, str]) -> immutables.Map[str, str]:
    """Accept any mapping for ``tags`` but store an immutable one, so a caller's dict can't change a snapshot."""
    if isinstance(value, immutables.Map):
        return value
    return immutables.Map(value)


@attrs.frozen
class Member:
    """One Serf member, as ``/v1/agent/members`` shows it (consul-compat §1.1).

    The protocol/delegate ranges are the same for every modern agent, hence the defaults.  ``create_index`` and
    ``modify_index`` belong to the table: whatever the caller passes is overwritten by ``apply``.
    """

    name: str
    addr: str
    port: int
    tags: immutables.Map[str, str] = attrs.field(converter=_as_map, default=_EMPTY_TAGS)
    status: int = STATUS_ALIVE
    protocol_min: int = 1
    protocol_max: int = 5
    protocol_cur: int = 2
    delegate_min: int = 2
    delegate_max: int = 5
    delegate_cur: int = 4
    create_index: int = 0
    modify_index: int = 0


@attrs.frozen
class Change:
    """One entry of the history: what ``apply`` was told, with the member as stored (indexes set)."""

    index: int
    kind: str
    member: Member


@attrs.frozen
class Snapshot:
    """The whole table at one index.  Never mutated: keep it as long as you like."""

    index: int
    members: immutables.Map[str, Member]
    leader: str = ""
    servers: tuple[str, ...] = ()
    #: The replicated service catalog (agent/catalog): node name -> that node's indexed record.  Opaque here;
    #: agent.catalog.query reads it.  Changes to it advance the same index as membership changes.
    catalog: immutables.Map[str, Any] = attrs.field(factory=immutables.Map)
    #: The nodes registered through /v1/catalog/register, as the servers' store last answered
    #: (agent.catalog.registered.Registered; None until the mirror's first answer).  Opaque here too.
    registered: Any = None
    #: The catalog's index table at this snapshot (agent.catalog.indexes): what blocking reads answer with.
    indexes: CatalogIndexes = EMPTY

    def get(self, name: str) -> Member | None:
        """The member called ``name``, or None."""
        return self.members.get(name)

    def sorted_members(self) -> list[Member]:
        """Members by name: a stable order for HTTP and the CLI (serf's own order is not meaningful)."""
        return [self.members[name] for name in sorted(self.members.keys())]


@attrs.frozen
class MemberTableStatistics:
    """What ``MemberTable.statistics()`` reports (trio style: a plain record, cheap to build)."""

    index: int
    members: int
    waiters: int
    history: int
    history_limit: int
    history_floor: int  # changes_since(i) answers for every i >= history_floor


class IndexedRead(Protocol):
    """What `MemberTable.wait_read` needs of a read's answer (agent.catalog.indexes.ReadIndex)."""

    @property
    def index(self) -> int: ...

    @property
    def interests(self) -> tuple[Interest, ...]: ...


#: The interest of readers that wait for a leader (or a server list) change.
LEADER = Interest("leader")


class MemberTable:
    """The writers' handle on the snapshot (one writer per part, see the module doc); readers use ``current`` and
    the wait/history methods.

    Call ``apply``/``set_leader`` from the trio thread (or before ``trio.run``): they set a ``trio.Event``.
    """

    def __init__(self, history_limit: int = 4096, *, datacenter: str | None = None) -> None:
        if history_limit < 0:
            raise ValueError(f"history_limit must be >= 0, not {history_limit}")
        self.current: Snapshot = Snapshot(index=0, members=immutables.Map())
        self._history: deque[Change] = deque(maxlen=history_limit)
        # Every change with index > _floor is still in _history (we only drop from the old end).
        self._floor = 0
        # Swapped for a fresh Event on every update: setting the old one wakes every parked waiter at once.
        self._changed = trio.Event()
        #: The catalog's DC: members of another one are not catalog nodes (None: any).
        self.datacenter = datacenter
        #: Blocking reads' waiters, by what they read (``wait_read``/``wait_for``).
        self.hub = WatchHub()

    # ------------------------------------------------------------------ writing (each part by its one writer)

    def apply(self, kind: str, member: Member) -> Snapshot:
        """Record one member event: a new snapshot with index + 1, a history entry, and every waiter woken."""
        if kind not in KINDS:
            raise ValueError(f"unknown member event kind {kind!r} (expected one of {sorted(KINDS)})")
        old = self.current
        previous = old.members.get(member.name)
        if kind == "member-reap" and previous is None:
            return old
        index = old.index + 1
        create_index = previous.create_index if previous is not None else index
        stored = attrs.evolve(member, create_index=create_index, modify_index=index)
        reaped = kind == "member-reap"
        members = old.members.delete(member.name) if reaped else old.members.set(member.name, stored)
        self._remember(Change(index=index, kind=kind, member=stored))
        return self._publish(attrs.evolve(old, index=index, members=members), {member.name.lower(): {member.name}},
                             {("members", member.name)})  # fmt: skip

    def set_status(self, name: str, status: int) -> Snapshot:
        """A status changed without a Serf event (a leave intent makes an alive member leaving; its refutation makes
        it alive again): a new snapshot, readers woken, but no history entry, which holds Serf's events only."""
        old = self.current
        previous = old.members.get(name)
        if previous is None or previous.status == status:
            return old
        index = old.index + 1
        stored = attrs.evolve(previous, status=status, modify_index=index)
        return self._publish(attrs.evolve(old, index=index, members=old.members.set(name, stored)),
                             {name.lower(): {name}}, {("members", name)})  # fmt: skip

    def set_leader(self, leader: str, servers: Sequence[str]) -> Snapshot:
        """Publish the (computed) leader and server list; the index moves only when something changed."""
        old = self.current
        servers = tuple(servers)
        if leader == old.leader and servers == old.servers:
            return old
        return self._publish(attrs.evolve(old, index=old.index + 1, leader=leader, servers=servers), {},
                             {(LEADER.table, "")})  # fmt: skip

    def apply_catalog(
        self,
        update: Callable[[immutables.Map[str, Any], int], immutables.Map[str, Any]],
        nodes: Iterable[str] | None = None,
    ) -> Snapshot:
        """Publish a catalog change: ``update(catalog, new_index)`` returns the new catalog map.

        The index moves (and waiters wake) only when the map returned is not the one passed in, so an update
        that changes nothing costs nothing.  No history entry: the history holds member events only.
        ``nodes``: the records the update may change (None: compare the two maps whole to find them).
        """
        old = self.current
        index = old.index + 1
        catalog = update(old.catalog, index)
        if catalog is old.catalog:
            return old
        if nodes is None:
            nodes = [n for n in {*old.catalog.keys(), *catalog.keys()} if old.catalog.get(n) is not catalog.get(n)]
        touched: dict[str, set[str]] = {}
        for name in nodes:
            touched.setdefault(name.lower(), set()).add(name)
        return self._publish(attrs.evolve(old, index=index, catalog=catalog), touched)

    def set_registered(self, registered: Any) -> Snapshot:
        """Publish the registered nodes (the mirror's answer); the index moves only when they differ."""
        old = self.current
        if registered == old.registered:
            return old
        before = old.registered.nodes if old.registered is not None else immutables.Map()
        after = registered.nodes if registered is not None else immutables.Map()
        touched: dict[str, set[str]] = {}
        for key in {*before.keys(), *after.keys()}:
            was, now = before.get(key), after.get(key)
            if was is not now and was != now:
                touched[key] = {key, *(n.node for n in (was, now) if n is not None)}
        return self._publish(attrs.evolve(old, index=old.index + 1, registered=registered), touched)

    def _remember(self, change: Change) -> None:
        history = self._history
        if history.maxlen == 0:
            self._floor = change.index
            return
        if len(history) == history.maxlen:
            self._floor = history[0].index
        history.append(change)

    def _publish(self, snapshot: Snapshot, touched: Mapping[str, Iterable[str]],
                 written: set[tuple[str, str]] | None = None) -> Snapshot:  # fmt: skip
        """Swap in ``snapshot`` with its index table advanced over the ``touched`` node keys (key -> the exact
        names an agent node under it may have), then wake the readers of what was written, and wait_past's."""
        indexes, changes = advance(snapshot.indexes, snapshot, touched, snapshot.index, self.datacenter)
        if indexes is not snapshot.indexes:
            snapshot = attrs.evolve(snapshot, indexes=indexes)
        self.current = snapshot
        if written:
            changes |= written
        self.hub.notify(changes)
        changed, self._changed = self._changed, trio.Event()
        changed.set()
        return snapshot

    # ------------------------------------------------------------------ reading

    def changes_since(self, index: int) -> list[Change] | None:
        """The changes with an index above ``index``, oldest first; None if some of them were already dropped.

        Walks from the new end, so a subscriber that is nearly up to date pays only for what it has not seen.
        None means "resynchronise from ``current``": the caller is older than the bounded history.
        """
        if index < self._floor:
            return None
        out: list[Change] = []
        for change in reversed(self._history):
            if change.index <= index:
                break
            out.append(change)
        out.reverse()
        return out

    async def wait_past(self, index: int) -> Snapshot:
        """Wait until ``current.index > index`` and return that snapshot (bound it with ``trio.move_on_after``).

        An ``index`` ahead of the table waits until the table gets there (Consul's blocking queries do the same).
        """
        while True:
            snapshot = self.current
            if snapshot.index > index:
                await trio.lowlevel.checkpoint()
                # The checkpoint may have let more updates in: hand back the newest.
                return self.current
            await self._changed.wait()
            # Woken: the loop re-reads current (it is past the old index, but re-check rather than assume).
            if self.current.index > index:
                return self.current

    async def wait_for(self, interests: Iterable[Interest]) -> None:
        """Wait until an update writes one of ``interests`` (``LEADER`` for the leader; the catalog's in
        agent.catalog.indexes).  A change before the call is not seen: read, then wait, with no checkpoint
        between (or use ``wait_read``)."""
        event = trio.Event()
        waiter = self.hub.register(interests, event.set)
        try:
            await event.wait()
        finally:
            waiter.cancel()

    async def wait_read(self, read: Callable[[Snapshot], IndexedRead], index: int) -> Snapshot:
        """Wait until ``read(current).index > index`` and return that snapshot; woken only by updates that write
        one of the read's interests (bound it with ``trio.move_on_after``).  An ``index`` ahead of the read's
        waits until the read gets there, as ``wait_past``."""
        while True:
            snapshot = self.current
            answer = read(snapshot)
            if answer.index > index:
                return snapshot
            await self.wait_for(answer.interests)

    async def wait_changes(self, index: int) -> tuple[Snapshot, list[Change] | None]:
        """For streams: wait past ``index``, then the snapshot and the changes up to it, read together.

        No checkpoint falls between the two reads, so the changes end exactly at ``snapshot.index`` (or at the
        last member event before it, if the leader moved since).  None: resynchronise from the snapshot.
        """
        await self.wait_past(index)
        snapshot = self.current
        return snapshot, self.changes_since(index)

    def statistics(self) -> MemberTableStatistics:
        """Index, member count, parked waiters and history size: for /v1/agent/self and debugging."""
        snapshot = self.current
        return MemberTableStatistics(
            index=snapshot.index,
            members=len(snapshot.members),
            waiters=self._changed.statistics().tasks_waiting + self.hub.waiting(),
            history=len(self._history),
            history_limit=self._history.maxlen or 0,
            history_floor=self._floor,
        )
