"""``/v1/agent/service*`` and ``/v1/agent/check*`` (consul-compat 1.2.9, 1.2.13): this agent's own services/checks.

Agent-local: they answer with or without a leader (trap 26: registration is local, the catalog follows by
anti-entropy).  Bodies are decoded as Go's encoding/json with DisallowUnknownFields (keys case-insensitive, unknown
ones a 400: agent.services.definitions does that).  Actions answer 200 with an empty body (trap 2).
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from agent.filtering.consul_types import AGENT_SERVICE, HEALTH_CHECK
from agent.goflags import parse_bool
from agent.gostrings import go_quote
from agent.http import authz
from agent.http.errors import HTTPError, bad_request, decode_body
from agent.http.filtering import FilterSpec, by_values
from agent.http.routes import EMPTY, Ctx, Route, path_arg
from agent.services.definitions import STATUSES, DefinitionError
from agent.services.manager import NotTTL, UnknownCheck, UnknownService

if TYPE_CHECKING:
    from agent.services.definitions import ServiceDef
    from agent.services.manager import ServiceManager

__all__ = ["ROUTES", "agent_service_json"]


def _manager(ctx: Ctx) -> ServiceManager:
    manager = getattr(ctx.api, "services", None)
    if manager is None:
        raise HTTPError(500, "services are not enabled on this agent")
    return manager


def _definition_error(exc: DefinitionError) -> HTTPError:
    return HTTPError(exc.status, exc.message)


def agent_service_json(service: ServiceDef, datacenter: str) -> dict[str, Any]:
    """An AgentService (values of /v1/agent/services): Port always present, Tags/Meta never null."""
    out: dict[str, Any] = {}
    if service.kind:
        out["Kind"] = service.kind
    out.update(
        {
            "ID": service.id,
            "Service": service.name,
            "Tags": list(service.tags),
            "Meta": dict(service.meta),
            "Port": service.port,
            "Address": service.address,
        }
    )
    if service.tagged_addresses:
        out["TaggedAddresses"] = {n: {"Address": a, "Port": p} for n, a, p in service.tagged_addresses}
    out.update(
        {
            "Weights": {"Passing": service.weights_passing, "Warning": service.weights_warning},
            "EnableTagOverride": service.enable_tag_override,
            "Datacenter": datacenter,
        }
    )
    return out


def _check_json(ctx: Ctx, check_id: str) -> dict[str, Any]:
    manager = _manager(ctx)
    state = manager.local.checks[check_id]
    record = manager.local.check_record(state)
    return {
        "Node": ctx.api.config.node_name,
        "CheckID": record.id,
        "Name": record.name,
        "Status": record.status,
        "Notes": record.notes,
        "Output": record.output,
        "ServiceID": record.service_id,
        "ServiceName": record.service_name,
        "ServiceTags": list(record.service_tags),
        "Type": record.type,
        "Interval": record.interval,
        "Timeout": record.timeout,
        "ExposedPort": 0,
        "Definition": {},
        "CreateIndex": 0,
        "ModifyIndex": 0,
    }


async def agent_services(ctx: Ctx) -> dict[str, Any]:
    """GET /v1/agent/services: ``{id: AgentService}`` of this agent (the ``consul`` service is not one)."""
    local = _manager(ctx).local
    dc = ctx.api.config.datacenter
    return {i: agent_service_json(local.services[i].definition, dc) for i in sorted(local.services)}


async def agent_service(ctx: Ctx) -> dict[str, Any]:
    """GET /v1/agent/service/:id: the AgentService plus ContentHash (also as X-Consul-ContentHash)."""
    service_id = ctx.request.path.removeprefix("/v1/agent/service/")
    state = _manager(ctx).local.services.get(service_id)
    if state is None:
        raise HTTPError(404, f"unknown service ID: {service_id}")
    out = agent_service_json(state.definition, ctx.api.config.datacenter)
    digest = hashlib.sha256(json.dumps(out, sort_keys=True).encode()).hexdigest()[:16]
    out["ContentHash"] = digest
    ctx.headers["X-Consul-ContentHash"] = digest
    return out


async def service_register(ctx: Ctx) -> Any:
    """PUT /v1/agent/service/register[?replace-existing-checks]."""
    q = ctx.request.query
    replace = q.has("replace-existing-checks") and q.get("replace-existing-checks") in ("", "true", "1")
    body = decode_body(ctx.request.body)
    vet = await authz.local_vet(ctx, authz.vet_service_register)
    try:
        _manager(ctx).register_service(body, replace_existing_checks=replace, vet=vet)
    except DefinitionError as exc:
        raise _definition_error(exc) from None
    return EMPTY


async def service_deregister(ctx: Ctx) -> Any:
    """PUT /v1/agent/service/deregister/:id: 404 for an unknown ID (current Consul)."""
    service_id = ctx.request.path.removeprefix("/v1/agent/service/deregister/")
    try:
        _manager(ctx).deregister_service(service_id)
    except DefinitionError as exc:  # the data dir refused the removal: nothing changed
        raise _definition_error(exc) from None
    except UnknownService as exc:
        raise HTTPError(404, str(exc)) from None
    return EMPTY


async def agent_checks(ctx: Ctx) -> dict[str, Any]:
    """GET /v1/agent/checks: ``{id: HealthCheck}`` of this agent."""
    checks = _manager(ctx).local.checks
    return {i: _check_json(ctx, i) for i in sorted(checks)}


async def check_register(ctx: Ctx) -> Any:
    """PUT /v1/agent/check/register: 404 for an unknown ServiceID."""
    body = decode_body(ctx.request.body)
    vet = await authz.local_vet(ctx, authz.vet_check_register)
    try:
        _manager(ctx).register_check(body, vet=vet)
    except DefinitionError as exc:
        raise _definition_error(exc) from None
    except LookupError as exc:
        raise HTTPError(404, str(exc).strip("'\"")) from None
    return EMPTY


async def check_deregister(ctx: Ctx) -> Any:
    check_id = ctx.request.path.removeprefix("/v1/agent/check/deregister/")
    try:
        _manager(ctx).deregister_check(check_id)
    except DefinitionError as exc:  # the data dir refused the removal: nothing changed
        raise _definition_error(exc) from None
    except UnknownCheck as exc:
        raise HTTPError(404, str(exc)) from None
    return EMPTY


def _update(ctx: Ctx, check_id: str, status: str, output: str) -> Any:
    try:
        _manager(ctx).update_ttl(check_id, status, output)
    except UnknownCheck as exc:
        raise HTTPError(404, str(exc)) from None
    except NotTTL as exc:
        raise HTTPError(500, str(exc)) from None
    return EMPTY


def _ttl_endpoint(status: str, prefix: str) -> Any:
    async def endpoint(ctx: Ctx) -> Any:
        """PUT /v1/agent/check/pass|warn|fail/:id[?note=...]."""
        return _update(ctx, ctx.request.path.removeprefix(prefix), status, ctx.request.query.get("note"))

    return endpoint


async def check_update(ctx: Ctx) -> Any:
    """PUT /v1/agent/check/update/:id with ``{"Status": ..., "Output": ...}``."""
    check_id = ctx.request.path.removeprefix("/v1/agent/check/update/")
    body = decode_body(ctx.request.body)
    if not isinstance(body, dict):
        raise bad_request("Request decode failed: json: cannot unmarshal into Go value of type checkUpdate")
    fields: dict[str, str] = {}
    for key, value in body.items():
        name = {"status": "Status", "output": "Output"}.get(key.lower())
        if name is None:
            raise bad_request(f'Request decode failed: json: unknown field "{key}"')
        if not isinstance(value, str):
            raise bad_request(f"Request decode failed: json: cannot unmarshal {type(value).__name__} into Go "
                              f"struct field checkUpdate.{name} of type string")  # fmt: skip
        fields[name] = value
    status = fields.get("Status", "")
    if status not in STATUSES:
        raise bad_request(f"Invalid check status: '{status}'")
    return _update(ctx, check_id, status, fields.get("Output", ""))


def _enable(ctx: Ctx) -> bool:
    """``?enable=`` as Consul reads it (strconv.ParseBool): 400 when missing or not a boolean."""
    query = ctx.request.query
    if not query.has("enable"):
        raise bad_request("Missing value for enable")
    raw = query.get("enable")
    enable = parse_bool(raw)
    if enable is None:
        raise bad_request(f"Invalid value for enable: {go_quote(raw)}")
    return enable


async def node_maintenance(ctx: Ctx) -> Any:
    """PUT /v1/agent/maintenance?enable=true|false[&reason=]: the ``_node_maintenance`` critical check."""
    manager = _manager(ctx)
    try:
        if _enable(ctx):
            manager.enable_node_maintenance(ctx.request.query.get("reason"))
        else:
            manager.disable_node_maintenance()
    except DefinitionError as exc:  # the data dir refused the write: nothing changed
        raise _definition_error(exc) from None
    return EMPTY


async def service_maintenance(ctx: Ctx) -> Any:
    """PUT /v1/agent/service/maintenance/:id?enable=true|false[&reason=]: 404 for an unknown service."""
    service_id = path_arg(ctx, "/v1/agent/service/maintenance/", "Missing service ID")
    enable = _enable(ctx)
    manager = _manager(ctx)
    try:
        if enable:
            manager.enable_service_maintenance(service_id, ctx.request.query.get("reason"))
        else:
            manager.disable_service_maintenance(service_id)
    except DefinitionError as exc:
        raise _definition_error(exc) from None
    except UnknownService as exc:
        raise HTTPError(404, str(exc)) from None
    return EMPTY


ROUTES = (
    Route("/v1/agent/services", ("GET",), agent_services, FilterSpec(AGENT_SERVICE, by_values)),
    Route("/v1/agent/service/", ("GET",), agent_service),
    Route("/v1/agent/service/register", ("PUT",), service_register),
    Route("/v1/agent/service/deregister/", ("PUT",), service_deregister),
    # Consul creates this filter without a type: the expression is checked against the first check it sees
    Route("/v1/agent/checks", ("GET",), agent_checks, FilterSpec(HEALTH_CHECK, by_values, check_now=False)),
    Route("/v1/agent/check/register", ("PUT",), check_register),
    Route("/v1/agent/check/deregister/", ("PUT",), check_deregister),
    Route("/v1/agent/check/pass/", ("PUT",), _ttl_endpoint("passing", "/v1/agent/check/pass/")),
    Route("/v1/agent/check/warn/", ("PUT",), _ttl_endpoint("warning", "/v1/agent/check/warn/")),
    Route("/v1/agent/check/fail/", ("PUT",), _ttl_endpoint("critical", "/v1/agent/check/fail/")),
    Route("/v1/agent/check/update/", ("PUT",), check_update),
    Route("/v1/agent/maintenance", ("PUT",), node_maintenance),
    Route("/v1/agent/service/maintenance/", ("PUT",), service_maintenance),
)
