"""Fan-out latency of ``/v1/stream/members``: how long from a member event's creation to its delivery at the last
of N websocket subscribers.

    .venv/bin/python bench/stream_bench.py                 # 1,000, 5,000 and 10,000 subscribers
    .venv/bin/python bench/stream_bench.py --subscribers 200 --events 20

Three kinds of process on loopback, so the subscribers' own work does not run on the server's trio loop:

- ``serve``: the real HTTP server (agent.http.serve_http) on the real MemberTable; on ``emit K SECONDS`` it applies
  K member-joins that far apart and prints each event's index and creation time (``time.time()`` just before
  ``MemberTable.apply``);
- ``subscribe``: opens its share of trio-websocket subscribers, says READY once each has its snapshot, then
  records when each event arrives at each subscriber (``time.time()`` after ``get_message``);
- the driver: starts them, waits for every subscriber, asks for the events and prints, per event, the latency to
  the last subscriber (p50/p99 over the events) and, for all deliveries, p50/p99.

All processes share the machine's CPUs (``os.cpu_count()`` is printed): on a small machine the subscribers' own
parsing competes with the server, so these figures are an upper bound on the server's fan-out time.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
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


def subscribe(host: str, port: int, count: int, events: int) -> None:
    """A lean websocket client (handshake, unmasked server frames, pongs), so that 5,000 of them on a small
    machine measure the server rather than the clients' parsing.  The tests use trio-websocket clients."""
    import base64
    import struct

    import trio

    arrivals: dict[int, list[float]] = {}
    connect_limit = trio.CapacityLimiter(64)

    async def one(ready: trio.Event) -> None:
        async with connect_limit:
            sock = await trio.open_tcp_stream(host, port)
            key = base64.b64encode(os.urandom(16)).decode()
            await sock.send_all(
                f"GET /v1/stream/members HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: Upgrade\r\n"
                f"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n".encode()
            )
            buf = b""
            while b"\r\n\r\n" not in buf:
                buf += await sock.receive_some(65536)
            head, _, buf = buf.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101"), head
        seen = -1  # the snapshot first, then ``events`` messages
        arrived = time.time()
        async with sock:
            while True:
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
                    payload, buf = buf[at : at + length], buf[at + length :]
                    if opcode == 0x9:  # ping: answer with a masked pong
                        mask = os.urandom(4)
                        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
                        await sock.send_all(bytes([0x8A, 0x80 | len(payload)]) + mask + masked)
                    elif opcode == 0x1:
                        seen += 1
                        if seen == 0:
                            ready.set()
                        else:  # {"Type":"member-join","Index":N,...}: the index without a JSON parse
                            start = payload.index(b'"Index":') + 8
                            index = int(payload[start : payload.index(b",", start)])
                            arrivals.setdefault(index, []).append(arrived)
                if seen >= events:
                    return
                data = await sock.receive_some(65536)
                if not data:
                    raise RuntimeError("the server closed the stream")
                arrived = time.time()
                buf += data

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            readies = []
            for _ in range(count):
                ready = trio.Event()
                readies.append(ready)
                nursery.start_soon(one, ready)
            for ready in readies:
                await ready.wait()
            print("READY", flush=True)
        print(json.dumps({str(k): v for k, v in arrivals.items()}), flush=True)

    trio.run(main)


# ---------------------------------------------------------------------- driver


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def run(subscribers: int, events: int, gap: float, per_process: int) -> dict[str, Any]:
    py = sys.executable
    me = str(Path(__file__).resolve())
    env = dict(os.environ, PYTHONPATH=str(REPO))
    server = subprocess.Popen(
        [py, me, "serve", "--max", str(subscribers + 100)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env=env,
    )
    clients: list[subprocess.Popen[str]] = []
    try:
        assert server.stdout is not None and server.stdin is not None
        port = int(server.stdout.readline().split()[1])

        def usage() -> tuple[int, float]:
            """The server's RSS (bytes) and CPU time (s) now."""
            assert server.stdin is not None and server.stdout is not None
            server.stdin.write("usage\n")
            server.stdin.flush()
            _, rss, cpu = server.stdout.readline().split()
            return int(rss), float(cpu)

        rss_before, _ = usage()
        shares = [per_process] * (subscribers // per_process)
        if subscribers % per_process:
            shares.append(subscribers % per_process)
        started = time.monotonic()
        for share in shares:
            clients.append(subprocess.Popen(
                [py, me, "subscribe", "127.0.0.1", str(port), str(share), str(events)],
                stdout=subprocess.PIPE, text=True, env=env,
            ))
        for client in clients:
            assert client.stdout is not None
            line = client.stdout.readline().strip()
            if line != "READY":
                raise RuntimeError(f"a subscriber process failed: {line!r}")
        connected = time.monotonic() - started
        time.sleep(1.0)  # let the last handshakes' garbage settle before the idle figure
        rss_idle, cpu_before = usage()
        server.stdin.write(f"emit {events} {gap} {subscribers}\n")
        server.stdin.flush()
        created: dict[int, float] = {}
        written: list[float] = []
        pass_cpu: list[float] = []
        while (line := server.stdout.readline().split()) and line[0] != "DONE":
            created[int(line[1])] = float(line[2])
            written.append((float(line[3]) - float(line[2])) * 1000)
            pass_cpu.append(float(line[4]) * 1000)
        _, cpu_after = usage()
        arrivals: dict[int, list[float]] = {index: [] for index in created}
        for client in clients:
            assert client.stdout is not None
            for index, times in json.loads(client.stdout.read()).items():
                arrivals[int(index)].extend(times)
            client.wait(60)
        server.stdin.write("quit\n")
        server.stdin.flush()
        server.wait(30)
    finally:
        for proc in (*clients, server):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    missing = sum(subscribers - len(times) for times in arrivals.values())
    last = [(max(arrivals[i]) - created[i]) * 1000 for i in created if arrivals[i]]
    every = [(t - created[i]) * 1000 for i in created for t in arrivals[i]]
    return {
        "subscribers": subscribers,
        "events": len(created),
        "missing": missing,
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
    print("subscriber (p50/p99 over the events): CPU time, so it does not grow with the machine's load")
    header = f"{'subscribers':>11} {'connect s':>9} {'last p50':>9} {'last p99':>9} {'last max':>9} " \
             f"{'all p50':>8} {'all p99':>8} {'server p50':>10} {'server p99':>10} {'missing':>7} " \
             f"{'KiB/idle':>8} {'cpu ms/ev':>9} {'pass cpu p50':>12} {'pass cpu p99':>12}"
    print(header)
    for n in opts.subscribers:
        r = run(n, opts.events, opts.gap if opts.gap is not None else 0.5 + n * 0.0002, opts.per_process)
        print(f"{r['subscribers']:>11} {r['connect_s']:>9.1f} {r['last_p50']:>9.1f} {r['last_p99']:>9.1f} "
              f"{r['last_max']:>9.1f} {r['all_p50']:>8.1f} {r['all_p99']:>8.1f} {r['server_p50']:>10.1f} "
              f"{r['server_p99']:>10.1f} {r['missing']:>7} {r['kib_per_idle']:>8.1f} {r['cpu_ms_per_event']:>9.1f} "
              f"{r['pass_cpu_p50']:>12.1f} {r['pass_cpu_p99']:>12.1f}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
