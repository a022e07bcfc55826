"""Fan-out latency of ``/v1/stream/members``: how long from a member event's creation to its delivery at the last
of N websocket subscribers.

    .venv/bin/python bench/stream_bench.py                 # 1,000, 5,000 and 10,000 subscribers
    .venv/bin/python bench/stream_bench.py --subscribers 200 --events 20
    .venv/bin/python bench/stream_bench.py --repeat 3                      # median and range per count

Three kinds of process on loopback, so the subscribers' own work does not run on the server's trio loop:

- ``serve``: the real HTTP server (agent.http.serve_http) on the real MemberTable; on ``emit K SECONDS`` it applies
  K member-joins that far apart and prints each event's index and creation time (``time.time()`` just before
  ``MemberTable.apply``);
- ``subscribe``: opens its share of subscribers (``WAVE`` handshakes in flight at a time, a refused or reset
  connection tried again), says READY once each has its snapshot, then records when each event arrives at each
  subscriber (``time.time()`` after the ``recv``) in one epoll loop: no task per subscriber and no websocket
  library, so that the clients' own work stays small next to the server's;
- the driver: starts them, waits for every subscriber, asks for the events and prints, per event, the latency to
  the last subscriber (p50/p99 over the events) and, for all deliveries, p50/p99.

All processes share the machine's CPUs (``os.cpu_count()`` is printed): on a small machine the subscribers' own
parsing competes with the server, so these figures are an upper bound on the server's fan-out time.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import json
import os
import select
import socket
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


# ---------------------------------------------------------------------- serve


def serve(max_connections: int) -> None:
    import attrs
    import trio

    from agent.config import AgentConfig
    from agent.http import stream
    from agent.http.options import HttpOptions
    from agent.http.server import serve_http
    from agent.members import Member, MemberTable

    @attrs.define
    class BenchAgent:
        """The two things the stream reads of an agent: its config and its member table."""

        config: AgentConfig = attrs.Factory(lambda: AgentConfig(node_name="bench", server=True, ui=True))
        node_id: str = "00000000-0000-0000-0000-000000000001"
        table: MemberTable = attrs.Factory(MemberTable)
        started: float = attrs.Factory(time.time)

    def member(name: str, n: int) -> Member:
        tags = {"role": "node", "dc": "dc1", "id": f"id-{name}", "vsn": "2", "build": "1.20.1:bench", "segment": ""}
        return Member(name=name, addr=f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}", port=8301, tags=tags)

    async def main() -> None:
        api = BenchAgent()
        api.table.apply("member-join", member("bench", 0))
        # Pings still go out every 15 s (their cost is part of the figures), but a pong may take up to 2 minutes
        # and a write 1: on a loaded machine the lean clients, busy with thousands of handshakes, answer late, and
        # the server's own tasks wait their turn behind those handshakes; dropping them would measure the
        # keep-alive and the send timeout rather than the fan-out.
        options = HttpOptions(
            max_connections=max_connections,
            max_connections_per_client=max_connections,
            stream_ping_timeout=120.0,
            stream_send_timeout=60.0,
        )
        async with trio.open_nursery() as nursery:
            _, port = await nursery.start(functools.partial(serve_http, api, "127.0.0.1", 0, options=options))
            print(f"PORT {port}", flush=True)
            serial = 0
            while True:
                line = (await trio.to_thread.run_sync(sys.stdin.readline)).split()
                if not line or line[0] == "quit":
                    nursery.cancel_scope.cancel()
                    return
                if line[0] == "usage":
                    print(f"USAGE {_rss_bytes()} {time.process_time()!r}", flush=True)
                    continue
                count, gap, subscribers = int(line[1]), float(line[2]), int(line[3])
                for _ in range(count):
                    serial += 1
                    before = stream.statistics(api.table)
                    cpu = time.process_time()
                    created = time.time()
                    snapshot = api.table.apply("member-join", member(f"node-{serial}", serial))
                    # The pump's pass is one synchronous loop: once fanned_out moves, it is over. Its CPU time
                    # (with whatever else ran in that scheduling batch) does not depend on the machine's load.
                    for _ in range(1000):
                        await trio.sleep(0)
                        if stream.statistics(api.table).fanned_out != before.fanned_out:
                            break
                    pass_cpu = time.process_time() - cpu
                    # Server side: until every subscriber's write returned (handed to its socket).
                    while stream.statistics(api.table).messages < before.messages + subscribers:
                        await trio.sleep(0.01)
                    written = time.time()
                    print(f"EMIT {snapshot.index} {created!r} {written!r} {pass_cpu!r}", flush=True)
                    await trio.sleep(gap)
                print("DONE", flush=True)

    trio.run(main)


def _rss_bytes() -> int:
    """This process's resident memory now (Linux: /proc/self/statm, in pages)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# ---------------------------------------------------------------------- subscribe

