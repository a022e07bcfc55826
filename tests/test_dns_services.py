"""The services issue's DNS part, end to end: three `python -m agent` processes with DNS ports and the real `dig`.

`dig SRV web.service.consul` answers from every agent with the node name as target and its address in the
additional section; stopping the HTTP server the `web` check probes turns the instance critical and takes it out
of DNS within the check interval plus a gossip round.  Waits are conditions with deadlines; processes are stopped
by PID (test_guide's Cluster); loopback only.
"""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest
from consul_agents import CheckedServer, Cluster, ConsulAgent
from procs import wait_for
from test_services_cluster import ROUND

pytestmark = pytest.mark.skipif(shutil.which("dig") is None, reason="dig not installed")


def dig(agent: ConsulAgent, name: str, rdtype: str, *flags: str) -> tuple[str, list[list[str]]]:
    """(status, records) of `dig @agent`; records are the answer and additional lines split on whitespace."""
    out = subprocess.run(
        ["dig", f"@{agent.ip}", "-p", str(agent.dns_port), "+time=2", "+tries=1", "+noall", "+comments", "+answer",
         "+additional", *flags, name, rdtype],
        capture_output=True, text=True, timeout=10,
    )  # fmt: skip
    status = ""
    records = []
    for line in out.stdout.splitlines():
        if "status:" in line:
            status = line.split("status:")[1].split(",")[0].strip()
        elif line and not line.startswith(";"):
            records.append(line.split())
    return status, records


def srv_targets(agent: ConsulAgent) -> list[tuple[str, str]] | None:
    """[(port, target)] of `dig SRV web.service.consul`, None unless NOERROR."""
    status, records = dig(agent, "web.service.consul", "SRV")
    if status != "NOERROR":
        return None
    return [(r[6], r[7]) for r in records if r[3] == "SRV"]


def test_dig_srv_answers_from_every_agent_and_a_failing_check_takes_the_instance_out(
    cluster: Cluster, checked_server: CheckedServer
) -> None:
    web = {"name": "web", "id": "web-1", "tags": ["v1"], "port": checked_server.port,
           "check": {"id": "web-http", "http": checked_server.url, "interval": "1s", "timeout": "1s"}}  # fmt: skip
    server = cluster.start("s1", server=True, dns=True)
    c2 = cluster.start("c2", dns=True)
    c3 = cluster.start("c3", extra={"service": web}, dns=True)
    agents = [server, c2, c3]
    for agent in (c2, c3):
        assert agent.cli("join", server.serf_addr).returncode == 0

    expected = [(str(checked_server.port), "c3.node.dc1.consul.")]
    wait_for(lambda: all(srv_targets(a) == expected for a in agents), timeout=ROUND,
             what="web SRV from every agent", diagnostics=cluster.diagnostics)  # fmt: skip

    for agent in agents:
        status, records = dig(agent, "web.service.consul", "SRV")
        assert status == "NOERROR"
        (srv,) = [r for r in records if r[3] == "SRV"]
        assert srv[:3] == ["web.service.consul.", "0", "IN"] and srv[4:6] == ["1", "1"]
        assert ["c3.node.dc1.consul.", "0", "IN", "A", c3.ip] in records
        assert ["c3.node.dc1.consul.", "0", "IN", "TXT", '"consul-network-segment="'] in records
        # The tag in both syntaxes, A answers, and the servers behind consul.service.
        for name in ("v1.web.service.consul", "_web._v1.service.consul", "_web._tcp.service.consul"):
            assert [r[7] for r in dig(agent, name, "SRV")[1] if r[3] == "SRV"] == ["c3.node.dc1.consul."]
        assert [r[4] for r in dig(agent, "web.service.consul", "A")[1]] == [c3.ip]
        assert [r[4] for r in dig(agent, "web.service.consul", "A", "+noedns")[1]] == [c3.ip]
        assert dig(agent, "v2.web.service.consul", "SRV")[0] == "NXDOMAIN"
        assert [r[7] for r in dig(agent, "consul.service.consul", "SRV")[1] if r[3] == "SRV"] == [
            "s1.node.dc1.consul."]

    # The checked server stops: out of DNS everywhere within the check interval plus a gossip round.
    checked_server.stop()
    stopped = time.monotonic()
    wait_for(lambda: all(dig(a, "web.service.consul", "SRV")[0] == "NXDOMAIN" for a in agents), timeout=ROUND,
             what="web out of DNS on every agent", diagnostics=cluster.diagnostics)  # fmt: skip
    assert time.monotonic() - stopped < 1.0 + 1.0 + 3.0
    status, records = dig(server, "web.service.consul", "A")
    assert status == "NXDOMAIN" and [r[3] for r in records] == []
