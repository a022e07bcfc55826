"""The leader's side of ACLs: what it proposes when it takes office, and the checks made before proposing.

``initial_commands`` is ``initializeACLs`` (hashicorp/consul ``agent/consul/leader.go``): the built-in policies
(created, or their rules brought up to date), the anonymous token, and the configured initial management token
(through bootstrap while bootstrap is still allowed, so that a later ``/v1/acl/bootstrap`` is refused, as
Consul's).  The ``check_*`` functions are the endpoint's checks that read nothing but the request
(``agent/consul/acl_endpoint.go``): they run before proposing, the state's own checks run in the apply
(`acl`).  Each returns Consul's text, or None.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from agent.acl import builtin
from agent.acl.rules import RulesError, parse_rules
from agent.gostrings import go_quote

from . import commands as c
from .acl import bootstrap_state, token_by_secret
from .tables import State

__all__ = ["check_policy", "check_role_name", "check_token_ids", "initial_commands", "is_uuid"]

_POLICY_NAME = re.compile(r"^[A-Za-z0-9\-_]{1,128}$")
_ROLE_NAME = re.compile(r"^[A-Za-z0-9\-_]{1,256}$")


def initial_commands(state: State, *, initial_management: str, new_uuid: Callable[[], str]) -> list[c.Command]:
    """What a new leader proposes so that the ACL system exists (nothing when it all does already)."""
    out: list[c.Command] = []
    for policy_id, name, description, rules in (
        (builtin.GLOBAL_MANAGEMENT_ID, builtin.GLOBAL_MANAGEMENT_NAME, builtin.GLOBAL_MANAGEMENT_DESCRIPTION,
         builtin.GLOBAL_MANAGEMENT_RULES),
        (builtin.GLOBAL_READ_ONLY_ID, builtin.GLOBAL_READ_ONLY_NAME, builtin.GLOBAL_READ_ONLY_DESCRIPTION,
         builtin.GLOBAL_READ_ONLY_RULES),
    ):  # fmt: skip
        existing = state.acl_policies.get(policy_id)
        if existing is None:
            out.append(c.ACLPolicySet(id=policy_id, name=name, description=description, rules=rules, create=True))
        elif existing.rules != rules:  # an upgrade changed the built-in rules: keep the (maybe renamed) name
            out.append(c.ACLPolicySet(id=policy_id, name=existing.name, description=existing.description,
                                      rules=rules))  # fmt: skip
    if builtin.ANONYMOUS_TOKEN_ID not in state.acl_tokens:
        out.append(c.ACLTokenSet(accessor_id=builtin.ANONYMOUS_TOKEN_ID, secret_id=builtin.ANONYMOUS_SECRET,
                                 description=builtin.ANONYMOUS_DESCRIPTION, create=True))  # fmt: skip
    if initial_management and token_by_secret(state, initial_management) is None:
        accessor = new_uuid()
        allowed, _ = bootstrap_state(state)
        if allowed:
            out.append(c.ACLBootstrap(accessor_id=accessor, secret_id=initial_management,
                                      description=builtin.INITIAL_MANAGEMENT_DESCRIPTION))  # fmt: skip
        else:
            out.append(c.ACLTokenSet(accessor_id=accessor, secret_id=initial_management,
                                     description=builtin.INITIAL_MANAGEMENT_DESCRIPTION,
                                     policies=((builtin.GLOBAL_MANAGEMENT_ID, ""),), create=True))  # fmt: skip
    return out


def is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return len(text) == 36


def check_token_ids(accessor_id: str, secret_id: str) -> str | None:
    """A token create's given IDs: UUIDs, not reserved (``tokenSetInternal``)."""
    for what, value in (("AccessorID", accessor_id), ("SecretID", secret_id)):
        if not value:
            continue
        if not is_uuid(value):
            return f"Invalid Token: {what} is not a valid UUID"
        if builtin.is_reserved(value):
            return f"Invalid Token: UUIDs with the prefix {go_quote(builtin.RESERVED_PREFIX)} are reserved"
    return None


def check_policy(name: str, rules: str) -> str | None:
    """A policy's name syntax and rules (``PolicySet``: ``isValidPolicyName``, ``NewPolicyFromSource``)."""
    if not name:
        return "Invalid Policy: no Name is set"
    if not _POLICY_NAME.match(name):
        return "Invalid Policy: invalid Name. Only alphanumeric characters, '-' and '_' are allowed"
    try:
        parse_rules(rules)
    except RulesError as exc:
        return str(exc)
    return None


def check_role_name(name: str) -> str | None:
    if not name:
        return "Invalid Role: no Name is set"
    if not _ROLE_NAME.match(name):
        return "Invalid Role: invalid Name. Only alphanumeric characters, '-' and '_' are allowed"
    return None
