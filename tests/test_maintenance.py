"""Node and service maintenance (issue 12): the HTTP endpoints over real sockets, persistence across a restart of
the services manager, and, end to end, real agents whose DNS and ``?passing`` drop a node or service in maintenance.

The HTTP part is test_http_services' agent (http_fakes' FakeAgent with a real ServiceManager publishing into the
real member table); the end-to-end part starts `python -m agent` processes (consul_agents) and asks them with `dig`
and py-consul.
"""

from __future__ import annotations

import shutil
import signal
from pathlib import Path
from typing import Any

import consul
import pytest
import test_dns_services as dns_helpers
import test_http_services as services_helpers
import trio
from consul_agents import Cluster
from http_fakes import run
from procs import wait_for

from agent.config import AgentConfig
from agent.datadir import DataDir
from agent.services.maintenance import DEFAULT_NODE_REASON, DEFAULT_SERVICE_REASON
from agent.services.manager import ServiceManager

ROUND = 10.0


def passing(c: consul.Consul, service: str) -> list[str]:
    return [e["Service"]["ID"] for e in c.health.service(service, passing=True)[1]]


def test_maintenance_endpoints_add_and_remove_consuls_critical_checks() -> None:
    api = services_helpers.agent()

    def steps(c: consul.Consul, raw: Any) -> list[tuple[int, bytes]]:
        assert c.agent.service.register("db", service_id="db-1", port=5432)
        assert c.agent.service.register("db", service_id="db-2", port=5433)
        assert passing(c, "db") == ["db-1", "db-2"]
        # py-consul's own calls for service maintenance
        assert c.agent.service.maintenance("db-1", "true", "swap disk")
        checks = c.agent.checks()
        check = checks["_service_maintenance:db-1"]
        assert (check["Name"], check["Status"], check["Notes"], check["ServiceID"], check["ServiceName"],
                check["Type"]) == ("Service Maintenance Mode", "critical", "swap disk", "db-1", "db",
                                   "maintenance")  # fmt: skip
        assert passing(c, "db") == ["db-2"]
        # enabling twice keeps the first reason (Consul: a no-op when already in maintenance)
        assert raw("PUT", "/v1/agent/service/maintenance/db-1?enable=true&reason=other").status == 200
        assert c.agent.checks()["_service_maintenance:db-1"]["Notes"] == "swap disk"
        # node maintenance takes every service of the node out
        assert c.agent.maintenance("true")
        node_check = c.agent.checks()["_node_maintenance"]
        assert (node_check["Name"], node_check["Notes"], node_check["ServiceID"]) == (
            "Node Maintenance Mode", DEFAULT_NODE_REASON, "")
        assert passing(c, "db") == []
        assert c.agent.maintenance("false")
        assert "_node_maintenance" not in c.agent.checks()
        assert passing(c, "db") == ["db-2"]
        assert c.agent.service.maintenance("db-1", "false")
        assert passing(c, "db") == ["db-1", "db-2"]
        assert raw("PUT", "/v1/agent/service/maintenance/db-2?enable=1").status == 200
        assert c.agent.checks()["_service_maintenance:db-2"]["Notes"] == DEFAULT_SERVICE_REASON
        # deregistering the service takes its maintenance check with it
        assert c.agent.service.deregister("db-2")
        assert "_service_maintenance:db-2" not in c.agent.checks()
        return [
            (r.status, r.body)
            for r in (
                raw("PUT", "/v1/agent/maintenance"),
                raw("PUT", "/v1/agent/maintenance?enable=maybe"),
                raw("PUT", "/v1/agent/service/maintenance/db-1"),
                raw("PUT", "/v1/agent/service/maintenance/db-1?enable=yes"),
                raw("PUT", "/v1/agent/service/maintenance/nope?enable=true"),
                raw("PUT", "/v1/agent/service/maintenance/nope?enable=false"),
                raw("PUT", "/v1/agent/service/maintenance/?enable=true"),
                raw("GET", "/v1/agent/maintenance?enable=true"),
                raw("PUT", "/v1/agent/maintenance?enable=false"),  # not in maintenance: a no-op
            )
        ]

    (out,) = services_helpers.session(api, steps)
    assert out == [
        (400, b"Missing value for enable"),
        (400, b'Invalid value for enable: "maybe"'),
        (400, b"Missing value for enable"),
        (400, b'Invalid value for enable: "yes"'),
        (404, b'No service registered with ID "nope"'),
        (404, b'No service registered with ID "nope"'),
        (400, b"Missing service ID"),
        (405, b"method GET not allowed"),
        (200, b""),
    ]


