"""The LAN pool's network coordinates as the agent publishes them (``/v1/coordinate/*``, ``?near``, ``rtt``).

Consul's clients send their Serf coordinate to the servers every 15 s or more, and the servers write them into
the catalog in batches every 5 s; readers see the catalog's copy, with a Raft index to block on. Here every
agent already holds every member's coordinate: its own Serf caches the coordinate each peer sends on its ping
acks (protocol.serf). The book publishes that cache every ``interval`` (Consul's 5 s batch period) as a
snapshot with its own index, raised only when some coordinate changed, so blocking reads wake at Consul's pace
rather than on every probe.

A coordinate written through ``PUT /v1/coordinate/update`` is shown for its node until that node's coordinate in
the cache next changes: in Consul it lasts until the node's agent next sends its own (every 15 s or more); here
the next ack from that node replaces it (at once for a live peer, never for a node nobody pings).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import attrs
import trio

from protocol.coordinate import Coordinate

__all__ = ["PUBLISH_INTERVAL", "CoordinateBook", "CoordinateSnapshot"]

PUBLISH_INTERVAL = 5.0  # Consul's coordinate_update_period: how often the servers apply coordinate updates


@attrs.frozen
class CoordinateSnapshot:
    """Every member's coordinate as last published, and the index of that publication (never 0)."""

    index: int
    coordinates: Mapping[str, Coordinate]


class CoordinateBook:
    """Publishes ``source()`` (name -> coordinate, Serf's cache) as indexed snapshots; blocking reads wait here."""

    def __init__(self, source: Callable[[], Mapping[str, Coordinate]] | None = None, *,
                 interval: float = PUBLISH_INTERVAL) -> None:
        self._source = source
        self.interval = interval
        self.current = CoordinateSnapshot(1, {})
        self._changed = trio.Event()
        self._written: dict[str, tuple[Coordinate, Coordinate | None]] = {}  # node -> (written, cache's then)
        self.publish()

    @property
    def enabled(self) -> bool:
        """False when Serf keeps no coordinates (disable_coordinates): Consul then answers 401."""
        return self._source is not None

    def live(self) -> Mapping[str, Coordinate]:
        """The cache as it is now (``/v1/agent/self``'s ``Coord`` is the live one, as Consul's)."""
        return self._source() if self._source is not None else {}

    def write(self, node: str, coord: Coordinate) -> None:
        """``PUT /v1/coordinate/update``: show ``coord`` for ``node`` until the cache's coordinate for it changes."""
        self._written[node] = (coord, self.live().get(node))
        self.publish()

    def publish(self) -> bool:
        """Take the cache now; a new index only if a coordinate was added, changed or dropped."""
        fresh = dict(self.live())
        for node, (coord, then) in list(self._written.items()):
            if fresh.get(node) == then:
                fresh[node] = coord
            else:
                del self._written[node]  # the node's own coordinate moved on
        if fresh == self.current.coordinates:
            return False
        self.current = CoordinateSnapshot(self.current.index + 1, fresh)
        self._changed.set()
        self._changed = trio.Event()
        return True

    async def run(self) -> None:
        """Publish every ``interval`` until cancelled."""
        while True:
            await trio.sleep(self.interval)
            self.publish()

    async def wait_past(self, index: int, timeout: float) -> CoordinateSnapshot:
        """The current snapshot once its index passes ``index``, or when ``timeout`` is up."""
        with trio.move_on_after(timeout):
            while self.current.index <= index:
                await self._changed.wait()
        return self.current
