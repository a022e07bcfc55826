"""``/v1/acl/*``: bootstrap, tokens, policies and roles (Consul's ``agent/acl_endpoint.go`` and the checks of
``agent/consul/acl_endpoint.go``), over the agent's ``store_access`` (agent/server/access.py), so a client agent
answers the same as a server.

Each endpoint needs ``acl:read`` (reads) or ``acl:write`` (writes) of the request's token, resolved as for every
endpoint (`agent.http.authz.identity`: the agent's TokenResolver) and decided by `agent.acl.authorizer`; a read
without ``acl:write`` sees every SecretID as ``<hidden>``.  ``/v1/acl/bootstrap`` needs no token,
``/v1/acl/token/self`` only the token itself.  Consul's statuses and texts: ACLs off, 401 ``ACL support
disabled``; an unknown token or object, 403 ``ACL not found``; a refusal, 403 ``Permission denied: token with
AccessorID '<id>' lacks permission 'acl:write'`` (``anonymous token`` for the anonymous one); bootstrap refused,
403 ``Permission denied: ACL bootstrap no longer allowed (reset index: N)``; a body that does not decode, 400; a
rule of the store, 500 with its text.

The token comes from ``?token=``, else ``X-Consul-Token``, else ``Authorization: Bearer`` (Consul's
``parseTokenInternal``), else the agent's default token (`agent.http.authz.configured_tokens`: ``acl.tokens``, which
``PUT /v1/agent/token/default`` changes).  agent/http/authz.py enforces every other endpoint.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import attrs

from agent.gostrings import decode_json, go_quote
from agent.http.acl_bodies import body_fields, policy_command, role_command, token_command
from agent.http.authz import check, configured_tokens, identity, request_token
from agent.http.errors import NO_CLUSTER_LEADER, HTTPError
from agent.http.routes import Ctx, Route
from agent.server.access import CommandFailed, NoLeader, QueryResult, ReadMode, StoreUnavailable
from agent.server.acl_resolver import Identity
from agent.server.state import commands as c
from agent.server.state.acl_leader import check_policy, check_role_name, check_token_ids
from agent.server.state.acl_views import REDACTED

__all__ = ["ACL_DISABLED", "ROUTES", "acl_caller", "request_token"]

ACL_DISABLED = "ACL support disabled"
ACL_NOT_FOUND = "ACL not found"
BOOTSTRAP_REFUSED = "ACL bootstrap no longer allowed"


def uuid_index_error(text: str) -> str | None:
    """Why memdb's UUID index cannot look ``text`` up (Consul's ``uuidStringToBytes``), or None."""
    if len(text) != 36:
        return "UUID must be 36 characters"
    if text.count("-") > 4:
        return f'UUID should have maximum of 4 "-"; got {text.count("-")}'
    bad = next((ch for ch in text.replace("-", "") if ch not in "0123456789abcdefABCDEF"), None)
    if bad is not None:
        return f"encoding/hex: invalid byte: U+{ord(bad):04X} '{bad}'"  # Go's %#U
    return None


@attrs.frozen
class _Caller:
    """The request's identity (agent/http/authz.py resolves it, as for every endpoint)."""

    who: Identity

    def require(self, level: str) -> None:
        check(self.who, "acl", "", level)

    @property
    def sees_secrets(self) -> bool:
        return self.who.authorizer.allowed("acl", "", "write")


def _enabled(ctx: Ctx) -> None:
    if not ctx.api.config.acl.enabled:
        raise HTTPError(401, ACL_DISABLED)


async def _query(ctx: Ctx, name: str, args: dict[str, Any]) -> QueryResult:
    q = ctx.request.query
    mode = ReadMode("stale" if q.has("stale") else "consistent" if q.has("consistent") else "default")
    try:
        result = await ctx.api.store_access.query(name, args, mode)
    except NoLeader:
        raise HTTPError(500, NO_CLUSTER_LEADER) from None
    except StoreUnavailable as err:
        raise HTTPError(500, str(err)) from None
    ctx.headers.update({"X-Consul-Index": str(max(1, result.index)),
                        "X-Consul-KnownLeader": "true" if result.known_leader else "false",
                        "X-Consul-LastContact": str(result.last_contact_ms)})  # fmt: skip
    return result


