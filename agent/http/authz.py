"""ACL enforcement on the HTTP API: the request's token, Consul's rule for each route, its refusal text and its
filtering of lists (hashicorp/consul ``agent/http.go`` ``parseToken``, ``agent/acl.go``, ``agent/*_endpoint.go``,
``agent/consul/acl_filter.go``; docs/acl.md).

* **The token**: ``?token=``, else ``X-Consul-Token``, else ``Authorization: Bearer <t>``, else the agent's
  ``default`` token (`configured_tokens`), else anonymous.  With ACLs off nothing here runs.
* **Refusal**: 403 with Consul's ``PermissionDeniedError`` text, ``Permission denied: token with AccessorID '<id>'
  lacks permission '<resource>:<level>' on "<name>"`` (the anonymous token said as such); an unknown secret is
  403 ``ACL not found``.
* **The table** `GUARDS` gives every route its rule: a check before the endpoint runs (what the route's path,
  query and, where Consul reads it, body name) and a filter of what it answers (lists keep what the token may
  read; ``X-Consul-Results-Filtered-By-ACLs: true`` where Consul's servers set it).  Where the rule needs the
  endpoint's own parse (a service definition, a catalog registration, a session's node, a transaction's ops)
  the endpoint calls the function here named for it.  `guard` is the router's hook around every endpoint.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from agent.acl.builtin import ANONYMOUS_TOKEN_ID
from agent.acl.rules import LIST, READ, WRITE
from agent.catalog import query
from agent.gostrings import decode_json, go_quote
from agent.http.catalog_services import node_services_json
from agent.http.errors import HTTPError
from agent.http.request import Request
from agent.http.response import Encoded, Response
from agent.server.access import NoLeader, ReadMode, StoreUnavailable
from agent.server.acl_resolver import ACLNotFound, Identity

if TYPE_CHECKING:
    from agent.acl.agent_tokens import AgentTokens
    from agent.api import AgentAPI
    from agent.config import ACLTokens
    from agent.http.routes import Ctx, Route
    from agent.server.state.commands import CatalogDeregister, CatalogRegister
    from agent.services.definitions import CheckDef, ServiceDef

__all__ = [
    "FILTERED_HEADER",
    "GUARDS",
    "Guard",
    "configured_tokens",
    "denied",
    "guard",
    "identity",
    "local_vet",
    "request_token",
    "require",
    "txn_denied",
    "vet_catalog_deregister",
    "vet_catalog_register",
    "vet_check_register",
    "vet_service_register",
]

FILTERED_HEADER = "X-Consul-Results-Filtered-By-ACLs"
ACL_NOT_FOUND = "ACL not found"


def request_token(request: Request, default: str = "") -> str:
    """Consul's ``parseToken``: ``?token=``, ``X-Consul-Token``, ``Authorization: Bearer <t>``, else ``default``."""
    token = request.query.get("token")
    if not token:
        token = request.header("x-consul-token")
    if not token:
        parts = request.header("authorization").split(" ")
        if len(parts) > 1 and parts[0].lower() == "bearer":
            token = " ".join(parts[1:]).strip().split(" ")[0].strip()
    return token or default


def configured_tokens(api: AgentAPI) -> ACLTokens | AgentTokens:
    """The agent's own tokens as its TokenResolver holds them: the supervisor gives it the AgentTokens holder
    (``acl.tokens``, changed at runtime by ``PUT /v1/agent/token/*``), the one place they are read."""
    return api.acl.tokens()


def acl_enabled(api: AgentAPI) -> bool:
    return bool(api.config.acl.enabled)


async def identity(ctx: Ctx) -> Identity:
    """The request's identity, resolved once per request (403 ``ACL not found`` for an unknown secret)."""
    if ctx.identity is None:
        secret = request_token(ctx.request, configured_tokens(ctx.api).default)
        try:
            ctx.identity = await ctx.api.acl.resolve(secret)
        except ACLNotFound:
            raise HTTPError(403, ACL_NOT_FOUND) from None
    return ctx.identity


