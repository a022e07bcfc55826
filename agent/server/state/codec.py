"""The whole `State` as bytes (Raft snapshots) and back, exactly: ``restore(snapshot(s)) == s``.

``msgpack [format, applied, indexes, lock_delays, kvs, tombstones, sessions, session_checks, nodes, services,
checks, acl_tokens, acl_policies, acl_roles]``; every table is a list of rows sorted by key, so equal states give
equal bytes whatever order their writes came in (determinism across servers is checked by comparing these bytes).
Format 1 (before the ACL tables) is still read, with no ACL objects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import immutables
import msgpack

from agent.catalog.record import NodeCatalog, RecordError, from_wire, to_wire
from agent.gostrings import WIRE_ERRORS

from .commands import unpack
from .tables import ACLPolicy, ACLRole, ACLToken, CatalogCheck, CatalogNode, CatalogService, KVEntry, Session, State

__all__ = ["SNAPSHOT_FORMAT", "SnapshotError", "decode_state", "encode_state"]

SNAPSHOT_FORMAT = 2
#: Parts of each format readable: 1 had no ACL tables.
_PARTS = {1: 11, 2: 14}


class SnapshotError(ValueError):
    """Snapshot bytes that are not a state of this format; the message says where."""


def _sorted_map(m: immutables.Map[str, str]) -> dict[str, str]:
    return {k: m[k] for k in sorted(m)}


def _kv(e: KVEntry) -> list[Any]:
    return [e.key, e.value, e.flags, e.lock_index, e.session, e.create_index, e.modify_index]


def _session(s: Session) -> list[Any]:
    return [s.id, s.node, s.name, s.lock_delay, s.behavior, s.ttl, list(s.node_checks),
            [list(p) for p in s.service_checks], list(s.checks), s.create_index, s.modify_index]  # fmt: skip


def _node(n: CatalogNode) -> list[Any]:
    return [n.node, n.address, n.id, n.datacenter, _sorted_map(n.tagged_addresses), _sorted_map(n.meta),
            n.create_index, n.modify_index]  # fmt: skip


def _service(s: CatalogService) -> list[Any]:
    return [s.node, to_wire(NodeCatalog("", 0, services=(s.service,)))["s"][0], s.create_index, s.modify_index]


def _check(c: CatalogCheck) -> list[Any]:
    return [c.node, to_wire(NodeCatalog("", 0, checks=(c.check,)))["c"][0], c.create_index, c.modify_index]


def _sids(ids: tuple[tuple[str, tuple[str, ...]], ...]) -> list[Any]:
    return [[name, list(dcs)] for name, dcs in ids]


def _token(t: ACLToken) -> list[Any]:
    return [t.accessor_id, t.secret_id, t.description, list(t.policies), list(t.roles), _sids(t.service_identities),
            [list(n) for n in t.node_identities], t.local, t.expiration_time, t.create_time, t.hash,
            t.create_index, t.modify_index]  # fmt: skip


def _policy(p: ACLPolicy) -> list[Any]:
    return [p.id, p.name, p.description, p.rules, list(p.datacenters), p.hash, p.create_index, p.modify_index]


def _role(r: ACLRole) -> list[Any]:
    return [r.id, r.name, r.description, list(r.policies), _sids(r.service_identities),
            [list(n) for n in r.node_identities], r.hash, r.create_index, r.modify_index]  # fmt: skip


def encode_state(state: State) -> bytes:
    """The same bytes as one ``packb`` of the whole list, packed a row at a time as each row is made: the Raft
    driver encodes snapshots in a worker thread, and building every row first (millions of objects: the garbage
    collector then walks the whole heap, holding the GIL) or packing a large table in one call would stall the
    driver's loop for most of the encoding (docs/raft.md, Snapshots)."""
    packer = msgpack.Packer(use_bin_type=True, unicode_errors=WIRE_ERRORS, autoreset=False)

    def put(count: int, rows: Iterable[Any]) -> None:
        packer.pack_array_header(count)
        for row in rows:
            packer.pack(row)

    def table(t: immutables.Map[Any, Any], row: Callable[[Any], list[Any]], keys: Iterable[Any] = ()) -> None:
        put(len(t), (row(t[k]) for k in (keys or sorted(t.keys()))))

    packer.pack_array_header(14)
    packer.pack(SNAPSHOT_FORMAT)
    packer.pack(state.applied)
    put(len(state.indexes), sorted([k, v] for k, v in state.indexes.items()))
    put(len(state.lock_delays), sorted([k, v] for k, v in state.lock_delays.items()))
    # kv_keys is kvs' keys sorted (kept by every write): no sort of the largest table in one GIL-holding call
    table(state.kvs, _kv, state.kv_keys if len(state.kv_keys) == len(state.kvs) else ())
    put(len(state.tombstones), sorted([k, v] for k, v in state.tombstones.items()))
    table(state.sessions, _session)
    put(len(state.session_checks), sorted([k[0], k[1], list(v)] for k, v in state.session_checks.items()))
    table(state.nodes, _node)
    table(state.services, _service)
    table(state.checks, _check)
    table(state.acl_tokens, _token)
    table(state.acl_policies, _policy)
    table(state.acl_roles, _role)
    return packer.bytes()