async def _apply(ctx: Ctx, command: c.Command) -> Any:
    try:
        return await ctx.api.store_access.apply(command)
    except NoLeader:
        raise HTTPError(500, NO_CLUSTER_LEADER) from None
    except (CommandFailed, StoreUnavailable) as err:
        raise HTTPError(500, str(err)) from None


async def _identity(ctx: Ctx, secret: str) -> dict[str, Any]:
    """``acl.identity`` of ``secret``: the token's JSON and the rules that apply here; 403 when unknown."""
    config = ctx.api.config
    result = await _query(ctx, "acl.identity",
                          {"secret_id": secret, "datacenter": config.datacenter, "now": time.time_ns()})  # fmt: skip
    if result.value is None:
        raise HTTPError(403, ACL_NOT_FOUND)
    return dict(result.value)


async def _caller(ctx: Ctx) -> _Caller:
    _enabled(ctx)
    return _Caller(await identity(ctx))


#: The request's token and its decisions, for the agent's endpoints that need ``acl:*`` (agent_token.py).
acl_caller = _caller


def _body(ctx: Ctx, what: str, *, optional: bool = False) -> Any:
    raw = ctx.request.body
    if not raw.strip():
        if optional:
            return {}
        raise HTTPError(400, f"{what} decoding failed: EOF")
    try:
        return decode_json(raw)
    except ValueError as exc:
        raise HTTPError(400, f"{what} decoding failed: {exc}") from None


def _new_id() -> str:
    return str(uuid.uuid4())


def _redacted(token: dict[str, Any], caller: _Caller) -> dict[str, Any]:
    return token if caller.sees_secrets else {**token, "SecretID": REDACTED}


async def _found(ctx: Ctx, name: str, args: dict[str, Any], kind: str = "") -> Any:
    """The object the read names; absent: 404 ``Requested <kind> does not exist: ACL not found`` (Consul's policy
    and role reads), or 403 ``ACL not found`` (no ``kind``: a token read, whose RPC refuses a missing token)."""
    value = (await _query(ctx, name, args)).value
    if value is None:
        if kind:
            raise HTTPError(404, f"Requested {kind} does not exist: {ACL_NOT_FOUND}")
        raise HTTPError(403, ACL_NOT_FOUND)
    return value


async def _delete(ctx: Ctx, command: c.Command, kind: str) -> bool:
    """A delete; 404 ``Cannot find <kind> to delete`` when there was nothing to delete."""
    if not await _apply(ctx, command):
        raise HTTPError(404, f"Cannot find {kind} to delete")
    return True


# ------------------------------------------------------------------ bootstrap


async def acl_bootstrap(ctx: Ctx) -> Any:
    """PUT: the first global-management token, once: ``{"ID": <secret>, ...the token}``."""
    _enabled(ctx)
    secret = body_fields(_body(ctx, "Request", optional=True), "BootstrapRequest", "Request").str("BootstrapSecret")
    if secret and (problem := check_token_ids("", secret)):
        raise HTTPError(400, problem)
    secret = secret or _new_id()
    try:
        await ctx.api.store_access.apply(c.ACLBootstrap(accessor_id=_new_id(), secret_id=secret))
    except CommandFailed as err:
        if BOOTSTRAP_REFUSED in str(err):
            raise HTTPError(403, f"Permission denied: {err}") from None
        raise HTTPError(500, str(err)) from None
    except NoLeader:
        raise HTTPError(500, NO_CLUSTER_LEADER) from None
    token = await _found(ctx, "acl.token.self", {"secret_id": secret})
    return {"ID": secret, **token}


# ------------------------------------------------------------------ tokens


