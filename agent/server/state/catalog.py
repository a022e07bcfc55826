"""Catalog registrations kept by Raft (hashicorp/consul ``agent/consul/state/catalog.go``
``ensureRegistrationTxn``, ``ensureCheckTxn``, ``deleteServiceTxn``, ``deleteCheckTxn``, ``deleteNodeTxn``).

For nodes registered through ``/v1/catalog/register`` (external nodes).  Agent-owned nodes keep their
anti-entropy path (agent.catalog); docs/state.md says how the two meet.
"""

from __future__ import annotations

import attrs

from agent.catalog.record import CheckRecord, ServiceRecord

from .commands import CatalogDeregister, CatalogRegister
from .kvs import StateError
from .sessions import invalidate_check, invalidate_node
from .tables import CatalogCheck, CatalogNode, CatalogService, Tx, node_key

__all__ = ["deregister", "register"]

MISSING_NODE = "Missing node registration"
MISSING_SERVICE = "Missing service registration"


def _node_changes(cmd: CatalogRegister, existing: CatalogNode) -> bool:
    """``RegisterRequest.ChangesNode``: identity first, then (unless SkipNodeUpdate) the node's fields."""
    if cmd.id != existing.id or cmd.node.lower() != existing.node.lower():
        return True
    if cmd.skip_node_update:
        return False
    return (
        cmd.address != existing.address
        or cmd.datacenter != existing.datacenter
        or cmd.tagged_addresses != existing.tagged_addresses
        or cmd.node_meta != existing.meta
    )


def _ensure_service(tx: Tx, node: str, service: ServiceRecord) -> None:
    if node_key(node) not in tx.nodes:
        raise StateError(MISSING_NODE)
    key = (node_key(node), service.id)
    existing = tx.services.get(key)
    if existing is not None and existing.service == service:
        return
    create = tx.create_index(existing)
    tx.services = tx.services.set(key, CatalogService(node, service, create, tx.index))
    tx.touch("services", node_key(node))
    tx.touch_service(service.name)
    if existing is not None and existing.service.name.lower() != service.name.lower():
        _after_instance_gone(tx, existing.service.name)


def _ensure_check(tx: Tx, node: str, check: CheckRecord) -> None:
    if node_key(node) not in tx.nodes:
        raise StateError(MISSING_NODE)
    if check.service_id:
        owner = tx.services.get((node_key(node), check.service_id))
        if owner is None:
            raise StateError(MISSING_SERVICE)
        check = attrs.evolve(check, service_name=owner.service.name, service_tags=owner.service.tags)
    key = (node_key(node), check.id)
    existing = tx.checks.get(key)
    if existing is None or existing.check != check:
        create = tx.create_index(existing)
        tx.checks = tx.checks.set(key, CatalogCheck(node, check, create, tx.index))
        tx.touch("checks", node_key(node))
        if check.service_name:
            tx.touch_service(check.service_name)
    if check.status == "critical":
        invalidate_check(tx, node, check.id)


def register(tx: Tx, cmd: CatalogRegister) -> bool:
    """``ensureRegistrationTxn``: the node (only when it changes), then the service, then the checks."""
    if not cmd.node:
        raise StateError("Must provide node")
    if not cmd.address and not cmd.skip_node_update:
        raise StateError("Must provide address if SkipNodeUpdate is not set")
    key = node_key(cmd.node)
    existing = tx.nodes.get(key)
    if existing is None or _node_changes(cmd, existing):
        create = tx.create_index(existing)
        node = CatalogNode(
            cmd.node, cmd.address, cmd.id, cmd.datacenter, cmd.tagged_addresses, cmd.node_meta, create, tx.index
        )
        tx.nodes = tx.nodes.set(key, node)
        tx.touch("nodes", key)
    if cmd.service is not None:
        _ensure_service(tx, cmd.node, cmd.service)
    for check in cmd.checks:
        _ensure_check(tx, cmd.node, check)
    return True


def _delete_check(tx: Tx, key: tuple[str, str]) -> None:
    stored = tx.checks.get(key)
    if stored is None:
        return
    tx.checks = tx.checks.delete(key)
    tx.touch("checks", key[0])
    if stored.check.service_name:
        tx.touch_service(stored.check.service_name)
    invalidate_check(tx, stored.node, stored.check.id)


def _delete_service(tx: Tx, key: tuple[str, str]) -> None:
    stored = tx.services.get(key)
    if stored is None:
        return
    for check_key, check in sorted(tx.checks.items()):
        if check_key[0] == key[0] and check.check.service_id == key[1]:
            _delete_check(tx, check_key)
    tx.services = tx.services.delete(key)
    tx.touch("services", key[0])
    _after_instance_gone(tx, stored.service.name)


def _after_instance_gone(tx: Tx, name: str) -> None:
    lowered = name.lower()
    if any(s.service.name.lower() == lowered for s in tx.services.values()):
        tx.touch_service(name)
    else:
        tx.service_extinct(name)


def deregister(tx: Tx, cmd: CatalogDeregister) -> bool:
    """A service (and its checks), a check, or the whole node with its services, checks and (unless
    ``keep_sessions``) sessions.  Sessions bound to a deleted check go either way."""
    if not cmd.node:
        raise StateError("Must provide node")
    key = node_key(cmd.node)
    if cmd.service_id:
        _delete_service(tx, (key, cmd.service_id))
    elif cmd.check_id:
        _delete_check(tx, (key, cmd.check_id))
    elif key in tx.nodes:
        for service_key in sorted(k for k in tx.services if k[0] == key):
            _delete_service(tx, service_key)
        for check_key in sorted(k for k in tx.checks if k[0] == key):
            _delete_check(tx, check_key)
        if not cmd.keep_sessions:
            invalidate_node(tx, cmd.node)
        tx.nodes = tx.nodes.delete(key)
        tx.touch("nodes", key)
    return True
