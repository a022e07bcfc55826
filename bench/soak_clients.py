"""The soak's well-formed clients (bench/soak.py): a minimal HTTP/1.1 client, the loop-lag probe, blocking
queries, stream subscribers, the DNS flood and the per-request connections; every answer is counted in ``Stats``."""

from __future__ import annotations

import itertools
import json
import random
import socket
import time
from collections import Counter, defaultdict
from typing import Any

import dns.message
import dns.rcode
import h11
import trio
import trio_websocket

AGENTS = 5
CLIENT_NET = "127.0.251.{}"


class Stats:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.non_2xx: Counter[str] = Counter()
        self.lag: dict[int, list[float]] = defaultdict(list)
        self.rss: dict[int, list[tuple[float, int]]] = defaultdict(list)
        self.failed_seen: set[tuple[int, str]] = set()


# ---------------------------------------------------------------------- a minimal HTTP/1.1 client


class Http:
    """One keep-alive connection from a chosen source address; ``get`` retries once on a connection the server
    closed while it was idle (nothing of the answer read), as Go's and urllib3's clients do."""

    def __init__(self, source: str, addr: tuple[str, int], stats: Stats) -> None:
        self.source, self.addr, self.stats = source, addr, stats
        self.stream: trio.SocketStream | None = None
        self.conn = h11.Connection(h11.CLIENT)

    async def _connect(self) -> None:
        sock = trio.socket.socket()
        await sock.bind((self.source, 0))
        await sock.connect(self.addr)
        self.stream = trio.SocketStream(sock)
        self.conn = h11.Connection(h11.CLIENT)

    async def close(self) -> None:
        if self.stream is not None:
            await trio.aclose_forcefully(self.stream)
            self.stream = None

    async def get(self, target: str) -> tuple[int, dict[str, str], bytes]:
        for attempt in range(2):
            if self.stream is None:
                await self._connect()
            try:
                return await self._exchange(target)
            except (trio.BrokenResourceError, trio.ClosedResourceError, EOFError, h11.ProtocolError):
                await self.close()
                if attempt:
                    raise
                self.stats.counts["http retries (idle connection closed by the server)"] += 1
        raise AssertionError("unreachable")

    async def _exchange(self, target: str) -> tuple[int, dict[str, str], bytes]:
        assert self.stream is not None
        conn = self.conn
        data = conn.send(h11.Request(method="GET", target=target, headers=[("Host", self.addr[0])]))
        data += conn.send(h11.EndOfMessage())
        await self.stream.send_all(data)
        status, headers, body = 0, {}, bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                chunk = await self.stream.receive_some(65536)
                if not chunk and status == 0:
                    raise EOFError("closed before an answer")
                conn.receive_data(chunk)
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
                headers = {k.decode().lower(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise EOFError("closed mid-answer")
        if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
            await self.close()
        else:
            conn.start_next_cycle()
        return status, headers, bytes(body)


def count(stats: Stats, what: str, status: int) -> None:
    stats.counts[what] += 1
    if not 200 <= status < 300:
        stats.non_2xx[f"{what} {status}"] += 1


# ---------------------------------------------------------------------- well-formed load


async def probe(i: int, addr: tuple[str, int], stats: Stats) -> None:
    """The loop-lag measure: ``GET /v1/agent/self`` every 100 ms on a keep-alive connection."""
    client = Http(CLIENT_NET.format(10 + i), addr, stats)
    while True:
        start = time.perf_counter()
        try:
            status, _, _ = await client.get("/v1/agent/self")
        except (OSError, EOFError, trio.BrokenResourceError, h11.ProtocolError) as exc:
            stats.non_2xx[f"probe error {type(exc).__name__}"] += 1
            await trio.sleep(0.1)
            continue
        stats.lag[i].append(time.perf_counter() - start)
        count(stats, "probe /v1/agent/self", status)
        await trio.sleep(0.1)


async def run_probes(spec: dict[str, Any]) -> None:
    """``--role probe``: its own process, so the load generator's own stalls never count as the agents'."""
    stats = Stats()
    async with trio.open_nursery() as nursery:
        for i, addr in enumerate(spec["http"]):
            nursery.start_soon(probe, i, tuple(addr), stats)
        await trio.sleep(spec["duration"])
        nursery.cancel_scope.cancel()
    print(json.dumps({"lag": stats.lag, "counts": stats.counts, "non_2xx": stats.non_2xx}))


async def blocking_client(n: int, addr: tuple[str, int], stats: Stats, stop: trio.Event) -> None:
    client = Http(CLIENT_NET.format(20 + n % 50), addr, stats)
    index = 0
    await trio.sleep(random.random() * 5)
    while not stop.is_set():
        try:
            status, headers, _ = await client.get(f"/v1/catalog/nodes?index={index}&wait=20s")
        except (OSError, EOFError, trio.BrokenResourceError, h11.ProtocolError) as exc:
            stats.non_2xx[f"blocking query error {type(exc).__name__}"] += 1
            await trio.sleep(1)
            continue
        count(stats, "blocking query", status)
        index = int(headers.get("x-consul-index", "0") or 0)


async def subscriber(n: int, addr: tuple[str, int], stats: Stats, stop: trio.Event) -> None:
    await trio.sleep(random.random() * 5)
    url = f"ws://{addr[0]}:{addr[1]}/v1/stream/members"
    while not stop.is_set():
        try:
            async with trio_websocket.open_websocket_url(url) as ws:
                stats.counts["stream connects"] += 1
                while True:
                    event = json.loads(await ws.get_message())
                    stats.counts["stream messages"] += 1
                    if event.get("Type") == "member-failed":
                        stats.failed_seen.add((n, event["Member"]["Name"]))
        except trio_websocket.HandshakeError as exc:
            stats.non_2xx[f"stream handshake {type(exc).__name__}"] += 1
        except (trio_websocket.ConnectionClosed, OSError):
            stats.counts["stream reconnects"] += 1
        await trio.sleep(1)


async def dns_flood(addrs: list[tuple[str, int]], qps: int, stats: Stats, stop: trio.Event) -> None:
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await sock.bind((CLIENT_NET.format(5), 0))
    names = [f"soak{i}.node.consul" for i in range(AGENTS)]

    async def receive() -> None:
        while True:
            data = await sock.recv(65535)
            try:
                rcode = dns.message.from_wire(data).rcode()
            except Exception:
                rcode = -1
            stats.counts["dns answers" if rcode == dns.rcode.NOERROR else f"dns rcode {rcode}"] += 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive)
        for k in itertools.count():
            if stop.is_set():
                break
            wire = dns.message.make_query(names[k % AGENTS], "A").to_wire()
            await sock.sendto(wire, addrs[k % len(addrs)])
            stats.counts["dns queries"] += 1
            await trio.sleep(1 / qps)
        await trio.sleep(1)
        nursery.cancel_scope.cancel()


async def fresh_http_client(addr: tuple[str, int], stats: Stats, stop: trio.Event) -> None:
    """A new connection for every request (what the idle flood and slowloris try to shut out), 5 a second."""
    while not stop.is_set():
        client = Http(CLIENT_NET.format(7), addr, stats)
        try:
            status, _, _ = await client.get("/v1/status/leader")
            count(stats, "fresh-connection GET (attacked agent)", status)
        except (OSError, EOFError, trio.BrokenResourceError, h11.ProtocolError) as exc:
            stats.non_2xx[f"fresh-connection error {type(exc).__name__}"] += 1
        finally:
            await client.close()
        await trio.sleep(0.2)


async def dns_tcp_client(addr: tuple[str, int], stats: Stats, stop: trio.Event) -> None:
    """A well-formed DNS-over-TCP query on a new connection, 5 a second (what the trickle tries to shut out)."""
    while not stop.is_set():
        query = dns.message.make_query("soak0.node.consul", "A")
        wire = query.to_wire()
        try:
            with trio.fail_after(2):
                async with await trio.open_tcp_stream(*addr) as stream:
                    await stream.send_all(len(wire).to_bytes(2, "big") + wire)
                    data = b""
                    while len(data) < 2 or len(data) < 2 + int.from_bytes(data[:2], "big"):
                        chunk = await stream.receive_some(4096)
                        if not chunk:
                            raise EOFError("closed before an answer")
                        data += chunk
            ok = dns.message.from_wire(data[2:]).rcode() == dns.rcode.NOERROR
            stats.counts["dns-tcp queries (attacked agent)"] += 1
            if not ok:
                stats.non_2xx["dns-tcp not NOERROR"] += 1
        except (OSError, EOFError, trio.BrokenResourceError, trio.TooSlowError) as exc:
            stats.non_2xx[f"dns-tcp error {type(exc).__name__}"] += 1
        await trio.sleep(0.2)
