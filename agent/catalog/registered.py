"""Nodes registered through ``/v1/catalog/register``, as every agent's snapshot holds them (docs/state.md).

The servers keep these nodes in their Raft store (`agent.server.state`); each agent runs a mirror
(`agent.server.mirror`) that follows the store with a blocking query and publishes what it read into the member
table (``Snapshot.registered``), where `agent.catalog.query` merges them with the agents' own nodes.  This module
is the data both ends share: the frozen records, and their wire form (the query's answer crosses the server port
as msgpack, so a client agent receives exactly what a server read).  ``WireDecoder.decode`` checks every field
(the bytes come from the network) and names the first bad one.
"""

from __future__ import annotations

from typing import Any

import attrs
import immutables

from agent.catalog.record import (
    CheckRecord,
    RecordError,
    ServiceRecord,
    check_from_wire,
    check_int,
    check_to_wire,
    frozen_map,
    meta_from_wire,
    service_from_wire,
    service_to_wire,
    text_from_wire,
)

__all__ = ["CatalogNode", "Registered", "RegisteredNode", "WireDecoder", "registered_from_wire", "registered_to_wire"]

#: (record, CreateIndex, ModifyIndex): the indexes are the store's (Raft indexes).
IndexedService = tuple[ServiceRecord, int, int]
IndexedCheck = tuple[CheckRecord, int, int]


@attrs.frozen
class CatalogNode:
    """A node registered through ``/v1/catalog/register`` (Consul's ``structs.Node``): the store's row
    (`agent.server.state.tables`), and the node part of every agent's `RegisteredNode`."""

    node: str
    address: str
    id: str = ""
    datacenter: str = ""
    tagged_addresses: immutables.Map[str, str] = attrs.field(factory=immutables.Map, converter=frozen_map)
    meta: immutables.Map[str, str] = attrs.field(factory=immutables.Map, converter=frozen_map)
    create_index: int = 0
    modify_index: int = 0


@attrs.frozen
class RegisteredNode(CatalogNode):
    """One registered (external) node with its services and checks (Consul's ``structs.Node`` and children)."""

    services: tuple[IndexedService, ...] = ()  # by service ID
    checks: tuple[IndexedCheck, ...] = ()  # by check ID


@attrs.frozen
class Registered:
    """Every registered node, by lower-cased name (Consul's node names ignore case), and the store's index of
    what was read (the highest of its ``nodes``, ``services`` and ``checks`` tables)."""

    index: int = 0
    nodes: immutables.Map[str, RegisteredNode] = attrs.field(factory=immutables.Map)

    @classmethod
    def of(cls, index: int, nodes: list[RegisteredNode] | tuple[RegisteredNode, ...]) -> Registered:
        return cls(index, immutables.Map({n.node.lower(): n for n in nodes}))


# ------------------------------------------------------------------ wire form: [node fields..., services, checks]


def _node_to_wire(n: RegisteredNode) -> list[Any]:
    return [
        n.node, n.address, n.id, n.datacenter, dict(n.tagged_addresses), dict(n.meta), n.create_index,
        n.modify_index,
        [[service_to_wire(s), c, m] for s, c, m in n.services],
        [[check_to_wire(k), c, m] for k, c, m in n.checks],
    ]  # fmt: skip


def registered_to_wire(nodes: list[RegisteredNode] | tuple[RegisteredNode, ...]) -> list[Any]:
    """The nodes as a msgpack-ready list (what the ``catalog.registered`` query answers)."""
    return [_node_to_wire(n) for n in nodes]


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise RecordError(f"{what}: expected a list")
    return list(value)


def _indexed(raw: Any, what: str) -> tuple[Any, int, int]:
    row = _list(raw, what)
    if len(row) != 3:
        raise RecordError(f"{what}: expected [record, create index, modify index]")
    return row[0], check_int(row[1], f"{what}.create_index"), check_int(row[2], f"{what}.modify_index")


def _node_from_wire(raw: Any, at: int) -> RegisteredNode:
    row = _list(raw, f"registered node {at}")
    if len(row) != 10:
        raise RecordError(f"registered node {at}: expected 10 fields, got {len(row)}")
    name = text_from_wire(row[0], f"registered node {at}.node")
    what = f"registered node {name}"
    services: list[IndexedService] = []
    for raw_service in _list(row[8], f"{what}.services"):
        body, create, modify = _indexed(raw_service, f"{what}: service")
        services.append((service_from_wire(body, f"{what}: service"), create, modify))
    checks: list[IndexedCheck] = []
    for raw_check in _list(row[9], f"{what}.checks"):
        body, create, modify = _indexed(raw_check, f"{what}: check")
        checks.append((check_from_wire(body, f"{what}: check"), create, modify))
    return RegisteredNode(
        node=name,
        address=text_from_wire(row[1], f"{what}.address"),
        id=text_from_wire(row[2], f"{what}.id"),
        datacenter=text_from_wire(row[3], f"{what}.datacenter"),
        tagged_addresses=meta_from_wire(row[4], f"{what}.tagged_addresses"),
        meta=meta_from_wire(row[5], f"{what}.meta"),
        create_index=check_int(row[6], f"{what}.create_index"),
        modify_index=check_int(row[7], f"{what}.modify_index"),
        services=tuple(services),
        checks=tuple(checks),
    )


class WireDecoder:
    """Decodes a mirror's successive answers, reusing each node whose row did not change since the last answer:
    comparing a row with the last one is a C-level walk, far cheaper than validating it again, so an agent pays
    for what changed, not for every registered node on every change."""

    def __init__(self) -> None:
        self._rows: dict[str, tuple[Any, RegisteredNode]] = {}

    def decode(self, index: int, raw: Any) -> Registered:
        """The answer as a `Registered`; RecordError (a ValueError) names the first bad field, and then nothing
        is remembered from it."""
        rows: dict[str, tuple[Any, RegisteredNode]] = {}
        nodes: list[RegisteredNode] = []
        for at, row in enumerate(_list(raw, "registered nodes")):
            known = self._rows.get(row[0]) if isinstance(row, list) and row and isinstance(row[0], str) else None
            node = known[1] if known is not None and known[0] == row else _node_from_wire(row, at)
            rows[node.node] = (row, node)
            nodes.append(node)
        registered = Registered.of(check_int(index, "registered.index"), nodes)
        self._rows = rows
        return registered


def registered_from_wire(index: int, raw: Any) -> Registered:
    """One answer as a `Registered` (no memory of earlier ones); RecordError names the first bad field."""
    return WireDecoder().decode(index, raw)
