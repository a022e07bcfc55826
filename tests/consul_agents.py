"""Real `python -m agent` processes for end-to-end tests: a cluster of them on fresh 127.0.x.y addresses, each
with its own config dir and data dir, and the small HTTP server a service check probes.

Every agent is started here and stopped by its PID (Cluster.close); every wait is a condition with a deadline.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import consul
import pytest
import requests
from conftest import REPO, next_loopback_ip
from procs import Proc, free_port, wait_for

from protocol.serf import MemberStatus

ENV = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")


def acl_agents_refused() -> bool:
    """True while `python -m agent` still refuses ``acl.enabled`` (agent/supervisor.py's ACL_NOT_ENFORCED exit,
    which goes when every endpoint enforces ACLs): tests of ACL-enabled agents cannot run before that."""
    import inspect

    from agent import supervisor

    return "ACL_NOT_ENFORCED" in inspect.getsource(supervisor.main)


#: For tests that start agents with ``acl.enabled``: skipped (saying why) while the agent refuses to start so.
needs_acl_agents = pytest.mark.skipif(acl_agents_refused(), reason="the agent still exits 1 on acl.enabled "
                                      "(ACL_NOT_ENFORCED: endpoint enforcement has not landed)")


@dataclass
class ConsulAgent:
    name: str
    ip: str
    http_port: int
    serf_port: int
    config_dir: Path
    data_dir: Path
    proc: Proc
    dns_port: int = -1
    server_port: int = -1

    @property
    def server_rpc_addr(self) -> str:
        """The server port's ``IP:port``, as /v1/status/leader names a server."""
        return f"{self.ip}:{self.server_port}"

    @property
    def http_addr(self) -> str:
        return f"{self.ip}:{self.http_port}"

    @property
    def serf_addr(self) -> str:
        return f"{self.ip}:{self.serf_port}"

    def cli(self, command: str, *args: str) -> subprocess.CompletedProcess[str]:
        """`python -m agent COMMAND -http-addr=... ARGS` (Go's flags come before the arguments)."""
        return subprocess.run(
            [sys.executable, "-m", "agent", command, f"-http-addr={self.http_addr}", *args],
            capture_output=True, text=True, timeout=30, env=ENV, cwd=REPO,
        )

    def member_rows(self) -> dict[str, list[str]]:
        """`members` as {node: [address, status, type, build, protocol, dc, ...]}."""
        out = self.cli("members")
        if out.returncode != 0:
            return {}
        rows = [line.split() for line in out.stdout.splitlines()[1:]]
        return {row[0]: row[1:] for row in rows}

    def status_of(self, name: str) -> str | None:
        row = self.member_rows().get(name)
        return row[1] if row else None

    def member_statuses(self) -> dict[str, str]:
        """/v1/agent/members as {node: status}, the words `members` prints: for polling, where a CLI process per
        agent per round would cost a CPU's worth of interpreter starts ({} while the agent does not answer)."""
        try:
            reply = requests.get(f"http://{self.http_addr}/v1/agent/members", timeout=5)
        except requests.RequestException:
            return {}
        if not reply.ok:
            return {}
        return {m["Name"]: str(MemberStatus(m["Status"])) for m in reply.json()}

    def client(self) -> consul.Consul:
        return consul.Consul(host=self.ip, port=self.http_port)


