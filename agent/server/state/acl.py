"""Consul's ACL rules on a `Tx`: bootstrap, tokens, policies and roles (hashicorp/consul
``agent/consul/state/acl.go`` and the state-dependent checks of ``agent/consul/acl_endpoint.go``).

Consul checks links, names and IDs in the endpoint, on the leader, before the entry is proposed, and the store
checks some again; here every check that reads the state runs in the apply, so two writes racing through the log
cannot both pass (two policies with one name, a token linked to a policy deleted meanwhile).  The checks that
read nothing but the request (UUID syntax, name syntax, the rules' syntax) are `acl_leader`'s, before proposing.
Each refusal raises `StateError` with Consul's text; the store answers `Failed(<text>)` and changes nothing.

Tables and indexes are Consul's: ``acl-tokens``, ``acl-policies``, ``acl-roles``, and the bootstrap marker
``acl-token-bootstrap`` in the index table, holding the Raft index of the bootstrap (the "reset index").
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import attrs

from agent.acl.builtin import (
    ANONYMOUS_TOKEN_ID,
    GLOBAL_MANAGEMENT_DESCRIPTION,
    GLOBAL_MANAGEMENT_ID,
    GLOBAL_MANAGEMENT_NAME,
    GLOBAL_MANAGEMENT_RULES,
    GLOBAL_READ_ONLY_ID,
)
from agent.durations import go_duration
from agent.gostrings import go_quote

from . import commands as c
from .kvs import StateError
from .tables import ACLPolicy, ACLRole, ACLToken, NodeIdentity, ServiceIdentity, State, Tx

__all__ = [
    "BOOTSTRAP_MARK",
    "MAX_EXPIRATION_TTL",
    "MIN_EXPIRATION_TTL",
    "bootstrap",
    "bootstrap_state",
    "delete_policy",
    "delete_role",
    "delete_token",
    "policy_by_name",
    "policy_hash",
    "role_by_name",
    "role_hash",
    "set_policy",
    "set_role",
    "set_token",
    "token_by_secret",
    "token_hash",
]

BOOTSTRAP_MARK = "acl-token-bootstrap"
TOKENS, POLICIES, ROLES = "acl-tokens", "acl-policies", "acl-roles"
SEC = 10**9
#: Consul's defaults for ``acl.token_min_expiration_ttl`` / ``token_max_expiration_ttl`` (1m, 24h).
MIN_EXPIRATION_TTL = 60 * SEC
MAX_EXPIRATION_TTL = 24 * 3600 * SEC
#: The built-in policies, as Consul's texts about them name them.
_BUILTINS = {GLOBAL_MANAGEMENT_ID: "global-management", GLOBAL_READ_ONLY_ID: "global-read-only"}


# ------------------------------------------------------------------ hashes (structs SetHash: blake2b-256)


def _blake(parts: Iterable[str]) -> bytes:
    h = hashlib.blake2b(digest_size=32)
    for part in parts:
        h.update(part.encode("utf-8", "surrogateescape"))
    return h.digest()


def _identity_parts(services: Iterable[ServiceIdentity], nodes: Iterable[NodeIdentity]) -> list[str]:
    parts: list[str] = []
    for name, dcs in services:
        parts += [name, *dcs]
    for name, dc in nodes:
        parts += [name, dc]
    return parts


def token_hash(t: ACLToken) -> bytes:
    """``ACLToken.SetHash``: description, locality, policy IDs, role IDs, identities."""
    return _blake([t.description, "local" if t.local else "global", *t.policies, *t.roles,
                   *_identity_parts(t.service_identities, t.node_identities)])  # fmt: skip


def policy_hash(p: ACLPolicy) -> bytes:
    """``ACLPolicy.SetHash``: name, description, rules, datacenters."""
    return _blake([p.name, p.description, p.rules, *p.datacenters])


def role_hash(r: ACLRole) -> bytes:
    """``ACLRole.SetHash``: name, description, policy IDs, identities."""
    return _blake([r.name, r.description, *r.policies, *_identity_parts(r.service_identities, r.node_identities)])


# ------------------------------------------------------------------ lookups


def token_by_secret(state: State | Tx, secret: str) -> ACLToken | None:
    accessor = state.acl_secrets.get(secret)
    return None if accessor is None else state.acl_tokens.get(accessor)


def policy_by_name(state: State | Tx, name: str) -> ACLPolicy | None:
    return next((p for p in state.acl_policies.values() if p.name == name), None)


def role_by_name(state: State | Tx, name: str) -> ACLRole | None:
    return next((r for r in state.acl_roles.values() if r.name == name), None)


def bootstrap_state(state: State) -> tuple[bool, int]:
    """``CanBootstrapACLToken``: (allowed, reset index); the reset index is the bootstrap's Raft index."""
    mark = state.indexes.get(BOOTSTRAP_MARK, 0)
    return mark == 0, mark