def denied(who: Identity, resource: str, need: str, name: str = "") -> HTTPError:
    """Consul's ``PermissionDeniedError`` text as a 403."""
    text = "Permission denied: "
    anonymous = who.accessor_id == ANONYMOUS_TOKEN_ID
    text += "anonymous token" if anonymous else f"token with AccessorID '{who.accessor_id}'"
    text += f" lacks permission '{resource}:{need}'"
    if name:
        text += f" on {go_quote(name)}"
    if anonymous:
        text += ". The anonymous token is used implicitly when a request does not specify a token."
    return HTTPError(403, text)


def check(who: Identity, resource: str, name: str = "", need: str = READ) -> None:
    if not who.authorizer.allowed(resource, name, need):
        raise denied(who, resource, need, name)


async def require(ctx: Ctx, resource: str, name: str = "", need: str = READ) -> None:
    """403 unless the request's token has ``need`` on ``resource`` ``name`` (nothing when ACLs are off)."""
    if acl_enabled(ctx.api):
        check(await identity(ctx), resource, name, need)


# ------------------------------------------------------------------ checks that need the endpoint's parse


def _node(ctx: Ctx) -> str:
    return ctx.api.config.node_name


def _local_service_name(ctx: Ctx, service_id: str) -> str | None:
    services = getattr(ctx.api, "services", None)
    state = services.local.services.get(service_id) if services is not None else None
    return None if state is None else state.definition.name


async def local_vet(ctx: Ctx, vet: Callable[[Ctx, Identity, Any], None]) -> Callable[[Any], None] | None:
    """``vet`` bound to the request's identity, for the service manager to call once it has parsed the
    definition (None when ACLs are off)."""
    if not acl_enabled(ctx.api):
        return None
    who = await identity(ctx)
    return lambda definition: vet(ctx, who, definition)


def vet_service_register(ctx: Ctx, who: Identity, service: ServiceDef) -> None:
    """``vetServiceRegisterWithAuthorizer``: service:write on the service, and on the one it replaces."""
    check(who, "service", service.name, WRITE)
    existing = _local_service_name(ctx, service.id)
    if existing is not None:
        check(who, "service", existing, WRITE)


def _vet_local_check(ctx: Ctx, who: Identity, service_id: str) -> None:
    name = _local_service_name(ctx, service_id) if service_id else None
    if service_id and name is not None:
        check(who, "service", name, WRITE)
    else:
        check(who, "node", _node(ctx), WRITE)


def vet_check_register(ctx: Ctx, who: Identity, check_def: CheckDef) -> None:
    """``vetCheckRegisterWithAuthorizer``: a service's check needs service:write on it, a node check node:write
    on this node; the same for the check it replaces."""
    _vet_local_check(ctx, who, check_def.service_id)
    services = getattr(ctx.api, "services", None)
    existing = services.local.checks.get(check_def.id) if services is not None else None
    if existing is not None:
        _vet_local_check(ctx, who, existing.definition.service_id)


async def vet_catalog_register(ctx: Ctx, command: CatalogRegister) -> None:
    """``vetRegisterWithACL``: node:write unless only a service of a known node is written; service:write on
    the service; each check node:write or service:write on its service."""
    if not acl_enabled(ctx.api):
        return
    who = await identity(ctx)
    known = query.find_node(ctx.api.table.current, command.node, ctx.api.config.datacenter) is not None
    if command.service is None or not known:
        check(who, "node", command.node, WRITE)
    if command.service is not None:
        check(who, "service", command.service.name, WRITE)
    for record in command.checks:
        if record.service_id and command.service is not None and record.service_id == command.service.id:
            check(who, "service", command.service.name, WRITE)
        elif not record.service_id:
            check(who, "node", command.node, WRITE)


