"""Reading the catalog out of a snapshot: pure functions the HTTP endpoints and the DNS answerer share.

The catalog merges two sources (docs/state.md, "Catalog registrations and agent-owned records"):

* **agent nodes**: a member is in the catalog when it is a Consul node (``role`` tag ``node`` or ``consul``) of
  the datacenter that has not left (Consul's leader deregisters left nodes at once and keeps failed ones).  Its
  services are the ones in its replicated record, plus the ``consul`` service on servers; its checks are
  ``serfHealth`` (derived from the member status: passing while alive or leaving, critical when failed) plus the
  checks in its record;
* **registered (external) nodes**: ``Snapshot.registered``, the servers' store as this agent's mirror last read
  it; their services and checks are the registered ones, with no serfHealth (no agent runs there).  A registered
  name that an agent node also has (case-insensitive) is *shadowed*: the agent's node wins and the registration
  is not shown (the leader deregisters it, `agent.server.state.leader.shadowed_registrations`).

Every function works on `NodeView`s, so HTTP and DNS never ask which source a node came from.  Service names and
tags compare case-insensitively, as Consul's state store does.  ``dns_answerable`` is DNS's view (consul-compat
§3.3): instances with any critical check are dropped, and with ``only_passing`` warning ones too.  Member statuses
are Serf's (`protocol.serf.MemberStatus`, the one definition).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import attrs
import immutables

from agent.catalog.indexed import IndexedNode
from agent.catalog.record import CheckRecord, ServiceRecord
from agent.catalog.registered import RegisteredNode
from protocol.serf import MemberStatus

if TYPE_CHECKING:
    from agent.catalog.indexes import NodeState
    from agent.members import Member, Snapshot

__all__ = [
    "PRESENT",
    "CheckView",
    "Instance",
    "NodeView",
    "agent_members",
    "agent_node",
    "agent_node_meta",
    "all_checks",
    "all_instances",
    "catalog_nodes",
    "consul_service_record",
    "dns_answerable",
    "find_node",
    "in_catalog",
    "known_servers",
    "meta_match",
    "node_checks",
    "node_instances",
    "node_services",
    "registered_node",
    "registered_nodes",
    "service_checks",
    "service_instances",
    "service_tags",
    "version_of",
    "worst_status",
]

#: The statuses whose node is in the catalog (and whose record replicates): every one but ``left`` (Consul's
#: leader deregisters left nodes at once and keeps failed ones).
PRESENT = frozenset({MemberStatus.ALIVE, MemberStatus.LEAVING, MemberStatus.FAILED})
_RANK = {"passing": 0, "warning": 1, "critical": 2}

SERF_CHECK_ID = "serfHealth"
SERF_CHECK_NAME = "Serf Health Status"
SERF_ALIVE = "Agent alive and reachable"
SERF_DEAD = "Agent not live or unreachable"


@attrs.frozen
class CheckView:
    """One check of one node, with its catalog indexes (what HealthCheck JSON needs)."""

    node: str
    check: CheckRecord
    create_index: int
    modify_index: int


@attrs.frozen
class NodeView:
    """One node of the merged catalog: an agent's (``member`` set) or a registered one (``registered`` set).

    ``meta`` is Consul's node meta as the catalog shows it: for an agent node ``consul-network-segment``,
    ``consul-version`` and the meta its owner published; for a registered node what was registered.  Indexes:
    an agent node's are the member table's, a registered node's the store's (Raft indexes).
    """

    name: str
    address: str
    meta: immutables.Map[str, str]
    create_index: int
    modify_index: int
    member: Member | None = None
    registered: RegisteredNode | None = None


@attrs.frozen
class Instance:
    """One service instance: its node, the service, and every check that applies (node checks included)."""

    node: NodeView
    service: ServiceRecord
    checks: tuple[CheckView, ...]
    create_index: int
    modify_index: int

    @property
    def node_name(self) -> str:
        return self.node.name

    @property
    def address(self) -> str:
        """Where to reach it: the service's own address, else the node's."""
        return self.service.address or self.node.address

    @property
    def status(self) -> str:
        """The worst status among its checks (passing when it has none)."""
        return worst_status(c.check.status for c in self.checks)


def worst_status(statuses: Iterable[str]) -> str:
    worst = "passing"
    for status in statuses:
        if _RANK.get(status, 2) > _RANK[worst]:
            worst = status if status in _RANK else "critical"
    return worst


def in_catalog(member: Member, dc: str | None = None) -> bool:
    tags = member.tags
    return (
        member.status in PRESENT
        and tags.get("role") in ("node", "consul")
        and (dc is None or tags.get("dc") == dc)
    )


def agent_members(snapshot: Snapshot, dc: str | None = None) -> list[Member]:
    """The agents' nodes in the catalog, by name (case-insensitive first, as Consul's index orders them)."""
    members = [m for m in snapshot.members.values() if in_catalog(m, dc)]
    members.sort(key=lambda m: (m.name.lower(), m.name))
    return members


def version_of(member: Member) -> str:
    """The Consul version in a member's ``build`` tag (``1.20.1:2c7bc1d0`` -> ``1.20.1``), ``""`` if none."""
    return member.tags.get("build", "").split(":", 1)[0]


