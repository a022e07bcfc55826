"""``GET /v1/agent/metrics``: the agent's metrics (agent/metrics.py) as Consul's JSON or, with
``?format=prometheus``, in the Prometheus text format."""

from __future__ import annotations

from typing import Any

from agent.http.errors import HTTPError
from agent.http.response import Response
from agent.http.routes import Ctx, Route

__all__ = ["ROUTES"]

#: What Consul (client_golang) labels its scrape with; generate_latest writes this text format.
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


async def agent_metrics(ctx: Ctx) -> Any:
    metrics = getattr(ctx.api, "metrics", None)
    if metrics is None:
        raise HTTPError(500, "metrics are not enabled on this agent")
    if ctx.request.query.get("format") == "prometheus":
        return Response(200, {"Content-Type": PROMETHEUS_TEXT}, metrics.to_prometheus())
    return metrics.to_json()


ROUTES = (Route("/v1/agent/metrics", ("GET",), agent_metrics),)
