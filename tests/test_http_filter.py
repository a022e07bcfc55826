"""``?filter=`` over real HTTP on real agents (issue 12): every endpoint Consul filters, its field names, Consul's
filter errors (its status, 500, and go-bexpr's texts, with the client agent's ``rpc error making call:`` for what
Consul answers by RPC), a bad filter on a blocking read answering at once, X-Consul-Index unchanged by a filter,
py-consul's ``filter_expr`` calls, and garbage that is always Consul's filter error, never another failure.

One server (node meta env=prod, service web-a with a critical TTL check) and one client (env=qa, web-b without
checks, db-1 with a passing TTL check), `python -m agent` processes on loopback, stopped by PID.
"""

from __future__ import annotations

import time
from typing import Any

import consul
import pytest
import requests
from consul_agents import Cluster, ConsulAgent
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from procs import wait_for

from agent.http.filtering import FILTER_ERROR_STATUS

ROUND = 20.0
PREFIX = "Failed to create boolean expression evaluator: "


def get(agent: ConsulAgent, path: str, flt: str | None = None, **params: Any) -> requests.Response:
    if flt is not None:
        params["filter"] = flt
    return requests.get(f"http://{agent.http_addr}{path}", params=params, timeout=30)


def put(agent: ConsulAgent, path: str, body: Any = None) -> None:
    reply = requests.put(f"http://{agent.http_addr}{path}", json=body, timeout=10)
    assert reply.status_code == 200, reply.text


@pytest.fixture
def agents(cluster: Cluster) -> tuple[ConsulAgent, ConsulAgent]:
    server = cluster.start("s1", server=True, extra={"node_meta": {"env": "prod"}})
    client = cluster.start("c1", extra={"node_meta": {"env": "qa"}})
    assert client.cli("join", server.serf_addr).returncode == 0
    put(server, "/v1/agent/service/register", {"Name": "web", "ID": "web-a", "Port": 8080, "Tags": ["primary", "v1"],
                                                "Meta": {"version": "2"}, "Check": {"TTL": "600s"}})  # fmt: skip
    put(client, "/v1/agent/service/register", {"Name": "web", "ID": "web-b", "Port": 8081, "Tags": ["secondary"]})
    put(client, "/v1/agent/service/register", {"Name": "db", "ID": "db-1", "Port": 5432,
                                                "Check": {"CheckID": "db-ttl", "TTL": "600s"}})  # fmt: skip
    put(client, "/v1/agent/check/pass/db-ttl")

    def synced() -> bool:
        web = get(server, "/v1/health/service/web").json()
        db = get(server, "/v1/health/service/db").json()
        return (sorted(e["Service"]["ID"] for e in web) == ["web-a", "web-b"] and len(db) == 1
                and any(c["CheckID"] == "db-ttl" and c["Status"] == "passing" for c in db[0]["Checks"]))  # fmt: skip

    wait_for(synced, timeout=ROUND, what="both agents' services in the catalog", diagnostics=cluster.diagnostics)
    return server, client


def bad(reply: requests.Response) -> str:
    assert reply.status_code == FILTER_ERROR_STATUS, (reply.status_code, reply.text)
    return reply.text


