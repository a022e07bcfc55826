"""The servers of the gossip pool as the Raft layer sees them, and the membership rules read from them (pure).

Servers find each other in the gossip pool (``role=consul``, the ``port`` tag is the server port, the ``id`` tag
the Raft server id, ``raft_cluster`` the cluster id once it has one).  The leader's next change (``next_change``)
follows Consul's leader loop and autopilot's dead-server clean-up; agent/server/cluster.py applies it.  Consul's
warnings for unsafe bootstrap settings are here too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

import attrs

from agent import consul
from agent.members import STATUS_ALIVE, STATUS_LEFT, Member
from protocol.raft.types import ConfChange, ConfChangeKind, ConfState, Server, Suffrage

#: the gossip tag a server announces its Raft cluster id in, once it has one (ours; Consul has no such tag)
CLUSTER_TAG = "raft_cluster"


@attrs.frozen
class PoolServer:
    """A server as the gossip pool shows it."""

    id: str
    name: str
    address: str  # IP:port of its server port
    status: int
    expect: int
    bootstrap: bool
    cluster: str = ""  # the Raft cluster id it announces (CLUSTER_TAG), "" while it has none


def pool_servers(members: Iterable[Member], datacenter: str) -> dict[str, PoolServer]:
    """The servers of ``datacenter`` in the pool, by Raft id (the ``id`` tag), whatever their status."""
    out = {}
    for m in members:
        if not consul.is_server(m) or m.tags.get("dc") != datacenter:
            continue
        address, server_id = consul.rpc_address(m), m.tags.get("id", "").lower()
        if address is None or not server_id:
            continue
        try:
            expect = int(m.tags.get("expect", "0"))
        except ValueError:
            expect = 0
        out[server_id] = PoolServer(server_id, m.name, address, m.status, expect, m.tags.get("bootstrap") == "1",
                                    m.tags.get(CLUSTER_TAG, ""))
    return out


def announced_clusters(me: str, pool: Mapping[str, PoolServer]) -> dict[str, list[str]]:
    """The Raft cluster ids the other alive servers of the pool announce, each with their names."""
    out: dict[str, list[str]] = {}
    for p in sorted(pool.values(), key=lambda p: p.name):
        if p.id != me and p.status == STATUS_ALIVE and p.cluster:
            out.setdefault(p.cluster, []).append(p.name)
    return out


def cluster_id_for(servers: Iterable[Server]) -> str:
    """The cluster id every server bootstrapped with the same list derives alike."""
    ids = ",".join(sorted(s.id for s in servers))
    return hashlib.sha256(f"triumvir-raft:{ids}".encode()).hexdigest()[:16]


def bootstrap_warnings(bootstrap_mode: bool, expect: int) -> list[str]:
    """Consul's warnings for unsafe bootstrap settings (agent/config/builder.go)."""
    out = []
    if bootstrap_mode:
        out.append("bootstrap = true: do not enable unless necessary")
    if expect == 2:
        out.append("bootstrap_expect = 2: A cluster with 2 servers will provide no failure tolerance. See "
                   "https://www.consul.io/docs/internals/consensus.html#deployment-table")
    elif expect > 2 and expect % 2 == 0:
        out.append("bootstrap_expect is even number: A cluster with an even number of servers does not achieve "
                   "optimum fault tolerance. See https://www.consul.io/docs/internals/consensus.html#deployment-table")
    return out


def next_change(me: str, conf: ConfState, pool: Mapping[str, PoolServer],
                connected: frozenset[str] | None = None) -> ConfChange | None:
    """The leader's next membership change, or None.

    First an alive server of the pool that is not a voter at its address, added as a voter once the transport
    holds a connection with it (``connected``; None: all), so a server of another cluster, whose hello is
    refused, never becomes a voter that can never vote.  Then a server that left the pool or was reaped, removed
    only while the alive voters left after it are still a quorum of the current voters (autopilot never costs
    quorum by itself)."""
    for p in sorted(pool.values(), key=lambda p: p.id):
        if p.status != STATUS_ALIVE or (connected is not None and p.id != me and p.id not in connected):
            continue
        current = conf.get(p.id)
        if current is None or current.suffrage is not Suffrage.VOTER or current.address != p.address:
            return ConfChange(ConfChangeKind.ADD_VOTER, p.id, p.address)
    voters = conf.voters()
    alive_voters = {v for v in voters if v == me or (v in pool and pool[v].status == STATUS_ALIVE)}
    quorum = len(voters) // 2 + 1
    for server in conf.servers:
        if server.id == me:
            continue
        p = pool.get(server.id)
        if (p is None or p.status == STATUS_LEFT) and len(alive_voters - {server.id}) >= quorum:
            return ConfChange(ConfChangeKind.REMOVE_SERVER, server.id)
    return None