async def vet_catalog_deregister(ctx: Ctx, command: CatalogDeregister) -> None:
    """``vetDeregisterWithACL``: a service needs service:write on it (node:write when it is unknown here), a
    check its service's or its node's write, the whole node node:write."""
    if not acl_enabled(ctx.api):
        return
    who = await identity(ctx)
    if command.service_id or command.check_id:
        name = _catalog_service_name(ctx, command.node, command.service_id) if command.service_id else None
        if name is not None:
            check(who, "service", name, WRITE)
            return
    check(who, "node", command.node, WRITE)


def _catalog_service_name(ctx: Ctx, node: str, service_id: str) -> str | None:
    view = query.find_node(ctx.api.table.current, node, ctx.api.config.datacenter)
    if view is None:
        return None
    service = node_services_json(ctx.api.table.current, view).get(service_id)
    return None if service is None else str(service.get("Service", ""))


#: Consul's ``kvsPreApply`` levels for a transaction's KV verbs (get and get-tree are filtered on the way out).
_TXN_READ = frozenset({"check-index", "check-session", "check-not-exists"})
_TXN_FILTERED = frozenset({"get", "get-tree"})


async def txn_denied(ctx: Ctx, ops: Iterable[Any]) -> list[dict[str, Any]]:
    """``vetTxnOps``: one ``{"OpIndex", "What"}`` per KV op the token may not run (the endpoint's 409)."""
    if not acl_enabled(ctx.api):
        return []
    who = await identity(ctx)
    errors = []
    for index, op in enumerate(ops):
        verb, key = op.verb, op.key
        if verb in _TXN_FILTERED:
            continue
        if verb == "delete-tree":
            ok, need = who.authorizer.key_write_prefix(key), WRITE
        else:
            need = READ if verb in _TXN_READ else WRITE
            ok = who.authorizer.allowed("key", key, need)
        if not ok:
            errors.append({"OpIndex": index, "What": denied(who, "key", need, key).reason})
    return errors


# ------------------------------------------------------------------ the route table


@attrs.frozen
class Guard:
    """A route's rule: ``before`` checks the request (raise a 403), ``after`` filters what the endpoint answers;
    with neither, the endpoint runs as it is (it enforces itself, or the route needs nothing).  ``rule`` says
    which in a line (docs/acl.md shows it)."""

    before: Callable[[Ctx, Identity], Awaitable[None]] | None = None
    after: Callable[[Ctx, Identity, Any], Any] | None = None
    rule: str = ""


def _need(resource: str, need: str, name: Callable[[Ctx], str] = lambda ctx: "") -> Callable[..., Awaitable[None]]:
    async def before(ctx: Ctx, who: Identity) -> None:
        check(who, resource, name(ctx), need)

    return before


def _rest(prefix: str) -> Callable[[Ctx], str]:
    return lambda ctx: ctx.request.path.removeprefix(prefix)


def _mark(ctx: Ctx, kept: int, total: int, header: bool) -> None:
    """``X-Consul-Results-Filtered-By-ACLs: true`` when something was left out, on the endpoints whose Consul
    servers say so, and never to a request with no token at all (Consul's ``maskResultsFilteredByACLs``: an
    unauthenticated caller must not learn what exists)."""
    if header and kept != total and request_token(ctx.request, configured_tokens(ctx.api).default):
        ctx.headers[FILTERED_HEADER] = "true"


def _keep_list(allowed: Callable[[Identity, Any], bool], *, header: bool = True) -> Callable[..., Any]:
    def after(ctx: Ctx, who: Identity, result: Any) -> Any:
        if not isinstance(result, list):
            return result
        kept = [item for item in result if allowed(who, item)]
        _mark(ctx, len(kept), len(result), header)
        return kept

    return after


def _keep_map(allowed: Callable[[Identity, str, Any], bool], *, header: bool = True) -> Callable[..., Any]:
    def after(ctx: Ctx, who: Identity, result: Any) -> Any:
        if not isinstance(result, dict):
            return result
        kept = {k: v for k, v in result.items() if allowed(who, k, v)}
        _mark(ctx, len(kept), len(result), header)
        return kept

    return after


