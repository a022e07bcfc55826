"""Raft's data: log entries, hard state, configurations, snapshots, messages and the Ready batch.

This module is the contract between the sans-IO core (`protocol.raft`), the durable storage and the transport
(`agent/server/`). Everything here is a frozen attrs record of plain values, so a record can be persisted,
sent, compared and hashed without thinking about aliasing. Server IDs are strings (Consul uses the node ID, a
UUID); addresses are Consul's ``IP:port`` text for the server port.

`to_wire` / `from_wire` turn a `Message` into msgpack-friendly primitives (dicts of ints, str and bytes) and
back; `from_wire` raises `WireError` with a precise reason on anything malformed, so one bad frame from a peer
can be refused without touching the core.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import attrs

NO_ID = ""  # "nobody": no vote cast, no leader known


class EntryKind(enum.IntEnum):
    """NORMAL carries a state-machine command (empty data: the leader's no-op of its term); CONF_CHANGE one
    `ConfChange`, encoded with `conf_change_to_bytes`."""

    NORMAL = 0
    CONF_CHANGE = 1


@attrs.frozen
class Entry:
    index: int
    term: int
    kind: EntryKind = EntryKind.NORMAL
    data: bytes = b""


@attrs.frozen
class HardState:
    """What must be on disk before any message that depends on it leaves the node."""

    term: int = 0
    vote: str = NO_ID
    commit: int = 0


class Suffrage(enum.IntEnum):
    VOTER = 0
    NONVOTER = 1  # receives the log, never counts in a quorum (a server being caught up before promotion)


@attrs.frozen
class Server:
    id: str
    address: str
    suffrage: Suffrage = Suffrage.VOTER


@attrs.frozen
class ConfState:
    """The cluster configuration: hashicorp/raft's Configuration. Servers are kept sorted by id."""

    servers: tuple[Server, ...] = attrs.field(default=(), converter=lambda s: tuple(sorted(s, key=lambda x: x.id)))

    def voters(self) -> frozenset[str]:
        return frozenset(s.id for s in self.servers if s.suffrage is Suffrage.VOTER)

    def ids(self) -> frozenset[str]:
        return frozenset(s.id for s in self.servers)

    def get(self, server_id: str) -> Server | None:
        return next((s for s in self.servers if s.id == server_id), None)


class ConfChangeKind(enum.IntEnum):
    ADD_VOTER = 0
    ADD_NONVOTER = 1
    REMOVE_SERVER = 2


@attrs.frozen
class ConfChange:
    """One server added or removed; changes are applied one at a time, as hashicorp/raft does."""

    kind: ConfChangeKind
    server_id: str
    address: str = ""


@attrs.frozen
class SnapshotMeta:
    index: int = 0
    term: int = 0
    conf: ConfState = ConfState()


@attrs.frozen
class Snapshot:
    meta: SnapshotMeta = SnapshotMeta()
    data: bytes = b""

    @property
    def is_empty(self) -> bool:
        return self.meta.index == 0


class MsgType(enum.IntEnum):
    """Messages between servers (the numbers are on the wire: never renumber)."""

    APPEND = 1  # AppendEntries; also carries the commit index
    APPEND_RESP = 2
    VOTE = 3
    VOTE_RESP = 4
    PRE_VOTE = 5
    PRE_VOTE_RESP = 6
    SNAPSHOT = 7  # InstallSnapshot, whole
    HEARTBEAT = 8
    HEARTBEAT_RESP = 9
    TIMEOUT_NOW = 10  # leadership transfer: campaign now, skipping pre-vote
    READ_INDEX = 11  # a follower asks the leader for a read index
    READ_INDEX_RESP = 12
    PROPOSE = 13  # a follower forwards a proposal to the leader


@attrs.frozen(kw_only=True)
class Message:
    """One message, etcd-io/raft's single-struct shape; fields a type does not use stay at their defaults."""

    type: MsgType
    to: str
    from_: str
    term: int = 0
    log_term: int = 0  # APPEND: term of the entry at `index`; votes: the candidate's last log term
    index: int = 0  # APPEND: index preceding `entries`; responses: the index acknowledged or rejected;
    # HEARTBEAT / HEARTBEAT_RESP: the leader's heartbeat round (its lease clock), echoed
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0  # APPEND_RESP on reject: the follower's last index, for fast back-off
    snapshot: Snapshot | None = None
    context: bytes = b""  # READ_INDEX / heartbeats: the read request's id; votes: b"transfer" when forced


@attrs.frozen
class ReadState:
    """A linearizable read may be served once the state machine has applied `index`."""

    index: int
    context: bytes


class Role(enum.IntEnum):
    FOLLOWER = 0
    PRE_CANDIDATE = 1
    CANDIDATE = 2
    LEADER = 3


@attrs.frozen
class SoftState:
    """Volatile facts the driver shows (leader, role); they need no persisting."""

    leader: str = NO_ID
    role: Role = Role.FOLLOWER


@attrs.frozen(kw_only=True)
class Ready:
    """One batch of work for the driver, in this order: send `early_messages` (at once, or while persisting),
    persist `snapshot`, `entries` and `hard_state` (fsync when `must_sync`), then send `messages`, then apply
    `committed_entries`, serve `read_states`, then call `advance()`."""

    soft_state: SoftState | None = None  # None: unchanged since the last Ready
    hard_state: HardState | None = None  # None: unchanged
    entries: tuple[Entry, ...] = ()  # to append to stable storage (may overwrite a conflicting suffix)
    snapshot: Snapshot | None = None  # to install in storage (the log before it is discarded)
    committed_entries: tuple[Entry, ...] = ()
    messages: tuple[Message, ...] = ()  # to send once this Ready is persisted
    read_states: tuple[ReadState, ...] = ()
    must_sync: bool = False
    #: a leader's messages that vouch for nothing on its own disk (APPEND, HEARTBEAT, SNAPSHOT, TIMEOUT_NOW in
    #: a Ready that changes no term or vote): they may leave before, or while, this Ready is persisted
    early_messages: tuple[Message, ...] = ()

    def is_empty(self) -> bool:
        return (
            self.soft_state is None
            and self.hard_state is None
            and not self.entries
            and self.snapshot is None
            and not self.committed_entries
            and not self.messages
            and not self.early_messages
            and not self.read_states
        )


# --------------------------------------------------------------------------------------------------- wire form


class WireError(ValueError):
    """A frame that is not a well-formed Raft message; the reason says which field."""


def entry_to_wire(e: Entry) -> list[Any]:
    return [e.index, e.term, int(e.kind), e.data]


def entry_from_wire(raw: Any) -> Entry:
    if not isinstance(raw, (list, tuple)) or len(raw) != 4:
        raise WireError(f"entry: expected [index, term, kind, data], got {type(raw).__name__}")
    index, term, kind, data = raw
    return Entry(_uint(index, "entry.index"), _uint(term, "entry.term"), _enum(EntryKind, kind, "entry.kind"),
                 _bytes(data, "entry.data"))


def conf_to_wire(conf: ConfState) -> list[Any]:
    return [[s.id, s.address, int(s.suffrage)] for s in conf.servers]


def conf_from_wire(raw: Any) -> ConfState:
    if not isinstance(raw, (list, tuple)):
        raise WireError("conf: expected a list of servers")
    servers = []
    for item in raw:
        if not isinstance(item, (list, tuple)) or len(item) != 3:
            raise WireError("conf: expected [id, address, suffrage]")
        servers.append(Server(_str(item[0], "server.id"), _str(item[1], "server.address"),
                              _enum(Suffrage, item[2], "server.suffrage")))
    return ConfState(tuple(servers))


def conf_change_to_bytes(cc: ConfChange) -> bytes:
    """A ConfChange as an entry's data: msgpack of [kind, id, address] (msgpack is imported lazily so this
    module stays importable with the standard library alone)."""
    import msgpack

    return msgpack.packb([int(cc.kind), cc.server_id, cc.address], use_bin_type=True)


def conf_change_from_bytes(data: bytes) -> ConfChange:
    import msgpack

    try:
        raw = msgpack.unpackb(data, raw=False)
    except Exception as exc:
        raise WireError(f"conf change: not msgpack ({exc})") from None
    if not isinstance(raw, list) or len(raw) != 3:
        raise WireError("conf change: expected [kind, id, address]")
    return ConfChange(_enum(ConfChangeKind, raw[0], "conf_change.kind"), _str(raw[1], "conf_change.id"),
                      _str(raw[2], "conf_change.address"))


def snapshot_to_wire(s: Snapshot) -> list[Any]:
    return [s.meta.index, s.meta.term, conf_to_wire(s.meta.conf), s.data]


def snapshot_from_wire(raw: Any) -> Snapshot:
    if not isinstance(raw, (list, tuple)) or len(raw) != 4:
        raise WireError("snapshot: expected [index, term, conf, data]")
    meta = SnapshotMeta(_uint(raw[0], "snapshot.index"), _uint(raw[1], "snapshot.term"), conf_from_wire(raw[2]))
    return Snapshot(meta, _bytes(raw[3], "snapshot.data"))


def to_wire(m: Message) -> dict[str, Any]:
    """Only non-default fields are written, so heartbeats stay tiny."""
    out: dict[str, Any] = {"t": int(m.type), "to": m.to, "fr": m.from_}
    if m.term:
        out["tm"] = m.term
    if m.log_term:
        out["lt"] = m.log_term
    if m.index:
        out["ix"] = m.index
    if m.entries:
        out["en"] = [entry_to_wire(e) for e in m.entries]
    if m.commit:
        out["cm"] = m.commit
    if m.reject:
        out["rj"] = True
    if m.reject_hint:
        out["rh"] = m.reject_hint
    if m.snapshot is not None:
        out["sn"] = snapshot_to_wire(m.snapshot)
    if m.context:
        out["cx"] = m.context
    return out


_WIRE_KEYS = frozenset({"t", "to", "fr", "tm", "lt", "ix", "en", "cm", "rj", "rh", "sn", "cx"})


def from_wire(raw: Any) -> Message:
    if not isinstance(raw, Mapping):
        raise WireError(f"message: expected a map, got {type(raw).__name__}")
    unknown = set(raw) - _WIRE_KEYS
    if unknown:
        raise WireError(f"message: unknown fields {sorted(map(str, unknown))}")
    for key in ("t", "to", "fr"):
        if key not in raw:
            raise WireError(f"message: missing field {key!r}")
    entries = raw.get("en", ())
    if not isinstance(entries, (list, tuple)):
        raise WireError("message.en: expected a list of entries")
    rj = raw.get("rj", False)
    if not isinstance(rj, bool):
        raise WireError("message.rj: expected a bool")
    return Message(
        type=_enum(MsgType, raw["t"], "message.t"),
        to=_str(raw["to"], "message.to"),
        from_=_str(raw["fr"], "message.fr"),
        term=_uint(raw.get("tm", 0), "message.tm"),
        log_term=_uint(raw.get("lt", 0), "message.lt"),
        index=_uint(raw.get("ix", 0), "message.ix"),
        entries=tuple(entry_from_wire(e) for e in entries),
        commit=_uint(raw.get("cm", 0), "message.cm"),
        reject=rj,
        reject_hint=_uint(raw.get("rh", 0), "message.rh"),
        snapshot=snapshot_from_wire(raw["sn"]) if "sn" in raw else None,
        context=_bytes(raw.get("cx", b""), "message.cx"),
    )


_U64 = (1 << 64) - 1


def _uint(v: Any, what: str) -> int:
    if type(v) is not int or not 0 <= v <= _U64:
        raise WireError(f"{what}: expected an unsigned 64-bit integer, got {v!r:.40}")
    return v


def _str(v: Any, what: str) -> str:
    if not isinstance(v, str):
        raise WireError(f"{what}: expected a string, got {type(v).__name__}")
    return v


def _bytes(v: Any, what: str) -> bytes:
    if not isinstance(v, (bytes, bytearray)):
        raise WireError(f"{what}: expected bytes, got {type(v).__name__}")
    return bytes(v)


def _enum(kind: type[enum.IntEnum], v: Any, what: str) -> Any:
    try:
        return kind(v)
    except (ValueError, TypeError):
        raise WireError(f"{what}: {v!r:.40} is not a valid {kind.__name__}") from None
