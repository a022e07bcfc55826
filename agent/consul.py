"""Consul's view of a gossip member: the LAN tag set we advertise and what we read back from others' tags (pure).

Consul servers and clients find each other only through Serf tags (consul-compat §7): ``role=consul`` makes a
member a server, ``Addr`` plus the ``port`` tag is its RPC address, ``consul members`` builds its Type, Build,
Protocol and DC columns from ``role``, ``build``, ``vsn`` and ``dc``.  So the tag set must be Consul's, key for key.

The agent's leader comes from Raft (agent/server/).  ``leader_of`` is the deterministic stand-in the HTTP tests'
fake agents use (tests/http_fakes.py): no leader until ``expect`` servers are alive, then the alive server with
the lowest node ID.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from agent.hostport import join_host_port
from agent.members import STATUS_ALIVE, Member
from agent.version import CONSUL_VERSION, REVISION

__all__ = [
    "PortsLike",
    "TagConfig",
    "build_tag",
    "is_server",
    "lan_tags",
    "leader_of",
    "rpc_address",
]


# Consul's protocol numbers (consul-compat §7.1): the same for every current release.
_VSN = "2"
_VSN_MIN = "2"
_VSN_MAX = "3"
_RAFT_VSN = "3"

class PortsLike(Protocol):
    """The ports ``lan_tags`` reads (agent.config.Ports has them; -1 disables a port)."""

    @property
    def server(self) -> int: ...
    @property
    def serf_wan(self) -> int: ...


class TagConfig(Protocol):
    """What ``lan_tags`` needs of the agent config: any object with these attributes (agent.config.AgentConfig).

    Optional, read with ``getattr``: ``ports.grpc`` / ``ports.grpc_tls`` (tags only when > 0), ``acl.enabled``
    (a server's ``acls`` tag: ``1`` when ACLs are on).
    """

    @property
    def server(self) -> bool: ...
    @property
    def bootstrap(self) -> bool: ...
    @property
    def bootstrap_expect(self) -> int: ...
    @property
    def datacenter(self) -> str: ...
    @property
    def ports(self) -> PortsLike: ...


def build_tag(version: str = CONSUL_VERSION, revision: str = REVISION) -> str:
    """``<version>:<first 8 of revision>``: ``consul members`` shows the part before the colon as Build."""
    return f"{version}:{revision[:8]}"


def lan_tags(
    config: TagConfig, node_id: str, version: str = CONSUL_VERSION, *, revision: str = REVISION
) -> dict[str, str]:
    """The Serf LAN tags a Consul agent with ``config`` advertises (consul-compat §7.1 server, §7.2 client).

    Consul's config builder folds ``bootstrap_expect = 1`` into bootstrap mode, so it yields ``bootstrap=1`` and
    no ``expect``; ``expect`` appears only for values above one.  Disabled ports (< 1) leave their tag out.
    """
    tags = {
        "role": "consul" if config.server else "node",
        "dc": config.datacenter,
        "segment": "",
        "id": node_id.lower(),
        "vsn": _VSN,
        "vsn_min": _VSN_MIN,
        "vsn_max": _VSN_MAX,
        "build": build_tag(version, revision),
    }
    if not config.server:
        return tags
    ports = config.ports
    tags["raft_vsn"] = _RAFT_VSN
    tags["port"] = str(ports.server)
    if ports.serf_wan > 0:
        tags["wan_join_port"] = str(ports.serf_wan)
    if config.bootstrap or config.bootstrap_expect == 1:
        tags["bootstrap"] = "1"
    if config.bootstrap_expect > 1:
        tags["expect"] = str(config.bootstrap_expect)
    acl = getattr(config, "acl", None)
    tags["acls"] = "1" if getattr(acl, "enabled", False) else "0"  # structs.ACLModeEnabled / Disabled
    tags["ft_fs"] = "1"
    tags["ft_si"] = "1"
    for attr, tag in (("grpc", "grpc_port"), ("grpc_tls", "grpc_tls_port")):
        port = getattr(ports, attr, -1)
        if isinstance(port, int) and port > 0:
            tags[tag] = str(port)
    return tags


def is_server(member: Member) -> bool:
    """Consul treats a member as a server only when ``role=consul`` (consul-compat §7.3)."""
    return member.tags.get("role") == "consul"


def rpc_address(member: Member) -> str | None:
    """A server's RPC address ``IP:port`` (``[v6]:port``) from ``Addr`` and the ``port`` tag; None if unparsable.

    Consul's IsConsulServer rejects a member whose ``port`` tag is not a number, so we do too.
    """
    try:
        port = int(member.tags.get("port", ""))
    except ValueError:
        return None
    if not 0 < port < 65536:
        return None
    return join_host_port(member.addr, port)


def leader_of(
    members: Iterable[Member] | Mapping[str, Member], expect: int, dc: str | None = None
) -> tuple[str, tuple[str, ...]]:
    """``(leader, servers)`` as every agent computes it alike: our stand-in for a Raft election (not Raft).

    Servers are the alive members with ``role=consul``, a valid ``port`` tag and, when ``dc`` is given, that
    ``dc`` tag.  Until there are ``expect`` (at least one) of them there is no leader: ``("", ())``, as
    /v1/status/leader and /v1/status/peers answer before Consul bootstraps.  Then the leader is the one with the
    lowest node ID (``id`` tag; node IDs are unique, the name only breaks ties between malformed ones), and
    ``servers`` are their ``IP:port`` in that same order.
    """
    pool = members.values() if isinstance(members, Mapping) else members
    ranked: list[tuple[str, str, str]] = []
    for member in pool:
        if member.status != STATUS_ALIVE or not is_server(member):
            continue
        if dc is not None and member.tags.get("dc") != dc:
            continue
        address = rpc_address(member)
        if address is None:
            continue
        ranked.append((member.tags.get("id", "").lower(), member.name, address))
    if not ranked or len(ranked) < expect:
        return "", ()
    ranked.sort()
    servers = tuple(address for _, _, address in ranked)
    return servers[0], servers
