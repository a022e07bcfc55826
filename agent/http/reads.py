"""The read path every catalog and health endpoint takes (Consul's ``parseDC``/``parseConsistency``, the RPC's
hold for a leader, blocking, ``setMeta``): route to the datacenter, need a known server and a leader (waiting at most
the RPC hold), compile ``?filter=``, block until the index of what is read passes ``?index``, answer with its query
meta.  Also the ``node-meta`` filters those endpoints share.  Once, here; the endpoints only say what they read."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from agent.catalog import query
from agent.catalog.indexes import ReadIndex
from agent.http.blocking import ERROR_META, QueryOptions, meta_headers, parse_query_options, wait_read
from agent.http.errors import NO_CLUSTER_LEADER, NO_KNOWN_SERVERS, NO_PATH_TO_DC, RPC_ERROR_PREFIX, HTTPError
from agent.http.filtering import request_filter
from agent.members import LEADER

if TYPE_CHECKING:
    from agent.http.routes import Ctx
    from agent.members import Snapshot

__all__ = [
    "RPC_ERROR_PREFIX",
    "IndexOf",
    "error_meta",
    "meta_filters",
    "read_snapshot",
    "require_leader",
    "require_servers",
]

#: What a read answers with as X-Consul-Index and waits on when blocking (agent.catalog.indexes).
IndexOf = Callable[["Snapshot"], ReadIndex]


def error_meta(ctx: Ctx) -> None:
    """Consul sets query meta even on RPC errors, from an empty QueryMeta: index 1, no leader known."""
    ctx.headers.update(ERROR_META)


def require_servers(ctx: Ctx, snapshot: Snapshot) -> None:
    """A client agent forwards reads to a server: with none alive it is ``No known Consul servers``."""
    config = ctx.api.config
    if not config.server and not query.known_servers(snapshot.members.values(), config.datacenter):
        raise HTTPError(500, NO_KNOWN_SERVERS)


async def require_leader(ctx: Ctx, opts: QueryOptions) -> Snapshot:
    """The snapshot to serve a read from: any with ``?stale``, else one with a leader, waiting at most the hold."""
    table = ctx.api.table
    snapshot = table.current
    require_servers(ctx, snapshot)
    if opts.stale or snapshot.leader:
        return snapshot
    hold = ctx.options.rpc_hold_timeout
    if hold > 0:
        with trio.move_on_after(hold):
            while not snapshot.leader:
                await table.wait_for((LEADER,))
                snapshot = table.current
        if snapshot.leader:
            return snapshot
    prefix = "" if ctx.api.config.server else RPC_ERROR_PREFIX
    raise HTTPError(500, prefix + NO_CLUSTER_LEADER)


async def read_snapshot(ctx: Ctx, index_of: IndexOf) -> tuple[Snapshot, QueryOptions]:
    """Consul's read path: parse (400s), route to the DC, find a leader, compile ``?filter=`` (the router applies
    it to the result: agent.http.filtering), block until ``index_of`` passes ``?index``, then set the query meta
    with that index."""
    opts = parse_query_options(ctx.request, ctx.api.config.datacenter)
    try:
        if opts.dc != ctx.api.config.datacenter:
            raise HTTPError(500, NO_PATH_TO_DC)
        await require_leader(ctx, opts)
        request_filter(ctx)
    except HTTPError:
        error_meta(ctx)
        raise
    snapshot = await wait_read(ctx.api.table, index_of, opts, ctx.rng)
    ctx.headers.update(meta_headers(snapshot, opts, index_of(snapshot).index))
    return snapshot, opts


def meta_filters(ctx: Ctx) -> dict[str, str]:
    """``node-meta=key:value`` (repeatable; ``key`` alone means an empty value): every pair must match."""
    filters: dict[str, str] = {}
    for raw in ctx.request.query.get_all("node-meta"):
        key, _, value = raw.partition(":")
        filters[key] = value
    return filters
