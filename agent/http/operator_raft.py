"""/v1/operator/raft/*: the Raft configuration and peer removal (Consul's operator_endpoint.go).

Both are answered by the Raft leader: the agent forwards them over the server port (AgentAPI.server_rpc), so a
follower or a client answers the same as the leader.  While there is no leader, or the one known just died, they
are held for the next one (Consul's 7 s RPC hold); with none by then they are a 500 ``No cluster leader``.  With
``?stale`` (Consul's AllowStale, ``operator raft list-peers -stale``) any server answers the configuration from
its own log, which is how an operator looks at a cluster that has lost its quorum.
"""

from __future__ import annotations

from typing import Any

from agent.http.errors import NO_CLUSTER_LEADER, HTTPError
from agent.http.reads import RPC_ERROR_PREFIX
from agent.http.routes import EMPTY, Ctx, Route

__all__ = ["ROUTES", "raft_configuration", "raft_peer"]


async def _leader_rpc(ctx: Ctx, method: str, args: dict[str, Any], *, stale: bool = False) -> Any:
    from agent.server.rpc import RPCError  # the server side stays out of agent/http's import graph until needed

    prefix = "" if ctx.api.config.server else RPC_ERROR_PREFIX
    try:
        return await ctx.api.server_rpc(method, args, stale=stale)
    except LookupError:
        raise HTTPError(500, prefix + NO_CLUSTER_LEADER) from None
    except RPCError as err:
        raise HTTPError(500, prefix + str(err)) from None


async def raft_configuration(ctx: Ctx) -> Any:
    """GET: {"Servers": [{ID, Node, Address, Leader, ProtocolVersion, Voter}], "Index": n}.  ``?stale``: any
    server answers with its own configuration (the operator's view of a cluster that lost its quorum)."""
    return await _leader_rpc(ctx, "Operator.RaftGetConfiguration", {}, stale=ctx.request.query.has("stale"))


async def raft_peer(ctx: Ctx) -> Any:
    """DELETE ?id=<server id> or ?address=<IP:port>: remove that server from the Raft configuration."""
    q = ctx.request.query
    has_id, has_address = q.has("id"), q.has("address")
    if not has_id and not has_address:
        raise HTTPError(400, "Must specify either ?id with the server's ID or ?address with IP:port of peer to remove")
    if has_id and has_address:
        raise HTTPError(400, "Must specify only one of ?id or ?address")
    args = {"id": q.get("id")} if has_id else {"address": q.get("address")}
    await _leader_rpc(ctx, "Operator.RaftRemovePeer", args)
    return EMPTY


ROUTES = (
    Route("/v1/operator/raft/configuration", ("GET",), raft_configuration),
    Route("/v1/operator/raft/peer", ("DELETE",), raft_peer),
)
