"""``PUT /v1/agent/token/<name>``: set one of the agent's own ACL tokens (Consul's ``agent_endpoint.go``
``AgentToken``).

Body ``{"Token": "<secret>"}``; names as `agent.acl.agent_tokens.KINDS` (Consul's and its legacy ones).  ACLs
off: 401 ``ACL support disabled``; the request's token needs ``acl:write``; an unknown name: 404 ``Token "<name>"
is unknown``; a body that does not decode: 400 ``Request decode failed: ...``; the tokens file not written: 500.
The new token is in effect for the next request (the store swaps its snapshot) and, with
``acl.enable_token_persistence``, survives a restart.

The ``acl:write`` check is `require_acl_write`: it asks ``ctx.authorize("acl", "", "write")`` when the request's
context has one (the hook the endpoint-wide enforcement provides), else resolves the token as ``/v1/acl/*`` does.
"""

from __future__ import annotations

import logging
from typing import Any

from agent.acl.agent_tokens import KINDS
from agent.gostrings import decode_json, go_quote
from agent.http.acl_endpoints import ACL_DISABLED, acl_caller
from agent.http.errors import HTTPError
from agent.http.routes import EMPTY, Ctx, Route

__all__ = ["ROUTES", "require_acl_write"]

log = logging.getLogger("agent.http")

PREFIX = "/v1/agent/token/"


async def require_acl_write(ctx: Ctx) -> None:
    """403 unless the request's token has ``acl:write``."""
    authorize = getattr(ctx, "authorize", None)
    if authorize is not None:
        await authorize("acl", "", "write")
        return
    (await acl_caller(ctx)).require("write")


def _token_of(raw: bytes) -> str:
    """``api.AgentToken`` as Go's decoder reads it."""
    if not raw.strip():
        raise HTTPError(400, "Request decode failed: EOF")
    try:
        body = decode_json(raw)
    except ValueError as exc:
        raise HTTPError(400, f"Request decode failed: {exc}") from None
    if not isinstance(body, dict):
        kind = "array" if isinstance(body, list) else "string" if isinstance(body, str) else "number"
        raise HTTPError(400, f"Request decode failed: json: cannot unmarshal {kind} into Go value of type "
                             "api.AgentToken")  # fmt: skip
    token = next((v for k, v in body.items() if str(k).lower() == "token"), None)
    if token is None:
        return ""
    if not isinstance(token, str):
        raise HTTPError(400, "Request decode failed: json: cannot unmarshal non-string into Go struct field "
                             "AgentToken.Token of type string")  # fmt: skip
    return token


async def agent_token(ctx: Ctx) -> Any:
    if not ctx.api.config.acl.enabled:
        raise HTTPError(401, ACL_DISABLED)
    await require_acl_write(ctx)
    token = _token_of(ctx.request.body)
    name = ctx.request.path.removeprefix(PREFIX)
    if name not in KINDS:
        raise HTTPError(404, f"Token {go_quote(name)} is unknown")
    try:
        ctx.api.acl_tokens.update(name, token)
    except OSError as err:
        raise HTTPError(500, f"failed to persist tokens - {err}") from None
    log.info("agent: Updated agent's ACL token: token=%s", name)
    return EMPTY


ROUTES = (Route(PREFIX, ("PUT",), agent_token),)
