"""Registered (external) nodes end to end, with real processes: one `python -m agent` server (bootstrap_expect 1)
and one client agent on loopback.  A node with a service and checks is registered in the server's Raft store
through the server port (``Store.Apply``, what ``/v1/catalog/register`` proposes); the client's mirror brings it
into its snapshot, and the real ``dig`` and HTTP on the *client* show it: node and service lookups, the health
endpoint, a blocking catalog query woken by the registration, a critical check hiding the instance from DNS, and
a registration under the client's own node name deregistered by the leader (the agent's node wins).

Processes are ours and stopped by PID (Cluster.close); every wait is a condition with a deadline.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import requests
import trio
from consul_agents import Cluster, ConsulAgent
from procs import wait_for
from test_dns_dig import DIG, Dig, dig

from agent.catalog.record import CheckRecord, ServiceRecord
from agent.server import rpc
from agent.server.state.commands import CatalogDeregister, CatalogRegister, Command, encode

pytestmark = pytest.mark.skipif(not Path(DIG).exists(), reason="dig not found: apt-get install dnsutils")

FAST = {"performance": {"raft_multiplier": 1}}


def store_apply(server: ConsulAgent, command: Command) -> Any:
    """A write proposed through the server port, as a client agent's ForwardAccess sends it."""
    reply = trio.run(lambda: rpc.call(server.server_rpc_addr, "Store.Apply", {"data": encode(command)}, timeout=10))
    assert "ok" in reply, reply
    return reply["ok"]


def store_query(server: ConsulAgent, name: str) -> Any:
    mode = {"c": "default", "ms": None, "i": 0, "w": 0.0}
    return trio.run(lambda: rpc.call(server.server_rpc_addr, "Store.Query", {"name": name, "args": {},
                                                                           "mode": mode}, timeout=10))


def client_dig(agent: ConsulAgent, *args: str) -> Dig:
    return dig(agent.ip, agent.dns_port, *args)


def http(agent: ConsulAgent, path: str, **params: Any) -> requests.Response:
    return requests.get(f"http://{agent.http_addr}{path}", params=params, timeout=30)


WEB = ServiceRecord(id="web-ext", name="web", tags=("ext",), port=8080)


def register_ext(address: str, status: str = "passing") -> CatalogRegister:
    return CatalogRegister(
        node="ext1", address=address, datacenter="dc1", node_meta={"external-node": "true"}, service=WEB,
        checks=(CheckRecord(id="probe", name="probe", status=status, service_id="web-ext"),),
    )  # fmt: skip


def test_a_registered_node_reaches_the_clients_dns_and_http(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    try:
        server = cluster.start("s1", server=True, extra=FAST)
        client = cluster.start("c1", dns=True, extra={"retry_join": [server.serf_addr], "retry_interval": "1s",
                                                      **FAST})  # fmt: skip
        wait_for(lambda: http(client, "/v1/status/leader").json() == server.server_rpc_addr, timeout=30,
                 what="the client knows the leader", diagnostics=cluster.diagnostics)  # fmt: skip
        wait_for(lambda: client_dig(client, "c1.node.consul").values("A") == [client.ip], timeout=15,
                 what="the client's DNS answers", diagnostics=cluster.diagnostics)  # fmt: skip

        # a blocking catalog read on the client, parked before the registration
        before = http(client, "/v1/catalog/service/web")
        assert before.json() == []
        index = int(before.headers["X-Consul-Index"])
        woken: list[requests.Response] = []
        reader = threading.Thread(target=lambda: woken.append(
            http(client, "/v1/catalog/service/web", index=str(index), wait="20s")))
        reader.start()

        assert store_apply(server, register_ext("127.0.0.250")) is True
        reader.join(25)
        assert woken and woken[0].status_code == 200, cluster.diagnostics()
        assert int(woken[0].headers["X-Consul-Index"]) > index
        [instance] = woken[0].json()
        assert (instance["Node"], instance["Address"], instance["ServiceID"], instance["ServicePort"],
                instance["NodeMeta"]) == ("ext1", "127.0.0.250", "web-ext", 8080, {"external-node": "true"})

        # real dig on the client: the node and the service
        assert client_dig(client, "ext1.node.consul").values("A") == ["127.0.0.250"]
        assert client_dig(client, "web.service.consul").values("A") == ["127.0.0.250"]
        srv = client_dig(client, "_web._ext.service.consul", "SRV")
        assert srv.values("SRV") == ["1 1 8080 ext1.node.dc1.consul."]
        # HTTP on the client: catalog and health, no serfHealth on an external node
        nodes = {n["Node"]: n for n in http(client, "/v1/catalog/nodes").json()}
        assert set(nodes) == {"s1", "c1", "ext1"} and nodes["ext1"]["Address"] == "127.0.0.250"
        assert sorted(http(client, "/v1/catalog/node/ext1").json()["Services"]) == ["web-ext"]
        [health] = http(client, "/v1/health/service/web", passing="1").json()
        assert [c["CheckID"] for c in health["Checks"]] == ["probe"]
        assert [c["CheckID"] for c in http(client, "/v1/health/node/ext1").json()] == ["probe"]
        assert "web" in http(client, "/v1/catalog/services").json()

        # the check goes critical: DNS drops the instance, health shows it
        store_apply(server, register_ext("127.0.0.250", status="critical"))
        wait_for(lambda: client_dig(client, "web.service.consul").status == "NXDOMAIN", timeout=10,
                 what="the critical instance leaves DNS", diagnostics=cluster.diagnostics)  # fmt: skip
        assert [c["CheckID"] for c in http(client, "/v1/health/state/critical").json()] == ["probe"]
        assert client_dig(client, "ext1.node.consul").values("A") == ["127.0.0.250"]  # the node still answers

        # a registration under the client's own name: hidden at once, and the leader deregisters it
        store_apply(server, CatalogRegister(node="C1", address="127.0.0.251", service=WEB))
        wait_for(lambda: [n["Node"] for n in store_query(server, "catalog.nodes")[1]] == ["ext1"], timeout=10,
                 what="the leader deregisters the shadowed registration", diagnostics=cluster.diagnostics)
        assert client_dig(client, "c1.node.consul").values("A") == [client.ip]
        assert http(client, "/v1/catalog/node/c1").json()["Node"]["Address"] == client.ip

        # deregistered: gone from the client
        store_apply(server, CatalogDeregister(node="ext1"))
        wait_for(lambda: client_dig(client, "ext1.node.consul").status == "NXDOMAIN", timeout=10,
                 what="the deregistered node leaves DNS", diagnostics=cluster.diagnostics)  # fmt: skip
        assert "ext1" not in {n["Node"] for n in http(client, "/v1/catalog/nodes").json()}
    finally:
        cluster.close()