def _can(who: Identity, resource: str, name: str) -> bool:
    return who.authorizer.allowed(resource, name, READ)


def _service_ok(who: Identity, name: str) -> bool:
    """``aclFilter.allowService``: a check of no service needs nothing more."""
    return not name or _can(who, "service", name)


def _health_check_ok(who: Identity, item: Mapping[str, Any]) -> bool:
    return _can(who, "node", item.get("Node", "")) and _service_ok(who, item.get("ServiceName", ""))


def _catalog_node_after(ctx: Ctx, who: Identity, result: Any) -> Any:
    """``filterNodeServices``: the node unreadable is ``null``, else its services the token may read."""
    if not isinstance(result, dict):
        return result
    if not _can(who, "node", result["Node"]["Node"]):
        _mark(ctx, 0, 1, True)
        return None
    services = result.get("Services") or {}
    kept = {k: v for k, v in services.items() if _can(who, "service", v.get("Service", ""))}
    _mark(ctx, len(kept), len(services), True)
    return {**result, "Services": kept}


async def _agent_service_before(ctx: Ctx, who: Identity) -> None:
    name = _local_service_name(ctx, _rest("/v1/agent/service/")(ctx))
    if name is not None:
        check(who, "service", name, READ)


def _local_service_update(prefix: str) -> Callable[..., Awaitable[None]]:
    """``vetServiceUpdateWithAuthorizer``: service:write on the existing service (an unknown one is the
    endpoint's 404)."""

    async def before(ctx: Ctx, who: Identity) -> None:
        name = _local_service_name(ctx, _rest(prefix)(ctx))
        if name is not None:
            check(who, "service", name, WRITE)

    return before


def _local_check_update(prefix: str) -> Callable[..., Awaitable[None]]:
    """``vetCheckUpdateWithAuthorizer``: the existing check's service:write, or node:write on this node."""

    async def before(ctx: Ctx, who: Identity) -> None:
        services = getattr(ctx.api, "services", None)
        existing = services.local.checks.get(_rest(prefix)(ctx)) if services is not None else None
        if existing is not None:
            _vet_local_check(ctx, who, existing.definition.service_id)

    return before


def _agent_checks_ok(who: Identity, _id: str, item: Mapping[str, Any]) -> bool:
    name = item.get("ServiceName", "")
    return _can(who, "service", name) if name else _can(who, "node", item.get("Node", ""))


def _kv_key(ctx: Ctx) -> str:
    return ctx.request.path.removeprefix("/v1/kv/")


async def _kv_before(ctx: Ctx, who: Identity) -> None:
    """``KVS.Get`` key:read; ``List``/``ListKeys`` key:list on the prefix when ``enable_key_list_policy``
    (entries are filtered after); ``Apply`` key:write, a recursive delete ``KeyWritePrefix``."""
    key, q, method = _kv_key(ctx), ctx.request.query, ctx.request.method
    if method == "GET":
        if q.has("keys") or q.has("recurse"):
            if ctx.api.config.acl.enable_key_list_policy:
                check(who, "key", key, LIST)
        elif key:
            check(who, "key", key, READ)
    elif method == "DELETE" and q.has("recurse"):
        if not who.authorizer.key_write_prefix(key):
            raise denied(who, "key", WRITE, key)
    elif key:
        check(who, "key", key, WRITE)


def _kv_after(ctx: Ctx, who: Identity, result: Any) -> Any:
    """``filterDirEnt``/``filterKeys``: entries and key names the token may read; none left is a 404 (the root
    of ``?keys`` answers ``[]``)."""
    if not isinstance(result, list) or ctx.request.method != "GET":
        return result
    kept = [item for item in result if _can(who, "key", item if isinstance(item, str) else item.get("Key", ""))]
    _mark(ctx, len(kept), len(result), True)
    if not kept and result:
        return [] if ctx.request.query.has("keys") and not _kv_key(ctx) else Response(404, dict(ctx.headers))
    return kept


