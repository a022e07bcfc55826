"""The servers' store access (agent/server/service.py, forwarding.py, duties.py): the leader stamps and
pre-checks commands, followers and clients forward over real server-port sockets, reads follow Consul's
consistency modes, and the leader's duties destroy what health and TTLs say must go."""

from __future__ import annotations

import functools
import time
from typing import Any

import pytest
import trio
import trio.testing
from store_direct import DirectReplica, direct_service

from agent.server.access import (
    HOLD_POLL,
    CommandFailed,
    HoldForLeader,
    NoLeader,
    QueryResult,
    ReadMode,
    StoreUnavailable,
    held_for_leader,
)
from agent.server.driver import ProposalLost
from agent.server.duties import LeaderDuties, invalidations
from agent.server.forwarding import ForwardAccess, remote_error, unwrap_apply
from agent.server.queries import QueryError
from agent.server.rpc import RPCServer
from agent.server.service import StoreService
from agent.server.state.commands import (
    CatalogRegister,
    KVCas,
    KVDelete,
    KVLock,
    KVSet,
    SessionCreate,
    SessionDestroy,
    Txn,
    TxnOp,
    encode,
)
from agent.server.state.store import StateStore
from agent.server.transport import Transport
from protocol.raft.errors import ProposalDropped

SEC = 10**9


