"""The real ``dig`` (dnsutils) against the DNS interface: an in-process responder, and a three-agent cluster.

Rules: loopback only (each server on its own 127.0.x.y, ports picked free); dig runs with ``+time=2 +tries=1``;
waits are conditions with deadlines; agent processes are ours and stopped by PID (procs.Proc).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import trio
from conftest import REPO, next_loopback_ip
from procs import Proc, free_port, wait_for

from agent.config import AgentConfig
from agent.dns import serve_dns
from agent.members import Member, MemberTable

DIG = shutil.which("dig") or "/usr/bin/dig"
pytestmark = pytest.mark.skipif(not os.access(DIG, os.X_OK), reason="dig not found: apt-get install dnsutils")


@dataclass
class Dig:
    """What dig printed, split into the parts tests look at."""

    status: str
    flags: set[str]
    answer: list[list[str]] = field(default_factory=list)
    authority: list[list[str]] = field(default_factory=list)
    additional: list[list[str]] = field(default_factory=list)
    opt_udp: int | None = None
    text: str = ""

    def values(self, rdtype: str) -> list[str]:
        return [" ".join(r[4:]) for r in self.answer if r[3] == rdtype]


def parse_dig(text: str) -> Dig:
    status = re.search(r"status: (\w+)", text)
    flags = re.search(r";; flags: ([a-z ]*);", text)
    assert status and flags, text
    udp = re.search(r"; EDNS: version: \d+, flags:[^;]*; udp: (\d+)", text)
    result = Dig(status.group(1), set(flags.group(1).split()), opt_udp=int(udp.group(1)) if udp else None, text=text)
    current: list[list[str]] | None = None
    for line in text.splitlines():
        if line.startswith(";; ANSWER SECTION"):
            current = result.answer
        elif line.startswith(";; AUTHORITY SECTION"):
            current = result.authority
        elif line.startswith(";; ADDITIONAL SECTION"):
            current = result.additional
        elif not line.strip() or line.startswith(";"):
            current = None if not line.strip() else current
        elif current is not None:
            current.append(line.split())
    return result


def dig_args(host: str, port: int, *args: str) -> list[str]:
    return [DIG, f"@{host}", "-p", str(port), "+time=2", "+tries=1", *args]


def dig(host: str, port: int, *args: str) -> Dig:
    out = subprocess.run(dig_args(host, port, *args), capture_output=True, text=True, timeout=20)
    return parse_dig(out.stdout)


async def adig(addr: tuple[str, int], *args: str) -> Dig:
    out = await trio.run_process(dig_args(addr[0], addr[1], *args), capture_stdout=True, capture_stderr=True)
    return parse_dig(out.stdout.decode())


# ---------------------------------------------------------------------------------------------- in-process


TAGS = {"dc": "dc1", "build": "1.20.1:abc", "id": "x"}


def in_process(fn: Callable[..., Awaitable[None]]) -> Callable[[], None]:
    """Run ``fn(addr)`` against a responder serving a small table: hdp1 (server, 20 meta pairs), hdp3, six (v6)."""

    def wrapper() -> None:
        async def main() -> None:
            table = MemberTable()
            table.apply("member-join", Member("hdp1", "127.0.0.11", 8301, {**TAGS, "role": "consul"}))
            table.apply("member-join", Member("hdp3", "127.0.0.13", 8301, {**TAGS, "role": "node"}))
            table.apply("member-join", Member("six", "fd00::6", 8301, {**TAGS, "role": "node"}))
            config = AgentConfig(node_name="hdp1", server=True, node_meta={f"a{i:02d}": "v" * 20 for i in range(20)},
                                 dns_config={"enable_truncate": True})
            with trio.fail_after(60):
                async with trio.open_nursery() as nursery:
                    addr = await nursery.start(serve_dns, table, config, next_loopback_ip(), 0)
                    await fn(addr)
                    nursery.cancel_scope.cancel()

        trio.run(main)

    wrapper.__name__ = wrapper.__qualname__ = fn.__name__  # no __wrapped__: pytest must not see the parameter
    wrapper.__doc__ = fn.__doc__
    return wrapper


@in_process
async def test_dig_node_a_flags_and_additional_txt(addr: tuple[str, int]) -> None:
    d = await adig(addr, "hdp3.node.consul")
    assert d.status == "NOERROR" and d.flags == {"qr", "aa", "rd"}
    assert d.answer == [["hdp3.node.consul.", "0", "IN", "A", "127.0.0.13"]]
    assert ["hdp3.node.consul.", "0", "IN", "TXT", '"consul-network-segment="'] in d.additional
    assert d.opt_udp == 1232  # dig's EDNS buffer echoed


@in_process
async def test_dig_dc_form_case_and_unknowns(addr: tuple[str, int]) -> None:
    assert (await adig(addr, "hdp3.node.dc1.consul")).values("A") == ["127.0.0.13"]
    upper = await adig(addr, "HDP3.NODE.DC1.CONSUL")
    assert upper.values("A") == ["127.0.0.13"] and upper.answer[0][0] == "HDP3.NODE.DC1.CONSUL."
    for name in ("nobody.node.consul", "hdp3.node.dc9.consul"):
        d = await adig(addr, name)
        assert d.status == "NXDOMAIN" and d.answer == [] and "aa" in d.flags
        assert d.authority[0][:4] == ["consul.", "0", "IN", "SOA"]
        assert d.authority[0][4:6] == ["ns.consul.", "hostmaster.consul."]


@in_process
async def test_dig_types(addr: tuple[str, int]) -> None:
    assert (await adig(addr, "six.node.consul", "AAAA")).values("AAAA") == ["fd00::6"]
    nodata = await adig(addr, "hdp3.node.consul", "AAAA")
    assert (nodata.status, nodata.answer, nodata.authority[0][3]) == ("NOERROR", [], "SOA")
    txt = await adig(addr, "hdp3.node.consul", "TXT")
    assert sorted(txt.values("TXT")) == ['"consul-network-segment="', '"consul-version=1.20.1"']
    any_ = await adig(addr, "hdp3.node.consul", "ANY")
    assert any_.values("A") == ["127.0.0.13"] and len(any_.values("TXT")) == 2
    ptr = await adig(addr, "-x", "127.0.0.13")
    assert ptr.answer == [["13.0.0.127.in-addr.arpa.", "0", "IN", "PTR", "hdp3.node.dc1.consul."]]
    assert (await adig(addr, "-x", "fd00::6")).values("PTR") == ["six.node.dc1.consul."]
    soa = await adig(addr, "consul", "SOA")
    assert soa.answer[0][3] == "SOA" and soa.answer[0][4:5] == ["ns.consul."] and soa.answer[0][-4:] == [
        "3600", "600", "86400", "0"]
    assert soa.authority == [["consul.", "0", "IN", "NS", "hdp1.node.dc1.consul."]]
    assert soa.additional == [["hdp1.node.dc1.consul.", "0", "IN", "A", "127.0.0.11"]]
    ns = await adig(addr, "consul", "NS")
    assert ns.answer == [["consul.", "0", "IN", "NS", "hdp1.node.dc1.consul."]]
    refused = await adig(addr, "example.com")
    assert refused.status == "REFUSED" and "aa" not in refused.flags and "ra" not in refused.flags


@in_process
async def test_dig_size_limits_udp_tcp_edns(addr: tuple[str, int]) -> None:
    # hdp1 has 22 meta pairs (20 configured + segment + version): 22 TXT records, ~900 bytes.
    plain = await adig(addr, "hdp1.node.consul", "TXT", "+noedns", "+ignore")
    assert len(plain.values("TXT")) == 3 and "tc" in plain.flags and plain.opt_udp is None  # enable_truncate
    edns = await adig(addr, "hdp1.node.consul", "TXT")  # EDNS0, buffer 1232: no 3-record cap
    assert len(edns.values("TXT")) == 22 and "tc" not in edns.flags and edns.opt_udp == 1232
    small = await adig(addr, "hdp1.node.consul", "TXT", "+bufsize=600", "+ignore")
    assert 3 < len(small.values("TXT")) < 22 and "tc" in small.flags and small.opt_udp == 600
    tcp = await adig(addr, "hdp1.node.consul", "TXT", "+noedns", "+tcp")
    assert len(tcp.values("TXT")) == 22 and "tc" not in tcp.flags
    retried = await adig(addr, "hdp1.node.consul", "TXT", "+noedns")  # dig retries over TCP on TC
    assert len(retried.values("TXT")) == 22 and "Truncated, retrying in TCP mode" in retried.text


# ---------------------------------------------------------------------------------------------- a real cluster

ENV = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")


@dataclass
class Agent:
    name: str
    ip: str
    http: int
    serf: int
    dns: int
    proc: Proc

    def dig(self, *args: str) -> Dig:
        return dig(self.ip, self.dns, *args)

    def catalog_nodes(self) -> set[str]:
        r = requests.get(f"http://{self.ip}:{self.http}/v1/catalog/nodes", params={"stale": ""}, timeout=2)
        return {n["Node"] for n in r.json()}


class DnsCluster:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.agents: list[Agent] = []

    def diagnostics(self) -> str:
        return "\n".join(f"--- {a.name}\n{a.proc.log_tail(20)}" for a in self.agents)

    def start(self, name: str, *, server: bool = False) -> Agent:
        ip = next_loopback_ip()
        http, serf, dns_port = free_port(ip), free_port(ip), free_port(ip)
        conf = self.tmp_path / f"{name}.d"
        conf.mkdir()
        config: dict[str, Any] = {
            "node_name": name, "bind_addr": ip, "client_addr": ip, "data_dir": str(self.tmp_path / f"{name}.data"),
            "ports": {"http": http, "serf_lan": serf, "dns": dns_port}, "gossip_profile": "local",
        }
        if server:
            config.update(server=True, bootstrap_expect=1)
        (conf / "agent.json").write_text(json.dumps(config))
        proc = Proc(f"agent:{name}", [sys.executable, "-m", "agent", "-config-dir", str(conf)],
                    self.tmp_path / f"{name}.log", env=ENV)
        agent = Agent(name, ip, http, serf, dns_port, proc)
        self.agents.append(agent)

        def up() -> bool:
            if not proc.alive():
                raise AssertionError(f"{name} exited:\n{proc.log_tail()}")
            return agent.dig(f"{name}.node.consul").status in ("NOERROR", "SERVFAIL")

        wait_for(up, timeout=20, what=f"{name} DNS", diagnostics=self.diagnostics)
        return agent

    def join(self, agent: Agent, target: Agent) -> None:
        out = subprocess.run([sys.executable, "-m", "agent", "join", f"-http-addr={agent.ip}:{agent.http}",
                              f"{target.ip}:{target.serf}"], capture_output=True, text=True, timeout=30, env=ENV,
                             cwd=REPO)
        assert out.returncode == 0, out.stderr

    def close(self) -> None:
        for a in self.agents:
            a.proc.close()


@pytest.fixture
def dns_cluster(tmp_path: Path) -> Iterator[DnsCluster]:
    c = DnsCluster(tmp_path)
    try:
        yield c
    finally:
        c.close()


def test_dig_against_three_agents(dns_cluster: DnsCluster) -> None:
    hdp1 = dns_cluster.start("hdp1", server=True)
    hdp2 = dns_cluster.start("hdp2")
    assert hdp2.dig("hdp2.node.consul").status == "SERVFAIL"  # a client that knows no server, as Consul
    dns_cluster.join(hdp2, hdp1)
    hdp3 = dns_cluster.start("hdp3")
    agents = [hdp1, hdp2, hdp3]

    # A join is answerable at once on the agent it joined through, and after gossip elsewhere (the bound here is
    # generous: this box may be busy; how many rounds a join takes is measured in the simulator, not by a clock).
    dns_cluster.join(hdp3, hdp1)
    assert hdp1.dig("hdp3.node.consul").values("A") == [hdp3.ip]
    for agent in (hdp2, hdp3):
        wait_for(lambda a=agent: a.dig("hdp3.node.consul").values("A") == [hdp3.ip], timeout=15,
                 what=f"hdp3 answerable on {agent.name}", diagnostics=dns_cluster.diagnostics)

    for agent in agents:
        d = agent.dig("hdp3.node.consul")
        assert d.status == "NOERROR" and d.flags == {"qr", "aa", "rd"}
        assert d.answer == [["hdp3.node.consul.", "0", "IN", "A", hdp3.ip]]
        assert agent.dig("hdp1.node.dc1.consul").values("A") == [hdp1.ip]
        assert agent.dig("HDP2.node.CONSUL").values("A") == [hdp2.ip]
        nx = agent.dig("nobody.node.consul")
        assert nx.status == "NXDOMAIN" and nx.authority[0][3] == "SOA"
        assert agent.dig("-x", hdp2.ip).values("PTR") == ["hdp2.node.dc1.consul."]
        assert agent.dig("consul", "NS").values("NS") == ["hdp1.node.dc1.consul."]
        assert agent.dig("hdp2.node.consul", "TXT").values("TXT") == [
            '"consul-network-segment="', '"consul-version=0.1.0"']

    # A graceful leave deregisters at once (Consul): NXDOMAIN, in step with the HTTP catalog.
    hdp2.proc.send_signal(signal.SIGINT)
    assert hdp2.proc.wait(20) == 0, hdp2.proc.log_tail()

    def left_everywhere() -> bool:
        return all(a.dig("hdp2.node.consul").status == "NXDOMAIN" and "hdp2" not in a.catalog_nodes()
                   for a in (hdp1, hdp3))

    wait_for(left_everywhere, timeout=20, what="hdp2 NXDOMAIN after its leave", diagnostics=dns_cluster.diagnostics)

    # A killed node is failed, and failed nodes stay in the catalog: still answered, as HTTP still lists it.
    hdp3.proc.kill()

    def failed_on_server() -> bool:
        r = requests.get(f"http://{hdp1.ip}:{hdp1.http}/v1/agent/members", timeout=2)
        return any(m["Name"] == "hdp3" and m["Status"] == 4 for m in r.json())

    wait_for(failed_on_server, timeout=30, what="hdp3 failed on hdp1", diagnostics=dns_cluster.diagnostics)
    assert hdp1.dig("hdp3.node.consul").values("A") == [hdp3.ip] and "hdp3" in hdp1.catalog_nodes()
