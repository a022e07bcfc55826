"""protocol.Serf: hashicorp/serf's membership layer over protocol.Node, sans-IO.

memberlist says who is reachable; Serf adds *why* a member went away. A member that announced a leave intent
(a Lamport-stamped broadcast) and then vanished is ``left``; one that vanished without it is ``failed``, and
is retried (reconnect) until ``reconnect_timeout``. Intents are ordered by a Lamport clock so that a stale leave
never beats a newer join, and are buffered when they arrive before memberlist reports the member.

The rules follow serf.go (handleNodeJoin/Leave/Update, handleNodeJoinIntent/LeaveIntent, reap, reconnect,
Leave) and delegate.go (NotifyMsg, GetBroadcasts, LocalState, MergeRemoteState) closely; where we differ it is
said at the spot. Serf is the Node's delegate and forwards the Node's IO surface, so a driver runs it exactly
like a bare Node.
"""

from __future__ import annotations

import enum
import ipaddress
import random
import re
from collections import deque
from collections.abc import Callable
from typing import Any

import attrs

from protocol.broadcast import BroadcastQueue
from protocol.codec import go_bytes, go_str, packb, unpackb
from protocol.config import Config
from protocol.coordinate import (
    Coordinate,
    CoordinateError,
    VivaldiClient,
    decode_ack_payload,
    encode_ack_payload,
)
from protocol.keymanager import (
    KEY_OPERATIONS,
    KeyQuery,
    KeyResponse,
    KeyringChanged,
    answer_key_query,
    encode_key_request,
    encode_key_response,
    key_query_timeout,
    request_key,
)
from protocol.keyring import Keyring
from protocol.lamport import LamportClock
from protocol.node import Delegate, Diagnostic, JoinResult, LeaveDone, Node, NodeJoin, NodeLeave, NodeUpdate
from protocol.serf_messages import (
    QUERY_FLAG_ACK,
    ConflictResponse,
    JoinIntent,
    LeaveIntent,
    MemberInfo,
    NodeFilter,
    QueryMessage,
    QueryResponseMessage,
    RelayMessage,
    SerfDecodeError,
    SerfMessageType,
    SerfPushPull,
    UserEventMessage,
    UserEventRecord,
    UserEventsAt,
    check_tags_size,
    decode_filter,
    decode_message,
    decode_tags,
    encode_message,
    encode_tags,
)
from protocol.state import Addr, NodeState, NodeStateType


class MemberStatus(enum.IntEnum):
    """serf's MemberStatus (the values are serf's)."""

    NONE = 0
    ALIVE = 1
    LEAVING = 2
    LEFT = 3
    FAILED = 4

    def __str__(self) -> str:
        return self.name.lower()


class SerfState(enum.IntEnum):
    """The local instance's lifecycle (serf's SerfState)."""

    ALIVE = 0
    LEAVING = 1
    LEFT = 2
    SHUTDOWN = 3


class EventKind(enum.StrEnum):
    MEMBER_JOIN = "member-join"
    MEMBER_UPDATE = "member-update"
    MEMBER_LEAVE = "member-leave"
    MEMBER_FAILED = "member-failed"
    MEMBER_REAP = "member-reap"


@attrs.define
class Member:
    """One member as Serf reports it (serf.Member); copies are handed out, never our live record."""

    name: str
    addr: str
    port: int
    tags: dict[str, str] = attrs.field(factory=dict)
    status: MemberStatus = MemberStatus.NONE
    protocol_min: int = 0
    protocol_max: int = 0
    protocol_cur: int = 0
    delegate_min: int = 0
    delegate_max: int = 0
    delegate_cur: int = 0

    def copy(self) -> Member:
        return attrs.evolve(self, tags=dict(self.tags))


@attrs.frozen
class MemberEvent:
    """A membership change: ``kind`` is one of EventKind (a str), ``member`` a snapshot at that moment."""

    kind: EventKind
    member: Member


@attrs.frozen
class MemberStatusChanged:
    """A member's status changed by an intent alone: alive -> leaving on a leave intent (a force-leave of a live
    member), leaving -> alive when the member refutes it.  serf emits no event for these (``serf members`` reads
    them from its member map); we report them so that whoever follows the events alone sees the same statuses."""

    member: Member


@attrs.frozen
class AppMessage:
    """An application message from another member (type APP_MESSAGE_TYPE, our own, outside Serf's range).

    ``from_node`` is the sender's member name as it wrote it; ``payload`` is opaque to Serf.  Real serf nodes
    log and ignore the type, and the agent only sends these to members that advertise support in a tag.
    """

    from_node: str
    payload: bytes


@attrs.frozen
class UserEvent:
    """A Serf user event seen for the first time (serf.UserEvent); added to the contract's event set."""

    ltime: int
    name: str
    payload: bytes
    coalesce: bool


@attrs.define
class _MemberState:
    """serf's memberState: the member plus the Lamport time of its last intent and when it went away."""

    member: Member
    status_ltime: int = 0
    leave_time: float = 0.0

    @property
    def name(self) -> str:
        return self.member.name

    @property
    def status(self) -> MemberStatus:
        return self.member.status

    @status.setter
    def status(self, value: MemberStatus) -> None:
        self.member.status = value


@attrs.frozen
class _Intent:
    """serf's nodeIntent: the latest intent about a member memberlist has not reported yet."""

    type: SerfMessageType
    wall_time: float
    ltime: int


@attrs.define
class _JoinOp:
    """One outstanding Node.join: which addresses still owe a JoinResult, and what to do on success."""

    pending: list[Addr]
    ignore_old: bool
    user: bool
    announced: bool = False


@attrs.define
class _LeaveOp:
    """Where a graceful leave stands: 'intent' -> 'memberlist' -> 'propagate', each with a deadline."""

    phase: str
    deadline: float
    not_before: float = 0.0  # the memberlist leave waits at least until then (config.leave_intent_grace)
    intent_sent: bool = False
    node_left: bool = False
    timed_out: bool = False


_LEVEL_DEBUG = "debug"
_LEVEL_INFO = "info"
_LEVEL_WARN = "warning"
_LEVEL_ERROR = "error"

NodeFactory = Callable[..., Node]

#: The first byte of an application message (docs/wire.md): far above Serf's types (0-9), which real serf nodes
#: answer with "Received message of unknown type" in their log and otherwise ignore.
APP_MESSAGE_TYPE = 0x80

# Queries whose name starts with this are serf's own (serf internal_query.go).
INTERNAL_QUERY_PREFIX = "_serf_"


