"""/v1/operator/keyring: Consul's gossip keyring endpoint (operator_endpoint.go), over Serf's key queries.

GET lists (``[KeyringResponse]``), POST installs, PUT makes primary, DELETE removes; ``{"Key": "<base64>"}`` is
the body of the last three. ``relay-factor`` (0..5) asks each member to relay its answer through that many
others; ``local-only`` is for GET only. Any member reporting failure (or a query that timed out) turns into
Consul's 500 listing the pool's error and each member's message. This agent has one pool, the LAN; Consul's WAN
entry is absent.
"""

from __future__ import annotations

import json
from typing import Any

from agent.goflags import parse_bool
from agent.http import operator_raft
from agent.http.errors import HTTPError, bad_request
from agent.http.routes import EMPTY, Ctx, Route

__all__ = ["ROUTES", "keyring_json"]

_OPERATIONS = {"GET": "list-keys", "POST": "install-key", "PUT": "use-key", "DELETE": "remove-key"}


def keyring_json(datacenter: str, response: Any) -> dict[str, Any]:
    """One Consul KeyringResponse for the LAN pool (Messages only when there are some, as api's omitempty)."""
    out: dict[str, Any] = {"WAN": False, "Datacenter": datacenter, "Segment": ""}
    if response.messages:
        out["Messages"] = dict(sorted(response.messages.items()))
    out["Keys"] = dict(sorted(response.keys.items()))
    out["PrimaryKeys"] = {k: v for k, v in sorted(response.primary_keys.items()) if k}
    out["NumNodes"] = response.num_nodes
    return out


def _errors_or_none(datacenter: str, error: str | None, messages: dict[str, str]) -> str | None:
    """Consul's keyringErrorsOrNil, as hashicorp/go-multierror prints it."""
    if not error:
        return None
    lines = [f"{datacenter} (LAN) error: {error}", *(f"{node}: {msg}" for node, msg in sorted(messages.items()))]
    head = "1 error occurred:" if len(lines) == 1 else f"{len(lines)} errors occurred:"
    return head + "\n\t" + "\n\t".join(f"* {line}" for line in lines) + "\n\n"


def _key_from_body(ctx: Ctx) -> str:
    raw = ctx.request.body
    if not raw.strip():
        raise bad_request("Request decode failed: EOF")
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise bad_request(f"Request decode failed: {exc}") from None
    if not isinstance(body, dict):
        raise bad_request("Request decode failed: expected a JSON object")
    key = body.get("Key", "")
    if not isinstance(key, str):
        raise bad_request("Request decode failed: Key must be a string")
    return key


async def operator_keyring(ctx: Ctx) -> Any:
    method = ctx.request.method
    key = _key_from_body(ctx) if method != "GET" else ""
    q = ctx.request.query
    relay_factor = 0
    if q.get("relay-factor"):
        try:
            relay_factor = int(q.get("relay-factor"))
        except ValueError:
            raise bad_request(f'Error parsing relay factor: strconv.Atoi: parsing "{q.get("relay-factor")}": '
                              "invalid syntax") from None  # fmt: skip
        if not 0 <= relay_factor <= 5:
            raise bad_request("Invalid relay-factor: Relay factor must be in range: [0, 5]")
    if q.get("local-only"):
        local_only = parse_bool(q.get("local-only"))
        if local_only is None:
            raise bad_request(f'Error parsing local-only: strconv.ParseBool: parsing "{q.get("local-only")}": '
                              "invalid syntax")  # fmt: skip
        if local_only and method != "GET":
            raise bad_request("Invalid use of local-only: local-only can only be set for list requests")
    try:
        done = await ctx.api.keyring_operation(_OPERATIONS[method], key, relay_factor)
    except (ValueError, TimeoutError) as exc:  # a malformed key (protocol's KeyringError), no aggregate at all
        raise HTTPError(500, str(exc)) from None
    dc = ctx.api.config.datacenter
    failure = _errors_or_none(dc, done.error, done.response.messages)
    if failure is not None:
        raise HTTPError(500, failure)
    return [keyring_json(dc, done.response)] if method == "GET" else EMPTY


ROUTES = (Route("/v1/operator/keyring", ("GET", "POST", "PUT", "DELETE"), operator_keyring), *operator_raft.ROUTES)
