"""``/v1/session/*``: Consul's session endpoints (hashicorp/consul ``agent/session_endpoint.go``; session.mdx;
wave2-anchors §2.2).

* ``PUT /create``: the optional body as `state.leader.parse_session_create` reads it (this agent's node, Consul's
  defaults and texts); the leader chooses the ID and checks the node and its checks; answers ``{"ID": ...}``.
* ``PUT /destroy/<id>``: ``true`` (an unknown ID too, as Consul without ACLs).
* ``PUT /renew/<id>``: ``[session]`` after the leader re-armed its TTL; unknown: 404
  ``Session id '<id>' not found``.
* ``GET /info/<id>`` (``[session]`` or ``[]``), ``/node/<node>``, ``/list``: blocking reads with the consistency
  modes; their query metadata is set on errors too (Go's deferred ``setMeta``).

A missing ID is a 400 ``Missing session`` (``Missing node name`` for ``/node/``).
"""

from __future__ import annotations

from typing import Any

from agent.gostrings import decode_json
from agent.http import authz
from agent.http.blocking import parse_query_options
from agent.http.errors import HTTPError, bad_request
from agent.http.routes import Ctx, Route, path_arg
from agent.http.store import apply, check_dc, read, request_errors, store_errors
from agent.server.state.commands import SessionDestroy
from agent.server.state.leader import parse_session_create

__all__ = ["ROUTES"]

MISSING_SESSION = "Missing session"


def _create_body(ctx: Ctx) -> dict[str, Any] | None:
    """The body, if any (Consul decodes it only when Content-Length > 0): a JSON object."""
    raw = ctx.request.body
    if not raw:
        return None
    try:
        body = decode_json(raw)
    except ValueError as exc:
        raise bad_request(f"Request decode failed: {exc}") from None
    if body is None:
        return None
    if not isinstance(body, dict):
        kind = "array" if isinstance(body, list) else "string" if isinstance(body, str) else "number"
        raise bad_request(f"Request decode failed: json: cannot unmarshal {kind} into Go value of type "
                          "structs.Session")
    return body


async def session_create(ctx: Ctx) -> Any:
    check_dc(ctx, ctx.request.query.get("dc"))
    with request_errors(ctx):
        command = parse_session_create(_create_body(ctx), agent_node=ctx.api.config.node_name, session_id="")
    await authz.require(ctx, "session", command.node, "write")
    return {"ID": await apply(ctx, command)}


async def session_destroy(ctx: Ctx) -> Any:
    session_id = path_arg(ctx, "/v1/session/destroy/", MISSING_SESSION)
    await apply(ctx, SessionDestroy(session_id))
    return True


async def session_renew(ctx: Ctx) -> Any:
    opts = parse_query_options(ctx.request, ctx.api.config.datacenter)
    session_id = path_arg(ctx, "/v1/session/renew/", MISSING_SESSION)
    check_dc(ctx, opts.dc)
    with store_errors(ctx):
        sessions = await ctx.api.store_access.renew_session(session_id)
    if sessions is None:
        raise HTTPError(404, f"Session id '{session_id}' not found")
    return sessions


async def session_info(ctx: Ctx) -> Any:
    parse_query_options(ctx.request, ctx.api.config.datacenter)
    session_id = path_arg(ctx, "/v1/session/info/", MISSING_SESSION)
    return (await read(ctx, "session.info", {"id": session_id}, error_meta=True)).value


async def session_node(ctx: Ctx) -> Any:
    parse_query_options(ctx.request, ctx.api.config.datacenter)
    node = path_arg(ctx, "/v1/session/node/", "Missing node name")
    return (await read(ctx, "session.node", {"node": node}, error_meta=True)).value


async def session_list(ctx: Ctx) -> Any:
    return (await read(ctx, "session.list", {}, error_meta=True)).value


ROUTES = (
    Route("/v1/session/create", ("PUT",), session_create),
    Route("/v1/session/destroy/", ("PUT",), session_destroy),
    Route("/v1/session/renew/", ("PUT",), session_renew),
    Route("/v1/session/info/", ("GET",), session_info),
    Route("/v1/session/node/", ("GET",), session_node),
    Route("/v1/session/list", ("GET",), session_list),
)
