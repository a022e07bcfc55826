"""Blocking queries and query metadata (consul-compat §2): ``?index``/``?wait``, consistency flags, X-Consul-*.

A catalog read answers at once unless ``index`` > 0; then it parks in ``MemberTable.wait_read`` until the index
of *what it reads* (agent.catalog.indexes: a service's, a node's, a table's) passes ``index``, or ``wait``
(default 5 m, at most 10 m) plus a random jitter of up to ``wait/16`` elapses, so thousands of watchers woken by
one change don't all come back at the same instant.  Only updates that write what the read reads wake it.  On
timeout the current result is returned with its (possibly unchanged) index, as Consul does.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import attrs
import trio

from agent.durations import parse_duration
from agent.http.errors import bad_request

if TYPE_CHECKING:
    from collections.abc import Callable

    from agent.http.request import Query, Request
    from agent.members import IndexedRead, MemberTable, Snapshot

__all__ = [
    "DEFAULT_QUERY_TIME",
    "ERROR_META",
    "JITTER_FRACTION",
    "MAX_QUERY_TIME",
    "QueryOptions",
    "block_time",
    "meta_headers",
    "parse_query_options",
    "parse_uint64",
    "parse_wait_index",
    "query_meta",
    "wait_read",
]

DEFAULT_QUERY_TIME = 300.0  # Consul's default_query_time
MAX_QUERY_TIME = 600.0  # Consul's max_query_time
JITTER_FRACTION = 16  # structs.JitterFraction: up to wait/16 extra
#: What Consul's deferred ``setMeta`` writes when the RPC failed: an empty QueryMeta (index 0 shown as 1).
ERROR_META = {
    "X-Consul-Index": "1",
    "X-Consul-Knownleader": "false",
    "X-Consul-Lastcontact": "0",
    "X-Consul-Query-Backend": "blocking-query",
}

def parse_uint64(text: str) -> int:
    """``strconv.ParseUint(text, 10, 64)``: decimal digits only, below 2**64."""
    if not text.isascii() or not text.isdigit():
        raise ValueError(f"invalid uint64 {text!r}")
    value = int(text)
    if value >= 1 << 64:
        raise ValueError(f"uint64 out of range {text!r}")
    return value


@attrs.frozen
class QueryOptions:
    """What a catalog read was asked for: the ``dc``, the consistency mode and the blocking parameters."""

    dc: str = ""
    stale: bool = False
    consistent: bool = False
    index: int = 0
    wait: float = 0.0  # as given; block_time() applies Consul's default and cap
    max_stale: float | None = None  # ``?max_stale`` in seconds (a positive one implies ``stale``)

    @property
    def consistency(self) -> str:
        """The X-Consul-Effective-Consistency value."""
        return "stale" if self.stale else "consistent" if self.consistent else "leader"


def _check_cache_control(request: Request) -> None:
    """Consul's parseCacheControl: only malformed ``max-age``/``stale-if-error`` values are errors."""
    raw = request.header("cache-control").lower()
    for directive in raw.split(",") if raw else ():
        d = directive.strip()
        for prefix in ("max-age=", "stale-if-error="):
            if d.startswith(prefix):
                try:
                    int(d[len(prefix) :])
                except ValueError:
                    raise bad_request("Invalid Cache-Control header.") from None


def parse_query_options(request: Request, default_dc: str) -> QueryOptions:
    """Consul's ``parse`` for reads, in its order: dc, consistency, Cache-Control, wait, index (400s as its text)."""
    q = request.query
    dc = q.get("dc") or default_dc
    stale = q.has("stale")
    consistent = q.has("consistent")
    cached = q.has("cached")  # http_config.use_cache is on by default
    max_stale: float | None = None
    if raw_max_stale := q.get("max_stale"):
        try:
            max_stale = parse_duration(raw_max_stale)
        except ValueError:
            raise bad_request(f'Invalid max_stale value "{raw_max_stale}"') from None
        if max_stale > 0:
            stale = True
    if stale and consistent:
        raise bad_request("Cannot specify ?stale with ?consistent, conflicting semantics.")
    if cached and consistent:
        raise bad_request("Cannot specify ?cached with ?consistent, conflicting semantics.")
    _check_cache_control(request)
    wait, index = parse_wait_index(q)
    return QueryOptions(dc=dc, stale=stale, consistent=consistent, index=index, wait=wait,
                        max_stale=max_stale if max_stale and max_stale > 0 else None)


def parse_wait_index(q: Query) -> tuple[float, int]:
    """``?wait`` (a Go duration, 0 when absent) and ``?index`` (a uint64, 0 when absent), with Consul's 400s."""
    wait = 0.0
    if raw_wait := q.get("wait"):
        try:
            wait = parse_duration(raw_wait)
        except ValueError:
            raise bad_request("Invalid wait time") from None
    index = 0
    if raw_index := q.get("index"):
        try:
            index = parse_uint64(raw_index)
        except ValueError:
            raise bad_request("Invalid index") from None
    return wait, index


def block_time(wait: float, rng: random.Random) -> float:
    """The time a blocking query may park: ``wait`` (0 or negative -> 5 m, capped at 10 m) plus < wait/16 jitter."""
    if wait > MAX_QUERY_TIME:
        wait = MAX_QUERY_TIME
    elif wait <= 0:
        wait = DEFAULT_QUERY_TIME
    return wait + rng.random() * (wait / JITTER_FRACTION)


async def wait_read(
    table: MemberTable, read: Callable[[Snapshot], IndexedRead], opts: QueryOptions, rng: random.Random
) -> Snapshot:
    """The snapshot to answer with: at once without ``index``, else once ``read``'s index passes it or when the
    block time is up."""
    snapshot = table.current
    if opts.index == 0 or read(snapshot).index > opts.index:
        return snapshot
    with trio.move_on_after(block_time(opts.wait, rng)):
        return await table.wait_read(read, opts.index)
    return table.current


def meta_headers(snapshot: Snapshot, opts: QueryOptions, index: int | None = None) -> dict[str, str]:
    """X-Consul-Index (never 0), -Knownleader, -Lastcontact, -Effective-Consistency, -Query-Backend (Go spelling).

    The leader is computed locally from the same snapshot, so there is no lag to report: Lastcontact is 0.
    """
    return query_meta(snapshot.index if index is None else index, bool(snapshot.leader), 0, opts)


def query_meta(index: int, known_leader: bool, last_contact_ms: int, opts: QueryOptions) -> dict[str, str]:
    """Consul's ``setMeta`` for any read: the index (never 0), whether the answering server knows a leader, how
    long since it heard from it (ms), the consistency mode asked for, the query backend."""
    return {
        "X-Consul-Index": str(max(1, index)),
        "X-Consul-Knownleader": "true" if known_leader else "false",
        "X-Consul-Lastcontact": str(max(0, last_contact_ms)),
        "X-Consul-Effective-Consistency": opts.consistency,
        "X-Consul-Query-Backend": "blocking-query",
    }
