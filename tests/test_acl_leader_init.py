"""The leader initialises ACLs when it takes office (agent/server/duties.py, Consul's ``leader.go``
``initializeACLs``): the built-in policies, the anonymous token and the ``initial_management`` token, proposed
once, never twice across leader changes.

Deterministic: the real StoreService over a single-replica stand-in whose leadership a test moves.  Then real
agents: a fresh cluster of three servers answers ``/v1/acl/token/self`` with the configured secret, and after the
leader is killed and another elected, the store still holds exactly one token with that secret.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
import requests
import trio
from consul_agents import Cluster, agreed_leader, needs_acl_agents, start_servers
from procs import wait_for
from store_direct import direct_service

from agent.acl.builtin import ANONYMOUS_TOKEN_ID, GLOBAL_MANAGEMENT_ID, GLOBAL_READ_ONLY_ID
from agent.server.duties import ACLInit, LeaderDuties
from agent.server.state.acl import bootstrap_state, token_by_secret
from agent.server.state.commands import ACLBootstrap, ACLTokenSet

MGMT = "c1a1b4b5-7d3a-4a4e-9b7e-2b0d0c9e6f11"


def trio_test(fn: Any) -> Any:
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        trio.run(functools.partial(fn, *args, **kwargs))

    return run


@trio_test
async def test_the_leader_creates_the_builtins_and_bootstraps_the_initial_management_token() -> None:
    service, replica = direct_service()
    duties = LeaderDuties(service, acl=ACLInit(MGMT))
    await duties._round()
    state = service.store.current
    assert set(state.acl_policies) == {GLOBAL_MANAGEMENT_ID, GLOBAL_READ_ONLY_ID}
    assert state.acl_tokens[ANONYMOUS_TOKEN_ID].secret_id == "anonymous"
    token = token_by_secret(state, MGMT)
    assert token is not None and token.description == "Initial Management Token"
    assert token.policies == (GLOBAL_MANAGEMENT_ID,)
    assert token.accessor_id not in (MGMT, ANONYMOUS_TOKEN_ID) and not token.accessor_id.startswith("00000000")
    # it went in through bootstrap: /v1/acl/bootstrap is refused from now on (Consul's reset index text)
    allowed, reset = bootstrap_state(state)
    assert not allowed and reset > 0
    proposals = replica.proposals
    # the same leader's next rounds, and a new leader's first round, propose nothing
    await duties._round()
    await LeaderDuties(service, acl=ACLInit(MGMT))._round()
    assert replica.proposals == proposals
    assert len(service.store.current.acl_tokens) == 2


@trio_test
async def test_a_follower_proposes_nothing_and_a_new_term_initialises_again_only_what_is_missing() -> None:
    service, replica = direct_service()
    duties = LeaderDuties(service, acl=ACLInit(""))
    replica.leader = "10.0.0.2:8300"  # another server leads
    await duties._round()
    assert replica.proposals == 0 and not service.store.current.acl_tokens
    replica.leader = replica.address
    await duties._round()
    assert set(service.store.current.acl_tokens) == {ANONYMOUS_TOKEN_ID}
    before = replica.proposals
    # the servers restart with initial_management configured: the next leader adds that token (through
    # bootstrap, still allowed), nothing else
    replica.leader = "10.0.0.2:8300"
    await duties._round()
    replica.leader = replica.address
    restarted = LeaderDuties(service, acl=ACLInit(MGMT))
    await restarted._round()
    assert replica.proposals == before + 1
    assert token_by_secret(service.store.current, MGMT) is not None
    assert not bootstrap_state(service.store.current)[0]


@trio_test
async def test_after_a_bootstrap_the_initial_management_token_is_a_plain_token_set() -> None:
    """``initializeManagementToken``: bootstrap no longer allowed -> the token is set with global-management."""
    service, _ = direct_service()
    await LeaderDuties(service, acl=ACLInit(""))._round()
    await service.apply(ACLBootstrap(accessor_id="a0a0a0a0-0000-4000-8000-00000000000b",
                                     secret_id="b0b0b0b0-0000-4000-8000-00000000000b"))
    await LeaderDuties(service, acl=ACLInit(MGMT))._round()
    token = token_by_secret(service.store.current, MGMT)
    assert token is not None and token.policies == (GLOBAL_MANAGEMENT_ID,)
    assert token.description == "Initial Management Token"


@trio_test
async def test_two_leaders_racing_cannot_store_the_initial_management_token_twice() -> None:
    """Two leaders that both computed the commands from the same old state: the second proposal is refused by
    the apply (the secret is in use), so the store holds one token with the secret."""
    service, _ = direct_service()
    await LeaderDuties(service, acl=ACLInit(""))._round()  # builtins and anonymous, no management token
    first = ACLBootstrap(accessor_id="a0a0a0a0-0000-4000-8000-000000000001", secret_id=MGMT,
                         description="Initial Management Token")
    second = ACLTokenSet(accessor_id="a0a0a0a0-0000-4000-8000-000000000002", secret_id=MGMT,
                         description="Initial Management Token", policies=((GLOBAL_MANAGEMENT_ID, ""),), create=True)
    await service.apply(first)
    from agent.server.access import CommandFailed

    with pytest.raises(CommandFailed, match="SecretID is already in use"):
        await service.apply(second)
    assert [t for t in service.store.current.acl_tokens.values() if t.secret_id == MGMT] == [
        token_by_secret(service.store.current, MGMT)]


@trio_test
async def test_acls_off_or_a_secondary_datacenter_initialise_nothing() -> None:
    service, replica = direct_service()
    await LeaderDuties(service)._round()
    assert replica.proposals == 0 and not service.store.current.acl_policies


def test_supervisor_initialises_only_in_the_primary_datacenter() -> None:
    from agent.config import ACLConfig, ACLTokens, AgentConfig
    from agent.supervisor import acl_init_for

    on = ACLConfig(enabled=True, tokens=ACLTokens(initial_management=MGMT))
    assert acl_init_for(AgentConfig(acl=on)) == ACLInit(MGMT)
    assert acl_init_for(AgentConfig(acl=on, datacenter="dc2", primary_datacenter="dc1")) is None
    assert acl_init_for(AgentConfig()) is None
    assert MGMT not in repr(ACLInit(MGMT))  # a secret never reaches a log line through a repr


# ------------------------------------------------------------------ real agents


def _get_ok(server: Any, path: str, secret: str) -> requests.Response | None:
    """The answer if it is a 200; None while the cluster cannot answer yet (no leader, a forward to the dead
    leader timing out)."""
    try:
        r = requests.get(f"http://{server.http_addr}{path}", headers={"X-Consul-Token": secret}, timeout=15)
    except requests.RequestException:
        return None
    return r if r.status_code == 200 else None


@needs_acl_agents
def test_three_servers_answer_token_self_with_the_initial_management_secret_once(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    acl = {"acl": {"enabled": True, "default_policy": "deny", "tokens": {"initial_management": MGMT}}}
    try:
        servers = start_servers(cluster, 3, acl)
        for server in servers:
            r = wait_for(lambda s=server: _get_ok(s, "/v1/acl/token/self", MGMT),
                         timeout=60, what=f"{server.name}: token/self of the initial management token",
                         diagnostics=cluster.diagnostics)
            token = r.json()
            assert token["SecretID"] == MGMT and token["Description"] == "Initial Management Token"
            assert token["Policies"] == [{"ID": GLOBAL_MANAGEMENT_ID, "Name": "global-management"}]
        accessor = token["AccessorID"]
        refused = requests.put(f"http://{servers[0].http_addr}/v1/acl/bootstrap", timeout=15)
        assert refused.status_code == 403 and "ACL bootstrap no longer allowed (reset index:" in refused.text
        # a leader change: the new leader initialises again and finds everything there
        leader = wait_for(lambda: agreed_leader(servers), timeout=30, what="an agreed leader")
        old = next(s for s in servers if leader.startswith(f"{s.ip}:"))
        old.proc.kill()
        rest = [s for s in servers if s is not old]
        wait_for(lambda: agreed_leader(rest, not_=leader), timeout=60, what="a new leader",
                 diagnostics=cluster.diagnostics)
        new = next(s for s in rest if agreed_leader(rest, not_=leader).startswith(f"{s.ip}:"))  # type: ignore[union-attr]
        wait_for(lambda: "acls initialized (0 created or updated)" in new.proc.log_path.read_text(errors="replace"),
                 timeout=30, what="the new leader's ACL initialisation (finding everything there)",
                 diagnostics=cluster.diagnostics)
        tokens = wait_for(lambda: _get_ok(rest[0], "/v1/acl/tokens", MGMT), timeout=30, what="the token list")
        mine = [t for t in tokens.json() if t["Description"] == "Initial Management Token"]
        assert [t["AccessorID"] for t in mine] == [accessor]
        assert sorted(t["AccessorID"] for t in tokens.json()) == sorted([accessor, ANONYMOUS_TOKEN_ID])
        policies = wait_for(lambda: _get_ok(rest[1], "/v1/acl/policies", MGMT), timeout=30,
                            what="the policy list").json()
        assert sorted(p["ID"] for p in policies) == [GLOBAL_MANAGEMENT_ID, GLOBAL_READ_ONLY_ID]
    finally:
        cluster.close()