def _pairs(raw: Any, what: str) -> dict[Any, Any]:
    if not isinstance(raw, list) or not all(isinstance(p, list) and len(p) == 2 for p in raw):
        raise SnapshotError(f"state snapshot: {what}: expected [key, value] pairs")
    return {p[0]: p[1] for p in raw}


def _rows(raw: Any, what: str, build: Any) -> list[Any]:
    if not isinstance(raw, list):
        raise SnapshotError(f"state snapshot: {what}: expected a list")
    out = []
    for i, row in enumerate(raw):
        try:
            out.append(build(*row))
        except (TypeError, ValueError, RecordError, IndexError) as exc:
            raise SnapshotError(f"state snapshot: {what}[{i}]: {exc}") from None
    return out


def _new_session(id_: str, node: str, name: str, lock_delay: int, behavior: str, ttl: str, node_checks: list[str],
                 service_checks: list[list[str]], checks: list[str], create: int, modify: int) -> Session:  # fmt: skip
    return Session(id_, node, name, lock_delay, behavior, ttl, node_checks, service_checks, checks, create, modify)


def decode_state(data: bytes) -> State:
    raw = unpack(data, "state snapshot", SnapshotError)
    if not isinstance(raw, list) or not raw:
        raise SnapshotError("state snapshot: expected a list")
    parts = _PARTS.get(raw[0]) if isinstance(raw[0], int) and not isinstance(raw[0], bool) else None
    if parts is None:
        raise SnapshotError(f"state snapshot: format {raw[0]!r} is not {SNAPSHOT_FORMAT}")
    if len(raw) != parts:
        raise SnapshotError(f"state snapshot: expected a list of {parts} parts")
    raw = raw + [[], [], []][: 14 - parts]
    tokens = _rows(raw[11], "acl_tokens", ACLToken)
    policies = _rows(raw[12], "acl_policies", ACLPolicy)
    roles = _rows(raw[13], "acl_roles", ACLRole)
    kvs = _rows(raw[4], "kvs", KVEntry)
    sessions = _rows(raw[6], "sessions", _new_session)
    nodes = _rows(raw[8], "nodes", CatalogNode)
    services = _rows(
        raw[9],
        "services",
        lambda n, s, ci, mi: CatalogService(n, from_wire({"n": "", "v": 0, "s": [s]}).services[0], ci, mi),
    )
    checks = _rows(
        raw[10],
        "checks",
        lambda n, c, ci, mi: CatalogCheck(n, from_wire({"n": "", "v": 0, "c": [c]}).checks[0], ci, mi),
    )
    if not isinstance(raw[1], int):
        raise SnapshotError("state snapshot: applied: expected an integer")
    return State(
        kvs=immutables.Map({e.key: e for e in kvs}),
        tombstones=immutables.Map(_pairs(raw[5], "tombstones")),
        sessions=immutables.Map({s.id: s for s in sessions}),
        session_checks=immutables.Map(
            _rows(raw[7], "session_checks", lambda node, check, ids: ((node, check), tuple(ids)))
        ),
        nodes=immutables.Map({n.node.lower(): n for n in nodes}),
        services=immutables.Map({(s.node.lower(), s.service.id): s for s in services}),
        checks=immutables.Map({(c.node.lower(), c.check.id): c for c in checks}),
        indexes=immutables.Map(_pairs(raw[2], "indexes")),
        lock_delays=immutables.Map(_pairs(raw[3], "lock_delays")),
        applied=raw[1],
        kv_keys=tuple(sorted(e.key for e in kvs)),
        held=_held(kvs),
        acl_tokens=immutables.Map({t.accessor_id: t for t in tokens}),
        acl_policies=immutables.Map({p.id: p for p in policies}),
        acl_roles=immutables.Map({r.id: r for r in roles}),
        acl_secrets=immutables.Map({t.secret_id: t.accessor_id for t in tokens}),
    )


def _held(kvs: list[KVEntry]) -> immutables.Map[str, frozenset[str]]:
    held: dict[str, set[str]] = {}
    for entry in kvs:
        if entry.session:
            held.setdefault(entry.session, set()).add(entry.key)
    return immutables.Map({session: frozenset(keys) for session, keys in held.items()})
