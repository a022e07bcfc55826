"""The DNS servers (UDP, TCP), the per-snapshot cache and the recursors, in-process on loopback.

Rules: loopback only, port 0 (the server reports what it bound), every I/O under ``trio.fail_after``; waits are
conditions with deadlines.  Each test runs its own ``trio.run`` (pytest-trio is not a dependency).
"""

from __future__ import annotations

import contextlib
import functools
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import trio
from conftest import next_loopback_ip

from agent.config import AgentConfig
from agent.dns import DnsLimits, DnsSettings, Responder, serve_dns
from agent.members import Member, MemberTable

TAGS = {"role": "consul", "dc": "dc1", "build": "1.20.1:x"}


def run(fn: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        async def main() -> None:
            with trio.fail_after(30):
                await fn(*args, **kwargs)

        trio.run(main)

    return wrapper


def make_table() -> MemberTable:
    table = MemberTable()
    table.apply("member-join", Member("hdp1", "127.0.0.11", 8301, TAGS))
    table.apply("member-join", Member("hdp2", "127.0.0.12", 8301, {**TAGS, "role": "node"}))
    return table


def config(**kw: Any) -> AgentConfig:
    return AgentConfig(node_name="hdp1", server=True, **kw)


@contextlib.asynccontextmanager
async def dns_server(table: MemberTable, cfg: AgentConfig | None = None,
                     limits: DnsLimits | None = None) -> AsyncIterator[tuple[str, int]]:
    async with trio.open_nursery() as nursery:
        addr = await nursery.start(functools.partial(serve_dns, table, cfg or config(), next_loopback_ip(), 0,
                                                     limits=limits or DnsLimits()))
        yield addr
        nursery.cancel_scope.cancel()


async def udp_exchange(addr: tuple[str, int], wire: bytes, *, wait: float = 2.0) -> bytes | None:
    """Send one datagram; the reply, or None if nothing came within ``wait`` seconds."""
    with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        await sock.connect(addr)
        await sock.send(wire)
        with trio.move_on_after(wait):
            return await sock.recv(65535)
    return None


async def udp_query(addr: tuple[str, int], name: str, rdtype: str = "A", **kw: Any) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, **kw)
    reply = await udp_exchange(addr, query.to_wire())
    assert reply is not None, f"no answer to {name}"
    msg = dns.message.from_wire(reply)
    assert msg.id == query.id
    return msg


async def read_framed(stream: trio.SocketStream, count: int) -> list[bytes]:
    buf = bytearray()
    out: list[bytes] = []
    while len(out) < count:
        while len(buf) >= 2 and len(buf) >= 2 + int.from_bytes(buf[:2], "big"):
            size = int.from_bytes(buf[:2], "big")
            out.append(bytes(buf[2:2 + size]))
            del buf[:2 + size]
        if len(out) >= count:
            break
        chunk = await stream.receive_some(65536)
        assert chunk, "connection closed early"
        buf += chunk
    return out


def frame(wire: bytes) -> bytes:
    return len(wire).to_bytes(2, "big") + wire


def a_records(msg: dns.message.Message) -> list[str]:
    return [rd.to_text() for rrset in msg.answer if rrset.rdtype == 1 for rd in rrset]


# ---------------------------------------------------------------------------------------------- the cache


def test_cache_serves_the_same_bytes_with_id_and_question_spliced_in() -> None:
    table = make_table()
    responder = Responder(table, DnsSettings(node_name="hdp1"))
    first = dns.message.make_query("hdp2.node.consul", "A")
    second = dns.message.make_query("HDP2.Node.Consul", "A")
    second.flags &= ~dns.flags.RD
    a = responder.respond(first.to_wire(), False)
    b = responder.respond(second.to_wire(), False)
    assert isinstance(a, bytes) and isinstance(b, bytes)
    stats = responder.statistics()
    assert (stats.misses, stats.hits, stats.entries) == (1, 1, 1)
    ma, mb = dns.message.from_wire(a), dns.message.from_wire(b)
    assert (ma.id, mb.id) == (first.id, second.id)
    assert ma.flags & dns.flags.RD and not mb.flags & dns.flags.RD and mb.flags & dns.flags.AA
    assert mb.question[0].name.to_text() == "HDP2.Node.Consul."  # the question echoed as sent (0x20-safe)
    assert b[12:12 + 18] == second.to_wire()[12:12 + 18]
    assert a_records(ma) == a_records(mb) == ["127.0.0.12"]


def test_cache_is_dropped_when_the_snapshot_changes() -> None:
    table = make_table()
    responder = Responder(table, DnsSettings(node_name="hdp1"))
    wire = dns.message.make_query("hdp3.node.consul", "A").to_wire()
    reply = responder.respond(wire, False)
    assert isinstance(reply, bytes) and dns.message.from_wire(reply).rcode() == dns.rcode.NXDOMAIN
    table.apply("member-join", Member("hdp3", "127.0.0.13", 8301, {**TAGS, "role": "node"}))
    reply = responder.respond(wire, False)
    assert isinstance(reply, bytes) and a_records(dns.message.from_wire(reply)) == ["127.0.0.13"]
    assert responder.statistics().snapshot_index == table.current.index
    table.apply("member-leave", Member("hdp3", "127.0.0.13", 8301, {**TAGS, "role": "node"}, status=3))
    reply = responder.respond(wire, False)
    assert isinstance(reply, bytes) and dns.message.from_wire(reply).rcode() == dns.rcode.NXDOMAIN


