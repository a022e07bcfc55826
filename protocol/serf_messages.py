"""Serf's messages (serf/messages.go) and node-meta tags, as go-msgpack writes and reads them.

Serf messages travel as memberlist user messages: one type byte, then a msgpack map per Go struct. go-msgpack
writes a struct as a map of *every* field, keyed by the Go field name in declaration order, and decodes a map into
a struct by exact field name (unknown keys skipped, missing ones zero). So we write the same names in the same
order, and read leniently: a missing field is Go's zero value, ``nil`` is an empty slice/map/string.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

import attrs

from protocol.go_msgpack import decode_stream_value, go_bytes, go_str, packb, unpackb

# memberlist's MetaMaxSize: node meta (our tags) must fit in it.
META_MAX_SIZE = 512
# serf's tagMagicByte: meta starting with it is msgpack tags; anything else is an old-protocol role string.
TAG_MAGIC_BYTE = 0xFF

QUERY_FLAG_ACK = 1
QUERY_FLAG_NO_BROADCAST = 2


class SerfDecodeError(ValueError):
    """A Serf message we cannot read; the reason says which field or byte."""


class SerfMessageType(IntEnum):
    LEAVE = 0
    JOIN = 1
    PUSH_PULL = 2
    USER_EVENT = 3
    QUERY = 4
    QUERY_RESPONSE = 5
    CONFLICT_RESPONSE = 6
    KEY_REQUEST = 7
    KEY_RESPONSE = 8
    RELAY = 9


@attrs.frozen
class JoinIntent:
    """messageJoin: ties a member's join to a Lamport time, so older leave intents lose to it."""

    ltime: int
    node: str


@attrs.frozen
class LeaveIntent:
    """messageLeave: a member's (or a force-leave's) intent to leave; ``prune`` erases it at once."""

    ltime: int
    node: str
    prune: bool = False


@attrs.frozen
class UserEventRecord:
    """userEvent inside a push/pull's event buffer."""

    name: str
    payload: bytes = b""


@attrs.frozen
class UserEventsAt:
    """userEvents: the user events seen at one event LTime (one slot of serf's event buffer)."""

    ltime: int
    events: tuple[UserEventRecord, ...] = ()


@attrs.frozen
class SerfPushPull:
    """messagePushPull: Serf's part of a memberlist push/pull (the delegate's local state)."""

    ltime: int
    status_ltimes: dict[str, int] = attrs.field(factory=dict)
    left_members: tuple[str, ...] = ()
    event_ltime: int = 0
    events: tuple[UserEventsAt, ...] = ()
    query_ltime: int = 0


@attrs.frozen
class UserEventMessage:
    """messageUserEvent."""

    ltime: int
    name: str
    payload: bytes = b""
    cc: bool = False


@attrs.frozen
class QueryMessage:
    """messageQuery. ``timeout`` is a Go time.Duration in nanoseconds."""

    ltime: int
    id: int
    addr: bytes = b""
    port: int = 0
    source_node: str = ""
    filters: tuple[bytes, ...] = ()
    flags: int = 0
    relay_factor: int = 0
    timeout: int = 0
    name: str = ""
    payload: bytes = b""

    @property
    def ack(self) -> bool:
        return bool(self.flags & QUERY_FLAG_ACK)

    @property
    def no_broadcast(self) -> bool:
        return bool(self.flags & QUERY_FLAG_NO_BROADCAST)


@attrs.frozen
class QueryResponseMessage:
    """messageQueryResponse (Go field ``From``)."""

    ltime: int
    id: int
    from_: str = ""
    flags: int = 0
    payload: bytes = b""


@attrs.frozen
class RelayMessage:
    """messageRelay: a relayHeader {DestAddr net.UDPAddr, DestName} then the inner message, type byte included."""

    dest_ip: bytes
    dest_port: int
    dest_name: str
    inner: bytes
    dest_zone: str = ""


@attrs.frozen
class MemberInfo:
    """serf.Member as it travels in a conflict response (``ip`` is net.IP: 4 or 16 packed bytes)."""

    name: str
    ip: bytes
    port: int
    tags: dict[str, str] = attrs.field(factory=dict)
    status: int = 0
    protocol_min: int = 0
    protocol_max: int = 0
    protocol_cur: int = 0
    delegate_min: int = 0
    delegate_max: int = 0
    delegate_cur: int = 0