async def _token_set(ctx: Ctx, cmd: c.ACLTokenSet) -> Any:
    if cmd.create and (problem := check_token_ids(cmd.accessor_id, cmd.secret_id)):
        raise HTTPError(500, problem)
    if cmd.create and not cmd.secret_id:
        cmd = attrs.evolve(cmd, secret_id=_new_id())
    accessor = await _apply(ctx, cmd)
    return await _found(ctx, "acl.token", {"accessor_id": accessor})


async def acl_token_create(ctx: Ctx) -> Any:
    """PUT /v1/acl/token: a new token (IDs generated unless given)."""
    (await _caller(ctx)).require("write")
    given = token_command(_body(ctx, "Token"), accessor_id="", create=True)
    return await _token_set(ctx, given if given.accessor_id else attrs.evolve(given, accessor_id=_new_id()))


async def acl_token(ctx: Ctx) -> Any:
    """/v1/acl/token/self (GET), /v1/acl/token/:accessor (GET, PUT, DELETE), /v1/acl/token/:accessor/clone (PUT)."""
    rest = ctx.request.path.removeprefix("/v1/acl/token/")
    method = ctx.request.method
    _enabled(ctx)
    if rest == "self" and method == "GET":
        identity = await _identity(ctx, request_token(ctx.request, configured_tokens(ctx.api).default))
        if identity["Token"] is None:
            raise HTTPError(403, ACL_NOT_FOUND)
        return identity["Token"]
    cloning = rest.endswith("/clone") and method == "PUT"
    if not cloning and (not rest or "/" in rest):  # Consul's handler answers this before its RPC resolves a token
        raise HTTPError(400, "Missing token ID")
    caller = await _caller(ctx)
    if cloning:
        caller.require("write")
        original = await _found(ctx, "acl.token", {"accessor_id": rest.removesuffix("/clone")})
        asked = body_fields(_body(ctx, "Token", optional=True), "ACLToken", "Token")
        clone = token_command(original, accessor_id="", create=True)
        clone = attrs.evolve(clone, accessor_id=_new_id(), secret_id="", expiration_ttl=0,
                             description=asked.str("Description") or clone.description)  # fmt: skip
        return await _token_set(ctx, clone)
    if method == "GET":
        caller.require("read")
        return _redacted(await _found(ctx, "acl.token", {"accessor_id": rest}), caller)
    caller.require("write")
    if method == "DELETE":
        return await _delete(ctx, c.ACLTokenDelete(accessor_id=rest), "token")
    return await _token_set(ctx, token_command(_body(ctx, "Token"), accessor_id=rest, create=False))


async def acl_tokens(ctx: Ctx) -> Any:
    """GET /v1/acl/tokens[?policy=&role=]: every token (secrets hidden without acl:write)."""
    caller = await _caller(ctx)
    caller.require("read")
    q = ctx.request.query
    tokens = (await _query(ctx, "acl.tokens", {"policy": q.get("policy"), "role": q.get("role")})).value
    return [_redacted(t, caller) for t in tokens]


# ------------------------------------------------------------------ policies and roles


@attrs.frozen
class _Kind:
    """A policy or a role: the same four endpoints over its own body, check, query and delete command."""

    title: str  # "Policy" / "Role": the body's kind and the texts'
    query: str  # the named read of one object
    build: Callable[..., Any]  # body, object_id, new_id -> the set command
    problem: Callable[[Any], str | None]  # the leader's pre-check of a set command
    delete: Callable[[str], c.Command]

    @property
    def prefix(self) -> str:
        return f"/v1/acl/{self.title.lower()}/"

    async def set(self, ctx: Ctx, object_id: str) -> Any:
        cmd = self.build(_body(ctx, self.title), object_id, _new_id())
        if problem := self.problem(cmd):
            raise HTTPError(500, problem)
        await _apply(ctx, cmd)
        return await _found(ctx, self.query, {"id": cmd.id})

    async def create(self, ctx: Ctx) -> Any:
        (await _caller(ctx)).require("write")
        return await self.set(ctx, "")

    async def one(self, ctx: Ctx) -> Any:
        """<prefix>:id (GET, PUT, DELETE), <prefix>name/:name (GET)."""
        rest = ctx.request.path.removeprefix(self.prefix)
        _enabled(ctx)
        if not rest and ctx.request.method != "GET":  # Consul's handler answers this before its RPC resolves a token
            raise HTTPError(400, f"Missing {self.title.lower()} ID")
        caller = await _caller(ctx)
        if ctx.request.method == "GET":
            caller.require("read")
            if rest.startswith("name/"):
                args = {"name": rest.removeprefix("name/")}
            else:
                if problem := uuid_index_error(rest):  # memdb's UUID index refuses the lookup
                    raise HTTPError(500, f"failed acl {self.title.lower()} lookup: {problem}")
                args = {"id": rest}
            return await _found(ctx, self.query, args, self.title.lower())
        caller.require("write")
        if ctx.request.method == "DELETE":
            return await _delete(ctx, self.delete(rest), self.title.lower())
        return await self.set(ctx, rest)


