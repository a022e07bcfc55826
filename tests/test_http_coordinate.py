"""/v1/coordinate/*, /v1/agent/self's Coord and ?near sorting, through the real HTTP server and py-consul.

The coordinates are not written by hand: real Vivaldi clients (protocol.coordinate) learn a line of nodes 10 ms
apart, so the nearest-first orders the tests expect follow from the known distances.
"""

from __future__ import annotations

import json
import random
import urllib.parse

import consul
import pytest
import trio
from http_fakes import FakeAgent, fetch, member, run, serving
from test_http_api import cluster, get_json, http, with_consul

from agent import cli
from agent.coordinate_book import CoordinateBook
from agent.members import STATUS_LEFT
from protocol.coordinate import Coordinate, VivaldiClient

#: Positions on a line (10 ms per step): node1 at 0, Alpha at 1, web-2 at 3, Zed at 6.
POSITIONS = {"node1": 0, "Alpha": 1, "web-2": 3, "Zed": 6}


def learnt_coordinates(positions: dict[str, int]) -> dict[str, Coordinate]:
    """Train one Vivaldi client per node on the true RTTs until the estimates settle."""
    rng = random.Random(3)
    names = list(positions)
    clients = {n: VivaldiClient(rng=rng) for n in names}
    for _ in range(600):
        for n in names:
            other = rng.choice([m for m in names if m != n])
            clients[n].update(other, clients[other].coordinate, abs(positions[n] - positions[other]) * 0.010)
    return {n: c.coordinate for n, c in clients.items()}


def with_coordinates(api: FakeAgent, coords: dict[str, Coordinate]) -> dict[str, Coordinate]:
    live = dict(coords)
    api.coordinates = CoordinateBook(lambda: live)
    return live


def agent_with_coordinates() -> tuple[FakeAgent, dict[str, Coordinate]]:
    api = cluster()  # node1 (server, leader), web-2, Alpha
    api.apply("member-join", member("Zed", "10.0.0.16"))
    api.apply("member-join", member("gone", "10.0.0.17", status=STATUS_LEFT))
    coords = learnt_coordinates(POSITIONS)
    coords["gone"] = coords["Zed"]  # a left member's coordinate lingers in Serf's cache until the reap
    return api, with_coordinates(api, coords)


def test_coordinate_nodes_shape_and_order() -> None:
    api, coords = agent_with_coordinates()
    reply, entries = get_json(api, "/v1/coordinate/nodes")
    assert [e["Node"] for e in entries] == ["Alpha", "node1", "web-2", "Zed"]  # by name in any case; not the left one
    assert list(entries[0]) == ["Node", "Segment", "Coord"]
    assert list(entries[0]["Coord"]) == ["Vec", "Error", "Adjustment", "Height"]
    assert entries[0]["Coord"]["Vec"] == list(coords["Alpha"].vec) and len(entries[0]["Coord"]["Vec"]) == 8
    assert entries[0]["Segment"] == ""
    assert reply.header("X-Consul-Index") == str(api.coordinates.current.index)
    assert reply.header("X-Consul-Knownleader") == "true"
    _, entries = get_json(api, "/v1/coordinate/nodes?segment=alpha")
    assert entries == []
    _, entries = get_json(api, "/v1/coordinate/nodes?segment=")
    assert len(entries) == 4


def test_coordinate_endpoints_take_filter_and_ignore_it_as_consul() -> None:
    """Consul's HTTP layer parses ``?filter`` into every read's QueryOptions, but Coordinate.ListNodes and
    Coordinate.Node never compile it (agent/consul/coordinate_endpoint.go has no bexpr filter): any expression,
    even one that does not parse, answers the whole list."""
    api, _ = agent_with_coordinates()
    _, everything = get_json(api, "/v1/coordinate/nodes")
    _, one = get_json(api, "/v1/coordinate/node/web-2")
    for expression in ('Node == "Alpha"', "Node ==", "Coord.Vec is empty"):
        query = urllib.parse.urlencode({"filter": expression})
        assert get_json(api, f"/v1/coordinate/nodes?{query}")[1] == everything
        assert get_json(api, f"/v1/coordinate/node/web-2?{query}")[1] == one


def test_coordinate_node_and_its_404() -> None:
    api, coords = agent_with_coordinates()
    _, entries = get_json(api, "/v1/coordinate/node/web-2")
    assert entries == [{"Node": "web-2", "Segment": "", "Coord": coords["web-2"].to_json()}]
    _, upper = get_json(api, "/v1/coordinate/node/WEB-2")  # Consul's coordinate index ignores case
    assert upper == entries
    for missing in ("/v1/coordinate/node/nobody", "/v1/coordinate/node/gone"):
        reply = http(api, "GET", missing)
        assert (reply.status, reply.body) == (404, b""), missing


def test_coordinate_datacenters_lists_our_servers() -> None:
    api, coords = agent_with_coordinates()
    _, dcs = get_json(api, "/v1/coordinate/datacenters")
    assert dcs == [{"Datacenter": "dc1", "AreaID": "wan",
                    "Coordinates": [{"Node": "node1", "Segment": "", "Coord": coords["node1"].to_json()}]}]