def trio_test(fn: Any) -> Any:
    """Run an async test under trio.run (pytest-trio is not a dependency)."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        trio.run(functools.partial(fn, *args, **kwargs))

    return run


@trio_test
async def test_the_leader_stamps_its_clock_into_every_command() -> None:
    service, _ = direct_service()
    sid = await service.apply(SessionCreate(id="", node="node1", lock_delay=10 * SEC))
    assert await service.apply(KVLock(key="k", session=sid, value=b"v")) is True
    before = time.time_ns()
    assert await service.apply(SessionDestroy(id=sid)) is True
    after = time.time_ns()
    # the lock-delay expiry is the destroy's stamped time plus the session's LockDelay
    expiry = service.store.current.lock_delays["k"]
    assert before + 10 * SEC <= expiry <= after + 10 * SEC
    other = await service.apply(SessionCreate(id="", node="node1"))
    assert await service.apply(KVLock(key="k", session=other, value=b"v")) is False


@trio_test
async def test_the_leader_chooses_session_ids_and_arms_ttl_timers() -> None:
    service, _ = direct_service()
    ids = {await service.apply(SessionCreate(id="", node="node1", ttl="10s")) for _ in range(5)}
    assert len(ids) == 5 and all(len(i) == 36 for i in ids)
    assert set(service.timers.deadlines) == ids
    assert all(d - time.time_ns() > 19 * SEC for d in service.timers.deadlines.values())  # 2 x TTL


@pytest.mark.parametrize(
    ("nodes", "create", "error"),
    [
        ({}, SessionCreate(id="", node="ghost"), "Missing node registration"),
        ({"node1": {}}, SessionCreate(id="", node="node1", node_checks=("serfHealth",)),
         "Missing check 'serfHealth' registration"),
        ({"node1": {"serfHealth": "critical"}}, SessionCreate(id="", node="node1", node_checks=("serfHealth",)),
         "Check 'serfHealth' is in critical state"),
    ],
)  # fmt: skip
@trio_test
async def test_session_create_is_checked_against_the_merged_catalog(nodes: Any, create: SessionCreate,
                                                                    error: str) -> None:
    service, replica = direct_service(nodes)
    with pytest.raises(CommandFailed, match=error):
        await service.apply(create)
    assert replica.proposals == 0 and not service.store.current.sessions


@trio_test
async def test_a_refused_command_is_command_failed_and_changes_nothing() -> None:
    service, _ = direct_service()
    with pytest.raises(CommandFailed, match='invalid session "nope"'):
        await service.apply(KVLock(key="k", session="nope", value=b"v"))
    assert "k" not in service.store.current.kvs


@trio_test
async def test_a_transaction_answers_consuls_json() -> None:
    service, _ = direct_service()
    await service.apply(KVSet(key="a", value=b"1"))
    ok = await service.apply(Txn(ops=[TxnOp(verb="get", key="a"), TxnOp(verb="set", key="b", value=b"2")]))
    assert ok["Errors"] is None and [r["KV"]["Key"] for r in ok["Results"]] == ["a", "b"]
    bad = await service.apply(Txn(ops=[TxnOp(verb="cas", key="a", index=99, value=b"x")]))
    assert bad == {"Results": None, "Errors": [{"OpIndex": 0, "What": 'failed to set key "a", index is stale'}]}
    read = await service.query("txn.read", {"data": encode(Txn(ops=[TxnOp(verb="get", key="b")]))}, ReadMode())
    assert read.value["Results"][0]["KV"]["Value"] == "Mg=="


@trio_test
async def test_reads_by_mode_on_the_leader() -> None:
    service, replica = direct_service()
    await service.apply(KVSet(key="a", value=b"1"))
    assert (await service.query("kv.get", {"key": "a"}, ReadMode())).value[0]["Key"] == "a"
    assert replica.read_indexes == 0  # default: the leader answers from its state
    await service.query("kv.get", {"key": "a"}, ReadMode("consistent"))
    assert replica.read_indexes == 1  # consistent: one ReadIndex round first
    absent = await service.query("kv.get", {"key": "zz"}, ReadMode())
    assert absent.value is None and absent.index >= 1
    with pytest.raises(QueryError, match="unknown query"):
        await service.query("kv.frob", {}, ReadMode())
    with pytest.raises(ValueError, match="consistency"):
        ReadMode("eventual")


@trio_test
async def test_a_blocking_read_wakes_on_its_key_only() -> None:
    service, _ = direct_service()
    await service.apply(KVSet(key="web/a", value=b"1"))
    first = await service.query("kv.list", {"prefix": "web/"}, ReadMode())
    woken: list[QueryResult] = []

    async def watch() -> None:
        woken.append(await service.query("kv.list", {"prefix": "web/"}, ReadMode(index=first.index, wait=30)))

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            await trio.testing.wait_all_tasks_blocked()
            await service.apply(KVSet(key="db/a", value=b"x"))
            await trio.testing.wait_all_tasks_blocked()
            assert not woken  # another prefix's write wakes nobody here
            await service.apply(KVDelete(key="web/a"))
    assert woken[0].index > first.index and woken[0].value is None


@trio_test
async def test_a_blocking_read_times_out_with_the_current_answer() -> None:
    service, _ = direct_service()
    await service.apply(KVSet(key="a", value=b"1"))
    first = await service.query("kv.get", {"key": "a"}, ReadMode())
    with trio.fail_after(5):
        again = await service.query("kv.get", {"key": "a"}, ReadMode(index=first.index, wait=0.05))
    assert again == first


@trio_test
async def test_without_a_leader_writes_and_reads_say_no_cluster_leader() -> None:
    service, replica = direct_service()
    replica.leader = ""
    with pytest.raises(NoLeader, match="No cluster leader"):
        await service.apply(KVSet(key="a", value=b"1"))
    with pytest.raises(NoLeader):
        await service.query("kv.get", {"key": "a"}, ReadMode())
    with pytest.raises(NoLeader):
        await service.renew_session("x")
    stale = await service.query("kv.get", {"key": "a"}, ReadMode("stale"))  # stale: any server answers
    assert stale.known_leader is False and stale.value is None


@trio_test
async def test_renew_of_an_unknown_session_is_none() -> None:
    service, _ = direct_service()
    assert await service.renew_session("00000000-0000-0000-0000-000000000000") is None
    sid = await service.apply(SessionCreate(id="", node="node1", ttl="10s"))
    renewed = await service.renew_session(sid)
    assert renewed[0]["ID"] == sid and renewed[0]["TTL"] == "10s"


# ------------------------------------------------------------------ forwarding over real sockets


async def _serve(nursery: trio.Nursery, service: StoreService) -> str:
    rpc = RPCServer()
    service.register(rpc)
    transport = Transport("leader-id", "cluster", host="127.0.0.1", port=0, rpc_handler=rpc.serve)
    host, port = await nursery.start(transport.run)
    return f"{host}:{port}"


@trio_test
async def test_a_follower_and_a_client_forward_to_the_leader() -> None:
    leader, _ = direct_service()
    async with trio.open_nursery() as nursery:
        address = await _serve(nursery, leader)
        follower_store = StateStore()
        follower_replica = DirectReplica(follower_store, address="127.0.0.1:1")
        follower_replica.leader = address
        follower = StoreService(follower_store, follower_replica, agent_nodes=dict)
        client = ForwardAccess(lambda: address, lambda: [address])
        for access in (follower, client):
            assert await access.apply(KVSet(key="k", value=b"v")) is True
            assert await access.apply(KVCas(key="k", index=99, value=b"w")) is False
            with pytest.raises(CommandFailed, match='invalid session "s"'):
                await access.apply(KVLock(key="k", session="s", value=b"v"))
            got = await access.query("kv.get", {"key": "k"}, ReadMode())
            assert got.value[0]["Value"] == "dg==" and got.known_leader
            with pytest.raises(QueryError, match="unknown query"):
                await access.query("nope", {}, ReadMode())
            sid = await access.apply(SessionCreate(id="", node="node1", ttl="10s"))
            assert (await access.renew_session(sid))[0]["ID"] == sid
            assert await access.renew_session("gone") is None
        assert follower_replica.proposals == 0  # the follower wrote nothing itself
        # a forwarded blocking query waits on the leader and wakes on the write
        index = (await client.query("kv.get", {"key": "k"}, ReadMode())).index
        woken: list[QueryResult] = []

        async def watch() -> None:
            woken.append(await client.query("kv.get", {"key": "k"}, ReadMode(index=index, wait=30)))

        nursery.start_soon(watch)
        with trio.fail_after(5):
            while leader.store.hub.waiting() == 0:
                await trio.sleep(0.01)
            await leader.apply(KVSet(key="k", value=b"z"))
            while not woken:
                await trio.sleep(0.01)
        assert woken[0].value[0]["Value"] == "eg=="
        nursery.cancel_scope.cancel()


async def _dead_address() -> str:
    with trio.socket.socket() as sock:  # a port nobody listens on
        await sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


@trio_test
async def test_forwarding_to_nobody_or_to_a_dead_leader_is_held_then_no_cluster_leader() -> None:
    """Consul's RPC hold: a request with no leader to go to, or whose leader cannot be reached (the request never
    left), waits for the next leader; with none within the hold it is ``No cluster leader`` (retryable), never
    a hang, and never an error that would say the write's outcome is unknown."""
    dead = await _dead_address()
    follower_store = StateStore()
    follower_replica = DirectReplica(follower_store, address="127.0.0.1:1")
    follower_replica.leader = dead
    follower = StoreService(follower_store, follower_replica, agent_nodes=dict, hold_timeout=0.3)
    for leader in ("", dead):
        client = ForwardAccess(lambda leader=leader: leader, lambda: [dead], hold_timeout=0.3)
        for access in (client, follower):
            for call in (lambda a: a.apply(KVSet(key="k", value=b"v")),
                         lambda a: a.query("kv.get", {"key": "k"}, ReadMode("consistent")),
                         lambda a: a.renew_session("s")):
                started = trio.current_time()
                with pytest.raises(NoLeader, match="No cluster leader"):
                    await call(access)
                assert 0.3 <= trio.current_time() - started < 3
    assert follower_replica.proposals == 0
    with pytest.raises(NoLeader):  # a client that knows no server at all has nothing to wait for
        await ForwardAccess(lambda: "", lambda: [], hold_timeout=30).apply(KVSet(key="k", value=b"v"))


