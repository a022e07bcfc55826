"""Per-read indexes of the merged catalog, as Consul's state store keeps them (sans-IO, trio-free).

Consul answers a blocking catalog or health read with the index of the last change to *what it read*, not the
last change anywhere (hashicorp/consul ``agent/consul/state/catalog.go``): ``/v1/catalog/nodes`` the ``nodes``
table's index, ``/v1/catalog/services`` the ``services`` table's, ``/v1/health/state`` the ``checks`` table's,
and ``/v1/catalog/service/web`` (and ``/v1/health/service/web``) ``maxIndexForService``: the index of the last
change to any instance of ``web``, to one of their checks, or to a node hosting one (its fields or a node-level
check such as ``serfHealth``); once the last instance is gone, ``service_last_extinction``.  This module keeps
those indexes for the agent's snapshot, in the member table's own counter (so an index never exceeds
``Snapshot.index`` and only grows), and says which ``(table, key)`` pairs each change wrote, so that the table's
`agent.watch.WatchHub` wakes only the readers of what changed.

The tables (each pair is also an `agent.watch.Interest` a read may wait on):

=====================  ===============================================================================
``nodes``/node         the node appeared, went, or its catalog fields changed (address, ID, DC, meta)
``services``/node      one of the node's service instances was added, changed or removed
``checks``/node        one of the node's checks (``serfHealth`` included) was added, changed or removed
``service``/name       an instance of service ``name`` (lower-cased), one of its checks, or its node changed
=====================  ===============================================================================

Node keys are lower-cased names (Consul's node names compare case-insensitively).  ``nodes``, ``services`` and
``checks`` also have whole-table indexes; ``node_last_extinction`` and ``service_last_extinction`` are the last
index at which a node or the last instance of a service went (a read of a missing node or service answers with
it, so a removal still moves the index of a read that finds nothing).

`advance` is the whole writer side: given the new snapshot and the node keys a change may have touched, it
compares each node's catalog content with what it recorded (`NodeState`) and moves exactly the indexes whose
content changed.  Member indexes (a member's ``modify_index`` moves on every gossip tag update, such as a
catalog announcement) are not content: a node's ``CreateIndex``/``ModifyIndex``, its ``serfHealth``'s and its
``consul`` service's are kept here, and move only when what they describe does, as in Consul.

Limits: an agent node is found under its key by its exact member name (a member event names it; a registered
node's key is tried with the registered spelling and the lower-cased one), so two agents whose names differ
only in case are not told apart, and a registration shadowed by an agent spelled differently in case is seen
shadowed only once that agent's own event is indexed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs
import immutables

from agent.catalog.query import consul_service_record, in_catalog, serf_health
from agent.watch import Interest

if TYPE_CHECKING:
    from agent.catalog.indexed import IndexedNode
    from agent.members import Member, Snapshot

__all__ = [
    "EMPTY",
    "CatalogIndexes",
    "NodeContent",
    "NodeState",
    "ReadIndex",
    "advance",
    "checks_read",
    "node_checks_read",
    "node_content",
    "node_read",
    "nodes_read",
    "service_read",
    "services_read",
]

Indexes = tuple[int, int]  # (create, modify)
Change = tuple[str, str]  # (table, key)

NODE_EXTINCTION = "node_last_extinction"
SERVICE_EXTINCTION = "service_last_extinction"


@attrs.frozen
class NodeContent:
    """What the catalog shows of one node, without the indexes this module assigns (comparable with ``==``).

    ``services``: service ID -> (lower-cased name, what the instance shows); ``checks``: check ID -> (service ID,
    what the check shows).  ``serf`` and ``consul`` are an agent node's derived ``serfHealth`` check and (on a
    server) ``consul`` service, kept apart because their indexes are assigned here."""

    fields: tuple[Any, ...]
    services: Mapping[str, tuple[str, Any]]
    checks: Mapping[str, tuple[str, Any]]
    serf: Any = None
    consul: Any = None


@attrs.frozen
class NodeState:
    """One node as last indexed: its content and the indexes assigned to it and its derived records."""

    content: NodeContent
    node: Indexes
    serf: Indexes | None = None
    consul: Indexes | None = None


@attrs.frozen
class CatalogIndexes:
    """The index table: whole tables and extinctions (``tables``), ``(table, key)`` pairs (``keys``), each
    node's `NodeState`, and how many instances each service name has (to tell a change from an extinction)."""

    tables: immutables.Map[str, int] = attrs.field(factory=immutables.Map)
    keys: immutables.Map[Change, int] = attrs.field(factory=immutables.Map)
    nodes: immutables.Map[str, NodeState] = attrs.field(factory=immutables.Map)
    instances: immutables.Map[str, int] = attrs.field(factory=immutables.Map)

    def table(self, *names: str) -> int:
        return max((self.tables.get(n, 0) for n in names), default=0)

    def key(self, table: str, key: str) -> int:
        return self.keys.get((table, key), 0)


