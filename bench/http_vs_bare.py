"""The HTTP API's cost per request, triumvir side by side with a bare trio + h11 loop serving the same bytes.

One triumvir server (``bootstrap``, its own Raft of one, compact JSON as in production) with 100 external nodes
registered through ``/v1/catalog/register``, each with a ``web`` instance and a passing check.  Its answers to

* ``GET /v1/catalog/nodes`` (101 nodes: the 100 and the server itself),
* ``GET /v1/health/service/web?passing`` (100 instances),
* ``GET /v1/kv/bench/read`` (one key, the default consistency mode; and ``?consistent``)

are captured (status, headers but Date, body) and served by a bare loop (``--bare``: trio, h11, a dict from
target to bytes, Date computed per answer) in its own process.  Each endpoint is driven by ``wrk`` (keep-alive,
``--connections`` connections, ``--seconds``) against each server in turn, ``--repeat`` pairs of runs (each
ratio is taken within a pair, under the same machine load; the table shows their median and spread), and the server
process's CPU time (utime + stime from /proc, less its idle rate measured just before: gossip and Raft ticks) is
divided by the requests wrk completed: **µs CPU per request** is the load-robust figure (the wall-clock rate is
printed too, but on a busy machine it measures the machine).

Then the blocking-query wake-up: ``--waiters`` connections park on ``/v1/health/service/web?index=I&wait=120s``;
once the server is idle again (every waiter parked), one registration changes ``web``, and the time from the
write to each answer is reported (p50/p99/max; the client shares the machine), with the server's CPU from the
change to the last answer per answer.

    .venv/bin/python bench/http_vs_bare.py [--seconds 5] [--connections 16] [--repeat 3] [--waiters 5000]

Needs ``wrk``.  Every process is started here and stopped here by its PID; loopback only.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import email.utils
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import requests
import trio
from clusters import HOST, REPO, free_port, wait

NODES = 100
ENDPOINTS = {
    "catalog/nodes": "/v1/catalog/nodes",
    "health/service/web?passing": "/v1/health/service/web?passing",
    "kv get (default)": "/v1/kv/bench/read",
    "kv get ?consistent": "/v1/kv/bench/read?consistent",
}


# ------------------------------------------------------------------ the bare loop


async def _serve_bare(port: int, answers: dict[bytes, tuple[int, list[tuple[bytes, bytes]], bytes]]) -> None:
    import h11

    async def connection(stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        async with stream:
            with contextlib.suppress(trio.BrokenResourceError, h11.RemoteProtocolError):
                await serve(stream, conn)

    async def serve(stream: trio.SocketStream, conn: h11.Connection) -> None:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                conn.receive_data(data)
                if not data:
                    return
                continue
            if isinstance(event, h11.Request):
                status, headers, body = answers.get(event.target, (404, [], b""))
                head = [*headers, (b"Date", email.utils.formatdate(usegmt=True).encode()),
                        (b"Content-Length", str(len(body)).encode())]
                out = conn.send(h11.Response(status_code=status, headers=head))
                out += conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
                await stream.send_all(out)
            elif isinstance(event, h11.EndOfMessage):
                conn.start_next_cycle()
            else:
                return

    await trio.serve_tcp(connection, port, host=HOST)


def run_bare(port: int, answers_file: Path) -> None:
    raw = json.loads(answers_file.read_text())
    answers = {target.encode(): (a["status"], [(k.encode(), v.encode()) for k, v in a["headers"]],
                                 base64.b64decode(a["body"])) for target, a in raw.items()}
    trio.run(_serve_bare, port, answers)


# ------------------------------------------------------------------ measuring


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (its threads included), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(base: str, target: str, seconds: int, connections: int) -> tuple[int, float]:
    """(requests completed, requests/s); any non-2xx answer fails the run."""
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", base + target],
                         capture_output=True, text=True, timeout=seconds + 60)
    if out.returncode != 0 or "Non-2xx" in out.stdout:
        raise RuntimeError(f"wrk {target}: {out.stdout}{out.stderr}")
    done = re.search(r"(\d+) requests in", out.stdout)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out.stdout)
    if done is None or rate is None:
        raise RuntimeError(f"wrk {target}: unexpected output:\n{out.stdout}")
    return int(done.group(1)), float(rate.group(1))


def idle_rate(pid: int, seconds: float = 2.0) -> float:
    """The server's CPU seconds per second with no request (gossip, Raft ticks): taken off a run's CPU."""
    before, started = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / (time.monotonic() - started)


def one_run(pid: int, base: str, target: str, args: argparse.Namespace) -> tuple[float, float]:
    """(µs of the server's CPU per request, requests/s) of one wrk run, the run's CPU less the server's idle
    rate over its length (on a busy machine fewer requests fit in a run, and the idle work would otherwise be
    charged to fewer requests)."""
    idle = idle_rate(pid)
    before, started = cpu_seconds(pid), time.monotonic()
    done, rate = wrk(base, target, args.seconds, args.connections)
    busy = cpu_seconds(pid) - before - idle * (time.monotonic() - started)
    return busy / max(1, done) * 1e6, rate


Pair = tuple[float, float, float, float]  # triumvir µs/req, bare µs/req, triumvir req/s, bare req/s


def compare(servers: tuple[tuple[int, str], tuple[int, str]], target: str, args: argparse.Namespace) -> list[Pair]:
    """``--repeat`` pairs of runs, triumvir then the bare loop right after it: each pair's ratio is taken
    under the same machine load (other processes share the cores), and the spread of the ratios is the noise."""
    for _, base in servers:
        wrk(base, target, 1, args.connections)  # warm up
    pairs: list[Pair] = []
    for _ in range(args.repeat):
        (t_cpu, t_rate), (b_cpu, b_rate) = (one_run(pid, base, target, args) for pid, base in servers)
        pairs.append((t_cpu, b_cpu, t_rate, b_rate))
    return pairs


# ------------------------------------------------------------------ the triumvir side


def start_triumvir(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    http, serf, server = free_port(), free_port(), free_port()
    conf = work / "t.d"
    conf.mkdir()
    (conf / "agent.json").write_text(json.dumps({
        "node_name": "t1", "bind_addr": HOST, "client_addr": HOST, "data_dir": str(work / "t1"), "server": True,
        "bootstrap": True, "ports": {"http": http, "serf_lan": serf, "server": server, "dns": -1},
        "gossip_profile": "local", "log_level": "warn", "limits": {"http_max_conns_per_client": 0}}))
    with open(work / "t1.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "agent", "-config-dir", str(conf)], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO,
                                env=dict(os.environ, PYTHONPATH=str(REPO)), start_new_session=True)
    return proc, f"http://{HOST}:{http}"


def register(base: str, i: int, port: int = 80, timeout: float = 10.0) -> None:
    node = f"n{i:03d}"
    body = {"Node": node, "Address": f"10.1.{i // 250}.{i % 250 + 1}",
            "Service": {"ID": "web", "Service": "web", "Port": port, "Tags": ["v1"]},
            "Check": {"CheckID": "web-alive", "Name": "web alive", "Status": "passing", "ServiceID": "web"}}
    r = requests.put(f"{base}/v1/catalog/register", json=body, timeout=timeout)
    if r.status_code != 200:
        raise RuntimeError(f"register {node}: {r.status_code} {r.text}")


def populate(base: str) -> None:
    wait("a leader", lambda: requests.get(f"{base}/v1/status/leader", timeout=1).json())
    for i in range(NODES):
        register(base, i)
    requests.put(f"{base}/v1/kv/bench/read", data=b"a value to read", timeout=10).raise_for_status()
    wait("the catalog", lambda: len(requests.get(f"{base}/v1/catalog/nodes", timeout=5).json()) == NODES + 1)
    wait("the instances", lambda: len(requests.get(f"{base}{ENDPOINTS['health/service/web?passing']}",
                                                   timeout=5).json()) == NODES)


def capture(base: str) -> dict[str, dict[str, object]]:
    """Each endpoint's answer as the bare loop will replay it (Date and Content-Length are per answer)."""
    answers: dict[str, dict[str, object]] = {}
    for target in ENDPOINTS.values():
        r = requests.get(base + target, headers={"Accept-Encoding": "identity"}, timeout=5)
        r.raise_for_status()
        headers = [(k, v) for k, v in r.raw.headers.items() if k.lower() not in ("date", "content-length")]
        answers[target] = {"status": r.status_code, "headers": headers,
                           "body": base64.b64encode(r.content).decode()}
    return answers


# ------------------------------------------------------------------ blocking-query wake-up


async def _waiters(base: str, target: str, count: int, change: Callable[[], None], pid: int) -> list[float]:
    host, port = base.removeprefix("http://").rsplit(":", 1)
    parked = trio.Semaphore(0)
    fired: list[float] = []
    request = f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()

    async def waiter() -> None:
        stream = await trio.open_tcp_stream(host, int(port))
        async with stream:
            await stream.send_all(request)
            parked.release()
            data = b""
            while chunk := await stream.receive_some(65536):
                data += chunk
            if data.startswith(b"HTTP/1.1 200"):
                fired.append(time.perf_counter())

    with trio.fail_after(300):
        async with trio.open_nursery() as nursery:
            for _ in range(count):
                nursery.start_soon(waiter)
            for _ in range(count):
                await parked.acquire()
            # A parked blocking query says nothing: the server has parked them all once it is idle again.
            await trio.to_thread.run_sync(settled, pid)
            cpu_before = cpu_seconds(pid)
            start = time.perf_counter()
            await trio.to_thread.run_sync(change)
    cpu_per_waiter.append((cpu_seconds(pid) - cpu_before) / max(1, len(fired)))
    return [t - start for t in fired]


cpu_per_waiter: list[float] = []  # the server's CPU from the change to the last answer, per answer


def settled(pid: int, window: float = 0.5, busy: float = 0.2, timeout: float = 120.0) -> None:
    """Return once ``pid`` used less than ``busy`` of a CPU over ``window`` (it has taken every request in)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if idle_rate(pid, window) < busy:
            return
    raise TimeoutError(f"the server stayed busy for {timeout:g} s")


def wakeups(base: str, count: int, pid: int) -> list[float]:
    target = "/v1/health/service/web"
    index = int(requests.get(base + target, timeout=5).headers["X-Consul-Index"])
    return trio.run(_waiters, base, f"{target}?index={index}&wait=120s", count,
                    lambda: register(base, 0, 81, timeout=120), pid)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--waiters", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3, help="pairs of wrk runs per endpoint (triumvir, then bare)")
    parser.add_argument("--bare", nargs=2, metavar=("PORT", "ANSWERS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        run_bare(int(args.bare[0]), Path(args.bare[1]))
        return 0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 2 * args.waiters + 1024)), hard))
    rows: list[tuple[str, list[Pair]]] = []
    with tempfile.TemporaryDirectory(prefix="http-vs-bare-") as tmp:
        work = Path(tmp)
        agent, base = start_triumvir(work)
        bare: subprocess.Popen[bytes] | None = None
        try:
            populate(base)
            (work / "answers.json").write_text(json.dumps(capture(base)))
            bare_port = free_port()
            bare = subprocess.Popen([sys.executable, __file__, "--bare", str(bare_port), str(work / "answers.json")],
                                    cwd=REPO, start_new_session=True)
            bare_base = f"http://{HOST}:{bare_port}"
            wait("the bare loop", lambda: requests.get(bare_base + "/v1/catalog/nodes", timeout=1).ok)
            load = os.getloadavg()[0]
            for name, target in ENDPOINTS.items():
                rows.append((name, compare(((agent.pid, base), (bare.pid, bare_base)), target, args)))
            print_table(rows, args, (load, os.getloadavg()[0]))
            if args.waiters:
                wake = wakeups(base, args.waiters, agent.pid)
                print(f"\nBlocking-query wake-up, {len(wake)} of {args.waiters} waiters on "
                      f"/v1/health/service/web?index=I answered: p50 {statistics.median(wake) * 1000:.0f} ms, "
                      f"p99 {percentile(wake, 99) * 1000:.0f} ms, max {max(wake) * 1000:.0f} ms; the server's CPU "
                      f"per answer {cpu_per_waiter[-1] * 1e6:.0f} µs" if wake else
                      f"\nBlocking-query wake-up: none of {args.waiters} waiters answered")
        finally:
            for proc in (agent, bare):
                if proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
    return 0


def print_table(rows: list[tuple[str, list[Pair]]], args: argparse.Namespace, load: tuple[float, float]) -> None:
    print(f"\nOne triumvir server, {NODES} registered nodes with a `web` instance each; wrk -c{args.connections}, "
          f"{args.seconds} s per run, keep-alive; {args.repeat} pairs of runs (triumvir, then the bare loop); CPU = "
          f"the server process's utime+stime less its idle rate, / requests; load average {load[0]:.1f} at the "
          f"start, {load[1]:.1f} at the end (2 cores)\n")
    print("| endpoint | triumvir µs CPU/req | bare µs CPU/req | bare/triumvir (CPU), median [min-max] of the pairs "
          "| triumvir req/s | bare req/s |")
    print("|---|---|---|---|---|---|")
    for name, pairs in rows:
        t_cpu, b_cpu, t_rate, b_rate = (statistics.median(p[i] for p in pairs) for i in range(4))
        ratios = sorted(p[1] / p[0] for p in pairs)
        print(f"| {name} | {t_cpu:.0f} | {b_cpu:.0f} | {statistics.median(ratios):.2f}x [{ratios[0]:.2f}-"
              f"{ratios[-1]:.2f}] | {t_rate:.0f} | {b_rate:.0f} |")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
