"""agent/http endpoints: JSON shapes, query parameters, error texts and headers, then py-consul end to end.

Rules of this file: real sockets on 127.0.0.1 port 0, one server per test, cancelled at the end; the agent is
``http_fakes.FakeAgent`` over the real MemberTable (membership changes go through ``FakeAgent.apply``);
py-consul runs in a worker thread (``trio.to_thread.run_sync``) because it is a blocking client; every I/O test
is bounded by ``trio.fail_after``.
"""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Callable
from typing import Any

import attrs
import consul
import pytest
import trio
from http_fakes import (
    CLIENT_ID,
    SERVER_ID,
    FakeAgent,
    Reply,
    client_config,
    fetch,
    member,
    run,
    server_config,
    serving,
)

from agent.members import STATUS_FAILED, STATUS_LEAVING, STATUS_LEFT

TIMEOUT = 10


def http(api: FakeAgent, method: str, target: str, *, headers: dict[str, str] | None = None, **options: Any) -> Reply:
    """One request against a fresh server for ``api``."""
    out: list[Reply] = []

    async def main() -> None:
        with trio.fail_after(TIMEOUT):
            async with serving(api, **options) as addr:
                out.append(await fetch(addr, method, target, headers=headers))

    run(main)
    return out[0]


def get_json(api: FakeAgent, target: str, **options: Any) -> tuple[Reply, Any]:
    reply = http(api, "GET", target, **options)
    assert reply.status == 200, reply.body
    assert reply.header("Content-Type") == "application/json"
    return reply, json.loads(reply.body)


def with_consul(api: FakeAgent, fn: Callable[[consul.Consul], Any]) -> Any:
    """Run ``fn(py-consul client)`` in a thread against a fresh server for ``api``."""
    out: list[Any] = []

    async def main() -> None:
        with trio.fail_after(TIMEOUT):
            async with serving(api) as (host, port):
                client = consul.Consul(host=host, port=port)
                out.append(await trio.to_thread.run_sync(fn, client))

    run(main)
    return out[0]


def cluster() -> FakeAgent:
    """A bootstrapped server (node1, the leader) and two clients, one of them with an upper-case name."""
    api = FakeAgent(config=server_config(node_meta={"env": "prod", "rack": "r1"}))
    api.add_self()
    api.apply("member-join", member("web-2", "10.0.0.13", node_id=CLIENT_ID))
    api.apply("member-join", member("Alpha", "10.0.0.12"))
    return api


# ---------------------------------------------------------------------- /v1/catalog/nodes


def test_catalog_nodes_shape_field_by_field() -> None:
    api = cluster()
    reply, nodes = get_json(api, "/v1/catalog/nodes")
    assert [n["Node"] for n in nodes] == ["Alpha", "node1", "web-2"]  # case-insensitive name order
    node1 = nodes[1]
    assert list(node1) == [
        "ID",
        "Node",
        "Address",
        "Datacenter",
        "TaggedAddresses",
        "Meta",
        "CreateIndex",
        "ModifyIndex",
    ]
    assert node1["ID"] == SERVER_ID
    assert node1["Address"] == "10.0.0.11"
    assert node1["Datacenter"] == "dc1"
    assert node1["TaggedAddresses"] == {
        "lan": "10.0.0.11",
        "lan_ipv4": "10.0.0.11",
        "wan": "10.0.0.11",
        "wan_ipv4": "10.0.0.11",
    }
    # The local node carries its node_meta; every node has the segment (and its version) meta.
    assert node1["Meta"] == {"consul-network-segment": "", "consul-version": "1.20.1", "env": "prod", "rack": "r1"}
    assert nodes[2]["Meta"] == {"consul-network-segment": "", "consul-version": "1.20.1"}
    assert nodes[2]["ID"] == CLIENT_ID
    snap = api.table.current
    assert (node1["CreateIndex"], node1["ModifyIndex"]) == (
        snap.members["node1"].create_index,
        snap.members["node1"].modify_index,
    )
    assert reply.header("X-Consul-Index") == str(snap.index)
    assert reply.header("X-Consul-Knownleader") == "true"
    assert reply.header("X-Consul-Lastcontact") == "0"
    assert reply.header("X-Consul-Effective-Consistency") == "leader"
    # Go-canonical spelling on the wire.
    assert {"X-Consul-Index", "X-Consul-Knownleader", "X-Consul-Lastcontact"} <= set(reply.raw_header_names)


