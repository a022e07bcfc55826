"""Soak: five real agents under loss, load and the attack mixes of issue 16, for a bounded time; one table at the end.

    .venv/bin/python bench/soak.py                    # 600 s (the issue's 10 minutes)
    .venv/bin/python bench/soak.py --duration 60      # the short run

What runs (all on loopback, 127.0.251-253.x, so it does not meet the tests' 127.0.1-200.x addresses):

- 5 ``python -m agent`` processes (lan profile, one server), each behind a UDP proxy that drops ``--loss`` (10 %)
  of the gossip datagrams in each direction, seeded per agent.  Why a proxy: ``tc qdisc ... netem`` is what we
  would use (as root, in a private network namespace), but this kernel has neither netem nor prio nor iptables;
  so each agent binds 127.0.252.N and advertises 127.0.253.N, where the proxy forwards UDP with seeded drops
  (a NAT-like socket per sender, so replies find their way back) and TCP (push/pull) without loss;
- well-formed clients, every answer counted: ``--queries`` (1,000) blocking queries on /v1/catalog/nodes
  (``wait=20s``, re-issued as they answer), ``--subscribers`` (500) websocket subscribers of
  /v1/stream/members, a DNS flood over UDP (``--dns-qps``, Python: dnsperf is not installed here; the rate
  reached is what one Python sender manages), a fresh HTTP connection per request to the agents under the idle
  flood and slowloris, and a DNS-over-TCP query per connection to the one under the trickle, and a probe
  per agent timing ``GET /v1/agent/self`` every 100 ms on a keep-alive connection (the loop-lag measure: a
  round trip includes any stall of the agent's event loop; no other load is on that connection);
- the attacks: ~1,100 idle HTTP connections from 6 addresses (agent 1), 200 slowloris HTTP heads (agent 2),
  256 DNS-TCP connections trickling a byte every second (agent 3), 300 parked blocking queries each followed by
  1 MiB of garbage (agent 4), and malformed gossip datagrams (random bytes, truncated and oversized messages) at
  every agent's gossip port.  Attack connections that are closed are reopened.

Reported: RSS per agent over time, the probe's round trip (p50/p99/max) per agent, members seen ``failed`` (any
is false: nobody is killed), agent exits, and the well-formed requests answered non-2xx (a keep-alive connection
the server closed while idle is retried once, as Go's and urllib3's clients do, and counted as a retry).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import dns.message
import dns.rcode
import h11
import trio
import trio_websocket

REPO = Path(__file__).resolve().parent.parent
AGENTS = 5
BIND = "127.0.252.{}"
ADVERTISE = "127.0.253.{}"
CLIENT_NET = "127.0.251.{}"


def free_port(ip: str) -> int:
    """A port free for both UDP and TCP on ``ip``."""
    while True:
        with socket.socket() as t, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            t.bind((ip, 0))
            port = t.getsockname()[1]
            try:
                u.bind((ip, port))
            except OSError:
                continue
            return port


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


# ---------------------------------------------------------------------- the cluster


class Cluster:
    def __init__(self, workdir: Path, loss: float, seed: int) -> None:
        self.workdir, self.loss, self.seed = workdir, loss, seed
        self.procs: list[subprocess.Popen[bytes]] = []
        self.http: list[tuple[str, int]] = []
        self.dns: list[tuple[str, int]] = []
        self.serf: list[int] = []

    def configs(self) -> None:
        for i in range(AGENTS):
            bind = BIND.format(i + 1)
            self.serf.append(free_port(bind))
            self.http.append((bind, free_port(bind)))
            self.dns.append((bind, free_port(bind)))

    def start(self) -> None:
        for i in range(AGENTS):
            bind, adv = BIND.format(i + 1), ADVERTISE.format(i + 1)
            cdir = self.workdir / f"a{i}.d"
            cdir.mkdir()
            config = {
                "node_name": f"soak{i}", "bind_addr": bind, "advertise_addr": adv, "client_addr": bind,
                "data_dir": str(self.workdir / f"a{i}.data"), "gossip_profile": "lan",
                "ports": {"http": self.http[i][1], "dns": self.dns[i][1], "serf_lan": self.serf[i]},
                **({"server": True, "bootstrap_expect": 1} if i == 0 else {}),
                **({"start_join": [f"{ADVERTISE.format(1)}:{self.serf[0]}"]} if i else {}),
            }
            (cdir / "agent.json").write_text(json.dumps(config))
            log = open(self.workdir / f"a{i}.log", "wb")  # noqa: SIM115 -- the child holds it
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "agent", "-config-dir", str(cdir)], stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)),
                start_new_session=True,
            ))
            if i == 0:  # the others join through it: wait until it listens
                deadline = time.monotonic() + 30
                while True:
                    try:
                        socket.create_connection(self.http[0], timeout=1).close()
                        break
                    except OSError:
                        if time.monotonic() > deadline or self.procs[0].poll() is not None:
                            raise RuntimeError(f"soak0 did not start: see {self.workdir / 'a0.log'}") from None
                        time.sleep(0.1)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait(10)


# ---------------------------------------------------------------------- the lossy proxy


async def udp_proxy(front_addr: tuple[str, int], agent: tuple[str, int], loss: float, rng: random.Random,
                    stats: Stats) -> None:
    """Forward datagrams to ``agent`` through one socket per sender (so replies go back), dropping ``loss``."""
    front = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await front.bind(front_addr)
    backs: dict[tuple[str, int], trio.socket.SocketType] = {}

    async def back_loop(sender: tuple[str, int], back: trio.socket.SocketType) -> None:
        while True:
            data = await back.recv(65536)
            if rng.random() < loss:
                stats.counts["gossip datagrams dropped"] += 1
                continue
            await front.sendto(data, sender)

    async with trio.open_nursery() as nursery:
        while True:
            data, sender = await front.recvfrom(65536)
            if rng.random() < loss:
                stats.counts["gossip datagrams dropped"] += 1
                continue
            stats.counts["gossip datagrams forwarded"] += 1
            back = backs.get(sender)
            if back is None:
                back = backs[sender] = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                await back.bind((front_addr[0], 0))
                nursery.start_soon(back_loop, sender, back)
            await back.sendto(data, agent)


async def tcp_proxy(front_addr: tuple[str, int], agent: tuple[str, int]) -> None:
    async def splice(a: trio.SocketStream, b: trio.SocketStream) -> None:
        try:
            while data := await a.receive_some(65536):
                await b.send_all(data)
            await b.send_eof()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass

    async def handle(client: trio.SocketStream) -> None:
        try:
            upstream = await trio.open_tcp_stream(*agent)
        except OSError:
            await client.aclose()
            return
        async with client, upstream, trio.open_nursery() as n:
            n.start_soon(splice, client, upstream)
            n.start_soon(splice, upstream, client)

    listeners = await trio.open_tcp_listeners(front_addr[1], host=front_addr[0])
    await trio.serve_listeners(handle, listeners)


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


async def run_proxies(spec: dict[str, Any]) -> None:
    """``--role proxy``: its own process, so a stall of the load generator never stalls gossip."""
    stats = Stats()
    with trio.move_on_after(spec["duration"]):
        async with trio.open_nursery() as nursery:
            for i, (front, agent) in enumerate(zip(spec["fronts"], spec["agents"], strict=True)):
                rng = random.Random(spec["seed"] + i)
                nursery.start_soon(udp_proxy, tuple(front), tuple(agent), spec["loss"], rng, stats)
                nursery.start_soon(tcp_proxy, tuple(front), tuple(agent))
            print("ready", flush=True)
            await trio.to_thread.run_sync(sys.stdin.read, abandon_on_cancel=True)  # until the parent closes it
            nursery.cancel_scope.cancel()
    print(json.dumps({"counts": stats.counts}), flush=True)


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


# ---------------------------------------------------------------------- attacks


async def hold(source: str, addr: tuple[str, int], first: bytes, trickle: bytes, every: float,
               stats: Stats, what: str) -> None:
    """An attack connection: ``first``, then ``trickle`` a byte at a time every ``every`` s; reopened when closed."""
    while True:
        try:
            sock = trio.socket.socket()
            await sock.bind((source, 0))
            await sock.connect(addr)
            stream = trio.SocketStream(sock)
            stats.counts[f"attack {what} opened"] += 1
            async with stream:
                if first:
                    await stream.send_all(first)
                for i in itertools.count():
                    if trickle:
                        await stream.send_all(trickle[i % len(trickle) : i % len(trickle) + 1])
                    with trio.move_on_after(every):
                        if await stream.receive_some(4096) == b"":
                            break
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        await trio.sleep(1.0)


async def parked_with_garbage(source: str, addr: tuple[str, int], stats: Stats) -> None:
    while True:
        try:
            sock = trio.socket.socket()
            await sock.bind((source, 0))
            await sock.connect(addr)
            stream = trio.SocketStream(sock)
            stream.setsockopt(socket.IPPROTO_TCP, getattr(socket, "TCP_NOTSENT_LOWAT", 25), 1 << 30)
            stats.counts["attack parked+garbage opened"] += 1
            async with stream:
                await stream.send_all(b"GET /v1/catalog/nodes?index=1000000&wait=10m HTTP/1.1\r\nHost: x\r\n\r\n")
                await stream.send_all(os.urandom(1 << 20))
                while await stream.receive_some(65536):
                    pass
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        await trio.sleep(1)


async def bad_gossip(ports: list[tuple[str, int]], stats: Stats, rate: int) -> None:
    rng = random.Random(16)
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await sock.bind((CLIENT_NET.format(6), 0))
    kinds = [
        lambda: rng.randbytes(rng.randrange(1, 1400)),
        lambda: bytes([rng.randrange(0, 14)]) + rng.randbytes(rng.randrange(0, 64)),  # a type byte, then junk
        lambda: b"\x04\x85\xa4Node\xc4\x05evil\xff\xa3Addr",  # a truncated alive with a non-UTF-8 name
        lambda: b"\x07\xff" + b"\x00\x05" * 255,  # a compound claiming 255 parts of 5 bytes, none there
        lambda: b"\x0c\xde\xad\xbe\xef" + rng.randbytes(40),  # a CRC that cannot match
    ]
    while True:
        for addr in ports:
            await sock.sendto(kinds[rng.randrange(len(kinds))](), addr)
            stats.counts["malformed gossip datagrams sent"] += 1
        await trio.sleep(len(ports) / rate)


async def attacks(c: Cluster, stats: Stats) -> None:
    head = b"GET /v1/agent/self HTTP/1.1\r\nHost: x\r\nX-Slow: "
    dns_query = dns.message.make_query("soak0.node.consul", "A").to_wire()
    async with trio.open_nursery() as n:
        for k in range(1100):  # idle flood, 6 addresses, agent 1
            n.start_soon(hold, CLIENT_NET.format(100 + k % 6), c.http[1], b"", b"", 30.0, stats, "idle http")
            await trio.sleep(0.002)  # ramp up over a few seconds (a burst would measure the generator, not us)
        for k in range(200):  # slowloris, agent 2
            n.start_soon(hold, CLIENT_NET.format(110 + k % 4), c.http[2], b"", head + b"a" * 4000, 1.0, stats,
                         "slowloris http")
        for k in range(256):  # DNS-TCP trickle, agent 3
            n.start_soon(hold, CLIENT_NET.format(120 + k % 4), c.dns[3], b"",
                         len(dns_query).to_bytes(2, "big") + dns_query, 1.0, stats, "dns-tcp trickle")
        for k in range(300):  # parked queries with garbage, agent 4
            n.start_soon(parked_with_garbage, CLIENT_NET.format(130 + k % 3), c.http[4], stats)
            await trio.sleep(0.01)
        n.start_soon(bad_gossip, [(BIND.format(i + 1), c.serf[i]) for i in range(AGENTS)], stats, 200)


# ---------------------------------------------------------------------- measuring


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


async def sample_rss(c: Cluster, stats: Stats, start: float, stop: trio.Event) -> None:
    while not stop.is_set():
        for i, p in enumerate(c.procs):
            stats.rss[i].append((time.monotonic() - start, rss_kib(p.pid)))
        with trio.move_on_after(5):
            await stop.wait()


async def members_failed(c: Cluster, stats: Stats) -> list[str]:
    """Members any agent shows as failed right now (none should be: nobody was killed)."""
    seen = []
    for i, addr in enumerate(c.http):
        client = Http(CLIENT_NET.format(9), addr, stats)
        try:
            status, _, body = await client.get("/v1/agent/members")
            count(stats, "members", status)
            if status == 200:
                seen += [f"{m['Name']} on soak{i}" for m in json.loads(body) if m["Status"] == 4]
            else:
                seen.append(f"(soak{i} answered {status})")
        except (OSError, EOFError, trio.BrokenResourceError, h11.ProtocolError) as exc:
            stats.non_2xx[f"members error {type(exc).__name__}"] += 1
        finally:
            await client.close()
    return seen


async def wait_joined(c: Cluster, stats: Stats, timeout: float) -> None:
    with trio.fail_after(timeout):
        while True:
            try:
                client = Http(CLIENT_NET.format(9), c.http[0], stats)
                status, _, body = await client.get("/v1/agent/members")
                await client.close()
                if status == 200 and sum(m["Status"] == 1 for m in json.loads(body)) == AGENTS:
                    return
            except (OSError, EOFError, trio.BrokenResourceError):
                pass
            await trio.sleep(0.5)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(c: Cluster, stats: Stats, args: argparse.Namespace, failed_now: list[str], elapsed: float,
           exits: list[int | None]) -> str:
    lines = [
        f"soak: {AGENTS} agents, {elapsed:.0f} s of load, loss {args.loss:.0%} per direction on gossip UDP "
        f"(seeded proxy), {args.queries} blocking queries, {args.subscribers} stream subscribers, "
        f"DNS flood {args.dns_qps} q/s, attacks on agents 1-4 (see bench/soak.py); cpus={os.cpu_count()}",
        "",
        "| agent | RSS start MiB | RSS 25% | RSS 50% | RSS 75% | RSS end | RSS max | probe p50 ms | probe p99 ms "
        "| probe max ms | probes | exited |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i in range(len(c.procs)):
        series = [kib for _, kib in stats.rss[i]] or [0]

        def at(frac: float, s: list[int] = series) -> str:
            return f"{s[min(len(s) - 1, int(frac * (len(s) - 1)))] / 1024:.0f}"

        lag = [x * 1000 for x in stats.lag[i]]
        exited = "no" if exits[i] is None else f"yes ({exits[i]})"
        lines.append(
            f"| soak{i} | {at(0)} | {at(0.25)} | {at(0.5)} | {at(0.75)} | {at(1)} | {max(series) / 1024:.0f} | "
            f"{percentile(lag, 0.5):.1f} | {percentile(lag, 0.99):.1f} | {max(lag, default=float('nan')):.1f} | "
            f"{len(lag)} | {exited} |"
        )
    lines += ["", "| measure | value |", "|---|---|"]
    lines.append(f"| members seen `failed` (stream events, any subscriber) | {len(stats.failed_seen)} |")
    lines.append(f"| members `failed` in /v1/agent/members at the end | {len(failed_now)} {failed_now or ''} |")
    lines.append(f"| agents exited | {sum(e is not None for e in exits)} |")
    lines.append(f"| non-2xx / errors on well-formed requests | {sum(stats.non_2xx.values())} "
                 f"{dict(stats.non_2xx) or ''} |")
    for key in sorted(stats.counts):
        lines.append(f"| {key} | {stats.counts[key]} |")
    return "\n".join(lines)


def helper(role: str, spec: dict[str, Any]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, __file__, "--role", role, "--spec", json.dumps(spec)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)


async def soak(args: argparse.Namespace, workdir: Path) -> str:
    stats = Stats()
    c = Cluster(workdir, args.loss, args.seed)
    c.configs()
    stop = trio.Event()
    spec = {"fronts": [(ADVERTISE.format(i + 1), c.serf[i]) for i in range(AGENTS)],
            "agents": [(BIND.format(i + 1), c.serf[i]) for i in range(AGENTS)],
            "loss": args.loss, "seed": args.seed, "duration": args.duration + 120}
    proxies = helper("proxy", spec)
    probes: subprocess.Popen[str] | None = None
    try:
        assert proxies.stdout is not None
        assert await trio.to_thread.run_sync(proxies.stdout.readline) == "ready\n"
        c.start()
        await wait_joined(c, stats, 60)
        print(f"soak: {AGENTS} agents joined; load for {args.duration:.0f} s", file=sys.stderr)
        start = time.monotonic()
        probes = helper("probe", {"http": c.http, "duration": args.duration})
        async with trio.open_nursery() as load:
            load.start_soon(sample_rss, c, stats, start, stop)
            for n in range(args.queries):
                load.start_soon(blocking_client, n, c.http[n % AGENTS], stats, stop)
            for n in range(args.subscribers):
                load.start_soon(subscriber, n, c.http[n % AGENTS], stats, stop)
            load.start_soon(dns_flood, c.dns, args.dns_qps, stats, stop)
            load.start_soon(fresh_http_client, c.http[1], stats, stop)
            load.start_soon(fresh_http_client, c.http[2], stats, stop)
            load.start_soon(dns_tcp_client, c.dns[3], stats, stop)
            load.start_soon(attacks, c, stats)
            await trio.sleep(args.duration)
            stop.set()
            for i, p in enumerate(c.procs):
                stats.rss[i].append((time.monotonic() - start, rss_kib(p.pid)))
            exits = [p.poll() for p in c.procs]
            failed_now = await members_failed(c, stats)
            elapsed = time.monotonic() - start
            load.cancel_scope.cancel()
        out, _ = await trio.to_thread.run_sync(probes.communicate)
        measured = json.loads(out)
        stats.lag.update({int(k): v for k, v in measured["lag"].items()})
        stats.counts.update(measured["counts"])
        stats.non_2xx.update(measured["non_2xx"])
    finally:
        c.stop()
        if probes is not None and probes.poll() is None:
            probes.kill()
            probes.wait(10)
        out, _ = proxies.communicate(input="", timeout=10)
        if out.strip():
            stats.counts.update(json.loads(out.strip().splitlines()[-1]).get("counts", {}))
    return report(c, stats, args, failed_now, elapsed, exits)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load (default 600)")
    parser.add_argument("--loss", type=float, default=0.10)
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--subscribers", type=int, default=500)
    parser.add_argument("--dns-qps", type=int, default=500)
    parser.add_argument("--keep", action="store_true", help="keep the work directory (agent logs)")
    parser.add_argument("--role", choices=("proxy", "probe"), help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        trio.run(run_proxies if args.role == "proxy" else run_probes, json.loads(args.spec))
        return
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    try:
        print(trio.run(soak, args, workdir))
    finally:
        if args.keep:
            print(f"agent logs in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
