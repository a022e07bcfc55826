"""KV write and read paths, triumvir's servers side by side with etcd 3.4 (Debian's etcd-server).

Three members of each on loopback, each fsyncing its log before acknowledging (both systems' defaults), equal
Raft timing (raft_multiplier 1; etcd --heartbeat-interval 100 --election-timeout 1000).  Requests go to the
leader over HTTP: triumvir's ``/v1/kv``, etcd's v3 JSON gateway (``/v3/kv/put``, ``/v3/kv/range``, ``/v3/watch``).

* PUT latency, sequential, one keep-alive connection: p50 and p99 of ``--puts`` writes;
* PUT throughput, 16 connections (``wrk -c16``) for ``--seconds``, 1,000 keys in turn;
* GET throughput, 16 connections, "leader-local" (triumvir's default mode, answered from the leader's state;
  etcd's serializable range on the leader) and "linearizable" (triumvir's ``?consistent``, etcd's default range:
  each a ReadIndex round);
* watch wake-up: 1,000 watchers of one key (triumvir blocking queries, etcd watch streams), then one PUT: the
  time from sending the PUT to each watcher's answer, p50/p99/max.

With ``--writes-only`` only the PUTs run, plus sequential PUTs sent to a follower (which forwards them to the
leader), and a second table counts what each PUT cost, figures the machine's load does not bend: fsyncs per PUT
on the leader and on a follower (triumvir's ``triumvir.raft.*`` gauges, etcd's WAL fsync count), entries per
append, Raft messages and forwarded RPC connections per PUT, CPU ms per PUT (/proc, every member).
``--agent-repo DIR`` runs triumvir from another checkout (``git archive main | tar -x -C DIR``), for an A/B of
two versions with the same bench.

    .venv/bin/python bench/kv_vs_etcd.py [--puts 500] [--seconds 10] [--watchers 1000] [--writes-only]

Needs ``wrk`` and ``etcd`` (make bench-deps).  Every process is started here and stopped by its PID.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import requests
import trio
from clusters import HOST, REPO, Member, agreed, etcd_members, triumvir_members, wait

CONNECTIONS = 16
KEYS = 1000


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# ------------------------------------------------------------------ the two systems' requests


class Target:
    """How to write, read and watch one key on one system's leader."""

    name: str
    base: str

    def put(self, session: requests.Session, key: str, value: str) -> None:
        raise NotImplementedError

    def wrk_put(self) -> str:
        """The body of wrk's lua ``request`` function for a PUT of key n % KEYS."""
        raise NotImplementedError

    def wrk_get(self, mode: str) -> str:
        raise NotImplementedError

    def watch_request(self, key: str, index: int) -> bytes:
        raise NotImplementedError

    def watch_ready(self, data: bytes) -> bool:
        """The watcher is registered (etcd says created; a Consul blocking query says nothing)."""
        return True

    def watch_fired(self, data: bytes) -> bool:
        raise NotImplementedError


class Triumvir(Target):
    def __init__(self, http: str) -> None:
        self.name, self.base = "triumvir", f"http://{http}"

    def put(self, session: requests.Session, key: str, value: str) -> None:
        r = session.put(f"{self.base}/v1/kv/{key}", data=value.encode(), timeout=10)
        if r.status_code != 200 or r.json() is not True:
            raise RuntimeError(f"PUT {key}: {r.status_code} {r.text[:80]}")

    def index(self, key: str) -> int:
        return int(requests.get(f"{self.base}/v1/kv/{key}", timeout=5).headers["X-Consul-Index"])

    def wrk_put(self) -> str:
        return f'n = n + 1\n  return wrk.format("PUT", "/v1/kv/bench/" .. (n % {KEYS}), nil, "value-" .. n)'

    def wrk_get(self, mode: str) -> str:
        query = "?consistent" if mode == "linearizable" else ""  # local: the default mode
        return f'return wrk.format("GET", "/v1/kv/bench/read{query}")'

    def watch_request(self, key: str, index: int) -> bytes:
        return (f"GET /v1/kv/{key}?index={index}&wait=60s HTTP/1.1\r\nHost: {HOST}\r\n"
                "Connection: close\r\n\r\n").encode()

    def watch_fired(self, data: bytes) -> bool:
        return data.startswith(b"HTTP/1.1 200") and data.rstrip().endswith(b"]")


