"""Issue 6, "What it must show": services and checks from config dirs and the API, replicated by anti-entropy.

Three `python -m agent` processes on their own 127.0.x.y (one server, two clients; the `local` gossip profile),
the real py-consul client against every agent, a small HTTP server the `web` check probes.  Every wait is a
condition with a deadline; every process is stopped by its PID (the Cluster fixture of test_guide).
"""

from __future__ import annotations

import json
import signal
import time

from consul_agents import CheckedServer, Cluster, ConsulAgent
from procs import wait_for

# Convergence bounds: generous against a loaded CI machine; the bench measures the real figures.
ROUND = 10.0


def passing_web(agent: ConsulAgent) -> list[str]:
    return [e["Node"]["Node"] for e in agent.client().health.service("web", passing=True)[1]]


def test_services_replicate_follow_their_checks_survive_restarts_and_reload(
    cluster: Cluster, checked_server: CheckedServer
) -> None:
    web = {"name": "web", "id": "web-1", "tags": ["v1"], "port": checked_server.port,
           "check": {"id": "web-http", "http": checked_server.url, "interval": "1s", "timeout": "1s"}}  # fmt: skip
    server = cluster.start("s1", server=True)
    c2 = cluster.start("c2")
    c3 = cluster.start("c3", extra={"service": web})
    agents = [server, c2, c3]
    for agent in (c2, c3):
        assert agent.cli("join", server.serf_addr).returncode == 0

    # Every agent sees `web` in the catalog and, once its check passed, as healthy.
    def everywhere() -> bool:
        for agent in agents:
            c = agent.client()
            if c.catalog.services()[1].get("web") != ["v1"]:
                return False
            if [(s["Node"], s["ServiceID"], s["ServicePort"]) for s in c.catalog.service("web")[1]] != [
                ("c3", "web-1", checked_server.port)
            ]:
                return False
            if passing_web(agent) != ["c3"]:
                return False
        return True

    wait_for(everywhere, timeout=ROUND, what="web healthy in every agent's catalog", diagnostics=cluster.diagnostics)
    assert server.client().catalog.services()[1]["consul"] == []
    node = server.client().catalog.node("c3")[1]
    assert set(node["Services"]) == {"web-1"}
    checks = {c["CheckID"]: c for c in server.client().health.node("c3")[1]}
    assert checks["serfHealth"]["Status"] == "passing"
    assert checks["web-http"]["Output"].startswith(f"HTTP GET {checked_server.url}: 200 OK Output: ok")

    # The checked server stops: critical within the interval plus a gossip round, everywhere.
    checked_server.stop()
    stopped = time.monotonic()
    wait_for(lambda: all(passing_web(a) == [] for a in agents), timeout=ROUND, what="web out of ?passing",
             diagnostics=cluster.diagnostics)  # fmt: skip
    assert time.monotonic() - stopped < 1.0 + 1.0 + 3.0
    assert [c["Status"] for c in server.client().health.checks("web")[1]] == ["critical"]
    assert [c["CheckID"] for c in server.client().health.state("critical")[1]] == ["web-http"]

    # A TTL check registered through the API: passing while refreshed, critical when not.
    api = c2.client()
    assert api.agent.service.register("cache", service_id="cache-1", port=6379,
                                      check={"ttl": "2s"})  # fmt: skip
    assert api.agent.check.ttl_pass("service:cache-1", "fine")
    wait_for(lambda: [c["Status"] for c in server.client().health.checks("cache")[1]] == ["passing"],
             timeout=ROUND, what="cache passing on the server", diagnostics=cluster.diagnostics)  # fmt: skip
    wait_for(lambda: [c["Status"] for c in server.client().health.checks("cache")[1]] == ["critical"],
             timeout=ROUND, what="cache critical once its TTL lapsed", diagnostics=cluster.diagnostics)  # fmt: skip
    output = server.client().health.checks("cache")[1][0]["Output"]
    assert output == "TTL expired (last output before timeout follows): fine"

    # The API registration survives a restart of c2 (persisted in its data dir).
    c2.proc.send_signal(signal.SIGTERM)
    assert c2.proc.wait(20) == 0, c2.proc.log_tail()
    wait_for(lambda: "cache" not in server.client().catalog.services()[1], timeout=ROUND,
             what="cache gone from the catalog after c2 left", diagnostics=cluster.diagnostics)  # fmt: skip
    again = cluster.start("c2", reuse=c2)
    assert again.cli("join", server.serf_addr).returncode == 0
    assert "cache-1" in again.client().agent.services()
    wait_for(lambda: "cache" in server.client().catalog.services()[1], timeout=ROUND,
             what="cache back in the catalog after c2's restart", diagnostics=cluster.diagnostics)  # fmt: skip

    # SIGHUP picks up a new service file.
    (c3.config_dir / "api.json").write_text(json.dumps({"service": {"name": "api", "port": 9000}}))
    c3.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: all("api" in a.client().catalog.services()[1] for a in (server, again, c3)), timeout=ROUND,
             what="api in every catalog after SIGHUP", diagnostics=cluster.diagnostics)  # fmt: skip


def test_a_failed_node_stays_critical_and_a_bad_definition_names_its_file(cluster: Cluster) -> None:
    server = cluster.start("s1", server=True)
    c2 = cluster.start("c2", extra={"service": {"name": "db", "port": 5432}})
    assert c2.cli("join", server.serf_addr).returncode == 0
    wait_for(lambda: [e["Node"]["Node"] for e in server.client().health.service("db", passing=True)[1]] == ["c2"],
             timeout=ROUND, what="db healthy on the server", diagnostics=cluster.diagnostics)  # fmt: skip
    c2.proc.kill()

    def failed_but_listed() -> bool:
        entries = server.client().health.service("db")[1]
        checks = {c["CheckID"]: c["Status"] for e in entries for c in e["Checks"]}
        return checks == {"serfHealth": "critical"} and not server.client().health.service("db", passing=True)[1]

    wait_for(failed_but_listed, timeout=30, what="db listed with serfHealth critical", diagnostics=cluster.diagnostics)

    bad = cluster.start("bad", extra={"service": {"name": "x", "check": {"http": "http://x/", "ttl": "5s"}}},
                        wait_up=False)  # fmt: skip
    assert bad.proc.wait(20) == 1
    log = bad.proc.log_tail()
    assert str(bad.config_dir / "agent.json") in log
    assert 'service "x": services[0].check: Interval must be > 0 for Script, HTTP' in log
