"""memberlist's messages in the go-msgpack dialect, byte-compatible with hashicorp/memberlist.

The dialect itself (Go strings, msgpack, Go structs as maps) is in protocol/go_msgpack.py; its public names are
importable from here too. The message classes here are pure data (frozen attrs); ``encode`` / ``decode`` do UDP
bodies (no framing), and ``decode_stream`` does one message off a TCP stream buffer.  Framing (compound, CRC,
label, compression) lives in protocol/packets.py.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Protocol

import attrs
import msgpack

from protocol.go_msgpack import (
    GO_STRING_ERRORS,
    DecodeError,
    GoField,
    Incomplete,
    check_struct_range,
    decode_stream_value,
    go_bytes,
    go_str,
    msgpack_reader,
    packb,
    struct_map,
    struct_values,
    unpackb,
)
from protocol.go_msgpack import go_field as _f  # short: every line of the field tables below uses it
from protocol.interning import bounded_put

__all__ = [
    "GO_STRING_ERRORS",
    "MAX_PUSH_STATE_BYTES",
    "Ack",
    "Addr",
    "Alive",
    "Dead",
    "DecodeError",
    "ErrResp",
    "Incomplete",
    "IndirectPing",
    "Message",
    "MessageType",
    "Nack",
    "Ping",
    "PushNodeState",
    "PushPull",
    "StreamDecoder",
    "Suspect",
    "User",
    "UserStream",
    "decode",
    "decode_stream",
    "decode_stream_value",
    "encode",
    "encode_push_pull_records",
    "go_bytes",
    "go_str",
    "msgpack_reader",
    "packb",
    "unpackb",
]

Addr = tuple[str, int]

#: memberlist refuses push/pull user state larger than this (maxPushStateBytes).
MAX_PUSH_STATE_BYTES = 20 * 1024 * 1024


class MessageType(enum.IntEnum):
    """memberlist's messageType byte (net.go), plus the label header type from label.go."""

    PING = 0
    INDIRECT_PING = 1
    ACK = 2
    SUSPECT = 3
    ALIVE = 4
    DEAD = 5
    PUSH_PULL = 6
    COMPOUND = 7
    USER = 8
    COMPRESS = 9
    ENCRYPT = 10
    NACK = 11
    HAS_CRC = 12
    ERR = 13
    HAS_LABEL = 244


# ---------------------------------------------------------------------------------------------------------
# messages


class _Struct:
    """Mixin for messages whose body is one Go struct."""

    TYPE: ClassVar[MessageType]
    FIELDS: ClassVar[tuple[GoField, ...]]

    def body(self) -> bytes:
        check_struct_range(self.FIELDS, self)
        return packb(struct_map(self.FIELDS, self))

    @classmethod
    def from_obj(cls, obj: Any) -> Any:
        return cls(**struct_values(cls.FIELDS, obj, cls.__name__))


@attrs.frozen
class Ping(_Struct):
    """pingMsg (0): direct probe; Node lets the target check it is the intended recipient."""

    seq_no: int
    node: str
    source_addr: bytes = b""
    source_port: int = 0
    source_node: str = ""

    TYPE: ClassVar[MessageType] = MessageType.PING
    FIELDS: ClassVar[tuple[GoField, ...]] = (
        _f("SeqNo", "seq_no", "u32"),
        _f("Node", "node", "str"),
        _f("SourceAddr", "source_addr", "bytes", True),
        _f("SourcePort", "source_port", "u16", True),
        _f("SourceNode", "source_node", "str", True),
    )


@attrs.frozen
class IndirectPing(_Struct):
    """indirectPingMsg (1): ask a peer to probe ``target:port`` for us."""

    seq_no: int
    target: bytes
    port: int
    node: str
    nack: bool
    source_addr: bytes = b""
    source_port: int = 0
    source_node: str = ""

    TYPE: ClassVar[MessageType] = MessageType.INDIRECT_PING
    FIELDS: ClassVar[tuple[GoField, ...]] = (
        _f("SeqNo", "seq_no", "u32"),
        _f("Target", "target", "bytes"),
        _f("Port", "port", "u16"),
        _f("Node", "node", "str"),
        _f("Nack", "nack", "bool"),
        _f("SourceAddr", "source_addr", "bytes", True),
        _f("SourcePort", "source_port", "u16", True),
        _f("SourceNode", "source_node", "str", True),
    )


