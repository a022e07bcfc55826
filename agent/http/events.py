"""``/v1/event/fire/:name`` and ``/v1/event/list`` (Consul's agent/event_endpoint.go).

Fire builds a UserEvent from the path, ``?node=``/``?service=``/``?tag=`` and the body, and the agent broadcasts
it over LAN Serf (agent/events.py); the answer is the event as sent (LTime 0).  List answers the agent's ring of
accepted events, ``?name=`` filtered, with X-Consul-Index = uuidToUint64 of the last event (1 when none).  That
index is not monotonic, so a blocking list (``?index=``) waits only while the index still *equals* the one asked
for, up to ``?wait`` (no default: 10 m, also the cap; no jitter), exactly as Consul's EventList does.
"""

from __future__ import annotations

import trio

from agent.event_log import EventLog
from agent.events import new_event
from agent.http.blocking import MAX_QUERY_TIME, parse_wait_index
from agent.http.errors import NO_PATH_TO_DC, HTTPError, bad_request
from agent.http.routes import Ctx, Route

__all__ = ["ROUTES", "event_fire", "event_list"]

FIRE_PREFIX = "/v1/event/fire/"


async def event_fire(ctx: Ctx) -> dict[str, object]:
    """PUT /v1/event/fire/:name: 400 without a name, 500 with Consul's text for bad filters or an oversized event."""
    request = ctx.request
    dc = request.query.get("dc")
    if dc and dc != ctx.api.config.datacenter:
        raise HTTPError(500, NO_PATH_TO_DC)
    name = request.path[len(FIRE_PREFIX):]
    if not name:
        raise bad_request("Missing name")
    q = request.query
    try:
        event = new_event(name, request.body or None, node=q.get("node") or "", service=q.get("service") or "",
                          tag=q.get("tag") or "")
        await ctx.api.fire_event(event)
    except ValueError as err:
        raise HTTPError(500, str(err)) from None
    return event.to_json()


async def event_list(ctx: Ctx) -> list[dict[str, object]]:
    """GET /v1/event/list[?name=][&index=&wait=]: the recent events, blocking while the index is unchanged."""
    q = ctx.request.query
    wait, min_index = parse_wait_index(q)
    name = q.get("name") or ""
    log: EventLog = ctx.api.events
    if min_index > 0:
        with trio.move_on_after(MAX_QUERY_TIME if wait <= 0 or wait > MAX_QUERY_TIME else wait):
            while True:
                changed = log.changed()  # taken before reading: an event between the read and the wait wakes it
                if EventLog.index(log.events(name)) != min_index:
                    break
                await changed.wait()
    events = log.events(name)
    ctx.headers["X-Consul-Index"] = str(EventLog.index(events))
    return [event.to_json() for event in events]


ROUTES = (
    Route(FIRE_PREFIX, ("PUT",), event_fire),
    Route("/v1/event/list", ("GET",), event_list),
)