def test_catalog_lists_alive_leaving_failed_but_not_left_reaped_or_foreign() -> None:
    api = cluster()
    api.apply("member-join", member("leaving", "10.0.0.20", status=STATUS_LEAVING))
    api.apply("member-failed", member("failed", "10.0.0.21", status=STATUS_FAILED))
    api.apply("member-leave", member("left", "10.0.0.22", status=STATUS_LEFT))
    api.apply("member-join", member("reaped", "10.0.0.23"))
    api.apply("member-reap", member("reaped", "10.0.0.23", status=STATUS_LEFT))
    api.apply("member-join", member("other-dc", "10.0.0.24", dc="dc2"))
    plain_serf = attrs.evolve(member("plain", "10.0.0.25"), tags={"x": "1"})
    api.apply("member-join", plain_serf)
    _, nodes = get_json(api, "/v1/catalog/nodes")
    assert [n["Node"] for n in nodes] == ["Alpha", "failed", "leaving", "node1", "web-2"]


def test_catalog_nodes_node_meta_filter_and_near_ignored() -> None:
    api = cluster()
    _, nodes = get_json(api, "/v1/catalog/nodes?node-meta=env:prod&near=_agent")
    assert [n["Node"] for n in nodes] == ["node1"]
    _, nodes = get_json(api, "/v1/catalog/nodes?node-meta=env:prod&node-meta=rack:r2")
    assert nodes == []
    _, nodes = get_json(api, "/v1/catalog/nodes?node-meta=consul-network-segment:")
    assert len(nodes) == 3


def test_catalog_nodes_ipv6_tagged_addresses() -> None:
    api = cluster()
    api.apply("member-join", member("v6", "fd00::5"))
    _, nodes = get_json(api, "/v1/catalog/nodes")
    v6 = next(n for n in nodes if n["Node"] == "v6")
    assert v6["TaggedAddresses"] == {"lan": "fd00::5", "lan_ipv6": "fd00::5", "wan": "fd00::5", "wan_ipv6": "fd00::5"}


def test_catalog_empty_is_a_list_and_index_is_never_zero() -> None:
    api = FakeAgent(config=server_config())
    reply, nodes = get_json(api, "/v1/catalog/nodes?stale")
    assert nodes == []
    assert reply.header("X-Consul-Index") == "1"
    assert reply.header("X-Consul-Knownleader") == "false"
    assert reply.header("X-Consul-Effective-Consistency") == "stale"


# ---------------------------------------------------------------------- leader, dc, client agents


def test_no_leader_is_500_unless_stale() -> None:
    api = FakeAgent(config=server_config(bootstrap=False, bootstrap_expect=3))
    api.add_self()
    reply = http(api, "GET", "/v1/catalog/nodes")
    assert (reply.status, reply.body) == (500, b"No cluster leader")
    assert reply.header("Content-Type") == "text/plain; charset=utf-8"
    assert reply.header("X-Consul-Index") == "1" and reply.header("X-Consul-Knownleader") == "false"
    reply, nodes = get_json(api, "/v1/catalog/nodes?stale=")
    assert [n["Node"] for n in nodes] == ["node1"]
    assert reply.header("X-Consul-Knownleader") == "false"
    assert http(api, "GET", "/v1/catalog/node/node1").body == b"No cluster leader"
    # Status never fails for a missing leader.
    assert get_json(api, "/v1/status/leader")[1] == ""
    assert get_json(api, "/v1/status/peers")[1] == []


def test_leader_appearing_within_the_hold_answers() -> None:
    api = FakeAgent(config=server_config(bootstrap=False, bootstrap_expect=2))
    api.add_self()
    out: list[Reply] = []

    async def main() -> None:
        with trio.fail_after(TIMEOUT):
            async with serving(api, rpc_hold_timeout=5.0) as addr, trio.open_nursery() as nursery:

                async def second_server() -> None:
                    await trio.sleep(0.2)
                    api.apply("member-join", member("node2", "10.0.0.2", server=True, node_id="ffff"))

                nursery.start_soon(second_server)
                start = time.monotonic()
                out.append(await fetch(addr, "GET", "/v1/catalog/nodes"))
                assert time.monotonic() - start < 2

    run(main)
    assert out[0].status == 200
    assert out[0].header("X-Consul-Knownleader") == "true"


