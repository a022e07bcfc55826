"""``/v1/catalog/*``: the catalog as Consul's leader would have registered the LAN members (consul-compat 1.2.1-5),
merged with the nodes registered through ``/v1/catalog/register``.

Agents' nodes are the member table's snapshot seen through Consul's rules (alive, leaving and failed members are
registered, left and reaped ones are not); registered nodes are the servers' store as this agent's mirror last
read it, in the same snapshot (agent.catalog.query says how the two merge).  The leader in the snapshot is
Raft's (a server's own, a client's from a server: agent/server/).  Reads in the default mode need that leader
(500 ``No cluster leader``); ``?stale`` reads answer anyway; a client agent needs a known server first.

Each read answers with the index of what it read and blocks on that alone (agent.catalog.indexes): the
``nodes`` table for ``/v1/catalog/nodes``, the node for ``/v1/catalog/node/n``, the ``services`` table for
``/v1/catalog/services``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import trio

from agent.catalog import indexes, query
from agent.catalog.indexes import ReadIndex
from agent.http.blocking import ERROR_META, QueryOptions, meta_headers, parse_query_options, wait_read
from agent.http.errors import NO_CLUSTER_LEADER, NO_KNOWN_SERVERS, NO_PATH_TO_DC, HTTPError, bad_request
from agent.http.memo import memo_json
from agent.http.response import Encoded
from agent.http.routes import Ctx, Route
from agent.http.views import known_servers, node_view_json
from agent.members import LEADER

if TYPE_CHECKING:
    from agent.members import Snapshot

#: What a read answers with as X-Consul-Index and waits on when blocking (agent.catalog.indexes).
IndexOf = Callable[["Snapshot"], ReadIndex]

__all__ = ["ROUTES", "catalog_datacenters", "catalog_node", "catalog_nodes", "require_leader"]

RPC_ERROR_PREFIX = "rpc error making call: "
FILTER_UNSUPPORTED = "Failed to create boolean expression evaluator: filter expressions are not supported by this agent"


def _error_meta(ctx: Ctx) -> None:
    """Consul sets query meta even on RPC errors, from an empty QueryMeta: index 1, no leader known."""
    ctx.headers.update(ERROR_META)


def require_servers(ctx: Ctx, snapshot: Snapshot) -> None:
    """A client agent forwards reads to a server: with none alive it is ``No known Consul servers``."""
    config = ctx.api.config
    if not config.server and not known_servers(snapshot.members.values(), config.datacenter):
        raise HTTPError(500, NO_KNOWN_SERVERS)


async def require_leader(ctx: Ctx, opts: QueryOptions) -> Snapshot:
    """The snapshot to serve a read from: any with ``?stale``, else one with a leader, waiting at most the hold."""
    table = ctx.api.table
    snapshot = table.current
    require_servers(ctx, snapshot)
    if opts.stale or snapshot.leader:
        return snapshot
    hold = ctx.options.rpc_hold_timeout
    if hold > 0:
        with trio.move_on_after(hold):
            while not snapshot.leader:
                await table.wait_for((LEADER,))
                snapshot = table.current
        if snapshot.leader:
            return snapshot
    prefix = "" if ctx.api.config.server else RPC_ERROR_PREFIX
    raise HTTPError(500, prefix + NO_CLUSTER_LEADER)


async def _read(ctx: Ctx, index_of: IndexOf) -> tuple[Snapshot, QueryOptions]:
    """Consul's read path: parse (400s), route to the DC, find a leader, block until ``index_of`` passes
    ``?index``, then set the query meta with that index."""
    opts = parse_query_options(ctx.request, ctx.api.config.datacenter)
    try:
        if opts.dc != ctx.api.config.datacenter:
            raise HTTPError(500, NO_PATH_TO_DC)
        if ctx.request.query.get("filter"):
            raise HTTPError(500, FILTER_UNSUPPORTED)
        await require_leader(ctx, opts)
    except HTTPError:
        _error_meta(ctx)
        raise
    snapshot = await wait_read(ctx.api.table, index_of, opts, ctx.rng)
    ctx.headers.update(meta_headers(snapshot, opts, index_of(snapshot).index))
    return snapshot, opts


def _meta_filters(ctx: Ctx) -> dict[str, str]:
    """``node-meta=key:value`` (repeatable; ``key`` alone means an empty value): every pair must match."""
    filters: dict[str, str] = {}
    for raw in ctx.request.query.get_all("node-meta"):
        key, _, value = raw.partition(":")
        filters[key] = value
    return filters


async def catalog_nodes(ctx: Ctx) -> Encoded:
    """GET /v1/catalog/nodes: every registered node, by name; ``near`` is accepted and ignored (no coordinates).
    Built once per snapshot and filter (agent/http/memo.py)."""
    filters = _meta_filters(ctx)
    snapshot, _ = await _read(ctx, lambda s: indexes.nodes_read(s.indexes))

    def build() -> list[dict[str, Any]]:
        nodes = [  # remote nodes' meta comes with their replicated catalog record, registered ones' as registered
            node_view_json(v, _local_meta(ctx, v)) for v in query.catalog_nodes(snapshot, ctx.api.config.datacenter)
        ]
        if filters:
            nodes = [n for n in nodes if all(k in n["Meta"] and n["Meta"][k] == v for k, v in filters.items())]
        return nodes

    return memo_json(ctx, snapshot, ("catalog.nodes", tuple(filters.items())), build)


async def catalog_node(ctx: Ctx) -> dict[str, Any] | None:
    """GET /v1/catalog/node/:node: the node and its services, or JSON ``null`` (200) when it isn't registered."""
    name = ctx.request.path.removeprefix("/v1/catalog/node/")
    snapshot, _ = await _read(ctx, lambda s: indexes.node_read(s.indexes, name))
    if not name:
        raise bad_request("Missing node name")
    view = query.find_node(snapshot, name, ctx.api.config.datacenter)
    if view is None:
        return None
    from agent.http.catalog_services import node_services_json

    services = node_services_json(snapshot, view)  # the ``consul`` service on servers, then the record's
    return {"Node": node_view_json(view, _local_meta(ctx, view)), "Services": services}


def _local_meta(ctx: Ctx, view: query.NodeView) -> Mapping[str, str] | None:
    """This agent's own node shows its configured meta at once (its record may not be published yet)."""
    config = ctx.api.config
    return config.node_meta if view.member is not None and view.name == config.node_name else None


async def catalog_datacenters(ctx: Ctx) -> list[str]:
    """GET /v1/catalog/datacenters: ours only (no WAN federation); no query meta, as Consul."""
    require_servers(ctx, ctx.api.table.current)
    return [ctx.api.config.datacenter]


ROUTES = (
    Route("/v1/catalog/nodes", ("GET",), catalog_nodes),
    Route("/v1/catalog/node/", ("GET",), catalog_node),
    Route("/v1/catalog/datacenters", ("GET",), catalog_datacenters),
)