@trio_test
async def test_a_request_for_a_leader_that_just_died_goes_to_the_next_one_and_applies_once() -> None:
    new_leader, new_replica = direct_service()
    dead = await _dead_address()
    async with trio.open_nursery() as nursery:
        address = await _serve(nursery, new_leader)
        follower_store = StateStore()
        follower_replica = DirectReplica(follower_store, address="127.0.0.1:1")
        follower = StoreService(follower_store, follower_replica, agent_nodes=dict, hold_timeout=5.0)
        known = {"leader": dead}
        client = ForwardAccess(lambda: known["leader"], lambda: [], hold_timeout=5.0)
        for n, access in enumerate((follower, client)):
            known["leader"] = follower_replica.leader = dead  # the leader both know was just killed
            done: list[Any] = []

            async def write(access: Any = access, n: int = n, done: list[Any] = done) -> None:
                done.append(await access.apply(KVCas(key=f"k{n}", index=0, value=b"v")))
                done.append(await access.query("kv.get", {"key": f"k{n}"}, ReadMode("consistent")))

            nursery.start_soon(write)
            await trio.sleep(0.3)
            assert not done  # held, not failed
            known["leader"] = follower_replica.leader = address  # the next leader is elected and known
            with trio.fail_after(5):
                while len(done) < 2:
                    await trio.sleep(0.01)
            assert done[0] is True  # a check-and-set applied twice would answer false the second time
            assert done[1].value[0]["Value"] == "dg=="
        assert new_replica.proposals == 2 and follower_replica.proposals == 0
        nursery.cancel_scope.cancel()


def test_answer_forms_map_back_to_the_callers_exceptions() -> None:
    assert unwrap_apply({"ok": False}) is False
    with pytest.raises(CommandFailed, match="boom"):
        unwrap_apply({"failed": "boom"})
    with pytest.raises(NoLeader):
        unwrap_apply({"no_leader": True})
    with pytest.raises(StoreUnavailable, match="slow"):
        unwrap_apply({"unavailable": "slow"})
    with pytest.raises(StoreUnavailable, match="malformed"):
        unwrap_apply(["junk"])
    assert isinstance(remote_error("No cluster leader"), NoLeader)
    assert isinstance(remote_error("Store.Query: unknown query 'x'"), QueryError)
    assert isinstance(remote_error("connection refused"), StoreUnavailable)