def test_unknown_dc_is_no_path_to_datacenter() -> None:
    api = cluster()
    reply = http(api, "GET", "/v1/catalog/nodes?dc=dc9")
    assert (reply.status, reply.body) == (500, b"No path to datacenter")
    assert get_json(api, "/v1/catalog/nodes?dc=dc1")[1]
    assert http(api, "GET", "/v1/status/leader?dc=dc9").status == 500


def test_client_agent_needs_a_known_server() -> None:
    api = FakeAgent(config=client_config(), node_id=CLIENT_ID)
    api.add_self()
    for target in ("/v1/catalog/nodes", "/v1/catalog/datacenters", "/v1/status/leader", "/v1/status/peers"):
        reply = http(api, "GET", target)
        assert (reply.status, reply.body) == (500, b"No known Consul servers"), target
    # A server without quorum: the error comes "over RPC".
    api.config = client_config(bootstrap_expect=2)
    api.apply("member-join", member("srv", "10.0.0.2", server=True))
    reply = http(api, "GET", "/v1/catalog/nodes")
    assert (reply.status, reply.body) == (500, b"rpc error making call: No cluster leader")
    assert http(api, "GET", "/v1/catalog/nodes?stale").status == 200
    # Agent-local endpoints keep working.
    assert http(api, "GET", "/v1/agent/members").status == 200


# ---------------------------------------------------------------------- /v1/catalog/node/:node, datacenters


def test_catalog_node_shapes() -> None:
    api = cluster()
    reply, body = get_json(api, "/v1/catalog/node/node1")
    assert list(body) == ["Node", "Services"]
    assert body["Node"]["Node"] == "node1" and body["Node"]["Meta"]["env"] == "prod"
    svc = body["Services"]["consul"]
    assert svc["ID"] == "consul" and svc["Service"] == "consul" and svc["Port"] == 8300 and svc["Tags"] == []
    assert svc["Weights"] == {"Passing": 1, "Warning": 1}
    assert svc["Meta"]["raft_version"] == "3" and svc["Meta"]["version"] == "1.20.1"
    # The index of what was read (the node and its services), not the table's: node1 has not changed since it joined.
    assert reply.header("X-Consul-Index") == str(body["Node"]["ModifyIndex"]) == "1" != str(api.table.current.index)
    # A client has no services; names match case-insensitively as in Consul's catalog.
    assert get_json(api, "/v1/catalog/node/WEB-2")[1]["Services"] == {}


def test_catalog_node_unknown_is_200_null_with_index() -> None:
    api = cluster()
    api.apply("member-leave", member("gone", "10.0.0.30", status=STATUS_LEFT))
    for name in ("nope", "gone"):
        reply, body = get_json(api, f"/v1/catalog/node/{name}")
        assert body is None and reply.body == b"null"
        # No node ever left the catalog: the ``nodes`` table's index (a left member never was a catalog node).
        assert reply.header("X-Consul-Index") == str(api.table.current.indexes.table("nodes")) == "4"


def test_catalog_node_missing_name() -> None:
    reply = http(cluster(), "GET", "/v1/catalog/node/")
    assert (reply.status, reply.body) == (400, b"Missing node name")


def test_catalog_node_missing_name_is_answered_at_once() -> None:
    """Consul checks the name before its RPC: no blocking wait and no leader hold come first (each would outlast
    `http`'s 10 s bound), and the query options' own 400s come before the name's."""
    api = cluster()
    index = api.table.current.index
    reply = http(api, "GET", f"/v1/catalog/node/?index={index}&wait=60s")
    assert (reply.status, reply.body) == (400, b"Missing node name")
    leaderless = FakeAgent(config=server_config(bootstrap=False, bootstrap_expect=3))
    leaderless.add_self()
    reply = http(leaderless, "GET", "/v1/catalog/node/", rpc_hold_timeout=60.0)
    assert (reply.status, reply.body) == (400, b"Missing node name")
    assert http(api, "GET", "/v1/catalog/node/?wait=10").body == b"Invalid wait time"


