"""``GET /v1/agent/monitor?loglevel=&logjson``: the agent's log lines streamed as they are logged.

The lines come from the agent's LogHub (agent/logstream.py): a bounded buffer per request, so a client that reads
slowly loses lines (it is told how many) and never slows the agent; one that stops reading for the server's write
timeout is disconnected.  The response is chunked and lasts until the client hangs up or the agent stops.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from agent.http.errors import HTTPError, bad_request
from agent.http.response import TEXT_PLAIN, Response
from agent.http.routes import Ctx, Route
from agent.logstream import python_level, valid_log_level

__all__ = ["ROUTES"]


async def monitor(ctx: Ctx) -> Response:
    query = ctx.request.query
    level = query.get("loglevel") or "INFO"
    if not valid_log_level(level):
        raise bad_request(f"Unknown log level: {level}")
    as_json = query.has("logjson")
    hub = getattr(ctx.api, "logs", None)
    if hub is None:
        raise HTTPError(500, "log streaming is not enabled on this agent")

    async def stream(send: Callable[[bytes], Awaitable[None]]) -> None:
        with hub.watch(python_level(level), as_json=as_json) as watcher:
            while True:
                lines = await watcher.next_lines()
                await send("".join(line + "\n" for line in lines).encode("utf-8", errors="replace"))

    return Response(200, {"Content-Type": TEXT_PLAIN}, stream=stream)


ROUTES = (Route("/v1/agent/monitor", ("GET",), monitor),)
