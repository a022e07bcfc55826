"""``PUT /v1/catalog/register`` and ``/v1/catalog/deregister``: writes of external nodes, services and checks into
the servers' store (hashicorp/consul ``agent/catalog_endpoint.go``; catalog.mdx).

The body is read by `state.registration` (Consul's defaults and texts: a body it cannot decode is a 400
``Request decode failed: ...``, a rule of the server's ``Catalog.Register`` a 500 with its text) and committed
through the leader; both answer ``true``.  A ``Datacenter`` left out is this agent's; another one is Consul's
``No path to datacenter``.  How these records meet the agents' own in the catalog reads is docs/state.md's
"Catalog registrations and agent-owned records".
"""

from __future__ import annotations

from typing import Any

import attrs

from agent.http import authz
from agent.http.errors import decode_body
from agent.http.routes import Ctx, Route
from agent.http.store import apply, check_dc, request_errors
from agent.server.state.registration import parse_deregister, parse_register

__all__ = ["ROUTES", "catalog_deregister", "catalog_register"]


async def catalog_register(ctx: Ctx) -> Any:
    with request_errors(ctx):
        command = parse_register(decode_body(ctx.request.body))
    check_dc(ctx, command.datacenter)
    if not command.datacenter:
        command = attrs.evolve(command, datacenter=ctx.api.config.datacenter)
    await authz.vet_catalog_register(ctx, command)
    await apply(ctx, command)
    return True


async def catalog_deregister(ctx: Ctx) -> Any:
    body = decode_body(ctx.request.body)
    with request_errors(ctx):
        command = parse_deregister(body)
    if isinstance(body, dict):  # its Datacenter, matched as Go's encoding/json matches keys
        dc = next((v for k, v in body.items() if k.lower() == "datacenter"), "")
        check_dc(ctx, dc if isinstance(dc, str) else "")
    await authz.vet_catalog_deregister(ctx, command)
    await apply(ctx, command)
    return True


ROUTES = (
    Route("/v1/catalog/register", ("PUT",), catalog_register),
    Route("/v1/catalog/deregister", ("PUT",), catalog_deregister),
)
