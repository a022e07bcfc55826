"""What one catalog change costs 1,000 blocked watchers of one service: targeted wake-ups vs the old global one.

    .venv/bin/python bench/blocking_interests.py                # 1,000 watchers, 200 nodes
    .venv/bin/python bench/blocking_interests.py --watchers 5000 --nodes 1000

In-process, on the real MemberTable: ``--nodes`` agent nodes, half running ``web`` and half ``db`` (replicated
records, applied as the catalog runner applies them).  Each watcher is a trio task doing what a blocking
``/v1/catalog/service/web`` does between the socket reads: park, and when woken build the answer
(``query.service_instances`` and its JSON) and park again at the new index.  Two modes:

- ``interests`` (now): ``MemberTable.wait_read`` with the read's own index and interests
  (agent.catalog.indexes.service_read): a change wakes only the watchers of what it wrote;
- ``global`` (before): ``MemberTable.wait_past`` on the table's one index: every change wakes everyone (the old
  endpoint then answered and the client asked again: this counts only the rebuilding, a lower bound).

For each mode and each change (one to ``db``, one to ``web``) it prints the watchers woken and the CPU time
(``time.process_time``) from the change until every task is parked again (``wait_all_tasks_blocked``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import trio
import trio.testing

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agent.catalog import indexes, query  # noqa: E402
from agent.catalog.indexed import apply_changes  # noqa: E402
from agent.catalog.record import NodeCatalog, ServiceRecord  # noqa: E402
from agent.http.catalog_services import service_node_json  # noqa: E402
from agent.members import Member, MemberTable, Snapshot  # noqa: E402

DC = "dc1"


def build(nodes: int) -> tuple[MemberTable, dict[str, int]]:
    table = MemberTable(datacenter=DC)
    versions: dict[str, int] = {}
    for i in range(nodes):
        name = f"node-{i:04d}"
        tags = {"role": "node", "dc": DC, "build": "1.20.1:x", "id": name}
        table.apply("member-join", Member(name=name, addr=f"10.1.{i // 250}.{i % 250 + 1}", port=8301, tags=tags))
        publish(table, versions, name, ServiceRecord(id="svc", name="web" if i % 2 == 0 else "db", port=80))
    table.set_leader("10.1.0.1:8300", ["10.1.0.1:8300"])
    return table, versions


def publish(table: MemberTable, versions: dict[str, int], node: str, *services: ServiceRecord) -> None:
    versions[node] = versions.get(node, 0) + 1
    record = NodeCatalog(node=node, version=versions[node], services=services)
    table.apply_catalog(lambda catalog, index: apply_changes(catalog, {node: record}, index), [node])


def answer(snapshot: Snapshot) -> int:
    """What the endpoint builds once woken: the instances and their JSON."""
    return len([service_node_json(i, DC) for i in query.service_instances(snapshot, "web", dc=DC)])


async def measure(mode: str, watchers: int, nodes: int) -> list[tuple[str, int, float]]:
    table, versions = build(nodes)
    woken = 0

    def read(s: Snapshot) -> indexes.ReadIndex:
        return indexes.service_read(s.indexes, "web")

    async def watcher() -> None:
        nonlocal woken
        snapshot = table.current
        while True:
            if mode == "interests":
                snapshot = await table.wait_read(read, read(snapshot).index)
            else:
                snapshot = await table.wait_past(snapshot.index)
            woken += 1
            answer(snapshot)

    rows: list[tuple[str, int, float]] = []
    async with trio.open_nursery() as nursery:
        for _ in range(watchers):
            nursery.start_soon(watcher)
        await trio.testing.wait_all_tasks_blocked()
        changes = (
            ("db instance changed", "node-0001", ServiceRecord(id="svc", name="db", port=81)),
            ("web instance changed", "node-0000", ServiceRecord(id="svc", name="web", port=81)),
        )
        for label, node, service in changes:
            woken = 0
            started = time.process_time()
            publish(table, versions, node, service)
            await trio.testing.wait_all_tasks_blocked()
            rows.append((label, woken, time.process_time() - started))
        nursery.cancel_scope.cancel()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--watchers", type=int, default=1000)
    parser.add_argument("--nodes", type=int, default=200)
    args = parser.parse_args()
    print(f"{args.watchers} watchers of /v1/catalog/service/web, {args.nodes} nodes (half web, half db)")
    print(f"| {'mode':<10} | {'change':<22} | {'woken':>6} | {'CPU ms':>8} |")
    print(f"|{'-' * 12}|{'-' * 24}|{'-' * 8}|{'-' * 10}|")
    for mode in ("interests", "global"):
        for label, woken, cpu in trio.run(measure, mode, args.watchers, args.nodes):
            print(f"| {mode:<10} | {label:<22} | {woken:>6} | {cpu * 1000:>8.2f} |")


if __name__ == "__main__":
    main()
