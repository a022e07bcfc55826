"""ACL objects in the servers' Raft store (agent/server/state/acl*.py), driven through the real entry path.

Each test names the Consul rule it checks (hashicorp/consul agent/consul/state/acl.go, agent/consul/acl_endpoint.go
``BootstrapTokens``/``tokenSetInternal``/``PolicySet``/``PolicyDelete``, agent/consul/leader.go ``initializeACLs``,
agent/structs/acl.go ``SetHash``/``SyntheticPolicy``).
"""

from __future__ import annotations

import hashlib
import itertools
import re
from typing import Any

import attrs
import immutables
import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from state_helpers import SEC, Driven

from agent.acl.builtin import (
    ANONYMOUS_TOKEN_ID,
    GLOBAL_MANAGEMENT_ID,
    GLOBAL_MANAGEMENT_RULES,
    GLOBAL_READ_ONLY_ID,
)
from agent.server import queries
from agent.server.state import acl_leader, reads
from agent.server.state import commands as c
from agent.server.state.acl import bootstrap_state, token_hash
from agent.server.state.acl_resolve import ACLNotFound, AuthorizerCache, resolve
from agent.server.state.acl_views import go_time, policy_json, policy_stub_json, role_json, token_json
from agent.server.state.apply import Failed
from agent.server.state.codec import decode_state, encode_state
from agent.server.state.store import StateStore

A1 = "11111111-1111-1111-1111-111111111111"
S1 = "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa"
A2 = "22222222-2222-2222-2222-222222222222"
S2 = "bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb"
MGMT = "cccccccc-cccc-cccc-cccc-cccccccccccc"


def uuids() -> Any:
    counter = itertools.count(1)
    return lambda: f"00000000-0000-4000-8000-{next(counter):012d}"


def initialised(initial_management: str = "") -> Driven:
    """A store after a new leader's `initial_commands`, as it would propose them."""
    d = Driven()
    for cmd in acl_leader.initial_commands(d.state, initial_management=initial_management, new_uuid=uuids()):
        assert not isinstance(d.run(cmd), Failed), cmd
    return d


def policy(d: Driven, pid: str, name: str, rules: str, **kw: Any) -> Any:
    return d.run(c.ACLPolicySet(id=pid, name=name, rules=rules, create=True, **kw))


def token(d: Driven, accessor: str, secret: str, **kw: Any) -> Any:
    return d.run(c.ACLTokenSet(accessor_id=accessor, secret_id=secret, create=True, **kw))


def authz(d: Driven, secret: str, default: str = "deny", dc: str = "dc1") -> Any:
    return resolve(d.state, secret, datacenter=dc, default_policy=default, now=d.now).authorizer


# ------------------------------------------------------------------ the leader's initialisation


def test_initial_commands_create_the_builtins_once() -> None:
    d = initialised()
    assert set(d.state.acl_policies) == {GLOBAL_MANAGEMENT_ID, GLOBAL_READ_ONLY_ID}
    assert d.state.acl_policies[GLOBAL_MANAGEMENT_ID].name == "global-management"
    anonymous = d.state.acl_tokens[ANONYMOUS_TOKEN_ID]
    assert (anonymous.secret_id, anonymous.description, anonymous.policies) == ("anonymous", "Anonymous Token", ())
    # a second leader proposes nothing more
    assert acl_leader.initial_commands(d.state, initial_management="", new_uuid=uuids()) == []
    # and an initial management token is the only thing a later config adds
    extra = acl_leader.initial_commands(d.state, initial_management=MGMT, new_uuid=uuids())
    assert [type(cmd) for cmd in extra] == [c.ACLBootstrap]


