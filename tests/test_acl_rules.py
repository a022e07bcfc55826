"""Consul's ACL rule language (agent/acl/rules.py): HCL and JSON, validation texts (hashicorp/consul
acl/policy.go ``Validate``, acl/policy_ce.go ``decodeRules``, acl/policy_test.go's cases)."""

from __future__ import annotations

import pytest

from agent.acl.rules import PolicyRules, Rule, RulesError, parse_rules

EVERYTHING_HCL = """
acl = "write"
agent "n1" { policy = "read" }
agent_prefix "" { policy = "write" }
event "deploy" { policy = "write" }
event_prefix "" { policy = "read" }
key "app/x" { policy = "deny" }
key_prefix "app/" { policy = "list" }
keyring = "deny"
mesh = "read"
node "n2" { policy = "write" }
node_prefix "" { policy = "read" }
operator = "read"
peering = "write"
query "q" { policy = "write" }
query_prefix "" { policy = "read" }
service "web" { policy = "write" intentions = "read" }
service_prefix "" { policy = "read" }
session "n1" { policy = "write" }
session_prefix "" { policy = "deny" }
"""

EVERYTHING_JSON = """{
  "acl": "write",
  "agent": {"n1": {"policy": "read"}},
  "agent_prefix": {"": {"policy": "write"}},
  "event": {"deploy": {"policy": "write"}},
  "event_prefix": {"": {"policy": "read"}},
  "key": {"app/x": {"policy": "deny"}},
  "key_prefix": {"app/": {"policy": "list"}},
  "keyring": "deny",
  "mesh": "read",
  "node": [{"n2": {"policy": "write"}}],
  "node_prefix": {"": {"policy": "read"}},
  "operator": "read",
  "peering": "write",
  "query": {"q": {"policy": "write"}},
  "query_prefix": {"": {"policy": "read"}},
  "service": {"web": {"policy": "write", "intentions": "read"}},
  "service_prefix": {"": {"policy": "read"}},
  "session": {"n1": {"policy": "write"}},
  "session_prefix": {"": {"policy": "deny"}}
}"""


def test_every_resource_parses_alike_from_hcl_and_json() -> None:
    hcl, js = parse_rules(EVERYTHING_HCL), parse_rules(EVERYTHING_JSON)
    assert set(hcl.rules) == set(js.rules)
    assert (hcl.acl, hcl.keyring, hcl.operator, hcl.mesh, hcl.peering) == ("write", "deny", "read", "read", "write")
    assert (js.acl, js.keyring, js.operator, js.mesh, js.peering) == ("write", "deny", "read", "read", "write")
    assert Rule("key", "app/", True, "list") in hcl.rules
    assert Rule("key", "app/x", False, "deny") in hcl.rules
    assert Rule("service", "web", False, "write", "read") in hcl.rules
    assert Rule("agent", "", True, "write") in hcl.rules
    assert len(hcl.rules) == 14


def test_empty_rules_are_an_empty_policy() -> None:
    assert parse_rules("") == PolicyRules()
    assert parse_rules("  \n") == PolicyRules()


def test_the_same_rule_twice_is_kept_twice_for_the_merge() -> None:
    policy = parse_rules('key "a" { policy = "read" }\nkey "a" { policy = "deny" }')
    assert policy.rules == (Rule("key", "a", False, "read"), Rule("key", "a", False, "deny"))


def test_levels_are_case_insensitive_and_kept_lower_case() -> None:
    # AccessLevelFromString lower-cases before it compares
    policy = parse_rules('service "web" { policy = "Write" }\noperator = "READ"')
    assert policy.rules == (Rule("service", "web", False, "write"),)
    assert policy.operator == "read"


def test_unknown_keys_are_ignored_as_hcl_decode_ignores_them() -> None:
    assert parse_rules('servce "web" { policy = "write" }\nkey "a" { policy = "read" color = "red" }').rules == (
        Rule("key", "a", False, "read"),
    )