POLICY = _Kind("Policy", "acl.policy", lambda body, oid, new: policy_command(body, policy_id=oid, new_id=new),
               lambda cmd: check_policy(cmd.name, cmd.rules), lambda oid: c.ACLPolicyDelete(id=oid))
ROLE = _Kind("Role", "acl.role", lambda body, oid, new: role_command(body, role_id=oid, new_id=new),
             lambda cmd: check_role_name(cmd.name), lambda oid: c.ACLRoleDelete(id=oid))


async def acl_policies(ctx: Ctx) -> Any:
    (await _caller(ctx)).require("read")
    return (await _query(ctx, "acl.policies", {})).value


async def acl_roles(ctx: Ctx) -> Any:
    (await _caller(ctx)).require("read")
    return (await _query(ctx, "acl.roles", {"policy": ctx.request.query.get("policy")})).value


# ------------------------------------------------------------------ login and logout


async def acl_login(ctx: Ctx) -> Any:
    """POST /v1/acl/login: a token for a bearer token an auth method validates.  Auth methods are not stored
    here, so every login names an unknown one: Consul's 403 ``ACL not found: auth method "<name>" not found``."""
    _enabled(ctx)
    try:
        params = body_fields(_body(ctx, "Login"), "ACLLoginParams", "Login")
    except HTTPError as err:  # Consul's text for this body: "Failed to decode request body:: <json error>"
        raise HTTPError(400, "Failed to decode request body:: " + err.reason.removeprefix("Login decoding failed: ")) \
            from None
    raise HTTPError(403, f"{ACL_NOT_FOUND}: auth method {go_quote(params.str('AuthMethod'))} not found")


async def acl_logout(ctx: Ctx) -> Any:
    """POST /v1/acl/logout: deletes a token made by a login; any other token is refused (``ACL.Logout``)."""
    _enabled(ctx)
    secret = request_token(ctx.request)
    identity = await _identity(ctx, secret) if secret else {"Token": None}
    if identity["Token"] is None:
        raise HTTPError(403, ACL_NOT_FOUND)
    raise HTTPError(403, "Permission denied")  # no token here comes from a login (no auth methods)


ROUTES = (
    Route("/v1/acl/login", ("POST",), acl_login),
    Route("/v1/acl/logout", ("POST",), acl_logout),
    Route("/v1/acl/bootstrap", ("PUT",), acl_bootstrap),
    Route("/v1/acl/token", ("PUT",), acl_token_create),
    Route("/v1/acl/token/", ("GET", "PUT", "DELETE"), acl_token),
    Route("/v1/acl/tokens", ("GET",), acl_tokens),
    Route("/v1/acl/policy", ("PUT",), POLICY.create),
    Route("/v1/acl/policy/", ("GET", "PUT", "DELETE"), POLICY.one),
    Route("/v1/acl/policies", ("GET",), acl_policies),
    Route("/v1/acl/role", ("PUT",), ROLE.create),
    Route("/v1/acl/role/", ("GET", "PUT", "DELETE"), ROLE.one),
    Route("/v1/acl/roles", ("GET",), acl_roles),
)
