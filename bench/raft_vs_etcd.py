"""Leader failover, triumvir's Raft servers side by side with etcd 3.4 (Debian's etcd-server).

Three members of each on loopback, equal timing: triumvir with performance.raft_multiplier 1 (Consul's 1000 ms
election timeout, heartbeats every 100 ms) and etcd with --heartbeat-interval 100 --election-timeout 1000.  Each
round: wait until every member reports the same leader, kill -9 that leader, and time until every survivor
reports the same new leader (each polled over its HTTP API every 10 ms); then restart the killed member from its
data dir, wait until all three agree again and for two more election timeouts (a restarted member of either
system refuses votes for an election timeout after it starts).  Prints the median and worst of KILLS rounds.

    .venv/bin/python bench/raft_vs_etcd.py [--kills 10]

Every process is started here and stopped by its PID; each wait has a deadline.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from clusters import ELECTION_MS, HEARTBEAT_MS, SETTLE, Member, agreed, etcd_members, triumvir_members, wait


def failovers(members: list[Member], ident: Callable[[Member], str], kills: int) -> list[float]:
    for m in members:
        m.start()
    times = []
    for _ in range(kills):
        leader = wait("every member to report one leader", lambda: agreed(members))
        victim = next(m for m in members if ident(m) == leader)  # all alive: each can say who it is
        victim.kill()
        start = time.monotonic()
        survivors = [m for m in members if m is not victim]
        wait("a new leader on every survivor", lambda s=survivors, old=leader: agreed(s, not_=old), timeout=30)
        times.append(time.monotonic() - start)
        victim.start()
        wait("the restarted member to follow the leader", lambda: agreed(members))
        time.sleep(SETTLE)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    args = parser.parse_args()
    etcd = shutil.which("etcd")
    if etcd is None:
        print("etcd not found: apt-get install etcd-server (make bench-deps)", file=sys.stderr)
        return 1
    version = subprocess.run([etcd, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    version = version.split(":")[-1].strip()
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="raft-vs-etcd-") as tmp:
        work = Path(tmp)
        members = triumvir_members(work)
        try:
            results["triumvir (raft_multiplier 1)"] = failovers(
                members, lambda m: m.ident, args.kills)  # type: ignore[attr-defined]
        finally:
            for m in members:
                m.kill()
        members = etcd_members(work, etcd)
        ids: dict[str, str] = {}

        def etcd_ident(m: Member) -> str:
            if m.name not in ids:
                ids[m.name] = str(m.status()["header"]["member_id"])  # type: ignore[attr-defined]
            return ids[m.name]

        try:  # member ids are learned while every member runs (failovers asks before it kills)
            results[f"etcd ({version.strip()}, heartbeat {HEARTBEAT_MS} ms)"] = failovers(members, etcd_ident,
                                                                                          args.kills)
        finally:
            for m in members:
                m.kill()
    print(f"\nleader failover after kill -9 of the leader, 3 members on loopback, election timeout {ELECTION_MS} ms, "
          f"{args.kills} kills\n")
    width = max(len(name) for name in results)
    print(f"| {'system':<{width}} | median ms | worst ms |")
    print(f"|{'-' * (width + 2)}|-----------|----------|")
    for name, times in results.items():
        print(f"| {name:<{width}} | {statistics.median(times) * 1000:9.0f} | {max(times) * 1000:8.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