def test_initial_management_token_bootstraps_so_a_later_bootstrap_is_refused() -> None:
    # leader.go initializeACLs: the configured token goes in through bootstrap while bootstrap is allowed
    d = initialised(initial_management=MGMT)
    found = reads.acl_token_by_secret(d.state, MGMT).value
    assert found is not None and found.description == "Initial Management Token"
    assert found.policies == (GLOBAL_MANAGEMENT_ID,)
    allowed, reset = bootstrap_state(d.state)
    assert not allowed and reset > 0
    result = d.run(c.ACLBootstrap(accessor_id=A1, secret_id=S1))
    assert result == Failed(f"ACL bootstrap no longer allowed (reset index: {reset})")


def test_initial_management_after_bootstrap_is_a_token_set() -> None:
    d = initialised()
    assert d.run(c.ACLBootstrap(accessor_id=A1, secret_id=S1)) == A1
    cmds = acl_leader.initial_commands(d.state, initial_management=MGMT, new_uuid=uuids())
    assert len(cmds) == 1 and isinstance(cmds[0], c.ACLTokenSet)
    assert cmds[0].policies == ((GLOBAL_MANAGEMENT_ID, ""),)
    assert d.run(cmds[0]) == cmds[0].accessor_id
    assert authz(d, MGMT).allowed("acl", "", "write")


def test_changed_builtin_rules_are_brought_up_to_date_keeping_a_new_name() -> None:
    d = initialised()
    d.run(c.ACLPolicySet(id=GLOBAL_MANAGEMENT_ID, name="root-of-all", rules=GLOBAL_MANAGEMENT_RULES))
    stale = d.state.acl_policies[GLOBAL_MANAGEMENT_ID]
    old = attrs.evolve(d.state, acl_policies=d.state.acl_policies.set(GLOBAL_MANAGEMENT_ID,
                                                                      attrs.evolve(stale, rules="acl = \"write\"")))
    (cmd,) = acl_leader.initial_commands(old, initial_management="", new_uuid=uuids())
    assert isinstance(cmd, c.ACLPolicySet) and cmd.name == "root-of-all" and cmd.rules == GLOBAL_MANAGEMENT_RULES


# ------------------------------------------------------------------ bootstrap (acl.go ACLBootstrap)


def test_bootstrap_once_then_consuls_text_with_the_reset_index() -> None:
    d = initialised()
    assert bootstrap_state(d.state) == (True, 0)
    assert d.run(c.ACLBootstrap(accessor_id=A1, secret_id=S1)) == A1
    first = d.index
    made = d.state.acl_tokens[A1]
    assert made.description == "Bootstrap Token (Global Management)"
    assert made.policies == (GLOBAL_MANAGEMENT_ID,) and made.create_time == d.now and not made.local
    assert bootstrap_state(d.state) == (False, first)
    before = d.state
    assert d.run(c.ACLBootstrap(accessor_id=A2, secret_id=S2)) == Failed(
        f"ACL bootstrap no longer allowed (reset index: {first})"
    )
    assert d.state.acl_tokens is before.acl_tokens and A2 not in d.state.acl_tokens
    assert d.run(c.ACLBootstrap(accessor_id=A2, secret_id=S2, reset_index=first + 7)) == Failed(
        f"Invalid bootstrap reset index (specified {first + 7}, reset index: {first})"
    )
    # the operator's reset file names the right index: one more bootstrap, and the marker moves
    assert d.run(c.ACLBootstrap(accessor_id=A2, secret_id=S2, reset_index=first)) == A2
    assert bootstrap_state(d.state) == (False, d.index)


def test_bootstrap_before_the_leader_initialised_creates_global_management() -> None:
    d = Driven()
    assert d.run(c.ACLBootstrap(accessor_id=A1, secret_id=S1)) == A1
    assert d.state.acl_policies[GLOBAL_MANAGEMENT_ID].rules == GLOBAL_MANAGEMENT_RULES
    assert authz(d, S1).allowed("operator", "", "write")


