"""Serf's network coordinates: the Vivaldi client fed by memberlist's pings (serf's ping_delegate.go).

Every ack we send carries our coordinate; every direct ping's RTT and the peer's coordinate move ours. The
cache keeps the coordinate each member last sent us (ours under our own name). With disable_coordinates
there is no client: acks carry nothing and every lookup answers None.
"""

from __future__ import annotations

import random
from collections import deque

from protocol.coordinate import (
    Coordinate,
    CoordinateError,
    VivaldiClient,
    decode_ack_payload,
    encode_ack_payload,
)
from protocol.serf_core import LEVEL_DEBUG, SerfCore
from protocol.state import NodeState


class Coordinates:
    """serf's coordinate client and cache (nil when disable_coordinates), and its metrics."""

    def __init__(self, core: SerfCore) -> None:
        self._core = core
        # Its own rng, seeded by name: the rare random direction it draws never shifts the shared rng's sequence.
        self.client: VivaldiClient | None = None
        self.cache: dict[str, Coordinate] = {}
        self._ack_payload = b""
        #: serf's coordinate metrics: samples refused by the client, zero RTTs, and how far each update moved us
        #: (ms; the owner drains it, as Node.probe_durations)
        self.counts = {"rejected": 0, "zero_rtt": 0}
        self.adjustments: deque[float] = deque(maxlen=256)
        if not core.config.disable_coordinates:
            self.client = VivaldiClient(rng=random.Random(f"vivaldi:{core.name}"))
            self.cache[core.name] = self.client.coordinate
            self._ack_payload = encode_ack_payload(self.client.coordinate)

    def forget(self, name: str) -> None:
        """A reaped member's coordinate goes with it."""
        if self.client is not None:
            self.client.forget_node(name)
            self.cache.pop(name, None)

    def ack_payload(self) -> bytes:
        """serf's pingDelegate.AckPayload: version byte + our coordinate (empty with disable_coordinates)."""
        return self._ack_payload

    def notify_ping_complete(self, node: NodeState, rtt: float, payload: bytes) -> None:
        """serf's pingDelegate.NotifyPingComplete: a direct ping's RTT and the peer's coordinate update ours.

        A payload we cannot use (version, msgpack, dimensionality, NaN, RTT range) is dropped with a debug line
        and leaves our coordinate, filters and cache as they were."""
        client = self.client
        if client is None or not payload:
            return
        try:
            other = decode_ack_payload(payload)
        except CoordinateError as exc:
            self._core.drop_malformed(LEVEL_DEBUG, f"serf: bad ping payload from {node.name}: {exc}")
            return
        before = client.coordinate
        try:
            mine = client.update(node.name, other, rtt)
        except CoordinateError as exc:  # well-formed but unusable (dimensionality, NaN, RTT range): serf's TRACE
            self.counts["rejected"] += 1
            self._core.diag(LEVEL_DEBUG, f"serf: rejected coordinate from {node.name}: {exc}", "coordinate-rejected")
            return
        if rtt == 0:
            self.counts["zero_rtt"] += 1
        self.adjustments.append(before.distance_to(mine) * 1000.0)
        self.cache[node.name] = other
        self.cache[self._core.name] = mine
        self._ack_payload = encode_ack_payload(mine)
