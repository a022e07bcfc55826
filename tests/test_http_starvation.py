"""Issue 16, items 9 and 10: no client can starve the others on the HTTP API.

Real sockets on loopback, clients from several 127.0.0.x addresses (each address is its own client for the
per-client cap).  Idle connections time out fast and are evicted when a client with something to ask arrives;
a parked blocking query reads nothing more from its connection until it has answered.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import requests
import trio
from conftest import next_loopback_ip
from http_fakes import (
    FakeAgent,
    member,
    read_replies,
    request_bytes,
    run,
    server_config,
    serving,
    settled_index,
)
from procs import wait_for

TIMEOUT = 60


def cluster() -> FakeAgent:
    api = FakeAgent(config=server_config())
    api.add_self()
    return api


async def connect_from(source: str, addr: tuple[str, int]) -> trio.SocketStream:
    """A TCP connection to ``addr`` whose source address is ``source`` (a client of its own to the server)."""
    sock = trio.socket.socket()
    await sock.bind((source, 0))
    await sock.connect(addr)
    return trio.SocketStream(sock)


async def closed_by_server(stream: trio.SocketStream) -> bytes:
    data = bytearray()
    try:
        while chunk := await stream.receive_some(65536):
            data += chunk
    except trio.BrokenResourceError:
        pass
    return bytes(data)


async def served_promptly(addr: tuple[str, int], source: str, within: float = 2.0) -> None:
    async with await connect_from(source, addr) as fresh:
        await fresh.send_all(request_bytes("GET", "/v1/status/leader"))
        with trio.fail_after(within):
            (reply,) = await read_replies(fresh, 1)
        assert reply.status == 200, (reply.status, reply.body)


def test_an_idle_flood_from_six_addresses_does_not_shut_out_a_new_client() -> None:
    """~1,100 connections from 6 addresses, half saying nothing, half trickling a head: a 7th address is served."""
    sources = [next_loopback_ip() for _ in range(6)]

    async def main() -> None:
        with trio.fail_after(TIMEOUT):
            # Generous timeouts: the flood must not be cleared by time, but by the cap favouring active clients.
            async with serving(cluster(), header_timeout=60, idle_timeout=60) as addr:
                flood: list[trio.SocketStream] = []
                for i in range(1100):
                    stream = await connect_from(sources[i % 6], addr)
                    if i % 2:
                        await stream.send_all(b"GET /v1/agent/self HTTP/1.1\r\nHost: x\r\n")  # slowloris
                    flood.append(stream)
                for _ in range(3):
                    await served_promptly(addr, next_loopback_ip())
                # Keep-alive connections that did a request are idle too, and make room the same way.
                await served_promptly(addr, sources[0])
                for stream in flood:
                    await stream.aclose()

    run(main)


def test_a_client_at_its_own_cap_evicts_its_own_idle_connection_but_busy_ones_are_refused() -> None:
    api = cluster()
    index = api.table.current.index

    async def main() -> None:
        with trio.fail_after(TIMEOUT):
            async with serving(api, max_connections_per_client=5, header_timeout=60, idle_timeout=60) as addr:
                me, other = next_loopback_ip(), next_loopback_ip()
                idle = [await connect_from(me, addr) for _ in range(5)]
                await served_promptly(addr, me)  # the sixth from `me` pushes out its oldest idle one
                assert await closed_by_server(idle[0]) == b""
                for stream in idle:
                    await stream.aclose()
                # Five parked blocking queries from `other`: nothing is idle, so a sixth is refused with 429.
                parked = []
                for _ in range(5):
                    stream = await connect_from(other, addr)
                    await stream.send_all(request_bytes("GET", f"/v1/catalog/nodes?index={index}&wait=1m"))
                    parked.append(stream)
                while api.table.statistics().waiters < 5:
                    await trio.sleep(0.01)
                async with await connect_from(other, addr) as sixth:
                    assert (await closed_by_server(sixth)).startswith(b"HTTP/1.1 429 Too Many Requests\r\n")
                api.apply("member-join", member("late", "10.0.0.50"))
                for stream in parked:
                    (reply,) = await read_replies(stream, 1)
                    assert reply.status == 200 and b'"late"' in reply.body
                    await stream.aclose()

    run(main)


def test_a_connection_that_says_nothing_is_closed_at_the_header_deadline_not_the_idle_one() -> None:
    async def main() -> None:
        with trio.fail_after(TIMEOUT):
            async with (
                serving(cluster(), header_timeout=0.5, idle_timeout=30) as addr,
                await connect_from(next_loopback_ip(), addr) as silent,
            ):
                start = trio.current_time()
                with trio.fail_after(5):
                    assert await closed_by_server(silent) == b""
                assert trio.current_time() - start >= 0.4

    run(main)


def test_a_client_that_sends_more_and_then_hangs_up_still_cancels_its_parked_query() -> None:
    """After the one byte read while a handler runs, the connection is only polled for a hang-up (POLLRDHUP)."""
    api = cluster()
    index = api.table.current.index

    async def main() -> None:
        with trio.fail_after(TIMEOUT):
            async with serving(api, hangup_check_interval=0.2) as addr:
                stream = await connect_from(next_loopback_ip(), addr)
                await stream.send_all(request_bytes("GET", f"/v1/catalog/nodes?index={index}&wait=10m"))
                await stream.send_all(request_bytes("GET", "/v1/status/leader") + b"\x00" * 100_000)
                while api.table.statistics().waiters < 1:
                    await trio.sleep(0.01)
                await stream.aclose()
                with trio.fail_after(3):
                    while api.table.statistics().waiters:
                        await trio.sleep(0.05)

    run(main)


# ---------------------------------------------------------------------- item 10: a real agent's memory


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def wait_quiet(pid: int, timeout: float = 60) -> None:
    """Until the process has used no CPU for half a second: it has read everything it is going to read."""
    deadline = time.monotonic() + timeout
    last = cpu_ticks(pid)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = cpu_ticks(pid)
        if now - last <= 1:
            return
        last = now
    raise AssertionError(f"agent {pid} still busy after {timeout}s")


TCP_NOTSENT_LOWAT = getattr(socket, "TCP_NOTSENT_LOWAT", 25)
PARKED = 1000
GARBAGE = 1 << 20  # per connection, sent after the request head
RSS_GROWTH_BOUND_MIB = 150  # before the fix: ~1 MiB read ahead per parked query, ~1.1 GB in all


def test_parked_queries_with_garbage_behind_them_do_not_grow_the_agent(cluster: object, tmp_path: Path) -> None:
    a = cluster.start("a", server=True)  # type: ignore[attr-defined]
    pid = a.proc.pid
    sources = [next_loopback_ip() for _ in range(10)]  # 100 connections each: under the per-client cap of 200

    index = settled_index(f"http://{a.http_addr}/v1/catalog/nodes")
    baseline = rss_kib(pid)
    replies: list[tuple[int, bytes, str]] = []
    sent = [0]

    async def client(i: int) -> None:
        stream = await connect_from(sources[i % len(sources)], (a.ip, a.http_port))
        # trio keeps at most 16 KiB unsent per socket; a plain client lets the kernel take ~4 MB unread.
        stream.setsockopt(socket.IPPROTO_TCP, TCP_NOTSENT_LOWAT, 1 << 30)
        async with stream, trio.open_nursery() as nursery:
            await stream.send_all(request_bytes("GET", f"/v1/catalog/nodes?index={index}&wait=5m"))

            async def garbage() -> None:
                try:
                    await stream.send_all(b"\x00" * GARBAGE)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
                sent[0] += 1

            nursery.start_soon(garbage)
            (reply,) = await read_replies(stream, 1)
            replies.append((reply.status, reply.body, reply.header("X-Consul-Index") or ""))
            nursery.cancel_scope.cancel()

    async def main() -> None:
        with trio.fail_after(240):
            async with trio.open_nursery() as nursery:
                for i in range(PARKED):
                    nursery.start_soon(client, i)
                # Every client has pushed its garbage (the kernel takes it whether the agent reads or not) ...
                while sent[0] < PARKED:
                    assert not replies, replies[:3]  # answered at once: not parked
                    await trio.sleep(0.1)
                # ... and the agent has read whatever it was going to read: now measure, then wake them all.
                await trio.to_thread.run_sync(wait_quiet, pid)
                grown = (rss_kib(pid) - baseline) / 1024
                assert grown < RSS_GROWTH_BOUND_MIB, f"agent RSS grew {grown:.0f} MiB for {PARKED} parked queries"
                assert not replies, replies[:3]  # all still parked
                await trio.to_thread.run_sync(
                    lambda: cluster.start("b", extra={"start_join": [a.serf_addr]})  # type: ignore[attr-defined]
                )

    run(main)
    assert len(replies) == PARKED
    assert all(status == 200 and b'"b"' in body and int(ix) > index for status, body, ix in replies), replies[:3]
    peak = (rss_kib(pid, "VmHWM") - baseline) / 1024
    print(f"agent RSS: baseline {baseline / 1024:.0f} MiB, peak growth {peak:.0f} MiB for {PARKED} parked queries")
    assert a.proc.alive()
    wait_for(lambda: requests.get(f"http://{a.http_addr}/v1/agent/self", timeout=2).ok, timeout=10, what="agent")