@attrs.frozen
class ConflictResponse:
    """The payload of an answer to ``_serf_conflict``: type byte 6 + the member we know by that name (or nil)."""

    member: MemberInfo | None


@attrs.frozen
class OpaqueMessage:
    """A Serf type we carry but never interpret (conflict/key request/response are query payloads)."""

    type: int
    body: bytes


SerfMessage = (
    JoinIntent
    | LeaveIntent
    | SerfPushPull
    | UserEventMessage
    | QueryMessage
    | QueryResponseMessage
    | RelayMessage
    | ConflictResponse
    | OpaqueMessage
)


# --- encoding -------------------------------------------------------------------------------------------------


def _go_struct(fields: dict[str, Any]) -> dict[str, Any]:
    """go-msgpack 0.5 writes a struct's map with keys sorted byte-wise; an empty []byte is Go's nil."""
    return {k: (None if isinstance(fields[k], bytes) and not fields[k] else fields[k]) for k in sorted(fields)}


def _user_events_to_go(e: UserEventsAt) -> dict[str, Any]:
    events = [_go_struct({"Name": r.name, "Payload": r.payload}) for r in e.events]
    return _go_struct({"LTime": e.ltime, "Events": events})


def _to_go(msg: SerfMessage) -> tuple[SerfMessageType, dict[str, Any]]:
    """The Go struct of each message, as a map with Go's field names."""
    match msg:
        case JoinIntent():
            return SerfMessageType.JOIN, {"LTime": msg.ltime, "Node": msg.node}
        case LeaveIntent():
            return SerfMessageType.LEAVE, {"LTime": msg.ltime, "Node": msg.node, "Prune": msg.prune}
        case SerfPushPull():
            return SerfMessageType.PUSH_PULL, {
                "LTime": msg.ltime,
                # Go's map order is random; sorted keeps our bytes reproducible.
                "StatusLTimes": {k: msg.status_ltimes[k] for k in sorted(msg.status_ltimes)},
                "LeftMembers": list(msg.left_members),
                "EventLTime": msg.event_ltime,
                "Events": [_user_events_to_go(e) for e in msg.events],
                "QueryLTime": msg.query_ltime,
            }
        case UserEventMessage():
            return SerfMessageType.USER_EVENT, {
                "LTime": msg.ltime,
                "Name": msg.name,
                "Payload": msg.payload,
                "CC": msg.cc,
            }
        case QueryMessage():
            return SerfMessageType.QUERY, {
                "LTime": msg.ltime,
                "ID": msg.id,
                "Addr": msg.addr,
                "Port": msg.port,
                "SourceNode": msg.source_node,
                "Filters": list(msg.filters) if msg.filters else None,
                "Flags": msg.flags,
                "RelayFactor": msg.relay_factor,
                "Timeout": msg.timeout,
                "Name": msg.name,
                "Payload": msg.payload,
            }
        case QueryResponseMessage():
            return SerfMessageType.QUERY_RESPONSE, {
                "LTime": msg.ltime,
                "ID": msg.id,
                "From": msg.from_,
                "Flags": msg.flags,
                "Payload": msg.payload,
            }
    raise TypeError(f"not a Serf message with a struct body: {msg!r}")


def _member_to_go(m: MemberInfo) -> dict[str, Any]:
    return {
        "Name": m.name,
        "Addr": m.ip,
        "Port": m.port,
        "Tags": {k: m.tags[k] for k in sorted(m.tags)},
        "Status": m.status,
        "ProtocolMin": m.protocol_min,
        "ProtocolMax": m.protocol_max,
        "ProtocolCur": m.protocol_cur,
        "DelegateMin": m.delegate_min,
        "DelegateMax": m.delegate_max,
        "DelegateCur": m.delegate_cur,
    }