# ------------------------------------------------------------------ links (tokenSetInternal, roleSetInternal)


def _links(tx: Tx, links: Iterable[tuple[str, str]], kind: str) -> tuple[str, ...]:
    """Policy or role links (ID, name) as IDs: an ID must exist, a name is looked up; duplicates go."""
    table: Any = tx.acl_policies if kind == "policy" else tx.acl_roles
    by_name = policy_by_name if kind == "policy" else role_by_name
    ids: dict[str, None] = {}
    for link_id, name in links:
        if not link_id:
            found = by_name(tx, name)
            if found is None:
                raise StateError(f"No such ACL {kind} with name {go_quote(name)}")
            link_id = found.id
        elif link_id not in table:
            raise StateError(f"No such ACL {kind} with ID {go_quote(link_id)}")
        ids.setdefault(link_id, None)
    return tuple(ids)


def _service_identities(ids: Iterable[ServiceIdentity]) -> tuple[ServiceIdentity, ...]:
    """``ACLServiceIdentities.Deduplicate``: one per service name, datacenters merged and sorted."""
    merged: dict[str, set[str]] = {}
    for name, dcs in ids:
        merged.setdefault(name, set()).update(dcs)
    return tuple((name, tuple(sorted(dcs))) for name, dcs in merged.items())


def _node_identities(ids: Iterable[NodeIdentity]) -> tuple[NodeIdentity, ...]:
    return tuple(dict.fromkeys(ids))


# ------------------------------------------------------------------ tokens


def _put_token(tx: Tx, token: ACLToken) -> ACLToken:
    old = tx.acl_tokens.get(token.accessor_id)
    token = attrs.evolve(token, create_index=tx.create_index(old),
                         modify_index=tx.index)  # fmt: skip
    token = attrs.evolve(token, hash=token_hash(token))
    tx.put_token(token)
    tx.touch(TOKENS, token.accessor_id)
    return token


def _check_ids_free(tx: Tx, accessor_id: str, secret_id: str) -> None:
    """A new token's IDs are given (``ErrMissingACLToken...``) and neither an accessor nor a secret in use
    (either way round)."""
    if not accessor_id:
        raise StateError("Missing ACL Token AccessorID")
    if not secret_id:
        raise StateError("Missing ACL Token SecretID")
    if accessor_id in tx.acl_tokens or accessor_id in tx.acl_secrets:
        raise StateError("Invalid Token: AccessorID is already in use")
    if secret_id in tx.acl_secrets or secret_id in tx.acl_tokens:
        raise StateError("Invalid Token: SecretID is already in use")


def bootstrap(tx: Tx, cmd: c.ACLBootstrap) -> str:
    """``ACLBootstrap``: refused once bootstrapped unless ``reset_index`` names the bootstrap's index (the
    operator's reset file); the new token links global-management; the marker takes this entry's index."""
    mark = tx.base.indexes.get(BOOTSTRAP_MARK, 0)
    if mark:
        if cmd.reset_index == 0:
            raise StateError(f"ACL bootstrap no longer allowed (reset index: {mark})")
        if cmd.reset_index != mark:
            raise StateError(f"Invalid bootstrap reset index (specified {cmd.reset_index}, reset index: {mark})")
    if GLOBAL_MANAGEMENT_ID not in tx.acl_policies:  # the leader's initialisation has not been applied yet
        _put_builtin_management(tx)
    _check_ids_free(tx, cmd.accessor_id, cmd.secret_id)
    token = ACLToken(cmd.accessor_id, cmd.secret_id, cmd.description, (GLOBAL_MANAGEMENT_ID,), create_time=tx.now)
    _put_token(tx, token)
    tx.mark(BOOTSTRAP_MARK, tx.index)
    return cmd.accessor_id