EMPTY = CatalogIndexes()


# ------------------------------------------------------------------ what a node shows


def _agent_content(snapshot: Snapshot, member: Member) -> NodeContent:
    entry: IndexedNode | None = snapshot.catalog.get(member.name)
    meta = {"consul-version": member.tags.get("build", "").split(":", 1)[0]}
    services: dict[str, tuple[str, Any]] = {}
    checks: dict[str, tuple[str, Any]] = {}
    consul = consul_service_record(member)
    if consul is not None:
        services["consul"] = ("consul", consul)
    if entry is not None:
        meta.update(entry.record.meta)
        for s in entry.record.services:
            if consul is None or s.id != "consul":
                services[s.id] = (s.name.lower(), (s, entry.service_indexes(s.id)))
        for c in entry.record.checks:
            checks[c.id] = (c.service_id, (c, entry.check_indexes(c.id)))
    serf = serf_health(member).check
    checks[serf.id] = ("", serf)
    fields = (member.name, member.addr, member.tags.get("id", ""), member.tags.get("dc", ""),
              tuple(sorted(meta.items())))  # fmt: skip
    return NodeContent(fields, services, checks, serf, consul)


def _registered_content(node: Any) -> NodeContent:
    fields = (node.node, node.address, node.id, node.datacenter, tuple(sorted(node.tagged_addresses.items())),
              tuple(sorted(node.meta.items())), node.create_index, node.modify_index)  # fmt: skip
    services = {s.id: (s.name.lower(), (s, create, modify)) for s, create, modify in node.services}
    checks = {c.id: (c.service_id, (c, create, modify)) for c, create, modify in node.checks}
    return NodeContent(fields, services, checks)


def node_content(snapshot: Snapshot, key: str, names: Iterable[str], dc: str | None) -> NodeContent | None:
    """The catalog node under ``key`` (a lower-cased name): an agent member called one of ``names`` first (an
    agent node shadows a registration of the same name), else the registered node; None when there is none."""
    agents = [m for name in sorted(set(names)) if (m := snapshot.members.get(name)) is not None
              and m.name.lower() == key and in_catalog(m, dc)]  # fmt: skip
    if agents:
        return _agent_content(snapshot, agents[0])
    registered = snapshot.registered
    found = registered.nodes.get(key) if registered is not None else None
    return _registered_content(found) if found is not None else None


# ------------------------------------------------------------------ the writer side


def _service_names(content: NodeContent | None) -> set[str]:
    return {name for name, _ in content.services.values()} if content is not None else set()


def _touched_services(old: NodeContent | None, new: NodeContent | None) -> tuple[set[str], bool, bool, bool]:
    """The service names whose instances on this node changed, and whether the node, its services and its
    checks changed.  A node change or a node-level check change touches every service on the node (Consul's
    ``updateAllServiceIndexesOfNode``: health reads show the node and its checks)."""
    empty: Mapping[str, tuple[str, Any]] = {}
    old_services, new_services = (old.services if old else empty), (new.services if new else empty)
    old_checks, new_checks = (old.checks if old else empty), (new.checks if new else empty)
    node_changed = old is None or new is None or old.fields != new.fields
    services_changed = old_services != new_services
    checks_changed = old_checks != new_checks
    every = _service_names(old) | _service_names(new)
    if node_changed:
        return every, True, services_changed, checks_changed
    names: set[str] = set()
    for sid in old_services.keys() | new_services.keys():
        before, after = old_services.get(sid), new_services.get(sid)
        if before != after:
            names.update(entry[0] for entry in (before, after) if entry is not None)
    for cid in old_checks.keys() | new_checks.keys():
        before, after = old_checks.get(cid), new_checks.get(cid)
        if before == after:
            continue
        for entry in (before, after):
            if entry is None:
                continue
            if entry[0] == "":
                return every, False, services_changed, True
            for services in (old_services, new_services):
                owner = services.get(entry[0])
                if owner is not None:
                    names.add(owner[0])
    return names, False, services_changed, checks_changed


def _moved(previous: Indexes | None, before: Any, after: Any, index: int) -> Indexes | None:
    if after is None:
        return None
    if previous is None:
        return (index, index)
    return previous if before == after else (previous[0], index)


