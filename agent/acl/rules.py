"""Consul's ACL rule language: a policy's ``Rules`` text (HCL or JSON) into `PolicyRules`, or `RulesError`.

Sources: hashicorp/consul ``acl/policy.go`` (``PolicyRules``, ``Validate``, ``isPolicyValid``), ``acl/policy_ce.go``
(``decodeRules``: ``hcl.DecodeErrorOnDuplicates``) and the website's acl/rules pages.  The texts are Consul's:
``Failed to parse ACL rules: <why>`` for text that does not decode, ``Invalid key policy: &acl.KeyRule{...}``
for a value that is not an access level (Go's ``%#v`` of the rule).

What is accepted, as Consul's decoder accepts it:

* resources with a name: ``agent``, ``node``, ``service``, ``key``, ``session``, ``event``, ``query``, each also as
  ``<resource>_prefix``, written ``key_prefix "app/" { policy = "read" }`` (HCL) or ``{"key_prefix": {"app/":
  {"policy": "read"}}}`` (JSON; a list of such objects too); ``service`` rules may carry ``intentions``;
* scalar resources: ``acl``, ``operator``, ``keyring``, ``mesh``, ``peering`` (``operator = "read"``);
* levels ``deny``, ``read``, ``write`` (any case, as ``AccessLevelFromString``), and ``list`` for ``key`` rules
  only; an empty scalar means unset;
* an argument given twice in one block is an error (``DecodeErrorOnDuplicates``); the same rule name given twice
  is not (the rules merge, `authorizer.merge`);
* keys Consul's decoder does not know are ignored, as ``hcl.Decode`` ignores them (a typo grants nothing).

Levels are kept lower-cased, so ``"Write"`` merges as ``write`` (Consul's merger compares the raw strings, where
``"Write"`` then loses to every level: a corner not reproduced).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping
from typing import Any

import attrs

from agent.gostrings import go_quote
from agent.hcl_text import HclSyntaxError, load_hcl

__all__ = [
    "DENY",
    "LEVELS",
    "LIST",
    "NAMED",
    "READ",
    "SCALARS",
    "WRITE",
    "PolicyRules",
    "Rule",
    "RulesError",
    "parse_rules",
    "parse_rules_cached",
]

DENY, READ, LIST, WRITE = "deny", "read", "list", "write"
LEVELS = (DENY, READ, LIST, WRITE)

#: Resources whose rules are named (exact, and ``_prefix``): resource -> (Go type, Go field of the name).
NAMED: Mapping[str, tuple[str, str]] = {
    "agent": ("AgentRule", "Node"),
    "key": ("KeyRule", "Prefix"),
    "node": ("NodeRule", "Name"),
    "service": ("ServiceRule", "Name"),
    "session": ("SessionRule", "Node"),
    "event": ("EventRule", "Event"),
    "query": ("PreparedQueryRule", "Prefix"),
}
#: Resources with one level for everything (``PolicyRules.ACL``, ``.Operator``...), in ``Validate``'s order.
SCALARS = ("acl", "keyring", "operator", "mesh", "peering")
#: Named resources whose rules carry Consul Enterprise's (empty) ``EnterpriseRule`` in ``%#v``.
_ENTERPRISE_RULES = frozenset({"key", "node", "service"})


class RulesError(ValueError):
    """Rules text Consul would refuse; the message is Consul's."""


@attrs.frozen
class Rule:
    """One named rule: ``key_prefix "app/" { policy = "read" }`` is ``Rule("key", "app/", True, "read")``."""

    resource: str
    name: str
    prefix: bool
    policy: str
    #: ``service`` rules only: the intentions level ("" when not given: derived from ``policy``).
    intentions: str = ""


@attrs.frozen
class PolicyRules:
    """A parsed policy: the named rules in the order written, and the scalar levels ("" when not given)."""

    rules: tuple[Rule, ...] = ()
    acl: str = ""
    keyring: str = ""
    operator: str = ""
    mesh: str = ""
    peering: str = ""

    def scalar(self, resource: str) -> str:
        return str(getattr(self, resource))


# ------------------------------------------------------------------ decoding


def _duplicate_arguments(text: str) -> str | None:
    """Consul decodes with ``DecodeErrorOnDuplicates``; python-hcl2 keeps the last value silently, so look at its
    syntax tree for an argument set twice in one body (the second one's position is reported, as HCL does)."""
    import hcl2
    from lark import Token, Tree

    def bodies(tree: Any) -> Iterator[Tree[Any]]:
        if isinstance(tree, Tree):
            if tree.data == "body":
                yield tree
            for child in tree.children:
                yield from bodies(child)

    for body in bodies(hcl2.parses_to_tree(text)):
        seen: set[str] = set()
        for child in body.children:
            if not (isinstance(child, Tree) and child.data == "attribute"):
                continue
            ident = child.children[0]
            token = ident.children[0] if isinstance(ident, Tree) and ident.children else ident
            name = str(token)
            if name in seen:
                where = f"{token.line}:{token.column}" if isinstance(token, Token) else "?"
                return (f"The argument {go_quote(name)} at {where} was already set. "
                        "Each argument can only be defined once")
            seen.add(name)
    return None


