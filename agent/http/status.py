"""``/v1/status/*`` (consul-compat 1.2.11): the leader's RPC address (``""`` when there is none, never an error)
and the Raft peers.  A client agent forwards these to a server, so with no server known it fails.
"""

from __future__ import annotations

from agent.http.errors import NO_PATH_TO_DC, HTTPError
from agent.http.reads import require_servers
from agent.http.routes import Ctx, Route

__all__ = ["ROUTES", "status_leader", "status_peers"]


def _check(ctx: Ctx) -> None:
    dc = ctx.request.query.get("dc")
    if dc and dc != ctx.api.config.datacenter:
        raise HTTPError(500, NO_PATH_TO_DC)
    require_servers(ctx, ctx.api.table.current)


async def status_leader(ctx: Ctx) -> str:
    """GET /v1/status/leader: ``"IP:8300"`` or ``""``."""
    _check(ctx)
    return ctx.api.table.current.leader


async def status_peers(ctx: Ctx) -> list[str]:
    """GET /v1/status/peers: the voters once there is a leader; before that Raft has no configuration: ``[]``."""
    _check(ctx)
    snapshot = ctx.api.table.current
    return list(snapshot.servers) if snapshot.leader else []


ROUTES = (
    Route("/v1/status/leader", ("GET",), status_leader),
    Route("/v1/status/peers", ("GET",), status_peers),
)