def test_every_filtering_endpoint_keeps_what_matches_and_refuses_bad_filters(
    agents: tuple[ConsulAgent, ConsulAgent],
) -> None:
    server, client = agents

    # /v1/agent/services (api.AgentService) and /v1/agent/checks (HealthCheck): agent-local
    assert list(get(client, "/v1/agent/services", "Service == db").json()) == ["db-1"]
    assert list(get(client, "/v1/agent/services", "secondary in Tags and Port == 8081").json()) == ["web-b"]
    assert list(get(server, "/v1/agent/services", 'Meta.version == "2" and Weights.Passing == 1').json()) == ["web-a"]
    assert bad(get(client, "/v1/agent/services", "Nope == 1")) == PREFIX + 'Selector "Nope" is not valid'
    assert list(get(client, "/v1/agent/checks", "Status == passing and ServiceName == db").json()) == ["db-ttl"]
    assert get(client, "/v1/agent/checks", "Status == critical").json() == {}
    # Consul checks this one against the first check it evaluates, and says so without CreateFilter's prefix
    assert bad(get(client, "/v1/agent/checks", "Nope == 1")) == 'Selector "Nope" is not valid'
    assert bad(get(client, "/v1/agent/checks", "Status ==")).startswith(PREFIX + "1:10 (9): no match found")

    # /v1/agent/members (serf.Member)
    assert [m["Name"] for m in get(client, "/v1/agent/members", 'Tags.role == "consul"').json()] == ["s1"]
    assert [m["Name"] for m in get(client, "/v1/agent/members", "Status == 1 and Name matches `^c`").json()] == ["c1"]
    assert bad(get(client, "/v1/agent/members", "Status == alive")) == (
        PREFIX + 'Failed to coerce value "alive" for selector "Status": strconv.ParseInt: parsing "alive": invalid '
        "syntax")  # fmt: skip

    # /v1/catalog/nodes (Node): the index is the unfiltered read's
    everything = get(server, "/v1/catalog/nodes")
    qa = get(server, "/v1/catalog/nodes", "Meta.env == qa")
    assert [n["Node"] for n in qa.json()] == ["c1"] and len(everything.json()) == 2
    assert qa.headers["X-Consul-Index"] == everything.headers["X-Consul-Index"]
    refused = get(server, "/v1/catalog/nodes", "Service == web")
    assert bad(refused) == PREFIX + 'Selector "Service" is not valid'
    assert refused.headers["X-Consul-Index"] == "1" and refused.headers["X-Consul-Knownleader"] == "false"

    # /v1/catalog/service/:s (ServiceNode) and /v1/catalog/services (ServiceNodes, then grouped)
    instances = get(server, "/v1/catalog/service/web", "ServiceTags contains primary").json()
    assert [i["ServiceID"] for i in instances] == ["web-a"]
    assert [i["ServiceID"] for i in get(server, "/v1/catalog/service/web", "NodeMeta.env == qa").json()] == ["web-b"]
    assert get(server, "/v1/catalog/services", "ServiceName == db").json() == {"db": []}
    prod = get(server, "/v1/catalog/services", "NodeMeta.env == prod").json()
    assert prod == {"consul": [], "web": ["primary", "v1"]}
    assert get(server, "/v1/catalog/services", "ServicePort == 8081").json() == {"web": ["secondary"]}
    assert bad(get(server, "/v1/catalog/services", "Port == 1")) == PREFIX + 'Selector "Port" is not valid'

    # /v1/catalog/node/:n (the node's NodeServices); an unknown node stays null
    node = get(server, "/v1/catalog/node/c1", "Service == db").json()
    assert node["Node"]["Node"] == "c1" and list(node["Services"]) == ["db-1"]
    assert get(server, "/v1/catalog/node/nope", "Service == db").json() is None
    listed = get(server, "/v1/catalog/node-services/c1", "Port == 8081").json()  # (NodeServiceList)
    assert listed["Node"]["Node"] == "c1" and [s["ID"] for s in listed["Services"]] == ["web-b"]
    assert len(get(server, "/v1/catalog/node-services/c1").json()["Services"]) == 2
    assert get(server, "/v1/catalog/node-services/nope", "Port == 1").json() == {"Node": None, "Services": None}
    refused = get(server, "/v1/catalog/node/c1", "ServiceName == db")
    assert bad(refused) == PREFIX + 'Selector "ServiceName" is not valid'

    # /v1/health/node/:n, /checks/:s, /state/:s (HealthCheck) and /service/:s (CheckServiceNode)
    assert [c["CheckID"] for c in get(server, "/v1/health/node/c1", "ServiceName == db").json()] == ["db-ttl"]
    assert [c["ServiceID"] for c in get(server, "/v1/health/checks/web", "Status == critical").json()] == ["web-a"]
    assert [c["CheckID"] for c in get(server, "/v1/health/state/any", 'Node == c1 and ServiceName != ""').json()] == [
        "db-ttl"]  # fmt: skip
    assert [c["Node"] for c in get(server, "/v1/health/state/passing", "CheckID == serfHealth").json()] == ["c1", "s1"]
    entries = get(server, "/v1/health/service/web", "Checks.Status == critical").json()  # any check critical
    assert [e["Service"]["ID"] for e in entries] == ["web-a"]
    entries = get(server, "/v1/health/service/web", "Service.Port == 8081 and Node.Meta.env == qa").json()
    assert [e["Service"]["ID"] for e in entries] == ["web-b"]
    assert get(server, "/v1/health/service/web", "Checks.Status == critical", passing="1").json() == []
    assert bad(get(server, "/v1/health/service/web", "Checks == passing")) == (
        PREFIX + 'Invalid match operator "Equal" for selector "Checks"')  # fmt: skip
    assert bad(get(server, "/v1/health/state/any", "Status matches `(`")) == (
        PREFIX + 'Failed to compile regular expression "(": error parsing regexp: missing closing ): `(`')  # fmt: skip

    # an empty filter filters nothing; the client agent answers RPC-backed reads with the server's error
    assert len(get(server, "/v1/catalog/nodes", "").json()) == 2
    assert bad(get(client, "/v1/health/service/web", "foo")) == (
        "rpc error making call: " + PREFIX + '1:4 (3): no match found, expected: "!=", ".", "==", "[", '
        "[ \\t\\r\\n] or [a-zA-Z0-9_]")  # fmt: skip
    assert [e["Service"]["ID"] for e in get(client, "/v1/health/service/web", 'Service.ID == "web-b"').json()] == [
        "web-b"]  # fmt: skip