def test_catalog_datacenters() -> None:
    reply, body = get_json(cluster(), "/v1/catalog/datacenters")
    assert body == ["dc1"]
    assert reply.header("X-Consul-Index") is None


# ---------------------------------------------------------------------- query parameters


@pytest.mark.parametrize(
    ("query", "text"),
    [
        ("wait=10", "Invalid wait time"),
        ("wait=abc&index=1", "Invalid wait time"),
        ("index=-1", "Invalid index"),
        ("index=x", "Invalid index"),
        ("index=18446744073709551616", "Invalid index"),
        ("stale&consistent", "Cannot specify ?stale with ?consistent, conflicting semantics."),
        ("cached&consistent", "Cannot specify ?cached with ?consistent, conflicting semantics."),
        ("max_stale=soon", 'Invalid max_stale value "soon"'),
    ],
)
def test_bad_query_parameters_are_400_with_consul_text(query: str, text: str) -> None:
    reply = http(cluster(), "GET", f"/v1/catalog/nodes?{query}")
    assert (reply.status, reply.body.decode()) == (400, text)
    assert reply.header("Content-Type") == "text/plain; charset=utf-8"


def test_bad_cache_control_header() -> None:
    reply = http(cluster(), "GET", "/v1/catalog/nodes", headers={"Cache-Control": "max-age=soon"})
    assert (reply.status, reply.body) == (400, b"Invalid Cache-Control header.")


def test_query_string_go_cannot_parse_is_bare_500() -> None:
    for query in ("a=%zz", "a=1;b=2"):
        reply = http(cluster(), "GET", f"/v1/catalog/nodes?{query}")
        assert (reply.status, reply.body) == (500, b"")


def test_consistent_flag_and_max_stale() -> None:
    reply, _ = get_json(cluster(), "/v1/catalog/nodes?consistent=1")
    assert reply.header("X-Consul-Effective-Consistency") == "consistent"
    reply, _ = get_json(cluster(), "/v1/catalog/nodes?max_stale=5s")
    assert reply.header("X-Consul-Effective-Consistency") == "stale"


def test_pretty_and_dev_mode_indent_four_spaces_with_newline() -> None:
    reply = http(cluster(), "GET", "/v1/catalog/datacenters?pretty")
    assert reply.body == b'[\n    "dc1"\n]\n'
    dev = cluster()
    dev.config = attrs.evolve(dev.config, dev=True)
    assert http(dev, "GET", "/v1/catalog/datacenters").body == b'[\n    "dc1"\n]\n'
    assert http(cluster(), "GET", "/v1/catalog/datacenters").body == b'["dc1"]'


def test_large_responses_are_gzipped_when_asked() -> None:
    api = cluster()
    for i in range(20):
        api.apply("member-join", member(f"n{i:02d}", f"10.1.0.{i}"))
    reply = http(api, "GET", "/v1/catalog/nodes", headers={"Accept-Encoding": "gzip"})
    assert reply.header("Content-Encoding") == "gzip"
    assert len(json.loads(gzip.decompress(reply.body))) == 23
    plain = http(api, "GET", "/v1/catalog/nodes")
    assert plain.header("Content-Encoding") is None and len(json.loads(plain.body)) == 23


def test_filter_keeps_matching_nodes_and_bad_ones_are_consuls_500_with_error_meta() -> None:
    api = cluster()
    unfiltered, nodes = get_json(api, "/v1/catalog/nodes")
    reply, kept = get_json(api, "/v1/catalog/nodes?filter=Node%20%3D%3D%20%22node1%22")
    assert [n["Node"] for n in kept] == ["node1"] and len(nodes) > 1
    assert reply.header("X-Consul-Index") == unfiltered.header("X-Consul-Index")  # the index of what was read
    bad = http(api, "GET", "/v1/catalog/nodes?filter=Nope%20%3D%3D%201")
    assert bad.status == 500  # Consul's HTTP layer: not its HTTPError (agent.http.filtering)
    assert bad.body == b'Failed to create boolean expression evaluator: Selector "Nope" is not valid'
    assert bad.header("X-Consul-Index") == "1" and bad.header("X-Consul-Knownleader") == "false"


