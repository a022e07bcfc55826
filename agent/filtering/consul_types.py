"""The Consul structs its HTTP API filters, as go-bexpr sees them (Consul's structs_filtering_test.go lists them).

Each field reads the key the endpoint's JSON has; fields our JSON leaves out (Connect proxy settings, peering,
partitions) read Go's zero value, so a selector Consul accepts is accepted here and matches what an unset field
would.  Endpoint -> type: /v1/catalog/nodes NODE; /v1/catalog/service/:s and /v1/catalog/services SERVICE_NODE;
/v1/catalog/node/:n and node-services/:n NODE_SERVICE; /v1/health/node|checks|state HEALTH_CHECK;
/v1/health/service/:s CHECK_SERVICE_NODE; /v1/agent/services AGENT_SERVICE; /v1/agent/checks HEALTH_CHECK;
/v1/agent/members SERF_MEMBER.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from agent.filtering.fields import Field, ListOf, MapOf, Prim, Struct

__all__ = [
    "AGENT_SERVICE",
    "CHECK_SERVICE_NODE",
    "HEALTH_CHECK",
    "NODE",
    "NODE_SERVICE",
    "SERF_MEMBER",
    "SERVICE_NODE",
]

S, INT, BOOL = Prim("string"), Prim("int"), Prim("bool")
STR_MAP = MapOf(S)


def _strings(*names: str) -> tuple[Field, ...]:
    return tuple(Field(n, S) for n in names)


MESH_GATEWAY = Struct((Field("Mode", S),))
UPSTREAM = Struct((
    *_strings("DestinationType", "DestinationNamespace", "DestinationPartition", "DestinationPeer",
              "DestinationName", "Datacenter", "LocalBindAddress"),
    Field("LocalBindPort", INT), *_strings("LocalBindSocketPath", "LocalBindSocketMode"),
    Field("MeshGateway", MESH_GATEWAY),
))  # fmt: skip
EXPOSE_PATH = Struct((Field("ListenerPort", INT), Field("Path", S), Field("LocalPathPort", INT),
                      Field("Protocol", S), Field("ParsedFromCheck", BOOL)))  # fmt: skip
CONNECT_PROXY = Struct((
    Field("EnvoyExtensions", ListOf(Struct((Field("Name", S), Field("Required", BOOL),
                                            *_strings("ConsulVersion", "EnvoyVersion"))))),
    *_strings("DestinationServiceName", "DestinationServiceID", "LocalServiceAddress"),
    Field("LocalServicePort", INT), Field("LocalServiceSocketPath", S), Field("Upstreams", ListOf(UPSTREAM)),
    Field("MeshGateway", MESH_GATEWAY),
    Field("Expose", Struct((Field("Checks", BOOL), Field("Paths", ListOf(EXPOSE_PATH))))),
    Field("TransparentProxy", Struct((Field("OutboundListenerPort", INT), Field("DialedDirectly", BOOL)))),
    Field("Mode", S),
    Field("AccessLogs", Struct((Field("Enabled", BOOL), Field("DisableListenerLogs", BOOL),
                                *_strings("Type", "Path", "JSONPath", "TextPath")))),
))  # fmt: skip
SERVICE_ADDRESS = Struct((Field("Address", S), Field("Port", INT)))
WEIGHTS = Struct((Field("Passing", INT), Field("Warning", INT)))
SERVICE_CONNECT = Struct((Field("Native", BOOL),))

NODE = Struct((
    *_strings("ID", "Node", "Partition", "PeerName", "Address", "Datacenter"),
    Field("TaggedAddresses", STR_MAP), Field("Meta", STR_MAP),
))  # fmt: skip

NODE_SERVICE = Struct((
    *_strings("Kind", "ID", "Service"), Field("Tags", ListOf(S)), Field("Address", S),
    Field("TaggedAddresses", MapOf(SERVICE_ADDRESS)), Field("Meta", STR_MAP), Field("Port", INT),
    Field("SocketPath", S), Field("Weights", WEIGHTS), Field("EnableTagOverride", BOOL),
    Field("Proxy", CONNECT_PROXY), Field("ServiceConnect", SERVICE_CONNECT, key="Connect"), Field("PeerName", S),
))  # fmt: skip

#: api.AgentService has the same filterable fields as NodeService (Consul's test asserts it).
AGENT_SERVICE = NODE_SERVICE

SERVICE_NODE = Struct((
    *_strings("ID", "Node", "Address", "Datacenter"), Field("TaggedAddresses", STR_MAP),
    Field("NodeMeta", STR_MAP), *_strings("ServiceKind", "ServiceID", "ServiceName"),
    Field("ServiceTags", ListOf(S)), Field("ServiceAddress", S),
    Field("ServiceTaggedAddresses", MapOf(SERVICE_ADDRESS)), Field("ServiceMeta", STR_MAP),
    Field("ServicePort", INT), Field("ServiceSocketPath", S), Field("ServiceWeights", WEIGHTS),
    Field("ServiceEnableTagOverride", BOOL), Field("ServiceProxy", CONNECT_PROXY),
    Field("ServiceConnect", SERVICE_CONNECT), Field("PeerName", S),
))  # fmt: skip

HEALTH_CHECK = Struct((
    *_strings("Node", "CheckID", "Name", "Status", "Notes", "Output", "ServiceID", "ServiceName"),
    Field("ServiceTags", ListOf(S)), *_strings("Type", "Interval", "Timeout"), Field("ExposedPort", INT),
    Field("PeerName", S),
))  # fmt: skip

CHECK_SERVICE_NODE = Struct((
    Field("Node", NODE), Field("Service", NODE_SERVICE), Field("Checks", ListOf(HEALTH_CHECK)),
))  # fmt: skip


def _ip_bytes(text: Any) -> list[int]:
    """A member's address as Go's ``net.IP`` bytes (4 for IPv4, as memberlist keeps it; 16 for IPv6)."""
    try:
        return list(ipaddress.ip_address(str(text)).packed)
    except ValueError:
        return []


U8 = Prim("uint", 8)
#: serf.Member, which /v1/agent/members filters before encoding it.
SERF_MEMBER = Struct((
    Field("Name", S), Field("Addr", ListOf(U8), convert=_ip_bytes), Field("Port", Prim("uint", 16)),
    Field("Tags", STR_MAP), Field("Status", INT),
    *(Field(n, U8) for n in ("ProtocolMin", "ProtocolMax", "ProtocolCur", "DelegateMin", "DelegateMax",
                             "DelegateCur")),
))  # fmt: skip