# ------------------------------------------------------------------ the leader's duties


@trio_test
async def test_health_invalidates_sessions_on_agent_nodes_only() -> None:
    service, _ = direct_service({"node1": {"serfHealth": "passing"}, "node2": {"serfHealth": "passing"}})
    on1 = await service.apply(SessionCreate(id="", node="node1", node_checks=("serfHealth",)))
    on2 = await service.apply(SessionCreate(id="", node="node2", node_checks=("serfHealth",)))
    await service.apply(CatalogRegister(node="ext", address="10.0.0.9"))
    external = await service.apply(SessionCreate(id="", node="ext", node_checks=()))
    state = service.store.current
    assert invalidations(state, {"node1": {"serfHealth": "passing"}, "node2": {"serfHealth": "passing"}}) == []
    work = invalidations(state, {"node1": {"serfHealth": "critical"}})  # node1 failed, node2 left
    kinds = sorted((type(c).__name__, getattr(c, "node", "")) for c in work)
    assert kinds == [("InvalidateCheck", "node1"), ("InvalidateNode", "node2")]
    # the duties apply it
    service.agent_nodes = lambda: {"node1": {"serfHealth": "critical"}}
    await LeaderDuties(service)._round()
    assert set(service.store.current.sessions) == {external}
    assert on1 not in service.store.current.sessions and on2 not in service.store.current.sessions


@trio_test
async def test_ttl_expiry_destroys_the_session_and_a_new_leader_rearms_in_full() -> None:
    service, replica = direct_service()
    sid = await service.apply(SessionCreate(id="", node="node1", ttl="10s"))
    duties = LeaderDuties(service)
    await duties._round()  # taking office: arm_all
    assert sid in service.store.current.sessions
    service.timers.deadlines[sid] = time.time_ns() - 1  # the deadline passed
    await duties._round()
    assert sid not in service.store.current.sessions
    # a follower does nothing; on becoming leader again, timers are re-armed from now
    again = await service.apply(SessionCreate(id="", node="node1", ttl="10s"))
    replica.leader = "elsewhere:8300"
    await duties._round()
    service.timers.deadlines.clear()
    replica.leader = replica.address
    await duties._round()
    assert service.timers.deadlines[again] - time.time_ns() > 19 * SEC


@trio_test
async def test_tombstones_are_reaped_after_the_ttl() -> None:
    service, _ = direct_service()
    await service.apply(KVSet(key="a", value=b"1"))
    await service.apply(KVDelete(key="a"))
    assert "a" in service.store.current.tombstones
    duties = LeaderDuties(service, tombstone_ttl=0.2, granularity=0.05)
    with trio.fail_after(5):
        while "a" in service.store.current.tombstones:
            await duties._round()
            await trio.sleep(0.05)
    assert "a" not in service.store.current.tombstones


# ------------------------------------------------------------------ writes held while leadership moves


class TransferringReplica(DirectReplica):
    """A leader handing over: its core refuses proposals (nothing appended) until ``moved`` names the new
    leader; ``lose`` makes a proposal fail after it was appended (its outcome unknown)."""

    def __init__(self, store: StateStore, address: str) -> None:
        super().__init__(store, address)
        self.refused = 0
        self.lose = False

    async def propose(self, data: bytes, timeout: float) -> Any:
        if self.is_leader() and self.lose:
            self.proposals += 1
            raise ProposalLost("entry 7 of term 1 was overwritten")
        if self.is_leader():
            self.refused += 1
            raise ProposalDropped("leadership transfer to 'b' in progress")
        return await super().propose(data, timeout)


@trio_test
async def test_a_write_during_a_leadership_transfer_waits_for_the_new_leader_and_applies_once() -> None:
    new_leader, new_replica = direct_service()
    async with trio.open_nursery() as nursery:
        address = await _serve(nursery, new_leader)
        store = StateStore()
        old = TransferringReplica(store, "127.0.0.1:1")
        service = StoreService(store, old, agent_nodes=dict, hold_timeout=5.0)
        done: list[Any] = []

        async def write() -> None:
            done.append(await service.apply(KVCas(key="k", index=0, value=b"v")))

        nursery.start_soon(write)
        with trio.fail_after(5):
            while old.refused < 3:  # refused, and tried again, while the transfer runs
                await trio.sleep(0.01)
        assert not done and service.held_writes == 1
        old.leader = ""  # the old leader steps down; the new one is not known yet
        await trio.sleep(0.1)
        old.leader = address  # the new leader's first heartbeat
        with trio.fail_after(5):
            while not done:
                await trio.sleep(0.01)
        assert done == [True]  # a check-and-set that applied twice would answer false the second time
        assert new_replica.proposals == 1 and old.proposals == 0
        assert new_leader.store.current.kvs["k"].value == b"v"
        nursery.cancel_scope.cancel()