class Serf(Delegate):
    """The Serf layer: owns a protocol.Node, is its delegate, and adds intents, statuses, reap and reconnect."""

    def __init__(
        self,
        config: Config,
        *,
        name: str,
        addr: Addr,
        rng: random.Random,
        now: float,
        tags: dict[str, str] | None = None,
        node_factory: NodeFactory = Node,
        keyring: Keyring | None = None,
    ) -> None:
        self.config = config
        #: gossip encryption keys, shared with the Node; the key queries change it in place
        self.keyring = keyring
        self.name = name
        self.rng = rng
        self._now = now
        self._tags = dict(tags or {})
        self._meta = check_tags_size(self._tags, config.serf_protocol_version)
        self.state = SerfState.ALIVE

        # serf starts each clock at 1 so the zero LTime of a default message never wins.
        self.clock = LamportClock(1)
        self.event_clock = LamportClock(1)
        self.query_clock = LamportClock(1)

        self._members: dict[str, _MemberState] = {}
        self._failed: list[str] = []
        self._left: list[str] = []
        self._recent_intents: dict[str, _Intent] = {}

        mult = config.retransmit_mult
        self._own_leave = BroadcastQueue(mult)  # our own leave intent; empty again = fully transmitted
        self._broadcasts = BroadcastQueue(mult)
        self._event_broadcasts = BroadcastQueue(mult)
        self._query_broadcasts = BroadcastQueue(mult)

        self._event_buffer: dict[int, UserEventsAt] = {}  # slot -> the events at one LTime
        self._event_min_time = 0
        self._query_buffer: dict[int, tuple[int, list[int]]] = {}  # slot -> (LTime, query ids)
        self._query_min_time = 0
        self._key_queries: dict[tuple[int, int], KeyQuery] = {}  # (LTime, ID) -> the key query we asked
        self._key_handles = 0

        self._events: deque[Any] = deque()
        self.malformed = 0  # Serf messages dropped as unreadable (not in stats(): that mirrors serf's own keys)
        self._join_ops: list[_JoinOp] = []
        self._leave: _LeaveOp | None = None
        self._prunes: list[tuple[float, str]] = []
        self._next_reap = now + config.reap_interval
        self._next_reconnect = now + config.reconnect_interval
        self._next_queue_check = now + config.queue_check_interval

        # serf's coordinate client and cache (nil when disable_coordinates). Its own rng, seeded by name, so the
        # rare random direction it draws never shifts the shared rng's sequence.
        self._coord_client: VivaldiClient | None = None
        self._coord_cache: dict[str, Coordinate] = {}
        self._ack_payload = b""
        #: serf's coordinate metrics: samples refused by the client, zero RTTs, and how far each update moved us
        #: (ms; the owner drains it, as Node.probe_durations)
        self.coordinate_counts = {"rejected": 0, "zero_rtt": 0}
        self.coordinate_adjustments: deque[float] = deque(maxlen=256)
        if not config.disable_coordinates:
            self._coord_client = VivaldiClient(rng=random.Random(f"vivaldi:{name}"))
            self._coord_cache[name] = self._coord_client.coordinate
            self._ack_payload = encode_ack_payload(self._coord_client.coordinate)

        extra = {"keyring": keyring} if keyring is not None else {}
        self.node = node_factory(config, name=name, addr=addr, rng=rng, now=now, delegate=self, **extra)
        if name not in self._members:  # the Node may or may not report itself; serf knows itself either way
            self._handle_node_join(self.node.local)
        self._pump()

    # ------------------------------------------------------------------ IO surface, forwarded to the Node

    def handle_datagram(self, now: float, addr: Addr, data: bytes) -> None:
        self._now = now
        self.node.handle_datagram(now, addr, data)
        self._pump()

    def handle_stream(self, now: float, addr: Addr, data: bytes) -> bytes | None:
        self._now = now
        reply = self.node.handle_stream(now, addr, data)
        self._pump()
        return reply

    def accept_stream(self, now: float, addr: Addr) -> int:
        self._now = now
        return self.node.accept_stream(now, addr)

    def handle_stream_data(self, now: float, stream_id: int, data: bytes) -> bytes | None:
        self._now = now
        reply = self.node.handle_stream_data(now, stream_id, data)
        self._pump()
        return reply

    def close_stream(self, stream_id: int) -> None:
        self.node.close_stream(stream_id)

    def handle_stream_reply(self, now: float, stream_id: int, data: bytes) -> bool:
        self._now = now
        done = self.node.handle_stream_reply(now, stream_id, data)
        self._pump()
        return bool(done)

    def handle_stream_error(self, now: float, stream_id: int, reason: str) -> None:
        self._now = now
        self.node.handle_stream_error(now, stream_id, reason)
        self._pump()

    def handle_timeout(self, now: float) -> None:
        """Run the Node's due timers, then ours (reap, reconnect, queue check, leave phases, prunes)."""
        self._now = now
        self.node.handle_timeout(now)
        self._pump()
        if self.state == SerfState.SHUTDOWN:
            return
        self._run_prunes(now)
        self._expire_key_queries(now)
        self._advance_leave(now)
        if now >= self._next_reap:
            self._next_reap = now + self.config.reap_interval
            self._reap(now)
        if now >= self._next_reconnect:
            self._next_reconnect = now + self.config.reconnect_interval
            self._reconnect(now)
        if now >= self._next_queue_check:
            self._next_queue_check = now + self.config.queue_check_interval
            self._check_queues()
        self._pump()

    def poll_transmit(self) -> Any:
        return self.node.poll_transmit()

    def poll_event(self) -> Any:
        self._pump()
        return self._events.popleft() if self._events else None

    def poll_timeout(self) -> float | None:
        """The earliest of the Node's next timer and ours."""
        node_deadline = self.node.poll_timeout()
        if self.state == SerfState.SHUTDOWN:
            return node_deadline
        ours = [self._next_reap, self._next_reconnect, self._next_queue_check]
        if self._leave is not None:
            ours.append(self._leave.deadline)
        ours.extend(deadline for deadline, _ in self._prunes)
        ours.extend(q.deadline for q in self._key_queries.values())
        mine = min(ours)
        return mine if node_deadline is None else min(mine, node_deadline)

    # ------------------------------------------------------------------ commands

    def join(self, now: float, addrs: list[Addr], ignore_old: bool = False) -> None:
        """memberlist join to each address; on the first success, announce ourselves with a join intent."""
        self._now = now
        if self.state != SerfState.ALIVE:
            raise RuntimeError("Serf can't join after leave or shutdown")
        if not addrs:
            return
        self._join_ops.append(_JoinOp(list(addrs), ignore_old, user=True))
        self.node.join(now, list(addrs))
        self._pump()

    def leave(self, now: float) -> None:
        """Graceful leave: leave intent, wait (bounded) for it to spread, memberlist leave, linger, LeaveDone.

        Unlike serf, a timed-out intent broadcast does not abort the leave: the memberlist leave (a dead
        message from the node about itself, which peers record as *left*) still follows.
        """
        self._now = now
        if self.state == SerfState.LEFT:
            self._events.append(LeaveDone())
            return
        if self.state == SerfState.LEAVING:
            self._diag(_LEVEL_WARN, "serf: leave already in progress")
            return
        if self.state == SerfState.SHUTDOWN:
            raise RuntimeError("Serf can't leave after shutdown")
        self.state = SerfState.LEAVING
        msg = LeaveIntent(self.clock.time(), self.name)
        self.clock.increment()
        self._handle_leave_intent(msg)
        if self._has_alive_members():
            self._leave = _LeaveOp("intent", now + self.config.broadcast_timeout, now + self.config.leave_intent_grace)
            raw = encode_message(msg)
            self._own_leave.queue(None, raw, self._on_leave_intent_sent)
            self._tell_every_alive_member(raw)
            self.node.gossip_now(now)  # and gossiped now, not at the next gossip tick
        else:
            self._start_memberlist_leave(now)
        self._pump()

    def _tell_every_alive_member(self, raw: bytes) -> None:
        """Send our leave intent straight to every alive member, ahead of the memberlist leave.

        A Go serf peer that gets our memberlist "dead, from ourselves" before the intent records us *failed*
        (serf's handleNodeLeave); gossip alone retires the intent after a few sends, not after everyone has
        it. One datagram per member, once per leave, sent before the dead message (same socket, same order).
        """
        for ms in self._members.values():
            if ms.name != self.name and ms.status == MemberStatus.ALIVE:
                self.node.send_best_effort((ms.member.addr, ms.member.port), raw, ms.name)

    def set_tags(self, now: float, tags: dict[str, str]) -> None:
        """New tags for us: checked against the 512-byte meta limit (ValueError), then gossiped by the Node."""
        self._now = now
        meta = check_tags_size(tags, self.config.serf_protocol_version)
        self._tags, self._meta = dict(tags), meta
        local = self._members.get(self.name)
        if local is not None:
            local.member.tags = dict(tags)
        self.node.update_meta(now)
        self._pump()

    def force_leave(self, now: float, name: str, prune: bool = False) -> None:
        """serf's RemoveFailedNode(Prune): broadcast a leave intent on behalf of `name`.

        A failed member becomes left at once (and stops being reconnected); with `prune` it is erased.
        """
        self._now = now
        msg = LeaveIntent(self.clock.time(), name, prune)
        self.clock.increment()
        self._handle_leave_intent(msg)
        if self._has_alive_members():
            self._broadcasts.queue(None, encode_message(msg))
        self._pump()

    def user_event(self, now: float, name: str, payload: bytes = b"", coalesce: bool = True) -> None:
        """Broadcast a user event (serf.UserEvent); raises ValueError beyond user_event_size_limit."""
        self._now = now
        limit = self.config.user_event_size_limit
        if len(go_bytes(name)) + len(payload) > limit:
            raise ValueError(f"user event exceeds the configured limit of {limit} bytes")
        msg = UserEventMessage(self.event_clock.time(), name, payload, coalesce)
        raw = encode_message(msg)
        if len(raw) > limit:
            raise ValueError(f"encoded user event exceeds the configured limit of {limit} bytes")
        self.event_clock.increment()
        self._handle_user_event(msg)
        self._event_broadcasts.queue(None, raw)

    def send_app_message(self, now: float, node_name: str, payload: bytes) -> None:
        """Send an application message to one member over TCP (memberlist's reliable user message).

        Raises KeyError for a member we don't know.  Delivery is best effort beyond TCP: a dial error is only a
        diagnostic, so callers that need an answer keep their own timeout and retry.
        """
        self._now = now
        ms = self._members[node_name]
        frame = bytes([APP_MESSAGE_TYPE]) + packb({"From": self.name, "Payload": bytes(payload)})
        self.node.send_reliable((ms.member.addr, ms.member.port), frame)
        self._pump()

    def shutdown(self) -> None:
        """Stop at once; peers will see us fail unless leave() finished first."""
        if self.state == SerfState.SHUTDOWN:
            return
        if self.state != SerfState.LEFT:
            self._diag(_LEVEL_WARN, "serf: shutdown without a leave")
        self.state = SerfState.SHUTDOWN
        self._leave = None
        self._prunes.clear()
        self.node.shutdown()

    # ------------------------------------------------------------------ queries

    def members(self) -> list[Member]:
        return [ms.member.copy() for ms in self._members.values()]

    def local_member(self) -> Member:
        return self._members[self.name].member.copy()

    def member(self, name: str) -> Member | None:
        ms = self._members.get(name)
        return ms.member.copy() if ms is not None else None

    @property
    def tags(self) -> dict[str, str]:
        return dict(self._tags)

    def coordinate(self) -> Coordinate | None:
        """serf's GetCoordinate: our current network coordinate (None with disable_coordinates)."""
        return self._coord_client.coordinate if self._coord_client is not None else None

    def cached_coordinate(self, name: str) -> Coordinate | None:
        """serf's GetCachedCoordinate: the coordinate a member last sent us on an ack (ours under our name)."""
        return self._coord_cache.get(name)

    def cached_coordinates(self) -> dict[str, Coordinate]:
        """Every cached coordinate by member name (a copy)."""
        return dict(self._coord_cache)

    def stats(self) -> dict[str, int]:
        """serf's Stats, the numeric part."""
        coords = {"coordinate_resets": self._coord_client.resets} if self._coord_client is not None else {}
        return {
            **coords,
            "members": len(self._members),
            "failed": len(self._failed),
            "left": len(self._left),
            "member_time": self.clock.time(),
            "event_time": self.event_clock.time(),
            "query_time": self.query_clock.time(),
            "intent_queue": len(self._broadcasts) + len(self._own_leave),
            "event_queue": len(self._event_broadcasts),
            "query_queue": len(self._query_broadcasts),
        }

    # ------------------------------------------------------------------ the Node's delegate

    def node_meta(self, limit: int) -> bytes:
        if len(self._meta) > limit:  # serf panics; set_tags already refused anything over 512 bytes
            self._diag(_LEVEL_ERROR, f"serf: tags need {len(self._meta)} bytes, node meta limit is {limit}")
            return encode_tags({}, self.config.serf_protocol_version)
        return self._meta

    def notify_msg(self, now: float, payload: bytes) -> None:
        """A Serf message that arrived as a memberlist user message; rebroadcast it if it was news."""
        self._now = now
        if not payload:
            return
        if payload[0] == APP_MESSAGE_TYPE:
            self._handle_app_message(bytes(payload[1:]))
            return
        try:
            msg = decode_message(bytes(payload))
        except SerfDecodeError as exc:
            self._malformed(_LEVEL_ERROR, f"serf: error decoding message type {payload[0]}: {exc}")
            return
        rebroadcast, queue = False, self._broadcasts
        match msg:
            case LeaveIntent():
                rebroadcast = self._handle_leave_intent(msg)
            case JoinIntent():
                rebroadcast = self._handle_join_intent(msg)
            case UserEventMessage():
                rebroadcast, queue = self._handle_user_event(msg), self._event_broadcasts
            case QueryMessage():
                rebroadcast, queue = self._handle_query(msg), self._query_broadcasts
            case QueryResponseMessage():
                self._handle_query_response(msg)
            case RelayMessage():
                self._handle_relay(msg)
            case _:  # push/pull state, conflict and key payloads never travel on their own
                self._diag(_LEVEL_WARN, f"serf: received message of unexpected type {payload[0]}")
        if rebroadcast:
            queue.queue(None, bytes(payload))

    def _handle_app_message(self, body: bytes) -> None:
        try:
            frame = {go_str(k) if isinstance(k, bytes) else k: v for k, v in unpackb(body).items()}
            sender, inner = frame["From"], frame["Payload"]
            sender = go_str(sender) if isinstance(sender, bytes) else sender
            if not isinstance(sender, str) or not isinstance(inner, bytes):
                raise TypeError("From must be a string and Payload bytes")
        except Exception as exc:
            self._malformed(_LEVEL_DEBUG, f"serf: malformed app message: {exc}")
            return
        self._events.append(AppMessage(sender, inner))

    def get_broadcasts(self, overhead: int, limit: int) -> list[bytes]:
        """Our leave intent first, then intents, queries and events, as serf's GetBroadcasts packs them."""
        n = len(self._members)
        msgs: list[bytes] = []
        used = 0
        for queue in (self._own_leave, self._broadcasts, self._query_broadcasts, self._event_broadcasts):
            if limit - used <= overhead:
                break
            got = queue.get_broadcasts(overhead, limit - used, n)
            used += sum(len(m) + overhead for m in got)
            msgs.extend(got)
        return msgs

    def has_broadcasts(self) -> bool:
        """Whether any of the queues get_broadcasts reads holds something (the node's gossip ticker sleeps
        otherwise)."""
        return any(len(q) for q in (self._own_leave, self._broadcasts, self._query_broadcasts, self._event_broadcasts))

    def local_state(self, join: bool) -> bytes:
        """messagePushPull: our clocks, every member's status LTime, the left members, recent events."""
        pp = SerfPushPull(
            ltime=self.clock.time(),
            status_ltimes={name: ms.status_ltime for name, ms in self._members.items()},
            left_members=tuple(self._left),
            event_ltime=self.event_clock.time(),
            events=tuple(sorted(self._event_buffer.values(), key=lambda e: e.ltime)),
            query_ltime=self.query_clock.time(),
        )
        return encode_message(pp)

    def merge_remote_state(self, now: float, buf: bytes, join: bool) -> None:
        """serf's MergeRemoteState: witness the clocks, replay left members as leaves and the rest as joins."""
        self._now = now
        if not buf:
            self._malformed(_LEVEL_ERROR, "serf: remote state is zero bytes")
            return
        if buf[0] != SerfMessageType.PUSH_PULL:
            self._malformed(_LEVEL_ERROR, f"serf: remote state has bad type prefix {buf[0]}")
            return
        try:
            pp = decode_message(bytes(buf))
        except SerfDecodeError as exc:
            self._malformed(_LEVEL_ERROR, f"serf: failed to decode remote state: {exc}")
            return
        assert isinstance(pp, SerfPushPull)
        # Minus one: no message with the sender's current time has been sent yet.
        if pp.ltime > 0:
            self.clock.witness(pp.ltime - 1)
        if pp.event_ltime > 0:
            self.event_clock.witness(pp.event_ltime - 1)
        if pp.query_ltime > 0:
            self.query_clock.witness(pp.query_ltime - 1)
        # Left members first, one past their join time: the leave was accepted after that join.
        left = set(pp.left_members)
        for name in pp.left_members:
            self._handle_leave_intent(LeaveIntent(pp.status_ltimes.get(name, 0) + 1, name))
        for name, ltime in pp.status_ltimes.items():
            if name not in left:
                self._handle_join_intent(JoinIntent(ltime, name))
        if join and self._event_join_ignore() and pp.event_ltime > self._event_min_time:
            self._event_min_time = pp.event_ltime
        for at in pp.events:
            for record in at.events:
                self._handle_user_event(UserEventMessage(at.ltime, record.name, record.payload))

    def ack_payload(self) -> bytes:
        """serf's pingDelegate.AckPayload: version byte + our coordinate (empty with disable_coordinates)."""
        return self._ack_payload

    def notify_ping_complete(self, node: NodeState, rtt: float, payload: bytes) -> None:
        """serf's pingDelegate.NotifyPingComplete: a direct ping's RTT and the peer's coordinate update ours.

        A payload we cannot use (version, msgpack, dimensionality, NaN, RTT range) is dropped with a debug line
        and leaves our coordinate, filters and cache as they were."""
        client = self._coord_client
        if client is None or not payload:
            return
        try:
            other = decode_ack_payload(payload)
        except CoordinateError as exc:
            self._malformed(_LEVEL_DEBUG, f"serf: bad ping payload from {node.name}: {exc}")
            return
        before = client.coordinate
        try:
            mine = client.update(node.name, other, rtt)
        except CoordinateError as exc:  # well-formed but unusable (dimensionality, NaN, RTT range): serf's TRACE
            self.coordinate_counts["rejected"] += 1
            self._diag(_LEVEL_DEBUG, f"serf: rejected coordinate from {node.name}: {exc}", "coordinate-rejected")
            return
        if rtt == 0:
            self.coordinate_counts["zero_rtt"] += 1
        self.coordinate_adjustments.append(before.distance_to(mine) * 1000.0)
        self._coord_cache[node.name] = other
        self._coord_cache[self.name] = mine
        self._ack_payload = encode_ack_payload(mine)

    def notify_conflict(self, existing: NodeState, other: NodeState) -> None:
        """Two addresses claim one name: log both. memberlist keeps the first address (no flapping); we vote
        when the claimant asks (_serf_conflict) but, unlike serf, never start a vote or shut down ourselves."""
        there = f"{other.addr[0]}:{other.addr[1]}"
        if existing.name != self.name:
            here = f"{existing.addr[0]}:{existing.addr[1]}"
            self._diag(
                _LEVEL_WARN,
                f"serf: name conflict for {existing.name!r}: both {here} and {there} claim it",
                "name-conflict",
            )
        else:
            self._diag(
                _LEVEL_ERROR,
                f"serf: node name {self.name!r} conflicts with another node at {there}; names must be unique",
                "name-conflict",
            )

    def notify_join(self, now: float, node: NodeState) -> None:
        self._now = now
        self._handle_node_join(node)

    def notify_leave(self, now: float, node: NodeState) -> None:
        self._now = now
        self._handle_node_leave(node)

    def notify_update(self, now: float, node: NodeState) -> None:
        self._now = now
        self._handle_node_update(node)

    # ------------------------------------------------------------------ memberlist events -> statuses

    def _handle_node_join(self, node: NodeState) -> None:
        """serf's handleNodeJoin: a new member takes any buffered intent; a known one becomes alive again."""
        ms = self._members.get(node.name)
        if ms is None:
            old = MemberStatus.NONE
            ms = _MemberState(self._member_from(node, MemberStatus.ALIVE))
            intent = self._recent_intents.get(node.name)
            if intent is not None and intent.type == SerfMessageType.JOIN:
                ms.status_ltime = intent.ltime
            if intent is not None and intent.type == SerfMessageType.LEAVE:
                ms.status = MemberStatus.LEAVING
                ms.status_ltime = intent.ltime
            self._members[node.name] = ms
        else:
            old = ms.status
            ms.status = MemberStatus.ALIVE
            ms.leave_time = 0.0
            self._refresh(ms.member, node)
        self._set_versions(ms.member, node)
        if old in (MemberStatus.FAILED, MemberStatus.LEFT):
            self._forget_gone(node.name)
        self._emit(EventKind.MEMBER_JOIN, ms)

    def _handle_node_leave(self, node: NodeState) -> None:
        """serf's handleNodeLeave: leaving -> left, alive -> failed.

        One addition: memberlist's LEFT state (the member announced its own death) also means left, so a peer
        that missed the leave intent never reports a graceful leave as a failure.
        """
        ms = self._members.get(node.name)
        if ms is None:
            return
        graceful = node.state == NodeStateType.LEFT
        if ms.status == MemberStatus.LEAVING or (ms.status == MemberStatus.ALIVE and graceful):
            ms.status, kind = MemberStatus.LEFT, EventKind.MEMBER_LEAVE
            self._left.append(ms.name)
        elif ms.status == MemberStatus.ALIVE:
            ms.status, kind = MemberStatus.FAILED, EventKind.MEMBER_FAILED
            self._failed.append(ms.name)
        else:
            self._diag(_LEVEL_WARN, f"serf: bad state when leave: {node.name} is {ms.status}")
            return
        ms.leave_time = self._now
        self._emit(kind, ms)

    def _handle_node_update(self, node: NodeState) -> None:
        ms = self._members.get(node.name)
        if ms is None:
            return
        self._refresh(ms.member, node)
        self._set_versions(ms.member, node)
        self._emit(EventKind.MEMBER_UPDATE, ms)

    def _member_from(self, node: NodeState, status: MemberStatus) -> Member:
        tags = self._decode_tags(node.meta)
        return Member(node.name, node.addr[0], node.addr[1], tags, status)

    def _refresh(self, member: Member, node: NodeState) -> None:
        member.addr, member.port = node.addr[0], node.addr[1]
        member.tags = self._decode_tags(node.meta)

    @staticmethod
    def _set_versions(member: Member, node: NodeState) -> None:
        vsn = bytes(node.vsn or b"").ljust(6, b"\0")
        (
            member.protocol_min,
            member.protocol_max,
            member.protocol_cur,
            member.delegate_min,
            member.delegate_max,
            member.delegate_cur,
        ) = vsn[:6]

    def _decode_tags(self, meta: bytes) -> dict[str, str]:
        """Decoded once per distinct meta and shared by every member record (of every Serf in the process)
        that carries it: the records are per pair of members, and their tags are never changed in place
        (a new dict replaces them; Member.copy hands out copies)."""
        meta = bytes(meta or b"")
        tags = _SHARED_TAGS.get(meta)
        if tags is None:
            tags, error = decode_tags(meta)
            if error is not None:
                self._malformed(_LEVEL_ERROR, f"serf: {error}")
                return tags
            if len(_SHARED_TAGS) >= _SHARED_TAGS_MAX:
                _SHARED_TAGS.clear()
            _SHARED_TAGS[meta] = tags
        return tags

    # ------------------------------------------------------------------ intents (Lamport-ordered)

    def _handle_join_intent(self, msg: JoinIntent) -> bool:
        """serf's handleNodeJoinIntent; returns whether to rebroadcast (only news is)."""
        self.clock.witness(msg.ltime)
        ms = self._members.get(msg.node)
        if ms is None:
            return self._upsert_intent(msg.node, SerfMessageType.JOIN, msg.ltime)
        if msg.ltime <= ms.status_ltime:
            return False
        ms.status_ltime = msg.ltime
        if ms.status == MemberStatus.LEAVING:  # the leave we saw was older than this join
            ms.status = MemberStatus.ALIVE
            self._events.append(MemberStatusChanged(ms.member.copy()))
        return True

    def _handle_leave_intent(self, msg: LeaveIntent) -> bool:
        """serf's handleNodeLeaveIntent; a leave about us while we are alive is refuted with a newer join."""
        self.clock.witness(msg.ltime)
        ms = self._members.get(msg.node)
        if ms is None:
            return self._upsert_intent(msg.node, SerfMessageType.LEAVE, msg.ltime)
        if msg.ltime <= ms.status_ltime:
            return False
        if msg.node == self.name and self.state == SerfState.ALIVE:
            self._diag(_LEVEL_DEBUG, "serf: refuting an older leave intent")
            self._broadcast_join(self.clock.time())
            return False
        # Record the time even without a status change, or two peers rebroadcast each other forever
        # (consul#8179).
        ms.status_ltime = msg.ltime
        match ms.status:
            case MemberStatus.ALIVE:
                ms.status = MemberStatus.LEAVING
                self._events.append(MemberStatusChanged(ms.member.copy()))
            case MemberStatus.FAILED:
                ms.status = MemberStatus.LEFT
                self._failed.remove(ms.name)
                self._left.append(ms.name)
                self._emit(EventKind.MEMBER_LEAVE, ms)  # forced: the failed member is now left
            case MemberStatus.LEAVING | MemberStatus.LEFT:
                pass
            case _:
                return False
        if msg.prune:
            self._handle_prune(ms)
        return True

    def _upsert_intent(self, name: str, kind: SerfMessageType, ltime: int) -> bool:
        """Buffer an intent about a member memberlist has not reported; True if it was news."""
        known = self._recent_intents.get(name)
        if known is None or ltime > known.ltime:
            self._recent_intents[name] = _Intent(kind, self._now, ltime)
            return True
        return False

    def _broadcast_join(self, ltime: int) -> None:
        """Announce (or re-announce, to refute a leave) our join at `ltime`."""
        msg = JoinIntent(ltime, self.name)
        self.clock.witness(ltime)
        self._handle_join_intent(msg)
        self._broadcasts.queue(None, encode_message(msg))

    def _handle_prune(self, ms: _MemberState) -> None:
        """Erase a member on a pruning force-leave; a still-leaving one first gets time to finish leaving."""
        if ms.status == MemberStatus.LEAVING:
            delay = self.config.broadcast_timeout + self.config.leave_propagate_delay
            self._prunes.append((self._now + delay, ms.name))
            return
        self._erase(ms)

    def _run_prunes(self, now: float) -> None:
        due = [name for deadline, name in self._prunes if deadline <= now]
        self._prunes = [(d, n) for d, n in self._prunes if d > now]
        for name in due:
            ms = self._members.get(name)
            # serf erases regardless; we spare a member that re-joined meanwhile, or it would vanish for good.
            if ms is not None and ms.status != MemberStatus.ALIVE:
                self._erase(ms)

    def _erase(self, ms: _MemberState) -> None:
        """serf's eraseNode: forget the member entirely (member-reap)."""
        self._members.pop(ms.name, None)
        self._forget_gone(ms.name)
        if self._coord_client is not None:
            self._coord_client.forget_node(ms.name)
            self._coord_cache.pop(ms.name, None)
        self._diag(_LEVEL_INFO, f"serf: EventMemberReap: {ms.name}", "reap")
        self._emit(EventKind.MEMBER_REAP, ms)

    def _forget_gone(self, name: str) -> None:
        if name in self._failed:
            self._failed.remove(name)
        if name in self._left:
            self._left.remove(name)

    # ------------------------------------------------------------------ user events and queries

    def _handle_user_event(self, msg: UserEventMessage) -> bool:
        """serf's handleUserEvent: dedupe in the LTime-indexed buffer; True (rebroadcast) for news."""
        self.event_clock.witness(msg.ltime)
        if msg.ltime < self._event_min_time:
            return False
        size = self.config.event_buffer
        cur = self.event_clock.time()
        if cur > size and msg.ltime < cur - size:
            self._diag(_LEVEL_WARN, f"serf: received old event {msg.name} from time {msg.ltime} (current {cur})")
            return False
        slot = msg.ltime % size
        seen = self._event_buffer.get(slot)
        record = UserEventRecord(msg.name, msg.payload)
        if seen is not None and seen.ltime == msg.ltime:
            if record in seen.events:
                return False
            seen = attrs.evolve(seen, events=(*seen.events, record))
        else:
            seen = UserEventsAt(msg.ltime, (record,))
        self._event_buffer[slot] = seen
        self._events.append(UserEvent(msg.ltime, msg.name, msg.payload, msg.cc))
        return True

    def _handle_query(self, msg: QueryMessage) -> bool:
        """serf's handleQuery: keep the clock, dedupe (so we relay each query once), ack when asked and answer
        the internal queries a serf agent without handlers answers (ping, conflict); others go unanswered."""
        self.query_clock.witness(msg.ltime)
        if msg.ltime < self._query_min_time:
            return False
        size = self.config.query_buffer
        cur = self.query_clock.time()
        if cur > size and msg.ltime < cur - size:
            self._diag(_LEVEL_WARN, f"serf: received old query {msg.name} from time {msg.ltime} (current {cur})")
            return False
        slot = msg.ltime % size
        seen = self._query_buffer.get(slot)
        if seen is not None and seen[0] == msg.ltime:
            if msg.id in seen[1]:
                return False
            seen[1].append(msg.id)
        else:
            self._query_buffer[slot] = (msg.ltime, [msg.id])
        rebroadcast = not msg.no_broadcast
        if not self._should_process_query(msg.filters):
            return rebroadcast  # not for us, but news: pass it on
        if msg.ack:
            self._respond(msg, QueryResponseMessage(msg.ltime, msg.id, self.name, QUERY_FLAG_ACK))
        if msg.name == INTERNAL_QUERY_PREFIX + "conflict":
            self._answer_conflict(msg)
        elif msg.name.startswith(INTERNAL_QUERY_PREFIX) and msg.name[len(INTERNAL_QUERY_PREFIX) :] in KEY_OPERATIONS:
            self._answer_key_query(msg)
        elif msg.name != INTERNAL_QUERY_PREFIX + "ping":  # a ping is answered by its ack alone
            self._diag(_LEVEL_DEBUG, f"serf: query {msg.name!r} from {msg.source_node} not answered")
        return rebroadcast

    # ------------------------------------------------------------------ key queries (protocol/keymanager.py)

    def key_query(self, now: float, operation: str, key_b64: str = "", relay_factor: int = 0) -> int:
        """Ask every member to install, use, remove or list keys (serf's KeyManager); returns a handle.

        A ``KeyQueryDone`` event with that handle follows once every live member answered or the query timed
        out. A malformed key raises KeyringError before anything is sent.
        """
        self._now = now
        key = request_key(operation, key_b64)
        if not 0 <= relay_factor <= 5:
            raise ValueError("relay factor must be in range: [0, 5]")
        local = self.node.local
        num_nodes = self.node.num_alive()
        timeout = key_query_timeout(self.config.gossip_interval, self.config.query_timeout_mult, num_nodes)
        query = QueryMessage(
            ltime=self.query_clock.time(),
            id=self.rng.getrandbits(31),
            addr=ipaddress.ip_address(local.addr[0]).packed,
            port=local.addr[1],
            source_node=self.name,
            relay_factor=relay_factor,
            timeout=int(timeout * 1e9),
            name=INTERNAL_QUERY_PREFIX + operation,
            payload=encode_key_request(key),
        )
        raw = encode_message(query)
        if len(raw) > self.config.query_size_limit:
            raise ValueError(f"query exceeds limit of {self.config.query_size_limit} bytes")
        self.query_clock.increment()
        self._key_handles += 1
        pending = KeyQuery(self._key_handles, operation, query.ltime, query.id, now + timeout, KeyResponse(num_nodes))
        self._key_queries[(query.ltime, query.id)] = pending
        self._handle_query(query)  # we answer our own query too, as serf does
        self._query_broadcasts.queue(None, raw)
        self._finish_key_query_if_complete(pending)
        return pending.handle

    def _answer_key_query(self, msg: QueryMessage) -> None:
        operation = msg.name.removeprefix(INTERNAL_QUERY_PREFIX)
        overhead = len(encode_message(QueryResponseMessage(msg.ltime, msg.id, self.name, 0, b"")))
        answer, changed = answer_key_query(
            self.keyring, operation, msg.payload, self.config.query_response_size_limit - overhead
        )
        level = _LEVEL_INFO if answer.result else _LEVEL_WARN
        outcome = "" if answer.result else f": {answer.message}"
        self._diag(level, f"serf: received {operation} query from {msg.source_node}{outcome}", "key-query")
        if changed and self.keyring is not None:
            self._events.append(KeyringChanged(tuple(self.keyring.encoded())))
        payload = encode_key_response(answer)
        self._respond(msg, QueryResponseMessage(msg.ltime, msg.id, self.name, 0, payload))

    def _handle_query_response(self, msg: QueryResponseMessage) -> None:
        pending = self._key_queries.get((msg.ltime, msg.id))
        if pending is None:
            self._diag(_LEVEL_DEBUG, f"serf: reply for non-running query {msg.ltime}/{msg.id}")
            return
        if msg.flags & QUERY_FLAG_ACK:
            return
        warning = pending.add(msg.from_, msg.payload)
        if warning:
            self._diag(_LEVEL_WARN, f"serf: {warning}", "key-query")
        self._finish_key_query_if_complete(pending)

    def _finish_key_query_if_complete(self, pending: KeyQuery) -> None:
        if pending.complete and self._key_queries.pop((pending.ltime, pending.id), None) is not None:
            self._events.append(pending.done())

    def _expire_key_queries(self, now: float) -> None:
        for key, pending in list(self._key_queries.items()):
            if now >= pending.deadline:
                del self._key_queries[key]
                self._events.append(pending.done())

    def _should_process_query(self, filters: tuple[bytes, ...]) -> bool:
        """serf's shouldProcessQuery: every filter must select us; an unreadable filter selects nobody."""
        for raw in filters:
            try:
                f = decode_filter(raw)
            except SerfDecodeError as exc:
                self._diag(_LEVEL_WARN, f"serf: bad query filter: {exc}")
                return False
            if isinstance(f, NodeFilter):
                if self.name not in f.names:
                    return False
                continue
            try:
                if re.search(f.expr, self._tags.get(f.tag, "")) is None:  # Go's regexp.MatchString
                    return False
            except re.error as exc:
                self._diag(_LEVEL_WARN, f"serf: failed to compile filter regex ({f.expr}): {exc}")
                return False
        return True

    def _answer_conflict(self, msg: QueryMessage) -> None:
        """Vote in a name conflict: tell the asker where we believe that member lives (serf handleConflict)."""
        name = go_str(msg.payload)
        if name == self.name:
            return
        ms = self._members.get(name)
        info = None if ms is None else _member_info(ms.member)
        payload = encode_message(ConflictResponse(info))
        self._respond(msg, QueryResponseMessage(msg.ltime, msg.id, self.name, 0, payload))

    def _respond(self, msg: QueryMessage, resp: QueryResponseMessage) -> None:
        """Send a query response (or ack) straight to the asker, plus relay_factor copies through peers."""
        raw = encode_message(resp)
        limit = self.config.query_response_size_limit
        if len(raw) > limit:
            self._diag(_LEVEL_ERROR, f"serf: query response of {len(raw)} bytes exceeds the limit of {limit}")
            return
        if msg.source_node == self.name and (msg.ltime, msg.id) in self._key_queries:
            self._handle_query_response(resp)  # our own query: serf sends itself a UDP packet, we skip the trip
            return
        try:
            dest = (_ip_text(msg.addr), msg.port)
        except ValueError as exc:
            self._diag(_LEVEL_WARN, f"serf: query {msg.name!r} has a bad source address: {exc}")
            return
        self.node.send_best_effort(dest, raw, msg.source_node)
        self._relay_response(msg, raw)

    def _relay_response(self, msg: QueryMessage, inner: bytes) -> None:
        """serf's relayResponse: the same response through up to relay_factor random live v5 members."""
        if msg.relay_factor == 0 or len(self._members) < msg.relay_factor + 1:
            return
        raw = encode_message(RelayMessage(msg.addr, msg.port, msg.source_node, inner))
        if len(raw) > self.config.query_response_size_limit:
            self._diag(_LEVEL_ERROR, "serf: relayed response exceeds the query response size limit")
            return
        relays = [
            ms.member
            for name, ms in self._members.items()
            if name != self.name and ms.status == MemberStatus.ALIVE and ms.member.protocol_max >= 5
        ]
        for m in self.rng.sample(relays, min(msg.relay_factor, len(relays))):
            self.node.send_best_effort((m.addr, m.port), raw, m.name)

    def _handle_relay(self, msg: RelayMessage) -> None:
        """Forward a relayed query response to its destination (serf: SendToAddress)."""
        try:
            dest = (_ip_text(msg.dest_ip), msg.dest_port)
        except ValueError as exc:
            self._diag(_LEVEL_ERROR, f"serf: bad relay destination for {msg.dest_name}: {exc}")
            return
        self._diag(_LEVEL_DEBUG, f"serf: relaying response to {dest[0]}:{dest[1]}")
        self.node.send_best_effort(dest, msg.inner, msg.dest_name)

    def _event_join_ignore(self) -> bool:
        return any(op.ignore_old for op in self._join_ops)

    # ------------------------------------------------------------------ periodic work

    def _reap(self, now: float) -> None:
        """Erase failed members past reconnect_timeout and left ones past tombstone_timeout; expire intents."""
        timeouts = ((self._failed, self.config.reconnect_timeout), (self._left, self.config.tombstone_timeout))
        for names, timeout in timeouts:
            for name in list(names):
                ms = self._members.get(name)
                if ms is not None and now - ms.leave_time > timeout:
                    self._erase(ms)
        horizon = self.config.recent_intent_timeout
        for name in [n for n, i in self._recent_intents.items() if now - i.wall_time > horizon]:
            del self._recent_intents[name]

    def _reconnect(self, now: float) -> None:
        """Maybe join one failed member: with probability failed/alive, so the cluster tries each about once
        per interval. This is what heals a partition after memberlist has declared the far side dead."""
        if self.state != SerfState.ALIVE or not self._failed:
            return
        num_alive = len(self._members) - len(self._failed) - len(self._left)
        prob = len(self._failed) / max(num_alive, 1)
        if self.rng.random() > prob:
            return
        ms = self._members[self._failed[self.rng.randrange(len(self._failed))]]
        addr = (ms.member.addr, ms.member.port)
        self._diag(_LEVEL_INFO, f"serf: attempting reconnect to {ms.name} {addr[0]}:{addr[1]}", "reconnect")
        self._join_ops.append(_JoinOp([addr], ignore_old=False, user=False))
        self.node.join(now, [addr])

    def _check_queues(self) -> None:
        """serf's checkQueueDepth: warn on deep queues and drop the excess past the maximum."""
        cap = self.config.max_queue_depth
        if self.config.min_queue_depth > 0:
            cap = max(2 * len(self._members), self.config.min_queue_depth)
        for label, queue in (
            ("intent", self._broadcasts),
            ("event", self._event_broadcasts),
            ("query", self._query_broadcasts),
        ):
            depth = len(queue)
            if depth >= self.config.queue_depth_warning:
                self._diag(_LEVEL_WARN, f"serf: {label} queue depth: {depth}")
            if depth > cap:
                self._diag(_LEVEL_WARN, f"serf: {label} queue depth ({depth}) exceeds limit ({cap}), dropping")
                queue.prune(cap)

    # ------------------------------------------------------------------ graceful leave

    def _on_leave_intent_sent(self) -> None:
        """The intent is fully gossiped: the memberlist leave may start, though not before the grace is over."""
        op = self._leave
        if op is not None and op.phase == "intent":
            op.intent_sent = True
            op.deadline = min(op.deadline, max(self._now, op.not_before))

    def _start_memberlist_leave(self, now: float) -> None:
        if self._leave is None:
            self._leave = _LeaveOp("memberlist", now)
        self._leave.phase, self._leave.deadline = "memberlist", now + self.config.broadcast_timeout
        self.node.leave(now)

    def _advance_leave(self, now: float) -> None:
        """Step the leave along; every phase is bounded by its deadline, and a missed one is reported."""
        op = self._leave
        if op is None:
            return
        if op.phase == "intent" and now >= op.deadline:
            if not op.intent_sent:
                op.timed_out = True
                self._diag(_LEVEL_WARN, "serf: timeout while waiting for graceful leave intent to spread", "leave")
            self._start_memberlist_leave(now)
        if op.phase == "memberlist" and (op.node_left or now >= op.deadline):
            if not op.node_left:
                op.timed_out = True
                self._diag(_LEVEL_WARN, "serf: timeout waiting for the memberlist leave broadcast", "leave")
            op.phase, op.deadline = "propagate", now + self.config.leave_propagate_delay
        if op.phase == "propagate" and now >= op.deadline:
            self._leave = None
            self.state = SerfState.LEFT
            self._events.append(LeaveDone(op.timed_out))

    # ------------------------------------------------------------------ node events

    def _pump(self) -> None:
        """Drain the Node's events: member changes arrive through the delegate, the rest is ours to route."""
        while (ev := self.node.poll_event()) is not None:
            if isinstance(ev, NodeJoin | NodeLeave | NodeUpdate):
                continue
            if isinstance(ev, LeaveDone):
                if self._leave is not None and self._leave.phase == "memberlist":
                    self._leave.node_left = True
                    self._leave.timed_out |= ev.timed_out
                continue
            if isinstance(ev, JoinResult):
                self._on_join_result(ev)
                continue
            self._events.append(ev)
        if self._leave is not None:
            self._advance_leave(self._now)

    def _on_join_result(self, ev: JoinResult) -> None:
        """Match a JoinResult to its join; a user join announces us once, on its first success."""
        op = next((o for o in self._join_ops if ev.addr in o.pending), None)
        if op is None:
            self._events.append(ev)
            return
        op.pending.remove(ev.addr)
        if not op.pending:
            self._join_ops.remove(op)
        if not op.user:
            outcome = "ok" if ev.ok else f"failed: {ev.error}"
            self._diag(_LEVEL_DEBUG, f"serf: reconnect to {ev.addr[0]}:{ev.addr[1]} {outcome}", "reconnect")
            return
        if ev.ok and not op.announced and self.state == SerfState.ALIVE:
            op.announced = True
            self._broadcast_join(self.clock.time())
        self._events.append(ev)

    # ------------------------------------------------------------------ helpers

    def _has_alive_members(self) -> bool:
        return any(ms.status == MemberStatus.ALIVE for n, ms in self._members.items() if n != self.name)

    def _emit(self, kind: EventKind, ms: _MemberState) -> None:
        self._events.append(MemberEvent(kind, ms.member.copy()))

    def _diag(self, level: str, message: str, kind: str = "serf") -> None:
        self._events.append(Diagnostic(level, message, kind))

    def _malformed(self, level: str, message: str) -> None:
        """A Serf message (or push/pull state, or tags) we cannot read: dropped, counted and logged."""
        self.malformed += 1
        self._diag(level, message, "serf-malformed")


_SHARED_TAGS: dict[bytes, dict[str, str]] = {}
_SHARED_TAGS_MAX = 1 << 16


def _ip_text(ip: bytes) -> str:
    """net.IP bytes (4 or 16, v4-in-v6 mapped) as text."""
    if len(ip) == 16 and ip[:12] == b"\0" * 10 + b"\xff\xff":
        ip = ip[12:]
    return str(ipaddress.ip_address(ip))


def _member_info(m: Member) -> MemberInfo:
    """A Member as serf encodes it in a conflict response."""
    return MemberInfo(
        name=m.name,
        ip=ipaddress.ip_address(m.addr).packed,
        port=m.port,
        tags=dict(m.tags),
        status=int(m.status),
        protocol_min=m.protocol_min,
        protocol_max=m.protocol_max,
        protocol_cur=m.protocol_cur,
        delegate_min=m.delegate_min,
        delegate_max=m.delegate_max,
        delegate_cur=m.delegate_cur,
    )
