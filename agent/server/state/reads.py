"""What each query reads from a `State`, the index it reports, and what it waits on.

Indexes as Consul's endpoints report them (hashicorp/consul ``agent/consul/kvs_endpoint.go``,
``state/kvs.go`` ``kvsListTxn``, ``state/session.go``; wave2-anchors §2.1-2.2):

* one key: its ModifyIndex when present; absent, the KV tables' index (``kvs`` and ``tombstones``);
* a prefix: the highest ModifyIndex under it, tombstones included; the whole tree (""), the tables' index;
  nothing under the prefix, the tables' index;
* sessions: the ``sessions`` table's index;
* an index of 0 is answered as 1 ("Must provide non-zero index to prevent blocking").
"""

from __future__ import annotations

import bisect
from typing import Any, Generic, TypeVar

import attrs

from . import acl as acl_rules
from .tables import (
    ACLPolicy,
    ACLRole,
    ACLToken,
    CatalogCheck,
    CatalogNode,
    CatalogService,
    KVEntry,
    Session,
    State,
    node_key,
)
from .watch import Interest

__all__ = [
    "Read",
    "acl_policies",
    "acl_policy",
    "acl_policy_by_name",
    "acl_role",
    "acl_role_by_name",
    "acl_roles",
    "acl_token_by_accessor",
    "acl_token_by_secret",
    "acl_tokens",
    "catalog_node",
    "catalog_nodes",
    "catalog_service",
    "kv_get",
    "kv_keys",
    "kv_list",
    "node_sessions",
    "registered",
    "session_get",
    "session_list",
]

T = TypeVar("T")


@attrs.frozen
class Read(Generic[T]):
    """A query's answer: ``index`` for ``X-Consul-Index``, the value, and the interests a blocking query
    waits on before reading again."""

    index: int
    value: T
    interests: tuple[Interest, ...]


def _nonzero(index: int) -> int:
    return index if index > 0 else 1


def kv_get(state: State, key: str) -> Read[KVEntry | None]:
    entry = state.kvs.get(key)
    index = entry.modify_index if entry is not None else state.table_index("kvs", "tombstones")
    return Read(_nonzero(index), entry, (Interest("kvs", key),))


def _under(state: State, prefix: str) -> tuple[list[KVEntry], int]:
    keys = state.kv_keys
    entries = []
    for i in range(bisect.bisect_left(keys, prefix), len(keys)):
        if not keys[i].startswith(prefix):
            break
        entries.append(state.kvs[keys[i]])
    index = max((e.modify_index for e in entries), default=0)
    if prefix:
        graves = (i for k, i in state.tombstones.items() if k.startswith(prefix))
        index = max(index, max(graves, default=0))
    else:
        index = state.table_index("kvs", "tombstones")
    if index == 0:
        index = state.table_index("kvs", "tombstones")
    return entries, _nonzero(index)


def kv_list(state: State, prefix: str) -> Read[tuple[KVEntry, ...]]:
    """``?recurse``: the entries under ``prefix`` by key."""
    entries, index = _under(state, prefix)
    return Read(index, tuple(entries), (Interest("kvs", prefix, prefix=True),))


def kv_keys(state: State, prefix: str, separator: str = "") -> Read[tuple[str, ...]]:
    """``?keys[&separator=]``: keys under ``prefix``, rolled up after the first ``separator`` past it."""
    entries, index = _under(state, prefix)
    keys: list[str] = []
    for entry in entries:
        key = entry.key
        if separator:
            cut = key.find(separator, len(prefix))
            if cut >= 0:
                key = key[: cut + len(separator)]
        if not keys or keys[-1] != key:
            keys.append(key)
    return Read(index, tuple(keys), (Interest("kvs", prefix, prefix=True),))


def session_get(state: State, session_id: str) -> Read[Session | None]:
    return Read(
        _nonzero(state.table_index("sessions")), state.sessions.get(session_id), (Interest("sessions", session_id),)
    )


def session_list(state: State) -> Read[tuple[Session, ...]]:
    sessions = tuple(sorted(state.sessions.values(), key=lambda s: s.id))
    return Read(_nonzero(state.table_index("sessions")), sessions, (Interest("sessions"),))


def node_sessions(state: State, node: str) -> Read[tuple[Session, ...]]:
    wanted = node_key(node)
    sessions = tuple(sorted((s for s in state.sessions.values() if node_key(s.node) == wanted), key=lambda s: s.id))
    return Read(_nonzero(state.table_index("sessions")), sessions, (Interest("sessions-node", wanted),))


def catalog_node(state: State, node: str) -> Read[dict[str, Any] | None]:
    """A registered node with its services and checks (None when not registered)."""
    key = node_key(node)
    found: CatalogNode | None = state.nodes.get(key)
    index = _nonzero(state.table_index("nodes", "services", "checks"))
    interests = (Interest("nodes", key), Interest("services", key), Interest("checks", key))
    if found is None:
        return Read(index, None, interests)
    services = sorted((s for k, s in state.services.items() if k[0] == key), key=lambda s: s.service.id)
    checks = sorted((c for k, c in state.checks.items() if k[0] == key), key=lambda c: c.check.id)
    return Read(index, {"node": found, "services": services, "checks": checks}, interests)


