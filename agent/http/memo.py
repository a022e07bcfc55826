"""Answers encoded once per snapshot: a read of the catalog is a pure function of the member table's snapshot,
the agent's config and the request's arguments, so while the snapshot stands every request asking the same
thing gets the same bytes.  The snapshot changes only when the table does; until then ``/v1/catalog/nodes`` or
``/v1/health/service/web`` is built and JSON-encoded once, not once per request, and the thousands of blocking
queries one change wakes share one encoding.

Entries are kept (agent/snapshot_memo.py) for the last few ``(snapshot, config)`` sources (several agents can
share a process in tests) and a bounded number of keys each; a source is held by identity, never compared by
value.  A key must hold every argument the answer depends on besides the source (an endpoint that filters by token
must add it too).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from agent.http.near import near_sorted
from agent.http.response import Encoded, go_json
from agent.http.routes import Ctx, pretty_json
from agent.snapshot_memo import SnapshotMemo

__all__ = ["SnapshotMemo", "memo_json"]

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