def test_bad_filter_on_a_blocking_read_answers_at_once(agents: tuple[ConsulAgent, ConsulAgent]) -> None:
    server, _ = agents
    index = get(server, "/v1/health/service/web").headers["X-Consul-Index"]
    started = time.monotonic()
    reply = get(server, "/v1/health/service/web", "Nope == 1", index=index, wait="30s")
    assert bad(reply) == PREFIX + 'Selector "Nope" is not valid'
    assert time.monotonic() - started < 10


def test_py_consul_filter_expr_calls(agents: tuple[ConsulAgent, ConsulAgent]) -> None:
    server, client = agents
    s, c = server.client(), client.client()
    assert list(c.agent.services(filter_expr="Service == db")) == ["db-1"]
    assert list(c.agent.checks(filter_expr='ServiceID == "db-1"')) == ["db-ttl"]
    assert [n["Node"] for n in s.catalog.nodes(filter_expr="Meta.env == prod")[1]] == ["s1"]
    assert s.catalog.services(filter_expr="ServiceName == db")[1] == {"db": []}
    assert [i["ServiceID"] for i in s.catalog.service("web", filter_expr="ServicePort == 8080")[1]] == ["web-a"]
    assert list(s.catalog.node("c1", filter_expr="Port == 8081")[1]["Services"]) == ["web-b"]
    assert [e["Service"]["ID"] for e in s.health.service("web", filter_expr="Service.Tags contains v1")[1]] == [
        "web-a"]  # fmt: skip
    assert [x["CheckID"] for x in s.health.checks("db", filter_expr="Status == passing")[1]] == ["db-ttl"]
    critical = s.health.state("critical", filter_expr='ServiceID == "web-a"')[1]
    assert [x["CheckID"] for x in critical] == ["service:web-a"]
    assert [x["CheckID"] for x in s.health.node("s1", filter_expr="CheckID == serfHealth")[1]] == ["serfHealth"]
    with pytest.raises(consul.base.ConsulException) as caught:
        s.catalog.nodes(filter_expr="Nope == 1")
    assert type(caught.value) is consul.exceptions.ConsulException  # py-consul's class for a 500, as from Consul
    assert 'Selector "Nope" is not valid' in str(caught.value)


GARBAGE = st.lists(st.sampled_from([*' ()[]."`\\=!-_09aZé', "and", "or", "not", "in", "is", "empty", "contains",
                                    "matches", "==", "!=", "Checks", "Status", "Service.Tags"]),
                   max_size=30).map("".join)  # fmt: skip


def test_garbage_filters_are_consuls_filter_error_never_a_crash(agents: tuple[ConsulAgent, ConsulAgent]) -> None:
    """Any garbage answers 200 or Consul's filter error (its status, go-bexpr's text), never another error."""
    server, _ = agents
    seen: dict[int, int] = {}

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(GARBAGE)
    def check(text: str) -> None:
        reply = get(server, "/v1/health/service/web", text)
        seen[reply.status_code] = seen.get(reply.status_code, 0) + 1
        assert reply.status_code in (200, FILTER_ERROR_STATUS), (text, reply.status_code, reply.text)
        if reply.status_code == FILTER_ERROR_STATUS:
            assert reply.text.startswith(PREFIX), (text, reply.text)

    check()
    assert seen.get(FILTER_ERROR_STATUS, 0) > 0
