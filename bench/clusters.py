"""Three-member clusters on loopback for the side-by-side benchmarks: triumvir servers and etcd (Debian's
etcd-server), each member a process started here and stopped by its PID, with a way to ask it for its leader.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
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
                 env: dict[str, str] | None = None, cwd: Path = REPO) -> None:
        self.name, self.argv, self.leader, self.workdir, self.env = name, argv, leader, workdir, env
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.workdir / f"{self.name}.log", "ab")  # noqa: SIM115 -- owned by the child
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=self.env, cwd=self.cwd, start_new_session=True)
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


def triumvir_members(work: Path, extra: dict[str, Any] | None = None, repo: Path = REPO) -> list[Member]:
    """``repo``: the source tree the agents run from (another checkout, for an A/B of two versions)."""
    env = dict(os.environ, PYTHONPATH=str(repo))
    members, join = [], None
    for i in range(1, 4):
        http, serf, server = free_port(), free_port(), free_port()
        conf_dir = work / f"t{i}.d"
        conf_dir.mkdir()
        config = {"node_name": f"t{i}", "bind_addr": HOST, "client_addr": HOST, "data_dir": str(work / f"t{i}"),
                  "server": True, "bootstrap_expect": 3, "performance": {"raft_multiplier": 1},
                  "ports": {"http": http, "serf_lan": serf, "server": server, "dns": -1},
                  "gossip_profile": "local", "log_level": "warn",
                  **({"retry_join": [join], "retry_interval": "1s"} if join else {}), **(extra or {})}
        join = join or f"{HOST}:{serf}"
        (conf_dir / "agent.json").write_text(json.dumps(config))

        def leader(http: int = http) -> str:
            return str(requests.get(f"http://{HOST}:{http}/v1/status/leader", timeout=1).json())

        m = Member(f"t{i}", [sys.executable, "-m", "agent", "-config-dir", str(conf_dir)], leader, work, env, repo)
        m.ident = f"{HOST}:{server}"  # type: ignore[attr-defined]
        m.http = f"{HOST}:{http}"  # type: ignore[attr-defined]
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
        m.http = f"{HOST}:{client}"  # type: ignore[attr-defined]
        members.append(m)
    return members
