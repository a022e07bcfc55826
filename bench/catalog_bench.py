"""How fast a service change reaches every agent of a cluster, and what it costs on the wire.

Starts N `python -m agent` processes (default 30: one server, the rest clients; the `lan` gossip profile),
staggered, gossip on 127.0.S.1..N and HTTP on 127.0.S+1.1..N so that gossip traffic can be counted apart from the
bench's own HTTP.  Once every agent lists N members alive and the catalog has settled, it makes CHANGES service
changes (re-registering `bench` with a new port, on a different agent each time) and, through one blocking query
per agent (a thread each), records when each agent's catalog shows the change.  Reported: time from the PUT to
the last agent (p50/p99 over the changes), the median agent, and gossip bytes per change on loopback
(tcpdump, `src and dst net 127.0.S.0/24`, IP bytes, UDP and TCP) minus the idle rate over the same window.

Every process is started here and stopped here by its PID; loopback only; bounded by --deadline.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
SERF_PORT = 8301
HTTP_PORT = 8500


@dataclass
class Agent:
    name: str
    gossip_ip: str
    http_ip: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://{self.http_ip}:{HTTP_PORT}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


def start_agent(workdir: Path, index: int, subnet: int, profile: str, join: str | None) -> Agent:
    name = f"b{index:02d}"
    gossip_ip, http_ip = f"127.0.{subnet}.{index + 1}", f"127.0.{subnet + 1}.{index + 1}"
    conf = workdir / f"{name}.d"
    conf.mkdir()
    config = {
        "node_name": name, "bind_addr": gossip_ip, "client_addr": http_ip, "data_dir": str(workdir / f"{name}.data"),
        "ports": {"http": HTTP_PORT, "serf_lan": SERF_PORT, "dns": -1}, "gossip_profile": profile,
        "log_level": "warn", **({"server": True, "bootstrap": True} if index == 0 else {}),
        **({"retry_join": [join], "retry_interval": "1s"} if join else {}),
    }  # fmt: skip
    (conf / "agent.json").write_text(json.dumps(config))
    log = workdir / f"{name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "agent", "-config-dir", str(conf)], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=ENV, cwd=REPO,
                                start_new_session=True)  # fmt: skip
    return Agent(name, gossip_ip, http_ip, proc, log)


def wait(probe, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException, ValueError, KeyError):
            if value := probe():
                return value
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}")


class ByteCounter:
    """tcpdump on lo into a pcap file; bytes are summed per window from the packets' timestamps."""

    def __init__(self, subnet: int, path: Path) -> None:
        self.path = path
        self.proc: subprocess.Popen[str] | None = None
        if shutil.which("tcpdump") is None:
            return
        net = f"127.0.{subnet}.0/24"
        self.proc = subprocess.Popen(
            ["tcpdump", "-i", "lo", "-n", "-s", "96", "-U", "-w", str(path), f"src net {net} and dst net {net}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
        time.sleep(1.0)

    def stop(self) -> list[tuple[float, int]]:
        if self.proc is None:
            return []
        os.kill(self.proc.pid, signal.SIGINT)
        self.proc.communicate(timeout=10)
        data = self.path.read_bytes()
        packets, offset = [], 24
        linktype = struct.unpack_from("<I", data, 20)[0] if len(data) >= 24 else 1
        l2 = 14 if linktype == 1 else 0
        while offset + 16 <= len(data):
            sec, usec, incl, orig = struct.unpack_from("<IIII", data, offset)
            packets.append((sec + usec / 1e6, orig - l2))
            offset += 16 + incl
        return packets


def bytes_between(packets: list[tuple[float, int]], start: float, end: float) -> int:
    return sum(size for ts, size in packets if start <= ts < end)


class Watchers:
    """One blocking query per agent on /v1/catalog/service/bench; records when each first shows a port."""

    def __init__(self, agents: list[Agent]) -> None:
        self.seen: dict[tuple[str, int], float] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._watch, args=(a,), daemon=True) for a in agents]
        for t in self.threads:
            t.start()

    def _watch(self, agent: Agent) -> None:
        session = requests.Session()
        index = 0
        while not self.stop.is_set():
            try:
                r = session.get(f"{agent.url}/v1/catalog/service/bench", params={"index": index, "wait": "5s",
                                                                                 "stale": ""}, timeout=10)
            except requests.RequestException:
                time.sleep(0.1)
                continue
            now = time.time()
            index = int(r.headers.get("X-Consul-Index", "0"))
            with self.lock:
                for entry in r.json():
                    self.seen.setdefault((agent.name, entry["ServicePort"]), now)

    def arrivals(self, port: int) -> dict[str, float]:
        with self.lock:
            return {name: t for (name, p), t in self.seen.items() if p == port}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def run(args: argparse.Namespace) -> None:
    subnet = random.randrange(2, 250, 2)
    workdir = Path(tempfile.mkdtemp(prefix="catalog-bench-"))
    agents: list[Agent] = []
    started = time.monotonic()
    try:
        first = start_agent(workdir, 0, subnet, args.profile, None)
        agents.append(first)
        wait(lambda: requests.get(f"{first.url}/v1/agent/self", timeout=1).ok, 30, "the first agent")
        join = f"{first.gossip_ip}:{SERF_PORT}"
        for i in range(1, args.agents):
            agents.append(start_agent(workdir, i, subnet, args.profile, join))
            time.sleep(args.stagger / args.agents)

        def all_alive() -> bool:
            for a in agents:
                members = requests.get(f"{a.url}/v1/agent/members", timeout=2).json()
                if sum(1 for m in members if m["Status"] == 1) != args.agents:
                    return False
            return True

        wait(all_alive, 90, f"{args.agents} agents alive everywhere")
        print(f"{args.agents} agents up and joined in {time.monotonic() - started:.1f}s", flush=True)
        counter = ByteCounter(subnet, workdir / "gossip.pcap")
        watchers = Watchers(agents)
        time.sleep(args.idle)  # idle window: baseline gossip rate
        idle_start, idle_end = time.time() - args.idle, time.time()
        latencies, medians = [], []
        changes_start = time.time()
        for change in range(args.changes):
            port = 20000 + change
            owner = agents[(change * 7 + 1) % len(agents)]
            t0 = time.time()
            r = requests.put(f"{owner.url}/v1/agent/service/register",
                             json={"Name": "bench", "ID": "bench", "Port": port}, timeout=5)  # fmt: skip
            r.raise_for_status()
            arrivals = wait(lambda p=port: (lambda a: a if len(a) == len(agents) else None)(watchers.arrivals(p)),
                            args.change_deadline, f"change {change} everywhere")  # fmt: skip
            delays = [t - t0 for t in arrivals.values()]
            latencies.append(max(delays))
            medians.append(statistics.median(delays))
            requests.put(f"{owner.url}/v1/agent/service/deregister/bench", timeout=5).raise_for_status()
            time.sleep(args.gap)
            if time.monotonic() - started > args.deadline:
                print("deadline reached: stopping early", flush=True)
                break
        changes_end = time.time()
        watchers.stop.set()
        packets = counter.stop()
        n = len(latencies)
        print(f"\nservice change -> every agent ({n} changes, {args.agents} agents, profile {args.profile}):")
        print(f"  last agent   p50 {percentile(latencies, 0.5) * 1000:7.0f} ms   p99 "
              f"{percentile(latencies, 0.99) * 1000:7.0f} ms   max {max(latencies) * 1000:7.0f} ms")  # fmt: skip
        print(f"  median agent p50 {percentile(medians, 0.5) * 1000:7.0f} ms   p99 "
              f"{percentile(medians, 0.99) * 1000:7.0f} ms")  # fmt: skip
        if packets:
            idle_bytes = bytes_between(packets, idle_start, idle_end)
            idle_rate = idle_bytes / (idle_end - idle_start)
            window = changes_end - changes_start
            change_bytes = bytes_between(packets, changes_start, changes_end)
            extra = change_bytes - idle_rate * window
            # Each iteration is a register and a deregister: two catalog changes.
            print(f"  gossip idle: {idle_rate / 1024:.1f} KiB/s for the cluster "
                  f"({idle_rate / args.agents:.0f} B/s per agent)")  # fmt: skip
            print(f"  extra traffic per change: {extra / (2 * n) / 1024:.1f} KiB "
                  f"({extra / (2 * n) / args.agents:.0f} B per agent)")  # fmt: skip
        else:
            print("  (tcpdump not available: no traffic figures)")
    finally:
        for a in agents:
            a.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=30)
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--profile", default="lan", choices=["lan", "local"])
    parser.add_argument("--stagger", type=float, default=3.0, help="seconds over which agents start")
    parser.add_argument("--idle", type=float, default=15.0, help="idle window for the baseline traffic rate")
    parser.add_argument("--gap", type=float, default=1.0, help="pause between changes")
    parser.add_argument("--change-deadline", type=float, default=30.0)
    parser.add_argument("--deadline", type=float, default=300.0, help="overall bound (seconds)")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