def agent_node_meta(member: Member, published: Mapping[str, str] | None) -> dict[str, str]:
    """Consul's node meta of an agent node, sorted: ``consul-network-segment``, ``consul-version`` (1.16+), then
    the meta its owner published (its record's, or the local agent's ``node_meta``)."""
    meta = {"consul-network-segment": ""}
    if version := version_of(member):
        meta["consul-version"] = version
    if published:
        meta.update(published)
    return {k: meta[k] for k in sorted(meta)}


def _agent_meta(snapshot: Snapshot, member: Member) -> immutables.Map[str, str]:
    entry: IndexedNode | None = snapshot.catalog.get(member.name)
    return immutables.Map(agent_node_meta(member, entry.record.meta if entry is not None else None))


def known_servers(members: Iterable[Member], dc: str) -> list[Member]:
    """Alive servers of this DC: what a client agent could forward an RPC to."""
    return [m for m in members
            if m.status == MemberStatus.ALIVE and m.tags.get("role") == "consul" and m.tags.get("dc") == dc]


def _indexed(snapshot: Snapshot, member: Member) -> NodeState | None:
    """The node's entry in the snapshot's index table (agent.catalog.indexes): its catalog indexes."""
    state: NodeState | None = snapshot.indexes.nodes.get(member.name.lower())
    return state


def agent_node(snapshot: Snapshot, member: Member) -> NodeView:
    """An agent's node, with the catalog's indexes for it (they move only when the node's catalog fields do;
    the member's own move on every gossip update); a member not indexed yet shows the member's."""
    state = _indexed(snapshot, member)
    create, modify = state.node if state is not None else (member.create_index, member.modify_index)
    return NodeView(member.name, member.addr, _agent_meta(snapshot, member), create, modify, member=member)


def registered_node(node: RegisteredNode) -> NodeView:
    return NodeView(node.node, node.address, node.meta, node.create_index, node.modify_index, registered=node)


def registered_nodes(snapshot: Snapshot, dc: str | None = None) -> list[RegisteredNode]:
    """The registered nodes the catalog shows, by name: every one no agent node shadows (same name, any case)."""
    registered = snapshot.registered
    if registered is None or not registered.nodes:
        return []
    agents = {m.name.lower() for m in snapshot.members.values() if in_catalog(m, dc)}
    shown = [n for key, n in registered.nodes.items() if key not in agents]
    shown.sort(key=lambda n: (n.node.lower(), n.node))
    return shown


def catalog_nodes(snapshot: Snapshot, dc: str | None = None) -> list[NodeView]:
    """Every node in the catalog, agents' and registered ones, by name (case-insensitive first)."""
    views = [agent_node(snapshot, m) for m in agent_members(snapshot, dc)]
    views.extend(registered_node(n) for n in registered_nodes(snapshot, dc))
    views.sort(key=lambda v: (v.name.lower(), v.name))
    return views