def test_disabled_coordinates_are_a_401_and_a_null_coord() -> None:
    api = cluster()  # FakeAgent's book has no source: Serf keeps no coordinates
    for path in ("/v1/coordinate/nodes", "/v1/coordinate/node/node1", "/v1/coordinate/datacenters"):
        reply = http(api, "GET", path)
        assert (reply.status, reply.body) == (401, b"Coordinate support disabled"), path
    _, me = get_json(api, "/v1/agent/self")
    assert me["Coord"] is None
    _, nodes = get_json(api, "/v1/catalog/nodes?near=_agent")  # nothing to sort by: name order
    assert [n["Node"] for n in nodes] == ["Alpha", "node1", "web-2"]


def test_agent_self_coord_is_the_live_one() -> None:
    api, live = agent_with_coordinates()
    live["node1"] = Coordinate((0.5,) * 8, 0.2, 0.001, 0.0001)  # changed since the last publication
    _, me = get_json(api, "/v1/agent/self")
    assert me["Coord"] == {"Vec": [0.5] * 8, "Error": 0.2, "Adjustment": 0.001, "Height": 0.0001}


def test_near_sorts_catalog_nodes_nearest_first() -> None:
    api, _ = agent_with_coordinates()
    _, nodes = get_json(api, "/v1/catalog/nodes")
    assert [n["Node"] for n in nodes] == ["Alpha", "node1", "web-2", "Zed"]
    _, nodes = get_json(api, "/v1/catalog/nodes?near=_agent")  # from node1 at 0
    assert [n["Node"] for n in nodes] == ["node1", "Alpha", "web-2", "Zed"]
    _, nodes = get_json(api, "/v1/catalog/nodes?near=zed")  # from 6; the name in any case
    assert [n["Node"] for n in nodes] == ["Zed", "web-2", "Alpha", "node1"]
    _, nodes = get_json(api, "/v1/catalog/nodes?near=nobody")  # no coordinate for the origin: unsorted
    assert [n["Node"] for n in nodes] == ["Alpha", "node1", "web-2", "Zed"]


def test_near_puts_nodes_without_coordinates_last() -> None:
    api, live = agent_with_coordinates()
    del live["Alpha"]
    api.coordinates.publish()
    _, nodes = get_json(api, "/v1/catalog/nodes?near=_agent")
    assert [n["Node"] for n in nodes] == ["node1", "web-2", "Zed", "Alpha"]


def test_near_sorts_health_checks_by_state() -> None:
    api, _ = agent_with_coordinates()
    _, checks = get_json(api, "/v1/health/state/any?near=Zed")
    assert [c["Node"] for c in checks] == ["Zed", "web-2", "Alpha", "node1"]  # each node's serfHealth


def test_blocking_read_waits_for_a_new_publication() -> None:
    api, live = agent_with_coordinates()
    index = api.coordinates.current.index
    out: list[tuple[float, int, list[str]]] = []

    async def main() -> None:
        with trio.fail_after(10):
            async with serving(api) as addr:
                async def later() -> None:
                    await trio.sleep(0.3)
                    live["web-2"] = live["Zed"]
                    api.coordinates.publish()

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(later)
                    started = trio.current_time()
                    reply = await fetch(addr, "GET", f"/v1/coordinate/nodes?index={index}&wait=5s")
                    entries = json.loads(reply.body)
                    out.append((trio.current_time() - started, int(reply.header("X-Consul-Index") or 0),
                                [e["Coord"]["Vec"] == list(live["Zed"].vec) for e in entries if e["Node"] == "web-2"]))

    run(main)
    waited, new_index, changed = out[0]
    assert 0.25 <= waited < 5
    assert new_index == index + 1 and changed == [True]


def test_publish_raises_the_index_only_on_change() -> None:
    api, live = agent_with_coordinates()
    index = api.coordinates.current.index
    assert api.coordinates.publish() is False
    assert api.coordinates.current.index == index
    live["Zed"] = live["node1"]
    assert api.coordinates.publish() is True
    assert api.coordinates.current.index == index + 1


def test_py_consul_reads_coordinates() -> None:
    api, _ = agent_with_coordinates()

    def calls(c: consul.Consul) -> tuple[list, list]:
        return c.coordinate.nodes()[1], c.coordinate.datacenters()

    nodes, dcs = with_consul(api, calls)
    assert {n["Node"] for n in nodes} == {"Alpha", "Zed", "node1", "web-2"}
    assert set(dcs[0]) == {"Datacenter", "AreaID", "Coordinates"}


# ---------------------------------------------------------------------- `python -m agent rtt`


