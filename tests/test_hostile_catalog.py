"""Issue 16, the agent's side: hostile datagrams and bodies against real `python -m agent` processes.

Each test sends what the finding sent, through a real socket on loopback (a UDP gossip datagram, an HTTP body, a
CLI argv), then asserts on what any client sees: processes alive, every endpoint 200, DNS and the catalog
pointing where the owner says.  Processes are started and stopped by PID (tests/consul_agents.py).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import dns.message
import dns.name
import dns.query
import dns.rdatatype
import msgpack
import requests
from conftest import REPO, next_loopback_ip
from consul_agents import ENV, Cluster, ConsulAgent
from procs import wait_for

from protocol.codec import Alive, User, encode, packb
from protocol.config import Config
from protocol.serf import APP_MESSAGE_TYPE
from protocol.serf_messages import encode_tags

EVIL = "evil\udcff"  # the bytes b"evil\xff" as the agent holds them (surrogate escapes)
GET_ENDPOINTS = (  # every GET route of agent/http, with the ghost's name where a route takes one
    "/v1/agent/members", "/v1/agent/self", "/v1/agent/services", "/v1/agent/checks", "/v1/catalog/nodes",
    "/v1/catalog/services", "/v1/catalog/service/web", "/v1/health/state/any", "/v1/health/service/web",
    "/v1/health/checks/web", "/v1/health/node/a", "/v1/catalog/node/a", "/v1/health/node/evil%FF",
    "/v1/catalog/node/evil%FF", "/v1/catalog/datacenters", "/v1/status/leader", "/v1/status/peers",
    "/v1/agent/members?pretty", "/v1/catalog/nodes?node-meta=a%FF:b",
)  # fmt: skip


def udp_send(agent: ConsulAgent, data: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(data, (agent.ip, agent.serf_port))


def alive(name: str, tags: dict[str, str], ip: str, port: int, incarnation: int = 1) -> bytes:
    return encode(Alive(incarnation, name, socket.inet_aton(ip), port, encode_tags(tags), Config.lan().vsn))


def app_message(sender: str, body: dict) -> bytes:
    """A catalog message as one UDP user datagram (anyone can send it; no join needed)."""
    payload = bytes([APP_MESSAGE_TYPE]) + packb({"From": sender, "Payload": msgpack.packb(body, use_bin_type=True)})
    return encode(User(payload))


def all_endpoints_answer(agent: ConsulAgent) -> dict[str, int]:
    """Every GET endpoint's status; only the non-200 ones are returned."""
    bad = {}
    for path in GET_ENDPOINTS:
        r = requests.get(f"http://{agent.http_addr}{path}", timeout=5)
        if r.status_code != 200:
            bad[path] = r.status_code
    return bad


def member_names(agent: ConsulAgent) -> dict[str, int]:
    members = requests.get(f"http://{agent.http_addr}/v1/agent/members", timeout=5).json()
    return {m["Name"]: m["Status"] for m in members}


