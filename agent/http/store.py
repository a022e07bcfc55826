"""What every endpoint over the servers' state store shares: its reads, its writes and Consul's errors for both.

The endpoints (`kv`, `sessions`, `txn`, `catalog_register`) build a command or name a query and go through the
agent's `access.StoreAccess` (a server's own service, a client's forwarding).  Here, once:

* a read's options (``?stale``/``?consistent``/``?max_stale``, blocking ``?index``/``?wait`` with Consul's cap and
  jitter) become a `ReadMode`, and the answer's metadata the X-Consul-* headers (`blocking.query_meta`);
* the store's errors become Consul's answers: no leader is 500 ``No cluster leader``, a refused command is a 500
  with its text, a server that could not be reached a 500 saying so.  On a client agent these are errors of an
  RPC to a server, and Consul's client prefixes them: ``rpc error making call: ...`` (`catalog.RPC_ERROR_PREFIX`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from agent.http.blocking import ERROR_META, QueryOptions, block_time, parse_query_options, query_meta
from agent.http.errors import NO_PATH_TO_DC, HTTPError
from agent.http.reads import RPC_ERROR_PREFIX, require_servers
from agent.http.routes import Ctx
from agent.server.access import CommandFailed, NoLeader, QueryResult, ReadMode, StoreUnavailable
from agent.server.state.commands import Command
from agent.server.state.leader import RequestError

__all__ = ["apply", "check_dc", "read", "read_mode", "request_errors", "server_error", "store_errors"]


def server_error(ctx: Ctx, text: str) -> HTTPError:
    """A 500 for an error the servers gave: as the RPC's text, prefixed on a client agent as Consul's is."""
    prefix = "" if ctx.api.config.server else RPC_ERROR_PREFIX
    return HTTPError(500, prefix + text)


@contextmanager
def store_errors(ctx: Ctx) -> Iterator[None]:
    """Around a call to the store: its exceptions as Consul's HTTP answers.  A client agent that knows no server
    alive answers Consul's ``No known Consul servers`` without trying."""
    require_servers(ctx, ctx.api.table.current)
    try:
        yield
    except (NoLeader, CommandFailed, StoreUnavailable) as err:
        raise server_error(ctx, str(err)) from None


@contextmanager
def request_errors(ctx: Ctx) -> Iterator[None]:
    """Around reading a request body with the servers' rules (`state.leader`, `state.registration`): a body
    that does not decode is its 400; a rule of the server's RPC (Session.Apply, Catalog.Register) its 500."""
    try:
        yield
    except RequestError as err:
        if err.status == 500:
            raise server_error(ctx, str(err)) from None
        raise HTTPError(err.status, str(err)) from None


def check_dc(ctx: Ctx, dc: str) -> None:
    """``?dc=`` (or a body's Datacenter) naming another datacenter: Consul forwards there; we have no WAN."""
    if dc and dc != ctx.api.config.datacenter:
        raise HTTPError(500, NO_PATH_TO_DC)


def read_mode(ctx: Ctx, opts: QueryOptions, *, blocking: bool = True) -> ReadMode:
    """The `ReadMode` for ``opts``: a blocking query's wait already capped at 10 m and jittered (`block_time`)."""
    consistency = "stale" if opts.stale else "consistent" if opts.consistent else "default"
    index = opts.index if blocking else 0
    wait = block_time(opts.wait, ctx.rng) if index > 0 else 0.0
    return ReadMode(consistency, opts.max_stale if opts.stale else None, index, wait)


async def read(ctx: Ctx, name: str, args: dict[str, Any], *, error_meta: bool = False,
               opts: QueryOptions | None = None) -> QueryResult:
    """Run the named query as the request's options ask and set the X-Consul-* headers from its answer.
    ``error_meta``: on failure set the empty metadata too (the endpoints whose Go handler defers ``setMeta``).
    ``opts``: the request's options when the endpoint has parsed them already."""
    if opts is None:
        opts = parse_query_options(ctx.request, ctx.api.config.datacenter)
    try:
        check_dc(ctx, opts.dc)
        with store_errors(ctx):
            result = await ctx.api.store_access.query(name, args, read_mode(ctx, opts))
    except HTTPError:
        if error_meta:
            ctx.headers.update(ERROR_META)
        raise
    ctx.headers.update(query_meta(result.index, result.known_leader, result.last_contact_ms, opts))
    return result


async def apply(ctx: Ctx, command: Command) -> Any:
    """Commit ``command`` through the leader; the state machine's result."""
    check_dc(ctx, ctx.request.query.get("dc"))
    with store_errors(ctx):
        return await ctx.api.store_access.apply(command)