def find_node(snapshot: Snapshot, name: str, dc: str | None = None) -> NodeView | None:
    """The catalog node called ``name`` (Consul's node names compare case-insensitively; an exact match first)."""
    member = snapshot.members.get(name)
    if member is None or not in_catalog(member, dc):
        lowered = name.lower()
        member = next((m for m in snapshot.members.values() if m.name.lower() == lowered and in_catalog(m, dc)),
                      None)  # fmt: skip
    if member is not None:
        return agent_node(snapshot, member)
    registered = snapshot.registered
    found = registered.nodes.get(name.lower()) if registered is not None else None
    return registered_node(found) if found is not None else None


def consul_service_record(member: Member) -> ServiceRecord | None:
    """The ``consul`` service a server node carries (consul-compat §1.1), None for a client."""
    if member.tags.get("role") != "consul":
        return None
    try:
        port = int(member.tags.get("port", "8300"))
    except ValueError:
        port = 8300
    meta = {
        "non_voter": "false",
        "raft_version": member.tags.get("raft_vsn", "3"),
        "read_replica": "false",
        "serf_protocol_current": str(member.protocol_cur),
        "serf_protocol_max": str(member.protocol_max),
        "serf_protocol_min": str(member.protocol_min),
        "version": version_of(member),
    }
    for tag in ("grpc_port", "grpc_tls_port"):
        if tag in member.tags:
            meta[tag] = member.tags[tag]
    return ServiceRecord(id="consul", name="consul", port=port, meta=meta)


def serf_health(member: Member) -> CheckView:
    alive = member.status in (MemberStatus.ALIVE, MemberStatus.LEAVING)
    check = CheckRecord(
        id=SERF_CHECK_ID,
        name=SERF_CHECK_NAME,
        status="passing" if alive else "critical",
        output=SERF_ALIVE if alive else SERF_DEAD,
    )
    return CheckView(member.name, check, member.create_index, member.modify_index)


def node_services(snapshot: Snapshot, node: NodeView) -> list[tuple[ServiceRecord, int, int]]:
    """(service, create, modify) of one node: on a server the ``consul`` service first, then its record's; on a
    registered node the registered ones."""
    member = node.member
    if member is None:
        return list(node.registered.services) if node.registered is not None else []
    out: list[tuple[ServiceRecord, int, int]] = []
    consul = consul_service_record(member)
    if consul is not None:
        state = _indexed(snapshot, member)
        indexes = state.consul if state is not None and state.consul is not None else None
        out.append((consul, *(indexes or (member.create_index, member.modify_index))))
    entry: IndexedNode | None = snapshot.catalog.get(member.name)
    if entry is not None:
        for service in entry.record.services:
            if consul is not None and service.id == "consul":
                continue
            out.append((service, *entry.service_indexes(service.id)))
    return out


def node_checks(snapshot: Snapshot, node: NodeView) -> list[CheckView]:
    """The node's checks by CheckID (Consul's order for /v1/health/node): an agent node's serfHealth and record's,
    a registered node's registered ones (no serfHealth: no agent runs there)."""
    member = node.member
    if member is None:
        registered = node.registered.checks if node.registered is not None else ()
        checks = [CheckView(node.name, c, create, modify) for c, create, modify in registered]
    else:
        serf = serf_health(member)
        state = _indexed(snapshot, member)
        if state is not None and state.serf is not None:
            serf = attrs.evolve(serf, create_index=state.serf[0], modify_index=state.serf[1])
        checks = [serf]
        entry: IndexedNode | None = snapshot.catalog.get(member.name)
        if entry is not None:
            checks.extend(CheckView(member.name, c, *entry.check_indexes(c.id)) for c in entry.record.checks)
    checks.sort(key=lambda v: v.check.id)
    return checks


