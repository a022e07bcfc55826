"""Issue 16, item 11: DNS over TCP cannot be held by clients that trickle bytes.

An in-process DNS server on loopback (its deadlines shortened so the test takes seconds), real sockets for the
attackers and the real ``dig +tcp`` for the clients that must still be answered.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
from collections.abc import AsyncIterator

import dns.message
import pytest
import trio
from conftest import next_loopback_ip

from agent.config import AgentConfig
from agent.dns import DnsLimits, serve_dns
from agent.members import Member, MemberTable

DIG = shutil.which("dig") or "/usr/bin/dig"
pytestmark = pytest.mark.skipif(not os.access(DIG, os.X_OK), reason="dig not found: apt-get install dnsutils")
TAGS = {"role": "consul", "dc": "dc1", "build": "1.20.1:x"}


@contextlib.asynccontextmanager
async def dns_server(limits: DnsLimits) -> AsyncIterator[tuple[str, int]]:
    table = MemberTable()
    table.apply("member-join", Member("hdp1", "127.0.0.11", 8301, TAGS))
    table.apply("member-join", Member("hdp2", "127.0.0.12", 8301, {**TAGS, "role": "node"}))
    config = AgentConfig(node_name="hdp1", server=True)
    async with trio.open_nursery() as nursery:
        addr = await nursery.start(functools.partial(serve_dns, table, config, next_loopback_ip(), 0, limits=limits))
        yield addr
        nursery.cancel_scope.cancel()


async def dig_tcp(addr: tuple[str, int], name: str) -> list[str]:
    """The A records ``dig +tcp`` got (empty if it got nothing)."""
    out = await trio.run_process(
        [DIG, f"@{addr[0]}", "-p", str(addr[1]), "+tcp", "+time=2", "+tries=1", "+short", name, "A"],
        capture_stdout=True, capture_stderr=True, check=False,
    )
    return [line for line in out.stdout.decode().split() if line[:1].isdigit()]


async def trickler(addr: tuple[str, int], interval: float, closed_after: list[float], stop: trio.Event) -> None:
    """A connection that sends a query one byte every ``interval`` seconds, forever; records when it is closed."""
    wire = dns.message.make_query("hdp2.node.consul", "A").to_wire()
    payload = len(wire).to_bytes(2, "big") + wire
    start = trio.current_time()
    try:
        stream = await trio.open_tcp_stream(*addr)
    except OSError:
        return
    async with stream:
        try:
            for i in range(10_000):
                if stop.is_set():
                    return
                await stream.send_all(payload[i % len(payload) : i % len(payload) + 1])
                with trio.move_on_after(interval):
                    if await stream.receive_some(512) == b"":
                        break
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
    closed_after.append(trio.current_time() - start)


def test_trickling_tcp_clients_neither_hold_a_connection_nor_shut_out_dig() -> None:
    """256 connections each sending a byte every 0.5 s (the idle timeout is 1.5 s): 40 of 40 `dig +tcp` answered."""

    async def main() -> None:
        with trio.fail_after(60):
            async with dns_server(DnsLimits(tcp_idle=1.5, tcp_connections=256)) as addr:
                closed_after: list[float] = []
                stop = trio.Event()
                async with trio.open_nursery() as nursery:
                    for _ in range(256):
                        nursery.start_soon(trickler, addr, 0.5, closed_after, stop)
                    await trio.sleep(0.5)  # let them all connect and start trickling
                    answered = 0
                    for _ in range(40):
                        if await dig_tcp(addr, "hdp2.node.consul") == ["127.0.0.12"]:
                            answered += 1
                    assert answered == 40, f"{answered} of 40 dig +tcp queries answered"
                    # Trickling never extends a deadline: every trickler is closed within a few seconds.
                    with trio.fail_after(15):
                        while len(closed_after) < 256:
                            await trio.sleep(0.1)
                    assert max(closed_after) < 10, sorted(closed_after)[-5:]
                    stop.set()

    trio.run(main)


def test_a_query_must_arrive_whole_within_the_deadline() -> None:
    async def main() -> None:
        with trio.fail_after(30):
            async with dns_server(DnsLimits(tcp_idle=1.0, tcp_connections=8)) as addr:
                closed_after: list[float] = []
                await trickler(addr, 0.2, closed_after, trio.Event())  # a byte every 0.2 s: never whole in time
                assert len(closed_after) == 1 and closed_after[0] < 4, closed_after

    trio.run(main)
