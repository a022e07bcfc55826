"""Consul's JSON for the state's records, as its HTTP API shows them: pure functions for the HTTP layer.

Key order follows Consul's Go structs (``structs.DirEntry``, ``structs.Session``, ``structs.TxnResponse``);
sources: kv.mdx, session.mdx, txn.mdx and wave2-anchors §2.1-2.4.
"""

from __future__ import annotations

import base64
from typing import Any

from agent.gostrings import valid_utf8

from .tables import CatalogNode, KVEntry, Session
from .txn import TxnOutcome

__all__ = ["catalog_node_json", "kv_entry_json", "session_json", "txn_json"]


def kv_entry_json(entry: KVEntry, *, with_value: bool = True) -> dict[str, Any]:
    """A ``DirEntry``: ``Value`` base64 (``null`` when empty or blanked), ``Session`` only while locked."""
    out: dict[str, Any] = {
        "LockIndex": entry.lock_index,
        "Key": valid_utf8(entry.key),
        "Flags": entry.flags,
        "Value": base64.b64encode(entry.value).decode() if with_value and entry.value else None,
    }
    if entry.session:
        out["Session"] = entry.session
    out["CreateIndex"] = entry.create_index
    out["ModifyIndex"] = entry.modify_index
    return out


def session_json(session: Session) -> dict[str, Any]:
    """A ``Session``: LockDelay in nanoseconds; ``Checks`` (deprecated) only when set; empty lists as Go
    writes them (``ServiceChecks`` null when none)."""
    out: dict[str, Any] = {
        "ID": session.id,
        "Name": valid_utf8(session.name),
        "Node": valid_utf8(session.node),
        "LockDelay": session.lock_delay,
        "Behavior": session.behavior,
        "TTL": session.ttl,
        "NodeChecks": [valid_utf8(c) for c in session.node_checks],
        "ServiceChecks": [{"ID": valid_utf8(i), "Namespace": ns} for i, ns in session.service_checks] or None,
    }
    if session.checks:
        out["Checks"] = [valid_utf8(c) for c in session.checks]
    out["CreateIndex"] = session.create_index
    out["ModifyIndex"] = session.modify_index
    return out


def txn_json(outcome: TxnOutcome) -> dict[str, Any]:
    """``TxnResponse``: ``{"Results": [{"KV": ...}], "Errors": null}`` (200) or ``{"Results": null, "Errors":
    [{"OpIndex", "What"}]}`` (409).  Results carry values only for get/get-tree (the rules blank the rest)."""
    if not outcome.ok:
        return {"Results": None, "Errors": [{"OpIndex": i, "What": what} for i, what in outcome.errors]}
    return {"Results": [{"KV": kv_entry_json(e)} for e in outcome.results], "Errors": None}


def catalog_node_json(node: CatalogNode) -> dict[str, Any]:
    """A registered node as ``/v1/catalog/nodes`` lists it."""
    return {
        "ID": node.id,
        "Node": valid_utf8(node.node),
        "Address": node.address,
        "Datacenter": node.datacenter,
        "TaggedAddresses": {k: node.tagged_addresses[k] for k in sorted(node.tagged_addresses)},
        "Meta": {k: node.meta[k] for k in sorted(node.meta)},
        "CreateIndex": node.create_index,
        "ModifyIndex": node.modify_index,
    }