def test_a_member_named_with_invalid_utf8_crashes_nothing_and_can_be_force_left(cluster: Cluster) -> None:
    """Item 1: `evil\\xff` with and without the catalog tag: no agent exits, every endpoint answers 200 with the
    name as Go renders it (U+FFFD), DNS answers, and force-leave (CLI argv bytes) names the node."""
    a = cluster.start("a", server=True, dns=True)
    b = cluster.start("b")
    assert b.cli("join", a.serf_addr).returncode == 0
    wait_for(lambda: set(member_names(a)) == {"a", "b"}, timeout=15, what="a and b joined")
    ghost_ip = next_loopback_ip()
    # One datagram each: a member with the catalog tag (a fetch of its record follows), one without. Sent to both
    # agents: the ghosts never answer a probe, and a's suspicion of one replaces its queued alive message (which b
    # ignores for a member it does not know), so under load a relay to b could lose that race.
    evil = alive(EVIL, {"role": "node", "dc": "dc1", "tcv": f"{int(time.time() * 1000)}:0123456789abcdef"}, ghost_ip, 9)
    evil2 = alive("evil2\udcfe", {"role": "node", "dc": "dc1"}, ghost_ip, 10)
    for agent in (a, b):
        udp_send(agent, evil)
        udp_send(agent, evil2)

    wait_for(lambda: {"evil\ufffd", "evil2\ufffd"} <= set(member_names(b)), timeout=15,
             what="the ghost members reached b", diagnostics=cluster.diagnostics)  # fmt: skip
    for agent in (a, b):
        assert agent.proc.alive(), cluster.diagnostics()
        assert all_endpoints_answer(agent) == {}
        nodes = {n["Node"] for n in requests.get(f"http://{agent.http_addr}/v1/catalog/nodes", timeout=5).json()}
        assert {"evil\ufffd", "evil2\ufffd"} <= nodes
        raw = requests.get(f"http://{agent.http_addr}/v1/health/state/any", timeout=5).content
        assert "evil\ufffd".encode() in raw  # valid UTF-8 on the wire, as Go's encoding/json writes it

    # DNS: a query naming the node by its bytes, and the node/service lookups around it, all answer.
    for qname in (dns.name.Name([b"evil\xff", b"node", b"consul", b""]), "a.node.consul.", "consul.service.consul."):
        reply = dns.query.udp(dns.message.make_query(qname, dns.rdatatype.ANY), a.ip, port=a.dns_port, timeout=5)
        assert reply.rcode() in (0, 3)  # NOERROR or NXDOMAIN: an answer, not a crash (SERVFAIL is 2)
    assert a.proc.alive()

    # force-leave from the command line, with the node's bytes as argv (as a shell passes them).
    wait_for(lambda: member_names(a).get("evil\ufffd") == 4, timeout=30, what="the ghost failed",
             diagnostics=cluster.diagnostics)  # fmt: skip
    out = subprocess.run([sys.executable, "-m", "agent", "force-leave", f"-http-addr={a.http_addr}", b"evil\xff"],
                         capture_output=True, timeout=30, env=ENV, cwd=REPO)  # fmt: skip
    assert out.returncode == 0, out.stderr
    wait_for(lambda: member_names(a).get("evil\ufffd") in (3, None), timeout=15, what="the ghost left",
             diagnostics=cluster.diagnostics)  # fmt: skip
    assert "evil2\ufffd" in member_names(a)
    assert a.proc.alive() and b.proc.alive()


def test_a_lone_surrogate_in_json_is_stored_as_go_stores_it_and_old_poison_loads(cluster: Cluster) -> None:
    """Item 1 (b): "\\ud800" in a service Name/Tag/Meta or a TTL check's Output is read as U+FFFD (Go's
    encoding/json); peers fetch the record without anyone exiting; a definition poisoned on disk by older code
    loads on restart."""
    a = cluster.start("a", server=True)
    b = cluster.start("b")
    assert b.cli("join", a.serf_addr).returncode == 0
    body = ('{"ID": "web1", "Name": "web\\ud800", "Tags": ["t\\ud800"], "Meta": {"k": "v\\ud800"}, "Port": 80,'
            ' "Check": {"CheckID": "ttl1", "TTL": "60s"}}')  # fmt: skip
    r = requests.put(f"http://{a.http_addr}/v1/agent/service/register", data=body, timeout=5)
    assert r.status_code == 200, r.text
    r = requests.put(f"http://{a.http_addr}/v1/agent/check/update/ttl1", timeout=5,
                     data='{"Status": "passing", "Output": "out\\ud800"}')  # fmt: skip
    assert r.status_code == 200, r.text
    service = requests.get(f"http://{a.http_addr}/v1/agent/service/web1", timeout=5).json()
    assert (service["Service"], service["Tags"], service["Meta"]) == ("web\ufffd", ["t\ufffd"], {"k": "v\ufffd"})

    def replicated() -> bool:
        checks = requests.get(f"http://{b.http_addr}/v1/health/node/a", timeout=5).json()
        return any(c["CheckID"] == "ttl1" and c["Output"] == "out\ufffd" for c in checks)

    wait_for(replicated, timeout=15, what="b holds a's record", diagnostics=cluster.diagnostics)
    assert a.proc.alive() and b.proc.alive()
    # a rejoins b after its restart from its saved peers (written 1 s after a change): stop it only once saved,
    # or the rejoin is left to b's reconnect timer and the replication wait below races it
    peers = a.data_dir / "serf" / "peers.json"
    wait_for(lambda: peers.exists() and b.serf_addr in peers.read_text(), timeout=10, what="a's peers file names b",
             diagnostics=cluster.diagnostics)

    # What the old code persisted: the raw escape in the file.  The agent must start and serve it.
    a.proc.stop()
    services = a.data_dir / "services"
    files = list(services.glob("*.json"))
    assert len(files) == 1
    doc = json.loads(files[0].read_text())
    doc["Service"]["name"] = "old\ud800"
    doc["Service"]["tags"] = ["t\ud800"]
    files[0].write_text(json.dumps(doc))
    a = cluster.start("a", reuse=a)
    names = {s["Service"] for s in requests.get(f"http://{a.http_addr}/v1/agent/services", timeout=5).json().values()}
    assert names == {"old\ufffd"}
    wait_for(lambda: "old\ufffd" in requests.get(f"http://{b.http_addr}/v1/catalog/services", timeout=5).json(),
             timeout=15, what="the restored service replicated", diagnostics=cluster.diagnostics)  # fmt: skip
    assert a.proc.alive() and b.proc.alive()


