"""Network coordinates across real processes: `python -m agent` servers and clients and a real `serf agent` in one
LAN pool on loopback.

Each side computes the other's coordinate from the ack payloads alone: `serf rtt` (asked of the serf agent)
estimates the RTT to the triumvir agents, `python -m agent rtt` (asked of either triumvir agent) to the serf
agent, and /v1/coordinate/nodes lists every member. Loopback RTTs are a fraction of a millisecond, so the
estimates are checked for sanity (positive, well under 50 ms) here; tests/test_coordinates_delay.py checks them
against known delays (a user-space relay per node: this kernel has no netem).
"""

from __future__ import annotations

import random
import re
from typing import Any

import pytest
import requests
import trio
from conftest import Agents
from consul_agents import Cluster
from procs import wait_for
from test_interop_serf import run_inprocess_with, serf_rtt
from test_sim_coordinates import HOSTILE

from protocol.config import Config
from protocol.serf import Serf

pytestmark = pytest.mark.interop

AGENT_RTT = re.compile(r"^Estimated (\S+) <-> (\S+) rtt: ([0-9.]+) ms \(using LAN coordinates\)\n$")


def agent_rtt(agent, *names: str) -> float | None:
    out = agent.cli("rtt", *names)
    m = AGENT_RTT.match(out.stdout)
    return float(m.group(3)) / 1000 if out.returncode == 0 and m else None


def test_mixed_pool_estimates_both_ways(cluster: Cluster, agents: Agents) -> None:
    s1 = cluster.start("s1", server=True)
    c1 = cluster.start("c1", extra={"start_join": [s1.serf_addr]})
    serf1 = agents.serf("serf1", join=[s1.serf_addr])

    def diagnostics() -> str:
        return cluster.diagnostics() + "\n" + agents.diagnostics()

    estimates: dict[str, float] = {}

    def all_estimated() -> bool:
        asks = {
            "s1 rtt serf1": lambda: agent_rtt(s1, "serf1"),
            "c1 rtt serf1 s1": lambda: agent_rtt(c1, "serf1", "s1"),
            "serf rtt serf1 s1": lambda: serf_rtt(serf1, "serf1", "s1"),
            "serf rtt s1 c1": lambda: serf_rtt(serf1, "s1", "c1"),
        }
        for what, ask in asks.items():
            if what not in estimates and (value := ask()) is not None:
                estimates[what] = value
        return len(estimates) == len(asks)

    wait_for(all_estimated, timeout=60, what=f"every estimate (so far {estimates})", diagnostics=diagnostics)
    print("\n" + "\n".join(f"{what:<20} {value * 1000:.3f} ms" for what, value in estimates.items()))  # -s shows
    for what, value in estimates.items():
        assert 0 < value < 0.050, (what, value)

    def listed() -> list[dict[str, Any]] | None:  # s1 caches c1's coordinate once it has pinged c1 itself
        entries = requests.get(f"http://{s1.http_addr}/v1/coordinate/nodes", timeout=5).json()
        return entries if {e["Node"] for e in entries} >= {"s1", "c1", "serf1"} else None

    entries = wait_for(listed, timeout=30, what="s1 lists every member's coordinate", diagnostics=diagnostics)
    assert all(len(e["Coord"]["Vec"]) == 8 and e["Segment"] == "" for e in entries)
    me = requests.get(f"http://{c1.http_addr}/v1/agent/self", timeout=5).json()
    # it has learnt: moved off the origin (the error may stay at its 1.5 cap: loopback RTTs are mostly jitter)
    assert len(me["Coord"]["Vec"]) == 8 and any(me["Coord"]["Vec"])
    for agent in (s1, c1):
        assert "rejected coordinate" not in agent.proc.log_path.read_text(errors="replace")
    # each update's move is Consul's consul.serf.coordinate.adjustment-ms sample
    def moves() -> list[dict[str, Any]]:  # the last complete 10 s interval's, as Consul's JSON shows
        samples = requests.get(f"http://{s1.http_addr}/v1/agent/metrics", timeout=5).json()["Samples"]
        return [x for x in samples if x["Name"] == "consul.serf.coordinate.adjustment-ms" and x["Count"] >= 1]

    wait_for(moves, timeout=25, what="an adjustment-ms sample in /v1/agent/metrics", diagnostics=diagnostics)


def test_hostile_ack_payloads_leave_a_real_agent_untouched(cluster: Cluster) -> None:
    """A member (in-process, real sockets) answers the agent's pings with every kind of bad payload in turn: the
    agent keeps serving, its own coordinate never moves from the start (no good sample ever came), and the
    hostile member gets no coordinate in /v1/coordinate/nodes."""
    s1 = cluster.start("s1", server=True)
    acked: list[bytes] = []

    class Hostile(Serf):
        def ack_payload(self) -> bytes:
            payload = HOSTILE[len(acked) % len(HOSTILE)]
            acked.append(payload)
            return payload

    def factory(addr: tuple[str, int]) -> Serf:
        return Hostile(Config.local(), name="evil", addr=addr, rng=random.Random(7), now=trio.current_time())

    async def body(driver: Any) -> None:
        assert await driver.join([s1.serf_addr]) == 1
        with trio.fail_after(60):
            while len(acked) < 3 * len(HOSTILE):
                await trio.sleep(0.1)
        publication = requests.get(f"http://{s1.http_addr}/v1/coordinate/nodes", timeout=5).headers["X-Consul-Index"]
        # block past one more publication period (5 s): what it shows then comes after every rejected sample
        reply = await trio.to_thread.run_sync(lambda: requests.get(
            f"http://{s1.http_addr}/v1/coordinate/nodes?index={publication}&wait=6s", timeout=15))
        assert reply.status_code == 200
        assert [e["Node"] for e in reply.json()] == ["s1"]
        me = requests.get(f"http://{s1.http_addr}/v1/agent/self", timeout=5).json()
        assert me["Coord"]["Vec"] == [0.0] * 8 and me["Coord"]["Error"] == 1.5  # never moved
        assert s1.proc.alive()

    run_inprocess_with(factory, body)


def test_disable_coordinates_turns_them_off_in_a_real_agent(cluster: Cluster) -> None:
    """Consul's ``disable_coordinates``: no coordinate in /v1/agent/self, /v1/coordinate answers Consul's 401, and
    the start line does not name the key as having no effect."""
    s1 = cluster.start("s1", server=True, extra={"disable_coordinates": True})
    base = f"http://{s1.http_addr}"
    reply = requests.get(f"{base}/v1/coordinate/nodes", timeout=10)
    assert (reply.status_code, reply.text) == (401, "Coordinate support disabled")
    assert requests.get(f"{base}/v1/agent/self", timeout=10).json()["Coord"] is None
    assert "disable_coordinates" not in s1.proc.log_tail(200)