def _hcl(text: str) -> Any:
    try:
        data = load_hcl(text)
    except HclSyntaxError as exc:
        where = f"At {exc.line}:{exc.column}: " if exc.line is not None else ""
        raise RulesError(f"Failed to parse ACL rules: {where}{exc.what}") from None
    duplicate = _duplicate_arguments(text)
    if duplicate is not None:
        raise RulesError(f"Failed to parse ACL rules: {duplicate}")
    return data


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RulesError(f"Failed to parse ACL rules: At {exc.lineno}:{exc.colno}: {exc.msg}") from None


def _kind(value: Any) -> str:
    """A decoded value's JSON kind, for the messages."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return {list: "list", dict: "object", str: "string"}.get(type(value), type(value).__name__)


def _level(value: Any, where: str) -> str:
    """An argument's value as a string, as hcl.Decode would coerce it into a Go ``string`` field."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return value
    raise RulesError(f"Failed to parse ACL rules: {where}: unknown type for string {_kind(value)}")


def _entries(value: Any, where: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(name, body) pairs of one named resource, from HCL blocks or JSON objects (or lists of either)."""
    items = value if isinstance(value, list) else [value]
    for item in items:
        if not isinstance(item, dict):
            raise RulesError(f"Failed to parse ACL rules: {where}: expected an object, got {_kind(item)}")
        if item.get("__is_block__"):  # a block with no label: `key { policy = "read" }`
            raise RulesError(
                f"Failed to parse ACL rules: {where}: a rule needs a name, as in {where} \"<name>\" {{ ... }}"
            )
        for name, body in item.items():
            bodies = body if isinstance(body, list) else [body]
            for one in bodies:
                if not isinstance(one, dict):
                    raise RulesError(
                        f"Failed to parse ACL rules: {where}.{name}: expected an object, got {_kind(one)}"
                    )
                yield str(name), one


def _decode(data: Any) -> PolicyRules:
    if not isinstance(data, dict):
        raise RulesError(f"Failed to parse ACL rules: expected an object, got {_kind(data)}")
    rules: list[Rule] = []
    scalars: dict[str, str] = {}
    for key, value in data.items():
        if key in SCALARS:
            scalars[key] = _level(value, key)
            continue
        resource, prefix = (key[: -len("_prefix")], True) if key.endswith("_prefix") else (key, False)
        if resource not in NAMED:
            continue  # hcl.Decode ignores what the struct has no field for
        for name, body in _entries(value, key):
            policy = _level(body.get("policy"), f"{key}.{name}.policy")
            intentions = ""
            if resource == "service":
                intentions = _level(body.get("intentions"), f"{key}.{name}.intentions")
            rules.append(Rule(resource, name, prefix, policy, intentions))
    return PolicyRules(tuple(rules), **scalars)


# ------------------------------------------------------------------ validation (policy.go Validate)


def _go_rule(rule: Rule) -> str:
    """Go's ``%#v`` of the rule struct, as Consul's ``Invalid <resource> policy: %#v`` shows it."""
    type_name, name_field = NAMED[rule.resource]
    fields = [f"{name_field}:{go_quote(rule.name)}", f"Policy:{go_quote(rule.policy)}"]
    if rule.resource == "service":
        fields.append(f"Intentions:{go_quote(rule.intentions)}")
    if rule.resource in _ENTERPRISE_RULES:
        fields.append("EnterpriseRule:acl.EnterpriseRule{}")
    return f"&acl.{type_name}{{{', '.join(fields)}}}"


def _valid(level: str, allow_list: bool) -> bool:
    level = level.lower()  # AccessLevelFromString
    return level in (DENY, READ, WRITE) or (allow_list and level == LIST)


def _lowered(policy: PolicyRules) -> PolicyRules:
    rules = tuple(attrs.evolve(r, policy=r.policy.lower(), intentions=r.intentions.lower()) for r in policy.rules)
    return PolicyRules(rules, **{name: policy.scalar(name).lower() for name in SCALARS})


def _validate(policy: PolicyRules) -> None:
    if policy.acl and not _valid(policy.acl, False):
        raise RulesError(f"Invalid acl policy: {go_quote(policy.acl)}")
    for resource in NAMED:  # Validate's order: agent, key, node, service, session, event, query
        for prefix in (False, True):
            kind = f"{resource}_prefix" if prefix else resource
            for rule in policy.rules:
                if rule.resource != resource or rule.prefix != prefix:
                    continue
                if not _valid(rule.policy, resource == "key"):
                    raise RulesError(f"Invalid {kind} policy: {_go_rule(rule)}")
                if rule.intentions and not _valid(rule.intentions, False):
                    raise RulesError(f"Invalid {kind} intentions policy: {_go_rule(rule)}")
    for resource in SCALARS[1:]:
        level = policy.scalar(resource)
        if level and not _valid(level, False):
            raise RulesError(f"Invalid {resource} policy: {go_quote(level)}")


def parse_rules(text: str) -> PolicyRules:
    """``acl.NewPolicyFromSource``: ``text`` (HCL, or JSON, which HCL's decoder reads too) checked as Consul
    checks it.  Empty text is an empty policy."""
    if not text.strip():
        return PolicyRules()
    data = _json(text) if text.lstrip().startswith("{") else _hcl(text)
    policy = _decode(data)
    _validate(policy)
    return _lowered(policy)


@functools.lru_cache(maxsize=1024)
def parse_rules_cached(text: str) -> PolicyRules:
    """`parse_rules`, each text parsed once: many tokens share a few policies (a `PolicyRules` is immutable)."""
    return parse_rules(text)
