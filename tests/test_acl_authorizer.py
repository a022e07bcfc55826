"""Consul's ACL decisions (agent/acl/authorizer.py), table-driven.

Each case names the rule it checks; the sources are hashicorp/consul acl/policy_merger.go (merge),
acl/policy.go ``takesPrecedenceOver``, acl/policy_authorizer.go (``getPolicy``, ``enforce``, ``KeyWritePrefix``,
``allAllowed``/``anyAllowed``, mesh/peering defaulting to operator), acl/static_authorizer.go (default policy)
and acl/acl_test.go's scenarios.
"""

from __future__ import annotations

import pytest

from agent.acl.authorizer import Authorizer, Decision, enforce, merge, takes_precedence
from agent.acl.builtin import GLOBAL_MANAGEMENT_RULES, GLOBAL_READ_ONLY_RULES
from agent.acl.rules import PolicyRules, Rule, parse_rules


def authz(*policies: str, default: str = "deny") -> Authorizer:
    return Authorizer.of([parse_rules(p) for p in policies], default)


# (why, policies, default policy, [(resource, name, need, expected)])
CASES = [
    ("exact beats prefix (getPolicy)",
     ['key_prefix "foo/" { policy = "write" }\nkey "foo/bar" { policy = "deny" }'], "allow",
     [("key", "foo/bar", "read", False), ("key", "foo/baz", "write", True), ("key", "foo/bar/x", "write", True)]),
    ("an exact rule does not cover longer names",
     ['key "foo" { policy = "write" }'], "deny",
     [("key", "foo", "write", True), ("key", "foo/x", "read", False), ("key", "fo", "read", False)]),
    ("longest prefix wins",
     ['key_prefix "" { policy = "deny" }\nkey_prefix "foo/" { policy = "read" }\n'
      'key_prefix "foo/bar/" { policy = "write" }'], "allow",
     [("key", "foo/bar/x", "write", True), ("key", "foo/x", "read", True), ("key", "foo/x", "write", False),
      ("key", "bar", "read", False), ("key", "foo/bar", "write", False)]),
    ("a prefix rule matches its own name",
     ['service_prefix "web" { policy = "write" }'], "deny",
     [("service", "web", "write", True), ("service", "web-1", "write", True), ("service", "db-1", "read", False),
      ("service", "we", "read", False)]),
    ("write implies read and list; read implies neither write nor list (enforce)",
     ['key_prefix "w/" { policy = "write" }\nkey_prefix "r/" { policy = "read" }\n'
      'key_prefix "l/" { policy = "list" }'], "allow",
     [("key", "w/x", "read", True), ("key", "w/x", "list", True), ("key", "r/x", "read", True),
      ("key", "r/x", "list", False), ("key", "r/x", "write", False), ("key", "l/x", "list", True),
      ("key", "l/x", "read", True), ("key", "l/x", "write", False)]),
    ("deny beats all at the same name across policies (takesPrecedenceOver)",
     ['key_prefix "app/" { policy = "write" }', 'key_prefix "app/" { policy = "deny" }'], "allow",
     [("key", "app/x", "read", False)]),
    ("deny beats all whatever the order of the policies",
     ['key_prefix "app/" { policy = "deny" }', 'key_prefix "app/" { policy = "write" }'], "allow",
     [("key", "app/x", "read", False)]),
    ("a deny on a shorter prefix does not beat a write on a longer one (specificity first)",
     ['key_prefix "app/" { policy = "deny" }', 'key_prefix "app/x" { policy = "write" }'], "deny",
     [("key", "app/x/y", "write", True), ("key", "app/y", "read", False)]),
    ("write beats list beats read at the same name",
     ['key "k" { policy = "read" }', 'key "k" { policy = "list" }', 'key "j" { policy = "write" }',
      'key "j" { policy = "read" }'], "deny",
     [("key", "k", "list", True), ("key", "k", "write", False), ("key", "j", "write", True)]),
    ("exact and prefix rules of the same name merge apart",
     ['node "n1" { policy = "deny" }', 'node_prefix "n1" { policy = "write" }'], "deny",
     [("node", "n1", "read", False), ("node", "n10", "write", True)]),
    ("the same rule twice in one policy merges as two policies would",
     ['session "n1" { policy = "deny" }\nsession "n1" { policy = "write" }'], "allow",
     [("session", "n1", "write", False)]),
    ("no rule: default allow allows, except ACL management (StaticAuthorizer)",
     ['node_prefix "" { policy = "read" }'], "allow",
     [("service", "x", "write", True), ("key", "k", "write", True), ("acl", "", "read", False),
      ("acl", "", "write", False), ("operator", "", "write", True), ("node", "n", "write", False)]),
    ("no rule: default deny denies",
     ['node_prefix "" { policy = "read" }'], "deny",
     [("service", "x", "read", False), ("node", "n", "read", True), ("operator", "", "read", False)]),
    ("scalars: acl, operator, keyring",
     ['acl = "read"\noperator = "write"\nkeyring = "deny"'], "allow",
     [("acl", "", "read", True), ("acl", "", "write", False), ("operator", "", "write", True),
      ("keyring", "", "read", False)]),
    ("mesh and peering default to operator (MeshRead, PeeringRead)",
     ['operator = "read"'], "deny",
     [("mesh", "", "read", True), ("mesh", "", "write", False), ("peering", "", "read", True)]),
    ("an explicit mesh level beats operator",
     ['operator = "write"\nmesh = "deny"'], "allow",
     [("mesh", "", "read", False), ("peering", "", "write", True)]),
    ("service intentions: derived read from a service read or write, explicit level otherwise (loadRules)",
     ['service "web" { policy = "write" }\nservice "db" { policy = "read" intentions = "write" }\n'
      'service "x" { policy = "deny" }'], "allow",
     [("intention", "web", "read", True), ("intention", "web", "write", False), ("intention", "db", "write", True),
      ("intention", "x", "read", False)]),
    ("service intentions merge apart from the policy",
     ['service "web" { policy = "read" intentions = "write" }', 'service "web" { policy = "write" }'], "deny",
     [("service", "web", "write", True), ("intention", "web", "write", True)]),
]  # fmt: skip


