"""The records and the versioned snapshot of the servers' state, and `Tx`, one apply's working copy.

Consul keeps these tables in go-memdb with an ``index`` table holding, per table, the Raft index of its last
write (hashicorp/consul ``agent/consul/state/schema.go``, ``kvs.go``, ``session.go``, ``catalog.go``).  Here a
`State` is frozen: its tables are ``immutables.Map``s, and an apply builds a new `State` through a `Tx` (each
``set``/``delete`` shares structure, O(log n)); the old one is never touched, so a reader that took ``current``
keeps a consistent view for as long as it likes and a failed transaction is simply dropped.

Keys: a KV key as given; nodes by lower-cased name (Consul's node index is case-insensitive); services and
checks by ``(node lower-cased, id)``; session checks by ``(node lower-cased, check id lower-cased)`` as
Consul's ``session_checks`` compound index (``session.go``).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import Any

import attrs
import immutables

from agent.catalog.record import CheckRecord, ServiceRecord
from agent.catalog.registered import CatalogNode

__all__ = [
    "ACLPolicy",
    "ACLRole",
    "ACLToken",
    "CatalogCheck",
    "CatalogNode",
    "CatalogService",
    "KVEntry",
    "Session",
    "State",
    "Tx",
    "node_key",
]

BEHAVIOR_RELEASE = "release"
BEHAVIOR_DELETE = "delete"


def node_key(name: str) -> str:
    """Consul's node lookups ignore case (``nodes``' id index is lower-cased)."""
    return name.lower()


def _strs(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


@attrs.frozen
class KVEntry:
    """Consul's ``DirEntry``: a value of ``b""`` is Consul's nil (JSON ``null``)."""

    key: str
    value: bytes = b""
    flags: int = 0
    lock_index: int = 0
    session: str = ""
    create_index: int = 0
    modify_index: int = 0

    def same_content(self, other: KVEntry) -> bool:
        """Consul's ``DirEntry.Equal``: what a set compares to skip a write that changes nothing."""
        return (
            self.lock_index == other.lock_index
            and self.key == other.key
            and self.flags == other.flags
            and self.value == other.value
            and self.session == other.session
        )


@attrs.frozen
class Session:
    """Consul's ``structs.Session``; ``lock_delay`` in nanoseconds, ``ttl`` the string given ("" for none)."""

    id: str
    node: str
    name: str = ""
    lock_delay: int = 0
    behavior: str = BEHAVIOR_RELEASE
    ttl: str = ""
    node_checks: tuple[str, ...] = attrs.field(default=(), converter=_strs)
    #: (check id, namespace) pairs: Consul's ``ServiceCheck``.
    service_checks: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=lambda v: tuple(map(tuple, v)))
    #: The deprecated ``Checks`` field (node checks too), shown only when set.
    checks: tuple[str, ...] = attrs.field(default=(), converter=_strs)
    create_index: int = 0
    modify_index: int = 0

    def check_ids(self) -> tuple[str, ...]:
        """Every check the session is bound to (Consul's ``Session.CheckIDs``: Checks, NodeChecks, ServiceChecks)."""
        seen: dict[str, None] = {}
        for check in (*self.checks, *self.node_checks, *(c[0] for c in self.service_checks)):
            seen.setdefault(check, None)
        return tuple(seen)


@attrs.frozen
class CatalogService:
    node: str
    service: ServiceRecord
    create_index: int = 0
    modify_index: int = 0


@attrs.frozen
class CatalogCheck:
    node: str
    check: CheckRecord
    create_index: int = 0
    modify_index: int = 0


#: A service identity: (service name, datacenters); a node identity: (node name, datacenter).
ServiceIdentity = tuple[str, tuple[str, ...]]
NodeIdentity = tuple[str, str]


def _service_identities(value: Iterable[Any]) -> tuple[ServiceIdentity, ...]:
    return tuple((str(name), tuple(dcs)) for name, dcs in value)


def _pairs(value: Iterable[Any]) -> tuple[tuple[str, str], ...]:
    return tuple((str(a), str(b)) for a, b in value)


@attrs.frozen
class ACLToken:
    """Consul's ``structs.ACLToken``.  Policy and role links are kept by ID only (names are looked up when the
    token is shown, so a renamed policy shows its new name; a deleted one is left out).  Times are ns since the
    epoch, the leader's clock; ``expiration_time`` 0 is none."""

    accessor_id: str
    secret_id: str
    description: str = ""
    policies: tuple[str, ...] = attrs.field(default=(), converter=_strs)
    roles: tuple[str, ...] = attrs.field(default=(), converter=_strs)
    service_identities: tuple[ServiceIdentity, ...] = attrs.field(default=(), converter=_service_identities)
    node_identities: tuple[NodeIdentity, ...] = attrs.field(default=(), converter=_pairs)
    local: bool = False
    expiration_time: int = 0
    create_time: int = 0
    hash: bytes = b""
    create_index: int = 0
    modify_index: int = 0