def _txn_after(ctx: Ctx, who: Identity, result: Any) -> Any:
    """``filterTxnResults``: KV results the token may not read are dropped."""
    if not isinstance(result, dict) or not result.get("Results"):
        return result
    kept = [r for r in result["Results"] if "KV" not in r or _can(who, "key", r["KV"].get("Key", ""))]
    _mark(ctx, len(kept), len(result["Results"]), True)
    return {**result, "Results": kept}


async def _session_by_id(ctx: Ctx, who: Identity, prefix: str) -> None:
    """``Session.Apply`` destroy and ``Session.Renew``: session:write on the session's node."""
    session_id = _rest(prefix)(ctx)
    if not session_id:
        return
    try:
        result = await ctx.api.store_access.query("session.info", {"id": session_id}, ReadMode())
    except (NoLeader, StoreUnavailable):
        return  # the endpoint meets the same error and answers it
    for session in result.value or ():
        check(who, "session", session.get("Node", ""), WRITE)


def _session_write(prefix: str) -> Callable[..., Awaitable[None]]:
    async def before(ctx: Ctx, who: Identity) -> None:
        await _session_by_id(ctx, who, prefix)

    return before


async def _coordinate_update_before(ctx: Ctx, who: Identity) -> None:
    """``Coordinate.Update``: node:write on the body's ``Node`` (a body that does not decode is the endpoint's
    400)."""
    try:
        body = decode_json(ctx.request.body)
    except ValueError:
        return
    if isinstance(body, dict):
        node = next((v for k, v in body.items() if k.lower() == "node"), "")
        check(who, "node", node if isinstance(node, str) else "", WRITE)


def _node_services_after(ctx: Ctx, who: Identity, result: Any) -> Any:
    """``filterNodeServiceList``: the node unreadable is the empty list (as an unknown node), else its services
    the token may read."""
    if not isinstance(result, dict) or not result.get("Node"):
        return result
    if not _can(who, "node", result["Node"]["Node"]):
        _mark(ctx, 0, 1, True)
        return {"Node": None, "Services": None}
    services = result.get("Services") or []
    kept = [v for v in services if _can(who, "service", v.get("Service", ""))]
    _mark(ctx, len(kept), len(services), True)
    return {**result, "Services": kept}


async def _keyring_before(ctx: Ctx, who: Identity) -> None:
    check(who, "keyring", "", READ if ctx.request.method == "GET" else WRITE)


def _event_name(ctx: Ctx) -> str:
    return ctx.request.path.removeprefix("/v1/event/fire/")


async def _node_read_all(ctx: Ctx, who: Identity) -> None:
    """The live view (the stream, the page): a token that may read every node."""
    if not who.authorizer.all_allowed("node", READ):
        raise denied(who, "node", READ)


_AGENT_READ = Guard(_need("agent", READ, _node), rule="agent:read on this node")
_AGENT_WRITE = Guard(_need("agent", WRITE, _node), rule="agent:write on this node")
_SELF_CHECKED = Guard(rule="enforced by the endpoint (acl:read/acl:write, bootstrap)")
_PUBLIC = Guard(rule="none (Consul checks none)")
_HEALTH_CHECKS = Guard(after=_keep_list(_health_check_ok), rule="filter: node:read and service:read per check")
_SESSIONS = Guard(after=_keep_list(lambda who, s: _can(who, "session", s.get("Node", ""))),
                  rule="filter: session:read on each session's node")  # fmt: skip