def catalog_nodes(state: State) -> Read[tuple[CatalogNode, ...]]:
    """Registered nodes by name (case-insensitive first, as Consul's node index); the ``nodes`` index."""
    nodes = tuple(sorted(state.nodes.values(), key=lambda n: (n.node.lower(), n.node)))
    return Read(_nonzero(state.table_index("nodes")), nodes, (Interest("nodes"),))


def catalog_service(state: State, name: str) -> Read[tuple[CatalogService, ...]]:
    """Registered instances of service ``name`` (case-insensitive) by node then id.

    Index as catalog.go ``maxIndexForService``: the name's own index ``service.<name>``; for a name with no
    instance, ``service_last_extinction``, else the ``nodes``/``services`` tables' index."""
    lowered = name.lower()
    found = sorted(
        (s for s in state.services.values() if s.service.name.lower() == lowered),
        key=lambda s: (s.node.lower(), s.service.id),
    )
    if found:
        index = state.indexes.get(f"service.{lowered}", 0) or state.table_index("nodes", "services")
    else:
        index = state.indexes.get("service_last_extinction", 0) or state.table_index("nodes", "services")
    return Read(_nonzero(index), tuple(found), (Interest("service-name", lowered),))


#: One registered node with its services (by ID) and checks (by ID).
RegisteredRows = tuple[CatalogNode, tuple[CatalogService, ...], tuple[CatalogCheck, ...]]


def registered(state: State) -> Read[tuple[RegisteredRows, ...]]:
    """Every registered node with its services and checks, by name (what each agent's mirror follows).

    Index: the highest of the ``nodes``, ``services`` and ``checks`` tables (any registration or deregistration
    moves one of them); it waits on the three tables whole."""
    services: dict[str, list[CatalogService]] = {}
    for (node, _), service in state.services.items():
        services.setdefault(node, []).append(service)
    checks: dict[str, list[CatalogCheck]] = {}
    for (node, _), check in state.checks.items():
        checks.setdefault(node, []).append(check)
    rows = tuple(
        (n, tuple(sorted(services.get(key, ()), key=lambda s: s.service.id)),
         tuple(sorted(checks.get(key, ()), key=lambda c: c.check.id)))
        for key, n in sorted(state.nodes.items(), key=lambda kv: (kv[1].node.lower(), kv[1].node))
    )  # fmt: skip
    index = _nonzero(state.table_index("nodes", "services", "checks"))
    return Read(index, rows, (Interest("nodes"), Interest("services"), Interest("checks")))


# ------------------------------------------------------------------ ACL (state/acl.go ACLTokenGet*, ACLPolicy*...)


def _acl_read(state: State, table: str, value: T) -> Read[T]:
    """ACL reads report their table's index (``maxIndexTxn``) and wait on the whole table."""
    return Read(_nonzero(state.table_index(table)), value, (Interest(table),))


def acl_token_by_accessor(state: State, accessor_id: str) -> Read[ACLToken | None]:
    return _acl_read(state, "acl-tokens", state.acl_tokens.get(accessor_id))


def acl_token_by_secret(state: State, secret_id: str) -> Read[ACLToken | None]:
    return _acl_read(state, "acl-tokens", acl_rules.token_by_secret(state, secret_id))


def acl_tokens(state: State, policy: str = "", role: str = "") -> Read[tuple[ACLToken, ...]]:
    """``/v1/acl/tokens`` by accessor ID; ``?policy=``/``?role=`` keep the tokens linking that ID."""
    tokens = sorted(state.acl_tokens.values(), key=lambda t: t.accessor_id)
    picked = tuple(t for t in tokens if (not policy or policy in t.policies) and (not role or role in t.roles))
    return _acl_read(state, "acl-tokens", picked)


def acl_policy(state: State, policy_id: str) -> Read[ACLPolicy | None]:
    return _acl_read(state, "acl-policies", state.acl_policies.get(policy_id))


def acl_policy_by_name(state: State, name: str) -> Read[ACLPolicy | None]:
    return _acl_read(state, "acl-policies", acl_rules.policy_by_name(state, name))


def acl_policies(state: State) -> Read[tuple[ACLPolicy, ...]]:
    return _acl_read(state, "acl-policies", tuple(sorted(state.acl_policies.values(), key=lambda p: p.id)))


def acl_role(state: State, role_id: str) -> Read[ACLRole | None]:
    return _acl_read(state, "acl-roles", state.acl_roles.get(role_id))


def acl_role_by_name(state: State, name: str) -> Read[ACLRole | None]:
    return _acl_read(state, "acl-roles", acl_rules.role_by_name(state, name))


def acl_roles(state: State, policy: str = "") -> Read[tuple[ACLRole, ...]]:
    """``/v1/acl/roles`` by ID; ``?policy=`` keeps the roles linking that policy."""
    roles = sorted(state.acl_roles.values(), key=lambda r: r.id)
    return _acl_read(state, "acl-roles", tuple(r for r in roles if not policy or policy in r.policies))
