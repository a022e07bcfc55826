"""`rtt`: Consul's command/rtt, the estimated round trip time between two nodes from their coordinates.

LAN (the default) reads ``/v1/coordinate/nodes``, ``-wan`` reads ``/v1/coordinate/datacenters`` with
``node.dc`` names; names match case-insensitively; the second node defaults to the agent's own. The distance is
serf's (protocol.coordinate), printed as Consul prints it:
``Estimated a <-> b rtt: 1.234 ms (using LAN coordinates)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.cli_client import ClientError
from agent.cli_command import HTTP_FLAGS, Command, _client_or_error
from agent.cli_output import _err, _out
from agent.coordinates import coordinate_from_json
from agent.goflags import Flag
from protocol.coordinate import Coordinate

__all__ = ["COMMANDS", "run_rtt"]


def _usage_error() -> int:
    return COMMANDS["rtt"].usage_error("One or two node names must be specified")


def _lan(client: Any, nodes: list[str]) -> tuple[Coordinate | None, Coordinate | None]:
    """The two nodes' LAN coordinates in a segment both have (we have only the default one)."""
    entries = client.get_json("/v1/coordinate/nodes") or []
    by_segment: list[dict[str, Coordinate]] = [{}, {}]
    for entry in entries if isinstance(entries, list) else ():
        if not isinstance(entry, Mapping):
            continue
        for i, name in enumerate(nodes):
            coord = coordinate_from_json(entry.get("Coord"))
            if str(entry.get("Node", "")).casefold() == name.casefold() and coord is not None:
                by_segment[i][str(entry.get("Segment", ""))] = coord
    # lib.CoordinateSet.Intersect: the default segment, unless a side has exactly one (the other's wins ties)
    segment = ""
    for side in by_segment:
        if len(side) == 1:
            segment = next(iter(side))
    return by_segment[0].get(segment), by_segment[1].get(segment)


def _wan(client: Any, nodes: list[str]) -> tuple[Coordinate | None, Coordinate | None] | str:
    parts = [n.split(".") for n in nodes]
    if any(len(p) != 2 for p in parts):
        return "Node names must be specified as <node name>.<datacenter> with -wan"
    (node1, dc1), (node2, dc2) = parts
    area1 = area2 = None
    coord1 = coord2 = None
    dcs = client.get_json("/v1/coordinate/datacenters") or []
    for dc in dcs if isinstance(dcs, list) else ():
        entries = dc.get("Coordinates") if isinstance(dc, Mapping) else None
        for entry in entries if isinstance(entries, list) else ():
            if not isinstance(entry, Mapping):
                continue
            name = str(entry.get("Node", "")).casefold()
            if dc.get("Datacenter") == dc1 and name == node1.casefold():
                area1, coord1 = dc.get("AreaID"), coordinate_from_json(entry.get("Coord"))
            if dc.get("Datacenter") == dc2 and name == node2.casefold():
                area2, coord2 = dc.get("AreaID"), coordinate_from_json(entry.get("Coord"))
            if area1 == area2 and coord1 is not None and coord2 is not None:
                return coord1, coord2
    return None, None


def run_rtt(values: dict[str, Any], args: list[str]) -> int:
    """`consul rtt [-wan] node1 [node2]`."""
    if not 1 <= len(args) <= 2:
        return _usage_error()
    client = _client_or_error(values)
    if client is None:
        return 1
    nodes = list(args)
    wan = bool(values.get("wan"))
    try:
        if len(nodes) < 2:
            try:
                config = (client.get_json("/v1/agent/self") or {}).get("Config") or {}
            except ClientError as err:
                _err(f"Unable to look up agent info: {err}")
                return 1
            own = str(config.get("NodeName", ""))
            nodes.append(f"{own}.{config.get('Datacenter', '')}" if wan else own)
        found = _wan(client, nodes) if wan else _lan(client, nodes)
    except ClientError as err:
        _err(f"Error getting coordinates: {err}")
        return 1
    if isinstance(found, str):
        _err(found)
        return 1
    for name, coord in zip(nodes, found, strict=True):
        if coord is None:
            _err(f'Could not find a coordinate for node "{name}"')
            return 1
    coord1, coord2 = found
    assert coord1 is not None and coord2 is not None
    if not coord1.is_compatible_with(coord2):
        _err("coordinate dimensionality does not match")
        return 1
    ms = coord1.distance_to(coord2) * 1000.0
    _out(f"Estimated {nodes[0]} <-> {nodes[1]} rtt: {ms:.3f} ms (using {'WAN' if wan else 'LAN'} coordinates)")
    return 0


COMMANDS: Mapping[str, Command] = {
    "rtt": Command(
        "rtt",
        "Estimates network round trip time between nodes",
        "Usage: consul rtt [options] node1 [node2]\n\n"
        "  Estimates the round trip time between two nodes using Consul's network\n"
        "  coordinate model of the cluster.\n\n"
        "  At least one node name is required. If the second node name isn't given, it\n"
        "  is set to the agent's node name. Note that these are node names as known to\n"
        "  Consul as \"consul members\" would show, not IP addresses.\n\n"
        "  By default, the two nodes are assumed to be nodes in the local datacenter\n"
        "  and the LAN coordinates are used. If the -wan option is given, then the WAN\n"
        "  coordinates are used, and the node names must be suffixed by a period and\n"
        "  the datacenter (eg. \"myserver.dc1\").\n\n"
        "  It is not possible to measure between LAN coordinates and WAN coordinates\n"
        "  because they are maintained by independent Serf gossip areas, so they are\n"
        "  not compatible.",
        (*HTTP_FLAGS, Flag("wan", "Use WAN coordinates instead of LAN coordinates.", is_bool=True)),
        run_rtt,
    ),
}
