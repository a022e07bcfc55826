"""``?near=NODE`` (``_agent``: this agent's node) on the catalog and health reads that Consul sorts.

Consul sorts on the servers, by the coordinates in the catalog; here by the coordinates this agent's Serf
published (agent.coordinates), with Consul's rules: nothing moves when the near node has no coordinate, nodes
without one go last, ties keep their order (a stable sort after the name order).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from agent.coordinates import lowered, sort_by_distance
from agent.http.routes import Ctx

__all__ = ["near_sorted"]

T = TypeVar("T")


def near_sorted(ctx: Ctx, items: Iterable[T], node_of: Callable[[T], str]) -> list[T]:
    """``items`` by estimated RTT from the ``?near`` node, nearest first (as they are without ``?near``)."""
    near = ctx.request.query.get("near")
    if not near:
        return list(items)
    if near == "_agent":
        near = ctx.api.config.node_name
    coordinates = ctx.api.coordinates.current.coordinates
    return sort_by_distance(items, node_of, lowered(coordinates).get(near.lower()), coordinates)