@attrs.frozen
class ACLPolicy:
    """Consul's ``structs.ACLPolicy``: ``rules`` is the rule text as given (parsed when a token is resolved)."""

    id: str
    name: str
    description: str = ""
    rules: str = ""
    datacenters: tuple[str, ...] = attrs.field(default=(), converter=_strs)
    hash: bytes = b""
    create_index: int = 0
    modify_index: int = 0


@attrs.frozen
class ACLRole:
    """Consul's ``structs.ACLRole``: policies (by ID) and identities a token gets by linking the role."""

    id: str
    name: str
    description: str = ""
    policies: tuple[str, ...] = attrs.field(default=(), converter=_strs)
    service_identities: tuple[ServiceIdentity, ...] = attrs.field(default=(), converter=_service_identities)
    node_identities: tuple[NodeIdentity, ...] = attrs.field(default=(), converter=_pairs)
    hash: bytes = b""
    create_index: int = 0
    modify_index: int = 0


_EMPTY: immutables.Map[Any, Any] = immutables.Map()


@attrs.frozen
class State:
    """Every table at one applied Raft index.  Never mutated."""

    kvs: immutables.Map[str, KVEntry] = _EMPTY
    #: Consul's graveyard: deleted key (or deleted prefix) -> the index of the delete.
    tombstones: immutables.Map[str, int] = _EMPTY
    sessions: immutables.Map[str, Session] = _EMPTY
    #: (node, check id), both lower-cased -> the sessions bound to that check, sorted.
    session_checks: immutables.Map[tuple[str, str], tuple[str, ...]] = _EMPTY
    nodes: immutables.Map[str, CatalogNode] = _EMPTY
    services: immutables.Map[tuple[str, str], CatalogService] = _EMPTY
    checks: immutables.Map[tuple[str, str], CatalogCheck] = _EMPTY
    #: table name -> Raft index of its last write (Consul's ``index`` table).
    indexes: immutables.Map[str, int] = _EMPTY
    #: key -> lock-delay expiry (ns, leader time): Consul's ``lockDelay`` (``delay.go``), kept replicated here.
    lock_delays: immutables.Map[str, int] = _EMPTY
    #: accessor ID -> token; policy ID -> policy; role ID -> role (Consul's ``acl-tokens``, ``acl-policies``,
    #: ``acl-roles``).  The bootstrap marker is Consul's too: ``indexes["acl-token-bootstrap"]``.
    acl_tokens: immutables.Map[str, ACLToken] = _EMPTY
    acl_policies: immutables.Map[str, ACLPolicy] = _EMPTY
    acl_roles: immutables.Map[str, ACLRole] = _EMPTY
    #: The last Raft index applied (0: nothing yet).
    applied: int = 0
    #: Every key of ``kvs``, sorted: a prefix read is a bisect, not a scan (derived; kept by `Tx`, rebuilt on
    #: restore).
    kv_keys: tuple[str, ...] = ()
    #: session ID -> the keys it holds (Consul's kvs ``session`` index; derived like ``kv_keys``).
    held: immutables.Map[str, frozenset[str]] = _EMPTY
    #: secret ID -> accessor ID (Consul's ``acl-tokens`` ``id`` index; derived like ``kv_keys``).
    acl_secrets: immutables.Map[str, str] = _EMPTY

    def table_index(self, *tables: str) -> int:
        """Consul's ``maxIndexTxn``: the highest index among ``tables``."""
        return max((self.indexes.get(t, 0) for t in tables), default=0)