def test_bootstrap_ids_must_be_free() -> None:
    d = initialised()
    token(d, A1, S1)
    assert d.run(c.ACLBootstrap(accessor_id=A1, secret_id=S2)) == Failed("Invalid Token: AccessorID is already in use")
    assert d.run(c.ACLBootstrap(accessor_id=A2, secret_id=S1)) == Failed("Invalid Token: SecretID is already in use")
    assert bootstrap_state(d.state) == (True, 0)


# ------------------------------------------------------------------ tokens (tokenSetInternal)


def test_token_links_resolve_names_to_ids_dedup_and_show_current_names() -> None:
    d = initialised()
    policy(d, "p-web", "web", 'service_prefix "web" { policy = "write" }')
    assert token(d, A1, S1, policies=(("", "web"), ("p-web", ""), ("", "global-management"))) == A1
    made = d.state.acl_tokens[A1]
    assert made.policies == ("p-web", GLOBAL_MANAGEMENT_ID)
    d.run(c.ACLPolicySet(id="p-web", name="web-renamed", rules=""))
    shown = token_json(d.state, d.state.acl_tokens[A1])
    assert shown["Policies"] == [{"ID": "p-web", "Name": "web-renamed"},
                                 {"ID": GLOBAL_MANAGEMENT_ID, "Name": "global-management"}]  # fmt: skip
    d.run(c.ACLPolicyDelete(id="p-web"))
    assert token_json(d.state, d.state.acl_tokens[A1])["Policies"] == [
        {"ID": GLOBAL_MANAGEMENT_ID, "Name": "global-management"}
    ]


@pytest.mark.parametrize(
    ("cmd", "error"),
    [
        (c.ACLTokenSet(accessor_id=A2, secret_id=S2, policies=(("", "nope"),), create=True),
         'No such ACL policy with name "nope"'),
        (c.ACLTokenSet(accessor_id=A2, secret_id=S2, policies=(("p-x", ""),), create=True),
         'No such ACL policy with ID "p-x"'),
        (c.ACLTokenSet(accessor_id=A2, secret_id=S2, roles=(("", "r"),), create=True),
         'No such ACL role with name "r"'),
        (c.ACLTokenSet(accessor_id=A2, secret_id=S2, roles=(("r-x", ""),), create=True),
         'No such ACL role with ID "r-x"'),
        (c.ACLTokenSet(accessor_id=A1, secret_id=S2, create=True), "Invalid Token: AccessorID is already in use"),
        (c.ACLTokenSet(accessor_id=S1, secret_id=S2, create=True), "Invalid Token: AccessorID is already in use"),
        (c.ACLTokenSet(accessor_id=A2, secret_id=S1, create=True), "Invalid Token: SecretID is already in use"),
        (c.ACLTokenSet(accessor_id=A2, secret_id=A1, create=True), "Invalid Token: SecretID is already in use"),
        (c.ACLTokenSet(accessor_id=A2), f'Cannot find token "{A2}"'),
        (c.ACLTokenSet(accessor_id="", secret_id=S2, create=True), "Missing ACL Token AccessorID"),
        (c.ACLTokenSet(accessor_id=A2, create=True), "Missing ACL Token SecretID"),
        (c.ACLTokenSet(accessor_id=A1, secret_id=S2), "Changing a tokens SecretID is not permitted"),
        (c.ACLTokenSet(accessor_id=A1, local=True), f"cannot toggle local mode of {A1}"),
        (c.ACLTokenSet(accessor_id=A1, expiration_ttl=600 * SEC), f"Cannot change expiration time of {A1}"),
        (c.ACLTokenSet(accessor_id=A2, secret_id=S2, expiration_ttl=5 * SEC, create=True),
         "ExpirationTime cannot be less than 1m0s in the future (was 5s)"),
        (c.ACLTokenSet(accessor_id=A2, secret_id=S2, expiration_ttl=25 * 3600 * SEC, create=True),
         "ExpirationTime cannot be more than 24h0m0s in the future (was 25h0m0s)"),
        (c.ACLTokenSet(accessor_id=A2, secret_id=S2, expiration_ttl=600 * SEC, expiration_time=1, create=True),
         "Token Expiration TTL and Expiration Time cannot both be set"),
        (c.ACLTokenSet(accessor_id=A2, secret_id=S2, expiration_time=1, create=True),
         "ExpirationTime cannot be before CreateTime"),
    ],
)  # fmt: skip
def test_token_set_refusals_change_nothing(cmd: c.ACLTokenSet, error: str) -> None:
    d = initialised()
    token(d, A1, S1)
    before = d.state
    assert d.run(cmd) == Failed(error)
    assert d.state.acl_tokens is before.acl_tokens and d.state.indexes is before.indexes


