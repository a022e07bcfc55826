"""Real `python -m agent` servers running Raft on loopback (raft_multiplier 1: a 1 s election timeout).

Three servers with bootstrap_expect 3 and a client: they elect one leader, every agent (the client through a
server's Status.Leader RPC) reports it; kill -9 of the leader gives a new one within twice the election timeout;
a leader stopped with SIGSTOP past the election timeout steps down when continued and never commits a write in
its old term; restarting every server keeps the log and elects a leader.  Writes are KV sets sent with
``Store.Apply`` on the server port (a follower forwards them to the leader); what each server holds is read with
a ``?stale`` ``Store.Query``, answered from that server's own state store (tests/store_rpc.py).  Every wait is a
condition with a deadline; processes are stopped by PID (Cluster.close).
"""

from __future__ import annotations

import itertools
import json
import signal
import threading
import time
from collections.abc import Sequence
from typing import Any

import requests
from consul_agents import Cluster, ConsulAgent, agreed_leader, leader_of, start_servers
from procs import wait_for
from store_rpc import put, put_ok, stale_entry, stale_get, stale_keys

from agent.server import rpc

ELECTION_TIMEOUT = 1.0  # Consul's at raft_multiplier 1


def server_addr(agent: ConsulAgent) -> str:
    return agent.server_rpc_addr


def raft_stats(agent: ConsulAgent) -> dict[str, str]:
    return dict(requests.get(f"http://{agent.http_addr}/v1/agent/self", timeout=2).json()["Stats"]["raft"])


def wait_value(agent: ConsulAgent, key: str, value: bytes, timeout: float = 10.0) -> None:
    """Until ``agent``'s own state holds ``key`` = ``value`` (it applied the write)."""
    wait_for(lambda: stale_get(server_addr(agent), key) == value, timeout=timeout,
             what=f"{key}={value!r} applied on {agent.name}")


def by_addr(servers: Sequence[ConsulAgent], addr: str) -> ConsulAgent:
    return next(s for s in servers if server_addr(s) == addr)


def test_three_servers_and_a_client_agree_on_one_leader_and_fail_over(cluster: Cluster) -> None:
    servers = start_servers(cluster, 3)
    client = cluster.start("c1", extra={"retry_join": [servers[0].serf_addr], "retry_interval": "1s",
                                        "performance": {"raft_multiplier": 1}})
    everyone = [*servers, client]
    leader = wait_for(lambda: agreed_leader(everyone), timeout=30, what="one leader on every agent",
                      diagnostics=cluster.diagnostics)
    assert leader in {server_addr(s) for s in servers}
    peers = sorted(server_addr(s) for s in servers)
    for a in everyone:
        assert sorted(requests.get(f"http://{a.http_addr}/v1/status/peers", timeout=2).json()) == peers
    old = by_addr(servers, leader)
    assert raft_stats(old)["state"] == "Leader"
    assert {raft_stats(s)["state"] for s in servers if s is not old} == {"Follower"}
    put_ok(server_addr(old), "before-the-kill", b"acknowledged")

    old.proc.kill()
    killed_at = time.monotonic()
    survivors = [s for s in servers if s is not old]
    new = wait_for(lambda: agreed_leader(survivors, not_=leader), timeout=10, interval=0.02,
                   what="a new leader on both survivors", diagnostics=cluster.diagnostics)
    failover = time.monotonic() - killed_at
    print(f"failover after kill -9: {failover * 1000:.0f} ms")
    # One round takes at most 2T from the last heartbeat; a split vote, or a CPU-starved survivor on a busy CI
    # machine, costs one more round (seen: 2.71 s in a full run, 3.12 s at load 55).  The speed itself is
    # bench/raft_vs_etcd.py's figure, side by side with etcd; this bounds it as the five-server test does.
    assert failover <= 4 * ELECTION_TIMEOUT, f"new leader after {failover:.2f}s"
    wait_for(lambda: leader_of(client) == new, timeout=5, what="the client reports the new leader")
    # the acknowledged write survived the failover on every survivor, and the new leader takes writes (also
    # through the follower, which forwards them)
    for s in survivors:
        wait_value(s, "before-the-kill", b"acknowledged")
    put_ok(new, "after-the-kill", b"to the new leader")
    follower = next(s for s in survivors if server_addr(s) != new)
    put_ok(server_addr(follower), "through-a-follower", b"forwarded")
    for s in survivors:
        wait_value(s, "after-the-kill", b"to the new leader")
        wait_value(s, "through-a-follower", b"forwarded")

    # the operator's view, from the client (forwarded to the leader), and removing the dead server
    out = client.cli("operator", "raft", "list-peers")
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines()]
    assert rows[0] == ["Node", "ID", "Address", "State", "Voter", "RaftProtocol"]
    assert sorted((r[0], r[2], r[3]) for r in rows[1:]) == sorted(
        (s.name, server_addr(s), "leader" if server_addr(s) == new else "follower") for s in servers)
    out = client.cli("operator", "raft", "remove-peer", f"-address={leader}")
    assert (out.returncode, out.stdout.strip()) == (0, f'Removed peer with address "{leader}"'), out.stderr
    conf = requests.get(f"http://{survivors[0].http_addr}/v1/operator/raft/configuration", timeout=5).json()
    assert sorted(x["Address"] for x in conf["Servers"]) == sorted(server_addr(s) for s in survivors)
    assert [x["Leader"] for x in conf["Servers"] if x["Address"] == new] == [True]
    r = requests.delete(f"http://{client.http_addr}/v1/operator/raft/peer", timeout=5)
    assert r.status_code == 400 and "Must specify either ?id" in r.text