def test_a_digest_claiming_our_record_at_2_64_minus_1_is_dropped(cluster: Cluster) -> None:
    """Item 2: the datagram that made the victim exit within a second (OverflowError)."""
    a = cluster.start("a", server=True)
    for claim in (2**64 - 1, 2**63, -(2**63), "x", 1.5):
        udp_send(a, app_message("mallory", {"t": "d", "v": {"a": claim}}))
    udp_send(a, app_message("mallory", {"t": "r", "r": [{"n": "a", "v": 2**64 - 1}]}))
    # Wait until the agent has read them (each drop is logged), then it must still be alive and serving.
    wait_for(lambda: a.proc.log_tail(200).count("catalog: dropped a malformed message from 'mallory'") >= 6
             or not a.proc.alive(), timeout=15, what="the six forged messages read and dropped")
    assert a.proc.alive(), a.proc.log_tail()
    assert all_endpoints_answer(a) == {}


def _web_addresses(agent: ConsulAgent) -> set[str]:
    entries = requests.get(f"http://{agent.http_addr}/v1/catalog/service/web", timeout=5).json()
    return {e["ServiceAddress"] or e["Address"] for e in entries}


def _dns_addresses(agent: ConsulAgent) -> set[str]:
    query = dns.message.make_query("web.service.consul.", dns.rdatatype.A)
    reply = dns.query.udp(query, agent.ip, port=agent.dns_port, timeout=5)
    return {rd.address for rrset in reply.answer for rd in rrset if rrset.rdtype == dns.rdatatype.A}


def test_forged_catalog_records_never_point_web_at_the_forger(cluster: Cluster) -> None:
    """Item 4: a forger sends b's record (web at the forger's address) every 0.2 s, as a third party and as b
    itself, at b's announced version and past it.  a's DNS and catalog keep pointing at b only."""
    a = cluster.start("a", server=True, dns=True)
    b = cluster.start("b", extra={"service": {"name": "web", "port": 80}})
    assert b.cli("join", a.serf_addr).returncode == 0
    wait_for(lambda: _web_addresses(a) == {b.ip}, timeout=15, what="a sees b's web", diagnostics=cluster.diagnostics)
    tcv = next(m["Tags"]["tcv"] for m in requests.get(f"http://{a.http_addr}/v1/agent/members", timeout=5).json()
               if m["Name"] == "b")  # fmt: skip
    announced = int(tcv.partition(":")[0])
    forger = next_loopback_ip()

    def forged(version: int) -> dict:
        service = {"i": "web", "n": "web", "t": [], "a": forger, "p": 80, "m": {}}
        return {"n": "b", "v": version, "s": [service], "c": [], "m": {}}

    answers: list[set[str]] = []
    deadline = time.monotonic() + 6.0
    while time.monotonic() < deadline:
        for sender, version in (("mallory", announced + 1), ("b", announced), ("b", announced + 1),
                                ("b", 2**62)):  # fmt: skip
            udp_send(a, app_message(sender, {"t": "r", "r": [forged(version)]}))
        time.sleep(0.2)
        answers.append(_dns_addresses(a))
        answers.append(_web_addresses(a))
    assert all(x == {b.ip} for x in answers), [x for x in answers if x != {b.ip}][:5]
    log = a.proc.log_tail(2000)
    assert a.proc.alive() and "refused the record of 'b'" in log
    # 120 forged records in 6 s: the log says so in at most 20 lines per 10 s, not 120.
    assert 1 <= log.count("catalog: refused the record of 'b'") <= 40
    # b's own changes still reach a.
    r = requests.put(f"http://{b.http_addr}/v1/agent/service/register", timeout=5,
                     data=json.dumps({"Name": "web", "ID": "web2", "Port": 81, "Address": b.ip}))  # fmt: skip
    assert r.status_code == 200
    wait_for(lambda: len(requests.get(f"http://{a.http_addr}/v1/catalog/service/web", timeout=5).json()) == 2,
             timeout=15, what="b's new instance at a", diagnostics=cluster.diagnostics)  # fmt: skip
