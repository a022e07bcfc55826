"""agent/server/acl_resolver.py as a client uses it, over the real StoreService on a one-replica store
(tests/store_direct.py): the cache and its ACL-index watch, ``down_policy`` when the servers cannot be reached
(the leader taken away: the store answers NoLeader, as a client's forwarding does), the agent recovery token.
Time is trio's MockClock, so the token TTL is exact."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from store_direct import direct_service

from agent.config import ACLConfig, ACLTokens
from agent.server.acl_resolver import ACLNotFound, TokenResolver
from agent.server.state import commands as c

SECRET = "0d0c4f3e-1111-4000-8000-0000000000a1"
RECOVERY = "0d0c4f3e-2222-4000-8000-0000000000a2"


async def _seed(service: Any) -> None:
    await service.apply(c.ACLPolicySet(id="0d0c4f3e-3333-4000-8000-0000000000a3", name="kv",
                                       rules='key_prefix "app/" { policy = "read" }', create=True))  # fmt: skip
    await service.apply(c.ACLTokenSet(accessor_id="0d0c4f3e-4444-4000-8000-0000000000a4", secret_id=SECRET,
                                      policies=(("0d0c4f3e-3333-4000-8000-0000000000a3", ""),), create=True))


def _client(service: Any, down_policy: str = "extend-cache", ttl: float = 30.0) -> TokenResolver:
    acl = ACLConfig(enabled=True, default_policy="deny", down_policy=down_policy, token_ttl=ttl,
                    tokens=ACLTokens(agent_recovery=RECOVERY))  # fmt: skip
    return TokenResolver(acl, node_name="c1", datacenter="dc1", access=service, tokens=lambda: acl.tokens,
                         clock=trio.current_time)  # fmt: skip


def run(main: Any) -> None:
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_a_client_caches_for_token_ttl_and_the_watch_drops_a_deleted_token_at_once() -> None:
    async def main() -> None:
        service, _ = direct_service()
        await _seed(service)
        resolver = _client(service, ttl=30.0)
        who = await resolver.resolve(SECRET)
        assert who.authorizer.allowed("key", "app/x") and not who.authorizer.allowed("key", "app/x", "write")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(resolver.watch)
            await trio.sleep(1)
            await service.apply(c.ACLTokenDelete(accessor_id="0d0c4f3e-4444-4000-8000-0000000000a4"))
            await trio.sleep(0.01)  # the watch's blocking read wakes on the write (virtual time)
            with pytest.raises(ACLNotFound):
                await resolver.resolve(SECRET)  # 1 s into a 30 s TTL
            nursery.cancel_scope.cancel()

    run(main)


def test_without_the_watch_the_cached_answer_lives_out_its_ttl() -> None:
    # what the watch is for: the same deletion, no watch, is seen only when token_ttl runs out
    async def main() -> None:
        service, _ = direct_service()
        await _seed(service)
        resolver = _client(service, ttl=30.0)
        await resolver.resolve(SECRET)
        await service.apply(c.ACLTokenDelete(accessor_id="0d0c4f3e-4444-4000-8000-0000000000a4"))
        assert (await resolver.resolve(SECRET)).authorizer.allowed("key", "app/x")
        await trio.sleep(30)
        with pytest.raises(ACLNotFound):
            await resolver.resolve(SECRET)

    run(main)


@pytest.mark.parametrize(("policy", "cached", "uncached"), [
    ("extend-cache", True, False), ("async-cache", True, False), ("allow", True, True), ("deny", False, False)])
def test_down_policy_when_no_server_answers(policy: str, cached: bool, uncached: bool) -> None:
    async def main() -> None:
        service, replica = direct_service()
        await _seed(service)
        resolver = _client(service, down_policy=policy, ttl=1.0)
        await resolver.resolve(SECRET)
        await trio.sleep(2)  # past token_ttl: the entry must be asked again
        replica.leader = ""  # no server answers (NoLeader)
        assert (await resolver.resolve(SECRET)).authorizer.allowed("key", "app/x") is cached
        other = "0d0c4f3e-5555-4000-8000-0000000000a5"  # never resolved: the default policy (deny), or allow
        assert (await resolver.resolve(other)).authorizer.allowed("key", "app/x") is uncached
        assert (await resolver.resolve(RECOVERY)).authorizer.allowed("agent", "c1", "write")  # no server needed

    run(main)


def test_the_agent_recovery_token_grants_this_agent_only() -> None:
    async def main() -> None:
        service, replica = direct_service()
        replica.leader = ""
        who = (await _client(service).resolve(RECOVERY)).authorizer
        assert who.allowed("agent", "c1", "write") and who.allowed("node", "any")
        assert not who.allowed("agent", "c2", "read") and not who.allowed("key", "app/x")
        assert not who.allowed("node", "any", "write")

    run(main)


def test_acls_off_every_token_is_allowed_and_dns_sees_everything() -> None:
    async def main() -> None:
        service, _ = direct_service()
        resolver = TokenResolver(ACLConfig(), node_name="c1", datacenter="dc1", access=service,
                                 tokens=lambda: ACLTokens())  # fmt: skip
        assert (await resolver.resolve("anything")).authorizer.allowed("acl", "", "write")
        assert resolver.view("anything") is None

    run(main)
