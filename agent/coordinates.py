"""The LAN pool's network coordinates as the agent shows them: Consul's JSON form, and sorting by estimated RTT
(``?near``).  Pure, so the CLI (`rtt`) can use it without trio; agent/coordinate_book.py publishes them."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from protocol.coordinate import Coordinate

__all__ = [
    "coordinate_from_json",
    "lowered",
    "sort_by_distance",
]

T = TypeVar("T")


def coordinate_from_json(raw: Any) -> Coordinate | None:
    """Consul's JSON coordinate (``{Vec, Error, Adjustment, Height}``, numbers as Go decodes them into float64;
    missing fields zero, ``Vec`` null empty); None when it is not one."""
    if not isinstance(raw, Mapping):
        return None
    vec = raw.get("Vec")
    fields = [raw.get(k, 0) for k in ("Error", "Adjustment", "Height")]
    numbers = [*(vec or []), *(0 if f is None else f for f in fields)]
    if (vec is not None and not isinstance(vec, list)) or not all(
        isinstance(x, (int, float)) and not isinstance(x, bool) for x in numbers
    ):
        return None
    error, adjustment, height = (float(f or 0) for f in fields)
    return Coordinate(tuple(float(x) for x in vec or ()), error, adjustment, height)


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