class Cluster:
    """Starts agents for one test; all stopped by PID at teardown."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.agents: list[ConsulAgent] = []

    def diagnostics(self) -> str:
        return "\n".join(f"--- {a.name} ({'running' if a.proc.alive() else 'exited'})\n{a.proc.log_tail(30)}"
                         for a in self.agents)

    def start(self, name: str, *, server: bool = False, reuse: ConsulAgent | None = None,
              extra: dict | None = None, at: tuple[str, int] | None = None, wait_up: bool = True,
              data_dir: Path | None = None, dns: bool = False, token: str = "") -> ConsulAgent:
        """Start an agent; `at` fixes its (ip, serf port), `data_dir` shares another's (to test the lock), `dns`
        gives it a DNS port, `token` is what the readiness probe sends (an agent with ACLs on)."""
        if reuse is None:
            ip, serf_port = at or (next_loopback_ip(), 0)
            serf_port = serf_port or free_port(ip)
            config_dir = self.tmp_path / f"{name}.d"
            data_dir = data_dir or self.tmp_path / f"{name}.data"
            config_dir.mkdir()
            http_port = free_port(ip)
            dns_port = free_port(ip) if dns else -1
            while dns_port == http_port:
                dns_port = free_port(ip)
            server_port = free_port(ip)
            config = {
                "node_name": name, "bind_addr": ip, "client_addr": ip, "data_dir": str(data_dir),
                "ports": {"http": http_port, "serf_lan": serf_port, "dns": dns_port, "server": server_port},
                "gossip_profile": "local",
                **({"server": True, "bootstrap_expect": 1} if server else {}), **(extra or {}),
            }
            (config_dir / "agent.json").write_text(json.dumps(config))
        else:
            ip, config_dir, data_dir = reuse.ip, reuse.config_dir, reuse.data_dir
            http_port, serf_port, dns_port = reuse.http_port, reuse.serf_port, reuse.dns_port
            server_port = reuse.server_port
        proc = Proc(f"agent:{name}", [sys.executable, "-m", "agent", "-config-dir", str(config_dir)],
                    self.tmp_path / f"{name}-{len(self.agents)}.log", env=ENV)
        agent = ConsulAgent(name, ip, http_port, serf_port, config_dir, data_dir, proc, dns_port, server_port)
        self.agents.append(agent)
        if not wait_up:
            return agent

        def up() -> bool:
            if not proc.alive():
                raise AssertionError(f"{name} exited {proc.popen.returncode}:\n{proc.log_tail()}")
            headers = {"X-Consul-Token": token} if token else None
            reply = requests.get(f"http://{agent.http_addr}/v1/agent/self", headers=headers, timeout=1)
            # with ACLs on and no token that works yet (the initial management token needs a leader), a 403
            # from the agent's own endpoint is an answer all the same: the HTTP API is up
            return reply.ok or (reply.status_code == 403 and reply.text.startswith(("Permission denied", "ACL not")))

        wait_for(up, timeout=20, what=f"agent {name} HTTP", diagnostics=self.diagnostics)
        return agent

    def close(self) -> None:
        for a in self.agents:
            a.proc.close()


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class CheckedServer:
    """The small local HTTP server the `web` check probes; `stop()` makes the check fail."""

    def __init__(self) -> None:
        self.ip = next_loopback_ip()
        self.port = free_port(self.ip)
        self.httpd = ThreadingHTTPServer((self.ip, self.port), _Health)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.ip}:{self.port}/health"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def leader_of(agent: ConsulAgent) -> str:
    """The leader ``agent`` reports on /v1/status/leader (``""`` for none)."""
    return str(requests.get(f"http://{agent.http_addr}/v1/status/leader", timeout=2).json())


def agreed_leader(agents: Sequence[ConsulAgent], not_: str = "") -> str | None:
    """The leader every agent reports, if they all report the same non-empty one (other than ``not_``)."""
    seen = {leader_of(a) for a in agents}
    if len(seen) == 1:
        (leader,) = seen
        if leader and leader != not_:
            return leader
    return None


def start_servers(cluster: Cluster, n: int, extra: dict | None = None) -> list[ConsulAgent]:
    """``n`` servers expecting ``n``, at raft_multiplier 1 (a 1 s election timeout), joined to the first;
    ``extra`` is more configuration for each."""
    servers: list[ConsulAgent] = []
    for i in range(n):
        join = {"retry_join": [servers[0].serf_addr], "retry_interval": "1s"} if servers else {}
        servers.append(cluster.start(f"s{i + 1}", extra={
            "server": True, "bootstrap_expect": n, "performance": {"raft_multiplier": 1}, **join, **(extra or {})}))
    return servers
