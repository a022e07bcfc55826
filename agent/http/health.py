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
from agent.http.catalog import _meta_filters, _read
from agent.http.catalog_services import health_check_json, node_service_json
from agent.http.errors import bad_request
from agent.http.memo import memo_json
from agent.http.response import Encoded
from agent.http.routes import Ctx, Route
from agent.http.views import node_view_json

__all__ = ["ROUTES", "parse_bool"]

_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
STATES = frozenset({"any", "passing", "warning", "critical"})


def parse_bool(value: str) -> bool | None:
    """Go's strconv.ParseBool; None when it would fail."""
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    return None


async def health_node(ctx: Ctx) -> list[dict[str, Any]]:
    """GET /v1/health/node/:node: serfHealth and the node's checks, by CheckID; ``[]`` for an unknown node."""
    name = ctx.request.path.removeprefix("/v1/health/node/")
    if not name:
        raise bad_request("Missing node name")
    snapshot, _ = await _read(ctx, lambda s: indexes.node_checks_read(s.indexes, name))
    view = query.find_node(snapshot, name, ctx.api.config.datacenter)
    if view is None:
        return []
    return [health_check_json(c) for c in query.node_checks(snapshot, view)]


async def health_checks(ctx: Ctx) -> list[dict[str, Any]]:
    """GET /v1/health/checks/:service: the service checks of every instance."""
    name = ctx.request.path.removeprefix("/v1/health/checks/")
    if not name:
        raise bad_request("Missing service name")
    snapshot, _ = await _read(ctx, lambda s: indexes.service_read(s.indexes, name))
    return [health_check_json(c) for c in query.service_checks(snapshot, name, dc=ctx.api.config.datacenter)]


async def health_service(ctx: Ctx) -> Encoded:
    """GET /v1/health/service/:name[?passing][&tag=..]: ``[{Node, Service, Checks}]``, built once per snapshot
    and arguments (agent/http/memo.py)."""
    name = ctx.request.path.removeprefix("/v1/health/service/")
    if not name:
        raise bad_request("Missing service name")
    q = ctx.request.query
    passing = False
    if q.has("passing"):
        raw = q.get("passing")
        parsed = True if raw == "" else parse_bool(raw)
        if parsed is None:
            raise bad_request("Invalid value for ?passing")
        passing = parsed
    filters = _meta_filters(ctx)
    tags = q.get_all("tag")
    snapshot, _ = await _read(ctx, lambda s: indexes.service_read(s.indexes, name))

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
    return memo_json(ctx, snapshot, key, build)


async def health_state(ctx: Ctx) -> list[dict[str, Any]]:
    """GET /v1/health/state/:state: checks in that state (``any``: all); an unknown state matches nothing."""
    state = ctx.request.path.removeprefix("/v1/health/state/")
    if not state:
        raise bad_request("Missing check state")
    filters = _meta_filters(ctx)
    snapshot, _ = await _read(ctx, lambda s: indexes.checks_read(s.indexes, bool(filters)))
    if state not in STATES:
        return []
    checks = query.all_checks(snapshot, dc=ctx.api.config.datacenter, state=state, node_meta=filters)
    return [health_check_json(c) for c in checks]


ROUTES = (
    Route("/v1/health/node/", ("GET",), health_node),
    Route("/v1/health/checks/", ("GET",), health_checks),
    Route("/v1/health/service/", ("GET",), health_service),
    Route("/v1/health/state/", ("GET",), health_state),
)
