"""``/v1/catalog/*``: the catalog as Consul's leader would have registered the LAN members (consul-compat 1.2.1-5),
merged with the nodes registered through ``/v1/catalog/register``.

Agents' nodes are the member table's snapshot seen through Consul's rules (alive, leaving and failed members are
registered, left and reaped ones are not); registered nodes are the servers' store as this agent's mirror last
read it, in the same snapshot (agent.catalog.query says how the two merge).  The leader in the snapshot is
Raft's (a server's own, a client's from a server: agent/server/).  Reads in the default mode need that leader
(500 ``No cluster leader``); ``?stale`` reads answer anyway; a client agent needs a known server first.

Each read answers with the index of what it read and blocks on that alone (agent.catalog.indexes): the
``nodes`` table for ``/v1/catalog/nodes``, the node for ``/v1/catalog/node/n`` and ``/v1/catalog/node-services/n``,
the ``services`` table for ``/v1/catalog/services``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.catalog import indexes, query
from agent.filtering.consul_types import NODE, NODE_SERVICE
from agent.http.blocking import parse_query_options
from agent.http.catalog_services import node_services_json
from agent.http.filtering import FilterSpec, by_services
from agent.http.memo import memo_json
from agent.http.reads import meta_filters, read_snapshot, require_servers
from agent.http.response import Encoded
from agent.http.routes import Ctx, Route, path_arg
from agent.http.views import node_view_json

__all__ = ["ROUTES", "catalog_datacenters", "catalog_node", "catalog_node_services", "catalog_nodes"]


async def catalog_nodes(ctx: Ctx) -> Encoded | list[dict[str, Any]]:
    """GET /v1/catalog/nodes: every registered node, by name (by RTT from ``?near``); built once per snapshot and
    node-meta filter (agent/http/memo.py)."""
    filters = meta_filters(ctx)
    snapshot, _ = await read_snapshot(ctx, lambda s: indexes.nodes_read(s.indexes))

    def build() -> list[dict[str, Any]]:
        nodes = [  # remote nodes' meta comes with their replicated catalog record, registered ones' as registered
            node_view_json(v, _local_meta(ctx, v)) for v in query.catalog_nodes(snapshot, ctx.api.config.datacenter)
        ]
        if filters:
            nodes = [n for n in nodes if all(k in n["Meta"] and n["Meta"][k] == v for k, v in filters.items())]
        return nodes

    return memo_json(ctx, snapshot, ("catalog.nodes", tuple(filters.items())), build, lambda n: n["Node"])


async def catalog_node(ctx: Ctx) -> dict[str, Any] | None:
    """GET /v1/catalog/node/:node: the node and its services, or JSON ``null`` (200) when it isn't registered.
    As Consul's handler: the query options' 400s, then the name's, at once; only then the leader and the wait."""
    parse_query_options(ctx.request, ctx.api.config.datacenter)
    name = path_arg(ctx, "/v1/catalog/node/", "Missing node name")
    snapshot, _ = await read_snapshot(ctx, lambda s: indexes.node_read(s.indexes, name))
    view = query.find_node(snapshot, name, ctx.api.config.datacenter)
    if view is None:
        return None
    services = node_services_json(snapshot, view)  # the ``consul`` service on servers, then the record's
    return {"Node": node_view_json(view, _local_meta(ctx, view)), "Services": services}


async def catalog_node_services(ctx: Ctx) -> dict[str, Any]:
    """GET /v1/catalog/node-services/:node: the node and its services as a list; ``{"Node": null, "Services":
    null}`` when it isn't registered (Consul's NodeServiceList, a struct even then)."""
    name = path_arg(ctx, "/v1/catalog/node-services/", "Missing node name")
    snapshot, _ = await read_snapshot(ctx, lambda s: indexes.node_read(s.indexes, name))
    view = query.find_node(snapshot, name, ctx.api.config.datacenter)
    if view is None:
        return {"Node": None, "Services": None}
    services = list(node_services_json(snapshot, view).values())
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
    Route("/v1/catalog/nodes", ("GET",), catalog_nodes, FilterSpec(NODE, rpc=True)),
    Route("/v1/catalog/node/", ("GET",), catalog_node, FilterSpec(NODE_SERVICE, by_services, rpc=True)),
    Route("/v1/catalog/node-services/", ("GET",), catalog_node_services,
          FilterSpec(NODE_SERVICE, by_services, rpc=True)),
    Route("/v1/catalog/datacenters", ("GET",), catalog_datacenters),
)