def test_transport_and_edns_size_are_part_of_the_key() -> None:
    table = make_table()
    responder = Responder(table, DnsSettings(node_name="hdp1"))
    plain = dns.message.make_query("hdp2.node.consul", "A").to_wire()
    edns = dns.message.make_query("hdp2.node.consul", "A", use_edns=0, payload=1400).to_wire()
    for wire, tcp in ((plain, False), (plain, True), (edns, False), (plain, False)):
        reply = responder.respond(wire, tcp)
        assert isinstance(reply, bytes)
    assert responder.statistics().entries == 3
    reply = responder.respond(edns, False)
    assert isinstance(reply, bytes) and dns.message.from_wire(reply).payload == 1400


# ---------------------------------------------------------------------------------------------- UDP


@run
async def test_udp_answers_and_sees_joins_at_once() -> None:
    table = make_table()
    async with dns_server(table) as addr:
        msg = await udp_query(addr, "hdp2.node.consul")
        assert a_records(msg) == ["127.0.0.12"] and msg.flags & dns.flags.AA
        assert (await udp_query(addr, "new.node.consul")).rcode() == dns.rcode.NXDOMAIN
        table.apply("member-join", Member("new", "127.0.0.99", 8301, {**TAGS, "role": "node"}))
        assert a_records(await udp_query(addr, "new.node.consul")) == ["127.0.0.99"]


@run
async def test_bad_datagrams_formerr_or_dropped_and_the_server_keeps_answering() -> None:
    async with dns_server(make_table()) as addr:
        assert await udp_exchange(addr, b"\x12\x34\x01", wait=0.3) is None  # no ID to answer to
        header_only = b"\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"  # QDCOUNT 1, no question
        reply = await udp_exchange(addr, header_only)
        assert reply is not None and reply[:2] == b"\xab\xcd" and reply[2] & 0x80 and reply[3] & 0x0F == 1  # FORMERR
        junk = dns.message.make_query("hdp2.node.consul", "A").to_wire() + b"junk"
        reply = await udp_exchange(addr, junk)
        assert reply is not None and reply[3] & 0x0F == 1
        response = dns.message.make_query("hdp2.node.consul", "A")
        response.flags |= dns.flags.QR
        assert await udp_exchange(addr, response.to_wire(), wait=0.3) is None  # never answer a response
        assert a_records(await udp_query(addr, "hdp2.node.consul")) == ["127.0.0.12"]


# ---------------------------------------------------------------------------------------------- TCP


@run
async def test_tcp_is_length_prefixed_and_pipelined() -> None:
    async with dns_server(make_table()) as addr:
        queries = [dns.message.make_query(n, "A") for n in ("hdp1.node.consul", "hdp2.node.consul", "x.node.consul")]
        stream = await trio.open_tcp_stream(*addr)
        async with stream:
            await stream.send_all(b"".join(frame(q.to_wire()) for q in queries))  # all three before any answer
            replies = {m.id: m for m in map(dns.message.from_wire, await read_framed(stream, 3))}
        assert a_records(replies[queries[0].id]) == ["127.0.0.11"]
        assert a_records(replies[queries[1].id]) == ["127.0.0.12"]
        assert replies[queries[2].id].rcode() == dns.rcode.NXDOMAIN


@run
async def test_tcp_idle_connections_are_closed() -> None:
    async with dns_server(make_table(), limits=DnsLimits(tcp_idle=0.3)) as addr:
        stream = await trio.open_tcp_stream(*addr)
        async with stream:
            start = trio.current_time()
            with trio.fail_after(3):
                assert await stream.receive_some(10) == b""
            assert trio.current_time() - start >= 0.25


@run
async def test_tcp_connection_cap() -> None:
    async with dns_server(make_table(), limits=DnsLimits(tcp_connections=2)) as addr:
        wire = dns.message.make_query("hdp2.node.consul", "A").to_wire()
        first, second = await trio.open_tcp_stream(*addr), await trio.open_tcp_stream(*addr)
        for s in (first, second):
            await s.send_all(frame(wire))
            assert a_records(dns.message.from_wire((await read_framed(s, 1))[0])) == ["127.0.0.12"]
        third = await trio.open_tcp_stream(*addr)
        with trio.fail_after(3):
            try:
                closed = await third.receive_some(10) == b""
            except trio.BrokenResourceError:
                closed = True
        assert closed, "the connection over the cap was not closed"
        await third.aclose()
        await first.aclose()
        # Once a slot is free, a new connection is served (the handler notices the close: poll with a deadline).
        with trio.fail_after(5):
            while True:
                fresh = await trio.open_tcp_stream(*addr)
                async with fresh:
                    with contextlib.suppress(trio.BrokenResourceError, AssertionError):
                        await fresh.send_all(frame(wire))
                        if await read_framed(fresh, 1):
                            break
                await trio.sleep(0.05)
        await second.aclose()