def encode_message(msg: SerfMessage) -> bytes:
    """Type byte + go-msgpack body, exactly as serf's encodeMessage (relay: header, then the inner message)."""
    if isinstance(msg, RelayMessage):
        dest = _go_struct({"IP": msg.dest_ip, "Port": msg.dest_port, "Zone": msg.dest_zone})
        header = _go_struct({"DestAddr": dest, "DestName": msg.dest_name})
        return bytes([SerfMessageType.RELAY]) + packb(header) + msg.inner
    if isinstance(msg, ConflictResponse):
        body = None if msg.member is None else _go_struct(_member_to_go(msg.member))
        return bytes([SerfMessageType.CONFLICT_RESPONSE]) + packb(body)
    if isinstance(msg, OpaqueMessage):
        return bytes([msg.type]) + msg.body
    kind, body = _to_go(msg)
    return bytes([kind]) + packb(_go_struct(body))


# --- decoding -------------------------------------------------------------------------------------------------


def _text(value: Any, what: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray):
        return go_str(value)
    if isinstance(value, str):
        return value
    raise SerfDecodeError(f"{what}: expected a string, got {type(value).__name__}")


def _raw(value: Any, what: str) -> bytes:
    if value is None:
        return b""
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, str):
        return go_bytes(value)
    raise SerfDecodeError(f"{what}: expected bytes, got {type(value).__name__}")


def _uint(value: Any, what: str, bits: int = 64) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise SerfDecodeError(f"{what}: expected an integer, got {type(value).__name__}")
    if value < 0 or value >= 1 << bits:
        raise SerfDecodeError(f"{what}: {value} does not fit a uint{bits}")
    return value


