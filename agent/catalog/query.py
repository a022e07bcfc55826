"""Reading the catalog out of a snapshot: pure functions the HTTP endpoints and the DNS answerer share.

A node is *in the catalog* when it is a Consul node (``role`` tag ``node`` or ``consul``) of the datacenter that
has not left (Consul's leader deregisters left nodes at once and keeps failed ones).  Its services are the ones
in its replicated record, plus the ``consul`` service on servers; its checks are ``serfHealth`` (derived from the
member status: passing while alive or leaving, critical when failed) plus the checks in its record.  Service
names and tags compare case-insensitively, as Consul's state store does.

``healthy_instances`` is DNS's view (consul-compat §3.3): instances with any critical check are dropped, and with
``passing_only`` warning ones too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import attrs
import immutables

from agent.catalog.indexed import IndexedNode
from agent.catalog.record import CheckRecord, ServiceRecord

if TYPE_CHECKING:
    from agent.members import Member, Snapshot

__all__ = [
    "CheckView",
    "Instance",
    "all_checks",
    "catalog_nodes",
    "consul_service_record",
    "healthy_instances",
    "in_catalog",
    "node_checks",
    "node_entry",
    "node_meta_of",
    "node_services",
    "service_checks",
    "service_instances",
    "service_tags",
    "worst_status",
]

STATUS_ALIVE, STATUS_LEAVING, STATUS_LEFT, STATUS_FAILED = 1, 2, 3, 4
_PRESENT = frozenset({STATUS_ALIVE, STATUS_LEAVING, STATUS_FAILED})
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
class Instance:
    """One service instance: its node (member), the node's meta, the service, and every check that applies."""

    member: Member
    node_meta: immutables.Map[str, str]
    service: ServiceRecord
    checks: tuple[CheckView, ...]
    create_index: int
    modify_index: int

    @property
    def node(self) -> str:
        return self.member.name

    @property
    def address(self) -> str:
        """Where to reach it: the service's own address, else the node's."""
        return self.service.address or self.member.addr

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
        member.status in _PRESENT
        and tags.get("role") in ("node", "consul")
        and (dc is None or tags.get("dc") == dc)
    )


def catalog_nodes(snapshot: Snapshot, dc: str | None = None) -> list[Member]:
    """Nodes in the catalog, by name (case-insensitive first, as Consul's index orders them)."""
    members = [m for m in snapshot.members.values() if in_catalog(m, dc)]
    members.sort(key=lambda m: (m.name.lower(), m.name))
    return members


def node_entry(snapshot: Snapshot, node: str) -> IndexedNode | None:
    return snapshot.catalog.get(node)


def node_meta_of(snapshot: Snapshot, node: str) -> immutables.Map[str, str]:
    """The node meta its owner published in its record (empty until the record arrives)."""
    entry: IndexedNode | None = snapshot.catalog.get(node)
    return entry.record.meta if entry is not None else immutables.Map()


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
        "version": member.tags.get("build", "").split(":", 1)[0],
    }
    for tag in ("grpc_port", "grpc_tls_port"):
        if tag in member.tags:
            meta[tag] = member.tags[tag]
    return ServiceRecord(id="consul", name="consul", port=port, meta=meta)


def serf_health(member: Member) -> CheckView:
    alive = member.status in (STATUS_ALIVE, STATUS_LEAVING)
    check = CheckRecord(
        id=SERF_CHECK_ID,
        name=SERF_CHECK_NAME,
        status="passing" if alive else "critical",
        output=SERF_ALIVE if alive else SERF_DEAD,
    )
    return CheckView(member.name, check, member.create_index, member.modify_index)


def node_services(snapshot: Snapshot, member: Member) -> list[tuple[ServiceRecord, int, int]]:
    """(service, create, modify) of one node: the ``consul`` service first on servers, then its record's."""
    out: list[tuple[ServiceRecord, int, int]] = []
    consul = consul_service_record(member)
    if consul is not None:
        out.append((consul, member.create_index, member.modify_index))
    entry: IndexedNode | None = snapshot.catalog.get(member.name)
    if entry is not None:
        for service in entry.record.services:
            if consul is not None and service.id == "consul":
                continue
            out.append((service, *entry.service_indexes(service.id)))
    return out


