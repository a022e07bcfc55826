"""agent.server.cluster's pure rules: which gossip members are servers, the cluster id, Consul's bootstrap
warnings, and the leader's next membership change (add alive servers, remove left or reaped ones, never below
quorum)."""

from __future__ import annotations

from agent.members import STATUS_ALIVE, STATUS_FAILED, STATUS_LEFT, Member
from agent.server.pool import (
    CLUSTER_TAG,
    PoolServer,
    announced_clusters,
    bootstrap_warnings,
    cluster_id_for,
    next_change,
    pool_servers,
)
from protocol.raft.types import ConfChange, ConfChangeKind, ConfState, Server, Suffrage


def server_member(name: str, sid: str, ip: str, *, status: int = STATUS_ALIVE, dc: str = "dc1",
                  port: str = "8300", expect: str = "3") -> Member:
    return Member(name, ip, 8301, {"role": "consul", "dc": dc, "id": sid, "port": port, "expect": expect},
                  status=status)


def test_pool_servers_are_the_members_with_role_consul_of_our_dc() -> None:
    members = [
        server_member("s1", "A1", "10.0.0.1"),
        server_member("s2", "b2", "10.0.0.2", status=STATUS_FAILED, expect="5"),
        server_member("other-dc", "c3", "10.0.0.3", dc="dc2"),
        server_member("bad-port", "d4", "10.0.0.4", port="x"),
        Member("client", "10.0.0.5", 8301, {"role": "node", "dc": "dc1", "id": "e5"}),
    ]
    pool = pool_servers(members, "dc1")
    assert pool == {
        "a1": PoolServer("a1", "s1", "10.0.0.1:8300", STATUS_ALIVE, 3, False),
        "b2": PoolServer("b2", "s2", "10.0.0.2:8300", STATUS_FAILED, 5, False),
    }


def test_the_pool_shows_the_cluster_ids_the_other_alive_servers_announce() -> None:
    def with_cluster(m: Member, cluster: str) -> Member:
        return Member(m.name, m.addr, m.port, {**m.tags, CLUSTER_TAG: cluster}, status=m.status)

    members = [
        with_cluster(server_member("me", "m0", "10.0.0.9"), "ours"),
        with_cluster(server_member("s1", "a1", "10.0.0.1"), "theirs"),
        with_cluster(server_member("s2", "b2", "10.0.0.2"), "theirs"),
        with_cluster(server_member("gone", "c3", "10.0.0.3", status=STATUS_LEFT), "ours"),
        server_member("fresh", "d4", "10.0.0.4"),  # no id yet: announces none
    ]
    pool = pool_servers(members, "dc1")
    assert pool["a1"].cluster == "theirs" and pool["d4"].cluster == ""
    assert announced_clusters("m0", pool) == {"theirs": ["s1", "s2"]}  # not us, not the left one, not the fresh
    back = pool_servers([*members, with_cluster(server_member("s5", "e5", "10.0.0.5"), "ours")], "dc1")
    assert announced_clusters("m0", back) == {"ours": ["s5"], "theirs": ["s1", "s2"]}


def test_the_cluster_id_depends_on_the_bootstrap_servers_only() -> None:
    one = cluster_id_for([Server("b", "x:1"), Server("a", "y:2")])
    assert one == cluster_id_for([Server("a", "other:3"), Server("b", "other:4")])
    assert one != cluster_id_for([Server("a", "y:2"), Server("c", "x:1")])


def test_consul_bootstrap_warnings() -> None:
    assert bootstrap_warnings(False, 3) == []
    assert bootstrap_warnings(True, 0) == ["bootstrap = true: do not enable unless necessary"]
    assert "2 servers will provide no failure tolerance" in bootstrap_warnings(False, 2)[0]
    assert "even number" in bootstrap_warnings(False, 4)[0]


def pool_of(**statuses: int) -> dict[str, PoolServer]:
    return {sid: PoolServer(sid, sid, f"{sid}:8300", st, 3, False) for sid, st in statuses.items()}


def conf_of(*ids: str) -> ConfState:
    return ConfState(tuple(Server(i, f"{i}:8300") for i in ids))


def test_the_leader_adds_alive_servers_as_voters_first() -> None:
    pool = pool_of(a=STATUS_ALIVE, b=STATUS_ALIVE, c=STATUS_ALIVE, d=STATUS_LEFT)
    assert next_change("a", conf_of("a", "b", "d"), pool) == ConfChange(ConfChangeKind.ADD_VOTER, "c", "c:8300")
    nonvoter = ConfState((Server("a", "a:8300"), Server("b", "b:8300", Suffrage.NONVOTER)))
    assert next_change("a", nonvoter, pool_of(a=STATUS_ALIVE, b=STATUS_ALIVE)) == ConfChange(
        ConfChangeKind.ADD_VOTER, "b", "b:8300")
    moved = {**pool, "b": PoolServer("b", "b", "10.9.9.9:8300", STATUS_ALIVE, 3, False)}
    assert next_change("a", conf_of("a", "b", "c"), moved) == ConfChange(ConfChangeKind.ADD_VOTER, "b",
                                                                          "10.9.9.9:8300")


def test_a_server_is_added_only_once_connected() -> None:
    pool = pool_of(a=STATUS_ALIVE, b=STATUS_ALIVE, c=STATUS_ALIVE)
    assert next_change("a", conf_of("a", "b"), pool, frozenset({"b"})) is None  # c refused or not reached yet
    assert next_change("a", conf_of("a", "b"), pool, frozenset({"b", "c"})) == ConfChange(
        ConfChangeKind.ADD_VOTER, "c", "c:8300")


def test_left_and_reaped_servers_are_removed_but_failed_ones_stay() -> None:
    conf = conf_of("a", "b", "c")
    assert next_change("a", conf, pool_of(a=STATUS_ALIVE, b=STATUS_ALIVE, c=STATUS_LEFT)) == ConfChange(
        ConfChangeKind.REMOVE_SERVER, "c")
    assert next_change("a", conf, pool_of(a=STATUS_ALIVE, b=STATUS_ALIVE)) == ConfChange(
        ConfChangeKind.REMOVE_SERVER, "c")  # reaped: gone from the pool
    assert next_change("a", conf, pool_of(a=STATUS_ALIVE, b=STATUS_ALIVE, c=STATUS_FAILED)) is None
    assert next_change("a", conf, pool_of(a=STATUS_ALIVE, b=STATUS_ALIVE, c=STATUS_ALIVE)) is None


def test_removal_never_leaves_fewer_alive_voters_than_a_quorum() -> None:
    # two voters, the other left: removing it would leave 1 alive of a quorum of 2 -> kept
    assert next_change("a", conf_of("a", "b"), pool_of(a=STATUS_ALIVE, b=STATUS_LEFT)) is None
    # five voters, two failed and one left: 2 alive, quorum 3 -> nothing removed
    pool = pool_of(a=STATUS_ALIVE, b=STATUS_ALIVE, c=STATUS_FAILED, d=STATUS_FAILED, e=STATUS_LEFT)
    assert next_change("a", conf_of("a", "b", "c", "d", "e"), pool) is None
    # five voters, one left: 4 alive >= 3 -> removed
    pool = pool_of(a=STATUS_ALIVE, b=STATUS_ALIVE, c=STATUS_ALIVE, d=STATUS_ALIVE, e=STATUS_LEFT)
    assert next_change("a", conf_of("a", "b", "c", "d", "e"), pool) == ConfChange(ConfChangeKind.REMOVE_SERVER, "e")
