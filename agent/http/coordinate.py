"""``/v1/coordinate/*`` and the ``?near=`` sort, over the coordinates this agent's Serf learnt (agent.coordinate_book).

Consul's shapes: ``[{"Node", "Segment", "Coord": {"Vec", "Error", "Adjustment", "Height"}}]`` sorted by node;
``/v1/coordinate/node/:node`` is a 404 with no body when the node has none; with coordinates disabled every
endpoint is a 401 ``Coordinate support disabled``. Only members the catalog lists (not left) are shown, as
Consul's servers drop a node's coordinate with its registration. There is no WAN pool, so
``/v1/coordinate/datacenters`` lists our datacenter (area ``wan``) with its alive servers' LAN coordinates standing
in for WAN ones. ``PUT /v1/coordinate/update`` (``{Node, Segment, Coord}``) is honoured as far as it can be: the
coordinate is shown for that node until the node's own next coordinate reaches this agent (agent.coordinate_book);
it is this agent's view only (nothing is gossiped), and, as Consul's, refused when not finite (``invalid
coordinate``) or of another dimensionality (``incompatible coordinate``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent.catalog.query import known_servers
from agent.coordinates import coordinate_from_json
from agent.http.blocking import block_time, parse_query_options, query_meta
from agent.http.errors import NO_PATH_TO_DC, HTTPError, bad_request, decode_body
from agent.http.reads import RPC_ERROR_PREFIX, require_leader
from agent.http.response import Response
from agent.http.routes import EMPTY, Ctx, Route
from agent.http.store import check_dc
from agent.members import STATUS_LEFT

if TYPE_CHECKING:
    from agent.coordinate_book import CoordinateSnapshot

__all__ = ["ROUTES"]

DISABLED = "Coordinate support disabled"


def _entry(node: str, coord: Any) -> dict[str, Any]:
    return {"Node": node, "Segment": "", "Coord": coord.to_json()}


def _check_enabled(ctx: Ctx) -> None:
    if not ctx.api.coordinates.enabled:
        raise HTTPError(401, DISABLED)


def _listed(ctx: Ctx, snap: CoordinateSnapshot) -> list[dict[str, Any]]:
    """Catalog members' coordinates by node name, filtered by ``?segment`` (we have only the default, "")."""
    members = ctx.api.table.current.members
    entries = [_entry(n, c) for n, c in sorted(snap.coordinates.items(), key=lambda item: item[0].lower())
               if n in members and members[n].status != STATUS_LEFT]  # by name, case-insensitively (Consul's index)
    q = ctx.request.query
    if q.has("segment"):
        entries = [e for e in entries if e["Segment"] == q.get("segment")]
    return entries


async def _read(ctx: Ctx) -> CoordinateSnapshot:
    """Consul's read path for coordinates: parse, our DC only, a leader (unless ``?stale``), block on the index."""
    _check_enabled(ctx)
    opts = parse_query_options(ctx.request, ctx.api.config.datacenter)
    if opts.dc != ctx.api.config.datacenter:
        raise HTTPError(500, NO_PATH_TO_DC)
    snapshot = await require_leader(ctx, opts)
    book = ctx.api.coordinates
    snap = book.current
    if opts.index and snap.index <= opts.index:
        snap = await book.wait_past(opts.index, block_time(opts.wait, ctx.rng))
    ctx.headers.update(query_meta(snap.index, bool(snapshot.leader), 0, opts))
    return snap


async def coordinate_nodes(ctx: Ctx) -> list[dict[str, Any]]:
    """GET /v1/coordinate/nodes[?segment=]: every catalog node's LAN coordinate (blocking on ``?index``)."""
    return _listed(ctx, await _read(ctx))


async def coordinate_node(ctx: Ctx) -> Any:
    """GET /v1/coordinate/node/:node (any case): its coordinate entries; 404 without a body when there are none."""
    name = ctx.request.path.removeprefix("/v1/coordinate/node/")
    entries = [e for e in _listed(ctx, await _read(ctx)) if e["Node"].lower() == name.lower()]
    if not entries:
        return Response(404, dict(ctx.headers))
    return entries


async def coordinate_datacenters(ctx: Ctx) -> list[dict[str, Any]]:
    """GET /v1/coordinate/datacenters: our DC's servers (no WAN pool: their LAN coordinates), no query meta."""
    _check_enabled(ctx)
    config = ctx.api.config
    coordinates = ctx.api.coordinates.current.coordinates
    members = ctx.api.table.current.members
    servers = sorted(m.name for m in known_servers(members.values(), config.datacenter) if m.name in coordinates)
    entries = [_entry(n, coordinates[n]) for n in servers]  # the short name: `consul rtt -wan` matches on it
    return [{"Datacenter": config.datacenter, "AreaID": "wan", "Coordinates": entries}]


async def coordinate_update(ctx: Ctx) -> Any:
    """PUT /v1/coordinate/update: ``{Node, Segment, Coord}``; an empty 200 (Consul's ``nil``)."""
    _check_enabled(ctx)
    body = decode_body(ctx.request.body)
    if not isinstance(body, dict):
        raise bad_request("Request decode failed: json: cannot unmarshal into Go value of type "
                          "structs.CoordinateUpdateRequest")
    fields = {k.lower(): v for k, v in body.items()}  # Go's encoding/json matches keys case-insensitively
    node, segment, raw = fields.get("node", ""), fields.get("segment", ""), fields.get("coord")
    coord = coordinate_from_json(raw) if raw is not None else None
    if not isinstance(node, str) or not isinstance(segment, str) or (raw is not None and coord is None):
        raise bad_request("Request decode failed: json: cannot unmarshal into Go struct field "
                          "CoordinateUpdateRequest of type structs.CoordinateUpdateRequest")
    check_dc(ctx, ctx.request.query.get("dc") or "")
    prefix = "" if ctx.api.config.server else RPC_ERROR_PREFIX  # the servers' Coordinate.Update says no
    if coord is None or not coord.is_valid():
        raise HTTPError(500, prefix + "invalid coordinate")
    own = ctx.api.coordinates.live().get(ctx.api.config.node_name)
    if own is not None and not own.is_compatible_with(coord):
        raise HTTPError(500, prefix + "incompatible coordinate")
    if not segment:  # we have only the default segment; a coordinate for another is stored nowhere
        ctx.api.coordinates.write(node, coord)
    return EMPTY


ROUTES = (
    Route("/v1/coordinate/datacenters", ("GET",), coordinate_datacenters),
    Route("/v1/coordinate/nodes", ("GET",), coordinate_nodes),
    Route("/v1/coordinate/node/", ("GET",), coordinate_node),
    Route("/v1/coordinate/update", ("PUT",), coordinate_update),
)