@attrs.frozen
class Ack(_Struct):
    """ackRespMsg (2); Serf puts its encoded network coordinate in the payload."""

    seq_no: int
    payload: bytes = b""

    TYPE: ClassVar[MessageType] = MessageType.ACK
    FIELDS: ClassVar[tuple[GoField, ...]] = (
        _f("SeqNo", "seq_no", "u32"),
        _f("Payload", "payload", "bytes"),
    )


@attrs.frozen
class Nack(_Struct):
    """nackRespMsg (11): the indirect prober did not hear from the target."""

    seq_no: int

    TYPE: ClassVar[MessageType] = MessageType.NACK
    FIELDS: ClassVar[tuple[GoField, ...]] = (_f("SeqNo", "seq_no", "u32"),)


@attrs.frozen
class ErrResp(_Struct):
    """errMsg (13): sent back on a stream when the request could not be read."""

    error: str

    TYPE: ClassVar[MessageType] = MessageType.ERR
    FIELDS: ClassVar[tuple[GoField, ...]] = (_f("Error", "error", "str"),)


@attrs.frozen
class Suspect(_Struct):
    """suspectMsg (3); ``from_`` is Go's ``From`` (who suspects)."""

    incarnation: int
    node: str
    from_: str

    TYPE: ClassVar[MessageType] = MessageType.SUSPECT
    FIELDS: ClassVar[tuple[GoField, ...]] = (
        _f("Incarnation", "incarnation", "u32"),
        _f("Node", "node", "str"),
        _f("From", "from_", "str"),
    )


@attrs.frozen
class Alive(_Struct):
    """aliveMsg (4); ``addr`` is the packed IP (4 or 16 bytes), ``vsn`` pmin,pmax,pcur,dmin,dmax,dcur."""

    incarnation: int
    node: str
    addr: bytes
    port: int
    meta: bytes
    vsn: bytes

    TYPE: ClassVar[MessageType] = MessageType.ALIVE
    FIELDS: ClassVar[tuple[GoField, ...]] = (
        _f("Incarnation", "incarnation", "u32"),
        _f("Node", "node", "str"),
        _f("Addr", "addr", "bytes"),
        _f("Port", "port", "u16"),
        _f("Meta", "meta", "bytes"),
        _f("Vsn", "vsn", "bytes"),
    )


@attrs.frozen
class Dead(_Struct):
    """deadMsg (5); ``from_ == node`` means a graceful leave."""

    incarnation: int
    node: str
    from_: str

    TYPE: ClassVar[MessageType] = MessageType.DEAD
    FIELDS: ClassVar[tuple[GoField, ...]] = (
        _f("Incarnation", "incarnation", "u32"),
        _f("Node", "node", "str"),
        _f("From", "from_", "str"),
    )


@attrs.frozen
class PushNodeState(_Struct):
    """One node in a push/pull; state 0 alive, 1 suspect, 2 dead, 3 left."""

    name: str
    addr: bytes
    port: int
    meta: bytes
    incarnation: int
    state: int
    vsn: bytes

    FIELDS: ClassVar[tuple[GoField, ...]] = (
        _f("Name", "name", "str"),
        _f("Addr", "addr", "bytes"),
        _f("Port", "port", "u16"),
        _f("Meta", "meta", "bytes"),
        _f("Incarnation", "incarnation", "u32"),
        _f("State", "state", "int"),
        _f("Vsn", "vsn", "bytes"),
    )


_PUSH_PULL_HEADER: tuple[GoField, ...] = (
    _f("Nodes", "nodes", "int"),
    _f("UserStateLen", "user_state_len", "int"),
    _f("Join", "join", "bool"),
)
_USER_MSG_HEADER: tuple[GoField, ...] = (_f("UserMsgLen", "user_msg_len", "int"),)


@attrs.frozen
class PushPull:
    """pushPullMsg (6), TCP only: header {Nodes, UserStateLen, Join}, the node states, raw user state."""

    join: bool
    nodes: tuple[PushNodeState, ...]
    user_state: bytes = b""

    TYPE: ClassVar[MessageType] = MessageType.PUSH_PULL

    def body(self) -> bytes:
        return _push_pull_body(self.join, [_node_body(n) for n in self.nodes], self.user_state)


