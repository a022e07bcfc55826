"""Network namespaces a test makes for itself: n agents, one per namespace, joined by veth pairs to a bridge.

Addresses are in a private 10.213.x.0/24 chosen by PID (and xdist worker); the test process reaches every
namespace through the bridge (HOST_ADDR).  `cut(i)` blackholes traffic between namespace i and every other
namespace, both ways (the test's own address stays reachable, so it can still ask the cut-off agent); `heal(i)`
removes those routes.
This kernel has no `tc` filters, hence routes.  Needs root and `ip`; `down()` removes everything `up()` made.
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
from consul_agents import ENV
from procs import Proc, xdist_worker

NEEDS_ROOT = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                                reason="needs root and ip to make network namespaces")

TAG = f"trv{os.getpid() % 10000}"  # interface and namespace names unique to this test run (<= 15 chars)
_WORKER, _WORKERS = xdist_worker()


def _pick_subnet() -> str:
    """10.213.x by PID, under pytest-xdist never the same for two workers of one run (each its own residue class),
    and not one the host already has an address in (another run's bridge: the test's requests would reach that
    run's agents)."""
    try:
        taken = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        taken = ""
    slots = 250 // _WORKERS
    for k in range(slots):
        subnet = f"10.213.{((os.getpid() + k) % slots) * _WORKERS + _WORKER}"
        if f" {subnet}." not in taken:
            return subnet
    raise RuntimeError("every 10.213.x/24 is in use on this host")


SUBNET = _pick_subnet()
HOST_ADDR = f"{SUBNET}.254"
HTTP_PORT, SERF_PORT, SERVER_PORT = 8500, 8301, 8300


def sh(*argv: str, ns: str | None = None) -> None:
    cmd = ["ip", "netns", "exec", ns, *argv] if ns else list(argv)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {out.stderr.strip()}")


def addr(i: int) -> str:
    return f"{SUBNET}.{i}"


class Net:
    """Namespaces 1..n, each with veth v<i> (inside) / v<i>b (on the bridge), and the bridge."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.bridge = f"{TAG}br"
        self.made: list[tuple[str, str]] = []  # ("netns" | "link", name), for the teardown
        self.cuts: set[int] = set()

    def ns(self, i: int) -> str:
        return f"{TAG}n{i}"

    def up(self) -> None:
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        self.made.append(("link", self.bridge))
        sh("ip", "addr", "add", f"{HOST_ADDR}/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        for i in range(1, self.n + 1):
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
        for j in range(1, self.n + 1):
            if j != i:
                sh("ip", "route", action, "blackhole", f"{addr(j)}/32", ns=self.ns(i))
                sh("ip", "route", action, "blackhole", f"{addr(i)}/32", ns=self.ns(j))

    def cut(self, i: int) -> None:
        """Nothing passes between namespace i and the others, either way (the test's address still does)."""
        self._routes(i, "add")
        self.cuts.add(i)

    def heal(self, i: int) -> None:
        self._routes(i, "del")
        self.cuts.discard(i)

    def down(self) -> None:
        for kind, name in reversed(self.made):
            cmd = ["ip", "netns", "del", name] if kind == "netns" else ["ip", "link", "del", name]
            subprocess.run(cmd, capture_output=True, timeout=10)  # a veth went with its namespace: ignore


def write_agent_config(tmp_path: Path, i: int, name: str, extra: dict[str, Any]) -> Path:
    """The config dir of the agent in namespace i (fixed ports: each namespace has its own address)."""
    conf = tmp_path / f"{name}.d"
    conf.mkdir(exist_ok=True)
    config = {"node_name": name, "bind_addr": addr(i), "client_addr": addr(i), "data_dir": str(tmp_path / name),
              "ports": {"http": HTTP_PORT, "serf_lan": SERF_PORT, "server": SERVER_PORT, "dns": -1},
              "gossip_profile": "local", **extra}
    (conf / "agent.json").write_text(json.dumps(config))
    return conf


def start_agent(net: Net, i: int, name: str, conf: Path, tmp_path: Path, run: int = 0) -> Proc:
    return Proc(name, ["ip", "netns", "exec", net.ns(i), sys.executable, "-m", "agent", "-config-dir", str(conf)],
                tmp_path / f"{name}-{run}.log", env=ENV)
