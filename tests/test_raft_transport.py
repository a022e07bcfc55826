"""agent.server.transport: real TCP sockets on loopback between trio transports; agent.server.frames, pure.

Every wait is on a condition with a deadline (no sleep-and-hope); backoffs are shortened so reconnects are quick.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgpack
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from agent.server.frames import FrameDecoder, FrameError, Hello, encode_frame, hello_from_wire, hello_to_wire
from agent.server.transport import Transport
from protocol.raft.types import Entry, Message, MsgType, to_wire

CLUSTER = "cluster-1"
DEADLINE = 15.0


def trio_test(fn: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        trio.run(functools.partial(fn, *args, **kwargs))

    return wrapper


def msg(frm: str, to: str, index: int, data: bytes = b"") -> Message:
    return Message(type=MsgType.APPEND, to=to, from_=frm, term=3, index=index,
                   entries=(Entry(index + 1, 3, data=data or b"d%d" % index),), commit=index)


def transport(server_id: str, **kw: Any) -> Transport:
    kw.setdefault("port", 0)
    return Transport(server_id, kw.pop("cluster", CLUSTER), backoff_base=0.02, backoff_max=0.2, **kw)


class Node:
    """A transport running in its own cancel scope, so a test can stop and restart it."""

    def __init__(self, t: Transport) -> None:
        self.t = t
        self.scope: trio.CancelScope | None = None

    @property
    def addr(self) -> str:
        assert self.t.address is not None
        return f"{self.t.address[0]}:{self.t.address[1]}"

    async def start(self, nursery: trio.Nursery) -> None:
        async def run(task_status: trio.TaskStatus[None]) -> None:
            with trio.CancelScope() as self.scope:
                await self.t.run(task_status=task_status)

        await nursery.start(run)

    def stop(self) -> None:
        assert self.scope is not None
        self.scope.cancel()


async def wait_for(cond: Callable[[], bool], what: str) -> None:
    with trio.move_on_after(DEADLINE):
        while not cond():
            await trio.sleep(0.01)
        return
    raise AssertionError(f"timed out waiting for {what}")


async def receive(t: Transport, n: int) -> list[Message]:
    out = []
    with trio.fail_after(DEADLINE):
        for _ in range(n):
            out.append(await t.inbox.receive())
    return out


async def mesh(nursery: trio.Nursery, ids: list[str], **kw: Any) -> list[Node]:
    nodes = [Node(transport(i, **kw)) for i in ids]
    for n in nodes:
        await n.start(nursery)
    for a in nodes:
        for b in nodes:
            if a is not b:
                a.t.add_peer(b.t.server_id, b.addr)
    return nodes


async def exchange(nodes: list[Node], tag: int) -> None:
    """Every node sends one message to every other; each arrives intact."""
    for a in nodes:
        for b in nodes:
            if a is not b:
                assert a.t.send(msg(a.t.server_id, b.t.server_id, tag))
    for b in nodes:
        got = await receive(b.t, len(nodes) - 1)
        assert sorted(got, key=lambda m: m.from_) == sorted(
            (msg(a.t.server_id, b.t.server_id, tag) for a in nodes if a is not b), key=lambda m: m.from_)


# ---------------------------------------------------------------------- frames (pure)


@given(st.lists(st.dictionaries(st.text(max_size=4), st.binary(max_size=20), max_size=3), max_size=5), st.data())
def test_decoder_reassembles_frames_split_anywhere(objs: list[dict[str, bytes]], data: st.DataObject) -> None:
    stream = b"".join(encode_frame(o) for o in objs)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    dec, out, prev = FrameDecoder(), [], 0
    for c in [*cuts, len(stream)]:
        out += dec.feed(stream[prev:c])
        prev = c
    assert out == objs and dec.pending == 0


@pytest.mark.parametrize("chunk", [1, 1024, 65536])
def test_decoder_parses_each_byte_once_whatever_the_chunking(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    """Issue 14: the server port's framing keeps its own buffer, so a big frame (an InstallSnapshot) arriving in
    small reads is decoded once, when whole: msgpack sees each body byte once, whatever the chunking."""
    import agent.server.frames as frames

    decoded: list[int] = []
    real_unpackb = msgpack.unpackb

    def counting_unpackb(body: bytes, **kw: Any) -> Any:
        decoded.append(len(body))
        return real_unpackb(body, **kw)

    monkeypatch.setattr(frames.msgpack, "unpackb", counting_unpackb)
    size = 200_000 if chunk == 1 else 2_000_000
    objs = [{"t": 1, "data": bytes(range(256)) * (size // 256)}, {"t": 2}, {"t": 3, "data": b"x" * 300}]
    stream = b"".join(encode_frame(o) for o in objs)
    dec, out = FrameDecoder(), []
    for off in range(0, len(stream), chunk):
        out += dec.feed(stream[off : off + chunk])
    assert out == objs and dec.pending == 0
    assert len(decoded) == len(objs)
    assert sum(decoded) == len(stream) - 4 * len(objs)


def test_decoder_refuses_oversize_lengths_and_non_msgpack() -> None:
    with pytest.raises(FrameError, match="exceeds the maximum 100"):
        FrameDecoder(100).feed((101).to_bytes(4, "big"))
    with pytest.raises(FrameError, match="not msgpack"):
        FrameDecoder().feed(b"\x00\x00\x00\x01\xc1")
    with pytest.raises(FrameError, match="exceeds"):
        encode_frame(b"x" * 200, 100)
    assert hello_from_wire(hello_to_wire(Hello("a", "c"))) == Hello("a", "c")
    with pytest.raises(FrameError, match="hello"):
        hello_from_wire({"t": 1})
    with pytest.raises(FrameError, match="server id"):
        hello_from_wire({"hello": 1, "id": "", "cluster": "c"})


# ---------------------------------------------------------------------- exchanging messages


@trio_test
async def test_two_and_three_transports_exchange_messages_on_one_connection_per_pair() -> None:
    async with trio.open_nursery() as nursery:
        two = await mesh(nursery, ["a", "b"])
        await exchange(two, 1)
        three = await mesh(nursery, ["x", "y", "z"])
        for round_ in range(3):
            await exchange(three, round_)
        big = b"s" * (2 * 1024 * 1024)  # a snapshot-sized message crosses in one frame
        three[2].t.send(msg("z", "x", 9, big))
        assert (await receive(three[0].t, 1))[0].entries[0].data == big
        for n in three:  # each server has one connection to each other server, no more
            assert n.t.connected() == {"x", "y", "z"} - {n.t.server_id}
            assert n.t.stats.connections == 2
        nursery.cancel_scope.cancel()


@trio_test
async def test_a_restarted_peer_is_reconnected_whichever_side_dials() -> None:
    async with trio.open_nursery() as nursery:
        a, b = await mesh(nursery, ["a", "b"])  # a dials b
        await exchange([a, b], 1)
        port = b.t.address
        b.stop()  # the accepting side restarts on the same port
        await wait_for(lambda: "b" not in a.t.connected(), "a to notice b is gone")
        b2 = Node(transport("b", port=port[1]))
        await b2.start(nursery)
        await wait_for(lambda: "a" in b2.t.connected(), "a to redial the restarted b")
        await exchange([a, b2], 2)
        a.stop()  # the dialing side restarts (new port): it dials b again
        await wait_for(lambda: "a" not in b2.t.connected(), "b to notice a is gone")
        a2 = Node(transport("a"))
        await a2.start(nursery)
        a2.t.add_peer("b", b2.addr)
        await wait_for(lambda: "b" in a2.t.connected() and "a" in b2.t.connected(), "the new a to connect")
        await exchange([a2, b2], 3)
        nursery.cancel_scope.cancel()


# ---------------------------------------------------------------------- bad connections


async def raw_connect(node: Node) -> trio.SocketStream:
    assert node.t.address is not None
    return await trio.open_tcp_stream(*node.t.address)


async def closed_by_server(stream: trio.SocketStream) -> bool:
    """True once the server has closed the connection (EOF or reset), within the deadline."""
    with trio.fail_after(DEADLINE):
        try:
            while await stream.receive_some(65536):
                pass
        except trio.BrokenResourceError:
            pass
    await stream.aclose()
    return True


def hello_bytes(server_id: str, cluster: str = CLUSTER) -> bytes:
    return encode_frame(hello_to_wire(Hello(server_id, cluster)))


# name: (bytes sent first, bytes sent once the server's hello is back or None, what the log must say)
BAD_CONNECTIONS = {
    "garbage instead of a hello": (b"\x00\x00\x00\x03\xc1\xc1\xc1", None, "not msgpack"),
    "oversize length instead of a hello": (b"\xff\xff\xff\xff", None, "exceeds the maximum"),
    "another cluster's hello": (hello_bytes("m", "cluster-2"), None, "is in cluster cluster-2, we are in cluster-1"),
    "our own id": (hello_bytes("a"), None, "our own server id"),
    "garbage frame after a good hello": (hello_bytes("m"), b"\x00\x00\x00\x02\xc1\xc1", "not msgpack"),
    "oversize length after a good hello": (hello_bytes("m"), b"\x7f\xff\xff\xff", "exceeds the maximum"),
    "a frame that is not a message": (hello_bytes("m"), encode_frame({"t": 99, "to": "a", "fr": "m"}),
                                      "is not a valid MsgType"),
    "a message claiming another sender": (hello_bytes("m"), encode_frame(to_wire(msg("b", "a", 1))),
                                          "message from b to a on the connection with m"),
}


@trio_test
async def test_each_bad_connection_is_closed_alone_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="triumvir.raft.transport")
    async with trio.open_nursery() as nursery:
        nodes = await mesh(nursery, ["a", "b", "c"])
        a = nodes[0]
        await exchange(nodes, 0)
        for n, (name, (first, then, reason)) in enumerate(BAD_CONNECTIONS.items(), 1):
            caplog.clear()
            stream = await raw_connect(a)
            await stream.send_all(first)
            if then is not None:
                dec: list[Any] = []
                decoder = FrameDecoder()
                with trio.fail_after(DEADLINE):
                    while not dec:
                        dec = decoder.feed(await stream.receive_some(65536))
                assert hello_from_wire(dec[0]) == Hello("a", CLUSTER)
                await stream.send_all(then)
            assert await closed_by_server(stream), name
            await wait_for(lambda reason=reason: reason in caplog.text, f"the log to give the reason for {name}")
            assert a.t.connected() >= {"b", "c"}, name  # the servers' connections were not touched
            await exchange(nodes, n)
        assert a.t.stats.refused_connections == 4 and a.t.stats.bad_frames == 4
        # "m", known only from its hellos, is forgotten with its connections
        await wait_for(lambda: set(a.t.peers()) == {"b", "c"}, "a to forget m")
        nursery.cancel_scope.cancel()


@trio_test
async def test_a_silent_connection_is_dropped_after_the_handshake_timeout() -> None:
    async with trio.open_nursery() as nursery:
        a = Node(transport("a", handshake_timeout=0.2))
        await a.start(nursery)
        stream = await raw_connect(a)
        assert await closed_by_server(stream)
        assert a.t.stats.refused_connections == 1
        nursery.cancel_scope.cancel()


# ---------------------------------------------------------------------- queues


@trio_test
async def test_the_send_queue_bound_holds_while_a_peer_is_down() -> None:
    async with trio.open_nursery() as nursery:
        b = Node(transport("b"))
        await b.start(nursery)
        port = b.t.address[1]
        b.stop()
        a = Node(transport("a", queue_size=50))
        await a.start(nursery)
        a.t.add_peer("b", f"127.0.0.1:{port}")
        for i in range(1000):
            assert a.t.send(msg("a", "b", i))
        assert a.t.dropped("b") == 950 and a.t.stats.dropped_queue_full == 950
        b2 = Node(transport("b", port=port))
        await b2.start(nursery)
        got = await receive(b2.t, 50)
        assert [m.index for m in got] == list(range(950, 1000))  # the newest 50, in order
        a.t.send(msg("a", "b", 5000))
        assert (await receive(b2.t, 1))[0].index == 5000  # and nothing else was queued behind them
        nursery.cancel_scope.cancel()


@trio_test
async def test_unknown_peers_and_oversize_messages_are_dropped_and_counted() -> None:
    async with trio.open_nursery() as nursery:
        a, b = await mesh(nursery, ["a", "b"], max_frame=4096)
        assert not a.t.send(msg("a", "nobody", 1))
        assert a.t.stats.dropped_unknown_peer == 1
        a.t.send(msg("a", "b", 1, b"x" * 8192))
        a.t.send(msg("a", "b", 2))
        assert [m.index for m in await receive(b.t, 1)] == [2]
        assert a.t.stats.dropped_oversize == 1
        assert "b" in a.t.connected()
        nursery.cancel_scope.cancel()


def test_the_hello_is_msgpack_a_foreign_client_can_write() -> None:
    """The frame format is plain: a 4-byte length and msgpack, so other tools can speak it."""
    frame = hello_bytes("a")
    assert int.from_bytes(frame[:4], "big") == len(frame) - 4
    assert msgpack.unpackb(frame[4:]) == {"hello": 1, "id": "a", "cluster": CLUSTER}


def test_redial_backoff_is_jittered_under_an_exponential_ceiling() -> None:
    import random

    t = Transport("a", CLUSTER, backoff_base=0.05, backoff_max=5.0, rng=random.Random(7))
    for failures in range(40):
        ceiling = min(5.0, 0.05 * 2**failures)
        delays = [t._backoff(failures) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1  # jittered: two servers restarted together do not redial in lockstep


@trio_test
async def test_a_cluster_adopted_during_a_handshake_still_refuses_the_other_clusters_server(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A new server (no cluster yet) accepts a hello from cluster-2, then bootstraps cluster-1 before the connection
    goes live (CI saw this: two single-server clusters met at the same millisecond and stayed connected).  The
    connection is closed when it would go live, and the log says why."""
    caplog.set_level(logging.INFO, logger="triumvir.raft.transport")
    async with trio.open_nursery() as nursery:
        a = Node(transport("a", cluster=""))
        await a.start(nursery)
        check = a.t._check_hello

        def check_then_bootstrap(raw: Any) -> Hello:
            hello = check(raw)
            a.t.set_cluster(CLUSTER)  # the bootstrap lands between the hello check and the connection going live
            return hello

        monkeypatch.setattr(a.t, "_check_hello", check_then_bootstrap)
        stream = await raw_connect(a)
        await stream.send_all(hello_bytes("m", "cluster-2"))
        assert await closed_by_server(stream)
        reason = "it is in cluster cluster-2, we are now in cluster-1"
        await wait_for(lambda: reason in caplog.text, "the reason logged")
        assert a.t.stats.refused_connections == 1 and a.t.stats.connections == 0
        nursery.cancel_scope.cancel()


