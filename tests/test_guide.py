"""Consul's "build a cluster" guide, walked with `python -m agent` on loopback.

Three agents on their own 127.0.x.y (one `-server -bootstrap-expect 1`, two clients), each with its own config dir
and data dir, driven by the real CLI (`python -m agent members|join`) and the real py-consul client. Every wait is
a condition with a deadline; every process is stopped by its PID.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from conftest import REPO, next_loopback_ip
from consul_agents import ENV, Cluster
from procs import free_port, wait_for


def test_the_guide_three_agents_join_leave_fail_and_rejoin(cluster: Cluster) -> None:
    server = cluster.start("hdp1", server=True)
    client2 = cluster.start("hdp2")
    client3 = cluster.start("hdp3")
    agents = [server, client2, client3]

    # Before the join each agent knows only itself.
    for agent in agents:
        assert set(agent.member_rows()) == {agent.name}

    out = client2.cli("join", server.serf_addr)
    assert (out.returncode, out.stdout.strip()) == (0, "Successfully joined cluster by contacting 1 nodes."), out.stderr

    # A blocking query on the server's catalog returns within a second of the next join.
    index = int(requests.get(f"http://{server.http_addr}/v1/catalog/nodes").headers["X-Consul-Index"])
    woke: dict[str, float] = {}

    def blocking_query() -> None:
        r = requests.get(f"http://{server.http_addr}/v1/catalog/nodes", params={"index": index, "wait": "30s"})
        woke["at"] = time.monotonic()
        woke["nodes"] = len(r.json())

    waiter = threading.Thread(target=blocking_query)
    waiter.start()
    time.sleep(0.2)  # let the query park (a longer park only makes the check stricter)
    out = client3.cli("join", server.serf_addr)
    joined_at = time.monotonic()
    assert out.returncode == 0, out.stderr
    waiter.join(timeout=30)
    assert "at" in woke, "the blocking query never returned"
    assert woke["at"] - joined_at < 1.0

    # Every agent lists all three alive, with the right Type.
    def all_alive() -> bool:
        for agent in agents:
            rows = agent.member_rows()
            if {n: (r[1], r[2]) for n, r in rows.items()} != {
                "hdp1": ("alive", "server"), "hdp2": ("alive", "client"), "hdp3": ("alive", "client")
            }:
                return False
        return True

    wait_for(all_alive, timeout=20, what="every agent to list all three alive", diagnostics=cluster.diagnostics)

    # The real py-consul client.
    c = client3.client()
    assert sorted(n["Node"] for n in c.catalog.nodes()[1]) == ["hdp1", "hdp2", "hdp3"]
    assert sorted(m["Name"] for m in c.agent.members()) == ["hdp1", "hdp2", "hdp3"]
    assert c.status.leader() == server.server_rpc_addr
    assert c.status.peers() == [server.server_rpc_addr]
    assert c.agent.join(server.serf_addr) is True

    # SIGINT on a client: a graceful leave, seen as left; SIGKILL on the other: failed.
    client2.proc.send_signal(signal.SIGINT)
    assert client2.proc.wait(20) == 0, client2.proc.log_tail()
    wait_for(lambda: server.status_of("hdp2") == "left", timeout=20, what="hdp2 left on the server",
             diagnostics=cluster.diagnostics)
    assert client3.status_of("hdp2") == "left"

    node_id = server.client().catalog.node("hdp3")[1]["Node"]["ID"]
    client3.proc.kill()
    wait_for(lambda: server.status_of("hdp3") == "failed", timeout=30, what="hdp3 failed on the server",
             diagnostics=cluster.diagnostics)

    # Restarted with the same data dir: the same node ID, and it rejoins by itself.
    again = cluster.start("hdp3", reuse=client3)
    wait_for(lambda: server.status_of("hdp3") == "alive", timeout=30, what="hdp3 back alive on the server",
             diagnostics=cluster.diagnostics)
    assert server.client().catalog.node("hdp3")[1]["Node"]["ID"] == node_id
    assert again.status_of("hdp1") == "alive"


def test_join_failure_is_one_line_and_exit_1(cluster: Cluster) -> None:
    agent = cluster.start("lonely")
    ip = next_loopback_ip()
    out = agent.cli("join", f"{ip}:{free_port(ip)}")
    assert out.returncode == 1
    assert f"Error joining address '{ip}:" in out.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-bootstrap-expect", "3", "-bind", "127.0.0.1", "-data-dir", "{tmp}"],
         "'bootstrap_expect > 0' requires 'server = true'"),
        (["-node", "n1", "-bind", "127.0.0.1"], "data_dir cannot be empty"),
        (["-dev", "-http-port", "70000"], "70000"),
        (["-nonsense"], "flag provided but not defined: -nonsense"),
    ],
)
def test_config_errors_exit_1_before_binding(argv: list[str], message: str, tmp_path: Path) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    out = subprocess.run([sys.executable, "-m", "agent", *argv], capture_output=True, text=True, timeout=30,
                         env=ENV, cwd=REPO)
    assert out.returncode == 1
    assert message in out.stderr
    assert "Consul agent running" not in out.stderr


def test_retry_join_keeps_trying_until_the_server_appears(cluster: Cluster) -> None:
    ip = next_loopback_ip()
    server_at = (ip, free_port(ip))
    client = cluster.start("late-joiner", extra={"retry_join": [f"{ip}:{server_at[1]}"], "retry_interval": "1s"})
    wait_for(lambda: "Join cluster failed, will retry" in client.proc.log_tail(200), timeout=10,
             what="a logged failed attempt", diagnostics=cluster.diagnostics)
    server = cluster.start("server", server=True, at=server_at)
    wait_for(lambda: server.status_of("late-joiner") == "alive" and client.status_of("server") == "alive",
             timeout=20, what="the retry join to succeed", diagnostics=cluster.diagnostics)


def test_start_join_to_nobody_exits_1_with_the_reason(cluster: Cluster) -> None:
    ip = next_loopback_ip()
    agent = cluster.start("hopeful", extra={"start_join": [f"{ip}:{free_port(ip)}"]}, wait_up=False)
    assert agent.proc.wait(30) == 1
    assert f"Failed to join {ip}:" in agent.proc.log_tail(50)


def test_no_leader_until_bootstrap_expect_servers_are_alive(cluster: Cluster) -> None:
    fast = {"bootstrap_expect": 2, "performance": {"raft_multiplier": 1}}
    first = cluster.start("s1", server=True, extra=fast)
    r = requests.get(f"http://{first.http_addr}/v1/status/leader")
    assert (r.status_code, r.text) == (200, '""')
    r = requests.get(f"http://{first.http_addr}/v1/catalog/nodes")
    assert (r.status_code, r.text) == (500, "No cluster leader")

    second = cluster.start("s2", server=True, extra={**fast, "start_join": [first.serf_addr]})

    def one_leader() -> str | None:  # elected by Raft: either server, the same on both
        seen = {requests.get(f"http://{a.http_addr}/v1/status/leader").json() for a in (first, second)}
        return seen.pop() if len(seen) == 1 and seen <= {first.server_rpc_addr, second.server_rpc_addr} else None

    wait_for(one_leader, timeout=20, what="both servers to name one leader", diagnostics=cluster.diagnostics)
    assert requests.get(f"http://{first.http_addr}/v1/catalog/nodes").status_code == 200


def test_sighup_and_reload_reread_the_config_dir(cluster: Cluster) -> None:
    agent = cluster.start("reloader")
    (agent.config_dir / "zz-level.json").write_text(json.dumps({"log_level": "debug"}))
    agent.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "Reloaded configuration: log_level" in agent.proc.log_tail(100), timeout=10,
             what="the reload to be logged with what changed", diagnostics=cluster.diagnostics)
    (agent.config_dir / "zz-level.json").write_text(json.dumps({"log_level": "info", "datacenter": "elsewhere"}))
    out = agent.cli("reload")
    assert (out.returncode, out.stdout.strip()) == (0, "Configuration reload triggered")
    wait_for(lambda: "take effect only after a restart: datacenter" in agent.proc.log_tail(100), timeout=10,
             what="the datacenter change to be named as needing a restart", diagnostics=cluster.diagnostics)
    assert "Reloaded configuration: log_level" in agent.proc.log_tail(100).rsplit("after a restart", 1)[1]
    config = requests.get(f"http://{agent.http_addr}/v1/agent/self").json()["Config"]
    assert config["Datacenter"] != "elsewhere", "a reload must not describe a datacenter the agent is not in"
    (agent.config_dir / "zz-level.json").write_text("{not json")
    agent.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "Reload config failed" in agent.proc.log_tail(100), timeout=10,
             what="a failed reload to be logged", diagnostics=cluster.diagnostics)
    assert agent.proc.alive()


def test_two_agents_cannot_share_a_data_dir(cluster: Cluster) -> None:
    first = cluster.start("owner")
    second = cluster.start("intruder", data_dir=first.data_dir, wait_up=False)
    assert second.proc.wait(30) == 1
    assert "in use by process" in second.proc.log_tail(20)
    assert first.proc.alive()


def test_log_json_writes_one_json_object_a_line(cluster: Cluster) -> None:
    agent = cluster.start("jsonlog", extra={"log_json": True})
    lines = [line for line in agent.proc.log_path.read_text().splitlines() if line.startswith("{")]
    entries = [json.loads(line) for line in lines]
    assert entries, agent.proc.log_tail()
    assert all({"@level", "@message", "@module", "@timestamp"} <= e.keys() for e in entries)
    assert any("member-join: jsonlog" in e["@message"] for e in entries)
