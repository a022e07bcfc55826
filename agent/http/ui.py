"""``GET /ui/``: one self-contained page (``ui.html`` beside this file) that shows the cluster live.

The page has no build step and loads nothing from anywhere but this agent (no scripts, fonts or images from the
internet: agents often run where there is none).  Its members view opens ``/v1/stream/members`` and keeps itself
current from the stream, reconnecting by itself with ``?index=``; its nodes, services, key/value and network views
(alive members over time, each node's RTT from network coordinates) follow Consul's HTTP API with blocking
queries, only while shown.  The Content-Security-Policy says the same thing to the
browser, so a later edit that pulls in a CDN fails loudly in the browser test instead of silently offline.

Served only when the UI is enabled (``-ui``, ``"ui": true``, ``ui_config.enabled``; on in ``-dev``); otherwise
``/ui/`` is what any unrouted path is.  ``GET /`` redirects here (routes.py, Consul's Index handler).
"""

from __future__ import annotations

import functools
from importlib import resources

from agent.http.response import Response
from agent.http.routes import Ctx, Route, not_routed, ui_enabled

__all__ = ["PAGE_PATHS", "ROUTES", "page"]

PAGE_PATHS = frozenset({"/ui/", "/ui/index.html"})
_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
        "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
}


@functools.cache
def page() -> bytes:
    """The page's bytes, read once from the package (setuptools package-data: ``agent.http/ui.html``)."""
    return resources.files("agent.http").joinpath("ui.html").read_bytes()


async def ui(ctx: Ctx) -> Response:
    """The page at ``/ui/`` (and ``/ui/index.html``); other ``/ui/`` paths are Go's plain 404."""
    if not ui_enabled(ctx.api):
        return not_routed(ctx.api, ctx.request)
    if ctx.request.path not in PAGE_PATHS:
        return Response.text(404, "404 page not found\n")
    return Response(200, dict(_HEADERS), page())


ROUTES = (Route("/ui/", ("GET", "HEAD"), ui),)
