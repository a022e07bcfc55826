"""Registrations reach every agent's snapshot: the ``catalog.registered`` query over a real StateStore, the
mirror (agent/server/mirror.py) publishing its answers into a member table, its backoff when no server can be
reached, and the leader deregistering what an agent's node shadows.

The store side is the real `StoreService` over a real `StateStore` (tests/store_direct.py: only replication is
absent); forwarding goes over real loopback sockets.  Waits are conditions under ``trio.fail_after``.
"""

from __future__ import annotations

import functools
from typing import Any

import trio
from store_direct import direct_service

from agent.catalog import query
from agent.catalog.record import CheckRecord, ServiceRecord
from agent.catalog.registered import registered_from_wire
from agent.members import Member, MemberTable
from agent.server.access import ReadMode
from agent.server.duties import LeaderDuties
from agent.server.forwarding import ForwardAccess
from agent.server.mirror import QUERY, RegisteredMirror
from agent.server.rpc import RPCServer
from agent.server.service import StoreService
from agent.server.state.commands import CatalogDeregister, CatalogRegister, KVSet, SessionCreate
from agent.server.state.leader import shadowed_registrations
from agent.server.transport import Transport

WEB = ServiceRecord(id="web1", name="web", tags=("v1",), port=8080)
PROBE = CheckRecord(id="probe", name="probe", status="passing", service_id="web1")


def trio_test(fn: Any) -> Any:
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        trio.run(functools.partial(fn, *args, **kwargs))

    return run


def register(node: str = "ext", address: str = "10.0.0.9", **kw: Any) -> CatalogRegister:
    return CatalogRegister(node=node, address=address, datacenter="dc1", node_meta={"external-node": "true"},
                           service=WEB, checks=(PROBE,), **kw)  # fmt: skip