def node_instances(snapshot: Snapshot, node: NodeView) -> list[Instance]:
    """Every service instance of one node, by service ID, each with its own and the node's checks."""
    services = node_services(snapshot, node)
    if not services:
        return []
    checks = node_checks(snapshot, node)
    return [
        Instance(node, record, tuple(c for c in checks if c.check.service_id in ("", record.id)), create, modify)
        for record, create, modify in sorted(services, key=lambda s: s[0].id)
    ]


def _tags_match(service: ServiceRecord, tags: Iterable[str]) -> bool:
    have = {t.lower() for t in service.tags}
    return all(t.lower() in have for t in tags)


def meta_match(meta: Mapping[str, str], filters: Mapping[str, str] | None) -> bool:
    """``node-meta=key:value`` filters: every pair must match."""
    return not filters or all(k in meta and meta[k] == v for k, v in filters.items())


def service_instances(
    snapshot: Snapshot,
    service: str,
    *,
    dc: str | None = None,
    tags: Iterable[str] = (),
    node_meta: Mapping[str, str] | None = None,
) -> list[Instance]:
    """Every instance of ``service`` (any health), ordered by node name then service ID."""
    wanted = service.lower()
    tags = tuple(tags)
    out: list[Instance] = []
    for node in catalog_nodes(snapshot, dc):
        if node_meta and not meta_match(node.meta, node_meta):
            continue
        if not any(s.name.lower() == wanted for s, _, _ in node_services(snapshot, node)):
            continue
        out.extend(i for i in node_instances(snapshot, node)
                   if i.service.name.lower() == wanted and (not tags or _tags_match(i.service, tags)))  # fmt: skip
    return out


def dns_answerable(instance: Instance, only_passing: bool) -> bool:
    """Whether DNS may answer with an instance: no critical check (and no warning one with ``only_passing``)."""
    status = instance.status
    return status == "passing" or (status == "warning" and not only_passing)


def service_tags(snapshot: Snapshot, *, dc: str | None = None,
                 node_meta: Mapping[str, str] | None = None) -> dict[str, list[str]]:  # fmt: skip
    """``{service name: sorted union of tags}`` over the catalog (``/v1/catalog/services``)."""
    out: dict[str, set[str]] = {}
    for node in catalog_nodes(snapshot, dc):
        if node_meta and not meta_match(node.meta, node_meta):
            continue
        for record, _, _ in node_services(snapshot, node):
            out.setdefault(record.name, set()).update(record.tags)
    return {name: sorted(out[name]) for name in sorted(out)}


def all_instances(snapshot: Snapshot, *, dc: str | None = None,
                  node_meta: Mapping[str, str] | None = None) -> list[Instance]:  # fmt: skip
    """Every service instance in the catalog, node by node (what ``/v1/catalog/services`` filters)."""
    return [i for node in catalog_nodes(snapshot, dc) if not node_meta or meta_match(node.meta, node_meta)
            for i in node_instances(snapshot, node)]  # fmt: skip


def service_checks(snapshot: Snapshot, service: str, *, dc: str | None = None) -> list[CheckView]:
    """The checks of every instance of ``service`` (service checks only, as Consul's /v1/health/checks)."""
    wanted = service.lower()
    out: list[CheckView] = []
    for node in catalog_nodes(snapshot, dc):
        ids = {r.id for r, _, _ in node_services(snapshot, node) if r.name.lower() == wanted}
        if ids:
            out.extend(c for c in node_checks(snapshot, node) if c.check.service_id in ids)
    return out


def all_checks(snapshot: Snapshot, *, dc: str | None = None, state: str = "any",
               node_meta: Mapping[str, str] | None = None) -> list[CheckView]:  # fmt: skip
    """Every check in the catalog in ``state`` (``any`` = all), by node then CheckID."""
    out: list[CheckView] = []
    for node in catalog_nodes(snapshot, dc):
        if node_meta and not meta_match(node.meta, node_meta):
            continue
        out.extend(c for c in node_checks(snapshot, node) if state == "any" or c.check.status == state)
    return out