def test_token_update_keeps_secret_create_time_and_create_index() -> None:
    d = initialised()
    token(d, A1, S1, description="one")
    created, created_at = d.index, d.now
    d.now += 50 * SEC
    assert d.run(c.ACLTokenSet(accessor_id=A1, description="two")) == A1
    t = d.state.acl_tokens[A1]
    assert (t.secret_id, t.description, t.create_time) == (S1, "two", created_at)
    assert (t.create_index, t.modify_index) == (created, d.index)
    assert d.state.table_index("acl-tokens") == d.index
    assert reads.acl_token_by_secret(d.state, S1).value == t


def test_token_hash_is_consuls_blake2b_of_the_content() -> None:
    d = initialised()
    token(d, A1, S1, description="web", policies=((GLOBAL_MANAGEMENT_ID, ""),))
    t = d.state.acl_tokens[A1]
    want = hashlib.blake2b(b"web" + b"global" + GLOBAL_MANAGEMENT_ID.encode(), digest_size=32).digest()
    assert t.hash == want == token_hash(t)


def test_expiring_token_is_refused_after_expiry() -> None:
    d = initialised()
    token(d, A1, S1, expiration_ttl=120 * SEC)
    assert d.state.acl_tokens[A1].expiration_time == d.now + 120 * SEC
    assert resolve(d.state, S1, datacenter="dc1", default_policy="deny", now=d.now + 119 * SEC).token is not None
    with pytest.raises(ACLNotFound, match="ACL not found"):
        resolve(d.state, S1, datacenter="dc1", default_policy="deny", now=d.now + 121 * SEC)
    d.now += 121 * SEC
    assert d.run(c.ACLTokenSet(accessor_id=A1, description="x")) == Failed(f'Cannot find token "{A1}"')


def test_token_delete() -> None:
    d = initialised()
    token(d, A1, S1)
    assert d.run(c.ACLTokenDelete(accessor_id=ANONYMOUS_TOKEN_ID)) == Failed(
        "Delete operation not permitted on the anonymous token"
    )
    assert d.run(c.ACLTokenDelete(accessor_id=A2)) is False
    assert d.run(c.ACLTokenDelete(accessor_id=A1)) is True
    assert A1 not in d.state.acl_tokens and S1 not in d.state.acl_secrets
    with pytest.raises(ACLNotFound):
        authz(d, S1)


# ------------------------------------------------------------------ policies and roles


