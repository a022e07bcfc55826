"""Serf as memberlist's delegate: what Serf puts into and takes out of memberlist (serf's delegate.go,
event_delegate.go, conflict_delegate.go; the ping delegate is protocol/serf_coordinates.py).

Serf messages arrive as memberlist user messages and are routed to the member table (intents), the user events
or the queries; each part's news is rebroadcast on its own queue, and get_broadcasts packs the queues into
memberlist's gossip as serf does. Push/pull carries the clocks, every member's status LTime, the left members
and the recent user events.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from protocol.go_msgpack import go_str, unpackb
from protocol.interning import bounded_put
from protocol.node import Delegate
from protocol.serf_coordinates import Coordinates
from protocol.serf_core import LEVEL_DEBUG, LEVEL_ERROR, LEVEL_WARN, SerfCore
from protocol.serf_events import APP_MESSAGE_TYPE, AppMessage
from protocol.serf_leave import GracefulLeave
from protocol.serf_members import MemberTable
from protocol.serf_messages import (
    JoinIntent,
    LeaveIntent,
    QueryMessage,
    QueryResponseMessage,
    RelayMessage,
    SerfDecodeError,
    SerfMessageType,
    SerfPushPull,
    UserEventMessage,
    decode_message,
    encode_message,
    encode_tags,
)
from protocol.serf_queries import Queries
from protocol.serf_user_events import UserEvents
from protocol.state import NodeState

# Join and leave intents are gossiped: each member gets each one about retransmit_mult * log10(N) times, from
# different peers. Each distinct intent (the same bytes) is decoded once (the messages are frozen) and the first
# copy of its bytes is the one queued for our rebroadcast; in a simulation the table is shared by every Serf in the
# process, so those bytes, and the decoded LTime the member table keeps, are one object for all (issue 14).
# Bounded, holding immutable values only.
_INTENT_TYPES = frozenset((SerfMessageType.LEAVE, SerfMessageType.JOIN))
_INTENTS: dict[bytes, tuple[bytes, JoinIntent | LeaveIntent]] = {}


def _decode_intent(payload: bytes) -> tuple[bytes, Any]:
    """decode_message for a join or leave intent, once per distinct payload: (the shared bytes, the message)."""
    found = _INTENTS.get(payload)
    if found is None:
        found = bounded_put(_INTENTS, payload, (payload, decode_message(payload)))
    return found


class SerfDelegate(Delegate):
    """What the Node's delegate does, over one Serf's parts (the Serf is the Node's delegate and calls these)."""

    def __init__(
        self,
        core: SerfCore,
        *,
        table: MemberTable,
        user_events: UserEvents,
        queries: Queries,
        coordinates: Coordinates,
        leaving: GracefulLeave,
        ignoring_old_events: Callable[[], bool],
    ) -> None:
        self._core = core
        self._table = table
        self._user_events = user_events
        self._queries = queries
        self._coords = coordinates
        self._leaving = leaving
        self._ignoring_old_events = ignoring_old_events  # a join with ignore_old is under way

    def node_meta(self, limit: int) -> bytes:
        if len(self._core.meta) > limit:  # serf panics; set_tags already refused anything over 512 bytes
            self._core.diag(LEVEL_ERROR, f"serf: tags need {len(self._core.meta)} bytes, node meta limit is {limit}")
            return encode_tags({}, self._core.config.serf_protocol_version)
        return self._core.meta

    def notify_msg(self, now: float, payload: bytes) -> None:
        """A Serf message that arrived as a memberlist user message; rebroadcast it if it was news."""
        self._core.now = now
        if not payload:
            return
        if payload[0] == APP_MESSAGE_TYPE:
            self._handle_app_message(bytes(payload[1:]))
            return
        payload = bytes(payload)
        try:
            if payload[0] in _INTENT_TYPES:
                payload, msg = _decode_intent(payload)
            else:
                msg = decode_message(payload)
        except SerfDecodeError as exc:
            self._core.drop_malformed(LEVEL_ERROR, f"serf: error decoding message type {payload[0]}: {exc}")
            return
        rebroadcast, queue = False, self._table.broadcasts
        match msg:
            case LeaveIntent():
                rebroadcast = self._table.handle_leave_intent(msg)
            case JoinIntent():
                rebroadcast = self._table.handle_join_intent(msg)
            case UserEventMessage():
                rebroadcast, queue = self._user_events.handle(msg), self._user_events.broadcasts
            case QueryMessage():
                rebroadcast, queue = self._queries.handle(msg), self._queries.broadcasts
            case QueryResponseMessage():
                self._queries.handle_response(msg)
            case RelayMessage():
                self._queries.handle_relay(msg)
            case _:  # push/pull state, conflict and key payloads never travel on their own
                self._core.diag(LEVEL_WARN, f"serf: received message of unexpected type {payload[0]}")
        if rebroadcast:
            queue.queue(None, payload)

    def _handle_app_message(self, body: bytes) -> None:
        try:
            frame = {go_str(k) if isinstance(k, bytes) else k: v for k, v in unpackb(body).items()}
            sender, inner = frame["From"], frame["Payload"]
            sender = go_str(sender) if isinstance(sender, bytes) else sender
            if not isinstance(sender, str) or not isinstance(inner, bytes):
                raise TypeError("From must be a string and Payload bytes")
        except Exception as exc:
            self._core.drop_malformed(LEVEL_DEBUG, f"serf: malformed app message: {exc}")
            return
        self._core.events.append(AppMessage(sender, inner))

    def _queues(self) -> tuple[Any, ...]:
        """Our leave intent first, then intents, queries and events, as serf's GetBroadcasts packs them."""
        return (self._leaving.own_intent, self._table.broadcasts, self._queries.broadcasts,
                self._user_events.broadcasts)

    def has_broadcasts(self) -> bool:
        """Whether any queue get_broadcasts reads holds something (the node's gossip ticker sleeps otherwise)."""
        return any(len(q) for q in self._queues())

    def get_broadcasts(self, overhead: int, limit: int) -> list[bytes]:
        """Our leave intent first, then intents, queries and events, as serf's GetBroadcasts packs them."""
        n = len(self._table.members)
        msgs: list[bytes] = []
        used = 0
        for queue in self._queues():
            if limit - used <= overhead:
                break
            got = queue.get_broadcasts(overhead, limit - used, n)
            used += sum(len(m) + overhead for m in got)
            msgs.extend(got)
        return msgs

    def local_state(self, join: bool) -> bytes:
        """messagePushPull: our clocks, every member's status LTime, the left members, recent events."""
        pp = SerfPushPull(
            ltime=self._core.clock.time(),
            status_ltimes={name: ms.status_ltime for name, ms in self._table.members.items()},
            left_members=tuple(self._table.left),
            event_ltime=self._user_events.clock.time(),
            events=self._user_events.recent(),
            query_ltime=self._queries.clock.time(),
        )
        return encode_message(pp)

    def merge_remote_state(self, now: float, buf: bytes, join: bool) -> None:
        """serf's MergeRemoteState: witness the clocks, replay left members as leaves and the rest as joins."""
        self._core.now = now
        if not buf:
            self._core.drop_malformed(LEVEL_ERROR, "serf: remote state is zero bytes")
            return
        if buf[0] != SerfMessageType.PUSH_PULL:
            self._core.drop_malformed(LEVEL_ERROR, f"serf: remote state has bad type prefix {buf[0]}")
            return
        try:
            pp = decode_message(bytes(buf))
        except SerfDecodeError as exc:
            self._core.drop_malformed(LEVEL_ERROR, f"serf: failed to decode remote state: {exc}")
            return
        assert isinstance(pp, SerfPushPull)
        # Minus one: no message with the sender's current time has been sent yet.
        if pp.ltime > 0:
            self._core.clock.witness(pp.ltime - 1)
        if pp.event_ltime > 0:
            self._user_events.clock.witness(pp.event_ltime - 1)
        if pp.query_ltime > 0:
            self._queries.clock.witness(pp.query_ltime - 1)
        # Left members first, one past their join time: the leave was accepted after that join.
        left = set(pp.left_members)
        for name in pp.left_members:
            self._table.handle_leave_intent(LeaveIntent(pp.status_ltimes.get(name, 0) + 1, name))
        self._table.join_intents(pp.status_ltimes, left)  # no JoinIntent built: a push/pull names every member
        window = self._user_events.window
        if join and self._ignoring_old_events() and pp.event_ltime > window.min_time:
            window.min_time = pp.event_ltime
        for at in pp.events:
            for record in at.events:
                self._user_events.handle(UserEventMessage(at.ltime, record.name, record.payload))

    def ack_payload(self) -> bytes:
        return self._coords.ack_payload()

    def notify_ping_complete(self, node: NodeState, rtt: float, payload: bytes) -> None:
        self._coords.notify_ping_complete(node, rtt, payload)

    def notify_conflict(self, existing: NodeState, other: NodeState) -> None:
        """Two addresses claim one name: log both. memberlist keeps the first address (no flapping); we vote
        when the claimant asks (_serf_conflict) but, unlike serf, never start a vote or shut down ourselves."""
        there = f"{other.addr[0]}:{other.addr[1]}"
        if existing.name != self._core.name:
            here = f"{existing.addr[0]}:{existing.addr[1]}"
            self._core.diag(
                LEVEL_WARN,
                f"serf: name conflict for {existing.name!r}: both {here} and {there} claim it",
                "name-conflict",
            )
        else:
            self._core.diag(
                LEVEL_ERROR,
                f"serf: node name {self._core.name!r} conflicts with another node at {there}; names must be unique",
                "name-conflict",
            )

    def notify_join(self, now: float, node: NodeState) -> None:
        self._core.now = now
        self._table.handle_node_join(node)

    def notify_leave(self, now: float, node: NodeState) -> None:
        self._core.now = now
        self._table.handle_node_leave(node)

    def notify_update(self, now: float, node: NodeState) -> None:
        self._core.now = now
        self._table.handle_node_update(node)