def _push_pull_body(join: bool, bodies: list[bytes], user_state: bytes) -> bytes:
    header = {"Join": bool(join), "Nodes": len(bodies), "UserStateLen": len(user_state)}
    return b"".join((packb(header), *bodies, bytes(user_state)))


class MemberRecord(Protocol):
    """What encode_push_pull_records reads of a member record (protocol.state.NodeState, which codec cannot import)."""

    @property
    def name(self) -> str: ...
    @property
    def addr(self) -> tuple[str, int]: ...
    @property
    def meta(self) -> bytes: ...
    @property
    def incarnation(self) -> int: ...
    @property
    def state(self) -> int: ...
    @property
    def vsn(self) -> bytes: ...


def encode_push_pull_records(
    join: bool, records: Iterable[MemberRecord], packed: Callable[[str], bytes], user_state: bytes = b""
) -> bytes:
    """``encode(PushPull(...))`` of member records (``packed`` turns an address text into its 4 or 16 bytes), each
    record's body found by (name, incarnation, state) and kept while its address, meta and versions are the ones
    it was built from: no row tuple, packed address or 7-field hash per member (a push/pull carries every member:
    N^2 records a round of syncs in a simulation, nearly all unchanged; issue 14)."""
    bodies = []
    found = _RECORD_BODIES.get
    for r in records:
        key = (r.name, r.incarnation, r.state)
        hit = found(key)
        if hit is None or hit[0] != r.addr or hit[1] != r.meta or hit[2] != r.vsn:
            addr = r.addr
            row = (r.name, packed(addr[0]), addr[1], r.meta, r.incarnation, int(r.state), r.vsn)
            hit = bounded_put(_RECORD_BODIES, key, (addr, r.meta, r.vsn, _node_body(PushNodeState(*row))))
        bodies.append(hit[3])
    return bytes([MessageType.PUSH_PULL]) + _push_pull_body(join, bodies, user_state)


# Push/pull carries every member's state, and in one process (the simulator) N members push and pull the same
# states over and over: each distinct one is encoded and decoded once (immutable values; interning.py's bound).
_NODE_BODIES: dict[PushNodeState, bytes] = {}
_NODE_DECODED: dict[tuple[Any, ...], PushNodeState] = {}
_RECORD_BODIES: dict[tuple[str, int, int], tuple[tuple[str, int], bytes, bytes, bytes]] = {}
_NODE_BY_BYTES: dict[bytes, PushNodeState] = {}


def _node_body(n: PushNodeState) -> bytes:
    body = _NODE_BODIES.get(n)
    if body is None:
        body = bounded_put(_NODE_BODIES, n, n.body())
    return body


def _node_from_bytes(raw: bytes, i: int) -> PushNodeState:
    """One push/pull node state from its msgpack bytes, decoded once per distinct bytes in the process."""
    node = _NODE_BY_BYTES.get(raw)
    if node is None:
        try:
            obj = msgpack.unpackb(raw, raw=True, strict_map_key=False, use_list=False)
        except Exception as exc:
            raise DecodeError(f"push/pull node state {i}: invalid msgpack: {type(exc).__name__}: {exc}") from None
        node = bounded_put(_NODE_BY_BYTES, raw, _node_from_obj(obj))
    return node


def _node_from_obj(obj: Any) -> PushNodeState:
    """PushNodeState.from_obj, memoized by the decoded map's items (anything unhashable is decoded as is)."""
    try:
        key = tuple(obj.items()) if isinstance(obj, dict) else None
        node = _NODE_DECODED.get(key) if key is not None else None
    except TypeError:
        key = node = None
    if node is None:
        node = PushNodeState.from_obj(obj)
        if key is not None:
            bounded_put(_NODE_DECODED, key, node)
    return node


@attrs.frozen
class User:
    """userMsg (8) over UDP: the type byte then the raw payload, no msgpack."""

    payload: bytes

    TYPE: ClassVar[MessageType] = MessageType.USER

    def body(self) -> bytes:
        return bytes(self.payload)