@pytest.mark.parametrize(("why", "policies", "default", "checks"), CASES, ids=[c[0] for c in CASES])
def test_decisions(why: str, policies: list[str], default: str, checks: list[tuple[str, str, str, bool]]) -> None:
    a = authz(*policies, default=default)
    got = [(resource, name, need, a.allowed(resource, name, need)) for resource, name, need, _ in checks]
    assert got == checks, why


def test_the_issue_examples_with_default_deny() -> None:
    # issue 13: service_prefix "web" write registers web-1 and not db-1; key_prefix "app/" read reads, never writes
    a = authz('service_prefix "web" { policy = "write" }\nkey_prefix "app/" { policy = "read" }')
    assert a.allowed("service", "web-1", "write") and not a.allowed("service", "db-1", "write")
    assert a.allowed("key", "app/x", "read") and not a.allowed("key", "app/x", "write")
    assert not a.allowed("key", "other", "read")


def test_global_management_grants_everything_even_with_default_deny() -> None:
    a = authz(GLOBAL_MANAGEMENT_RULES, default="deny")
    for resource in ("agent", "node", "service", "key", "session", "event", "query", "intention"):
        assert a.allowed(resource, "anything", "write"), resource
    assert a.allowed("key", "x", "list")
    for scalar in ("acl", "operator", "keyring", "mesh", "peering"):
        assert a.allowed(scalar, "", "write"), scalar
    assert a.key_write_prefix("") and a.all_allowed("node") and a.any_allowed("service")


def test_global_read_only_reads_everything_and_writes_nothing() -> None:
    a = authz(GLOBAL_READ_ONLY_RULES, default="allow")
    assert a.allowed("acl", "", "read") and not a.allowed("acl", "", "write")
    assert a.allowed("key", "k", "read") and not a.allowed("key", "k", "write")
    assert not a.allowed("service", "web", "write")


