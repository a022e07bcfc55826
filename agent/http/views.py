"""JSON shapes (consul-compat §1.1) built from member-table snapshots: pure functions, no I/O.

Key order follows Consul's Go structs (struct fields in declaration order); Go maps are written with sorted keys,
so every map here is built sorted.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from agent.catalog.query import agent_node_meta

if TYPE_CHECKING:
    from agent.catalog.query import NodeView
    from agent.members import Member

__all__ = [
    "member_json",
    "node_json",
    "node_view_json",
]


def _sorted(mapping: Mapping[str, str]) -> dict[str, str]:
    return {k: mapping[k] for k in sorted(mapping)}


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


def tagged_addresses(addr: str) -> dict[str, str]:
    """``lan``/``wan`` plus their ``_ipv4``/``_ipv6`` variants, all the member's address (no WAN advertise)."""
    try:
        family = "ipv6" if ipaddress.ip_address(addr).version == 6 else "ipv4"
    except ValueError:
        family = "ipv4"
    return _sorted({"lan": addr, f"lan_{family}": addr, "wan": addr, f"wan_{family}": addr})


def node_json(member: Member, local_meta: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A catalog **Node**: ID from the ``id`` tag, DC from the ``dc`` tag, indexes from the member record."""
    return {
        "ID": member.tags.get("id", ""),
        "Node": member.name,
        "Address": member.addr,
        "Datacenter": member.tags.get("dc", ""),
        "TaggedAddresses": tagged_addresses(member.addr),
        "Meta": agent_node_meta(member, local_meta),
        "CreateIndex": member.create_index,
        "ModifyIndex": member.modify_index,
    }


def node_view_json(view: NodeView, local_meta: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A catalog **Node** of the merged catalog: an agent node as `node_json` shows it (its own meta, or
    ``local_meta`` for this agent's node), a registered node as it was registered (its ID, datacenter, tagged
    addresses and meta; maps ``{}`` when empty; indexes the store's)."""
    if view.member is not None:  # the catalog's indexes for the node, not the member's (agent.catalog.indexes)
        out = node_json(view.member, view.meta if local_meta is None else local_meta)
        out["CreateIndex"], out["ModifyIndex"] = view.create_index, view.modify_index
        return out
    registered = view.registered
    assert registered is not None
    return {
        "ID": registered.id,
        "Node": registered.node,
        "Address": registered.address,
        "Datacenter": registered.datacenter,
        "TaggedAddresses": _sorted(registered.tagged_addresses),
        "Meta": _sorted(registered.meta),
        "CreateIndex": registered.create_index,
        "ModifyIndex": registered.modify_index,
    }