def _put_builtin_management(tx: Tx) -> None:
    policy = ACLPolicy(GLOBAL_MANAGEMENT_ID, GLOBAL_MANAGEMENT_NAME, GLOBAL_MANAGEMENT_DESCRIPTION,
                       GLOBAL_MANAGEMENT_RULES)  # fmt: skip
    tx.acl_policies = tx.acl_policies.set(
        policy.id, attrs.evolve(policy, hash=policy_hash(policy), create_index=tx.index, modify_index=tx.index)
    )
    tx.touch(POLICIES, policy.id)


def _expiration(tx: Tx, cmd: c.ACLTokenSet) -> int:
    """Create: ExpirationTTL into ExpirationTime from CreateTime (``now``), and its bounds."""
    expires = cmd.expiration_time
    if cmd.expiration_ttl:
        if expires:
            raise StateError("Token Expiration TTL and Expiration Time cannot both be set")
        expires = tx.now + cmd.expiration_ttl
    if expires:
        if expires < tx.now:
            raise StateError("ExpirationTime cannot be before CreateTime")
        ahead = expires - tx.now
        if ahead > MAX_EXPIRATION_TTL:
            raise StateError(f"ExpirationTime cannot be more than 24h0m0s in the future (was {_go_dur(ahead)})")
        if ahead < MIN_EXPIRATION_TTL:
            raise StateError(f"ExpirationTime cannot be less than 1m0s in the future (was {_go_dur(ahead)})")
    return expires


def _go_dur(ns: int) -> str:
    return go_duration(ns / SEC)


def _expired(token: ACLToken, now: int) -> bool:
    return token.expiration_time != 0 and token.expiration_time < now


def set_token(tx: Tx, cmd: c.ACLTokenSet) -> str:
    """``tokenSetInternal``'s state checks, then ``aclTokenSetTxn``; the accessor ID is the result."""
    if not cmd.accessor_id:
        raise StateError("Missing ACL Token AccessorID")
    existing = tx.acl_tokens.get(cmd.accessor_id)
    if cmd.create:
        _check_ids_free(tx, cmd.accessor_id, cmd.secret_id)
        secret, create_time, expires = cmd.secret_id, tx.now, _expiration(tx, cmd)
    else:
        if existing is None or _expired(existing, tx.now):
            raise StateError(f"Cannot find token {go_quote(cmd.accessor_id)}")
        if cmd.secret_id and cmd.secret_id != existing.secret_id:
            raise StateError("Changing a tokens SecretID is not permitted")
        if cmd.local != existing.local:
            raise StateError(f"cannot toggle local mode of {cmd.accessor_id}")
        if cmd.expiration_ttl or (cmd.expiration_time and cmd.expiration_time != existing.expiration_time):
            raise StateError(f"Cannot change expiration time of {cmd.accessor_id}")
        secret, create_time, expires = existing.secret_id, existing.create_time, existing.expiration_time
    token = ACLToken(
        cmd.accessor_id,
        secret,
        cmd.description,
        _links(tx, cmd.policies, "policy"),
        _links(tx, cmd.roles, "role"),
        _service_identities(cmd.service_identities),
        _node_identities(cmd.node_identities),
        cmd.local,
        expires,
        create_time,
    )
    _put_token(tx, token)
    return cmd.accessor_id


def delete_token(tx: Tx, accessor_id: str) -> bool:
    """``TokenDelete``: the anonymous token stays; an unknown token is no error (false)."""
    if accessor_id == ANONYMOUS_TOKEN_ID:
        raise StateError("Delete operation not permitted on the anonymous token")
    if accessor_id not in tx.acl_tokens:
        return False
    tx.drop_token(accessor_id)
    tx.touch(TOKENS, accessor_id)
    return True


