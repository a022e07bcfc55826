"""Calls only the leader answers (``Operator.*``: agent/server/forwarding.py ``leader_rpc``) from any agent, over
real server-port sockets on 127.0.0.1: held for the next leader as Consul's RPC hold holds them while the leader
known is dead, none is known, or the one asked no longer leads (the call did nothing there), then ``No cluster
leader``; answered in-process when this server leads; a call that reached the leader and lost its answer, or a
refusal of the leader's own, is the caller's at once and never sent again.  Holds are short (0.3-5 s), every wait
is bounded by ``trio.fail_after``."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio

from agent.server import rpc
from agent.server.access import NOT_THE_LEADER, NoLeader
from agent.server.forwarding import leader_rpc
from agent.server.rpc import RPCError, RPCNotSent, RPCServer
from agent.server.transport import Transport

CONFIGURATION = {"Servers": [{"ID": "s2", "Address": "127.0.0.1:2", "Leader": True}], "Index": 7}


def trio_test(fn: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        trio.run(functools.partial(fn, *args, **kwargs))

    return run


class FakeServer:
    """A server's RPC methods: ``leads`` says whether it answers ``Operator.RaftGetConfiguration`` or refuses it as
    a server that knows another leader (cluster.py's refusal); ``calls`` counts what reached it."""

    def __init__(self, *, leads: bool = True) -> None:
        self.leads = leads
        self.calls = 0
        self.rpc = RPCServer({"Operator.RaftGetConfiguration": self._configuration,
                              "Operator.RaftRemovePeer": self._remove, "Slow.Lost": self._lost})  # fmt: skip

    async def _configuration(self, _args: Any) -> Any:
        self.calls += 1
        if not self.leads:
            raise RPCError(NOT_THE_LEADER)
        return CONFIGURATION

    async def _remove(self, args: Any) -> Any:
        self.calls += 1
        raise RPCError(f'id "{args.get("id")}" was not found in the Raft configuration')

    async def _lost(self, _args: Any) -> Any:
        self.calls += 1
        await trio.sleep_forever()  # it reached the leader; its answer never comes back (the caller times out)


async def _serve(nursery: trio.Nursery, server: FakeServer) -> str:
    transport = Transport("leader-id", "cluster", host="127.0.0.1", port=0, rpc_handler=server.rpc.serve)
    host, port = await nursery.start(transport.run)
    return f"{host}:{port}"


async def _dead_address() -> str:
    with trio.socket.socket() as sock:  # a port nobody listens on
        await sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


class Here:
    """This agent's own server: leads or not; what it answered in-process."""

    def __init__(self, leads: bool) -> None:
        self.leads = leads
        self.asked: list[str] = []

    def is_leader(self) -> bool:
        return self.leads

    async def local_rpc(self, method: str, args: dict[str, Any]) -> Any:
        self.asked.append(method)
        return {"Index": 1}


def _rpc(known: dict[str, str], *, here: Here | None = None, hold: float = 5.0, servers: tuple[str, ...] = ("s",),
         method: str = "Operator.RaftGetConfiguration", timeout: float = 2.0) -> Awaitable[Any]:
    return leader_rpc(method, {"id": "x"}, here=here, leader=lambda: known["leader"], servers=lambda: servers,
                      timeout=timeout, hold_timeout=hold)


@trio_test
async def test_a_call_whose_leader_just_died_goes_to_the_next_leader() -> None:
    """kill -9 of the leader: the agent still names it, the connection is refused (the call never left); held
    until the next leader is known, then answered there, once."""
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            server = FakeServer()
            address = await _serve(nursery, server)
            known = {"leader": await _dead_address()}
            done: list[Any] = []

            async def ask() -> None:
                done.append(await _rpc(known))

            nursery.start_soon(ask)
            await trio.sleep(0.3)
            assert not done  # held, not failed
            known["leader"] = ""  # the election under way
            await trio.sleep(0.1)
            assert not done
            known["leader"] = address  # the next leader is known
            while not done:
                await trio.sleep(0.01)
            assert done == [CONFIGURATION] and server.calls == 1
            nursery.cancel_scope.cancel()


@trio_test
async def test_a_server_that_no_longer_leads_refuses_and_the_call_waits_for_one_that_does() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            server = FakeServer(leads=False)
            known = {"leader": await _serve(nursery, server)}
            done: list[Any] = []

            async def ask() -> None:
                done.append(await _rpc(known))

            nursery.start_soon(ask)
            while server.calls < 3:  # refused, asked again
                await trio.sleep(0.01)
            assert not done
            server.leads = True  # it won the election after all
            while not done:
                await trio.sleep(0.01)
            assert done == [CONFIGURATION]
            nursery.cancel_scope.cancel()


@trio_test
async def test_with_no_leader_within_the_hold_it_is_no_cluster_leader() -> None:
    dead = await _dead_address()
    with trio.fail_after(10):
        for leader in ("", dead):
            started = trio.current_time()
            with pytest.raises(NoLeader, match="No cluster leader"):
                await _rpc({"leader": leader}, hold=0.3)
            assert 0.3 <= trio.current_time() - started < 3
        async with trio.open_nursery() as nursery:
            refusing = FakeServer(leads=False)
            address = await _serve(nursery, refusing)
            with pytest.raises(NoLeader):
                await _rpc({"leader": address}, hold=0.3)
            assert refusing.calls > 1
            nursery.cancel_scope.cancel()
        started = trio.current_time()
        with pytest.raises(NoLeader):  # a client that knows no server at all: nothing to wait for
            await _rpc({"leader": ""}, servers=(), hold=30)
        assert trio.current_time() - started < 1
        started = trio.current_time()
        with pytest.raises(NoLeader):  # a server knows one (itself), even before it knows its peers: it waits
            await _rpc({"leader": ""}, here=Here(leads=False), servers=(), hold=0.3)
        assert trio.current_time() - started >= 0.3


@trio_test
async def test_this_server_leading_answers_in_process_and_a_follower_does_not() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            server = FakeServer()
            address = await _serve(nursery, server)
            here = Here(leads=True)
            assert await _rpc({"leader": address}, here=here) == {"Index": 1}
            assert here.asked == ["Operator.RaftGetConfiguration"] and server.calls == 0
            here.leads = False
            assert await _rpc({"leader": address}, here=here) == CONFIGURATION
            assert here.asked == ["Operator.RaftGetConfiguration"] and server.calls == 1
            nursery.cancel_scope.cancel()


@trio_test
async def test_the_leaders_own_refusal_and_a_lost_answer_are_the_callers_at_once() -> None:
    """Only a call that did nothing is held: a remove-peer the leader refused, and a call that reached the leader
    and lost its answer (it may have run), are answered at once and never sent again."""
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            server = FakeServer()
            known = {"leader": await _serve(nursery, server)}
            started = trio.current_time()
            with pytest.raises(RPCError, match="was not found in the Raft configuration"):
                await _rpc(known, method="Operator.RaftRemovePeer")
            with pytest.raises(RPCError, match="TooSlowError") as lost:
                await _rpc(known, method="Slow.Lost", timeout=0.3)
            assert not isinstance(lost.value, RPCNotSent)
            assert server.calls == 2 and trio.current_time() - started < 3
            nursery.cancel_scope.cancel()


@trio_test
async def test_a_fresh_call_says_whether_it_can_have_reached_the_server() -> None:
    dead = await _dead_address()
    with pytest.raises(RPCNotSent):
        await rpc.call(dead, "Operator.RaftGetConfiguration")
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            server = FakeServer()
            address = await _serve(nursery, server)
            with pytest.raises(RPCError) as lost:
                await rpc.call(address, "Slow.Lost", timeout=0.3)
            assert not isinstance(lost.value, RPCNotSent) and server.calls == 1
            nursery.cancel_scope.cancel()