def test_operator_calls_right_after_the_leader_dies_are_held_for_the_next_leader(cluster: Cluster) -> None:
    """kill -9 of the leader, then at once the client's `operator raft list-peers` and a surviving server's
    /v1/operator/raft/configuration: while the agents still name the dead leader (the connection is refused) or
    an election is under way, both are held (Consul's 7 s RPC hold) and then answered by the new leader.  Then the
    new leader dies too (no quorum): with ``-stale``/``?stale`` the last server and the client still answer."""
    servers = start_servers(cluster, 3)
    client = cluster.start("c1", extra={"retry_join": [servers[0].serf_addr], "retry_interval": "1s",
                                        "performance": {"raft_multiplier": 1}})
    leader = wait_for(lambda: agreed_leader([*servers, client]), timeout=30, what="one leader on every agent",
                      diagnostics=cluster.diagnostics)
    old = by_addr(servers, leader)
    survivors = [s for s in servers if s is not old]
    follower_view: list[requests.Response] = []
    asking = threading.Thread(target=lambda: follower_view.append(requests.get(
        f"http://{survivors[0].http_addr}/v1/operator/raft/configuration", timeout=20)))

    old.proc.kill()
    asking.start()
    out = client.cli("operator", "raft", "list-peers")
    asking.join(25)
    assert out.returncode == 0, out.stderr
    alive = {server_addr(s) for s in survivors}
    rows = [line.split() for line in out.stdout.splitlines()][1:]
    new = [r[2] for r in rows if r[3] == "leader"]
    assert len(new) == 1 and new[0] in alive, out.stdout
    assert len(follower_view) == 1 and follower_view[0].status_code == 200, follower_view and follower_view[0].text
    new = [x["Address"] for x in follower_view[0].json()["Servers"] if x["Leader"]]
    assert len(new) == 1 and new[0] in alive

    # the new leader dies too: one server of three, no quorum, no leader can be elected.  Without -stale these
    # calls would be held and then fail "No cluster leader"; with it any server answers from its own log (the
    # client asks its servers in turn, past the dead ones)
    by_addr(survivors, new[0]).proc.kill()
    last = next(s for s in survivors if server_addr(s) != new[0])
    conf = requests.get(f"http://{last.http_addr}/v1/operator/raft/configuration?stale", timeout=20)
    assert conf.status_code == 200, conf.text
    assert server_addr(last) in {x["Address"] for x in conf.json()["Servers"]}
    out = client.cli("operator", "raft", "list-peers", "-stale")
    assert out.returncode == 0, out.stderr
    assert server_addr(last) in out.stdout, out.stdout