def node_checks(snapshot: Snapshot, member: Member) -> list[CheckView]:
    """serfHealth and the node's own checks, by CheckID (Consul's order for /v1/health/node)."""
    checks = [serf_health(member)]
    entry: IndexedNode | None = snapshot.catalog.get(member.name)
    if entry is not None:
        checks.extend(CheckView(member.name, c, *entry.check_indexes(c.id)) for c in entry.record.checks)
    checks.sort(key=lambda v: v.check.id)
    return checks


def _tags_match(service: ServiceRecord, tags: Iterable[str]) -> bool:
    have = {t.lower() for t in service.tags}
    return all(t.lower() in have for t in tags)


def _meta_match(meta: Mapping[str, str], filters: Mapping[str, str] | None) -> bool:
    return not filters or all(k in meta and meta[k] == v for k, v in filters.items())


def full_node_meta(snapshot: Snapshot, member: Member) -> dict[str, str]:
    """Consul's node meta: ``consul-network-segment``, ``consul-version``, then the owner's ``node_meta``."""
    meta = {"consul-network-segment": ""}
    if version := member.tags.get("build", "").split(":", 1)[0]:
        meta["consul-version"] = version
    meta.update(node_meta_of(snapshot, member.name))
    return meta


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
    for member in catalog_nodes(snapshot, dc):
        if node_meta and not _meta_match(full_node_meta(snapshot, member), node_meta):
            continue
        services = [s for s in node_services(snapshot, member) if s[0].name.lower() == wanted]
        if not services:
            continue
        base = node_checks(snapshot, member)
        for record, create, modify in sorted(services, key=lambda s: s[0].id):
            if tags and not _tags_match(record, tags):
                continue
            checks = tuple(c for c in base if c.check.service_id in ("", record.id))
            out.append(Instance(member, node_meta_of(snapshot, member.name), record, checks, create, modify))
    return out


def healthy_instances(
    snapshot: Snapshot, service: str, tag: str | None = None, passing_only: bool = False, *, dc: str | None = None
) -> list[Instance]:
    """Instances DNS may answer with: no critical check (and no warning one with ``passing_only``)."""
    limit = 0 if passing_only else 1
    return [
        i
        for i in service_instances(snapshot, service, dc=dc, tags=(tag,) if tag else ())
        if all(_RANK.get(c.check.status, 2) <= limit for c in i.checks)
    ]


def service_tags(snapshot: Snapshot, *, dc: str | None = None,
                 node_meta: Mapping[str, str] | None = None) -> dict[str, list[str]]:  # fmt: skip
    """``{service name: sorted union of tags}`` over the catalog (``/v1/catalog/services``)."""
    out: dict[str, set[str]] = {}
    for member in catalog_nodes(snapshot, dc):
        if node_meta and not _meta_match(full_node_meta(snapshot, member), node_meta):
            continue
        for record, _, _ in node_services(snapshot, member):
            out.setdefault(record.name, set()).update(record.tags)
    return {name: sorted(out[name]) for name in sorted(out)}


def service_checks(snapshot: Snapshot, service: str, *, dc: str | None = None) -> list[CheckView]:
    """The checks of every instance of ``service`` (service checks only, as Consul's /v1/health/checks)."""
    wanted = service.lower()
    out: list[CheckView] = []
    for member in catalog_nodes(snapshot, dc):
        ids = {r.id for r, _, _ in node_services(snapshot, member) if r.name.lower() == wanted}
        if ids:
            out.extend(c for c in node_checks(snapshot, member) if c.check.service_id in ids)
    return out


def all_checks(snapshot: Snapshot, *, dc: str | None = None, state: str = "any") -> list[CheckView]:
    """Every check in the catalog in ``state`` (``any`` = all), by node then CheckID."""
    out: list[CheckView] = []
    for member in catalog_nodes(snapshot, dc):
        out.extend(c for c in node_checks(snapshot, member) if state == "any" or c.check.status == state)
    return out
