"""Network coordinates against known delays: a mixed pool of real `serf agent`s and `python -m agent`s, each node
behind its own delaying relay (tests/delay_relay.py: this kernel has no netem qdisc, so the delay is made in user
space on loopback), so every packet sent to a node reaches it its own fixed delay late.

A probe from A to B crosses B's relay, its ack A's (memberlist acks the pinger's advertised address), so the round
trip between A and B is ``delay_A + delay_B`` plus what A and B take to answer and to notice the answer (a few ms
idle, tens on a loaded machine); the delays differ per node, so the pairs' round trips differ by up to 40% and the
estimates must tell them apart.  The round trips are measured with real memberlist pings through the relays, from
our own socket behind a relay of A's delay to B and one of B's delay to A: each includes one end's processing, so
their sum less the path they both cross (``delay_A + delay_B``) is the round trip with both ends' processing, as
the agents see it.  It is measured again at every look, since the load moves it.  `serf rtt` (asked of the serf
agent) and `python -m agent rtt` (asked of a triumvir agent) must both come within 20% of it, and of each other,
for every pair.
"""

from __future__ import annotations

import itertools
import socket
import statistics
import time
from collections.abc import Iterator

import pytest
from conftest import Agents, next_loopback_ip
from consul_agents import Cluster
from delay_relay import DelayRelay
from procs import free_port, wait_for
from test_coordinates_agents import agent_rtt
from test_interop_serf import serf_rtt

from protocol.codec import Ack, Ping, decode, encode
from protocol.packets import unwrap_packet

pytestmark = pytest.mark.interop

#: one-way delay towards each node (s): round trips of 150, 180 and 210 ms before processing, so that what a loaded
#: machine adds to an answer (tens of ms) moves them little
DELAYS = {"s1": 0.060, "serf1": 0.090, "c1": 0.120}
TOLERANCE = 0.20


@pytest.fixture
def relays() -> Iterator[list[DelayRelay]]:
    made: list[DelayRelay] = []
    yield made
    for relay in made:
        relay.close()


class Prober:
    """Our own UDP socket behind a relay of ``delay``: a ping sent from here is acked through that delay, as one
    from a node behind such a relay."""

    def __init__(self, delay: float, relays: list[DelayRelay]) -> None:
        self.ip, self.relay_ip = next_loopback_ip(), next_loopback_ip()
        self.port = free_port(self.ip)
        relays.append(DelayRelay.start(self.relay_ip, self.ip, delay, udp=[self.port]))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((self.ip, self.port))
        self.sock.settimeout(2)
        self.seq = 0

    def rtt(self, target: tuple[str, int], node: str, count: int = 3) -> float:
        """The median round trip of ``count`` memberlist pings to ``node`` at ``target`` (its relay)."""
        samples = []
        for _ in range(count):
            self.seq += 1
            ping = Ping(self.seq, node, socket.inet_aton(self.relay_ip), self.port, "rtt-probe")
            started = time.monotonic()
            self.sock.sendto(encode(ping), target)
            while True:  # skip anything that is not this ping's ack (a late ack of an earlier one)
                messages = [decode(m) for m in unwrap_packet(self.sock.recv(65536))]
                if any(isinstance(m, Ack) and m.seq_no == self.seq for m in messages):
                    break
            samples.append(time.monotonic() - started)
        return statistics.median(samples)


def close_to(value: float, reference: float) -> bool:
    return abs(value - reference) <= TOLERANCE * reference


def test_estimates_match_measured_round_trips(cluster: Cluster, agents: Agents, relays: list[DelayRelay]) -> None:
    advertised: dict[str, tuple[str, int]] = {}

    def behind_relay(name: str) -> tuple[tuple[str, int], str]:
        """(bind ip, port) for node ``name`` and its relay's ip, the relay already forwarding gossip."""
        ip, relay_ip = next_loopback_ip(), next_loopback_ip()
        port = free_port(ip)
        relays.append(DelayRelay.start(relay_ip, ip, DELAYS[name], udp=[port], tcp=[port]))
        advertised[name] = (relay_ip, port)
        return (ip, port), relay_ip

    at, relay_ip = behind_relay("s1")
    s1 = cluster.start("s1", server=True, at=at, extra={"advertise_addr": relay_ip, "gossip_profile": "lan"})
    relays[-1].forward(tcp=[s1.server_port])  # the client's RPCs to the server cross the relay too
    join = f"{advertised['s1'][0]}:{advertised['s1'][1]}"
    at, relay_ip = behind_relay("c1")
    c1 = cluster.start("c1", at=at, extra={"advertise_addr": relay_ip, "start_join": [join], "gossip_profile": "lan"})
    relays[-1].forward(tcp=[c1.server_port])
    at, relay_ip = behind_relay("serf1")
    serf1 = agents.serf("serf1", profile="lan", at=at, join=[join], extra=[f"-advertise={relay_ip}:{at[1]}"])

    def diagnostics() -> str:
        return cluster.diagnostics() + "\n" + agents.diagnostics()

    pairs = list(itertools.combinations(DELAYS, 2))
    probers = {name: Prober(delay, relays) for name, delay in DELAYS.items()}
    for a, b in pairs:  # the relays do what they say: a ping's round trip is the two delays and a little
        rtt = probers[a].rtt(advertised[b], b, count=5)
        assert DELAYS[a] + DELAYS[b] <= rtt < (DELAYS[a] + DELAYS[b]) * 1.5, (a, b, rtt)

    measured: dict[tuple[str, str], float] = {}
    rows: dict[tuple[str, str], tuple[float | None, float | None]] = {}

    def converged() -> bool:
        for a, b in pairs:
            both_ways = probers[a].rtt(advertised[b], b) + probers[b].rtt(advertised[a], a)
            measured[(a, b)] = both_ways - DELAYS[a] - DELAYS[b]
            rows[(a, b)] = (serf_rtt(serf1, a, b), agent_rtt(s1, a, b))
        return all(by_serf is not None and by_agent is not None and close_to(by_serf, by_agent)
                   and close_to(by_agent, by_serf) and close_to(by_serf, measured[pair])
                   and close_to(by_agent, measured[pair]) for pair, (by_serf, by_agent) in rows.items())

    started = time.monotonic()
    try:
        wait_for(converged, timeout=45, interval=1, diagnostics=diagnostics,
                 what="the estimates within 20% of each other and of the measured round trips")
    finally:  # -s shows the table, also when it failed
        print(f"\nafter {time.monotonic() - started:.1f} s:\n{'pair':<14}{'measured':>10}{'serf rtt':>10}"
              f"{'agent rtt':>11}  (ms)")
        for pair, (by_serf, by_agent) in rows.items():
            cells = "".join(f"{x * 1000:>10.1f}" if x is not None else f"{'-':>10}" for x in (by_serf, by_agent))
            print(f"{'-'.join(pair):<14}{measured[pair] * 1000:>10.1f}{cells}")
    # the estimates separate the nodes: the fastest pair is estimated well below the slowest, on both sides
    fastest, slowest = min(measured, key=measured.__getitem__), max(measured, key=measured.__getitem__)
    for side in (0, 1):
        assert rows[fastest][side] < rows[slowest][side]
    assert c1.proc.alive() and s1.proc.alive()
    for prober in probers.values():
        prober.sock.close()
