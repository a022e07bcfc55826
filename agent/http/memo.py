"""Answers encoded once per snapshot: a read of the catalog is a pure function of the member table's snapshot,
the agent's config and the request's arguments, so while the snapshot stands every request asking the same
thing gets the same bytes.  The snapshot changes only when the table does; until then ``/v1/catalog/nodes`` or
``/v1/health/service/web`` is built and JSON-encoded once, not once per request, and the thousands of blocking
queries one change wakes share one encoding.

Entries are kept for the last few ``(snapshot, config)`` sources (several agents can share a process in tests)
and a bounded number of keys each; a source is held by identity, never compared by value.  A key must hold
every argument the answer depends on besides the source (an endpoint that filters by token must add it too).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from agent.http.near import near_sorted
from agent.http.response import Encoded, go_json
from agent.http.routes import Ctx, pretty_json

__all__ = ["SnapshotMemo", "memo_json"]

MAX_SOURCES = 4
MAX_KEYS = 64


class SnapshotMemo:
    """``get(sources, key, build)``: ``build()``'s value, built once per key while ``sources`` (compared by
    identity) stand."""

    def __init__(self, max_sources: int = MAX_SOURCES, max_keys: int = MAX_KEYS) -> None:
        self.max_sources = max_sources
        self.max_keys = max_keys
        self._tables: list[tuple[tuple[object, ...], dict[Hashable, Any]]] = []  # most recent first
        self.builds = 0  # how many answers were built (tests and statistics)

    def _table(self, sources: tuple[object, ...]) -> dict[Hashable, Any]:
        for i, (held, table) in enumerate(self._tables):
            if len(held) == len(sources) and all(a is b for a, b in zip(held, sources, strict=True)):
                if i:
                    self._tables.insert(0, self._tables.pop(i))
                return table
        table = {}
        self._tables.insert(0, (sources, table))
        del self._tables[self.max_sources :]
        return table

    def get(self, sources: tuple[object, ...], key: Hashable, build: Callable[[], Any]) -> Any:
        table = self._table(sources)
        try:
            return table[key]
        except KeyError:
            pass
        value = build()
        self.builds += 1
        if len(table) >= self.max_keys:
            del table[next(iter(table))]
        table[key] = value
        return value


MEMO = SnapshotMemo()


def memo_json(ctx: Ctx, snapshot: object, key: Hashable, build: Callable[[], list[Any]],
              node_of: Callable[[Any], str]) -> Encoded | list[Any]:
    """``build()``'s list as the endpoint's JSON answer (`routes.json_response`'s rules), encoded once per
    ``snapshot``, config and ``key``; unless the request asks for what the snapshot alone does not decide, when
    it is built for this request: ``?near`` (coordinates move on their own; ``node_of`` names an entry's node),
    ``?filter`` (the router keeps the matching records of the list), and ACLs on (agent/http/authz.py keeps
    what the request's token may read)."""
    if ctx.request.query.get("near") or ctx.compiled_filter is not None or ctx.api.config.acl.enabled:
        return near_sorted(ctx, build(), node_of)
    pretty = pretty_json(ctx)
    return MEMO.get((snapshot, ctx.api.config), (key, pretty), lambda: Encoded(go_json(build(), pretty=pretty)))