@trio_test
async def test_a_held_write_gives_up_after_the_hold_timeout() -> None:
    store = StateStore()
    old = TransferringReplica(store, "127.0.0.1:1")
    service = StoreService(store, old, agent_nodes=dict, hold_timeout=0.3)
    started = trio.current_time()
    with pytest.raises(StoreUnavailable, match="leadership transfer"):
        await service.apply(KVSet(key="k", value=b"v"))
    assert 0.3 <= trio.current_time() - started < 3
    old.leader = ""
    with pytest.raises(NoLeader):
        await service.apply(KVSet(key="k", value=b"v"))


def test_the_hold_asks_again_every_poll_until_its_timeout_then_says_the_last_reason() -> None:
    """`held_for_leader`, on a virtual clock: every follower's, client's and operator's hold is this loop."""
    clock = trio.testing.MockClock(autojump_threshold=0)

    async def main() -> None:
        asked: list[float] = []
        held: list[float] = []

        async def never() -> Any:
            asked.append(trio.current_time())
            raise HoldForLeader(NoLeader() if len(asked) % 2 else StoreUnavailable(f"refused {len(asked)}"))

        start = trio.current_time()
        with pytest.raises(StoreUnavailable, match="refused 6"):  # the last attempt's reason, at the deadline
            await held_for_leader(never, 5 * HOLD_POLL, on_hold=lambda: held.append(trio.current_time()))
        assert [round((t - start) / HOLD_POLL, 6) for t in asked] == [0, 1, 2, 3, 4, 5]
        assert held == [start]  # told once, when the request first waits

        async def answers_third_time() -> str:
            asked.append(trio.current_time())
            if len(asked) < 3:
                raise HoldForLeader(NoLeader())
            return "answer"

        asked.clear()
        assert await held_for_leader(answers_third_time, 7.0) == "answer" and len(asked) == 3

        async def fails() -> Any:
            raise StoreUnavailable("the outcome is unknown")

        start = trio.current_time()
        with pytest.raises(StoreUnavailable, match="unknown"):  # anything else is the caller's at once
            await held_for_leader(fails, 7.0)
        assert trio.current_time() == start

    trio.run(main, clock=clock)


@trio_test
async def test_a_write_that_may_have_been_appended_is_not_tried_again() -> None:
    store = StateStore()
    replica = TransferringReplica(store, "127.0.0.1:1")
    replica.lose = True
    service = StoreService(store, replica, agent_nodes=dict, hold_timeout=5.0)
    with pytest.raises(StoreUnavailable, match="overwritten"):
        await service.apply(KVSet(key="k", value=b"v"))
    assert replica.proposals == 1 and service.held_writes == 0


@trio_test
async def test_closing_a_forwarder_ends_its_connections_on_the_server() -> None:
    """What the agent does at shutdown (Supervisor._close_pools): the idle pooled connections of a follower's and
    a client's forwarder are closed, and the leader sees each of them end then, not when the process exits."""
    leader, _ = direct_service()
    server = RPCServer()
    leader.register(server)
    open_conns = [0]

    async def serve(*args: Any) -> None:
        open_conns[0] += 1
        try:
            await server.serve(*args)
        finally:
            open_conns[0] -= 1

    async with trio.open_nursery() as nursery:
        transport = Transport("leader-id", "cluster", host="127.0.0.1", port=0, rpc_handler=serve)
        host, port = await nursery.start(transport.run)
        address = f"{host}:{port}"
        replica = DirectReplica(StateStore(), address="127.0.0.1:1")
        replica.leader = address
        follower = StoreService(replica.store, replica, agent_nodes=dict)
        client = ForwardAccess(lambda: address, lambda: [address])
        for access in (follower, client):
            assert await access.apply(KVSet(key="k", value=b"v")) is True
            with trio.fail_after(5):
                while open_conns[0] != 1:
                    await trio.sleep(0.01)
            assert access.pool.idle(address) == 1
            access.close()
            assert access.pool.idle(address) == 0
            with trio.fail_after(5):
                while open_conns[0] != 0:  # the server saw the connection end
                    await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