class Tx:
    """One apply's working copy of a `State`: table writes, the changes made (for watchers), then `commit`.

    ``index`` is the Raft index being applied (every write stamps it), ``now`` the leader's clock in ns stamped
    into the entry (lock-delay).  Dropping a `Tx` without `commit` is a rollback.
    """

    def __init__(self, state: State, index: int, now: int) -> None:
        self.base = state
        self.index = index
        self.now = now
        self.kvs = state.kvs
        self.tombstones = state.tombstones
        self.sessions = state.sessions
        self.session_checks = state.session_checks
        self.nodes = state.nodes
        self.services = state.services
        self.checks = state.checks
        self.lock_delays = state.lock_delays
        self.held = state.held
        self.acl_tokens = state.acl_tokens
        self.acl_secrets = state.acl_secrets
        self.acl_policies = state.acl_policies
        self.acl_roles = state.acl_roles
        self._indexes = dict(state.indexes.items())
        self._kv_added: set[str] = set()
        self._kv_removed: set[str] = set()
        #: (table, key) pairs written: what `watch.WatchHub.notify` wakes.
        self.changes: set[tuple[str, str]] = set()

    def create_index(self, existing: Any) -> int:
        """A row's CreateIndex as Consul keeps it: the row it replaces keeps its own; a new one gets this index."""
        return self.index if existing is None else existing.create_index

    def put_kv(self, entry: KVEntry) -> None:
        old = self.kvs.get(entry.key)
        if old is None:
            self._kv_added.add(entry.key)
            self._kv_removed.discard(entry.key)
        old_session = old.session if old is not None else ""
        if old_session != entry.session:
            self._unhold(old_session, entry.key)
            self._hold(entry.session, entry.key)
        self.kvs = self.kvs.set(entry.key, entry)

    def drop_kv(self, key: str) -> None:
        old = self.kvs.get(key)
        if old is not None:
            self._kv_removed.add(key)
            self._kv_added.discard(key)
            self._unhold(old.session, key)
            self.kvs = self.kvs.delete(key)

    def put_token(self, token: ACLToken) -> None:
        old = self.acl_tokens.get(token.accessor_id)
        if old is not None and old.secret_id != token.secret_id:
            self.acl_secrets = self.acl_secrets.delete(old.secret_id)
        self.acl_tokens = self.acl_tokens.set(token.accessor_id, token)
        self.acl_secrets = self.acl_secrets.set(token.secret_id, token.accessor_id)

    def drop_token(self, accessor_id: str) -> None:
        old = self.acl_tokens.get(accessor_id)
        if old is not None:
            self.acl_tokens = self.acl_tokens.delete(accessor_id)
            self.acl_secrets = self.acl_secrets.delete(old.secret_id)

    def _hold(self, session: str, key: str) -> None:
        if session:
            self.held = self.held.set(session, self.held.get(session, frozenset()) | {key})

    def _unhold(self, session: str, key: str) -> None:
        if session:
            keys = self.held.get(session, frozenset()) - {key}
            self.held = self.held.set(session, keys) if keys else self.held.delete(session)

    def _sorted_keys(self) -> tuple[str, ...]:
        base = self.base.kv_keys
        if not self._kv_added and not self._kv_removed:
            return base
        if len(self._kv_added) + len(self._kv_removed) > 64:
            return tuple(sorted(self.kvs.keys()))
        keys = list(base)
        for key in self._kv_removed:
            if key in self.base.kvs:
                del keys[bisect.bisect_left(keys, key)]
        for key in self._kv_added:
            if key not in self.base.kvs:
                bisect.insort(keys, key)
        return tuple(keys)

    def touch(self, table: str, key: str) -> None:
        """Record a write to ``table`` at ``key``: the table's index becomes this apply's."""
        self._indexes[table] = self.index
        self.changes.add((table, key))

    def mark(self, name: str, value: int) -> None:
        """Set a named index that is not a table's (Consul keeps ``acl-token-bootstrap`` in its index table)."""
        self._indexes[name] = value

    def touch_service(self, name: str) -> None:
        """Consul's per-service index ``service.<name>`` (catalog.go ``serviceIndexName``): moved by any write
        to the name's instances or their checks, so a reader of one service is not woken by another's churn."""
        self._indexes[f"service.{name.lower()}"] = self.index
        self.changes.add(("service-name", name.lower()))

    def service_extinct(self, name: str) -> None:
        """The name's last instance is gone: its index goes, ``service_last_extinction`` takes this apply's
        index (what a read of an unknown service reports, catalog.go ``maxIndexForService``)."""
        self._indexes.pop(f"service.{name.lower()}", None)
        self._indexes["service_last_extinction"] = self.index
        self.changes.add(("service-name", name.lower()))

    def commit(self) -> State:
        return State(
            kvs=self.kvs,
            tombstones=self.tombstones,
            sessions=self.sessions,
            session_checks=self.session_checks,
            nodes=self.nodes,
            services=self.services,
            checks=self.checks,
            acl_tokens=self.acl_tokens,
            acl_policies=self.acl_policies,
            acl_roles=self.acl_roles,
            indexes=immutables.Map(self._indexes),
            lock_delays=self.lock_delays,
            applied=max(self.index, self.base.applied),
            kv_keys=self._sorted_keys(),
            held=self.held,
            acl_secrets=self.acl_secrets,
        )

    def view(self) -> State:
        """The state as this Tx has it so far (reads inside a transaction)."""
        return self.commit()