#: Every route's rule, by its pattern (a route missing here is refused with ACLs on: see `guard`).
GUARDS: Mapping[str, Guard] = {
    # ACL API: enforced inside agent/http/acl_endpoints.py
    **{p: _SELF_CHECKED for p in ("/v1/acl/bootstrap", "/v1/acl/token", "/v1/acl/token/", "/v1/acl/tokens",
                                  "/v1/acl/policy", "/v1/acl/policy/", "/v1/acl/policies", "/v1/acl/role",
                                  "/v1/acl/role/", "/v1/acl/roles", "/v1/acl/login", "/v1/acl/logout")},
    "/v1/agent/token/": Guard(rule="acl:write (enforced by the endpoint, agent/http/agent_token.py)"),
    # the agent itself
    "/v1/agent/members": Guard(after=_keep_list(lambda who, m: _can(who, "node", m.get("Name", "")), header=False),
                               rule="filter: node:read per member"),
    "/v1/agent/self": _AGENT_READ,
    "/v1/agent/metrics": _AGENT_READ,
    "/v1/agent/monitor": _AGENT_READ,
    "/v1/agent/join/": _AGENT_WRITE,
    "/v1/agent/leave": _AGENT_WRITE,
    "/v1/agent/reload": _AGENT_WRITE,
    "/v1/agent/force-leave/": Guard(_need("operator", WRITE), rule="operator:write"),
    "/v1/agent/maintenance": Guard(_need("node", WRITE, _node), rule="node:write on this node"),
    "/v1/agent/services": Guard(after=_keep_map(lambda who, _id, s: _can(who, "service", s.get("Service", "")),
                                                header=False), rule="filter: service:read per service"),
    "/v1/agent/service/": Guard(_agent_service_before, rule="service:read on the service"),
    "/v1/agent/service/register": Guard(rule="service:write on the service and the one it replaces (endpoint)"),
    "/v1/agent/service/deregister/": Guard(_local_service_update("/v1/agent/service/deregister/"),
                                           rule="service:write on the service"),
    "/v1/agent/service/maintenance/": Guard(_local_service_update("/v1/agent/service/maintenance/"),
                                            rule="service:write on the service"),
    "/v1/agent/checks": Guard(after=_keep_map(_agent_checks_ok, header=False),
                              rule="filter: service:read (service checks) or node:read (node checks)"),
    "/v1/agent/check/register": Guard(rule="service:write on its service, else node:write on this node (endpoint)"),
    **{f"/v1/agent/check/{verb}/": Guard(_local_check_update(f"/v1/agent/check/{verb}/"),
                                         rule="service:write on its service, else node:write on this node")
       for verb in ("deregister", "pass", "warn", "fail", "update")},
    # catalog and health
    "/v1/catalog/nodes": Guard(after=_keep_list(lambda who, n: _can(who, "node", n.get("Node", ""))),
                               rule="filter: node:read per node"),
    "/v1/catalog/node/": Guard(after=_catalog_node_after, rule="filter: node:read (else null), service:read"),
    "/v1/catalog/node-services/": Guard(after=_node_services_after,
                                        rule="filter: node:read (else the empty list), service:read"),
    "/v1/catalog/datacenters": _PUBLIC,
    "/v1/catalog/services": Guard(after=_keep_map(lambda who, name, _tags: _can(who, "service", name)),
                                  rule="filter: service:read per service"),
    "/v1/catalog/service/": Guard(after=_keep_list(lambda who, e: _can(who, "node", e.get("Node", ""))
                                                   and _can(who, "service", e.get("ServiceName", ""))),
                                  rule="filter: node:read and service:read per instance"),
    "/v1/catalog/register": Guard(rule="node:write (new node), service:write, checks' node/service write (endpoint)"),
    "/v1/catalog/deregister": Guard(rule="service:write on the service, else node:write (endpoint)"),
    "/v1/health/node/": _HEALTH_CHECKS,
    "/v1/health/checks/": _HEALTH_CHECKS,
    "/v1/health/state/": _HEALTH_CHECKS,
    "/v1/health/service/": Guard(after=_keep_list(lambda who, e: _can(who, "node", e["Node"]["Node"])
                                                  and _can(who, "service", e["Service"]["Service"])),
                                 rule="filter: node:read and service:read per instance"),
    # KV, transactions, sessions
    "/v1/kv/": Guard(_kv_before, _kv_after, rule="key:read (get), key:write (put/delete), write on the whole "
                                                 "prefix (delete ?recurse); lists filtered by key:read"),
    "/v1/txn": Guard(after=_txn_after, rule="per op: key:write, key:read (check-*), prefix write (delete-tree); "
                                            "results filtered by key:read (endpoint)"),
    "/v1/session/create": Guard(rule="session:write on the session's node (endpoint)"),
    "/v1/session/destroy/": Guard(_session_write("/v1/session/destroy/"), rule="session:write on its node"),
    "/v1/session/renew/": Guard(_session_write("/v1/session/renew/"), rule="session:write on its node"),
    "/v1/session/info/": _SESSIONS,
    "/v1/session/node/": _SESSIONS,
    "/v1/session/list": _SESSIONS,
    # events, operator, status
    "/v1/event/fire/": Guard(_need("event", WRITE, _event_name), rule="event:write on the name"),
    "/v1/event/list": Guard(after=_keep_list(lambda who, e: _can(who, "event", e.get("Name", "")), header=False),
                            rule="filter: event:read per event"),
    "/v1/operator/keyring": Guard(_keyring_before, rule="keyring:read (GET), keyring:write (others)"),
    "/v1/operator/raft/configuration": Guard(_need("operator", READ), rule="operator:read"),
    "/v1/operator/raft/peer": Guard(_need("operator", WRITE), rule="operator:write"),
    "/v1/coordinate/datacenters": _PUBLIC,
    "/v1/coordinate/nodes": Guard(after=_keep_list(lambda who, e: _can(who, "node", e.get("Node", ""))),
                                  rule="filter: node:read per node"),
    "/v1/coordinate/node/": Guard(_need("node", READ, _rest("/v1/coordinate/node/")), rule="node:read on the node"),
    "/v1/coordinate/update": Guard(_coordinate_update_before, rule="node:write on the body's Node"),
    "/v1/status/leader": _PUBLIC,
    "/v1/status/peers": _PUBLIC,
    # the live view
    "/v1/stream/members": Guard(_node_read_all, rule="node:read on every node"),
    "/ui/": Guard(rule="none: the page holds no cluster data (Consul's UI assets); its stream and reads enforce"),
}


