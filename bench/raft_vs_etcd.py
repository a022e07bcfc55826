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
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parent.parent
HEARTBEAT_MS, ELECTION_MS = 100, 1000
POLL = 0.01
SETTLE = 2 * ELECTION_MS / 1000  # after a restart, before the next kill: a steady cluster for both systems
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait(what: str, probe: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = probe()
        except (requests.RequestException, ValueError, KeyError):
            value = None
        if value:
            return value
        time.sleep(POLL)
    raise TimeoutError(f"timed out waiting for {what}")


class Member:
    """One process: `argv`, its log, and how to ask it for the leader it follows ("" for none)."""

    def __init__(self, name: str, argv: list[str], leader: Callable[[], str], workdir: Path,
                 env: dict[str, str] | None = None) -> None:
        self.name, self.argv, self.leader, self.workdir, self.env = name, argv, leader, workdir, env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.workdir / f"{self.name}.log", "ab")  # noqa: SIM115 -- owned by the child
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=self.env, cwd=REPO, start_new_session=True)
        log.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def ask(self) -> str:
        try:
            return self.leader()
        except (requests.RequestException, ValueError, KeyError):
            return ""


def agreed(members: list[Member], not_: str = "") -> str:
    seen = {m.ask() for m in members}
    if len(seen) == 1:
        (leader,) = seen
        if leader and leader != not_:
            return leader
    return ""


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


def triumvir_members(work: Path) -> list[Member]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    members, join = [], None
    for i in range(1, 4):
        http, serf, server = free_port(), free_port(), free_port()
        conf_dir = work / f"t{i}.d"
        conf_dir.mkdir()
        config = {"node_name": f"t{i}", "bind_addr": HOST, "client_addr": HOST, "data_dir": str(work / f"t{i}"),
                  "server": True, "bootstrap_expect": 3, "performance": {"raft_multiplier": 1},
                  "ports": {"http": http, "serf_lan": serf, "server": server, "dns": -1},
                  "gossip_profile": "local", "log_level": "warn",
                  **({"retry_join": [join], "retry_interval": "1s"} if join else {})}
        join = join or f"{HOST}:{serf}"
        (conf_dir / "agent.json").write_text(json.dumps(config))

        def leader(http: int = http) -> str:
            return str(requests.get(f"http://{HOST}:{http}/v1/status/leader", timeout=1).json())

        m = Member(f"t{i}", [sys.executable, "-m", "agent", "-config-dir", str(conf_dir)], leader, work, env)
        m.ident = f"{HOST}:{server}"  # type: ignore[attr-defined]
        members.append(m)
    return members


def etcd_members(work: Path, etcd: str) -> list[Member]:
    ports = [(free_port(), free_port()) for _ in range(3)]
    cluster = ",".join(f"e{i}=http://{HOST}:{peer}" for i, (_, peer) in enumerate(ports, 1))
    members = []
    for i, (client, peer) in enumerate(ports, 1):
        argv = [etcd, "--name", f"e{i}", "--data-dir", str(work / f"e{i}"),
                "--listen-client-urls", f"http://{HOST}:{client}", "--advertise-client-urls", f"http://{HOST}:{client}",
                "--listen-peer-urls", f"http://{HOST}:{peer}", "--initial-advertise-peer-urls",
                f"http://{HOST}:{peer}", "--initial-cluster", cluster, "--initial-cluster-state", "new",
                "--heartbeat-interval", str(HEARTBEAT_MS), "--election-timeout", str(ELECTION_MS),
                "--log-level", "warn"]

        def status(client: int = client) -> dict[str, Any]:
            return dict(requests.post(f"http://{HOST}:{client}/v3/maintenance/status", data="{}", timeout=1).json())

        def leader(status: Callable[[], dict[str, Any]] = status) -> str:
            return str(status().get("leader", ""))

        m = Member(f"e{i}", argv, leader, work)
        m.status = status  # type: ignore[attr-defined]
        members.append(m)
    return members


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
