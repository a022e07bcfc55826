"""The endpoints this agent serves (Consul's ``http_register.go``, the subset implemented), assembled into the
router the server is built with.  The one module that imports every endpoint module; none of them imports it."""

from __future__ import annotations

from agent.http import (
    acl_endpoints,
    agent_endpoints,
    agent_token,
    authz,
    catalog,
    catalog_register,
    catalog_services,
    coordinate,
    events,
    health,
    kv,
    metrics_endpoint,
    monitor,
    operator,
    services_endpoints,
    sessions,
    status,
    stream,
    txn,
    ui,
)
from agent.http.routes import Router

__all__ = ["default_router"]


def default_router() -> Router:
    return Router(
        [*catalog.ROUTES, *agent_endpoints.ROUTES, *status.ROUTES, *stream.ROUTES, *ui.ROUTES,
         *catalog_services.ROUTES, *health.ROUTES, *services_endpoints.ROUTES, *operator.ROUTES,
         *kv.ROUTES, *sessions.ROUTES, *txn.ROUTES, *catalog_register.ROUTES, *acl_endpoints.ROUTES,
         *monitor.ROUTES, *metrics_endpoint.ROUTES, *events.ROUTES, *coordinate.ROUTES,
         *agent_token.ROUTES],
        sockets=stream.SOCKETS,
        guard=authz.guard,
    )
