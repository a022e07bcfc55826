"""Errors an endpoint raises to choose its status code; the text is the whole plain-text body (Consul's habit).

Consul maps every handler error to a status and writes ``err.Error()`` as the body, no JSON, no newline
(consul-compat §1.0).  Anything that is not an :class:`HTTPError` becomes a 500 with ``str(exc)``.
"""

from __future__ import annotations

from typing import Any

from agent.gostrings import decode_json

__all__ = [
    "NO_CLUSTER_LEADER",
    "NO_KNOWN_SERVERS",
    "NO_PATH_TO_DC",
    "RPC_ERROR_PREFIX",
    "HTTPError",
    "MethodNotAllowed",
    "bad_request",
    "decode_body",
]

# Canonical strings clients match on (consul-compat §1.0, trap 7).
NO_CLUSTER_LEADER = "No cluster leader"
NO_PATH_TO_DC = "No path to datacenter"
NO_KNOWN_SERVERS = "No known Consul servers"
#: What a client agent's RPC to a server puts before the server's error (Consul's pool.RPC).
RPC_ERROR_PREFIX = "rpc error making call: "


class HTTPError(Exception):
    """A handler's explicit status and plain-text reason (Consul's ``HTTPError``)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class MethodNotAllowed(HTTPError):
    """405 with ``Allow: OPTIONS,<methods>``; the body is ``method X not allowed`` as Go prints it."""

    def __init__(self, method: str, allow: tuple[str, ...]) -> None:
        super().__init__(405, f"method {method} not allowed")
        self.allow = allow


def bad_request(reason: str) -> HTTPError:
    """A 400 with Consul's text (``Invalid wait time``, ``Missing node name``...)."""
    return HTTPError(400, reason)


def decode_body(raw: bytes) -> Any:
    """A request's JSON body as Consul's handlers decode it: empty is ``Request decode failed: EOF``, bad JSON
    the decoder's message; both 400."""
    if not raw.strip():
        raise bad_request("Request decode failed: EOF")
    try:
        return decode_json(raw)
    except ValueError as exc:
        raise bad_request(f"Request decode failed: {exc}") from None