# ---------------------------------------------------------------------- /v1/agent/*


def test_agent_members_shape_and_statuses() -> None:
    api = cluster()
    api.apply("member-failed", member("dead", "10.0.0.40", status=STATUS_FAILED))
    api.apply("member-leave", member("gone", "10.0.0.41", status=STATUS_LEFT))
    reply, members = get_json(api, "/v1/agent/members?segment=_all")
    assert [m["Name"] for m in members] == ["Alpha", "dead", "gone", "node1", "web-2"]
    node1 = members[3]
    assert list(node1) == [
        "Name",
        "Addr",
        "Port",
        "Tags",
        "Status",
        "ProtocolMin",
        "ProtocolMax",
        "ProtocolCur",
        "DelegateMin",
        "DelegateMax",
        "DelegateCur",
    ]
    assert (node1["Addr"], node1["Port"], node1["Status"]) == ("10.0.0.11", 8301, 1)
    assert node1["Tags"]["role"] == "consul" and node1["Tags"]["id"] == SERVER_ID
    assert list(node1["Tags"]) == sorted(node1["Tags"])
    assert [node1[k] for k in ("ProtocolMin", "ProtocolMax", "ProtocolCur")] == [1, 5, 2]
    assert [node1[k] for k in ("DelegateMin", "DelegateMax", "DelegateCur")] == [2, 5, 4]
    assert [m["Status"] for m in members] == [1, 4, 3, 1, 1]
    assert reply.header("X-Consul-Index") is None


def test_agent_members_wan() -> None:
    server = cluster()
    assert get_json(server, "/v1/agent/members?wan=1")[1] == []
    assert len(get_json(server, "/v1/agent/members?wan")[1]) == 3  # a bare ?wan does not count
    client = FakeAgent(config=client_config())
    client.add_self()
    assert http(client, "GET", "/v1/agent/members?wan=1").body == b"null"
    reply = http(server, "GET", "/v1/agent/members?wan=1&segment=alpha")
    assert (reply.status, reply.body) == (400, b"Cannot provide a segment with wan=true")


def test_agent_self_shape() -> None:
    api = cluster()
    _, body = get_json(api, "/v1/agent/self")
    assert list(body) == ["Config", "DebugConfig", "Coord", "Member", "Stats", "Meta"]
    assert body["Config"] == {
        "Datacenter": "dc1",
        "PrimaryDatacenter": "dc1",
        "NodeName": "node1",
        "NodeID": SERVER_ID,
        "Revision": "2c7bc1d0",
        "Server": True,
        "Version": "1.20.1",
        "BuildDate": "1970-01-01T00:00:01Z",
    }
    assert body["Member"]["Name"] == "node1" and body["Member"]["Addr"] == "10.0.0.11"
    assert body["Stats"] == api.stats()
    assert all(isinstance(v, str) for section in body["Stats"].values() for v in section.values())
    assert body["Meta"] == {"consul-network-segment": "", "consul-version": "1.20.1", "env": "prod", "rack": "r1"}
    debug = body["DebugConfig"]
    assert debug["NodeName"] == "node1" and debug["ServerMode"] is True and debug["HTTPPort"] == 8500
    assert debug["ReconnectTimeoutLAN"] == "72h0m0s" and debug["RetryJoinIntervalLAN"] == "30s"


def test_join_ok_and_errors() -> None:
    api = cluster()
    reply = http(api, "PUT", "/v1/agent/join/10.0.0.9:8301")
    assert (reply.status, reply.body, reply.header("Content-Type")) == (200, b"", None)
    assert api.joins == [["10.0.0.9:8301"]]
    api.join_error = "1 error occurred:\n\t* Failed to join 10.0.0.9:8301: connection refused\n\n"
    reply = http(api, "PUT", "/v1/agent/join/10.0.0.9")
    assert (reply.status, reply.body.decode()) == (500, api.join_error)
    assert http(api, "PUT", "/v1/agent/join/10.0.0.9?wan=1").status == 500
    client = FakeAgent(config=client_config())
    client.add_self()
    reply = http(client, "PUT", "/v1/agent/join/10.0.0.9?wan=1")
    assert (reply.status, reply.body) == (500, b"Must be a server to join WAN cluster")
    assert http(api, "GET", "/v1/agent/join/10.0.0.9").status == 405


