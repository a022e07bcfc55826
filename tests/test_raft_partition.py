"""A network partition between real servers, each in its own network namespace: only the majority commits.

Three `python -m agent` servers (raft_multiplier 1), one per namespace, joined by veth pairs to a bridge that
only this test creates (addresses in a private 10.213.x.0/24; the test process reaches them through the bridge).
The partition cuts the leader's namespace off from the two others with blackhole routes on both sides (the
test's own address stays reachable, so it can still ask the cut-off server).  The majority elects a new
leader and commits; a write sent to the cut-off old leader is never acknowledged and, once the partition heals
and the old leader follows the new one, is on no server.  Writes are KV sets sent with ``Store.Apply``; what each
server holds is read with ``?stale`` ``Store.Query`` reads of its own state (tests/store_rpc.py).  Needs root
and `ip`; everything it creates (namespaces, bridge, veths, routes) is removed in a finally, and every process is
stopped by its PID.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
from consul_agents import ENV
from procs import Proc, wait_for
from store_rpc import put, put_ok, stale_entry, stale_get

from agent.server import rpc

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and ip to make network namespaces")

TAG = f"trv{os.getpid() % 10000}"  # interface and namespace names unique to this test run (<= 15 chars)
SUBNET = f"10.213.{os.getpid() % 250}"
HOST_ADDR = f"{SUBNET}.254"
N = 3


def sh(*argv: str, ns: str | None = None) -> None:
    cmd = ["ip", "netns", "exec", ns, *argv] if ns else list(argv)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {out.stderr.strip()}")


def addr(i: int) -> str:
    return f"{SUBNET}.{i}"


class Net:
    """The namespaces n1..n3, each with veth v<i> (inside) / v<i>b (on the bridge), and the bridge."""

    def __init__(self) -> None:
        self.bridge = f"{TAG}br"
        self.made: list[tuple[str, str]] = []  # ("netns" | "link", name), for the teardown

    def ns(self, i: int) -> str:
        return f"{TAG}n{i}"

    def up(self) -> None:
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        self.made.append(("link", self.bridge))
        sh("ip", "addr", "add", f"{HOST_ADDR}/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        for i in range(1, N + 1):
            ns, inner, outer = self.ns(i), f"{TAG}v{i}", f"{TAG}v{i}b"
            sh("ip", "netns", "add", ns)
            self.made.append(("netns", ns))
            sh("ip", "link", "add", inner, "type", "veth", "peer", "name", outer)
            self.made.append(("link", outer))
            sh("ip", "link", "set", inner, "netns", ns)
            sh("ip", "link", "set", outer, "master", self.bridge)
            sh("ip", "link", "set", outer, "up")
            sh("ip", "addr", "add", f"{addr(i)}/24", "dev", inner, ns=ns)
            sh("ip", "link", "set", inner, "up", ns=ns)
            sh("ip", "link", "set", "lo", "up", ns=ns)

    def _routes(self, i: int, action: str) -> None:
        for j in range(1, N + 1):
            if j != i:
                sh("ip", "route", action, "blackhole", f"{addr(j)}/32", ns=self.ns(i))
                sh("ip", "route", action, "blackhole", f"{addr(i)}/32", ns=self.ns(j))

    def cut(self, i: int) -> None:
        """Nothing passes between server i and the other servers, either way (the test's address still does)."""
        self._routes(i, "add")

    def heal(self, i: int) -> None:
        self._routes(i, "del")

    def down(self) -> None:
        for kind, name in reversed(self.made):
            cmd = ["ip", "netns", "del", name] if kind == "netns" else ["ip", "link", "del", name]
            subprocess.run(cmd, capture_output=True, timeout=10)  # a veth went with its namespace: ignore


@pytest.fixture
def net() -> Any:
    n = Net()
    try:
        n.up()
        yield n
    finally:
        n.down()


def start_server(net: Net, i: int, tmp_path: Path) -> Proc:
    conf = tmp_path / f"s{i}.d"
    conf.mkdir()
    config = {"node_name": f"s{i}", "bind_addr": addr(i), "client_addr": addr(i), "data_dir": str(tmp_path / f"s{i}"),
              "server": True, "bootstrap_expect": N, "performance": {"raft_multiplier": 1},
              "ports": {"http": 8500, "serf_lan": 8301, "server": 8300, "dns": -1}, "gossip_profile": "local",
              **({"retry_join": [f"{addr(1)}:8301"], "retry_interval": "1s"} if i > 1 else {})}
    (conf / "agent.json").write_text(json.dumps(config))
    return Proc(f"s{i}", ["ip", "netns", "exec", net.ns(i), sys.executable, "-m", "agent", "-config-dir", str(conf)],
                tmp_path / f"s{i}.log", env=ENV)


def leader_of(i: int) -> str:
    return str(requests.get(f"http://{addr(i)}:8500/v1/status/leader", timeout=2).json())


def agreed(ids: list[int], not_: str = "") -> str | None:
    seen = {leader_of(i) for i in ids}
    if len(seen) == 1:
        (leader,) = seen
        if leader and leader != not_:
            return leader
    return None


def server(i: int) -> str:
    return f"{addr(i)}:8300"


def test_only_the_majority_side_of_a_partition_commits(net: Net, tmp_path: Path) -> None:
    procs = [start_server(net, i, tmp_path) for i in range(1, N + 1)]

    def diagnostics() -> str:
        return "\n".join(f"--- {p.name}\n{p.log_tail(25)}" for p in procs)

    try:
        ids = list(range(1, N + 1))
        leader = wait_for(lambda: agreed(ids), timeout=40, what="a leader", diagnostics=diagnostics)
        old = next(i for i in ids if leader == server(i))
        put_ok(server(old), "before", b"both sides")
        majority = [i for i in ids if i != old]

        net.cut(old)
        new = wait_for(lambda: agreed(majority, not_=leader), timeout=15, what="a leader on the majority side",
                       diagnostics=diagnostics)
        new_id = next(i for i in majority if new == server(i))
        put_ok(server(new_id), "majority", b"committed")
        # a write to the cut-off old leader: it never commits while it leads a minority, and once it stepped down
        # it knows no leader to forward to, so it is refused either way
        try:
            refused: Any = put(server(old), "minority", b"never", timeout=15)
        except rpc.RPCError as err:
            refused = err
        assert refused != {"ok": True} and not (isinstance(refused, dict) and "ok" in refused), refused
        wait_for(lambda: leader_of(old) in ("", new) and leader_of(old) != leader, timeout=10,
                 what="the cut-off leader to step down", diagnostics=diagnostics)
        assert stale_get(server(old), "majority") is None  # it cannot have heard of it

        net.heal(old)
        wait_for(lambda: agreed(ids) == new or agreed(ids), timeout=30, what="one leader after the heal",
                 diagnostics=diagnostics)
        committed = stale_entry(server(new_id), "majority")
        assert committed is not None
        for i in ids:
            wait_for(lambda i=i: stale_get(server(i), "majority") == b"committed", timeout=15,
                     what=f"the majority's write applied on s{i}", diagnostics=diagnostics)
            assert stale_entry(server(i), "majority") == committed  # same entry, same index, everywhere
            assert stale_get(server(i), "before") == b"both sides"
            assert stale_get(server(i), "minority") is None
    finally:
        for p in procs:
            p.close()
