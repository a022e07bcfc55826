"""agent.server.rpc.RPCPool on loopback: calls reuse connections; a cancelled call's connection is never
reused; a pooled connection to a restarted server is dropped before use; a call whose connection broke is made
again only when it cannot apply twice (the request never left whole, or the method is idempotent).

The well-behaved server is the real one (RPCServer on a Transport); the misbehaving one is a plain socket server
here that runs a request and then closes the connection without answering, as a server killed mid-call does."""

from __future__ import annotations

import functools
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio

from agent.server import rpc
from agent.server.frames import FrameDecoder, encode_frame
from agent.server.transport import Transport

DEADLINE = 10.0


def trio_test(fn: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kw: Any) -> None:
        trio.run(functools.partial(fn, *args, **kw))

    return wrapper


class Server:
    """A real RPC server on loopback (a Transport handing RPC connections to an RPCServer) that can be stopped
    and started again on the same port, counting what each method ran."""

    def __init__(self) -> None:
        self.rpc = rpc.RPCServer()
        self.ran: list[Any] = []
        self.release = trio.Event()
        self.port = 0
        self.scope: trio.CancelScope | None = None
        self.rpc.handlers.update({"Echo": self._echo, "Store.Apply": self._echo, "Hold": self._hold})

    async def _echo(self, args: Any) -> Any:
        self.ran.append(args.get("n"))
        return args.get("n")

    async def _hold(self, args: Any) -> Any:
        self.ran.append(args.get("n"))
        await self.release.wait()
        return args.get("n")

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self, nursery: trio.Nursery) -> None:
        t = Transport("srv", "c", port=self.port, rpc_handler=self.rpc.serve)

        async def run(task_status: trio.TaskStatus[None]) -> None:
            with trio.CancelScope() as self.scope:
                await t.run(task_status=task_status)

        await nursery.start(run)
        assert t.address is not None
        self.port = t.address[1]

    def stop(self) -> None:
        assert self.scope is not None
        self.scope.cancel()


@trio_test
async def test_sequential_calls_share_one_connection_and_concurrent_ones_get_their_own() -> None:
    pool = rpc.RPCPool(max_idle=3)
    async with trio.open_nursery() as nursery:
        server = Server()
        await server.start(nursery)
        for n in range(20):
            assert await pool.call(server.addr, "Echo", {"n": n}, timeout=DEADLINE) == n
        assert pool.opened == 1 and pool.idle(server.addr) == 1
        results: dict[int, Any] = {}

        async def one(n: int) -> None:
            results[n] = await pool.call(server.addr, "Hold", {"n": n}, timeout=DEADLINE)

        async with trio.open_nursery() as calls:
            for n in range(5):
                calls.start_soon(one, n)
            with trio.fail_after(DEADLINE):
                while len(server.ran) < 25:
                    await trio.sleep(0.01)
            server.release.set()
        assert results == {n: n for n in range(5)}  # each answer reached its own caller
        assert pool.opened == 5  # the idle one, and four more for the calls held at once
        assert pool.idle(server.addr) == 3  # the rest were closed: at most max_idle stay
        with pytest.raises(rpc.RPCError, match="can't find method Nope"):
            await pool.call(server.addr, "Nope", timeout=DEADLINE)
        assert pool.idle(server.addr) == 3  # an error answer leaves the connection fit for the next call
        pool.close()
        nursery.cancel_scope.cancel()


@trio_test
async def test_a_cancelled_calls_connection_is_never_reused() -> None:
    """Its late answer would otherwise be read as the next call's."""
    pool = rpc.RPCPool()
    async with trio.open_nursery() as nursery:
        server = Server()
        await server.start(nursery)
        assert await pool.call(server.addr, "Echo", {"n": "warm"}, timeout=DEADLINE) == "warm"
        with trio.move_on_after(0.3):
            await pool.call(server.addr, "Hold", {"n": "cancelled"}, timeout=DEADLINE)
        assert server.ran == ["warm", "cancelled"]
        assert pool.idle(server.addr) == 0
        server.release.set()  # its answer is now sent, to a closed connection
        assert await pool.call(server.addr, "Echo", {"n": "next"}, timeout=DEADLINE) == "next"
        assert pool.opened == 2
        with pytest.raises(rpc.RPCError, match="TooSlowError"):
            server.release = trio.Event()
            await pool.call(server.addr, "Hold", {"n": "slow"}, timeout=0.3)
        assert pool.idle(server.addr) == 0
        pool.close()
        nursery.cancel_scope.cancel()


@trio_test
async def test_a_pooled_connection_to_a_restarted_server_is_dropped_and_the_write_runs_once() -> None:
    pool = rpc.RPCPool()
    async with trio.open_nursery() as nursery:
        server = Server()
        await server.start(nursery)
        assert await pool.call(server.addr, "Echo", {"n": 1}, timeout=DEADLINE) == 1
        server.stop()
        with trio.fail_after(DEADLINE):
            while True:  # the port is free again once the old listener is gone
                try:
                    await server.start(nursery)
                    break
                except OSError:
                    await trio.sleep(0.05)
        assert pool.idle(server.addr) == 1
        assert await pool.call(server.addr, "Store.Apply", {"n": 2}, timeout=DEADLINE) == 2
        assert server.ran == [1, 2] and pool.opened == 2 and pool.retries == 0
        pool.close()
        nursery.cancel_scope.cancel()


