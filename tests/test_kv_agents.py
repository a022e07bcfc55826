"""KV, sessions, locks and transactions on real `python -m agent` processes, driven by py-consul (the real client).

A ``-dev`` agent: put/get/cas/lock/txn and a blocking get woken by a put.  A cluster of three servers and a
client: a write through the client (forwarded to the leader), then a ``?stale`` read answered by each server
from its own replica.  Processes are stopped by PID; every wait is a condition with a deadline.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import consul
import pytest
import requests
from conftest import next_loopback_ip
from consul_agents import ENV, Cluster
from procs import Proc, free_port, wait_for


@pytest.fixture
def dev_agent(tmp_path: Path) -> Any:
    ip = next_loopback_ip()
    http_port = free_port(ip)
    argv = [sys.executable, "-m", "agent", "agent", "-dev", "-bind", ip, "-client", ip,
            f"-http-port={http_port}", "-dns-port=-1", f"-serf-lan-port={free_port(ip)}",
            f"-server-port={free_port(ip)}"]
    proc = Proc("agent:dev", argv, tmp_path / "dev.log", env=ENV)
    try:
        def leader() -> bool:
            if not proc.alive():
                raise AssertionError(f"the -dev agent exited:\n{proc.log_tail()}")
            return bool(requests.get(f"http://{ip}:{http_port}/v1/status/leader", timeout=1).json())

        wait_for(leader, timeout=30, what="the -dev agent's leader", diagnostics=proc.log_tail)
        yield ip, http_port
    finally:
        proc.close()


def test_a_dev_agent_serves_kv_cas_locks_and_transactions_to_py_consul(dev_agent: tuple[str, int]) -> None:
    ip, port = dev_agent
    c = consul.Consul(host=ip, port=port)
    assert c.kv.put("app/config", "v1") is True
    index, got = c.kv.get("app/config")
    assert got is not None and got["Value"] == b"v1" and int(index) == got["ModifyIndex"]
    # CAS: 0 creates only; the current ModifyIndex wins, a stale one loses
    assert c.kv.put("app/config", "nope", cas=0) is False
    assert c.kv.put("app/config", "v2", cas=got["ModifyIndex"]) is True
    assert c.kv.put("app/config", "v3", cas=got["ModifyIndex"]) is False
    assert c.kv.get("app/config")[1]["Value"] == b"v2"

    # locks with sessions, as a leader election does it
    s1, s2 = c.session.create(name="one", ttl=20), c.session.create(name="two")
    assert c.kv.put("app/leader", "one", acquire=s1) is True
    assert c.kv.put("app/leader", "two", acquire=s2) is False
    assert c.kv.get("app/leader")[1]["Session"] == s1
    with pytest.raises(consul.ConsulException, match='invalid session "bogus"'):
        c.kv.put("app/leader", "x", acquire="bogus")
    assert c.session.renew(s1)["ID"] == s1
    with pytest.raises(consul.NotFound):
        c.session.renew("00000000-0000-0000-0000-000000000000")
    assert c.kv.put("app/leader", "", release=s1) is True
    assert "Session" not in c.kv.get("app/leader")[1]
    assert {s["Name"] for s in c.session.list()[1]} == {"one", "two"}

    # a transaction: all or nothing
    ok = c.txn.put([{"KV": {"Verb": "set", "Key": "app/a", "Value": "YQ=="}},
                    {"KV": {"Verb": "get", "Key": "app/config"}}])
    assert [r["KV"]["Key"] for r in ok["Results"]] == ["app/a", "app/config"]
    with pytest.raises(consul.ConsulException, match="409"):
        c.txn.put([{"KV": {"Verb": "set", "Key": "app/b", "Value": "Yg=="}},
                   {"KV": {"Verb": "check-not-exists", "Key": "app/a"}}])
    assert c.kv.get("app/b")[1] is None
    assert c.kv.get("app/", keys=True, separator="/")[1] == ["app/a", "app/config", "app/leader"]

    # a blocking get is woken by a put to its key
    index = c.kv.get("app/config")[0]
    woke: list[Any] = []
    watcher = threading.Thread(target=lambda: woke.append(c.kv.get("app/config", index=index, wait="20s")))
    started = time.monotonic()
    watcher.start()
    time.sleep(0.3)
    assert c.kv.put("app/config", "v4") is True
    watcher.join(15)
    assert woke and woke[0][1]["Value"] == b"v4" and int(woke[0][0]) > int(index)
    assert time.monotonic() - started < 10

    assert c.kv.delete("app", recurse=True) is True
    assert c.kv.get("app", recurse=True)[1] is None


def test_three_servers_and_a_client_write_through_the_client_and_read_stale_on_each_server(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    try:
        servers = []
        for i in range(3):
            join = {"retry_join": [servers[0].serf_addr], "retry_interval": "1s"} if servers else {}
            servers.append(cluster.start(f"s{i + 1}", extra={
                "server": True, "bootstrap_expect": 3, "performance": {"raft_multiplier": 1}, **join}))
        client = cluster.start("c1", extra={"retry_join": [servers[0].serf_addr], "retry_interval": "1s",
                                            "performance": {"raft_multiplier": 1}})

        def written() -> bool:
            try:
                return client.client().kv.put("shared/key", "through the client") is True
            except consul.ConsulException:
                return False  # no leader yet

        wait_for(written, timeout=40, what="a KV write through the client", diagnostics=cluster.diagnostics)
        # a default read from the client is forwarded to the leader: it sees the write at once
        index, got = client.client().kv.get("shared/key")
        assert got["Value"] == b"through the client"
        for server in servers:
            url = f"http://{server.http_addr}/v1/kv/shared/key?stale"

            def replicated(url: str = url) -> requests.Response | None:
                r = requests.get(url, timeout=2)
                return r if r.status_code == 200 else None

            r = wait_for(replicated, timeout=10, what=f"{server.name}'s stale read of the write",
                         diagnostics=cluster.diagnostics)
            assert r.json()[0]["Value"] == "dGhyb3VnaCB0aGUgY2xpZW50"
            assert r.headers["X-Consul-Index"] == index
            assert r.headers["X-Consul-Knownleader"] == "true"
            assert r.headers["X-Consul-Effective-Consistency"] == "stale"
            assert int(r.headers["X-Consul-Lastcontact"]) >= 0
        # a session made through the client is on the client's node, and its lock is seen by every server
        session = client.client().session.create(name="client lock")
        assert client.client().kv.put("shared/lock", "c1", acquire=session) is True
        assert client.client().session.info(session)[1]["Node"] == "c1"
        for server in servers:
            wait_for(lambda s=server: (server_kv(s, "shared/lock") or {}).get("Session") == session, timeout=10,
                     what=f"{server.name} sees the client's lock")
    finally:
        cluster.close()


def server_kv(server: Any, key: str) -> dict[str, Any] | None:
    r = requests.get(f"http://{server.http_addr}/v1/kv/{key}?stale", timeout=2)
    return r.json()[0] if r.status_code == 200 else None