class Etcd(Target):
    def __init__(self, http: str) -> None:
        self.name, self.base = "etcd", f"http://{http}"

    def put(self, session: requests.Session, key: str, value: str) -> None:
        r = session.post(f"{self.base}/v3/kv/put", data=json.dumps({"key": b64(key), "value": b64(value)}),
                         timeout=10)
        if r.status_code != 200:
            raise RuntimeError(f"put {key}: {r.status_code} {r.text[:80]}")

    def wrk_put(self) -> str:
        bodies = ", ".join(json.dumps(json.dumps({"key": b64(f"bench/{i}"), "value": b64("value")}))
                           for i in range(KEYS))
        return f'bodies = bodies or {{{bodies}}}\n  n = n + 1\n  return wrk.format("POST", "/v3/kv/put", ' \
                    f'nil, bodies[(n % {KEYS}) + 1])'

    def wrk_get(self, mode: str) -> str:
        body = {"key": b64("bench/read"), **({"serializable": True} if mode == "local" else {})}
        return f'return wrk.format("POST", "/v3/kv/range", nil, {json.dumps(json.dumps(body))})'

    def watch_request(self, key: str, index: int) -> bytes:
        body = json.dumps({"create_request": {"key": b64(key)}}).encode()
        return (f"POST /v3/watch HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    def watch_ready(self, data: bytes) -> bool:
        return b'"created":true' in data

    def watch_fired(self, data: bytes) -> bool:
        return b'"events"' in data


# ------------------------------------------------------------------ measurements


def sequential_puts(target: Target, count: int) -> list[float]:
    session = requests.Session()
    target.put(session, "bench/warm", "x")
    times = []
    for i in range(count):
        start = time.perf_counter()
        target.put(session, f"bench/seq{i % KEYS}", f"v{i}")
        times.append(time.perf_counter() - start)
    return times


def wrk(target: Target, request_body: str, seconds: int, work: Path, name: str) -> float:
    """Requests per second over ``seconds`` with CONNECTIONS connections; non-2xx answers fail the run."""
    return wrk_run(target, request_body, seconds, work, name)[0]


def wrk_run(target: Target, request_body: str, seconds: int, work: Path, name: str) -> tuple[float, int]:
    """(requests per second, requests made)."""
    script = work / f"{name}.lua"
    script.write_text(f"n = 0\nbodies = nil\nrequest = function()\n  {request_body}\nend\n")
    out = subprocess.run(["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", "-s", str(script), target.base],
                         capture_output=True, text=True, timeout=seconds + 60)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed: {out.stderr}")
    if "Non-2xx" in out.stdout:
        raise RuntimeError(f"{target.name} {name}: non-2xx answers:\n{out.stdout}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out.stdout)
    made = re.search(r"(\d+) requests in", out.stdout)
    if match is None or made is None:
        raise RuntimeError(f"no Requests/sec in wrk's output:\n{out.stdout}")
    return float(match.group(1)), int(made.group(1))


async def _watchers(target: Target, key: str, index: int, count: int) -> list[float]:
    host, port = target.base.removeprefix("http://").rsplit(":", 1)
    ready = trio.Semaphore(0)
    fired_at: list[float] = []

    async def watcher() -> None:
        stream = await trio.open_tcp_stream(host, int(port))
        async with stream:
            await stream.send_all(target.watch_request(key, index))
            data = b""
            signalled = False
            while True:
                if not signalled and target.watch_ready(data):
                    signalled = True
                    ready.release()
                if signalled and target.watch_fired(data):
                    fired_at.append(time.perf_counter())
                    return
                chunk = await stream.receive_some(65536)
                if not chunk:
                    if signalled and target.watch_fired(data):
                        fired_at.append(time.perf_counter())
                    return
                data += chunk

    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            for _ in range(count):
                nursery.start_soon(watcher)
            for _ in range(count):
                await ready.acquire()
            await trio.sleep(1.0)  # a Consul blocking query says nothing when it parks: give them time to
            start = time.perf_counter()
            await trio.to_thread.run_sync(lambda: target.put(requests.Session(), key, f"fired-{time.time()}"))
    return [t - start for t in fired_at]


def watch_wakeups(target: Target, count: int) -> list[float]:
    key = "bench/watch"
    target.put(requests.Session(), key, "start")
    index = target.index(key) if isinstance(target, Triumvir) else 0
    return trio.run(_watchers, target, key, index, count)


def measure(target: Target, args: argparse.Namespace, work: Path) -> dict[str, str]:
    target.put(requests.Session(), "bench/read", "a value to read")
    seq = sequential_puts(target, args.puts)
    row = {"PUT p50 ms": f"{statistics.median(seq) * 1000:.2f}", "PUT p99 ms": f"{percentile(seq, 99) * 1000:.2f}"}
    row["PUT/s (16 conns)"] = f"{wrk(target, target.wrk_put(), args.seconds, work, f'{target.name}-put'):.0f}"
    for mode, column in (("local", "GET/s leader-local"), ("linearizable", "GET/s linearizable")):
        rate = wrk(target, target.wrk_get(mode), args.seconds, work, f"{target.name}-get-{mode}")
        row[column] = f"{rate:.0f}"
    wake = watch_wakeups(target, args.watchers)
    row[f"wake p50/p99/max ms ({len(wake)} of {args.watchers})"] = (
        f"{statistics.median(wake) * 1000:.0f} / {percentile(wake, 99) * 1000:.0f} / {max(wake) * 1000:.0f}")
    return row


# ------------------------------------------------------------------ what each write cost


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def member_counts(name: str, member: Member) -> dict[str, float]:
    """The running counts a member exposes: triumvir's triumvir.* gauges, etcd's WAL fsyncs; plus its CPU."""
    assert member.proc is not None
    out = {"cpu": cpu_seconds(member.proc.pid)}
    base = f"http://{member.http}"  # type: ignore[attr-defined]
    if name == "triumvir":
        gauges = requests.get(f"{base}/v1/agent/metrics", timeout=5).json().get("Gauges", [])
        out.update({g["Name"]: float(g["Value"]) for g in gauges if g["Name"].startswith("triumvir.")})
    else:
        text = requests.get(f"{base}/metrics", timeout=5).text
        found = re.search(r"^etcd_disk_wal_fsync_duration_seconds_count (\d+)", text, re.M)
        out["fsyncs"] = float(found.group(1)) if found else float("nan")
    return out


def counted(name: str, members: list[Member], leader: str, phase: Callable[[], int]) -> dict[str, str]:
    """Run ``phase`` (it returns how many PUTs it made) and divide what the members counted meanwhile by it."""
    before = {m.name: member_counts(name, m) for m in members}
    writes = phase()
    after = {m.name: member_counts(name, m) for m in members}
    delta = {m: {k: after[m][k] - before[m].get(k, 0.0) for k in after[m]} for m in after}
    lead = next(m.name for m in members if m.http == leader)  # type: ignore[attr-defined]
    followers = [m for m in delta if m != lead]
    fsync_key = "triumvir.raft.fsyncs" if name == "triumvir" else "fsyncs"

    def per_write(member: str, key: str) -> str:
        value = delta[member].get(key)
        return "n/a" if value is None else f"{value / writes:.2f}"

    row = {"PUTs": str(writes), "leader fsyncs/PUT": per_write(lead, fsync_key),
           "follower fsyncs/PUT": per_write(followers[0], fsync_key),
           "CPU ms/PUT (all members)": f"{sum(d['cpu'] for d in delta.values()) / writes * 1000:.2f}",
           "CPU ms/PUT (leader)": f"{delta[lead]['cpu'] / writes * 1000:.2f}"}
    if name == "triumvir":
        fsyncs = delta[lead].get(fsync_key)
        entries = delta[lead].get("triumvir.raft.entries_persisted")
        row["leader entries/fsync"] = "n/a" if not fsyncs or entries is None else f"{entries / fsyncs:.2f}"
        messages = [delta[m].get("triumvir.raft.messages") for m in delta]
        row["raft msgs/PUT"] = ("n/a" if None in messages else f"{sum(messages) / writes:.2f}")  # type: ignore[arg-type]
        row["forward conns opened/PUT"] = "n/a"
        opened = [delta[m].get("triumvir.rpc_pool.opened") for m in followers]
        if None not in opened:
            row["forward conns opened/PUT"] = f"{sum(opened) / writes:.3f}"  # type: ignore[arg-type]
    return row


def measure_writes(name: str, target: Target, members: list[Member], args: argparse.Namespace,
                   work: Path) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """PUT latency (to the leader, and through a follower) and throughput; and what each PUT cost."""
    leader = target.base.removeprefix("http://")
    follower = next(m for m in members if m.http != leader)  # type: ignore[attr-defined]
    via = Triumvir(follower.http) if name == "triumvir" else Etcd(follower.http)  # type: ignore[attr-defined]
    row: dict[str, str] = {}
    counts: dict[str, dict[str, str]] = {}
    seq: list[float] = []

    def sequential(t: Target, out: list[float]) -> Callable[[], int]:
        def run() -> int:
            out.extend(sequential_puts(t, args.puts))
            return args.puts + 1
        return run

    counts["sequential PUTs to the leader"] = counted(name, members, leader, sequential(target, seq))
    row["PUT p50 ms"] = f"{statistics.median(seq) * 1000:.2f}"
    row["PUT p99 ms"] = f"{percentile(seq, 99) * 1000:.2f}"
    rate: list[float] = []

    def concurrent() -> int:
        per_s, made = wrk_run(target, target.wrk_put(), args.seconds, work, f"{name}-put")
        rate.append(per_s)
        return made

    counts[f"PUTs from {CONNECTIONS} connections"] = counted(name, members, leader, concurrent)
    row[f"PUT/s ({CONNECTIONS} conns)"] = f"{rate[0]:.0f}"
    fwd: list[float] = []
    counts["sequential PUTs via a follower"] = counted(name, members, leader, sequential(via, fwd))
    row["PUT via follower p50 ms"] = f"{statistics.median(fwd) * 1000:.2f}"
    row["PUT via follower p99 ms"] = f"{percentile(fwd, 99) * 1000:.2f}"
    return row, counts


def leader_http(members: list[Member]) -> str:
    leader = wait("every member to report one leader", lambda: agreed(members))
    for m in members:
        if getattr(m, "ident", None) == leader:
            return str(m.http)  # type: ignore[attr-defined]
        status = getattr(m, "status", None)
        if status is not None and str(status()["header"]["member_id"]) == leader:
            return str(m.http)  # type: ignore[attr-defined]
    raise RuntimeError(f"no member is the leader {leader}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--puts", type=int, default=500)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--watchers", type=int, default=1000)
    parser.add_argument("--only", choices=("triumvir", "etcd"), help="measure one system only")
    parser.add_argument("--writes-only", action="store_true", help="PUTs only, with what each one cost")
    parser.add_argument("--agent-repo", type=Path, default=REPO, help="run triumvir from this source tree")
    args = parser.parse_args()
    etcd = shutil.which("etcd")
    if etcd is None or shutil.which("wrk") is None:
        print("etcd or wrk not found: apt-get install etcd-server wrk (make bench-deps)", file=sys.stderr)
        return 1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))  # 1,000 watchers each side
    rows: dict[str, dict[str, str]] = {}
    costs: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory(prefix="kv-vs-etcd-") as tmp:
        work = Path(tmp)
        for name, make in (("triumvir", lambda: triumvir_members(work, {"limits": {"http_max_conns_per_client": 0}},
                                                                 args.agent_repo.resolve())),
                           ("etcd", lambda: etcd_members(work, etcd))):
            if args.only and args.only != name:
                continue
            members = make()
            try:
                for m in members:
                    m.start()
                http = leader_http(members)
                target: Target = Triumvir(http) if name == "triumvir" else Etcd(http)
                if args.writes_only:
                    rows[name], phases = measure_writes(name, target, members, args, work)
                    costs.update({f"{name}: {phase}": row for phase, row in phases.items()})
                else:
                    rows[name] = measure(target, args, work)
            finally:
                for m in members:
                    m.kill()
    print(f"\nKV on 3 members on loopback, requests to the leader over HTTP; {args.puts} sequential PUTs, "
          f"{args.seconds} s wrk runs with {CONNECTIONS} connections, {args.watchers} watchers of one key\n")
    print_table("system", rows)
    if costs:
        print("\nWhat each PUT cost (counted by the members; CPU from /proc)\n")
        print_table("system: phase", costs)
    return 0


def print_table(first: str, rows: dict[str, dict[str, str]]) -> None:
    columns = list(dict.fromkeys(c for row in rows.values() for c in row))
    print(f"| {first} | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(row.get(c, "") for c in columns) + " |")


if __name__ == "__main__":
    sys.exit(main())
