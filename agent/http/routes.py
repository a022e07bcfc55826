"""The routing table and Consul's per-endpoint wrapper.

Routing copies Go's ``ServeMux`` as Consul registers it: exact patterns (``/v1/catalog/nodes``) match one path,
patterns ending in ``/`` (``/v1/catalog/node/``) match every path below them and the endpoint reads the rest as its
argument; the longest pattern wins; an unclean path (``//``, ``/./``, ``/../``) or a prefix pattern asked without
its slash is a 301; anything else falls to the index handler (``GET /``: a redirect to ``/ui/`` when the UI is on,
else a line saying it is off; any other path a 404 text).

A :class:`SocketRoute` is a path that takes a websocket upgrade (``GET`` with ``Upgrade: websocket``): the server
asks the route to ``open`` a session (which may refuse with an :class:`HTTPError`, answered as plain HTTP before
any handshake), then hands the connection to trio-websocket and runs the session on it.  The same path without the
upgrade goes through the ordinary routes.

Every endpoint runs inside ``wrap`` (Consul's ``HTTPHandlers.wrap``): query-string errors are a bare 500,
``OPTIONS`` answers with ``Allow``, a wrong method is a 405, an :class:`HTTPError` is its status and text, any
other exception is a logged 500 with its message; a route's ``?filter=`` keeps the matching records of the result
(agent.http.filtering); a result is JSON (pretty with ``?pretty`` or in ``-dev``), and
``EMPTY`` is a 200 with no body.
"""

from __future__ import annotations

import html
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

import attrs

from agent.gostrings import to_bytes, valid_utf8
from agent.http.errors import HTTPError, MethodNotAllowed
from agent.http.filtering import FilterSpec, apply_filter
from agent.http.options import HttpOptions
from agent.http.request import Request, clean_path, split_target
from agent.http.response import Encoded, Response, go_json, maybe_gzip

if TYPE_CHECKING:
    from trio_websocket import WebSocketConnection

    from agent.api import AgentAPI
    from agent.http.ws_gate import WsGate

__all__ = [
    "EMPTY",
    "Ctx",
    "Endpoint",
    "Route",
    "Router",
    "Session",
    "SocketRoute",
    "json_response",
    "not_routed",
    "pretty_json",
    "ui_enabled",
]

log = logging.getLogger("agent.http")

EMPTY: Any = type("Empty", (), {"__repr__": lambda self: "EMPTY"})()  # "no body" (Go: a nil result)

UI_DISABLED = "Consul Agent: UI disabled. To enable, set ui_config.enabled=true in the agent configuration and restart."
NOT_API = "Invalid URL path: not a recognized HTTP API endpoint\n"
NOT_V1 = "Invalid URL path: if attempting to use the HTTP API, ensure the path starts with '/v1/'\n"


@attrs.define
class Ctx:
    """What an endpoint gets: the agent, the request, the server's options, and response headers to add to."""

    api: AgentAPI
    request: Request
    options: HttpOptions
    rng: random.Random
    headers: dict[str, str] = attrs.Factory(dict)
    filter_spec: FilterSpec | None = None  # the route's (agent.http.filtering)
    compiled_filter: Any = None  # the request's ?filter=, once compiled
    #: The request's ACL identity once resolved (agent/http/authz.py): resolved at most once per request.
    identity: Any = None


def path_arg(ctx: Ctx, prefix: str, missing: str) -> str:
    """What the path holds after the route's ``prefix`` (``/v1/health/node/<node>``), as Consul trims it; a 400 with
    Consul's ``missing`` text (``Missing node name``) when that is nothing."""
    rest = ctx.request.path.removeprefix(prefix)
    if not rest:
        raise HTTPError(400, missing)
    return rest


Endpoint = Callable[[Ctx], Awaitable[Any]]
#: What runs a route's endpoint: the endpoint alone, or ACL enforcement around it (agent/http/authz.py).
Guard = Callable[["Route", Ctx], Awaitable[Any]]


@attrs.frozen
class Route:
    """One ServeMux pattern, the methods its endpoint accepts (besides OPTIONS), the endpoint, and what its results
    are for ``?filter=`` (None: the endpoint takes no filter)."""

    pattern: str
    methods: tuple[str, ...]
    endpoint: Endpoint
    filter: FilterSpec | None = None

    @property
    def allow(self) -> str:
        return ",".join(("OPTIONS", *self.methods))

    def rest(self, path: str) -> str:
        """The argument after a prefix pattern (``strings.TrimPrefix(req.URL.Path, pattern)``)."""
        return path[len(self.pattern) :]