def test_a_server_that_leaves_is_removed_from_the_configuration(cluster: Cluster) -> None:
    servers = start_servers(cluster, 3)
    leader = wait_for(lambda: agreed_leader(servers), timeout=30, what="a leader", diagnostics=cluster.diagnostics)
    follower = next(s for s in servers if server_addr(s) != leader)
    out = follower.cli("leave")
    assert out.returncode == 0, out.stderr
    assert follower.proc.wait(20) == 0
    remaining = [s for s in servers if s is not follower]

    def configuration() -> list[str] | None:
        conf = requests.get(f"http://{remaining[0].http_addr}/v1/operator/raft/configuration", timeout=5).json()
        addrs = sorted(x["Address"] for x in conf["Servers"])
        return addrs if addrs == sorted(server_addr(s) for s in remaining) else None

    wait_for(configuration, timeout=15, what="the left server removed", diagnostics=cluster.diagnostics)
    assert sorted(requests.get(f"http://{remaining[0].http_addr}/v1/status/peers", timeout=2).json()) == sorted(
        server_addr(s) for s in remaining)

    # the leader leaves too: it hands leadership over, then has the new leader remove it: the last server leads alone
    leader_agent = by_addr(remaining, wait_for(lambda: agreed_leader(remaining), timeout=15, what="a leader"))
    last = next(s for s in remaining if s is not leader_agent)
    out = leader_agent.cli("leave")
    assert out.returncode == 0, out.stderr
    assert leader_agent.proc.wait(20) == 0
    wait_for(lambda: leader_of(last) == server_addr(last) and requests.get(
        f"http://{last.http_addr}/v1/status/peers", timeout=2).json() == [server_addr(last)],
        timeout=10, what="the last server leading alone", diagnostics=cluster.diagnostics)


def configuration(agent: ConsulAgent) -> list[str]:
    conf = requests.get(f"http://{agent.http_addr}/v1/operator/raft/configuration", timeout=5).json()
    return sorted(x["Address"] for x in conf["Servers"])


def test_the_last_follower_leaving_is_removed_so_the_leader_keeps_its_quorum(cluster: Cluster) -> None:
    """Two voters left: the leader's own clean-up never removes a server below quorum (alive voters after it: 1 of
    2), so the leaving follower asks the leader to remove it; without that the leader lost quorum when it exited."""
    servers = start_servers(cluster, 3)
    leader = wait_for(lambda: agreed_leader(servers), timeout=30, what="a leader", diagnostics=cluster.diagnostics)
    leader_agent = by_addr(servers, leader)
    for follower in [s for s in servers if s is not leader_agent]:
        out = follower.cli("leave")
        assert out.returncode == 0, out.stderr
        assert follower.proc.wait(20) == 0
    wait_for(lambda: configuration(leader_agent) == [leader], timeout=15, what="the leader alone in the configuration",
             diagnostics=cluster.diagnostics)
    put_ok(leader, "alone", b"still a quorum")  # a quorum of one: it commits
    assert leader_of(leader_agent) == leader and raft_stats(leader_agent)["state"] == "Leader"


class Writer:
    """Writes KV keys through ``target`` (a server that stays; it forwards to the leader) as fast as they are
    acknowledged, from a thread, and keeps the time of every acknowledgement."""

    def __init__(self, target: ConsulAgent, prefix: str) -> None:
        self.target, self.prefix = server_addr(target), prefix
        self.acks: list[tuple[float, str]] = []
        self.failures = 0  # writes answered with an error (tried again)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        n = 0
        while not self.stop.is_set():
            key = f"{self.prefix}/{n}"
            try:
                answer = put(self.target, key, b"%d" % n, timeout=5)
            except rpc.RPCError:
                answer = None
            if answer == {"ok": True}:
                self.acks.append((time.monotonic(), key))
                n += 1
            else:
                self.failures += 1
                time.sleep(0.005)

    def outage_after(self, moment: float, settle: float) -> float:
        """The longest time without an acknowledgement from ``moment`` on, once ``settle`` seconds of writes after
        it were acknowledged; stops the writer."""
        wait_for(lambda: self.acks and self.acks[-1][0] > moment + settle, timeout=30,
                 what=f"writes acknowledged again {settle}s after the event")
        self.stop.set()
        self.thread.join(10)
        times = [moment, *(t for t, _ in self.acks if t > moment)]
        return max(b - a for a, b in itertools.pairwise(times))


