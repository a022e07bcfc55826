"""The LAN pool's network coordinates as the agent publishes them (``/v1/coordinate/*``, ``?near``, ``rtt``).

Consul's clients send their Serf coordinate to the servers every 15 s or more, and the servers write them into
the catalog in batches every 5 s; readers see the catalog's copy, with a Raft index to block on. Here every
agent already holds every member's coordinate: its own Serf caches the coordinate each peer sends on its ping
acks (protocol.serf). The book publishes that cache every ``interval`` (Consul's 5 s batch period) as a
snapshot with its own index, raised only when some coordinate changed, so blocking reads wake at Consul's pace
rather than on every probe.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, TypeVar

import attrs
import trio

if TYPE_CHECKING:
    from protocol.coordinate import Coordinate

__all__ = ["PUBLISH_INTERVAL", "CoordinateBook", "CoordinateSnapshot", "lowered", "sort_by_distance"]

PUBLISH_INTERVAL = 5.0  # Consul's coordinate_update_period: how often the servers apply coordinate updates

T = TypeVar("T")


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
        self.publish()

    @property
    def enabled(self) -> bool:
        """False when Serf keeps no coordinates (disable_coordinates): Consul then answers 401."""
        return self._source is not None

    def live(self) -> Mapping[str, Coordinate]:
        """The cache as it is now (``/v1/agent/self``'s ``Coord`` is the live one, as Consul's)."""
        return self._source() if self._source is not None else {}

    def publish(self) -> bool:
        """Take the cache now; a new index only if a coordinate was added, changed or dropped."""
        fresh = dict(self.live())
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


def lowered(coordinates: Mapping[str, Coordinate]) -> dict[str, Coordinate]:
    """The coordinates by lower-cased node name (Consul's coordinate table is indexed that way)."""
    return {name.lower(): coord for name, coord in coordinates.items()}


def sort_by_distance(items: Iterable[T], node_of: Callable[[T], str], origin: Coordinate | None,
                     coordinates: Mapping[str, Coordinate]) -> list[T]:
    """Consul's sortNodesByDistanceFrom: a stable sort by estimated RTT from ``origin``; items whose node has no
    coordinate go last, in their order; without an origin coordinate nothing moves. Node names match without
    regard to case, as Consul's coordinate index does."""
    ordered = list(items)
    if origin is None:
        return ordered
    by_name = lowered(coordinates)

    def distance(item: T) -> float:
        coord = by_name.get(node_of(item).lower())
        if coord is None or not origin.is_compatible_with(coord):
            return math.inf
        return origin.distance_to(coord)

    ordered.sort(key=distance)
    return ordered