def advance(
    indexes: CatalogIndexes, snapshot: Snapshot, names: Mapping[str, Iterable[str]], index: int, dc: str | None
) -> tuple[CatalogIndexes, set[Change]]:
    """The index table after ``snapshot`` was published at ``index``, and the ``(table, key)`` pairs it wrote.

    ``names`` maps each node key the change may have touched to the exact names an agent node under it may
    have; a key whose content did not change costs a comparison and writes nothing."""
    changes: set[Change] = set()
    tables = indexes.tables.mutate()
    keys = indexes.keys.mutate()
    nodes = indexes.nodes.mutate()
    instances = indexes.instances.mutate()
    for key, candidates in names.items():
        state: NodeState | None = nodes.get(key)
        old = state.content if state is not None else None
        new = node_content(snapshot, key, candidates, dc)
        if old == new:
            continue
        touched, node_changed, services_changed, checks_changed = _touched_services(old, new)
        for table, changed in (("nodes", node_changed), ("services", services_changed), ("checks", checks_changed)):
            if changed:
                tables[table] = index
                changes.add((table, key))
                if new is not None:
                    keys[(table, key)] = index
        if new is None:
            for table in ("nodes", "services", "checks"):
                keys.pop((table, key), None)
            tables[NODE_EXTINCTION] = index
            del nodes[key]
        else:
            node = (state.node[0], index) if state is not None and node_changed else state.node if state else None
            nodes[key] = NodeState(
                new,
                node or (index, index),
                _moved(state.serf if state else None, old.serf if old else None, new.serf, index),
                _moved(state.consul if state else None, old.consul if old else None, new.consul, index),
            )
        old_counts: dict[str, int] = {}
        for name, _ in old.services.values() if old is not None else ():
            old_counts[name] = old_counts.get(name, 0) + 1
        new_counts: dict[str, int] = {}
        for name, _ in new.services.values() if new is not None else ():
            new_counts[name] = new_counts.get(name, 0) + 1
        for name in touched | old_counts.keys() | new_counts.keys():
            count = instances.get(name, 0) - old_counts.get(name, 0) + new_counts.get(name, 0)
            if count > 0:
                instances[name] = count
            else:
                instances.pop(name, None)
            if name not in touched:
                continue
            changes.add(("service", name))
            if count > 0:
                keys[("service", name)] = index
            else:
                keys.pop(("service", name), None)
                tables[SERVICE_EXTINCTION] = index
    if not changes:
        return indexes, changes
    return CatalogIndexes(tables.finish(), keys.finish(), nodes.finish(), instances.finish()), changes


# ------------------------------------------------------------------ the reader side


@attrs.frozen
class ReadIndex:
    """What one read answers with as ``X-Consul-Index`` and what a blocking read of it waits on."""

    index: int
    interests: tuple[Interest, ...]


def nodes_read(indexes: CatalogIndexes) -> ReadIndex:
    """``/v1/catalog/nodes``: the ``nodes`` table."""
    return ReadIndex(indexes.table("nodes"), (Interest("nodes"),))


def _node_index(indexes: CatalogIndexes, key: str, table: str) -> int:
    if key in indexes.nodes:
        return max(indexes.key("nodes", key), indexes.key(table, key))
    return indexes.table(NODE_EXTINCTION) or indexes.table("nodes")


def node_read(indexes: CatalogIndexes, name: str) -> ReadIndex:
    """``/v1/catalog/node/n``: the node and its services; missing, the last node extinction."""
    key = name.lower()
    return ReadIndex(_node_index(indexes, key, "services"), (Interest("nodes", key), Interest("services", key)))


def node_checks_read(indexes: CatalogIndexes, name: str) -> ReadIndex:
    """``/v1/health/node/n``: the node and its checks; missing, the last node extinction."""
    key = name.lower()
    return ReadIndex(_node_index(indexes, key, "checks"), (Interest("nodes", key), Interest("checks", key)))


def service_read(indexes: CatalogIndexes, name: str) -> ReadIndex:
    """``/v1/catalog/service/s``, ``/v1/health/service/s`` and ``/v1/health/checks/s``: ``maxIndexForService``."""
    key = name.lower()
    index = indexes.key("service", key)
    if not index:
        index = indexes.table(SERVICE_EXTINCTION) or indexes.table("nodes", "services")
    return ReadIndex(index, (Interest("service", key),))


def services_read(indexes: CatalogIndexes, node_meta: bool = False) -> ReadIndex:
    """``/v1/catalog/services``: the ``services`` table (and ``nodes`` when filtered by node meta)."""
    if node_meta:
        return ReadIndex(indexes.table("nodes", "services"), (Interest("nodes"), Interest("services")))
    return ReadIndex(indexes.table("services"), (Interest("services"),))


def checks_read(indexes: CatalogIndexes, node_meta: bool = False) -> ReadIndex:
    """``/v1/health/state/s``: the ``checks`` table (and ``nodes`` when filtered by node meta)."""
    if node_meta:
        return ReadIndex(indexes.table("nodes", "checks"), (Interest("nodes"), Interest("checks")))
    return ReadIndex(indexes.table("checks"), (Interest("checks"),))