@pytest.mark.parametrize(
    ("cmd", "error"),
    [
        (c.ACLPolicySet(id="p2", name="web", create=True), 'Invalid Policy: A Policy with Name "web" already exists'),
        (c.ACLPolicySet(id="p1", name="other", create=True), 'Invalid Policy: A Policy with ID "p1" already exists'),
        (c.ACLPolicySet(id="p9", name="x"), "cannot find policy p9"),
        (c.ACLPolicySet(id="p1", name="global-management"),
         'Invalid Policy: A policy with name "global-management" already exists'),
        (c.ACLPolicySet(id=GLOBAL_MANAGEMENT_ID, name="global-management", rules='acl = "read"'),
         "Changing the Rules for the builtin global-management policy is not permitted"),
        (c.ACLPolicySet(id=GLOBAL_MANAGEMENT_ID, name="global-management", rules=GLOBAL_MANAGEMENT_RULES,
                        datacenters=("dc2",)),
         "Changing the Datacenters of the builtin global-management policy is not permitted"),
        (c.ACLPolicyDelete(id=GLOBAL_MANAGEMENT_ID),
         "Delete operation not permitted on the builtin global-management policy"),
        (c.ACLRoleSet(id="r2", name="ops", create=True), 'Invalid Role: A Role with Name "ops" already exists'),
        (c.ACLRoleSet(id="r9", name="x"), "cannot find role r9"),
        (c.ACLPolicySet(id="", name="x", create=True), "Missing ACL Policy ID"),
        (c.ACLRoleSet(id="r3", name="", create=True), "Missing ACL Role Name"),
        (c.ACLRoleSet(id="r2", name="x", policies=(("", "nope"),), create=True),
         'No such ACL policy with name "nope"'),
    ],
)  # fmt: skip
def test_policy_and_role_refusals(cmd: c.Command, error: str) -> None:
    d = initialised()
    policy(d, "p1", "web", "")
    d.run(c.ACLRoleSet(id="r1", name="ops", create=True))
    before = d.state
    assert d.run(cmd) == Failed(error)
    assert d.state.acl_policies is before.acl_policies and d.state.acl_roles is before.acl_roles


def test_global_management_may_be_renamed() -> None:
    d = initialised()
    assert d.run(c.ACLPolicySet(id=GLOBAL_MANAGEMENT_ID, name="root", rules=GLOBAL_MANAGEMENT_RULES)) == (
        GLOBAL_MANAGEMENT_ID
    )
    assert reads.acl_policy_by_name(d.state, "root").value.id == GLOBAL_MANAGEMENT_ID


def test_roles_grant_their_policies_and_identities() -> None:
    d = initialised()
    policy(d, "p-kv", "kv", 'key_prefix "app/" { policy = "write" }')
    d.run(c.ACLRoleSet(id="r1", name="ops", policies=(("", "kv"),), service_identities=(("api", ()),),
                       create=True))  # fmt: skip
    token(d, A1, S1, roles=(("", "ops"),))
    a = authz(d, S1)
    assert a.allowed("key", "app/x", "write") and not a.allowed("key", "other", "read")
    # the service identity's synthetic policy (structs.ACLServiceIdentity.SyntheticPolicy)
    assert a.allowed("service", "api", "write") and a.allowed("service", "api-sidecar-proxy", "write")
    assert a.allowed("service", "db", "read") and not a.allowed("service", "db", "write")
    assert a.allowed("node", "n1", "read") and not a.allowed("node", "n1", "write")
    assert role_json(d.state, d.state.acl_roles["r1"])["Policies"] == [{"ID": "p-kv", "Name": "kv"}]
    d.run(c.ACLRoleDelete(id="r1"))
    assert not authz(d, S1).allowed("key", "app/x", "write")
    assert "Roles" not in token_json(d.state, d.state.acl_tokens[A1])


# ------------------------------------------------------------------ resolving a secret


def test_anonymous_and_default_policy() -> None:
    d = Driven()
    assert authz(d, "", "allow").allowed("key", "k", "write")  # nothing stored: the default policy
    assert not authz(d, "", "deny").allowed("key", "k", "read")
    d = initialised()
    policy(d, "p-read", "read-nodes", 'node_prefix "" { policy = "read" }')
    d.run(c.ACLTokenSet(accessor_id=ANONYMOUS_TOKEN_ID, policies=(("p-read", ""),)))
    a = authz(d, "")
    assert a.allowed("node", "n1", "read") and not a.allowed("node", "n1", "write")
    with pytest.raises(ACLNotFound):
        authz(d, "no-such-secret")