def _foreign_origin(request: Request) -> str:
    """A browser's ``Origin`` naming another site than this agent (its ``Host``), else "": with ACLs on, a page
    elsewhere must not drive the API with a token the browser holds (scripts and CLIs send no Origin)."""
    origin = request.header("origin")
    if not origin or origin.split("://", 1)[-1].rstrip("/") == request.header("host"):
        return ""
    return origin


async def guard(route: Route, ctx: Ctx) -> Any:
    """Run ``route``'s endpoint under its `Guard` (the router's hook; ACLs off: the endpoint alone)."""
    if not acl_enabled(ctx.api):
        return await route.endpoint(ctx)
    foreign = _foreign_origin(ctx.request)
    if foreign:
        raise HTTPError(403, f"Permission denied: cross-origin request refused (Origin {foreign} is not this agent)")
    rule = GUARDS.get(route.pattern)
    if rule is None:  # a route added without a rule is closed, not open
        raise denied(await identity(ctx), "operator", WRITE)
    if rule.before is None and rule.after is None:  # public, or checked by the endpoint itself
        return await route.endpoint(ctx)
    who = await identity(ctx)
    if rule.before is not None:
        await rule.before(ctx, who)
    result = await route.endpoint(ctx)
    if rule.after is not None:
        if isinstance(result, Encoded):  # an answer encoded for everyone (agent/http/memo.py): filter its value
            result = json.loads(result.body)
        result = rule.after(ctx, who, result)
    return result

