"""Serf's network coordinates over the real protocol.Node on tests/simnet.py (seeded links, virtual clock).

Each simulated link has a fixed one-way latency, so the true RTT of a pair is twice it: after a few minutes of
probing, every member's estimate of every other member must be close to that, computed from coordinates that
only ever travelled on ping acks. A member that sends hostile ack payloads must not move anyone's coordinate.
"""

from __future__ import annotations

import math
import random
from typing import Any

import msgpack
import pytest
from simnet import SimNet
from test_sim_serf import LAN, build, converged, serf

from protocol.codec import Ack, decode, encode, packb
from protocol.config import Config
from protocol.coordinate import Coordinate, decode_ack_payload, encode_ack_payload
from protocol.node import Diagnostic
from protocol.serf import Serf
from protocol.state import NodeState, NodeStateType


def true_rtt(net: SimNet, a: str, b: str) -> float:
    return 2 * net.link_latency(net.hosts[a].addr, net.hosts[b].addr)


def relative_errors(net: SimNet, members: list[str]) -> list[float]:
    """Each observer's estimate of each other member, from its own cache, against the link's true RTT."""
    errors = []
    for observer in members:
        s = serf(net, observer)
        mine = s.coordinate()
        assert mine is not None
        for other in members:
            if other == observer:
                continue
            theirs = s.cached_coordinate(other)
            assert theirs is not None, (observer, other)
            truth = true_rtt(net, observer, other)
            errors.append(abs(mine.distance_to(theirs) - truth) / truth)
    return errors


def place_on_a_plane(net: SimNet, names: list[str], seed: int) -> None:
    """Latencies a metric space can hold: hosts at seeded points of a 30 ms square, one-way = half the distance
    plus a 0.5 ms access link each side (what Vivaldi's height models)."""
    rng = random.Random(seed)
    points = {name: (rng.uniform(0, 0.030), rng.uniform(0, 0.030)) for name in names}
    for a in names:
        for b in names:
            if a < b:
                (xa, ya), (xb, yb) = points[a], points[b]
                net.set_link_latency(net.hosts[a].addr, net.hosts[b].addr, math.hypot(xa - xb, ya - yb) / 2 + 0.001)


def test_coordinates_converge_to_the_link_latencies() -> None:
    net = SimNet(seed=5)
    members = build(net, LAN, 8)
    place_on_a_plane(net, members, seed=5)
    assert net.run_until(lambda: converged(net, members), deadline=net.now + 30)
    net.run_for(300)
    errors = relative_errors(net, members)
    assert sum(errors) / len(errors) < 0.25, sorted(errors)
    # every member's own coordinate is cached under its name too (serf's GetCachedCoordinate(self))
    for name in members:
        s = serf(net, name)
        assert s.cached_coordinate(name) == s.coordinate()
        assert s.stats()["coordinate_resets"] == 0


def test_disable_coordinates_sends_empty_acks_and_keeps_no_cache() -> None:
    cfg = Config.lan(enable_compression=False, disable_coordinates=True)
    net = SimNet(seed=6)
    members = build(net, cfg, 3)
    assert net.run_until(lambda: converged(net, members), deadline=net.now + 30)
    net.run_for(30)
    s = serf(net, members[0])
    assert s.coordinate() is None and s.cached_coordinates() == {} and "coordinate_resets" not in s.stats()
    assert s.ack_payload() == b""


class HostileSerf(Serf):
    """A member whose acks carry a payload an attacker chose."""

    payload = b""

    def ack_payload(self) -> bytes:
        return self.payload