def test_datacenter_restricted_policies_and_node_identities() -> None:
    d = initialised()
    policy(d, "p-dc2", "dc2-only", 'key_prefix "" { policy = "write" }', datacenters=("dc2",))
    token(d, A1, S1, policies=(("p-dc2", ""),), node_identities=(("n1", "dc1"),))
    in_dc1, in_dc2 = authz(d, S1, dc="dc1"), authz(d, S1, dc="dc2")
    assert not in_dc1.allowed("key", "k", "write") and in_dc2.allowed("key", "k", "write")
    assert in_dc1.allowed("node", "n1", "write") and not in_dc2.allowed("node", "n1", "write")
    assert policy_json(d.state.acl_policies["p-dc2"])["Datacenters"] == ["dc2"]


def test_cache_follows_the_acl_indexes() -> None:
    d = initialised()
    policy(d, "p1", "kv", 'key_prefix "" { policy = "read" }')
    token(d, A1, S1, policies=(("p1", ""),))
    cache = AuthorizerCache("dc1", "deny")
    first = cache.resolve(d.state, S1, d.now)
    assert cache.resolve(d.state, S1, d.now) is first
    d.run(c.KVSet(key="unrelated"))
    assert cache.resolve(d.state, S1, d.now) is first  # no ACL write, same answer
    d.run(c.ACLPolicySet(id="p1", name="kv", rules='key_prefix "" { policy = "write" }'))
    again = cache.resolve(d.state, S1, d.now)
    assert again is not first and again.authorizer.allowed("key", "k", "write")
    d.run(c.ACLTokenDelete(accessor_id=A1))
    with pytest.raises(ACLNotFound):  # a deleted token is refused at once
        cache.resolve(d.state, S1, d.now)


def test_cache_does_not_outlive_an_expiry() -> None:
    d = initialised()
    token(d, A1, S1, expiration_ttl=60 * SEC)
    cache = AuthorizerCache("dc1", "deny")
    cache.resolve(d.state, S1, d.now)
    with pytest.raises(ACLNotFound):
        cache.resolve(d.state, S1, d.now + 61 * SEC)


# ------------------------------------------------------------------ snapshots, views, queries


def _populated(order: list[c.Command]) -> StateStore:
    d = initialised(initial_management=MGMT)
    for cmd in order:
        assert not isinstance(d.run(cmd), Failed), cmd
    return d.store


def test_snapshot_round_trip_and_determinism() -> None:
    p = c.ACLPolicySet(id="p1", name="kv", rules='key "a" { policy = "read" }', datacenters=("dc1",), create=True)
    q = c.ACLPolicySet(id="p2", name="svc", rules="", create=True)
    r = c.ACLRoleSet(id="r1", name="ops", node_identities=(("n", "dc1"),), create=True)
    t = c.ACLTokenSet(accessor_id=A1, secret_id=S1, service_identities=(("web", ("dc1", "dc2")),), create=True)
    one, two = _populated([p, q, r, t]), _populated([p, q, r, t])
    data = one.snapshot()
    assert data == two.snapshot()
    restored = StateStore()
    restored.restore(data)
    assert restored.current == one.current
    assert restored.current.acl_secrets == one.current.acl_secrets
    assert resolve(restored.current, S1, datacenter="dc1", default_policy="deny", now=0).authorizer.allowed(
        "service", "web", "write"
    )


def test_format_1_snapshots_are_read_without_acls() -> None:
    d = Driven()
    d.run(c.KVSet(key="k", value=b"v"))
    raw = msgpack.unpackb(encode_state(d.state))
    old = msgpack.packb([1, *raw[1:11]], use_bin_type=True)
    state = decode_state(old)
    assert state.kvs == d.state.kvs and state.acl_tokens == immutables.Map()


