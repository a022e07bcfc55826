"""JSON shapes (consul-compat §1.1) built from member-table snapshots: pure functions, no I/O.

Key order follows Consul's Go structs (struct fields in declaration order); Go maps are written with sorted keys,
so every map here is built sorted.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.members import Member, Snapshot

__all__ = [
    "CATALOG_STATUSES",
    "catalog_members",
    "find_member",
    "in_catalog",
    "known_servers",
    "member_json",
    "node_json",
    "node_meta",
    "version_of",
]

STATUS_ALIVE, STATUS_LEAVING, STATUS_LEFT, STATUS_FAILED = 1, 2, 3, 4
#: Members the catalog lists: left ones are deregistered at once; failed ones stay (serfHealth critical).
CATALOG_STATUSES = frozenset({STATUS_ALIVE, STATUS_LEAVING, STATUS_FAILED})


def _sorted(mapping: Mapping[str, str]) -> dict[str, str]:
    return {k: mapping[k] for k in sorted(mapping)}


def version_of(member: Member) -> str:
    """The Consul version in a member's ``build`` tag (``1.20.1:2c7bc1d0`` -> ``1.20.1``), ``""`` if none."""
    return member.tags.get("build", "").split(":", 1)[0]


def member_json(member: Member) -> dict[str, Any]:
    """A Serf member (``/v1/agent/members``, ``Member`` of ``/v1/agent/self``); Status is Serf's integer."""
    return {
        "Name": member.name,
        "Addr": member.addr,
        "Port": member.port,
        "Tags": _sorted(member.tags),
        "Status": member.status,
        "ProtocolMin": member.protocol_min,
        "ProtocolMax": member.protocol_max,
        "ProtocolCur": member.protocol_cur,
        "DelegateMin": member.delegate_min,
        "DelegateMax": member.delegate_max,
        "DelegateCur": member.delegate_cur,
    }


def _is_consul_node(member: Member, dc: str) -> bool:
    """Consul's leader registers a LAN member only if it is a Consul node (``role`` node/consul) of this DC."""
    return member.tags.get("role") in ("node", "consul") and member.tags.get("dc") == dc


def in_catalog(member: Member, dc: str) -> bool:
    """Whether the catalog lists ``member``: a Consul node of this DC that has not left."""
    return member.status in CATALOG_STATUSES and _is_consul_node(member, dc)


def catalog_members(snapshot: Snapshot, dc: str) -> list[Member]:
    """The members the catalog lists, ordered as Consul's node index orders them (case-insensitive name)."""
    members = [m for m in snapshot.members.values() if in_catalog(m, dc)]
    members.sort(key=lambda m: (m.name.lower(), m.name))
    return members


def find_member(snapshot: Snapshot, name: str) -> Member | None:
    """The member called ``name``; Consul's node names compare case-insensitively."""
    member = snapshot.members.get(name)
    if member is not None:
        return member
    lowered = name.lower()
    for candidate in snapshot.members.values():
        if candidate.name.lower() == lowered:
            return candidate
    return None


def tagged_addresses(addr: str) -> dict[str, str]:
    """``lan``/``wan`` plus their ``_ipv4``/``_ipv6`` variants, all the member's address (no WAN advertise)."""
    try:
        family = "ipv6" if ipaddress.ip_address(addr).version == 6 else "ipv4"
    except ValueError:
        family = "ipv4"
    return _sorted({"lan": addr, f"lan_{family}": addr, "wan": addr, f"wan_{family}": addr})


def node_meta(member: Member, local_meta: Mapping[str, str] | None) -> dict[str, str]:
    """Every agent node has ``consul-network-segment`` and (1.16+) ``consul-version``; the local node adds its
    ``node_meta`` (other nodes' meta reaches Consul through their own anti-entropy, which gossip doesn't carry)."""
    meta: dict[str, str] = {"consul-network-segment": ""}
    if version := version_of(member):
        meta["consul-version"] = version
    if local_meta:
        meta.update(local_meta)
    return _sorted(meta)


def node_json(member: Member, local_meta: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A catalog **Node**: ID from the ``id`` tag, DC from the ``dc`` tag, indexes from the member record."""
    return {
        "ID": member.tags.get("id", ""),
        "Node": member.name,
        "Address": member.addr,
        "Datacenter": member.tags.get("dc", ""),
        "TaggedAddresses": tagged_addresses(member.addr),
        "Meta": node_meta(member, local_meta),
        "CreateIndex": member.create_index,
        "ModifyIndex": member.modify_index,
    }


def known_servers(members: Iterable[Member], dc: str) -> list[Member]:
    """Alive servers of this DC: what a client agent could forward an RPC to."""
    return [
        m for m in members if m.status == STATUS_ALIVE and m.tags.get("role") == "consul" and m.tags.get("dc") == dc
    ]
