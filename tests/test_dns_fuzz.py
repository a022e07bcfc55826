"""Random and mutated packets against the DNS responder: it never fails internally and keeps answering.

Two levels: the bytes-in/bytes-out ``Responder`` (thousands of hypothesis examples, fast) and the running UDP/TCP
server on loopback (fewer examples, each a burst of packets followed by a valid query that must be answered).
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator

import dns.flags
import dns.message
import dns.rcode
import pytest
import trio
from conftest import next_loopback_ip
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.config import AgentConfig
from agent.dns import DnsSettings, Responder, serve_dns
from agent.dns.cache import Forward
from agent.members import Member, MemberTable

TAGS = {"role": "consul", "dc": "dc1", "build": "1.20.1:x"}


def make_table() -> MemberTable:
    table = MemberTable()
    table.apply("member-join", Member("hdp1", "127.0.0.11", 8301, TAGS))
    table.apply("member-join", Member("six", "fd00::6", 8301, {**TAGS, "role": "node"}))
    return table


SEEDS = [
    dns.message.make_query(name, rdtype, **kw).to_wire()  # type: ignore[arg-type]
    for name, rdtype, kw in [
        ("hdp1.node.consul", "A", {}),
        ("hdp1.node.dc1.consul", "ANY", {"use_edns": 0, "payload": 4096}),
        ("six.node.consul", "AAAA", {"use_edns": 0}),
        ("consul", "SOA", {}),
        ("consul", "NS", {"use_edns": 0}),
        ("11.0.0.127.in-addr.arpa", "PTR", {}),
        ("example.com", "A", {}),
        ("hdp1.node.consul", "TXT", {"use_edns": 0, "payload": 512}),
    ]
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid query with bytes flipped, cut, inserted or appended."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "append"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        else:
            data += draw(st.binary(min_size=1, max_size=40))
    return bytes(data)


packets = st.one_of(st.binary(max_size=600), mutated())


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


_errors = _Errors()


@pytest.fixture(autouse=True, scope="module")
def _watch_errors() -> Iterator[None]:
    """Responder failures are logged (and answered SERVFAIL): any logged error is a bug the fuzzer found."""
    logger = logging.getLogger("agent.dns")
    logger.addHandler(_errors)
    yield
    logger.removeHandler(_errors)


def check_reply(data: bytes, reply: bytes | Forward | None) -> None:
    assert not _errors.records, _errors.records[0].getMessage()
    if reply is None or isinstance(reply, Forward):
        return
    assert isinstance(reply, bytes) and len(reply) >= 12
    assert reply[:2] == data[:2] and reply[2] & 0x80  # our ID back, QR set
    msg = dns.message.from_wire(reply)  # whatever we send parses
    assert msg.rcode() != dns.rcode.SERVFAIL


RESPONDER = Responder(make_table(), DnsSettings(node_name="hdp1"))
FORWARDING = Responder(make_table(), DnsSettings(node_name="hdp1", recursors=(("127.0.0.1", 53),)))


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(packets, st.booleans())
def test_responder_survives_any_packet(data: bytes, tcp: bool) -> None:
    for responder in (RESPONDER, FORWARDING):
        check_reply(data, responder.respond(data, tcp))
    # And it still answers a valid query afterwards.
    good = dns.message.make_query("hdp1.node.consul", "A")
    reply = RESPONDER.respond(good.to_wire(), tcp)
    assert isinstance(reply, bytes)
    msg = dns.message.from_wire(reply)
    assert msg.id == good.id and [rd.to_text() for rd in msg.answer[0]] == ["127.0.0.11"]


@settings(max_examples=3000, deadline=None)
@given(mutated())
def test_a_mutated_query_that_still_parses_gets_a_matching_reply(data: bytes) -> None:
    try:
        query = dns.message.from_wire(data)
    except Exception:
        return
    reply = RESPONDER.respond(data, False)
    check_reply(data, reply)
    if query.flags & dns.flags.QR:
        assert reply is None
    elif isinstance(reply, bytes) and len(query.question) == 1:
        msg = dns.message.from_wire(reply)
        if msg.question:
            assert msg.question == query.question


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(packets, min_size=1, max_size=60))
def test_the_running_server_survives_bursts_and_keeps_answering(burst: list[bytes]) -> None:
    async def main() -> None:
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                config = AgentConfig(node_name="hdp1", server=True)
                addr = await nursery.start(serve_dns, make_table(), config, next_loopback_ip(), 0)
                with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                    await udp.connect(addr)
                    for data in burst:
                        await udp.send(data or b"\x00")
                    tcp = await trio.open_tcp_stream(*addr)
                    async with tcp:
                        stream_bytes = b"".join(len(d).to_bytes(2, "big") + d for d in burst[:10])
                        with contextlib.suppress(trio.BrokenResourceError):
                            await tcp.send_all(stream_bytes)
                    good = dns.message.make_query("hdp1.node.consul", "A")
                    await udp.send(good.to_wire())
                    while True:  # skip replies to the burst until ours arrives
                        reply = await udp.recv(65535)
                        if reply[:2] == good.to_wire()[:2] and reply[2] & 0x80:
                            msg = dns.message.from_wire(reply)
                            if msg.question == good.question:
                                break
                assert [rd.to_text() for rd in msg.answer[0]] == ["127.0.0.11"]
                nursery.cancel_scope.cancel()
        assert not _errors.records

    trio.run(main)
