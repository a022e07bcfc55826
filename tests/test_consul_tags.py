"""agent.consul: Consul's LAN tag set (consul-compat §7) and the leader stand-in, row by row."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from agent.cli_members import member_status_word
from agent.consul import build_tag, is_server, lan_tags, leader_of, rpc_address
from agent.members import STATUS_ALIVE, STATUS_FAILED, STATUS_LEAVING, STATUS_LEFT, Member, MemberTable
from agent.version import REVISION

NODE_ID = "40E4A748-2192-161A-0510-9BF59FE950B5"


def config(
    server: bool = True,
    bootstrap: bool = False,
    bootstrap_expect: int = 0,
    datacenter: str = "dc1",
    server_port: int = 8300,
    **ports: int,
) -> SimpleNamespace:
    """A stand-in for agent.config.AgentConfig: lan_tags accepts any object with these attributes."""
    all_ports = {"server": server_port, "serf_wan": 8302, "serf_lan": 8301, "http": 8500, "dns": 8600} | ports
    return SimpleNamespace(
        server=server,
        bootstrap=bootstrap,
        bootstrap_expect=bootstrap_expect,
        datacenter=datacenter,
        ports=SimpleNamespace(**all_ports),
    )


# ---------------------------------------------------------------------- tags


def test_build_tag() -> None:
    assert build_tag("1.20.1", "2c7bc1d0aaaa") == "1.20.1:2c7bc1d0"
    assert len(REVISION) == 8 and int(REVISION, 16) >= 0


def test_server_tags_bootstrap_expect_3() -> None:
    tags = lan_tags(config(bootstrap_expect=3), NODE_ID, "1.20.1", revision="2c7bc1d0")
    assert tags == {
        "role": "consul",
        "dc": "dc1",
        "segment": "",
        "id": NODE_ID.lower(),
        "vsn": "2",
        "vsn_min": "2",
        "vsn_max": "3",
        "raft_vsn": "3",
        "build": "1.20.1:2c7bc1d0",
        "port": "8300",
        "wan_join_port": "8302",
        "expect": "3",
        "acls": "0",
        "ft_fs": "1",
        "ft_si": "1",
    }


@pytest.mark.parametrize(
    ("bootstrap", "expect"),
    [(False, 1), (True, 0)],
    ids=["bootstrap_expect=1", "bootstrap"],
)
def test_server_tags_bootstrap_mode(bootstrap: bool, expect: int) -> None:
    tags = lan_tags(config(bootstrap=bootstrap, bootstrap_expect=expect), NODE_ID, "1.20.1", revision="2c7bc1d0")
    assert tags["bootstrap"] == "1"
    assert "expect" not in tags
    assert set(tags) == {
        "role", "dc", "segment", "id", "vsn", "vsn_min", "vsn_max", "raft_vsn", "build",
        "port", "wan_join_port", "bootstrap", "acls", "ft_fs", "ft_si",
    }  # fmt: skip


def test_server_without_bootstrap_has_neither_tag() -> None:
    tags = lan_tags(config(), NODE_ID)
    assert "bootstrap" not in tags and "expect" not in tags


def test_server_tags_follow_ports_and_datacenter() -> None:
    tags = lan_tags(config(datacenter="east", server=True, serf_wan=-1, grpc_tls=8503, grpc=-1), NODE_ID)
    assert tags["dc"] == "east" and tags["port"] == "8300"
    assert "wan_join_port" not in tags  # WAN disabled
    assert tags["grpc_tls_port"] == "8503" and "grpc_port" not in tags
    tags = lan_tags(config(serf_wan=9302, server_port=9300), NODE_ID)
    assert (tags["wan_join_port"], tags["port"]) == ("9302", "9300")


def test_client_tags() -> None:
    tags = lan_tags(config(server=False, bootstrap_expect=3), NODE_ID, "1.20.1", revision="2c7bc1d0")
    assert tags == {
        "role": "node",
        "dc": "dc1",
        "segment": "",
        "id": NODE_ID.lower(),
        "vsn": "2",
        "vsn_min": "2",
        "vsn_max": "3",
        "build": "1.20.1:2c7bc1d0",
    }


def test_all_tag_values_are_strings() -> None:
    for cfg in (config(bootstrap_expect=5, grpc_tls=8503), config(server=False)):
        assert all(isinstance(v, str) for v in lan_tags(cfg, NODE_ID).values())


# ---------------------------------------------------------------------- reading members


def server(name: str, ip: str, node_id: str, status: int = STATUS_ALIVE, dc: str = "dc1", port: str = "8300") -> Member:
    tags = {"role": "consul", "dc": dc, "id": node_id, "port": port}
    return Member(name=name, addr=ip, port=8301, tags=tags, status=status)


def client(name: str, ip: str, node_id: str, status: int = STATUS_ALIVE) -> Member:
    return Member(name=name, addr=ip, port=8301, tags={"role": "node", "dc": "dc1", "id": node_id}, status=status)


S1 = server("s1", "10.0.0.11", "11111111-0000-0000-0000-000000000000")
S2 = server("s2", "10.0.0.12", "22222222-0000-0000-0000-000000000000")
S3 = server("s3", "10.0.0.13", "33333333-0000-0000-0000-000000000000")
C1 = client("c1", "10.0.0.21", "00000000-0000-0000-0000-000000000001")


def test_is_server() -> None:
    assert is_server(S1) and not is_server(C1)
    assert not is_server(Member(name="x", addr="10.0.0.1", port=8301, tags={}, status=STATUS_ALIVE))


def test_rpc_address() -> None:
    assert rpc_address(S1) == "10.0.0.11:8300"
    assert rpc_address(server("v6", "fd00::1", "a")) == "[fd00::1]:8300"
    assert rpc_address(server("bad", "10.0.0.1", "a", port="x")) is None
    assert rpc_address(C1) is None


def fail(m: Member) -> Member:
    return Member(name=m.name, addr=m.addr, port=m.port, tags=m.tags, status=STATUS_FAILED)


@pytest.mark.parametrize(
    ("members", "expect", "leader", "servers"),
    [
        pytest.param([], 1, "", (), id="no members"),
        pytest.param([C1], 1, "", (), id="only clients"),
        pytest.param([S2, C1], 1, "10.0.0.12:8300", ("10.0.0.12:8300",), id="single server expect 1"),
        pytest.param([S2, C1], 0, "10.0.0.12:8300", ("10.0.0.12:8300",), id="expect 0 means one"),
        pytest.param([S1, S2], 3, "", (), id="not enough servers yet"),
        pytest.param(
            [S3, S2, S1, C1],
            3,
            "10.0.0.11:8300",
            ("10.0.0.11:8300", "10.0.0.12:8300", "10.0.0.13:8300"),
            id="lowest id wins, servers in the same order",
        ),
        pytest.param([fail(S1), S2, S3], 3, "", (), id="a failed server is not counted"),
        pytest.param(
            [fail(S1), S2, S3], 2, "10.0.0.12:8300", ("10.0.0.12:8300", "10.0.0.13:8300"), id="failed lowest id skipped"
        ),
        pytest.param(
            [server("s1", "10.0.0.11", "11111111-0000-0000-0000-000000000000", STATUS_LEFT), S2],
            1,
            "10.0.0.12:8300",
            ("10.0.0.12:8300",),
            id="left server skipped",
        ),
        pytest.param(
            [server("s1", "10.0.0.11", "11111111-0000-0000-0000-000000000000", STATUS_LEAVING), S2],
            2,
            "",
            (),
            id="leaving server not counted",
        ),
        pytest.param(
            [server("z", "10.0.0.99", "99999999-0000-0000-0000-000000000000"), server("a", "10.0.0.98", "8")],
            2,
            "10.0.0.98:8300",
            ("10.0.0.98:8300", "10.0.0.99:8300"),
            id="ordered by id not by name or address",
        ),
        pytest.param(
            [S1, server("bad", "10.0.0.5", "00000000-0000-0000-0000-000000000000", port="nope")],
            1,
            "10.0.0.11:8300",
            ("10.0.0.11:8300",),
            id="unparsable port tag is not a server",
        ),
    ],
)
def test_leader_of(members: list[Member], expect: int, leader: str, servers: tuple[str, ...]) -> None:
    assert leader_of(members, expect) == (leader, servers)


def test_leader_of_mixed_datacenters() -> None:
    other = server("w1", "10.1.0.11", "00000000-0000-0000-0000-000000000000", dc="dc2")
    members = [other, S2, S3]
    assert leader_of(members, 2, dc="dc1") == ("10.0.0.12:8300", ("10.0.0.12:8300", "10.0.0.13:8300"))
    assert leader_of(members, 3, dc="dc1") == ("", ())
    assert leader_of(members, 1, dc="dc2") == ("10.1.0.11:8300", ("10.1.0.11:8300",))
    assert leader_of(members, 3)[0] == "10.1.0.11:8300"  # no dc given: every server counts
    assert leader_of(members, 2, "dc1") == leader_of(members, 2, dc="dc1")


def test_leader_of_takes_a_snapshot_mapping() -> None:
    table = MemberTable()
    for m in (S3, C1, S1, S2):
        table.apply("member-join", m)
    assert leader_of(table.current.members, 3, dc="dc1")[0] == "10.0.0.11:8300"


@pytest.mark.parametrize(
    ("status", "word"),
    [(0, "none"), (1, "alive"), (2, "leaving"), (3, "left"), (4, "failed"), (9, "unknown")],
)
def test_member_status_word(status: int, word: str) -> None:
    assert member_status_word(status) == word