@attrs.frozen
class UserStream:
    """userMsg (8) over TCP: msgpack header {UserMsgLen} then the raw payload."""

    payload: bytes

    TYPE: ClassVar[MessageType] = MessageType.USER

    def body(self) -> bytes:
        return packb({"UserMsgLen": len(self.payload)}) + bytes(self.payload)


Message = Ping | IndirectPing | Ack | Nack | ErrResp | Suspect | Alive | Dead | PushPull | User | UserStream

_UDP_STRUCTS: dict[int, type[_Struct]] = {
    cls.TYPE: cls for cls in (Ping, IndirectPing, Ack, Nack, ErrResp, Suspect, Alive, Dead)
}

_FRAMING = {
    MessageType.COMPOUND: "compound",
    MessageType.COMPRESS: "compressed",
    MessageType.HAS_CRC: "CRC-wrapped",
    MessageType.HAS_LABEL: "labelled",
}


def encode(msg: Message) -> bytes:
    """Type byte + body, exactly as memberlist's ``encode(msgType, in)`` (and sendLocalState) writes it."""
    return bytes([msg.TYPE]) + msg.body()


def _type_byte(data: bytes | bytearray | memoryview) -> MessageType:
    code = data[0]
    try:
        return MessageType(code)
    except ValueError:
        raise DecodeError(f"unknown message type {code}") from None


def decode(data: bytes | bytearray | memoryview) -> Message:
    """Decode one UDP message (type byte + body, framing already removed by packets.unwrap_packet).

    As Go does, bytes after the msgpack body are ignored.
    """
    if not data:
        raise DecodeError("empty message")
    mtype = _type_byte(data)
    if mtype == MessageType.USER:
        return User(bytes(data[1:]))
    cls = _UDP_STRUCTS.get(mtype)
    if cls is None:
        if mtype == MessageType.ENCRYPT:
            raise DecodeError("encrypted packet but no keyring")
        if mtype == MessageType.PUSH_PULL:
            raise DecodeError("push/pull message is only valid on a stream")
        raise DecodeError(f"{_FRAMING[mtype]} packet: unwrap it with packets.unwrap_packet first")
    if len(data) < 2:
        raise DecodeError(f"{mtype.name} message has no body")
    try:
        obj, _ = decode_stream_value(data, 1)
    except Incomplete as exc:
        raise DecodeError(f"{mtype.name} body truncated: {exc}") from None
    return cls.from_obj(obj)