HOSTILE = [
    b"\x02" + encode_ack_payload(Coordinate((0.001,) * 8, 0.1, 0.0, 1e-5)),  # unknown ping version
    b"\x01\xc1\xff",  # not msgpack
    b"\x01" + packb({"Vec": [0.5] * 3, "Error": 0.1, "Adjustment": 0.0, "Height": 0.0}),  # wrong dimensionality
    b"\x01" + msgpack.packb({"Vec": [math.nan] * 8, "Error": 0.1, "Adjustment": 0.0, "Height": 0.0}),
    b"\x01" + msgpack.packb({"Vec": [0.0] * 8, "Error": math.inf, "Adjustment": 0.0, "Height": 0.0}),
    b"\x01" + msgpack.packb({"Vec": "x" * 8}),
]


@pytest.mark.parametrize("payload", HOSTILE)
def test_hostile_ack_payloads_never_poison_a_coordinate(payload: bytes) -> None:
    net = SimNet(seed=9, debug=True)  # keep debug diagnostics: the drop lines are debug
    members = build(net, LAN, 4)
    place_on_a_plane(net, members, seed=9)

    def hostile(addr: Any, rng: random.Random, now: float) -> Serf:
        m = HostileSerf(LAN, name="evil", addr=addr, rng=rng, now=now)
        m.payload = payload
        return m

    net.spawn("evil", hostile)
    net.do("evil", lambda m, now: m.join(now, [net.hosts[members[0]].addr]))
    assert net.run_until(lambda: converged(net, [*members, "evil"]), deadline=net.now + 30)
    net.run_for(120)
    for name in members:
        s = serf(net, name)
        mine = s.coordinate()
        assert mine is not None and mine.is_valid()
        assert s.cached_coordinate("evil") is None  # never cached, never used
        rejected = [e for e in net.events(name, Diagnostic) if "evil" in e.message
                    and e.kind in ("serf-malformed", "coordinate-rejected") and e.level == "debug"]
        assert rejected, name
    assert sum(relative_errors(net, members)) / 12 < 0.5  # the honest members still converge among themselves


def test_notify_ping_complete_rejects_without_touching_state() -> None:
    """The delegate hook itself: every hostile payload and a bad RTT leave coordinate, cache and filters alone."""
    s = Serf(LAN, name="a", addr=("10.0.0.1", 7946), rng=random.Random(1), now=0.0)
    peer = NodeState("b", ("10.0.0.2", 7946), b"", 1, NodeStateType.ALIVE, 0.0)
    good = encode_ack_payload(Coordinate((0.003,) + (0.0,) * 7, 0.4, 0.0, 1e-5))
    s.notify_ping_complete(peer, 0.004, good)
    before = (s.coordinate(), s.cached_coordinates(), s.ack_payload())
    for payload in HOSTILE:
        s.notify_ping_complete(peer, 0.004, payload)
    s.notify_ping_complete(peer, 11.0, good)  # an RTT serf refuses
    assert (s.coordinate(), s.cached_coordinates(), s.ack_payload()) == before
    assert decode_ack_payload(s.ack_payload()) == s.coordinate()
    assert s.malformed == 3  # version, msgpack, Vec type; the other three are well-formed but refused
    assert s.coordinate_counts == {"rejected": 4, "zero_rtt": 0}  # those three and the RTT: serf's counter
    assert len(s.coordinate_adjustments) == 1 and s.coordinate_adjustments[0] > 0  # the one good update moved us


def test_acks_on_the_wire_carry_our_coordinate() -> None:
    """A ping to a Serf is answered with Ack(seq, 0x01 + msgpack coordinate): serf's AckPayload."""
    from protocol import packets
    from protocol.codec import Ping

    s = Serf(LAN, name="a", addr=("10.0.0.1", 7946), rng=random.Random(1), now=0.0)
    while s.poll_transmit() is not None:
        pass
    s.handle_datagram(0.1, ("10.0.0.2", 7946), encode(Ping(7, "a")))
    tx = s.poll_transmit()
    ack = decode(packets.unwrap_packet(tx.data)[0])
    assert isinstance(ack, Ack) and ack.seq_no == 7
    assert decode_ack_payload(ack.payload) == s.coordinate()