@pytest.mark.parametrize(
    ("rules", "default", "prefix", "expected"),
    [
        ('key_prefix "" { policy = "write" }', "deny", "foo/", True),
        ('key_prefix "" { policy = "write" }\nkey "foo/bar" { policy = "read" }', "deny", "foo/", False),
        ('key_prefix "" { policy = "write" }\nkey "foo/bar" { policy = "read" }', "deny", "baz/", True),
        ('key_prefix "" { policy = "write" }\nkey_prefix "foo/x" { policy = "list" }', "deny", "foo/", False),
        ('key_prefix "foo/" { policy = "read" }', "allow", "foo/bar/", False),  # base rule is not write
        ('key "foo/bar" { policy = "write" }', "allow", "foo/", True),  # no base rule: default
        ('key "foo/bar" { policy = "write" }', "deny", "foo/", False),
        ('key "foo/bar" { policy = "deny" }', "allow", "foo/", False),  # a rule under the prefix denies
        ("", "allow", "", True),
    ],
)
def test_key_write_prefix(rules: str, default: str, prefix: str, expected: bool) -> None:
    # KeyWritePrefix: a recursive delete needs write on the prefix and on every rule under it
    assert authz(rules, default=default).key_write_prefix(prefix) is expected


@pytest.mark.parametrize(
    ("rules", "default", "expected"),
    [
        ('node_prefix "" { policy = "read" }', "deny", True),
        ('node_prefix "" { policy = "read" }\nnode "secret" { policy = "deny" }', "deny", False),
        ('node_prefix "" { policy = "deny" }\nnode "a" { policy = "write" }', "allow", False),
        ('node "a" { policy = "read" }', "deny", False),  # no catch-all: the default decides
        ('node "a" { policy = "read" }', "allow", True),
        ('node_prefix "" { policy = "write" }\nnode_prefix "x" { policy = "read" }', "deny", True),
    ],
)
def test_read_all(rules: str, default: str, expected: bool) -> None:
    # allAllowed (NodeReadAll, ServiceReadAll)
    assert authz(rules, default=default).all_allowed("node", "read") is expected


@pytest.mark.parametrize(
    ("rules", "default", "expected"),
    [
        ('service "web" { policy = "write" }', "deny", True),
        ('service_prefix "" { policy = "read" }', "deny", False),
        ('service_prefix "" { policy = "deny" }', "allow", False),  # a catch-all deny decides, nothing allows
        ('service_prefix "" { policy = "deny" }\nservice "a" { policy = "write" }', "deny", True),
        ("", "allow", True),
    ],
)
def test_write_any(rules: str, default: str, expected: bool) -> None:
    # anyAllowed (ServiceWriteAny)
    assert authz(rules, default=default).any_allowed("service", "write") is expected


def test_takes_precedence_order() -> None:
    order = ["deny", "write", "list", "read", ""]
    for i, a in enumerate(order):
        for j, b in enumerate(order):
            assert takes_precedence(a, b) is (i < j or (i == j and a != "")), (a, b)  # a tie replaces


def test_enforce_levels() -> None:
    assert enforce("", "read") is Decision.DEFAULT
    assert enforce("deny", "read") is Decision.DENY
    assert enforce("list", "write") is Decision.DENY


def test_merge_keeps_one_rule_per_name_and_the_winning_scalars() -> None:
    merged = merge([parse_rules('operator = "read"\nkey "a" { policy = "read" }'),
                    parse_rules('operator = "write"\nkey "a" { policy = "deny" }\nacl = "read"')])  # fmt: skip
    assert merged == PolicyRules((Rule("key", "a", False, "deny"),), acl="read", operator="write")


def test_rule_for_reports_no_opinion() -> None:
    a = authz('key_prefix "a" { policy = "read" }')
    assert a.rule_for("key", "b") is None
    assert a.decide("key", "b") is Decision.DEFAULT
    assert a.decide("key", "abc") is Decision.ALLOW


def test_default_policy_is_checked() -> None:
    with pytest.raises(ValueError):
        Authorizer(PolicyRules(), "extend-cache")