def test_leave_force_leave_reload() -> None:
    api = cluster()
    assert http(api, "PUT", "/v1/agent/leave").status == 200 and api.leaves == 1
    assert http(api, "PUT", "/v1/agent/force-leave/web-2?prune").status == 200
    assert http(api, "PUT", "/v1/agent/force-leave/Alpha").status == 200
    unknown = http(api, "PUT", "/v1/agent/force-leave/nobody")  # Consul's agent checks its members first
    assert (unknown.status, unknown.body) == (500, b"agent: No node found with name 'nobody'")
    assert api.force_leaves == [("web-2", True), ("Alpha", False), ("nobody", False)]
    assert http(api, "PUT", "/v1/agent/reload").status == 200 and api.reloads == 1
    api.reload_error = "failed to parse /etc/consul.d/x.json: invalid character"
    reply = http(api, "PUT", "/v1/agent/reload")
    assert (reply.status, reply.body.decode()) == (500, api.reload_error)


# ---------------------------------------------------------------------- routing texts


@pytest.mark.parametrize(
    ("method", "target", "status", "body", "allow"),
    [
        ("GET", "/v1/nope", 404, "Invalid URL path: not a recognized HTTP API endpoint\n", None),
        (
            "GET",
            "/v2/x",
            404,
            "Invalid URL path: if attempting to use the HTTP API, ensure the path starts with '/v1/'\n",
            None,
        ),
        ("PUT", "/v1/catalog/nodes", 405, "method PUT not allowed", "OPTIONS,GET"),
        ("GET", "/v1/agent/leave", 405, "method GET not allowed", "OPTIONS,PUT"),
        ("DELETE", "/v1/agent/force-leave/x", 405, "method DELETE not allowed", "OPTIONS,PUT"),
        ("OPTIONS", "/v1/agent/members", 200, "", "OPTIONS,GET"),
        ("OPTIONS", "/v1/agent/join/x", 200, "", "OPTIONS,PUT"),
        (
            "GET",
            "/",
            200,
            "Consul Agent: UI disabled. To enable, set ui_config.enabled=true in the agent configuration and restart.",
            None,
        ),
    ],
)
def test_routing_texts(method: str, target: str, status: int, body: str, allow: str | None) -> None:
    reply = http(cluster(), method, target)
    assert (reply.status, reply.body.decode(), reply.header("Allow")) == (status, body, allow)


def test_go_mux_redirects() -> None:
    reply = http(cluster(), "GET", "/v1/catalog/node?pretty")
    assert (reply.status, reply.header("Location")) == (301, "/v1/catalog/node/?pretty")
    reply = http(cluster(), "GET", "/v1/./catalog//nodes")
    assert (reply.status, reply.header("Location")) == (301, "/v1/catalog/nodes")
    # Cleaned as escaped (issue 16 item 7): an encoded "/" or ".." is part of a name, not a path step; the
    # Location keeps the escapes as sent.
    reply = http(cluster(), "GET", "/v1/catalog/node/..%2Fx")
    assert reply.status == 200
    reply = http(cluster(), "GET", "/v1//catalog/node/%ff%2F..")
    assert (reply.status, reply.header("Location")) == (301, "/v1/catalog/node/%ff%2F..")


def test_head_on_get_endpoint_is_405_without_body() -> None:
    reply = http(cluster(), "HEAD", "/v1/catalog/nodes")
    assert (reply.status, reply.body) == (405, b"")


def test_non_printable_path_is_400() -> None:
    assert http(cluster(), "GET", "/v1/catalog/node/a%07b").status == 400


def test_handler_exception_is_500_with_message() -> None:
    api = cluster()
    api.stats_error = "stats exploded"
    reply = http(api, "GET", "/v1/agent/self")
    assert (reply.status, reply.body) == (500, b"stats exploded")
    assert http(api, "GET", "/v1/agent/members").status == 200


# ---------------------------------------------------------------------- py-consul