@run
async def test_tcp_garbage_gets_formerr_and_the_connection_goes_on() -> None:
    async with dns_server(make_table()) as addr:
        stream = await trio.open_tcp_stream(*addr)
        async with stream:
            good = dns.message.make_query("hdp1.node.consul", "A")
            await stream.send_all(frame(b"\x00\x07\x01\x00" + b"\xff" * 20) + frame(b"") + frame(good.to_wire()))
            formerr, answer = await read_framed(stream, 2)
        assert formerr[:2] == b"\x00\x07" and formerr[3] & 0x0F == 1
        assert dns.message.from_wire(answer).id == good.id


# ---------------------------------------------------------------------------------------------- recursors


@contextlib.asynccontextmanager
async def upstream(reply: Callable[[dns.message.Message], dns.message.Message | None]
                   ) -> AsyncIterator[tuple[str, int]]:
    """A fake recursor on UDP and TCP; ``reply`` returns None to stay silent."""
    ip = next_loopback_ip()
    udp = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await udp.bind((ip, 0))
    port = udp.getsockname()[1]
    listeners = await trio.open_tcp_listeners(port, host=ip)

    async def serve_udp() -> None:
        while True:
            data, peer = await udp.recvfrom(65535)
            out = reply(dns.message.from_wire(data))
            if out is not None:
                await udp.sendto(out.to_wire(), peer)

    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            (data,) = await read_framed(stream, 1)
            out = reply(dns.message.from_wire(data))
            if out is not None:
                await stream.send_all(frame(out.to_wire()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_udp)
        nursery.start_soon(trio.serve_listeners, handle, listeners)
        yield ip, port
        nursery.cancel_scope.cancel()
    udp.close()


def answers_with(address: str) -> Callable[[dns.message.Message], dns.message.Message]:
    def reply(query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query, recursion_available=True)
        response.answer.append(dns.rrset.from_text(query.question[0].name, 60, "IN", "A", address))
        return response

    return reply


def fails_with(rcode: dns.rcode.Rcode) -> Callable[[dns.message.Message], dns.message.Message]:
    def reply(query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query)
        response.set_rcode(rcode)
        return response

    return reply


@run
async def test_names_outside_the_domain_go_to_the_recursors_udp_and_tcp() -> None:
    async with upstream(fails_with(dns.rcode.SERVFAIL)) as broken, upstream(answers_with("192.0.2.7")) as good:
        cfg = config(recursors=(f"{broken[0]}:{broken[1]}", f"{good[0]}:{good[1]}"))
        async with dns_server(make_table(), cfg) as addr:
            msg = await udp_query(addr, "example.com")
            assert a_records(msg) == ["192.0.2.7"] and msg.rcode() == dns.rcode.NOERROR
            inside = await udp_query(addr, "hdp2.node.consul")
            assert inside.flags & dns.flags.RA and inside.flags & dns.flags.AA  # RA: recursors exist
            stream = await trio.open_tcp_stream(*addr)
            async with stream:
                query = dns.message.make_query("example.org", "A")
                await stream.send_all(frame(query.to_wire()))
                reply = dns.message.from_wire((await read_framed(stream, 1))[0])
            assert reply.id == query.id and a_records(reply) == ["192.0.2.7"]


@run
async def test_silent_recursors_give_servfail_with_ra_in_bounded_time() -> None:
    async with upstream(lambda q: None) as silent:
        cfg = config(recursors=(f"{silent[0]}:{silent[1]}",), dns_config={"recursor_timeout": "200ms"})
        async with dns_server(make_table(), cfg) as addr:
            start = trio.current_time()
            msg = await udp_query(addr, "example.com", use_edns=0)
            assert trio.current_time() - start < 1.5
            assert msg.rcode() == dns.rcode.SERVFAIL and msg.flags & dns.flags.RA and msg.edns == 0
            # The responder answered its own names meanwhile and still does.
            assert a_records(await udp_query(addr, "hdp1.node.consul")) == ["127.0.0.11"]


@run
async def test_unknown_reverse_names_go_to_the_recursors_when_configured() -> None:
    def ptr(query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query)
        response.answer.append(dns.rrset.from_text(query.question[0].name, 60, "IN", "PTR", "elsewhere.example."))
        return response

    async with upstream(ptr) as up, dns_server(make_table(), config(recursors=(f"{up[0]}:{up[1]}",))) as addr:
        other = await udp_query(addr, "7.2.0.192.in-addr.arpa", "PTR")
        assert [rd.to_text() for rd in other.answer[0]] == ["elsewhere.example."]
        ours = await udp_query(addr, "12.0.0.127.in-addr.arpa", "PTR")
        assert [rd.to_text() for rd in ours.answer[0]] == ["hdp2.node.dc1.consul."]
