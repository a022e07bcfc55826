"""Membership: single-server changes, in force from the moment their entry is in the log (hashicorp/raft and
the thesis §4.1), one at a time; a change is offered only after the previous one is applied, and only once
the leader has committed an entry of its own term.

Because a change is in force while still uncommitted, a follower whose log loses a conflicting suffix must
fall back to the configuration before it: `ConfHistory` remembers every change after the applied index.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .errors import ConfChangeRejected
from .types import (
    ConfChange,
    ConfChangeKind,
    ConfState,
    Entry,
    EntryKind,
    HardState,
    Server,
    Snapshot,
    Suffrage,
    conf_change_from_bytes,
    conf_change_to_bytes,
)


def apply_change(conf: ConfState, cc: ConfChange) -> ConfState:
    """The configuration after `cc` (total: a change that was validated by a leader applies the same everywhere;
    re-adding a server updates its address and suffrage, removing an absent one changes nothing)."""
    others = tuple(s for s in conf.servers if s.id != cc.server_id)
    if cc.kind is ConfChangeKind.REMOVE_SERVER:
        return ConfState(others)
    old = conf.get(cc.server_id)
    address = cc.address or (old.address if old else "")
    suffrage = Suffrage.VOTER if cc.kind is ConfChangeKind.ADD_VOTER else Suffrage.NONVOTER
    return ConfState((*others, Server(cc.server_id, address, suffrage)))


def validate_change(conf: ConfState, cc: ConfChange) -> None:
    """Raise ConfChangeRejected for a change that is meaningless or would leave no voter."""
    current = conf.get(cc.server_id)
    if not cc.server_id:
        raise ConfChangeRejected("conf change: empty server id")
    if cc.kind is ConfChangeKind.REMOVE_SERVER:
        if current is None:
            raise ConfChangeRejected(f"conf change: {cc.server_id!r} is not in the configuration")
        if conf.voters() == {cc.server_id}:
            raise ConfChangeRejected(f"conf change: removing {cc.server_id!r} would leave no voter")
        return
    wanted = Suffrage.VOTER if cc.kind is ConfChangeKind.ADD_VOTER else Suffrage.NONVOTER
    if current is not None and current.suffrage is wanted and (not cc.address or cc.address == current.address):
        raise ConfChangeRejected(f"conf change: {cc.server_id!r} is already a {wanted.name.lower()}")
    if wanted is Suffrage.NONVOTER and conf.voters() == {cc.server_id}:
        raise ConfChangeRejected(f"conf change: demoting {cc.server_id!r} would leave no voter")


def conf_after(base: ConfState, entries: Iterable[Entry]) -> ConfState:
    for e in entries:
        if e.kind is EntryKind.CONF_CHANGE:
            base = apply_change(base, conf_change_from_bytes(e.data))
    return base


def conf_at_end(snapshot: Snapshot, entries_after_snapshot: Iterable[Entry]) -> ConfState:
    """The rule for Storage.initial_state(): the snapshot's configuration, then every change after it."""
    return conf_after(snapshot.meta.conf, (e for e in entries_after_snapshot if e.index > snapshot.meta.index))


def bootstrap(servers: Sequence[Server]) -> tuple[list[Entry], HardState]:
    """A new cluster's first entries (one ADD per server, sorted by id, term 1, committed) and hard state:
    every server bootstrapped with the same list writes the same log, as Consul's bootstrap_expect needs."""
    ordered = sorted(servers, key=lambda s: s.id)
    entries = []
    for n, s in enumerate(ordered, start=1):
        kind = ConfChangeKind.ADD_VOTER if s.suffrage is Suffrage.VOTER else ConfChangeKind.ADD_NONVOTER
        entries.append(Entry(n, 1, EntryKind.CONF_CHANGE, conf_change_to_bytes(ConfChange(kind, s.id, s.address))))
    return entries, HardState(term=1, vote="", commit=len(entries))


class ConfHistory:
    """The configuration in force at each index from the applied one on: (index of the change, result)."""

    def __init__(self, index: int, conf: ConfState) -> None:
        self._items: list[tuple[int, ConfState]] = [(index, conf)]

    @property
    def current(self) -> ConfState:
        return self._items[-1][1]

    @property
    def latest_index(self) -> int:
        return self._items[-1][0]

    def add(self, entries: Iterable[Entry]) -> bool:
        changed = False
        for e in entries:
            if e.kind is EntryKind.CONF_CHANGE:
                self._items.append((e.index, apply_change(self.current, conf_change_from_bytes(e.data))))
                changed = True
        return changed

    def truncate_from(self, index: int) -> bool:
        """Forget changes at index and after (their entries were cut); True if the configuration changed."""
        keep = [item for item in self._items if item[0] < index] or self._items[:1]
        changed = len(keep) != len(self._items)
        self._items = keep
        return changed

    def at(self, index: int) -> ConfState:
        for idx, conf in reversed(self._items):
            if idx <= index:
                return conf
        return self._items[0][1]

    def compact(self, applied: int) -> None:
        while len(self._items) > 1 and self._items[1][0] <= applied:
            self._items.pop(0)

    def reset(self, index: int, conf: ConfState) -> None:
        self._items = [(index, conf)]