def test_py_consul_minimum_set() -> None:
    api = cluster()

    def calls(c: consul.Consul) -> dict[str, Any]:
        return {
            "nodes": c.catalog.nodes(),
            "node": c.catalog.node("node1"),
            "missing": c.catalog.node("nope"),
            "dcs": c.catalog.datacenters(),
            "members": c.agent.members(),
            "wan": c.agent.members(wan=True),
            "self": c.agent.self(),
            "join": c.agent.join("10.0.0.9"),
            "force_leave": c.agent.force_leave("web-2", prune=True),
            "reload": c.agent.reload(),
            "leader": c.status.leader(),
            "peers": c.status.peers(),
            "stale": c.catalog.nodes(consistency="stale"),
            "meta": c.catalog.nodes(node_meta={"env": "prod"}),
        }

    out = with_consul(api, calls)
    index, nodes = out["nodes"]
    assert index == str(api.table.current.index)
    assert [n["Node"] for n in nodes] == ["Alpha", "node1", "web-2"]
    assert out["node"][1]["Node"]["ID"] == SERVER_ID
    assert out["missing"][1] is None
    assert out["dcs"] == ["dc1"]
    assert {m["Name"] for m in out["members"]} == {"Alpha", "node1", "web-2"}
    assert out["wan"] == []
    assert out["self"]["Config"]["NodeName"] == "node1" and out["self"]["Member"]["Addr"] == "10.0.0.11"
    assert out["join"] is True and api.joins == [["10.0.0.9"]]
    assert out["force_leave"] is True and api.force_leaves == [("web-2", True)]
    assert out["reload"] is True
    assert out["leader"] == "10.0.0.11:8300"
    assert out["peers"] == ["10.0.0.11:8300"]
    assert len(out["stale"][1]) == 3
    assert [n["Node"] for n in out["meta"][1]] == ["node1"]


def test_py_consul_errors_map_as_consul() -> None:
    api = cluster()
    api.join_error = "1 error occurred:\n\t* Failed to join 10.0.0.9:8301: connection refused\n\n"

    def calls(c: consul.Consul) -> list[str]:
        errors = []
        for call in (lambda: c.agent.join("10.0.0.9"), lambda: c.catalog.nodes(dc="dc9")):
            try:
                call()
            except consul.ConsulException as exc:
                errors.append(str(exc))
        return errors

    errors = with_consul(api, calls)
    assert errors[0].startswith("500 1 error occurred") and "Failed to join" in errors[0]
    assert errors[1] == "500 No path to datacenter"


def test_py_consul_leave() -> None:
    api = cluster()
    assert with_consul(api, lambda c: c.agent.leave()) is True
    assert api.leaves == 1


def test_py_consul_blocking_query_wakes_on_apply() -> None:
    api = cluster()
    out: dict[str, Any] = {}

    async def main() -> None:
        with trio.fail_after(TIMEOUT):
            async with serving(api) as (host, port):
                c = consul.Consul(host=host, port=port)
                index, _ = await trio.to_thread.run_sync(c.catalog.nodes)
                async with trio.open_nursery() as nursery:

                    async def watch() -> None:
                        start = time.monotonic()
                        out["result"] = await trio.to_thread.run_sync(lambda: c.catalog.nodes(index=index, wait="30s"))
                        out["elapsed"] = time.monotonic() - start

                    nursery.start_soon(watch)
                    await trio.sleep(0.3)
                    assert "result" not in out  # still parked
                    out["applied_at"] = time.monotonic()
                    api.apply("member-join", member("late", "10.0.0.50"))
        out["index"] = index

    run(main)
    new_index, nodes = out["result"]
    assert int(new_index) > int(out["index"])
    assert "late" in [n["Node"] for n in nodes]
    assert 0.3 <= out["elapsed"] < 1.3  # woke within a second of the apply


def test_py_consul_blocking_query_short_wait_times_out_with_same_index() -> None:
    api = cluster()

    def calls(c: consul.Consul) -> tuple[str, str, float]:
        index, _ = c.catalog.nodes()
        start = time.monotonic()
        again, _ = c.catalog.nodes(index=index, wait="1s")
        return index, again, time.monotonic() - start

    index, again, elapsed = with_consul(api, calls)
    assert again == index
    assert 1.0 <= elapsed < 1.0 + 1 / 16 + 0.5