def rtt_cli(api: FakeAgent, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`rtt ARGS` against the real HTTP server serving ``api``."""
    from agent import __main__ as entry

    out: list[int] = []

    async def main() -> None:
        with trio.fail_after(10):
            async with serving(api) as (host, port):
                argv = ["rtt", f"-http-addr={host}:{port}", *args]
                out.append(await trio.to_thread.run_sync(cli.main, argv, entry.COMMANDS))

    run(main)
    stdout, stderr = capsys.readouterr()
    return out[0], stdout, stderr


def test_rtt_prints_consuls_line(capsys: pytest.CaptureFixture[str]) -> None:
    api, coords = agent_with_coordinates()
    code, out, _ = rtt_cli(api, capsys, "Zed", "node1")
    ms = coords["Zed"].distance_to(coords["node1"]) * 1000
    assert (code, out) == (0, f"Estimated Zed <-> node1 rtt: {ms:.3f} ms (using LAN coordinates)\n")
    assert ms == pytest.approx(60, rel=0.1)  # 6 steps of 10 ms, learnt
    code, out, _ = rtt_cli(api, capsys, "WEB-2")  # the agent is the second node; names match in any case
    assert code == 0 and out.startswith("Estimated WEB-2 <-> node1 rtt: ") and "(using LAN coordinates)" in out
    code, out, _ = rtt_cli(api, capsys, "-wan", "node1.dc1")
    own = coords["node1"].distance_to(coords["node1"]) * 1000  # twice the height and adjustment: not zero
    assert (code, out) == (0, f"Estimated node1.dc1 <-> node1.dc1 rtt: {own:.3f} ms (using WAN coordinates)\n")


def test_rtt_errors_are_consuls(capsys: pytest.CaptureFixture[str]) -> None:
    api, _ = agent_with_coordinates()
    code, _, err = rtt_cli(api, capsys, "nobody", "node1")
    assert (code, err) == (1, 'Could not find a coordinate for node "nobody"\n')
    code, _, err = rtt_cli(api, capsys, "node1", "gone")
    assert (code, err) == (1, 'Could not find a coordinate for node "gone"\n')
    code, _, err = rtt_cli(api, capsys)
    assert code == 1 and err.startswith("One or two node names must be specified\n\nUsage: consul rtt")
    code, _, err = rtt_cli(api, capsys, "-wan", "node1")
    assert (code, err) == (1, "Node names must be specified as <node name>.<datacenter> with -wan\n")
    code, _, err = rtt_cli(cluster(), capsys, "node1", "web-2")  # coordinates disabled
    assert code == 1 and err.startswith("Error getting coordinates: ") and "401" in err


# ---------------------------------------------------------------------- PUT /v1/coordinate/update


def put(api: FakeAgent, body: object, target: str = "/v1/coordinate/update") -> tuple[int, bytes]:
    reply = http_with_body(api, "PUT", target, json.dumps(body).encode() if not isinstance(body, bytes) else body)
    return reply.status, reply.body


def http_with_body(api: FakeAgent, method: str, target: str, body: bytes):
    out = []

    async def main() -> None:
        with trio.fail_after(10):
            async with serving(api) as addr:
                out.append(await fetch(addr, method, target, body=body))

    run(main)
    return out[0]


WRITTEN = {"Adjustment": 0, "Error": 1.5, "Height": 0, "Vec": [0.25] * 8}


def test_update_is_shown_until_the_nodes_own_coordinate_moves() -> None:
    api, live = agent_with_coordinates()
    index = api.coordinates.current.index
    assert put(api, {"Node": "web-2", "Coord": WRITTEN}) == (200, b"")
    _, entries = get_json(api, "/v1/coordinate/node/web-2")
    assert entries[0]["Coord"] == {"Vec": [0.25] * 8, "Error": 1.5, "Adjustment": 0.0, "Height": 0.0}
    assert api.coordinates.current.index == index + 1  # published at once: blocking readers wake
    api.coordinates.publish()  # web-2's own coordinate has not moved: the written one stays
    assert api.coordinates.current.coordinates["web-2"].vec == (0.25,) * 8
    live["web-2"] = live["Alpha"]  # web-2's next ack arrives
    api.coordinates.publish()
    assert api.coordinates.current.coordinates["web-2"] == live["Alpha"]


def test_update_refusals_are_consuls() -> None:
    api, _ = agent_with_coordinates()
    before = api.coordinates.current
    assert put(api, b"") == (400, b"Request decode failed: EOF")
    status, body = put(api, {"Node": "web-2", "Coord": {"Vec": "x"}})
    assert status == 400 and body.startswith(b"Request decode failed: ")
    assert put(api, {"Node": "web-2", "Coord": {**WRITTEN, "Vec": [0.1] * 3}}) == (500, b"incompatible coordinate")
    assert put(api, {"Node": "web-2"}) == (500, b"invalid coordinate")
    assert put(api, {"Node": "web-2", "Coord": WRITTEN}, "/v1/coordinate/update?dc=dc9") == (
        500, b"No path to datacenter")
    assert api.coordinates.current == before
    assert put(cluster(), {"Node": "node1", "Coord": WRITTEN}) == (401, b"Coordinate support disabled")


def test_py_consul_update_then_node() -> None:
    api, _ = agent_with_coordinates()

    def calls(c: consul.Consul) -> object:
        assert c.coordinate.update("Alpha", WRITTEN) is True
        return c.coordinate.node("Alpha")[1]

    entries = with_consul(api, calls)
    assert entries[0]["Node"] == "Alpha" and entries[0]["Coord"]["Vec"] == [0.25] * 8
