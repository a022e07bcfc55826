"""``PUT /v1/txn``: Consul's transactions over KV (hashicorp/consul ``agent/txn_endpoint.go``,
``agent/consul/txn_endpoint.go``; txn.mdx; wave2-anchors §2.4).

The body (`txn_body.parse_txn_body`) is at most 64 KV operations.  A transaction of reads only (get, get-tree,
check-*) is served without the log (the ``txn.read`` query: a working copy never committed) with the
consistency modes, and answers ``X-Consul-Knownleader``/``X-Consul-Lastcontact`` and Consul's
``TxnReadResponse`` (the result plus its query metadata fields); any write goes through the leader as one Raft
entry.  All or nothing: ``{"Results": [...], "Errors": null}`` is a 200, ``{"Results": null, "Errors":
[{"OpIndex", "What"}]}`` a 409.

Consul's server-side checks that come before the state's: a missing key (except ``delete-tree``) is ``Must
provide key`` for that op, reported alone (``Txn.preCheck``); an unknown verb is ``unknown KV verb "x"`` (the
state's ``txnKVS``) -- reported here with the errors the other operations would give (found by running them on
a copy that is never committed), as the state would report them all together.
"""

from __future__ import annotations

from typing import Any

from agent.http import authz
from agent.http.blocking import parse_query_options
from agent.http.routes import Ctx, Route, json_response
from agent.http.store import apply, check_dc, read_mode, store_errors
from agent.http.txn_body import KVOpIn, parse_txn_body
from agent.server.access import QueryResult, ReadMode
from agent.server.state.commands import TXN_VERBS, Txn, TxnOp, encode
from agent.server.state.kvs import go_quote

__all__ = ["ROUTES", "WRITE_VERBS", "txn_endpoint"]

#: Consul's ``isWrite``: a transaction with none of these is a read-only one.
WRITE_VERBS = frozenset({"set", "delete", "delete-cas", "delete-tree", "cas", "lock", "unlock"})


def _op(op: KVOpIn) -> TxnOp:
    return TxnOp(op.verb, op.key, op.value, op.flags, op.index, op.session)


async def _dry_run(ctx: Ctx, ops: list[tuple[int, KVOpIn]], mode: ReadMode) -> QueryResult:
    """``ops`` (known verbs only) run on a copy of the state that is never committed; errors re-indexed to the
    body's positions."""
    data = encode(Txn(tuple(_op(op) for _, op in ops)))
    with store_errors(ctx):
        result = await ctx.api.store_access.query("txn.read", {"data": data}, mode)
    errors = result.value.get("Errors")
    if errors:
        positions = [i for i, _ in ops]
        errors = [{"OpIndex": positions[e["OpIndex"]], "What": e["What"]} for e in errors]
        return QueryResult(result.index, {"Results": None, "Errors": errors}, result.known_leader,
                           result.last_contact_ms)
    return result


def _local_errors(ops: list[KVOpIn]) -> tuple[list[dict[str, Any]], bool]:
    """Errors decided before the state runs the ops, and whether they stand alone (Consul's preCheck)."""
    missing = [{"OpIndex": i, "What": "Must provide key"} for i, op in enumerate(ops)
               if not op.key and op.verb != "delete-tree"]
    if missing:
        return missing, True
    unknown = [{"OpIndex": i, "What": f"unknown KV verb {go_quote(op.verb)}"} for i, op in enumerate(ops)
               if op.verb not in TXN_VERBS]
    return unknown, False


def _merge(local: list[dict[str, Any]], alone: bool, value: dict[str, Any]) -> dict[str, Any]:
    if not local:
        return value
    errors = local if alone else sorted([*local, *(value.get("Errors") or [])], key=lambda e: e["OpIndex"])
    return {"Results": None, "Errors": errors}


def _answer(ctx: Ctx, value: dict[str, Any]) -> Any:
    return json_response(ctx, 409, value) if value.get("Errors") else value


async def txn_endpoint(ctx: Ctx) -> Any:
    options = ctx.options
    ops = parse_txn_body(ctx.request.body, max_request_len=options.txn_max_req_len,
                         max_value_size=options.kv_max_value_size)
    local, alone = _local_errors(ops)
    if not local and (denied := await authz.txn_denied(ctx, ops)):
        return _answer(ctx, {"Results": None, "Errors": denied})
    known = [(i, op) for i, op in enumerate(ops) if op.verb in TXN_VERBS]
    if not any(op.verb in WRITE_VERBS for op in ops):
        opts = parse_query_options(ctx.request, ctx.api.config.datacenter)
        check_dc(ctx, opts.dc)
        result = await _dry_run(ctx, known, read_mode(ctx, opts, blocking=False))
        ctx.headers["X-Consul-Lastcontact"] = str(result.last_contact_ms)
        ctx.headers["X-Consul-Knownleader"] = "true" if result.known_leader else "false"
        value = _merge(local, alone, result.value)
        # Consul answers a read-only transaction with its TxnReadResponse: the result and its QueryMeta.
        value = {**value, "Index": 0, "LastContact": result.last_contact_ms * 1_000_000,
                 "KnownLeader": result.known_leader, "ConsistencyLevel": "", "NotModified": False, "Backend": 0}
        return _answer(ctx, value)
    if local:
        if alone:
            return _answer(ctx, {"Results": None, "Errors": local})
        check_dc(ctx, ctx.request.query.get("dc"))
        result = await _dry_run(ctx, known, ReadMode())
        return _answer(ctx, _merge(local, alone, result.value))
    return _answer(ctx, await apply(ctx, Txn(tuple(_op(op) for op in ops))))


ROUTES = (Route("/v1/txn", ("PUT",), txn_endpoint),)