@trio_test
async def test_an_rpc_connection_from_another_cluster_is_refused() -> None:
    """A caller that names its cluster in the RPC hello (a server) is refused by a server of another cluster;
    one of the same cluster, or one that names none (a client agent), is answered."""
    from agent.server import rpc

    server = rpc.RPCServer()

    async def whoami(_args: Any) -> str:
        return "a"

    server.handlers["Who"] = whoami
    async with trio.open_nursery() as nursery:
        a = Node(transport("a", rpc_handler=server.serve))
        await a.start(nursery)
        assert await rpc.call(a.addr, "Who", timeout=DEADLINE) == "a"
        assert await rpc.call(a.addr, "Who", timeout=DEADLINE, cluster=CLUSTER) == "a"
        with pytest.raises(rpc.RPCError, match="connection closed"):
            await rpc.call(a.addr, "Who", timeout=DEADLINE, cluster="cluster-2")
        assert a.t.stats.refused_connections == 1
        nursery.cancel_scope.cancel()


@trio_test
async def test_a_peer_added_twice_at_once_gets_one_dialer_and_one_connection() -> None:
    """Gossip updates come in bursts, and each one re-adds the servers it shows: two add_peer calls before the
    dial loop first ran used to start two loops, which replaced each other's connection without end."""
    async with trio.open_nursery() as nursery:
        a, b = Node(transport("a")), Node(transport("b"))
        await a.start(nursery)
        await b.start(nursery)
        a.t.add_peer("b", b.addr)
        a.t.add_peer("b", b.addr)
        b.t.add_peer("a", a.addr)
        for n in range(20):  # twenty round trips: time for a second dialer to replace the connection many times
            await exchange([a, b], n)
        assert (a.t.stats.connections, b.t.stats.connections) == (1, 1)
        nursery.cancel_scope.cancel()