def test_token_json_is_consuls() -> None:
    d = initialised()
    d.now = 1_700_000_000 * SEC + 120_000
    token(d, A1, S1, description="web", policies=(("", "global-management"),), expiration_ttl=3600 * SEC)
    shown = token_json(d.state, d.state.acl_tokens[A1])
    assert list(shown) == ["AccessorID", "SecretID", "Description", "Policies", "Local", "ExpirationTime",
                           "CreateTime", "Hash", "CreateIndex", "ModifyIndex"]  # fmt: skip
    assert shown["CreateTime"] == "2023-11-14T22:13:20.00012Z"
    assert shown["ExpirationTime"] == "2023-11-14T23:13:20.00012Z"
    assert re.fullmatch(r"[A-Za-z0-9+/]{43}=", shown["Hash"])
    assert token_json(d.state, d.state.acl_tokens[A1], show_secret=False)["SecretID"] == "<hidden>"
    stub = policy_stub_json(d.state.acl_policies[GLOBAL_READ_ONLY_ID])
    assert list(stub) == ["ID", "Name", "Description", "Datacenters", "Hash", "CreateIndex", "ModifyIndex"]
    assert stub["Datacenters"] is None and "Datacenters" not in policy_json(d.state.acl_policies[GLOBAL_READ_ONLY_ID])
    assert go_time(0) == "1970-01-01T00:00:00Z"


def test_named_queries() -> None:
    d = initialised(initial_management=MGMT)
    policy(d, "p1", "kv", 'key_prefix "" { policy = "read" }')
    token(d, A1, S1, policies=(("p1", ""),))
    got = queries.run(d.state, "acl.token.self", {"secret_id": S1})
    assert got.value["AccessorID"] == A1 and got.index == d.state.table_index("acl-tokens")
    assert queries.run(d.state, "acl.token", {"accessor_id": A2}).value is None
    assert [t["AccessorID"] for t in queries.run(d.state, "acl.tokens", {"policy": "p1"}).value] == [A1]
    assert queries.run(d.state, "acl.policy", {"name": "kv"}).value["Rules"] == 'key_prefix "" { policy = "read" }'
    assert {p["Name"] for p in queries.run(d.state, "acl.policies", {}).value} == {
        "global-management", "builtin/global-read-only", "kv"}  # fmt: skip
    ident = queries.run(d.state, "acl.identity", {"secret_id": S1, "datacenter": "dc1", "now": d.now})
    assert ident.value["Policies"] == [{"Name": "kv", "Rules": 'key_prefix "" { policy = "read" }'}]
    assert queries.run(d.state, "acl.identity", {"secret_id": "nope", "now": 0}).value is None
    anonymous = queries.run(d.state, "acl.identity", {"secret_id": "", "now": 0}).value
    assert anonymous["Token"]["AccessorID"] == ANONYMOUS_TOKEN_ID and anonymous["Policies"] == []
    empty = Driven()  # before the leader stored the anonymous token: no token, no policies
    assert queries.run(empty.state, "acl.identity", {"secret_id": "", "now": 0}).value == {"Token": None,
                                                                                         "Policies": []}


def test_acl_writes_wake_only_acl_readers() -> None:
    d = initialised()
    woken: list[str] = []
    d.store.hub.register(reads.acl_tokens(d.state).interests, lambda: woken.append("tokens"))
    d.store.hub.register(reads.kv_get(d.state, "k").interests, lambda: woken.append("kv"))
    token(d, A1, S1)
    assert woken == ["tokens"]