WAVE = 50  # handshakes a subscriber process has in flight at once (the connect ramp)
ATTEMPTS = 5  # connects per subscriber before the process gives up (a refused or reset connection is retried)


class _Sub:
    """One subscriber's socket and its unparsed bytes; ``seen`` counts text messages (the snapshot is the first)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.seen = 0


def _frames(sub: _Sub) -> list[tuple[int, bytes]]:
    """The complete server frames (opcode, payload; servers do not mask) at the front of ``sub.buf``."""
    out = []
    buf = sub.buf
    while len(buf) >= 2:
        opcode, length, at = buf[0] & 0x0F, buf[1] & 0x7F, 2
        if length == 126:
            if len(buf) < 4:
                break
            length, at = struct.unpack("!H", buf[2:4])[0], 4
        elif length == 127:
            if len(buf) < 10:
                break
            length, at = struct.unpack("!Q", buf[2:10])[0], 10
        if len(buf) < at + length:
            break
        out.append((opcode, buf[at : at + length]))
        buf = buf[at + length :]
    sub.buf = buf
    return out


def _pong(sub: _Sub, payload: bytes) -> None:
    mask = os.urandom(4)
    sub.sock.sendall(bytes([0x8A, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))


def _start(host: str, port: int) -> _Sub:
    """Connect and send the upgrade request (the answer is read by `_finish`, so a wave's handshakes overlap)."""
    sock = socket.create_connection((host, port), timeout=120)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(f"GET /v1/stream/members HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: Upgrade\r\n"
                 f"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n".encode())
    return _Sub(sock)


def _receive(sub: _Sub) -> None:
    data = sub.sock.recv(65536)
    if not data:
        raise ConnectionError("the server closed the connection during the handshake")
    sub.buf += data


def _finish(sub: _Sub) -> _Sub:
    """Read the 101 and then the snapshot (ConnectionError or OSError: try again)."""
    while b"\r\n\r\n" not in sub.buf:
        _receive(sub)
    head, _, sub.buf = sub.buf.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"handshake refused: {head[:80]!r}")
    while sub.seen == 0:
        for opcode, payload in _frames(sub):
            sub.seen += opcode == 0x1
            if opcode == 0x9:
                _pong(sub, payload)
        if sub.seen == 0:
            _receive(sub)
    return sub


def _connect(host: str, port: int, count: int) -> tuple[list[_Sub], int]:
    """``count`` subscribers, ``WAVE`` handshakes in flight at a time, each until its snapshot; a connection
    refused, reset or closed is tried again (``ATTEMPTS`` in all, backing off): (subscribers, retries)."""
    subs: list[_Sub] = []
    retries = 0

    def one(started: _Sub | None) -> _Sub:
        nonlocal retries
        for attempt in range(ATTEMPTS):
            try:
                return _finish(started or _start(host, port))
            except OSError:  # ConnectionError included
                if started is not None:
                    started.sock.close()
                started = None
                if attempt == ATTEMPTS - 1:
                    raise
                retries += 1
                time.sleep(0.1 * 2**attempt)
        raise AssertionError("not reached")

    while len(subs) < count:
        wave: list[_Sub | None] = []
        for _ in range(min(WAVE, count - len(subs))):
            try:
                wave.append(_start(host, port))
            except OSError:
                wave.append(None)  # connected (with retries) by one()
        subs.extend(one(started) for started in wave)
    return subs, retries


def subscribe(host: str, port: int, count: int, events: int) -> None:
    """A lean client: one epoll loop for this process's subscribers (no task per subscriber, no websocket
    library), so that thousands of them on a small machine measure the server rather than the clients.  The
    tests use trio-websocket clients.  Prints READY with the retries, then the arrival times as JSON."""
    subs, retries = _connect(host, port, count)
    by_fd = {sub.sock.fileno(): sub for sub in subs}
    poller = select.epoll()
    for fd, sub in by_fd.items():
        sub.sock.setblocking(False)
        poller.register(fd, select.EPOLLIN)
    print(f"READY {retries}", flush=True)
    arrivals: dict[int, list[float]] = {}
    waiting = len(subs)
    while waiting:
        for fd, _ in poller.poll(1.0):
            sub = by_fd[fd]
            try:
                data = sub.sock.recv(65536)
            except BlockingIOError:
                continue
            arrived = time.time()
            if not data:
                raise RuntimeError("the server closed a stream")
            sub.buf += data
            for opcode, payload in _frames(sub):
                if opcode == 0x9:  # ping: answer with a masked pong
                    sub.sock.setblocking(True)
                    _pong(sub, payload)
                    sub.sock.setblocking(False)
                elif opcode == 0x1 and sub.seen <= events:
                    sub.seen += 1  # {"Type":"member-join","Index":N,...}: the index without a JSON parse
                    start = payload.index(b'"Index":') + 8
                    arrivals.setdefault(int(payload[start : payload.index(b",", start)]), []).append(arrived)
                    waiting -= sub.seen == events + 1
    print(json.dumps({str(k): v for k, v in arrivals.items()}), flush=True)


