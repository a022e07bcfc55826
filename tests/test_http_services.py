"""The service/health HTTP surface over real snapshots: agent endpoints, catalog services, health (py-consul too).

The agent is http_fakes' FakeAgent (real MemberTable) plus a real ServiceManager whose publish callback puts the
local record into the table the way the catalog runner does; a remote node's record is applied directly.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import attrs
import consul
import trio
from http_fakes import CLIENT_ID, FakeAgent, fetch, member, run, server_config, serving

from agent.catalog.indexed import apply_changes
from agent.catalog.record import CheckRecord, NodeCatalog, ServiceRecord
from agent.services.manager import ServiceManager

TIMEOUT = 10
_versions = itertools.count(1)


@attrs.define
class ServicesAgent(FakeAgent):
    services: ServiceManager | None = None


def publish_into(api: FakeAgent, node: str, services: tuple, checks: tuple, meta: dict | None = None) -> None:
    record = NodeCatalog(node, next(_versions), services, checks, meta or {})
    api.table.apply_catalog(lambda catalog, index: apply_changes(catalog, {node: record}, index))


def agent() -> ServicesAgent:
    api = ServicesAgent(config=server_config())
    api.services = ServiceManager(api.config, None, lambda s, c: publish_into(api, "node1", s, c))
    api.add_self()
    api.apply("member-join", member("web-2", "10.0.0.13", node_id=CLIENT_ID))
    publish_into(api, "web-2", (ServiceRecord("web", "web", ("v2", "b"), port=81),),
                 (CheckRecord("service:web", "Service 'web' check", "warning", "slow", service_id="web",
                              service_name="web", service_tags=("v2", "b"), type="http"),), {"rack": "r9"})  # fmt: skip
    return api


def session(api: FakeAgent, steps: Any) -> list[Any]:
    """Run ``steps(client, raw)`` in a thread: ``client`` is py-consul, ``raw(method, target, body)`` a request."""
    out: list[Any] = []

    async def main() -> None:
        with trio.fail_after(TIMEOUT):
            async with serving(api) as (host, port):
                token = trio.lowlevel.current_trio_token()

                def raw(method: str, target: str, body: Any = None) -> Any:
                    data = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
                    return trio.from_thread.run(fetch, (host, port), method, target, data, trio_token=token)

                out.append(await trio.to_thread.run_sync(steps, consul.Consul(host=host, port=port), raw))

    run(main)
    return out


def test_register_list_and_deregister_through_py_consul() -> None:
    api = agent()

    def steps(c: consul.Consul, raw: Any) -> None:
        assert c.agent.service.register("web", service_id="web-1", port=8080, tags=["v1"], meta={"a": "1"},
                                        check=consul.Check.ttl("10s"))  # fmt: skip
        services = c.agent.services()
        assert services == {"web-1": {"ID": "web-1", "Service": "web", "Tags": ["v1"], "Meta": {"a": "1"},
                                      "Port": 8080, "Address": "", "Weights": {"Passing": 1, "Warning": 1},
                                      "EnableTagOverride": False, "Datacenter": "dc1"}}  # fmt: skip
        checks = c.agent.checks()
        assert list(checks) == ["service:web-1"] and checks["service:web-1"]["Status"] == "critical"
        assert c.agent.check.ttl_pass("service:web-1", "all good")
        assert c.agent.checks()["service:web-1"]["Output"] == "all good"
        # The catalog: both instances, tags united, health with serfHealth first.
        assert c.catalog.services()[1] == {"consul": [], "web": ["b", "v1", "v2"]}
        _, nodes = c.catalog.service("web")
        assert [(n["Node"], n["ServiceID"], n["ServicePort"]) for n in nodes] == [("node1", "web-1", 8080),
                                                                                   ("web-2", "web", 81)]
        assert nodes[1]["NodeMeta"]["rack"] == "r9" and nodes[1]["ServiceLocality"] is None
        assert [n["Node"] for n in c.catalog.service("web", tag="v2")[1]] == ["web-2"]
        assert [e["Node"]["Node"] for e in c.health.service("web", passing=True)[1]] == ["node1"]
        entry = c.health.service("web")[1][1]
        assert [ch["CheckID"] for ch in entry["Checks"]] == ["serfHealth", "service:web"]
        assert entry["Service"]["Port"] == 81 and entry["Node"]["Meta"]["rack"] == "r9"
        assert [ch["CheckID"] for ch in c.health.state("warning")[1]] == ["service:web"]
        assert [ch["CheckID"] for ch in c.health.node("node1")[1]] == ["serfHealth", "service:web-1"]
        assert [ch["Node"] for ch in c.health.checks("web")[1]] == ["node1", "web-2"]
        node = c.catalog.node("node1")[1]
        assert list(node["Services"]) == ["consul", "web-1"]
        # A check change advances the index blocking queries follow; with nothing new they wait out ``wait``.
        index = raw("GET", "/v1/health/service/web").header("X-Consul-Index")
        assert c.agent.check.ttl_warn("service:web-1", "hmm")
        reply = raw("GET", f"/v1/health/service/web?index={index}&wait=5s")
        assert int(reply.header("X-Consul-Index")) > int(index)
        assert json.loads(reply.body)[0]["Checks"][1]["Status"] == "warning"
        later = reply.header("X-Consul-Index")
        reply = raw("GET", f"/v1/health/service/web?index={later}&wait=100ms")
        assert reply.header("X-Consul-Index") == later
        assert c.agent.service.deregister("web-1")
        assert c.agent.services() == {} and c.agent.checks() == {}
        assert "web" in c.catalog.services()[1]  # web-2's instance remains

    session(api, steps)


def test_agent_endpoint_errors_are_consuls() -> None:
    api = agent()

    def steps(c: consul.Consul, raw: Any) -> list[tuple[int, bytes]]:
        return [
            (r.status, r.body)
            for r in (
                raw("PUT", "/v1/agent/service/register", {"name": "x", "bogus": 1}),
                raw("PUT", "/v1/agent/service/register", {"Name": "x", "Check": {"Args": ["true"],
                                                                                 "Interval": "1s"}}),
                raw("PUT", "/v1/agent/service/deregister/nope"),
                raw("PUT", "/v1/agent/check/register", {"name": "c", "ttl": "1s", "serviceid": "nope"}),
                raw("PUT", "/v1/agent/check/pass/nope"),
                raw("PUT", "/v1/agent/check/register", {"name": "h", "tcp": "127.0.0.1:1", "interval": "10s"}),
                raw("PUT", "/v1/agent/check/pass/h"),
                raw("PUT", "/v1/agent/check/update/h", {"Status": "bad"}),
                raw("GET", "/v1/agent/service/register"),
                raw("GET", "/v1/agent/service/nope"),
                raw("GET", "/v1/health/state/"),
                raw("GET", "/v1/health/service/web?passing=maybe"),
                raw("GET", "/v1/catalog/node/nope"),
                raw("GET", "/v1/health/state/bogus"),
            )
        ]

    (out,) = session(api, steps)
    assert out == [
        (400, b'Request decode failed: json: unknown field "bogus"'),
        (500, b"Scripts are disabled on this agent from remote calls; to enable, configure 'enable_script_checks' "
              b"to true"),
        (404, b'Unknown service ID "nope". Ensure that the service ID is passed, not the service name.'),
        (404, b'ServiceID "nope" does not exist'),
        (404, b'Unknown check ID "nope". Ensure that the check ID is passed, not the check name.'),
        (200, b""),
        (500, b'CheckID "h" does not have associated TTL'),
        (400, b"Invalid check status: 'bad'"),
        (405, b"method GET not allowed"),
        (404, b"unknown service ID: nope"),
        (400, b"Missing check state"),
        (400, b"Invalid value for ?passing"),
        (200, b"null"),
        (200, b"[]"),
    ]  # fmt: skip
