"""Run the DNS responder in-process on a member table of N synthetic nodes (for dns_bench.sh and by hand).

    python bench/dns_fixture.py --host 127.0.0.53 --port 8600 --members 1000 \\
        --queries /tmp/q.txt --hosts /tmp/hosts

prints ``READY <host> <port>`` once UDP and TCP are bound, then serves until SIGINT/SIGTERM.  ``--queries`` writes
a dnsperf data file (one ``nodeN.node.consul A`` line per member), ``--hosts`` a hosts file with the same names
and addresses (for the dnsmasq reference run), so both servers answer the same 1000 names.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.config import AgentConfig, Ports
from agent.dns import serve_dns
from agent.members import Member, MemberTable


def node_addr(i: int) -> str:
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


def synthetic_table(count: int, dc: str = "dc1") -> MemberTable:
    """``node0`` (a server) .. ``node{count-1}``, alive, with Consul's tags for ``dc``."""
    table = MemberTable()
    for i in range(count):
        tags = {"role": "consul" if i == 0 else "node", "dc": dc, "id": f"00000000-0000-0000-0000-{i:012d}",
                "build": "1.20.1:deadbeef", "port": "8300", "segment": ""}
        table.apply("member-join", Member(name=f"node{i}", addr=node_addr(i), port=8301, tags=tags))
    table.set_leader(f"{node_addr(0)}:8300", [f"{node_addr(0)}:8300"])
    return table


async def run(args: argparse.Namespace) -> None:
    table = synthetic_table(args.members)
    config = AgentConfig(node_name="node0", server=True, client_addr=args.host, ports=Ports(dns=args.port))
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            host, port = await nursery.start(serve_dns, table, config, args.host, args.port)
            print(f"READY {host} {port}", flush=True)
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--queries", type=Path, help="write a dnsperf data file here")
    parser.add_argument("--hosts", type=Path, help="write a hosts file with the same names here")
    args = parser.parse_args()
    if not args.host.startswith("127."):
        parser.error("loopback (127.0.0.0/8) only")
    if args.queries:
        args.queries.write_text("".join(f"node{i}.node.consul A\n" for i in range(args.members)))
    if args.hosts:
        args.hosts.write_text("".join(f"{node_addr(i)} node{i}.node.consul\n" for i in range(args.members)))
    trio.run(run, args)


if __name__ == "__main__":
    main()
