"""``/v1/health/*`` (consul-compat 1.2.10): node checks, a service's checks, instances with health, checks by state.

Same read path as the catalog (leader rules, blocking on the index of what is read: the node's for
``/v1/health/node``, the service's for ``/v1/health/service`` and ``/checks``, the ``checks`` table for
``/state``), over the same merged catalog
(agent nodes and registered ones).  ``serfHealth`` comes from the member status, so a failed node's instances
show critical and drop out of ``?passing`` at once (trap 14); registered nodes have no serfHealth.
"""

from __future__ import annotations

from typing import Any

from agent.catalog import indexes, query
from agent.filtering.consul_types import CHECK_SERVICE_NODE, HEALTH_CHECK
from agent.goflags import parse_bool
from agent.http.catalog_services import health_check_json, node_service_json
from agent.http.errors import bad_request
from agent.http.filtering import FilterSpec
from agent.http.memo import memo_json
from agent.http.near import near_sorted
from agent.http.reads import meta_filters, read_snapshot
from agent.http.response import Encoded
from agent.http.routes import Ctx, Route, path_arg
from agent.http.views import node_view_json

__all__ = ["ROUTES"]

STATES = frozenset({"any", "passing", "warning", "critical"})


async def health_node(ctx: Ctx) -> list[dict[str, Any]]:
    """GET /v1/health/node/:node: serfHealth and the node's checks, by CheckID; ``[]`` for an unknown node."""
    name = path_arg(ctx, "/v1/health/node/", "Missing node name")
    snapshot, _ = await read_snapshot(ctx, lambda s: indexes.node_checks_read(s.indexes, name))
    view = query.find_node(snapshot, name, ctx.api.config.datacenter)
    if view is None:
        return []
    return [health_check_json(c) for c in query.node_checks(snapshot, view)]


async def health_checks(ctx: Ctx) -> list[dict[str, Any]]:
    """GET /v1/health/checks/:service: the service checks of every instance."""
    name = path_arg(ctx, "/v1/health/checks/", "Missing service name")
    snapshot, _ = await read_snapshot(ctx, lambda s: indexes.service_read(s.indexes, name))
    checks = [health_check_json(c) for c in query.service_checks(snapshot, name, dc=ctx.api.config.datacenter)]
    return near_sorted(ctx, checks, lambda c: c["Node"])


async def health_service(ctx: Ctx) -> Encoded | list[dict[str, Any]]:
    """GET /v1/health/service/:name[?passing][&tag=..]: ``[{Node, Service, Checks}]``, built once per snapshot
    and arguments (agent/http/memo.py)."""
    name = path_arg(ctx, "/v1/health/service/", "Missing service name")
    q = ctx.request.query
    passing = False
    if q.has("passing"):
        raw = q.get("passing")
        parsed = True if raw == "" else parse_bool(raw)
        if parsed is None:
            raise bad_request("Invalid value for ?passing")
        passing = parsed
    filters = meta_filters(ctx)
    tags = q.get_all("tag")
    snapshot, _ = await read_snapshot(ctx, lambda s: indexes.service_read(s.indexes, name))

    def build() -> list[dict[str, Any]]:
        instances = query.service_instances(
            snapshot, name, dc=ctx.api.config.datacenter, tags=tags, node_meta=filters
        )
        if passing:
            instances = [i for i in instances if all(c.check.status == "passing" for c in i.checks)]
        return [
            {
                "Node": node_view_json(i.node),
                "Service": node_service_json(i.service, i.create_index, i.modify_index),
                "Checks": [health_check_json(c) for c in i.checks],
            }
            for i in instances
        ]

    key = ("health.service", name, passing, tuple(tags), tuple(filters.items()))
    return memo_json(ctx, snapshot, key, build, lambda r: r["Node"]["Node"])


async def health_state(ctx: Ctx) -> list[dict[str, Any]]:
    """GET /v1/health/state/:state: checks in that state (``any``: all); an unknown state matches nothing."""
    state = path_arg(ctx, "/v1/health/state/", "Missing check state")
    filters = meta_filters(ctx)
    snapshot, _ = await read_snapshot(ctx, lambda s: indexes.checks_read(s.indexes, bool(filters)))
    if state not in STATES:
        return []
    checks = query.all_checks(snapshot, dc=ctx.api.config.datacenter, state=state, node_meta=filters)
    return near_sorted(ctx, [health_check_json(c) for c in checks], lambda c: c["Node"])


ROUTES = (
    Route("/v1/health/node/", ("GET",), health_node, FilterSpec(HEALTH_CHECK, rpc=True)),
    Route("/v1/health/checks/", ("GET",), health_checks, FilterSpec(HEALTH_CHECK, rpc=True)),
    Route("/v1/health/service/", ("GET",), health_service, FilterSpec(CHECK_SERVICE_NODE, rpc=True)),
    Route("/v1/health/state/", ("GET",), health_state, FilterSpec(HEALTH_CHECK, rpc=True)),
)
