"""Consul's JSON for ACL tokens, policies and roles, as ``/v1/acl/*`` shows them (pure functions of a `State`).

Key order and ``omitempty`` follow hashicorp/consul ``agent/structs/acl.go`` (``ACLToken``, ``ACLTokenListStub``,
``ACLPolicy``, ``ACLPolicyListStub``, ``ACLRole``) as Community Edition writes them (no namespace or partition).
Links are stored by ID; their names are the linked objects' current ones, and a link to an object that is gone
is left out (Consul's ``fixupTokenPolicyLinks``).  Times are Go's RFC 3339 with nanoseconds, in UTC; ``Hash`` is
base64 as Go writes ``[]byte``.
"""

from __future__ import annotations

import base64
import datetime
from typing import Any

from agent.gostrings import valid_utf8

from .tables import ACLPolicy, ACLRole, ACLToken, NodeIdentity, ServiceIdentity, State

__all__ = [
    "REDACTED",
    "go_time",
    "policy_json",
    "policy_stub_json",
    "role_json",
    "token_json",
]

#: What a token's SecretID shows to a reader without ``acl:write`` (Consul's ``redactedToken``).
REDACTED = "<hidden>"


def go_time(ns: int) -> str:
    """Go's ``time.Time`` JSON (RFC 3339, fraction trimmed of trailing zeros) of ``ns`` since the epoch, UTC."""
    seconds, fraction = divmod(ns, 10**9)
    moment = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(seconds=seconds)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if fraction:
        text += "." + f"{fraction:09d}".rstrip("0")
    return text + "Z"


def _hash(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _links(state: State, ids: tuple[str, ...], table: str) -> list[dict[str, str]]:
    objects: Any = state.acl_policies if table == "policies" else state.acl_roles
    return [{"ID": i, "Name": valid_utf8(objects[i].name)} for i in ids if i in objects]


def _identities(out: dict[str, Any], services: tuple[ServiceIdentity, ...], nodes: tuple[NodeIdentity, ...]) -> None:
    if services:
        out["ServiceIdentities"] = [
            {"ServiceName": name, **({"Datacenters": list(dcs)} if dcs else {})} for name, dcs in services
        ]
    if nodes:
        out["NodeIdentities"] = [{"NodeName": name, "Datacenter": dc} for name, dc in nodes]


def token_json(state: State, token: ACLToken, *, show_secret: bool = True) -> dict[str, Any]:
    """An ``ACLToken`` (``/v1/acl/token/:id``, ``/token/self``; ``/bootstrap`` adds ``ID``), and each of
    ``/v1/acl/tokens`` (an ``ACLTokenListStub`` has the same fields in the same order)."""
    out: dict[str, Any] = {
        "AccessorID": token.accessor_id,
        "SecretID": token.secret_id if show_secret else REDACTED,
        "Description": valid_utf8(token.description),
    }
    policies = _links(state, token.policies, "policies")
    if policies:
        out["Policies"] = policies
    roles = _links(state, token.roles, "roles")
    if roles:
        out["Roles"] = roles
    _identities(out, token.service_identities, token.node_identities)
    out["Local"] = token.local
    if token.expiration_time:
        out["ExpirationTime"] = go_time(token.expiration_time)
    out["CreateTime"] = go_time(token.create_time)
    out["Hash"] = _hash(token.hash)
    out["CreateIndex"] = token.create_index
    out["ModifyIndex"] = token.modify_index
    return out


def policy_json(policy: ACLPolicy) -> dict[str, Any]:
    """An ``ACLPolicy`` (``/v1/acl/policy/:id``): ``Datacenters`` only when set."""
    out: dict[str, Any] = {
        "ID": policy.id,
        "Name": valid_utf8(policy.name),
        "Description": valid_utf8(policy.description),
        "Rules": valid_utf8(policy.rules),
    }
    if policy.datacenters:
        out["Datacenters"] = list(policy.datacenters)
    out["Hash"] = _hash(policy.hash)
    out["CreateIndex"] = policy.create_index
    out["ModifyIndex"] = policy.modify_index
    return out


def policy_stub_json(policy: ACLPolicy) -> dict[str, Any]:
    """An ``ACLPolicyListStub`` (``/v1/acl/policies``): no rules; ``Datacenters`` always (null when none)."""
    return {
        "ID": policy.id,
        "Name": valid_utf8(policy.name),
        "Description": valid_utf8(policy.description),
        "Datacenters": list(policy.datacenters) or None,
        "Hash": _hash(policy.hash),
        "CreateIndex": policy.create_index,
        "ModifyIndex": policy.modify_index,
    }


def role_json(state: State, role: ACLRole) -> dict[str, Any]:
    """An ``ACLRole`` (``/v1/acl/role/:id`` and each of ``/v1/acl/roles``)."""
    out: dict[str, Any] = {
        "ID": role.id,
        "Name": valid_utf8(role.name),
        "Description": valid_utf8(role.description),
    }
    policies = _links(state, role.policies, "policies")
    if policies:
        out["Policies"] = policies
    _identities(out, role.service_identities, role.node_identities)
    out["Hash"] = _hash(role.hash)
    out["CreateIndex"] = role.create_index
    out["ModifyIndex"] = role.modify_index
    return out