class Session(Protocol):
    """What a :class:`SocketRoute` opens: it owns the accepted websocket until ``run`` returns; ``gate`` is the
    stream the websocket is built on (whole frames may be written to it directly: agent/http/ws_gate.py)."""

    async def run(self, ws: WebSocketConnection, gate: WsGate) -> None: ...


@attrs.frozen
class SocketRoute:
    """An exact path that accepts a websocket upgrade; ``open`` validates the request (raise HTTPError to refuse)."""

    path: str
    open: Callable[[Ctx], Session]


def ui_enabled(api: AgentAPI) -> bool:
    """``ui_config.enabled`` (``-ui``, on by default in ``-dev``)."""
    return bool(getattr(api.config, "ui", False))


def _redirect(request: Request, location: str) -> Response:
    """Go's ``http.Redirect`` with 301: Location, and a tiny HTML body for GET/HEAD."""
    headers = {"Location": location}
    body = b""
    if request.method in ("GET", "HEAD"):
        headers["Content-Type"] = "text/html; charset=utf-8"
        body = f'<a href="{html.escape(location)}">Moved Permanently</a>.\n\n'.encode()
    return Response(301, headers, body)


def _location(path: str, raw_query: str, *, escaped: bool = False) -> str:
    """The Location of a redirect: ASCII always (an ``escaped`` path keeps its ``%XX`` as they are)."""
    location = quote(to_bytes(path), safe="/:@!$&'()*+,;=-._~" + ("%" if escaped else ""))
    return f"{location}?{raw_query}" if raw_query else location


class Router:
    """Go's ServeMux over a list of routes, with Consul's wrapper around each endpoint."""

    def __init__(self, routes: Iterable[Route], sockets: Iterable[SocketRoute] = (),
                 guard: Guard | None = None) -> None:
        self.guard = guard
        self._sockets = {route.path: route for route in sockets}
        self._exact: dict[str, Route] = {}
        self._prefix: dict[str, Route] = {}
        for route in routes:
            table = self._prefix if route.pattern.endswith("/") else self._exact
            if route.pattern in table:
                raise ValueError(f"pattern {route.pattern!r} registered twice")
            table[route.pattern] = route
        self._prefix_order = sorted(self._prefix, key=len, reverse=True)
        self._timers: dict[tuple[str, str], tuple[Any, Any]] = {}  # (pattern, method) -> (metrics, its series)

    def routes(self) -> list[Route]:
        """Every route, exact and prefix (what a table of per-route rules must cover)."""
        return [*self._exact.values(), *self._prefix.values()]

    def socket_routes(self) -> list[SocketRoute]:
        return list(self._sockets.values())

    def socket(self, path: str) -> SocketRoute | None:
        """The websocket route at exactly ``path`` (no cleaning, no prefixes: a stream has one address)."""
        return self._sockets.get(path)

    async def open_socket(self, route: SocketRoute, ctx: Ctx) -> Session:
        """``route.open`` under the same guard as the ordinary routes (a refusal is an HTTPError)."""

        async def opened(ctx: Ctx) -> Session:
            return route.open(ctx)

        if self.guard is None:
            return await opened(ctx)
        return await self.guard(Route(route.path, ("GET",), opened), ctx)

    def match(self, path: str) -> Route | None:
        """The exact route for ``path``, else the longest prefix route containing it."""
        route = self._exact.get(path)
        if route is not None:
            return route
        for pattern in self._prefix_order:
            if path.startswith(pattern):
                return self._prefix[pattern]
        return None

    def _timer(self, metrics: Any, pattern: str, method: str) -> Any:
        """Consul's ``api.http`` timer (ms), labelled by method and route (``/v1/kv/`` -> ``v1_kv_``): one
        series handle per route and method, so a request builds no labels."""
        held = self._timers.get((pattern, method))
        if held is None or held[0] is not metrics:
            path = pattern.removeprefix("/").replace("/", "_")
            held = self._timers[(pattern, method)] = (metrics, metrics.series("consul.api.http",
                                                                              {"method": method, "path": path}))
        return held[1]

    async def dispatch(self, api: AgentAPI, request: Request, options: HttpOptions, rng: random.Random) -> Response:
        """Route one request and run it: never raises (except cancellation), every failure is a response."""
        path = request.path
        if not valid_utf8(path).isprintable():  # Go ranges invalid bytes as U+FFFD, which is printable
            return Response(400)  # go-cleanhttp PrintablePathCheckHandler: 400, no body
        # Cleaned as escaped, so an ID with an encoded "/" or ".." (`a%2F..%2Fb`, Consul's advice for such IDs)
        # reaches its endpoint instead of a 301 that can never be followed (issue 16, item 7).
        escaped, _ = split_target(request.target) if request.target.startswith(("/", "http")) else (path, "")
        cleaned = clean_path(escaped)
        if cleaned != escaped and request.method != "CONNECT":
            return _redirect(request, _location(cleaned, request.raw_query, escaped=True))
        route = self.match(path)
        if route is None:
            if path + "/" in self._prefix:
                return _redirect(request, _location(path + "/", request.raw_query))
            return _index(api, request)
        ctx = Ctx(api, request, options, rng, filter_spec=route.filter)
        started = time.perf_counter()
        response = await _wrap(route, ctx, self.guard)
        metrics = getattr(api, "metrics", None)
        if metrics is not None:
            self._timer(metrics, route.pattern, request.method).add((time.perf_counter() - started) * 1000.0)
        return maybe_gzip(response, request.header("accept-encoding"))