class StreamDecoder:
    """A plain TCP stream's bytes in, one message out, each byte parsed once (the h11 shape: feed, then ask); a
    push/pull's node states are skipped over and decoded only if their bytes were not met before.

    ``feed(chunk)`` returns the message once its last byte has arrived, else None; DecodeError as soon as the
    bytes cannot be a message. One resumable msgpack Unpacker holds the partial state, so a stream read in 1-byte
    chunks costs the same parse work as one read whole (``fed`` counts the bytes handed to the parser).
    Bytes after the message are ignored, as memberlist ignores the rest of the connection.
    """

    def __init__(self) -> None:
        self._unpacker = msgpack_reader()
        self._type: MessageType | None = None
        self._header: dict[str, Any] | None = None
        self._nodes: list[PushNodeState] = []
        self._raw = bytearray()
        self._raw_len = 0
        self._seen = bytearray()  # every byte fed, to look node states up by their bytes
        self._node_start: int | None = None  # where the node state being skipped began (kept across feeds)
        self.message: Message | None = None
        self.fed = 0
        self.waiting_for = "need the message type byte"  # why the last feed returned None

    @property
    def consumed(self) -> int:
        """Bytes of the stream the message took (valid once it is complete)."""
        return self._unpacker.tell()

    def feed(self, data: bytes | bytearray | memoryview) -> Message | None:
        if self.message is not None:
            return self.message
        if data:
            self.fed += len(data)
            self._unpacker.feed(data)
            self._seen += data
        self.message = self._advance()
        return self.message

    def _value(self, what: str) -> Any:
        try:
            return self._unpacker.unpack()
        except Exception as exc:
            raise self._failed(what, exc) from None

    def _failed(self, what: str, exc: Exception) -> Exception:
        """What an unpack error means: the value is not all here yet, or the bytes are not msgpack."""
        if isinstance(exc, msgpack.OutOfData):
            return Incomplete(what)
        pos = self._unpacker.tell()
        return DecodeError(f"{what}: invalid msgpack near offset {pos}: {type(exc).__name__}: {exc}")

    def _advance(self) -> Message | None:
        try:
            return self._step()
        except Incomplete as exc:
            self.waiting_for = str(exc)
            return None

    def _step(self) -> Message:
        if self._type is None:
            first = self._unpacker.read_bytes(1)
            if not first:
                raise Incomplete("need the message type byte")
            self._type = _type_byte(first)
            if self._type not in (MessageType.PUSH_PULL, MessageType.USER) and self._type not in _UDP_STRUCTS:
                if self._type == MessageType.ENCRYPT:
                    raise DecodeError("encrypted stream but no keyring")
                raise DecodeError(f"{_FRAMING[self._type]} stream: unwrap it with packets.unwrap_stream first")
        mtype = self._type
        if mtype == MessageType.PUSH_PULL:
            if self._header is None:
                self._header = struct_values(_PUSH_PULL_HEADER, self._value("push/pull header"), "pushPullHeader")
                count, user_len = self._header["nodes"], self._header["user_state_len"]
                if count < 0:
                    raise DecodeError(f"push/pull header: negative node count {count}")
                if not 0 <= user_len <= MAX_PUSH_STATE_BYTES:
                    raise DecodeError(f"push/pull header: user state length {user_len} out of range")
                self._raw_len = user_len
            self._read_nodes()
            self._read_raw()
            return PushPull(self._header["join"], tuple(self._nodes), bytes(self._raw))
        if mtype == MessageType.USER:
            if self._header is None:
                self._header = struct_values(_USER_MSG_HEADER, self._value("user message header"), "userMsgHeader")
                length = self._header["user_msg_len"]
                if not 0 <= length <= MAX_PUSH_STATE_BYTES:
                    raise DecodeError(f"user message header: length {length} out of range")
                self._raw_len = length
            self._read_raw()
            return UserStream(bytes(self._raw))
        return _UDP_STRUCTS[mtype].from_obj(self._value(f"{mtype.name} body"))

    def _read_nodes(self) -> None:
        """A push/pull's node states: each is skipped over and looked up by its bytes; only bytes not seen before are
        decoded (a push/pull carries every member: in a simulation N^2 states a round, nearly all seen).

        The start is kept until the skip succeeds: msgpack's tell() moves on a skip that ran out of data (the skip
        itself resumes correctly once more bytes are fed).
        """
        assert self._header is not None
        nodes, count, seen, known = self._nodes, self._header["nodes"], self._seen, _NODE_BY_BYTES.get
        skip, tell = self._unpacker.skip, self._unpacker.tell
        start = tell() if self._node_start is None else self._node_start
        while len(nodes) < count:
            try:
                skip()
            except Exception as exc:
                self._node_start = start
                raise self._failed(f"push/pull node state {len(nodes)}", exc) from None
            end = tell()
            raw = bytes(seen[start:end])
            node = known(raw)
            nodes.append(_node_from_bytes(raw, len(nodes)) if node is None else node)
            start = end
        self._node_start = None

    def _read_raw(self) -> None:
        """The raw tail (user state / user message): plain bytes after the msgpack values, taken as they come."""
        need = self._raw_len - len(self._raw)
        if need > 0:
            self._raw += self._unpacker.read_bytes(need)
        if len(self._raw) < self._raw_len:
            raise Incomplete(f"raw tail: have {len(self._raw)} of {self._raw_len} bytes")


def decode_stream(data: bytes | bytearray | memoryview) -> tuple[Message, int]:
    """Decode one message from the start of a (plain, unlabelled, uncompressed) TCP stream buffer.

    Returns (message, bytes consumed); raises Incomplete if the buffer ends early.  Use
    packets.unwrap_stream first to strip a label header and undo stream compression; to read a stream as it
    arrives, use StreamDecoder (or packets.StreamReader) instead of calling this again with a longer buffer.
    """
    decoder = StreamDecoder()
    msg = decoder.feed(data)
    if msg is None:
        raise Incomplete(decoder.waiting_for)
    return msg, decoder.consumed
