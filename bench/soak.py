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

The clients are in bench/soak_clients.py, the attackers in bench/soak_attacks.py, the proxy in bench/soak_proxy.py.

Reported: RSS per agent over time, the probe's round trip (p50/p99/max) per agent, members seen ``failed`` (any
is false: nobody is killed), agent exits, and the well-formed requests answered non-2xx (a keep-alive connection
the server closed while idle is retried once, as Go's and urllib3's clients do, and counted as a retry).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import dns.message
import dns.rcode
import h11
import trio
from soak_attacks import bad_gossip, hold, parked_with_garbage
from soak_clients import (
    AGENTS,
    CLIENT_NET,
    Http,
    Stats,
    blocking_client,
    count,
    dns_flood,
    dns_tcp_client,
    fresh_http_client,
    run_probes,
    subscriber,
)
from soak_proxy import run_proxies

REPO = Path(__file__).resolve().parent.parent
BIND = "127.0.252.{}"
ADVERTISE = "127.0.253.{}"


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