@pytest.mark.parametrize(
    ("check", "error"),
    [
        (lambda: acl_leader.check_token_ids("not-a-uuid", ""), "Invalid Token: AccessorID is not a valid UUID"),
        (lambda: acl_leader.check_token_ids(A1, "00000000-0000-0000-0000-000000000009"),
         'Invalid Token: UUIDs with the prefix "00000000-0000-0000-0000-0000000000" are reserved'),
        (lambda: acl_leader.check_token_ids(A1, S1), None),
        (lambda: acl_leader.check_policy("bad name", ""),
         "Invalid Policy: invalid Name. Only alphanumeric characters, '-' and '_' are allowed"),
        (lambda: acl_leader.check_policy("ok", 'key "a" { policy = "nope" }'),
         'Invalid key policy: &acl.KeyRule{Prefix:"a", Policy:"nope", EnterpriseRule:acl.EnterpriseRule{}}'),
        (lambda: acl_leader.check_policy("ok-name_1", 'key "a" { policy = "read" }'), None),
        (lambda: acl_leader.check_policy("", ""), "Invalid Policy: no Name is set"),
        (lambda: acl_leader.check_role_name(""), "Invalid Role: no Name is set"),
        (lambda: acl_leader.check_role_name("x" * 257),
         "Invalid Role: invalid Name. Only alphanumeric characters, '-' and '_' are allowed"),
    ],
)  # fmt: skip
def test_leader_pre_checks(check: Any, error: str | None) -> None:
    assert check() == error


# ------------------------------------------------------------------ invariants under random ACL writes

_IDS = st.sampled_from([A1, A2, S1, S2, MGMT])
_NAMES = st.sampled_from(["p", "q", "global-management"])
_LINKS = st.lists(st.tuples(st.sampled_from(["", "p1", "p2", GLOBAL_MANAGEMENT_ID]), _NAMES), max_size=2).map(tuple)
_ACL_COMMANDS = st.one_of(
    st.builds(c.ACLTokenSet, accessor_id=_IDS, secret_id=_IDS | st.just(""), policies=_LINKS,
              roles=st.lists(st.tuples(st.just(""), st.sampled_from(["r", "s"])), max_size=1).map(tuple),
              local=st.booleans(), create=st.booleans()),
    st.builds(c.ACLTokenDelete, accessor_id=_IDS),
    st.builds(c.ACLPolicySet, id=st.sampled_from(["p1", "p2", GLOBAL_MANAGEMENT_ID]), name=_NAMES,
              rules=st.sampled_from(["", 'key "a" { policy = "read" }']), create=st.booleans()),
    st.builds(c.ACLPolicyDelete, id=st.sampled_from(["p1", "p2", GLOBAL_MANAGEMENT_ID])),
    st.builds(c.ACLRoleSet, id=st.sampled_from(["r1", "r2"]), name=st.sampled_from(["r", "s"]), policies=_LINKS,
              create=st.booleans()),
    st.builds(c.ACLRoleDelete, id=st.sampled_from(["r1", "r2"])),
    st.builds(c.ACLBootstrap, accessor_id=_IDS, secret_id=_IDS | st.just(""), reset_index=st.integers(0, 12)),
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(st.lists(_ACL_COMMANDS, max_size=12))
def test_random_acl_writes_keep_the_tables_consistent(cmds: list[c.Command]) -> None:
    d = initialised()
    for cmd in cmds:
        before = d.state
        result = d.run(cmd)
        if isinstance(result, Failed):  # a refusal changes no table
            assert (d.state.acl_tokens, d.state.acl_policies, d.state.acl_roles) == (
                before.acl_tokens, before.acl_policies, before.acl_roles)  # fmt: skip
    state = d.state
    # the secret index is exactly the tokens' secrets; names are unique; built-ins are never lost
    assert dict(state.acl_secrets) == {t.secret_id: a for a, t in state.acl_tokens.items()}
    assert "" not in state.acl_secrets and "" not in state.acl_tokens
    assert len({p.name for p in state.acl_policies.values()}) == len(state.acl_policies)
    assert len({r.name for r in state.acl_roles.values()}) == len(state.acl_roles)
    assert GLOBAL_MANAGEMENT_ID in state.acl_policies and ANONYMOUS_TOKEN_ID in state.acl_tokens
    assert state.acl_policies[GLOBAL_MANAGEMENT_ID].rules == GLOBAL_MANAGEMENT_RULES
    # every token's hash is its content's; a snapshot gives the same state back
    assert all(t.hash == token_hash(t) for t in state.acl_tokens.values())
    assert decode_state(encode_state(state)) == state