def _index(api: AgentAPI, request: Request) -> Response:
    """Consul's Index: ``/`` redirects to the UI (301) or says it is disabled; any other path is a 404 with a hint."""
    if request.path != "/":
        return Response.text(404, NOT_API if "/v1/" in request.path else NOT_V1)
    if ui_enabled(api):
        return _redirect(request, "/ui/")
    return Response.text(200, UI_DISABLED)


def not_routed(api: AgentAPI, request: Request) -> Response:
    """What a path nobody serves gets (the index handler's answer): for endpoints that are switched off."""
    return _index(api, request)


async def _wrap(route: Route, ctx: Ctx, guard: Guard | None = None) -> Response:
    request = ctx.request
    headers = ctx.headers
    headers["X-Consul-Default-Acl-Policy"] = ctx.api.config.acl.default_policy
    if request.query.error is not None:
        log.error("Failed to decode query: from=%s error=%s", request.remote, request.query.error)
        return Response(500, headers)
    if request.method == "OPTIONS":
        headers["Allow"] = route.allow
        return Response(200, headers)
    try:
        if request.method not in route.methods:
            raise MethodNotAllowed(request.method, route.methods)
        result = apply_filter(ctx, await (route.endpoint(ctx) if guard is None else guard(route, ctx)))
    except MethodNotAllowed as exc:
        headers["Allow"] = route.allow
        return Response.text(exc.status, exc.reason, headers)
    except HTTPError as exc:
        _log_error(request, exc.reason)
        return Response.text(exc.status, exc.reason or "An unexpected error occurred", headers)
    except Exception as exc:
        log.exception("Request error: method=%s url=%s from=%s", request.method, request.path, request.remote)
        return Response.text(500, str(exc) or type(exc).__name__, headers)
    if result is EMPTY:
        return Response(200, headers)
    if isinstance(result, Encoded):
        return Response(200, {**headers, "Content-Type": "application/json"}, result.body)
    if isinstance(result, Response):  # a page, not JSON: the endpoint chose the status and the headers
        result.headers = {**headers, **result.headers}
        return result
    try:
        return json_response(ctx, 200, result)
    except (TypeError, ValueError) as exc:
        log.exception("Request error: cannot encode the result of %s", request.path)
        return Response.text(500, str(exc), headers)


def json_response(ctx: Ctx, status: int, value: Any) -> Response:
    """``value`` as Consul writes a result: JSON, pretty with ``?pretty`` or in ``-dev``, with the endpoint's
    headers (an endpoint returns this itself for a JSON answer with another status, e.g. /v1/txn's 409)."""
    body = go_json(value, pretty=pretty_json(ctx))
    return Response(status, {**ctx.headers, "Content-Type": "application/json"}, body)


def pretty_json(ctx: Ctx) -> bool:
    """Consul indents its JSON with ``?pretty`` and always in ``-dev``."""
    return ctx.request.query.has("pretty") or bool(getattr(ctx.api.config, "dev", False))


def _log_error(request: Request, reason: str) -> None:
    log.error("Request error: method=%s url=%s from=%s error=%s", request.method, request.path, request.remote, reason)
