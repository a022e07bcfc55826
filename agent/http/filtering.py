"""``?filter=`` as one step of the read path: a route names the Consul type its results are, the read path compiles
the expression where Consul's server would (after the datacenter and leader checks, before blocking, so a bad
filter answers at once), and the router keeps the matching records of whatever the endpoint returns.

Consul filters what it read *after* computing the index, so X-Consul-Index and blocking are the same with or
without a filter (a change to a filtered-out record still wakes a blocked read, as in Consul).  An expression that
does not parse or does not fit the type answers 400 with go-bexpr's text (``Failed to create boolean expression
evaluator: ...``), prefixed ``rpc error making call: `` on a client agent for the endpoints Consul answers by RPC;
an empty ``filter`` filters nothing.  The grammar and evaluation are agent.filtering's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from agent.filtering import CompiledFilter, FilterError, create_filter
from agent.http.errors import RPC_ERROR_PREFIX, HTTPError

if TYPE_CHECKING:
    from agent.filtering.fields import Struct
    from agent.http.request import Request

__all__ = ["FILTER_ERROR_STATUS", "FilterSpec", "apply_filter", "by_items", "by_services", "by_values",
           "request_filter"]  # fmt: skip

#: The status of a filter that does not compile: Consul's own HTTP layer answers these 500, as it does any error
#: that is not its HTTPError (hashicorp/consul#7338; consul-compat §1.2.1).  Issue 12 asked for 400; the peer wins,
#: and clients that check for Consul's answer get it.  The body is go-bexpr's text either way.
FILTER_ERROR_STATUS = 500

Apply = Callable[[Any, CompiledFilter], Any]


def by_items(result: Any, flt: CompiledFilter) -> Any:
    """A JSON list of records (nodes, checks, service nodes, health entries, members)."""
    return flt.keep(result) if isinstance(result, list) else result


def by_values(result: Any, flt: CompiledFilter) -> Any:
    """A JSON object of ``{id: record}`` (/v1/agent/services, /v1/agent/checks)."""
    return {k: v for k, v in result.items() if flt.matches(v)} if isinstance(result, dict) else result


def by_services(result: Any, flt: CompiledFilter) -> Any:
    """``{"Node": ..., "Services": {id: NodeService}}`` (/v1/catalog/node/:n) or ``[NodeService]``
    (/v1/catalog/node-services/:n): the services are filtered."""
    if not isinstance(result, dict):
        return result  # null: an unknown node
    services = result.get("Services")
    return {**result, "Services": by_values(services, flt) if isinstance(services, dict) else by_items(services, flt)}


@attrs.frozen
class FilterSpec:
    """What a route's results are for ``?filter=``: the Consul type, where the records are in the result (None:
    the endpoint filters itself, with request_filter), whether Consul answers it by RPC from a server, and whether
    the expression is checked against the type at once (Consul's /v1/agent/checks checks on the first record)."""

    type: Struct
    apply: Apply | None = by_items
    rpc: bool = False
    check_now: bool = True


class FilterContext(Protocol):
    """What the filter step reads of a request's context (agent/http/routes.py's Ctx, which imports this module)."""

    api: Any  # its config says whether this agent is a server (the rpc prefix)
    request: Request
    filter_spec: FilterSpec | None
    compiled_filter: Any


def request_filter(ctx: FilterContext) -> CompiledFilter | None:
    """The request's compiled ``?filter=`` (compiled once per request), None when there is none; HTTPError with
    go-bexpr's text when it does not compile."""
    spec = ctx.filter_spec
    expression = ctx.request.query.get("filter")
    if spec is None or not expression:
        return None
    if ctx.compiled_filter is None:
        try:
            ctx.compiled_filter = create_filter(expression, spec.type, check_now=spec.check_now)
        except FilterError as exc:
            prefix = RPC_ERROR_PREFIX if spec.rpc and not ctx.api.config.server else ""
            raise HTTPError(FILTER_ERROR_STATUS, prefix + str(exc)) from None
    return ctx.compiled_filter


def apply_filter(ctx: FilterContext, result: Any) -> Any:
    """The endpoint's ``result`` with only the records ``?filter=`` matches (the router's last read step)."""
    flt = request_filter(ctx)
    spec = ctx.filter_spec
    if flt is None or spec is None or spec.apply is None:
        return result
    try:
        return spec.apply(result, flt)
    except FilterError as exc:  # a check deferred to the first record (/v1/agent/checks): go-bexpr's bare text
        raise HTTPError(FILTER_ERROR_STATUS, str(exc)) from None
