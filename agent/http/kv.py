"""``/v1/kv/<key>``: Consul's KV endpoint (hashicorp/consul ``agent/kvs_endpoint.go``; kv.mdx; wave2-anchors §2.1).

* ``GET``: one key (``[entry]``), ``?recurse`` (the entries under the prefix), ``?keys`` (the key names, rolled
  up at ``?separator``; the historic ``?seperator`` too), ``?raw`` (the value's bytes as ``text/plain``).  Nothing
  there is a 404 with no body and the query metadata (``?keys`` at the root answers ``[]``).  Blocking and the
  consistency modes as every read (`store.read`).
* ``PUT``: the body is the value (at most ``kv_max_value_size``, else 413 with Consul's text); ``?flags``,
  ``?cas`` (0: only if absent), ``?acquire=<session>``, ``?release=<session>``, at most one of the last three.
  Answers ``true``, or the CAS/lock outcome.
* ``DELETE``: one key, ``?recurse`` (the prefix), ``?cas`` (only at that ModifyIndex).  Answers ``true``, or the
  CAS outcome.

Consul refuses a missing key (``Missing key name``) except for a recursive read or delete.  One departure: a bad
``?flags``/``?cas`` is a 400 naming the parameter (issue 10), where Consul answers 500 with Go's bare
``strconv.ParseUint`` error.  Consul 1.21+'s new key-character validation is not applied (1.20 has none).
"""

from __future__ import annotations

import base64
from typing import Any

from agent.http.blocking import QueryOptions, parse_query_options, parse_uint64
from agent.http.errors import HTTPError, bad_request
from agent.http.response import Response
from agent.http.routes import Ctx, Route
from agent.http.store import apply, read
from agent.server.state.commands import (
    Command,
    KVCas,
    KVDelete,
    KVDeleteCas,
    KVDeleteTree,
    KVLock,
    KVSet,
    KVUnlock,
)

__all__ = ["ROUTES", "kv_endpoint"]

PREFIX = "/v1/kv/"
MISSING_KEY = "Missing key name"
KV_MAX_VALUE_SIZE_DOC = "https://developer.hashicorp.com/docs/agent/config/config-files#kv_max_value_size"


def _uint(ctx: Ctx, name: str) -> int:
    """``?<name>=`` as Consul's ``strconv.ParseUint(v, 10, 64)``; a 400 naming the parameter when it is not."""
    text = ctx.request.query.get(name)
    try:
        return parse_uint64(text)
    except ValueError:
        reason = "value out of range" if text.isascii() and text.isdigit() else "invalid syntax"
        raise bad_request(f'Invalid {name}: strconv.ParseUint: parsing "{text}": {reason}') from None


def _conflicting(ctx: Ctx, *flags: str) -> None:
    """Consul's ``conflictingFlags``: two of ``flags`` given is a 400 listing the whole query."""
    query = ctx.request.query
    if sum(query.has(flag) for flag in flags) > 1:
        raise bad_request(f"Conflicting flags: {query.encode()}\n")


async def _get(ctx: Ctx, key: str, opts: QueryOptions) -> Any:
    query = ctx.request.query
    if query.has("keys"):
        separator = query.get("separator") if query.has("separator") else query.get("seperator")
        result = await read(ctx, "kv.keys", {"prefix": key, "separator": separator}, opts=opts)
        if result.value is None:
            return Response(404) if key else []
        return result.value
    recurse = query.has("recurse")
    if not recurse and not key:
        raise bad_request(MISSING_KEY)
    result = await read(ctx, "kv.list" if recurse else "kv.get", {"prefix": key} if recurse else {"key": key},
                        opts=opts)
    if result.value is None:
        return Response(404)
    if query.has("raw") and not recurse:
        value = _raw_value(result.value[0])
        return Response(200, {"Content-Type": "text/plain", "X-Content-Type-Options": "nosniff",
                              "Content-Security-Policy": "sandbox"}, value)
    return result.value


def _raw_value(entry: dict[str, Any]) -> bytes:
    encoded = entry.get("Value")
    return base64.b64decode(encoded) if encoded else b""


async def _put(ctx: Ctx, key: str) -> Any:
    if not key:
        raise bad_request(MISSING_KEY)
    _conflicting(ctx, "cas", "acquire", "release")
    query = ctx.request.query
    flags = _uint(ctx, "flags") if query.has("flags") else 0
    cas = _uint(ctx, "cas") if query.has("cas") else None
    value = ctx.request.body
    limit = ctx.options.kv_max_value_size
    if len(value) > limit:
        raise HTTPError(413, f"Request body({len(value)} bytes) too large, max size: {limit} bytes. "
                             f"See {KV_MAX_VALUE_SIZE_DOC}.")
    command: Command
    if query.has("acquire"):
        command = KVLock(key, query.get("acquire"), value, flags)
    elif query.has("release"):
        command = KVUnlock(key, query.get("release"), value, flags)
    elif cas is not None:
        command = KVCas(key, cas, value, flags)
    else:
        command = KVSet(key, value, flags)
    outcome = await apply(ctx, command)
    return True if isinstance(command, KVSet) else bool(outcome)


async def _delete(ctx: Ctx, key: str) -> Any:
    _conflicting(ctx, "recurse", "cas")
    query = ctx.request.query
    command: Command
    if query.has("recurse"):
        command = KVDeleteTree(key)
    elif not key:
        raise bad_request(MISSING_KEY)
    elif query.has("cas"):
        command = KVDeleteCas(key, _uint(ctx, "cas"))
    else:
        command = KVDelete(key)
    outcome = await apply(ctx, command)
    return bool(outcome) if isinstance(command, KVDeleteCas) else True


async def kv_endpoint(ctx: Ctx) -> Any:
    """Consul's ``KVSEndpoint``: the query options are checked first for every method (their 400s)."""
    opts = parse_query_options(ctx.request, ctx.api.config.datacenter)
    key = ctx.request.path.removeprefix(PREFIX)
    if ctx.request.method == "GET":
        return await _get(ctx, key, opts)
    if ctx.request.method == "PUT":
        return await _put(ctx, key)
    return await _delete(ctx, key)


ROUTES = (Route(PREFIX, ("GET", "PUT", "DELETE"), kv_endpoint),)
