"""A secret to an `Authorizer`: the token, its policies and its roles' policies, its identities' synthetic
policies, merged, then the default policy (hashicorp/consul ``agent/consul/acl.go`` ``ACLResolver``,
``agent/structs/acl.go`` ``SyntheticPolicy``, ``acl_ce.go`` ``aclServiceIdentityRules``/``aclNodeIdentityRules``).

Pure: the answer depends only on the state, the secret, the local datacenter, the default policy and the time
(expiry).  `AuthorizerCache` keeps answers keyed by the ACL tables' indexes, so any ACL write invalidates
everything at once and a deleted token is refused on the next request, never later.
"""

from __future__ import annotations

from collections import OrderedDict

import attrs

from agent.acl.authorizer import Authorizer
from agent.acl.builtin import ANONYMOUS_TOKEN_ID
from agent.acl.rules import PolicyRules, RulesError, parse_rules_cached

from .acl import POLICIES, ROLES, TOKENS, token_by_secret
from .tables import ACLToken, State

__all__ = ["ACLNotFound", "ACLResolveError", "AuthorizerCache", "Resolved", "resolve", "token_rules"]


class ACLNotFound(Exception):
    """The secret names no token (or an expired one): Consul's 403 ``ACL not found``."""

    def __init__(self) -> None:
        super().__init__("ACL not found")


class ACLResolveError(Exception):
    """A stored policy does not parse (``failed to parse "<name>": ...``)."""


@attrs.frozen
class Resolved:
    """The token a secret names (None: anonymous with no anonymous token stored) and its authorizer."""

    token: ACLToken | None
    authorizer: Authorizer


def _service_identity_rules(name: str) -> str:
    return (f'service "{name}" {{\n\tpolicy = "write"\n}}\nservice "{name}-sidecar-proxy" {{\n\tpolicy = "write"\n}}\n'
            'service_prefix "" {\n\tpolicy = "read"\n}\nnode_prefix "" {\n\tpolicy = "read"\n}')  # fmt: skip


def _node_identity_rules(name: str) -> str:
    return f'node "{name}" {{\n\tpolicy = "write"\n}}\nservice_prefix "" {{\n\tpolicy = "read"\n}}'


def token_rules(state: State, token: ACLToken, datacenter: str) -> list[tuple[str, str]]:
    """(name, rules) of every policy that applies to ``token`` in ``datacenter``: its own, its roles' (a role or
    policy that is gone is skipped), and the synthetic policies of the service and node identities of both.
    A policy with ``Datacenters`` applies only there; a node identity only in its datacenter."""
    policy_ids = dict.fromkeys(token.policies)
    services = list(token.service_identities)
    nodes = list(token.node_identities)
    for role_id in token.roles:
        role = state.acl_roles.get(role_id)
        if role is None:
            continue
        policy_ids.update(dict.fromkeys(role.policies))
        services += role.service_identities
        nodes += role.node_identities
    out: list[tuple[str, str]] = []
    for policy_id in policy_ids:
        policy = state.acl_policies.get(policy_id)
        if policy is not None and (not policy.datacenters or datacenter in policy.datacenters):
            out.append((policy.name, policy.rules))
    for name, dcs in services:
        if not dcs or datacenter in dcs:
            out.append((f"service identity {name}", _service_identity_rules(name)))
    for name, dc in nodes:
        if dc == datacenter:
            out.append((f"node identity {name}", _node_identity_rules(name)))
    return out


def resolve(state: State, secret: str, *, datacenter: str, default_policy: str, now: int) -> Resolved:
    """``ResolveToken``: "" is the anonymous token; an unknown or expired secret raises `ACLNotFound`."""
    if secret:
        token = token_by_secret(state, secret)
        if token is None or (token.expiration_time and token.expiration_time < now):
            raise ACLNotFound()
    else:
        token = state.acl_tokens.get(ANONYMOUS_TOKEN_ID)
        if token is None:
            return Resolved(None, Authorizer(PolicyRules(), default_policy))
    parsed = []
    for name, rules in token_rules(state, token, datacenter):
        try:
            parsed.append(parse_rules_cached(rules))
        except RulesError as exc:
            raise ACLResolveError(f"failed to parse {name!r}: {exc}") from None
    return Resolved(token, Authorizer.of(parsed, default_policy))


class AuthorizerCache:
    """`resolve` remembered per secret while the ACL tables' indexes stay the same (bounded, oldest out).

    An expiring token is never cached past its expiry: its entry carries the expiry and is checked."""

    def __init__(self, datacenter: str, default_policy: str, size: int = 4096) -> None:
        self.datacenter = datacenter
        self.default_policy = default_policy
        self.size = size
        self._entries: OrderedDict[str, tuple[tuple[int, int, int], Resolved]] = OrderedDict()

    def resolve(self, state: State, secret: str, now: int) -> Resolved:
        version = (state.table_index(TOKENS), state.table_index(POLICIES), state.table_index(ROLES))
        hit = self._entries.get(secret)
        if hit is not None and hit[0] == version:
            token = hit[1].token
            if token is None or not token.expiration_time or token.expiration_time >= now:
                self._entries.move_to_end(secret)
                return hit[1]
        self._entries.pop(secret, None)
        resolved = resolve(state, secret, datacenter=self.datacenter, default_policy=self.default_policy, now=now)
        self._entries[secret] = (version, resolved)
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return resolved