@pytest.mark.parametrize(
    ("rules", "error"),
    [
        # policy.go Validate, one per resource, Consul's texts (Go's %#v of the rule)
        ('acl = "list"', 'Invalid acl policy: "list"'),
        ('agent "n" { policy = "list" }', 'Invalid agent policy: &acl.AgentRule{Node:"n", Policy:"list"}'),
        ('agent_prefix "" { policy = "nope" }', 'Invalid agent_prefix policy: &acl.AgentRule{Node:"", Policy:"nope"}'),
        ('key "foo" { policy = "nope" }',
         'Invalid key policy: &acl.KeyRule{Prefix:"foo", Policy:"nope", EnterpriseRule:acl.EnterpriseRule{}}'),
        ('key_prefix "f" { policy = "Nope" }',
         'Invalid key_prefix policy: &acl.KeyRule{Prefix:"f", Policy:"Nope", EnterpriseRule:acl.EnterpriseRule{}}'),
        ('node "n" { policy = "list" }',
         'Invalid node policy: &acl.NodeRule{Name:"n", Policy:"list", EnterpriseRule:acl.EnterpriseRule{}}'),
        ('node_prefix "" { }',
         'Invalid node_prefix policy: &acl.NodeRule{Name:"", Policy:"", EnterpriseRule:acl.EnterpriseRule{}}'),
        ('service "s" { policy = "list" }', 'Invalid service policy: &acl.ServiceRule{Name:"s", Policy:"list", '
         'Intentions:"", EnterpriseRule:acl.EnterpriseRule{}}'),
        ('service_prefix "" { policy = "read" intentions = "list" }', 'Invalid service_prefix intentions policy: '
         '&acl.ServiceRule{Name:"", Policy:"read", Intentions:"list", EnterpriseRule:acl.EnterpriseRule{}}'),
        ('session "n" { policy = "list" }', 'Invalid session policy: &acl.SessionRule{Node:"n", Policy:"list"}'),
        ('session_prefix "" { policy = "x" }', 'Invalid session_prefix policy: &acl.SessionRule{Node:"", Policy:"x"}'),
        ('event "e" { policy = "list" }', 'Invalid event policy: &acl.EventRule{Event:"e", Policy:"list"}'),
        ('event_prefix "" { policy = "x" }', 'Invalid event_prefix policy: &acl.EventRule{Event:"", Policy:"x"}'),
        ('query "q" { policy = "list" }', 'Invalid query policy: &acl.PreparedQueryRule{Prefix:"q", Policy:"list"}'),
        ('query_prefix "" { policy = "x" }',
         'Invalid query_prefix policy: &acl.PreparedQueryRule{Prefix:"", Policy:"x"}'),
        ('keyring = "list"', 'Invalid keyring policy: "list"'),
        ('operator = "nope"', 'Invalid operator policy: "nope"'),
        ('mesh = "nope"', 'Invalid mesh policy: "nope"'),
        ('peering = "nope"', 'Invalid peering policy: "nope"'),
        ('{ "mesh": "nope" }', 'Invalid mesh policy: "nope"'),
        # decodeRules: DecodeErrorOnDuplicates, with the second argument's position
        ('key "a" {\n  policy = "read"\n  policy = "write"\n}',
         'Failed to parse ACL rules: The argument "policy" at 3:3 was already set. '
         "Each argument can only be defined once"),
        ('operator = "read"\noperator = "write"',
         'Failed to parse ACL rules: The argument "operator" at 2:1 was already set. '
         "Each argument can only be defined once"),
    ],
)  # fmt: skip
def test_invalid_rules_are_refused_with_consuls_text(rules: str, error: str) -> None:
    with pytest.raises(RulesError) as caught:
        parse_rules(rules)
    assert str(caught.value) == error


@pytest.mark.parametrize(
    "rules",
    ['key_prefix "x" { policy = }', "{ not json", 'key { policy = "read" }', '{"key": "read"}', "[1, 2]",
     'key "a" { policy = ["read"] }'],
)  # fmt: skip
def test_text_that_does_not_decode_says_failed_to_parse(rules: str) -> None:
    with pytest.raises(RulesError) as caught:
        parse_rules(rules)
    assert str(caught.value).startswith("Failed to parse ACL rules: ")


def test_list_is_a_level_for_keys_only() -> None:
    assert parse_rules('key_prefix "" { policy = "list" }').rules == (Rule("key", "", True, "list"),)
    with pytest.raises(RulesError):
        parse_rules('node_prefix "" { policy = "list" }')


def test_an_hcl_syntax_error_says_where_in_consuls_words() -> None:
    """The same parse error as a config file's (agent/hcl_text.py), located as Consul's rules parser does."""
    cases = {'key "a" { policy = = "read" }': "At 1:20: unexpected '='",
             'key "a" {\n policy = "read"\n': "At 3:1: unexpected end of input"}  # fmt: skip
    for rules, where in cases.items():
        with pytest.raises(RulesError) as caught:
            parse_rules(rules)
        assert str(caught.value) == f"Failed to parse ACL rules: {where}"