def test_write_outage_of_a_graceful_leader_leave_against_kill_9(cluster: Cluster) -> None:
    """A leader that leaves hands leadership over first: writes pause for about a round trip, where kill -9 of the
    leader costs an election timeout or more.  Every acknowledged write is then on every remaining server."""
    servers = start_servers(cluster, 3)
    leader = wait_for(lambda: agreed_leader(servers), timeout=30, what="a leader", diagnostics=cluster.diagnostics)
    old = by_addr(servers, leader)
    writer = Writer(next(s for s in servers if s is not old), "kill")
    wait_for(lambda: len(writer.acks) >= 20, timeout=15, what="writes flowing")
    old.proc.kill()
    killed = writer.outage_after(time.monotonic(), settle=1.0)
    survivors = [s for s in servers if s is not old]
    new = wait_for(lambda: agreed_leader(survivors), timeout=10, what="the new leader")
    restarted = cluster.start(old.name, reuse=old)
    servers = [*survivors, restarted]
    wait_for(lambda: agreed_leader(servers) == new, timeout=30, what="the killed server back, following",
             diagnostics=cluster.diagnostics)
    wait_for(lambda: stale_get(server_addr(restarted), writer.acks[-1][1]) is not None, timeout=15,
             what="the restarted server caught up")

    leaving = by_addr(servers, new)
    stays = [s for s in servers if s is not leaving]
    writer2 = Writer(stays[0], "leave")
    wait_for(lambda: len(writer2.acks) >= 20, timeout=15, what="writes flowing")
    started = time.monotonic()
    out = leaving.cli("leave")
    assert out.returncode == 0, out.stderr
    assert leaving.proc.wait(20) == 0
    graceful = writer2.outage_after(started, settle=1.0)
    print(f"\nwrite outage (3 servers, raft_multiplier 1): kill -9 of the leader {killed * 1000:.0f} ms, "
          f"graceful leave of the leader {graceful * 1000:.0f} ms; writes answered with an error: "
          f"{writer.failures} and {writer2.failures} (a write meeting the transfer is held for the new leader)")
    assert "handed leadership to" in leaving.proc.log_tail(400)
    assert graceful < ELECTION_TIMEOUT / 2 < killed, (graceful, killed)
    wait_for(lambda: configuration(stays[0]) == sorted(server_addr(s) for s in stays), timeout=10,
             what="the leader that left removed from the configuration", diagnostics=cluster.diagnostics)
    for s in stays:  # every acknowledged write, of both phases, on every remaining server
        for _, key in (writer.acks[-1], writer2.acks[-1]):
            wait_value(s, key, key.split("/")[1].encode())
        for _, key in writer.acks[:: max(1, len(writer.acks) // 20)] + writer2.acks[:: max(1, len(writer2.acks) // 20)]:
            assert stale_get(server_addr(s), key) == key.split("/")[1].encode(), (s.name, key)


def test_a_stopped_leader_steps_down_when_continued_and_never_commits_in_its_old_term(cluster: Cluster) -> None:
    servers = start_servers(cluster, 3)
    leader = wait_for(lambda: agreed_leader(servers), timeout=30, what="a leader", diagnostics=cluster.diagnostics)
    old = by_addr(servers, leader)
    old_term = int(raft_stats(old)["term"])
    put_ok(leader, "k", b"v0")
    seen = stale_entry(leader, "k")
    assert seen is not None
    before_stop = int(seen["ModifyIndex"])
    old.proc.send_signal(signal.SIGSTOP)
    try:
        # A check-and-set on the index k had before the stop, sent to the stopped leader: it waits in the socket
        # buffer until the process runs again.  Then the old leader either still believes it leads (the entry of
        # its old term must never commit) or has stepped down and forwards it to the new leader, where k has
        # moved on, so the check fails: either way k never becomes "stale".
        outcome: list[Any] = []

        def write() -> None:
            try:
                outcome.append(put(leader, "k", b"stale", cas=before_stop, timeout=30))
            except rpc.RPCError as err:
                outcome.append(err)

        writer = threading.Thread(target=write)
        writer.start()
        others = [s for s in servers if s is not old]
        new = wait_for(lambda: agreed_leader(others, not_=leader), timeout=15, what="a new leader while stopped",
                       diagnostics=cluster.diagnostics)
        assert int(raft_stats(by_addr(others, new))["term"]) > old_term
        put_ok(new, "k", b"new")
    finally:
        old.proc.send_signal(signal.SIGCONT)
    wait_for(lambda: leader_of(old) == new and raft_stats(old)["state"] == "Follower", timeout=10,
             what="the old leader following the new one", diagnostics=cluster.diagnostics)
    writer.join(40)
    assert len(outcome) == 1, outcome
    assert outcome[0] != {"ok": True}, "the write sent to the stopped leader was acknowledged"
    # once a later write is applied everywhere, every server holds the new leader's k, none the stale one
    put_ok(new, "after", b"later")
    for s in servers:
        wait_value(s, "after", b"later")
        assert stale_get(server_addr(s), "k") == b"new", s.name


def test_restarting_every_server_keeps_the_log_and_elects_a_leader(cluster: Cluster) -> None:
    """With ``raft_snapshot_threshold`` 4 every server has snapshotted and compacted before the restart, so what
    comes back is its snapshot with the log after it."""
    servers = start_servers(cluster, 3, extra={"raft_snapshot_threshold": 4})
    leader = wait_for(lambda: agreed_leader(servers), timeout=30, what="a leader", diagnostics=cluster.diagnostics)
    for i in range(5):
        put_ok(leader, f"w/{i}", b"write %d" % i)
    written = [f"w/{i}" for i in range(5)]
    indexes: list[int] = []
    for s in servers:
        wait_value(s, "w/4", b"write 4")
        wait_for(lambda s=s: int(raft_stats(s)["last_snapshot_index"]) > 0, timeout=10,
                 what=f"a snapshot on {s.name}")
        entries = [stale_entry(server_addr(s), key) for key in written]
        indexes = [int(e["ModifyIndex"]) for e in entries if e is not None]
        assert len(indexes) == 5 and indexes == sorted(set(indexes)), (s.name, entries)
        assert s.proc.stop(signal.SIGTERM) is not None
    restarted = [cluster.start(s.name, reuse=s) for s in servers]
    wait_for(lambda: agreed_leader(restarted), timeout=30, what="a leader after the restart",
             diagnostics=cluster.diagnostics)
    for s in restarted:
        assert int(raft_stats(s)["last_log_index"]) >= indexes[-1]
        # the log applied again into a fresh state store: the same keys, values, and indexes (the same order)
        wait_for(lambda s=s: stale_keys(server_addr(s), "w/") == written, timeout=10, what="the log applied again")
        for i, key in enumerate(written):
            entry = stale_entry(server_addr(s), key)
            assert entry is not None and int(entry["ModifyIndex"]) == indexes[i]
            assert stale_get(server_addr(s), key) == b"write %d" % i


def test_servers_of_two_clusters_refuse_each_other_and_keep_their_own_configuration(cluster: Cluster) -> None:
    fast = {"performance": {"raft_multiplier": 1}}
    one = cluster.start("one", server=True, extra=fast)
    two = cluster.start("two", server=True, extra={**fast, "start_join": [one.serf_addr]})
    for s in (one, two):
        wait_for(lambda s=s: leader_of(s) == server_addr(s), timeout=15, what=f"{s.name} leading its own cluster")
    wait_for(lambda: any("is in cluster" in a.proc.log_tail(200) for a in (one, two)), timeout=15,
             what="the other cluster's hello refused, and said why", diagnostics=cluster.diagnostics)
    time.sleep(1.5)  # several reconciliation rounds (0.5 s): neither leader may add the other's server
    for s in (one, two):
        conf = requests.get(f"http://{s.http_addr}/v1/operator/raft/configuration", timeout=5).json()
        assert [x["Address"] for x in conf["Servers"]] == [server_addr(s)]
        assert leader_of(s) == server_addr(s)


def test_a_server_started_on_another_clusters_data_dir_exits_1_saying_why(cluster: Cluster) -> None:
    """A server that ran its own single-server cluster is restarted to join a three-server cluster: its data dir
    names another cluster, so it refuses to start (exit 1) instead of leading a second Raft cluster in the pool;
    the cluster it tried to join keeps its leader and configuration."""
    servers = start_servers(cluster, 3)
    leader = wait_for(lambda: agreed_leader(servers), timeout=30, what="a leader", diagnostics=cluster.diagnostics)

    def announced() -> set[str] | None:  # every server, the bootstrapping ones and those that joined, has the id
        tags = {m["Name"]: m["Tags"].get("raft_cluster", "") for m in requests.get(
            f"http://{servers[0].http_addr}/v1/agent/members", timeout=2).json()}
        ids = {tags.get(s.name, "") for s in servers}
        return ids if len(ids) == 1 and "" not in ids else None

    wait_for(announced, timeout=10, what="one cluster id announced by all three servers",
             diagnostics=cluster.diagnostics)
    stray = cluster.start("stray", server=True, extra={"performance": {"raft_multiplier": 1}})
    wait_for(lambda: leader_of(stray) == server_addr(stray), timeout=15, what="stray leading its own cluster")
    put_ok(server_addr(stray), "stray-key", b"its own cluster's")
    assert stray.proc.stop(signal.SIGTERM) is not None
    config_file = stray.config_dir / "agent.json"
    config = json.loads(config_file.read_text())
    config.update({"retry_join": [servers[0].serf_addr], "retry_interval": "1s"})
    config_file.write_text(json.dumps(config))
    again = cluster.start("stray", reuse=stray, wait_up=False)
    assert again.proc.wait(60) == 1, again.proc.log_tail()
    out = again.proc.log_tail(60)
    ours = {server_addr(s) for s in servers}
    assert "==> Error starting agent: raft data in" in out and "belongs to cluster" in out, out
    assert "this data dir is from another cluster" in out and all(s.name in out for s in servers), out
    assert agreed_leader(servers) == leader
    assert set(configuration(servers[0])) == ours


def test_five_servers_fail_over_after_kill_9_of_the_leader(cluster: Cluster) -> None:
    servers = start_servers(cluster, 5)
    leader = wait_for(lambda: agreed_leader(servers), timeout=40, what="one leader on five servers",
                      diagnostics=cluster.diagnostics)
    assert sorted(requests.get(f"http://{servers[0].http_addr}/v1/status/peers", timeout=2).json()) == sorted(
        server_addr(s) for s in servers)
    old = by_addr(servers, leader)
    old.proc.kill()
    killed_at = time.monotonic()
    survivors = [s for s in servers if s is not old]
    wait_for(lambda: agreed_leader(survivors, not_=leader), timeout=10, interval=0.02,
             what="a new leader on the four survivors", diagnostics=cluster.diagnostics)
    failover = time.monotonic() - killed_at
    print(f"five servers, failover after kill -9: {failover * 1000:.0f} ms")
    # One election round takes at most 2T (timeouts are drawn from [T, 2T)); a split vote costs one more round, as
    # it does etcd (bench/raft_vs_etcd.py has seen etcd's worst at 2.0 s).  Typical here: 0.95-1.5 s.
    assert failover <= 4 * ELECTION_TIMEOUT, f"new leader after {failover:.2f}s"