# ------------------------------------------------------------------ policies


def _check_present(cmd: c.ACLPolicySet | c.ACLRoleSet, kind: str) -> None:
    """``ErrMissingACLPolicyID``/``Name`` (and the role's): the store refuses an object without either."""
    if not cmd.id:
        raise StateError(f"Missing ACL {kind} ID")
    if not cmd.name:
        raise StateError(f"Missing ACL {kind} Name")


def _check_named(existing: Any, named: Any, cmd: c.ACLPolicySet | c.ACLRoleSet, kind: str) -> None:
    """A policy's or role's create needs a free ID and name; an update needs the object, and a name no other
    object of its kind has (``PolicySet``/``RoleSet``, with their texts)."""
    if cmd.create:
        if existing is not None:
            raise StateError(f"Invalid {kind}: A {kind} with ID {go_quote(cmd.id)} already exists")
        if named is not None:
            raise StateError(f"Invalid {kind}: A {kind} with Name {go_quote(cmd.name)} already exists")
    else:
        if existing is None:
            raise StateError(f"cannot find {kind.lower()} {cmd.id}")
        if named is not None and named.id != cmd.id:
            raise StateError(f"Invalid {kind}: A {kind.lower()} with name {go_quote(cmd.name)} already exists")


def set_policy(tx: Tx, cmd: c.ACLPolicySet) -> str:
    """``PolicySet``'s state checks and ``aclPolicySetTxn``: names unique, the built-in policies' rules and
    datacenters fixed (their name and description may change)."""
    _check_present(cmd, "Policy")
    existing = tx.acl_policies.get(cmd.id)
    _check_named(existing, policy_by_name(tx, cmd.name), cmd, "Policy")
    builtin = _BUILTINS.get(cmd.id)
    if existing is not None and not cmd.create and builtin is not None:
        if cmd.datacenters:
            raise StateError(f"Changing the Datacenters of the builtin {builtin} policy is not permitted")
        if cmd.rules != existing.rules:
            raise StateError(f"Changing the Rules for the builtin {builtin} policy is not permitted")
    policy = ACLPolicy(cmd.id, cmd.name, cmd.description, cmd.rules, cmd.datacenters)
    policy = attrs.evolve(policy, hash=policy_hash(policy),
                          create_index=tx.create_index(existing),
                          modify_index=tx.index)  # fmt: skip
    tx.acl_policies = tx.acl_policies.set(policy.id, policy)
    tx.touch(POLICIES, policy.id)
    return policy.id


def delete_policy(tx: Tx, policy_id: str) -> bool:
    """``PolicyDelete``: never a built-in one; links to a deleted policy stay and are left out when shown."""
    if policy_id in _BUILTINS:
        raise StateError(f"Delete operation not permitted on the builtin {_BUILTINS[policy_id]} policy")
    if policy_id not in tx.acl_policies:
        return False
    tx.acl_policies = tx.acl_policies.delete(policy_id)
    tx.touch(POLICIES, policy_id)
    return True


# ------------------------------------------------------------------ roles


def set_role(tx: Tx, cmd: c.ACLRoleSet) -> str:
    """``RoleSet``'s state checks and ``aclRoleSetTxn``: names unique, policy links resolved."""
    _check_present(cmd, "Role")
    existing = tx.acl_roles.get(cmd.id)
    _check_named(existing, role_by_name(tx, cmd.name), cmd, "Role")
    role = ACLRole(cmd.id, cmd.name, cmd.description, _links(tx, cmd.policies, "policy"),
                   _service_identities(cmd.service_identities), _node_identities(cmd.node_identities))  # fmt: skip
    role = attrs.evolve(role, hash=role_hash(role),
                        create_index=tx.create_index(existing),
                        modify_index=tx.index)  # fmt: skip
    tx.acl_roles = tx.acl_roles.set(role.id, role)
    tx.touch(ROLES, role.id)
    return role.id


def delete_role(tx: Tx, role_id: str) -> bool:
    if role_id not in tx.acl_roles:
        return False
    tx.acl_roles = tx.acl_roles.delete(role_id)
    tx.touch(ROLES, role_id)
    return True