async def wait_until(predicate: Any, timeout: float = 5.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


# ------------------------------------------------------------------ the query


@trio_test
async def test_the_query_answers_every_registered_node_with_its_services_checks_and_the_tables_index() -> None:
    service, _ = direct_service()
    empty = await service.query(QUERY, {}, ReadMode())
    assert (empty.index, empty.value) == (1, [])
    await service.apply(register())
    await service.apply(register("other", "10.0.0.10"))
    got = await service.query(QUERY, {}, ReadMode("stale"))
    registered = registered_from_wire(got.index, got.value)
    assert got.index == service.store.current.table_index("nodes", "services", "checks") == 2
    assert sorted(registered.nodes) == ["ext", "other"]
    node = registered.nodes["ext"]
    assert (node.address, dict(node.meta), node.datacenter) == ("10.0.0.9", {"external-node": "true"}, "dc1")
    assert [(s.id, c, m) for s, c, m in node.services] == [("web1", 1, 1)]
    # the store filled the service check's name and tags in, and its indexes are the Raft entry's
    assert [(k.id, k.service_name, k.service_tags, c) for k, c, _ in node.checks] == [("probe", "web", ("v1",), 1)]


@trio_test
async def test_a_blocking_query_wakes_on_a_registration_and_not_on_a_kv_write() -> None:
    service, _ = direct_service()
    await service.apply(register())
    index = (await service.query(QUERY, {}, ReadMode())).index
    woken: list[Any] = []

    async def watch() -> None:
        woken.append(await service.query(QUERY, {}, ReadMode("stale", index=index, wait=30)))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        await wait_until(lambda: service.store.hub.waiting() == 1)
        await service.apply(KVSet(key="k", value=b"v"))
        await trio.sleep(0.05)
        assert woken == []  # a KV write is not what it reads
        await service.apply(CatalogDeregister(node="ext", check_id="probe"))
        await wait_until(lambda: bool(woken))
    assert woken[0].index > index
    assert registered_from_wire(woken[0].index, woken[0].value).nodes["ext"].checks == ()


# ------------------------------------------------------------------ the mirror


@trio_test
async def test_a_registration_reaches_the_snapshot_through_the_mirror_and_a_deregistration_leaves_it() -> None:
    service, _ = direct_service()
    # Raft's first entry is its configuration, never a registration; an empty read reports index 1 (never 0)
    await service.apply(KVSet(key="first", value=b""))
    table = MemberTable()
    table.apply("member-join", Member("node1", "127.0.0.11", 8301, {"role": "node", "dc": "dc1"}))
    mirror = RegisteredMirror(service, table)
    async with trio.open_nursery() as nursery:
        await nursery.start(mirror.run)
        await wait_until(lambda: table.current.registered is not None)
        assert [v.name for v in query.catalog_nodes(table.current, "dc1")] == ["node1"]
        before = table.current.index
        woken: list[int] = []

        async def blocking_reader() -> None:  # a catalog reader parked on the snapshot's index
            woken.append((await table.wait_past(before)).index)

        nursery.start_soon(blocking_reader)
        await service.apply(register())
        await wait_until(lambda: bool(woken))
        snapshot = table.current
        assert snapshot.index == before + 1 == woken[0]
        assert [(i.node.name, i.address, i.status) for i in query.service_instances(snapshot, "web")] == [
            ("ext", "10.0.0.9", "passing")]
        # an update is one more publication; a deregistration takes the node away
        await service.apply(register(address="10.0.0.77"))
        await wait_until(lambda: query.find_node(table.current, "ext").address == "10.0.0.77")  # type: ignore
        await service.apply(CatalogDeregister(node="ext"))
        await wait_until(lambda: query.find_node(table.current, "ext") is None)
        assert mirror.errors == 0 and mirror.answers >= 4
        nursery.cancel_scope.cancel()


async def _serve(nursery: trio.Nursery, service: StoreService) -> str:
    rpc = RPCServer()
    service.register(rpc)
    transport = Transport("leader-id", "cluster", host="127.0.0.1", port=0, rpc_handler=rpc.serve)
    host, port = await nursery.start(transport.run)
    return f"{host}:{port}"


@trio_test
async def test_a_client_mirror_backs_off_without_servers_keeps_its_copy_and_recovers_when_one_appears() -> None:
    service, _ = direct_service()
    await service.apply(register())
    table = MemberTable()
    client = ForwardAccess(lambda: table.current.leader, lambda: table.current.servers)
    mirror = RegisteredMirror(client, table, wait=5.0, min_backoff=0.02, max_backoff=30.0)
    async with trio.open_nursery() as nursery:
        address = await _serve(nursery, service)
        await nursery.start(mirror.run)
        # no server known: NoLeader, retried after 0.02, 0.04, 0.08 ... s (bounded, not a busy loop)
        started = trio.current_time()
        await wait_until(lambda: mirror.errors >= 7)
        assert trio.current_time() - started >= 0.02 * (2**6 - 1) * 0.9
        assert table.current.registered is None
        # the next retry is 1.28 s away; a server appearing in the table cuts the wait short
        started = trio.current_time()
        table.set_leader(address, [address])
        await wait_until(lambda: table.current.registered is not None, timeout=2.0)
        assert trio.current_time() - started < 0.6
        assert sorted(table.current.registered.nodes) == ["ext"]
        assert mirror.errors == 7
        nursery.cancel_scope.cancel()


# ------------------------------------------------------------------ the leader and shadowed registrations


@trio_test
async def test_the_leader_deregisters_a_registration_an_agent_shadows_keeping_the_agents_sessions() -> None:
    agents: dict[str, dict[str, str]] = {}
    service, _ = direct_service(agents)
    await service.apply(register("NODE1", "10.0.0.1"))  # registered before an agent of that name joined
    await service.apply(register("ext", "10.0.0.2"))
    bound = await service.apply(SessionCreate(id="", node="node1", node_checks=(), service_checks=(("probe", ""),)))
    agents["node1"] = {"serfHealth": "passing"}  # the agent joins: its node wins from now on
    agent_session = await service.apply(SessionCreate(id="", node="node1", node_checks=("serfHealth",)))
    state = service.store.current
    assert shadowed_registrations(state, agents) == [CatalogDeregister(node="NODE1", keep_sessions=True)]
    assert shadowed_registrations(state, {}) == []
    await LeaderDuties(service)._round()
    state = service.store.current
    assert sorted(state.nodes) == ["ext"]  # the shadowed registration went, the external one stayed
    assert agent_session in state.sessions  # the agent's session survives (the node is the agent's)
    assert bound not in state.sessions  # a session bound to the registered check went with it
    assert shadowed_registrations(state, agents) == []


@trio_test
async def test_a_plain_node_deregistration_still_takes_its_sessions() -> None:
    service, _ = direct_service({})
    await service.apply(register("ext", "10.0.0.2"))
    sid = await service.apply(SessionCreate(id="", node="ext", node_checks=()))
    await service.apply(CatalogDeregister(node="ext"))
    assert sid not in service.store.current.sessions
