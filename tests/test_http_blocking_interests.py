"""Blocking catalog and health reads over real sockets wake only for what they read (issue 10's last rule).

A real HTTP server on 127.0.0.1 over a real MemberTable; each blocking request is a real TCP request.  "Not
answered" is checked with counters, not sleeps: once the request is parked the table's hub holds its waiter;
a change to something else must leave it there (a woken waiter leaves the hub at once, synchronously) and, once
every task has settled (``wait_all_tasks_blocked``), the request must still be open.  Every wait has a deadline.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import trio
import trio.testing

from agent.catalog.indexed import apply_changes
from agent.catalog.record import CheckRecord, NodeCatalog, ServiceRecord
from agent.members import STATUS_FAILED
from tests.http_fakes import FakeAgent, Reply, fetch, member, run, server_config, serving

DEADLINE = 10.0


class Cluster:
    """node1 (a server, the leader), n1 running web and n2 running db, as replicated records."""

    def __init__(self) -> None:
        self.api = FakeAgent(config=server_config())
        self.api.add_self()
        self.api.apply("member-join", member("n1", "10.0.0.21"))
        self.api.apply("member-join", member("n2", "10.0.0.22"))
        self.versions: dict[str, int] = {}
        self.publish("n1", ServiceRecord(id="web", name="web", port=80))
        self.publish("n2", ServiceRecord(id="db", name="db", port=5432))

    def publish(self, node: str, *services: ServiceRecord, checks: tuple[CheckRecord, ...] = ()) -> None:
        self.versions[node] = self.versions.get(node, 0) + 1
        record = NodeCatalog(node=node, version=self.versions[node], services=services, checks=checks)
        self.api.table.apply_catalog(lambda catalog, index: apply_changes(catalog, {node: record}, index), [node])


async def _parked(api: FakeAgent, addr: tuple[str, int], target: str, nursery: trio.Nursery) -> list[Reply]:
    """Start ``target`` as a blocking request and return once the server has parked it in the hub."""
    replies: list[Reply] = []
    before = api.table.hub.waiting()

    async def ask() -> None:
        replies.append(await fetch(addr, "GET", target))

    nursery.start_soon(ask)
    while api.table.hub.waiting() == before:
        await trio.sleep(0.005)
    return replies


def _index(reply: Reply) -> int:
    return int(reply.header("X-Consul-Index") or 0)


def _blocking(path: str, change_unrelated: Callable[[Cluster], None], change_related: Callable[[Cluster], None],
              check: Callable[[Cluster, Reply, int], None]) -> None:  # fmt: skip
    c = Cluster()

    async def main() -> None:
        with trio.fail_after(DEADLINE):
            async with serving(c.api) as addr, trio.open_nursery() as nursery:
                first = await fetch(addr, "GET", path)
                index = _index(first)
                assert first.status == 200 and 0 < index <= c.api.table.current.index
                replies = await _parked(c.api, addr, f"{path}?index={index}&wait=5m", nursery)
                assert c.api.table.hub.waiting() == 1
                table_before = c.api.table.current.index
                change_unrelated(c)
                assert c.api.table.current.index > table_before  # the table moved...
                assert c.api.table.hub.waiting() == 1  # ...but the waiter was not woken
                await trio.testing.wait_all_tasks_blocked()
                assert replies == []
                assert _index(await fetch(addr, "GET", path)) == index  # and what it reads did not move
                change_related(c)
                assert c.api.table.hub.waiting() == 0  # woken at once
                while not replies:
                    await trio.sleep(0.005)
                (reply,) = replies
                assert reply.status == 200 and _index(reply) == c.api.table.current.index > index
                check(c, reply, index)

    run(main)


def _db_changes(c: Cluster) -> None:
    c.publish("n2", ServiceRecord(id="db", name="db", port=5432, tags=("primary",)))


def test_catalog_service_web_ignores_db_and_wakes_for_web() -> None:
    def check(c: Cluster, reply: Reply, index: int) -> None:
        assert [e["ServiceID"] for e in json.loads(reply.body)] == ["web", "web-2"]

    _blocking("/v1/catalog/service/web", _db_changes,
              lambda c: c.publish("n1", ServiceRecord(id="web", name="web", port=80),
                                  ServiceRecord(id="web-2", name="web", port=81)), check)  # fmt: skip


def test_health_service_web_wakes_when_its_node_fails_not_when_another_node_fails() -> None:
    def check(c: Cluster, reply: Reply, index: int) -> None:
        (entry,) = json.loads(reply.body)
        serf = entry["Checks"][0]
        assert serf["CheckID"] == "serfHealth" and serf["Status"] == "critical"
        assert serf["ModifyIndex"] == _index(reply)

    _blocking("/v1/health/service/web",
              lambda c: c.api.apply("member-failed", member("n2", "10.0.0.22", status=STATUS_FAILED)),
              lambda c: c.api.apply("member-failed", member("n1", "10.0.0.21", status=STATUS_FAILED)),
              check)  # fmt: skip


def test_catalog_service_web_wakes_when_web_goes() -> None:
    def check(c: Cluster, reply: Reply, index: int) -> None:
        assert json.loads(reply.body) == []

    _blocking("/v1/catalog/service/web", _db_changes, lambda c: c.publish("n1"), check)


def test_health_node_wakes_for_its_own_checks_only() -> None:
    def check(c: Cluster, reply: Reply, index: int) -> None:
        assert [ch["CheckID"] for ch in json.loads(reply.body)] == ["mem", "serfHealth"]

    _blocking("/v1/health/node/n1",
              lambda c: c.publish("n2", ServiceRecord(id="db", name="db"), checks=(CheckRecord(id="mem", name="m"),)),
              lambda c: c.publish("n1", ServiceRecord(id="web", name="web", port=80),
                                  checks=(CheckRecord(id="mem", name="m"),)),
              check)  # fmt: skip


def test_catalog_nodes_ignores_service_changes_and_gossip_tags_and_wakes_for_a_join() -> None:
    def unrelated(c: Cluster) -> None:
        _db_changes(c)
        c.api.apply("member-update", member("n1", "10.0.0.21"))  # a tag-only update (a new member index)

    def check(c: Cluster, reply: Reply, index: int) -> None:
        assert [n["Node"] for n in json.loads(reply.body)] == ["n1", "n2", "n3", "node1"]

    _blocking("/v1/catalog/nodes", unrelated, lambda c: c.api.apply("member-join", member("n3", "10.0.0.23")), check)


def test_a_read_without_a_leader_waits_for_one_not_for_other_changes() -> None:
    """``require_leader`` parks on the leader interest: a catalog change does not end the hold, a leader does."""
    c = Cluster()
    c.api.table.set_leader("", [])

    async def main() -> None:
        with trio.fail_after(DEADLINE):
            async with serving(c.api, rpc_hold_timeout=60.0) as addr, trio.open_nursery() as nursery:
                replies = await _parked(c.api, addr, "/v1/catalog/nodes", nursery)
                _db_changes(c)
                assert c.api.table.hub.waiting() == 1
                c.api.table.set_leader("10.0.0.11:8300", ["10.0.0.11:8300"])
                while not replies:
                    await trio.sleep(0.005)
                assert replies[0].status == 200

    run(main)