def _int(value: Any, what: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise SerfDecodeError(f"{what}: expected an integer, got {type(value).__name__}")
    return value


def _bool(value: Any, what: str) -> bool:
    if value is None:
        return False
    if isinstance(value, int) and value in (0, 1):  # go-msgpack's decodeBool takes fixint 0/1 too
        return bool(value)
    if not isinstance(value, bool):
        raise SerfDecodeError(f"{what}: expected a bool, got {type(value).__name__}")
    return value


def _array(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise SerfDecodeError(f"{what}: expected an array, got {type(value).__name__}")
    return list(value)


def _struct(value: Any, what: str) -> dict[str, Any]:
    """A decoded Go struct: a map with text keys (go-msgpack matches field names exactly)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SerfDecodeError(f"{what}: expected a map, got {type(value).__name__}")
    what_key = f"{what} key"  # once, not per key: a push/pull's StatusLTimes has one key per member
    return {(go_str(k) if type(k) is bytes else _text(k, what_key)): v for k, v in value.items()}


def _unpack(body: bytes, what: str) -> Any:
    try:
        return unpackb(body)
    except Exception as exc:  # the codec's own errors are ValueErrors of various kinds
        raise SerfDecodeError(f"{what}: bad msgpack: {exc}") from exc


def _decode_user_events(value: Any) -> UserEventsAt | None:
    if value is None:
        return None
    s = _struct(value, "userEvents")
    records = tuple(
        UserEventRecord(_text(r.get("Name"), "userEvent.Name"), _raw(r.get("Payload"), "userEvent.Payload"))
        for r in (_struct(x, "userEvent") for x in _array(s.get("Events"), "userEvents.Events"))
    )
    return UserEventsAt(_uint(s.get("LTime"), "userEvents.LTime"), records)


def _ltimes(status: dict[str, Any]) -> dict[str, int]:
    """StatusLTimes, checked as _uint checks each value; in one pass when all are plain uint64s (the map names
    every member: N^2 entries a round of push/pulls in a simulation), naming the bad one otherwise."""
    if all(type(v) is int and 0 <= v < 1 << 64 for v in status.values()):
        return status
    return {k: _uint(v, f"StatusLTimes[{k}]") for k, v in status.items()}


def _decode_push_pull(s: dict[str, Any]) -> SerfPushPull:
    status = _struct(s.get("StatusLTimes"), "StatusLTimes")
    events = (_decode_user_events(e) for e in _array(s.get("Events"), "Events"))
    return SerfPushPull(
        ltime=_uint(s.get("LTime"), "LTime"),
        status_ltimes=_ltimes(status),
        left_members=tuple(_text(n, "LeftMembers") for n in _array(s.get("LeftMembers"), "LeftMembers")),
        event_ltime=_uint(s.get("EventLTime"), "EventLTime"),
        events=tuple(e for e in events if e is not None),
        query_ltime=_uint(s.get("QueryLTime"), "QueryLTime"),
    )


def _decode_query(s: dict[str, Any]) -> QueryMessage:
    return QueryMessage(
        ltime=_uint(s.get("LTime"), "LTime"),
        id=_uint(s.get("ID"), "ID", 32),
        addr=_raw(s.get("Addr"), "Addr"),
        port=_uint(s.get("Port"), "Port", 16),
        source_node=_text(s.get("SourceNode"), "SourceNode"),
        filters=tuple(_raw(f, "Filters") for f in _array(s.get("Filters"), "Filters")),
        flags=_uint(s.get("Flags"), "Flags", 32),
        relay_factor=_uint(s.get("RelayFactor"), "RelayFactor", 8),
        timeout=_int(s.get("Timeout"), "Timeout"),
        name=_text(s.get("Name"), "Name"),
        payload=_raw(s.get("Payload"), "Payload"),
    )


def _decode_relay(body: bytes) -> RelayMessage:
    """The relay header is one msgpack value; the inner message is whatever follows it."""
    try:
        header, offset = decode_stream_value(body, 0)
    except Exception as exc:
        raise SerfDecodeError(f"relay header: bad msgpack: {exc}") from exc
    h = _struct(header, "relayHeader")
    dest = _struct(h.get("DestAddr"), "relayHeader.DestAddr")
    return RelayMessage(
        dest_ip=_raw(dest.get("IP"), "DestAddr.IP"),
        dest_port=_uint(dest.get("Port"), "DestAddr.Port", 16),  # Go's int; a UDP port is 16 bits
        dest_zone=_text(dest.get("Zone"), "DestAddr.Zone"),
        dest_name=_text(h.get("DestName"), "DestName"),
        inner=bytes(body[offset:]),
    )


def _decode_member(value: Any) -> MemberInfo | None:
    if value is None:
        return None
    s = _struct(value, "Member")
    tags = _struct(s.get("Tags"), "Member.Tags")
    return MemberInfo(
        name=_text(s.get("Name"), "Member.Name"),
        ip=_raw(s.get("Addr"), "Member.Addr"),
        port=_uint(s.get("Port"), "Member.Port", 16),
        tags={k: _text(v, f"Member.Tags[{k}]") for k, v in tags.items()},
        status=_int(s.get("Status"), "Member.Status"),
        protocol_min=_uint(s.get("ProtocolMin"), "ProtocolMin", 8),
        protocol_max=_uint(s.get("ProtocolMax"), "ProtocolMax", 8),
        protocol_cur=_uint(s.get("ProtocolCur"), "ProtocolCur", 8),
        delegate_min=_uint(s.get("DelegateMin"), "DelegateMin", 8),
        delegate_max=_uint(s.get("DelegateMax"), "DelegateMax", 8),
        delegate_cur=_uint(s.get("DelegateCur"), "DelegateCur", 8),
    )


def decode_message(data: bytes) -> SerfMessage:
    """One Serf message (type byte first). Raises SerfDecodeError naming what is wrong."""
    if not data:
        raise SerfDecodeError("empty Serf message")
    kind, body = data[0], bytes(data[1:])
    if kind == SerfMessageType.RELAY:
        return _decode_relay(body)
    if kind == SerfMessageType.CONFLICT_RESPONSE:
        return ConflictResponse(_decode_member(_unpack(body, "conflict response")))
    if kind not in (
        SerfMessageType.LEAVE,
        SerfMessageType.JOIN,
        SerfMessageType.PUSH_PULL,
        SerfMessageType.USER_EVENT,
        SerfMessageType.QUERY,
        SerfMessageType.QUERY_RESPONSE,
    ):
        if kind < len(SerfMessageType):
            return OpaqueMessage(kind, body)
        raise SerfDecodeError(f"unknown Serf message type {kind}")
    name = SerfMessageType(kind).name.lower()
    s = _struct(_unpack(body, name), name)
    match kind:
        case SerfMessageType.JOIN:
            return JoinIntent(_uint(s.get("LTime"), "LTime"), _text(s.get("Node"), "Node"))
        case SerfMessageType.LEAVE:
            return LeaveIntent(
                _uint(s.get("LTime"), "LTime"), _text(s.get("Node"), "Node"), _bool(s.get("Prune"), "Prune")
            )
        case SerfMessageType.PUSH_PULL:
            return _decode_push_pull(s)
        case SerfMessageType.USER_EVENT:
            return UserEventMessage(
                ltime=_uint(s.get("LTime"), "LTime"),
                name=_text(s.get("Name"), "Name"),
                payload=_raw(s.get("Payload"), "Payload"),
                cc=_bool(s.get("CC"), "CC"),
            )
        case SerfMessageType.QUERY:
            return _decode_query(s)
    return QueryResponseMessage(
        ltime=_uint(s.get("LTime"), "LTime"),
        id=_uint(s.get("ID"), "ID", 32),
        from_=_text(s.get("From"), "From"),
        flags=_uint(s.get("Flags"), "Flags", 32),
        payload=_raw(s.get("Payload"), "Payload"),
    )


# --- query filters -------------------------------------------------------------------------------------------

FILTER_NODE = 0
FILTER_TAG = 1


@attrs.frozen
class NodeFilter:
    """filterNode: the query is for these members only."""

    names: tuple[str, ...]


@attrs.frozen
class TagFilter:
    """filterTag: the query is for members whose tag ``tag`` matches the regular expression ``expr``."""

    tag: str
    expr: str


def encode_filter(f: NodeFilter | TagFilter) -> bytes:
    """serf's encodeFilter: filter type byte + msgpack."""
    if isinstance(f, NodeFilter):
        return bytes([FILTER_NODE]) + packb(list(f.names))
    return bytes([FILTER_TAG]) + packb(_go_struct({"Tag": f.tag, "Expr": f.expr}))


def decode_filter(data: bytes) -> NodeFilter | TagFilter:
    """One query filter; SerfDecodeError for an unknown type or bad body (serf then skips the query)."""
    if not data:
        raise SerfDecodeError("empty query filter")
    body = _unpack(bytes(data[1:]), "query filter")
    if data[0] == FILTER_NODE:
        return NodeFilter(tuple(_text(n, "filterNode") for n in _array(body, "filterNode")))
    if data[0] == FILTER_TAG:
        s = _struct(body, "filterTag")
        return TagFilter(_text(s.get("Tag"), "filterTag.Tag"), _text(s.get("Expr"), "filterTag.Expr"))
    raise SerfDecodeError(f"unrecognized query filter type {data[0]}")


# --- tags in node meta ----------------------------------------------------------------------------------------


def encode_tags(tags: dict[str, str], protocol_version: int = 4) -> bytes:
    """Serf's encodeTags: magic byte + msgpack map (keys sorted, for stable bytes); protocol < 3: the role."""
    if protocol_version < 3:
        return go_bytes(tags.get("role", ""))
    return bytes([TAG_MAGIC_BYTE]) + packb({k: tags[k] for k in sorted(tags)})


def decode_tags(meta: bytes) -> tuple[dict[str, str], str | None]:
    """Serf's decodeTags: (tags, error). Meta not starting with the magic byte is a bare role string."""
    if not meta or meta[0] != TAG_MAGIC_BYTE:
        return {"role": go_str(meta)}, None
    try:
        raw = unpackb(bytes(meta[1:]))
        if not isinstance(raw, dict):
            raise SerfDecodeError(f"tags: expected a map, got {type(raw).__name__}")
        return {_text(k, "tag name"): _text(v, "tag value") for k, v in raw.items()}, None
    except Exception as exc:
        return {}, f"failed to decode tags: {exc}"


def check_tags_size(tags: dict[str, str], protocol_version: int = 4) -> bytes:
    """Encode tags and refuse them if they do not fit memberlist's node meta."""
    meta = encode_tags(tags, protocol_version)
    if len(meta) > META_MAX_SIZE:
        raise ValueError(
            f"encoded tags are {len(meta)} bytes, more than memberlist's node meta limit of "
            f"{META_MAX_SIZE} bytes: shorten or drop some of the {len(tags)} tags"
        )
    return meta