# ---------------------------------------------------------------------- driver


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


class _Server:
    """The ``serve`` process, driven over its stdin and stdout."""

    def __init__(self, subscribers: int, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "serve", "--max", str(subscribers + 100)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.port = int(self.line()[1])

    def say(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def line(self) -> list[str]:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().split()

    def usage(self) -> tuple[int, float]:
        """The server's RSS (bytes) and CPU time (s) now."""
        self.say("usage")
        _, rss, cpu = self.line()
        return int(rss), float(cpu)

    def emit(self, events: int, gap: float, subscribers: int) -> tuple[dict[int, float], list[float], list[float]]:
        """Each event's creation time by index, and per event the ms to the server's last write and the pass CPU."""
        self.say(f"emit {events} {gap} {subscribers}")
        created: dict[int, float] = {}
        written: list[float] = []
        pass_cpu: list[float] = []
        while (line := self.line()) and line[0] != "DONE":
            created[int(line[1])] = float(line[2])
            written.append((float(line[3]) - float(line[2])) * 1000)
            pass_cpu.append(float(line[4]) * 1000)
        return created, written, pass_cpu


def _start_subscribers(port: int, subscribers: int, events: int, per_process: int,
                       env: dict[str, str]) -> tuple[list[subprocess.Popen[str]], int]:
    """Start the subscriber processes and wait until every subscriber has its snapshot: (processes, retries)."""
    shares = [per_process] * (subscribers // per_process) + [subscribers % per_process] * bool(
        subscribers % per_process)
    clients = [subprocess.Popen([sys.executable, __file__, "subscribe", "127.0.0.1", str(port), str(share),
                                 str(events)], stdout=subprocess.PIPE, text=True, env=env) for share in shares]
    retries = 0
    for client in clients:
        assert client.stdout is not None
        line = client.stdout.readline().split()
        if not line or line[0] != "READY":
            raise RuntimeError(f"a subscriber process failed: {line!r}")
        retries += int(line[1])
    return clients, retries


def run(subscribers: int, events: int, gap: float, per_process: int) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    server = _Server(subscribers, env)
    clients: list[subprocess.Popen[str]] = []
    try:
        rss_before, _ = server.usage()
        started = time.monotonic()
        clients, retries = _start_subscribers(server.port, subscribers, events, per_process, env)
        connected = time.monotonic() - started
        time.sleep(1.0)  # let the last handshakes' garbage settle before the idle figure
        rss_idle, cpu_before = server.usage()
        created, written, pass_cpu = server.emit(events, gap, subscribers)
        _, cpu_after = server.usage()
        arrivals: dict[int, list[float]] = {index: [] for index in created}
        for client in clients:
            assert client.stdout is not None
            for index, times in json.loads(client.stdout.read()).items():
                arrivals[int(index)].extend(times)
            client.wait(60)
        server.say("quit")
        with contextlib.suppress(subprocess.TimeoutExpired):  # closing thousands of streams can take a while:
            server.proc.wait(30)  # then it is killed below
    finally:
        for proc in (*clients, server.proc):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    last = [(max(arrivals[i]) - created[i]) * 1000 for i in created if arrivals[i]]
    every = [(t - created[i]) * 1000 for i in created for t in arrivals[i]]
    return {
        "subscribers": subscribers,
        "events": len(created),
        "missing": sum(subscribers - len(times) for times in arrivals.values()),
        "retries": retries,
        "connect_s": connected,
        "server_p50": _pct(written, 50),
        "server_p99": _pct(written, 99),
        "last_p50": _pct(last, 50),
        "last_p99": _pct(last, 99),
        "last_max": max(last),
        "all_p50": statistics.median(every),
        "all_p99": _pct(every, 99),
        "kib_per_idle": (rss_idle - rss_before) / subscribers / 1024,
        "cpu_ms_per_event": (cpu_after - cpu_before) / max(1, len(created)) * 1000,
        "pass_cpu_p50": _pct(pass_cpu, 50),
        "pass_cpu_p99": _pct(pass_cpu, 99),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", nargs="?", default="bench", choices=("bench", "serve", "subscribe"))
    parser.add_argument("args", nargs="*")
    parser.add_argument("--max", type=int, default=11000, help="serve: connection cap")
    parser.add_argument("--subscribers", type=int, nargs="*", default=[1000, 5000, 10000])
    parser.add_argument("--events", type=int, default=40)
    parser.add_argument("--gap", type=float, default=None,
                        help="seconds between events; default 0.5 + 0.2 ms per subscriber, so that each event's "
                        "fan-out is measured alone rather than queued behind the previous one")
    parser.add_argument("--per-process", type=int, default=500, help="subscribers per subscriber process")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs per subscriber count (each a fresh server); with more than one, a summary line "
                        "per count gives the median and [min-max] of the runs")
    opts = parser.parse_args(argv)
    if opts.mode == "serve":
        serve(opts.max)
        return 0
    if opts.mode == "subscribe":
        host, port, count, events = opts.args
        subscribe(host, int(port), int(count), int(events))
        return 0
    gap = "0.5 s + 0.2 ms per subscriber" if opts.gap is None else f"{opts.gap} s"
    print(f"stream fan-out: {opts.events} member-join events, {gap} apart; loopback; cpus={os.cpu_count()}")
    print("latency (ms) from the event's creation (MemberTable.apply) to: 'last' its receipt by the last subscriber")
    print("(per event, p50/p99/max over the events); 'all' every receipt; 'server' the server's last write returning")
    print("'KiB/idle' the server's RSS growth per connected idle subscriber; 'cpu ms/ev' the server's CPU time per")
    print("event (its whole process: fan-out, pings, catch-up of kicked subscribers, the bench's own polling);")
    print("'pass cpu' the server's CPU time from the change to the end of the pump's one pass over every parked")
    print("subscriber (p50/p99 over the events): CPU time, so it does not grow with the machine's load; 'retries'")
    print(f"connections tried again while connecting; load average {os.getloadavg()[0]:.1f} at the start")
    header = f"{'subscribers':>11} {'connect s':>9} {'last p50':>9} {'last p99':>9} {'last max':>9} " \
             f"{'all p50':>8} {'all p99':>8} {'server p50':>10} {'server p99':>10} {'missing':>7} {'retries':>7} " \
             f"{'KiB/idle':>8} {'cpu ms/ev':>9} {'pass cpu p50':>12} {'pass cpu p99':>12}"
    print(header)
    summaries = []
    for n in opts.subscribers:
        results = []
        for _ in range(opts.repeat):
            r = run(n, opts.events, opts.gap if opts.gap is not None else 0.5 + n * 0.0002, opts.per_process)
            results.append(r)
            print(f"{r['subscribers']:>11} {r['connect_s']:>9.1f} {r['last_p50']:>9.1f} {r['last_p99']:>9.1f} "
                  f"{r['last_max']:>9.1f} {r['all_p50']:>8.1f} {r['all_p99']:>8.1f} {r['server_p50']:>10.1f} "
                  f"{r['server_p99']:>10.1f} {r['missing']:>7} {r['retries']:>7} {r['kib_per_idle']:>8.1f} "
                  f"{r['cpu_ms_per_event']:>9.1f} "
                  f"{r['pass_cpu_p50']:>12.1f} {r['pass_cpu_p99']:>12.1f}",
                  flush=True)
        summaries.append(_summary(n, results))
    if opts.repeat > 1:
        print(f"\nmedian [min-max] of {opts.repeat} runs per count; load average {os.getloadavg()[0]:.1f} at the end")
        print("\n".join(summaries))
    return 0


def _summary(n: int, results: list[dict[str, Any]]) -> str:
    """One line per subscriber count: the median and range over the runs of the figures the issue asks for."""

    def spread(key: str) -> str:
        values = sorted(r[key] for r in results)
        return f"{statistics.median(values):.1f} [{values[0]:.1f}-{values[-1]:.1f}]"

    return (f"{n:>6} subscribers: last p99 {spread('last_p99')} ms, last p50 {spread('last_p50')} ms, "
            f"KiB/idle {spread('kib_per_idle')}, pass cpu p50 {spread('pass_cpu_p50')} ms, "
            f"cpu ms/ev {spread('cpu_ms_per_event')}, missing {sum(r['missing'] for r in results)}")


if __name__ == "__main__":
    sys.exit(main())
