"""Shared fixtures for tests that run real processes: `serf agent` and `python -m agent.gossip` on loopback.

Each agent gets its own 127.0.0.x address and ports that were free when it started, so tests (and other people's
test runs on the same machine) do not collide.  Every process is started here and stopped by its PID in the
fixture's teardown.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from procs import Proc, free_port, wait_for, xdist_worker

REPO = Path(__file__).resolve().parent.parent
SERF_BIN = os.environ.get("SERF_BIN", "/usr/bin/serf")
#: What `serf agent -join=...` logs once its startup join succeeded. Its RPC answers before that, and a join that
#: fails (e.g. the local profile's 1 s TCP timeout under load) makes the agent exit 1 a moment later.
SERF_JOIN_DONE = "Join completed. Synced with"

# Distinct loopback addresses: start somewhere random so two concurrent pytest runs rarely share an IP (ports
# are checked free anyway). Under pytest-xdist each worker draws from its own block of the 40,000, so two
# workers of one run never share one.
_IPS = 200 * 200
_WORKER, _WORKERS = xdist_worker()
_IP_BLOCK = _IPS // _WORKERS
_ip_counter = itertools.count(random.randrange(0, _IP_BLOCK))


def next_loopback_ip() -> str:
    """A fresh 127.0.x.y (x, y in 1..200), so each agent is recognisable by its address."""
    n = _WORKER * _IP_BLOCK + next(_ip_counter) % _IP_BLOCK
    return f"127.0.{n // 200 + 1}.{n % 200 + 1}"


def serf_available() -> bool:
    return os.access(SERF_BIN, os.X_OK)


#: Under pytest-xdist (`make test` runs `--dist loadfile --no-loadscope-reorder`) a test file is one unit of work
#: and units go out in collection order: these files, the longest (minutes each, measured with --durations), go
#: first so that none of them starts last and keeps one worker busy while the others sit idle. A new file that
#: takes a minute or more belongs here. Without xdist the order is untouched.
LONGEST_FILES_FIRST = (
    "test_raft_sim.py", "test_gossip_fuzz.py", "test_pyconsul_suite.py", "test_interop_encrypt.py",
    "test_sim_memberlist.py", "test_raft_agents.py", "test_sim_serf.py", "test_guide.py", "test_gossip_edge_live.py",
    "test_dns_fuzz.py", "test_cli_acl.py", "test_cli_kv.py", "test_stream.py", "test_lock_faults.py",
    "test_events_cluster.py", "test_hostile_catalog.py", "test_coordinates_agents.py", "test_raft_store.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist, the longest files first (a stable sort: tests keep their order within a file); and skip
    `interop` tests, with the reason, when the serf binary is missing."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        rank = {name: i for i, name in enumerate(LONGEST_FILES_FIRST)}
        items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
    if serf_available():
        return
    skip = pytest.mark.skip(reason=f"{SERF_BIN} not found: apt-get install serf (or set SERF_BIN) to run interop")
    for item in items:
        if "interop" in item.keywords:
            item.add_marker(skip)


@dataclass
class SerfAgent:
    """A running `serf agent` and how to ask it things."""

    name: str
    ip: str
    port: int
    rpc_port: int
    proc: Proc
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def addr(self) -> str:
        return f"{self.ip}:{self.port}"

    @property
    def rpc_addr(self) -> str:
        return f"{self.ip}:{self.rpc_port}"

    def members(self) -> dict[str, dict[str, Any]]:
        """`serf members -format=json`, by name: {"name", "addr" ("ip:port"), "port", "tags", "status", ...}."""
        out = subprocess.run(
            [SERF_BIN, "members", "-format=json", f"-rpc-addr={self.rpc_addr}"],
            capture_output=True,
            timeout=5,
            check=True,
        ).stdout
        return {m["name"]: m for m in json.loads(out)["members"]}

    def status_of(self, name: str) -> str | None:
        m = self.members().get(name)
        return None if m is None else m["status"]

    def leave(self) -> None:
        """Graceful leave through RPC (the agent then exits)."""
        subprocess.run([SERF_BIN, "leave", f"-rpc-addr={self.rpc_addr}"], capture_output=True, timeout=30, check=True)


@dataclass
class TriumvirNode:
    """A running `python -m agent.gossip` and its members file."""

    name: str
    ip: str
    port: int
    proc: Proc
    members_file: Path
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def addr(self) -> str:
        return f"{self.ip}:{self.port}"

    def members(self) -> dict[str, dict[str, Any]]:
        """The members file, by name: {"Name", "Addr", "Port", "Tags", "Status"}."""
        return {m["Name"]: m for m in json.loads(self.members_file.read_text())}

    def status_of(self, name: str) -> str | None:
        m = self.members().get(name)
        return None if m is None else m["Status"]


class Agents:
    """Starts serf and triumvir agents for one test and stops them all, by PID, at teardown."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.procs: list[Proc] = []

    def _log_path(self, stem: str) -> Path:
        """A fresh log file per process, so a restarted agent does not overwrite its first life's log."""
        for i in itertools.count():
            path = self.tmp_path / (f"{stem}.log" if i == 0 else f"{stem}.{i}.log")
            if not path.exists():
                return path
        raise AssertionError("unreachable")

    def diagnostics(self) -> str:
        """Every agent's log tail: attached to wait_for failures."""
        parts = []
        for p in self.procs:
            state = "running" if p.alive() else f"exited {p.popen.returncode}"
            parts.append(f"--- {p.name} (pid {p.pid}, {state}) {p.log_path}\n{p.log_tail(25)}")
        return "\n".join(parts)

    def serf(
        self,
        name: str,
        *,
        profile: str = "local",
        tags: dict[str, str] | None = None,
        join: Sequence[str] = (),
        startup_timeout: float = 15.0,
        reuse: SerfAgent | None = None,
        extra: Sequence[str] = (),
        at: tuple[str, int] | None = None,
    ) -> SerfAgent:
        """Start `serf agent`; with ``reuse``, on that (dead) agent's address and ports: a restart. ``extra``: more
        flags (``-encrypt=KEY``, ``-keyring-file=PATH``); ``at`` fixes its (ip, gossip port)."""
        if not serf_available():
            pytest.skip(f"{SERF_BIN} not found: apt-get install serf (or set SERF_BIN)")
        if reuse is not None:
            ip, port, rpc_port = reuse.ip, reuse.port, reuse.rpc_port
        else:
            ip, port = at or (next_loopback_ip(), 0)
            port = port or free_port(ip)
            rpc_port = free_port(ip)
        argv = [
            SERF_BIN,
            "agent",
            f"-node={name}",
            f"-bind={ip}:{port}",
            f"-rpc-addr={ip}:{rpc_port}",
            f"-profile={profile}",
            "-log-level=debug",
        ]
        argv += [f"-tag={k}={v}" for k, v in (tags or {}).items()]
        argv += [f"-join={j}" for j in join]
        argv += list(extra)
        proc = Proc(f"serf:{name}", argv, self._log_path(f"serf-{name}"))
        self.procs.append(proc)
        agent = SerfAgent(name, ip, port, rpc_port, proc, dict(tags or {}))

        def up() -> bool:
            if not proc.alive():
                raise AssertionError(f"serf agent {name} exited {proc.popen.returncode}:\n{proc.log_tail()}")
            if join and SERF_JOIN_DONE not in proc.log_path.read_text(errors="replace"):
                return False  # RPC answers during the startup join; a failed join then exits the agent
            return name in agent.members()

        wait_for(up, timeout=startup_timeout, what=f"serf agent {name} RPC and -join", diagnostics=self.diagnostics)
        return agent

    def triumvir(
        self,
        name: str,
        *,
        profile: str = "local",
        tags: dict[str, str] | None = None,
        join: Sequence[str] = (),
        startup_timeout: float = 15.0,
        reuse: TriumvirNode | None = None,
        args: Sequence[str] = (),
    ) -> TriumvirNode:
        """Start `python -m agent.gossip`; with ``reuse``, on that (dead) node's address and port: a restart."""
        if reuse is not None:
            ip, port = reuse.ip, reuse.port
        else:
            ip = next_loopback_ip()
            port = free_port(ip)
        members_file = self.tmp_path / f"members-{name}.json"
        members_file.unlink(missing_ok=True)  # a restart must not be taken as up on its first life's file
        argv = [
            sys.executable,
            "-m",
            "agent.gossip",
            f"--name={name}",
            f"--bind={ip}:{port}",
            f"--profile={profile}",
            f"--members-file={members_file}",
            "--log-level=debug",
        ]
        argv += [f"--tag={k}={v}" for k, v in (tags or {}).items()]
        argv += [f"--join={j}" for j in join]
        argv += args
        env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
        proc = Proc(f"triumvir:{name}", argv, self._log_path(f"triumvir-{name}"), env=env)
        self.procs.append(proc)
        node = TriumvirNode(name, ip, port, proc, members_file, dict(tags or {}))

        def up() -> bool:
            if not proc.alive():
                raise AssertionError(f"triumvir node {name} exited {proc.popen.returncode}:\n{proc.log_tail()}")
            return name in node.members()

        wait_for(up, timeout=startup_timeout, what=f"triumvir node {name} members file", diagnostics=self.diagnostics)
        return node

    def close(self) -> None:
        for p in self.procs:
            p.close()


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[Agents]:
    """A factory for serf/triumvir agents on loopback; all are killed (by PID) at teardown."""
    a = Agents(tmp_path)
    try:
        yield a
    finally:
        a.close()


@pytest.fixture
def serf_agent(agents: Agents) -> Any:
    """Start one `serf agent` on its own 127.0.x.y and ports: ``serf_agent(name, profile=, tags=, join=)``."""
    return agents.serf


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Any]:
    """Real `python -m agent` processes (tests/consul_agents.py): `cluster.start(name, server=..., extra={...})`;
    all stopped by PID at teardown."""
    from consul_agents import Cluster

    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def checked_server() -> Iterator[Any]:
    """The small HTTP server a service's check probes; `stop()` makes the check fail."""
    from consul_agents import CheckedServer

    server = CheckedServer()
    try:
        yield server
    finally:
        server.stop()