def test_maintenance_survives_a_restart_and_a_config_reload(tmp_path: Path) -> None:
    """Persisted like an API check, restored after the config's services (the service may come from a file)."""
    config = AgentConfig(node_name="node1", services=({"name": "web", "id": "web-1", "port": 80},))
    published: list[tuple] = []

    async def first() -> None:
        manager = ServiceManager(config, DataDir(tmp_path), lambda s, c: published.append(c))
        async with trio.open_nursery() as nursery:
            await nursery.start(manager.run)
            manager.enable_node_maintenance("rack move")
            manager.enable_service_maintenance("web-1", "")
            manager.load_config(config)  # a reload keeps maintenance
            assert {"_node_maintenance", "_service_maintenance:web-1"} <= set(manager.local.checks)
            nursery.cancel_scope.cancel()

    async def second() -> None:
        manager = ServiceManager(config, DataDir(tmp_path), lambda s, c: published.append(c))
        async with trio.open_nursery() as nursery:
            await nursery.start(manager.run)
            checks = {c.id: c for c in published[-1]}
            assert (checks["_node_maintenance"].notes, checks["_node_maintenance"].status) == ("rack move",
                                                                                               "critical")
            assert checks["_service_maintenance:web-1"].service_id == "web-1"
            assert checks["_service_maintenance:web-1"].notes == DEFAULT_SERVICE_REASON
            manager.disable_service_maintenance("web-1")
            manager.disable_node_maintenance()
            nursery.cancel_scope.cancel()

    async def third() -> None:
        manager = ServiceManager(config, DataDir(tmp_path), lambda s, c: published.append(c))
        async with trio.open_nursery() as nursery:
            await nursery.start(manager.run)
            assert set(manager.local.checks) == set()
            nursery.cancel_scope.cancel()

    run(first)
    run(second)
    run(third)


@pytest.mark.skipif(shutil.which("dig") is None, reason="dig not installed")
def test_real_agents_dns_and_health_drop_maintenance_and_it_survives_a_restart(cluster: Cluster) -> None:
    server = cluster.start("s1", server=True, dns=True)
    c2 = cluster.start("c2", dns=True, extra={"service": {"name": "db", "id": "db-1", "port": 5432}})
    assert c2.cli("join", server.serf_addr).returncode == 0
    assert c2.client().agent.service.register("cache", service_id="cache-1", port=6379)

    def srv_ports(name: str) -> list[str] | None:
        status, records = dns_helpers.dig(server, f"{name}.service.consul", "SRV")
        return sorted(r[6] for r in records if r[3] == "SRV") if status == "NOERROR" else None

    def healthy() -> bool:
        return (passing(server.client(), "db") == ["db-1"] and passing(server.client(), "cache") == ["cache-1"]
                and srv_ports("db") == ["5432"])  # fmt: skip

    wait_for(healthy, timeout=ROUND, what="db and cache healthy", diagnostics=cluster.diagnostics)

    # Node maintenance: both services leave ?passing and DNS on the server.
    out = c2.cli("maint", "-enable", "-reason", "kernel upgrade")
    assert (out.returncode, out.stdout) == (0, "Node maintenance is now enabled\n"), out.stderr
    wait_for(lambda: passing(server.client(), "db") == [] and passing(server.client(), "cache") == []
             and srv_ports("db") is None and srv_ports("cache") is None,
             timeout=ROUND, what="node maintenance seen by the server", diagnostics=cluster.diagnostics)  # fmt: skip
    out = c2.cli("maint", "-disable")
    assert (out.returncode, out.stdout) == (0, "Node maintenance is now disabled\n"), out.stderr
    wait_for(healthy, timeout=ROUND, what="healthy again after node maintenance", diagnostics=cluster.diagnostics)

    # Service maintenance of the config-file service survives a restart of its agent.
    out = c2.cli("maint", "-enable", "-service", "db-1", "-reason", "vacuum")
    assert (out.returncode, out.stdout) == (0, 'Service maintenance is now enabled for "db-1"\n'), out.stderr
    wait_for(lambda: srv_ports("db") is None and passing(server.client(), "cache") == ["cache-1"],
             timeout=ROUND, what="db alone out of DNS", diagnostics=cluster.diagnostics)  # fmt: skip
    c2.proc.send_signal(signal.SIGTERM)
    assert c2.proc.wait(20) == 0, c2.proc.log_tail()
    again = cluster.start("c2", reuse=c2)
    assert again.cli("join", server.serf_addr).returncode == 0
    out = again.cli("maint")
    assert (out.returncode, out.stdout) == (0, "Service:\n  ID:     db-1\n  Reason: vacuum\n\n"), out.stderr
    wait_for(lambda: passing(server.client(), "cache") == ["cache-1"], timeout=ROUND, what="c2 back",
             diagnostics=cluster.diagnostics)  # fmt: skip
    assert srv_ports("db") is None and passing(server.client(), "db") == []
    out = again.cli("maint", "-disable", "-service", "db-1")
    assert (out.returncode, out.stdout) == (0, 'Service maintenance is now disabled for "db-1"\n'), out.stderr
    wait_for(healthy, timeout=ROUND, what="db healthy after maintenance", diagnostics=cluster.diagnostics)