class DroppingServer:
    """Answers its first request on each connection, then runs (counts) the next and closes without answering:
    the client cannot tell whether that request took effect."""

    def __init__(self) -> None:
        self.ran: list[tuple[int, str]] = []  # (connection number, method)
        self.connections = 0
        self.port = 0
        self.reset_after_first = False  # close with a reset right after the first answer instead

    async def serve(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        conn, decoder, answered = self.connections, FrameDecoder(), 0
        async with stream:
            while True:
                data = await stream.receive_some(65536)
                if not data:
                    return
                for frame in decoder.feed(data):
                    if "hello" in frame:
                        continue
                    self.ran.append((conn, frame["method"]))
                    if answered and not self.reset_after_first:
                        return  # ran it, never answers
                    answered += 1
                    await stream.send_all(encode_frame({"seq": frame["seq"], "result": "ok"}))
                    if self.reset_after_first:
                        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        return

    async def start(self, nursery: trio.Nursery) -> None:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, self.serve, 0, host="127.0.0.1"))
        self.port = listeners[0].socket.getsockname()[1]

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"


@trio_test
async def test_a_write_whose_answer_was_lost_is_not_made_again() -> None:
    pool = rpc.RPCPool()
    async with trio.open_nursery() as nursery:
        server = DroppingServer()
        await server.start(nursery)
        assert await pool.call(server.addr, "Store.Apply", timeout=DEADLINE) == "ok"
        with pytest.raises(rpc.RPCError, match="connection closed"):
            await pool.call(server.addr, "Store.Apply", timeout=DEADLINE)
        assert server.ran == [(1, "Store.Apply"), (1, "Store.Apply")]  # ran once, not retried
        assert pool.retries == 0 and pool.idle(server.addr) == 0
        nursery.cancel_scope.cancel()


@trio_test
async def test_an_idempotent_call_whose_answer_was_lost_is_made_once_more_on_a_fresh_connection() -> None:
    pool = rpc.RPCPool()
    async with trio.open_nursery() as nursery:
        server = DroppingServer()
        await server.start(nursery)
        assert await pool.call(server.addr, "Store.Query", timeout=DEADLINE) == "ok"
        assert await pool.call(server.addr, "Store.Query", timeout=DEADLINE) == "ok"
        assert server.ran == [(1, "Store.Query"), (1, "Store.Query"), (2, "Store.Query")]
        assert pool.retries == 1
        nursery.cancel_scope.cancel()


@trio_test
async def test_a_write_that_could_not_be_sent_is_made_again_on_a_fresh_connection(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The server reset the pooled connection; the idle check is switched off to stand for the reset landing
    between that check and our send: the send fails, so the server never read the request, and the write goes
    out once more, on a fresh connection, and runs once."""
    monkeypatch.setattr(rpc._Connection, "peer_closed", lambda self: False)
    pool = rpc.RPCPool()
    async with trio.open_nursery() as nursery:
        server = DroppingServer()
        server.reset_after_first = True
        await server.start(nursery)
        assert await pool.call(server.addr, "Store.Apply", timeout=DEADLINE) == "ok"
        with trio.fail_after(DEADLINE):
            while server.connections < 1 or pool.idle(server.addr) < 1:
                await trio.sleep(0.01)
        await trio.sleep(0.1)  # the reset reaches our socket
        assert await pool.call(server.addr, "Store.Apply", timeout=DEADLINE) == "ok"
        assert server.ran == [(1, "Store.Apply"), (2, "Store.Apply")]
        assert pool.retries == 1
        nursery.cancel_scope.cancel()


@trio_test
async def test_a_call_to_a_server_that_is_gone_says_it_was_not_sent_and_a_lost_answer_does_not() -> None:
    """RPCNotSent (the forwarders may take the request to the next leader) only when no connection was made;
    a write that reached the server and lost its answer is a plain RPCError (its outcome is unknown)."""
    pool = rpc.RPCPool()
    with trio.socket.socket() as sock:  # a port nobody listens on: the server was killed
        await sock.bind(("127.0.0.1", 0))
        gone = f"127.0.0.1:{sock.getsockname()[1]}"
    with pytest.raises(rpc.RPCNotSent, match=r"Store\.Apply"):
        await pool.call(gone, "Store.Apply", timeout=DEADLINE)
    async with trio.open_nursery() as nursery:
        server = DroppingServer()
        await server.start(nursery)
        assert await pool.call(server.addr, "Store.Apply", timeout=DEADLINE) == "ok"
        with pytest.raises(rpc.RPCError) as lost:
            await pool.call(server.addr, "Store.Apply", timeout=DEADLINE)
        assert not isinstance(lost.value, rpc.RPCNotSent)
        nursery.cancel_scope.cancel()
