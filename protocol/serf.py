"""protocol.Serf: hashicorp/serf's membership layer over protocol.Node, sans-IO.

memberlist says who is reachable; Serf adds *why* a member went away (left or failed, ordered by Lamport-stamped
intents), retries failed members until ``reconnect_timeout``, and carries user events, queries and network
coordinates. Serf owns the Node, is its delegate, and forwards its IO surface, so a driver runs it exactly like
a bare Node.

The work is done by parts, each in a file named for its concern, as serf splits serf.go:

- protocol/serf_core.py: what they all share (config, name, tags, the member clock, the lifecycle, the outbox);
- protocol/serf_members.py: statuses from memberlist's events and from intents; prune and reap;
- protocol/serf_user_events.py and protocol/serf_queries.py: user events; queries, answers, relays, key queries;
- protocol/serf_coordinates.py: the ping delegate (Vivaldi coordinates on acks);
- protocol/serf_leave.py: the graceful leave, phase by phase;
- protocol/serf_delegate.py: memberlist's delegate (messages in, broadcasts out, push/pull).

This file keeps the commands, the timers, reconnect, and the routing of the Node's own events.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from typing import Any

import attrs

from protocol.config import Config
from protocol.coordinate import Coordinate
from protocol.go_msgpack import packb
from protocol.keyring import Keyring
from protocol.lamport import LamportClock
from protocol.node import Delegate, JoinResult, LeaveDone, Node, NodeJoin, NodeLeave, NodeUpdate
from protocol.serf_coordinates import Coordinates
from protocol.serf_core import LEVEL_DEBUG, LEVEL_INFO, LEVEL_WARN, SerfCore, SerfState
from protocol.serf_delegate import SerfDelegate
from protocol.serf_events import (
    APP_MESSAGE_TYPE,
    AppMessage,
    EventKind,
    Member,
    MemberEvent,
    MemberStatus,
    MemberStatusChanged,
    UserEvent,
)
from protocol.serf_leave import GracefulLeave
from protocol.serf_members import MemberTable
from protocol.serf_messages import LeaveIntent, check_tags_size, encode_message
from protocol.serf_queries import INTERNAL_QUERY_PREFIX, Queries
from protocol.serf_user_events import UserEvents
from protocol.state import Addr, NodeState

__all__ = [
    "APP_MESSAGE_TYPE",
    "INTERNAL_QUERY_PREFIX",
    "AppMessage",
    "EventKind",
    "Member",
    "MemberEvent",
    "MemberStatus",
    "MemberStatusChanged",
    "NodeFactory",
    "Serf",
    "SerfState",
    "UserEvent",
]

NodeFactory = Callable[..., Node]


@attrs.define
class _JoinOp:
    """One outstanding Node.join: which addresses still owe a JoinResult, and what to do on success."""

    pending: list[Addr]
    ignore_old: bool
    user: bool
    announced: bool = False


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
        own_tags = dict(tags or {})
        meta = check_tags_size(own_tags, config.serf_protocol_version)
        self._core = core = SerfCore(config, name, rng, now, own_tags, meta, keyring)

        self._coords = Coordinates(core)
        self._table = MemberTable(core, self._coords.forget)
        self._user_events = UserEvents(core)
        # The Node is built last (it calls us, its delegate, while it is built): the parts that send through it
        # read it when they send.
        self._queries = Queries(core, self._table, self._get_node)
        self._leaving = GracefulLeave(core, self._table, self._get_node)
        self._delegate = SerfDelegate(
            core,
            table=self._table,
            user_events=self._user_events,
            queries=self._queries,
            coordinates=self._coords,
            leaving=self._leaving,
            ignoring_old_events=self._event_join_ignore,
        )
        self._join_ops: list[_JoinOp] = []
        self._next_reap = now + config.reap_interval
        self._next_reconnect = now + config.reconnect_interval
        self._next_queue_check = now + config.queue_check_interval

        extra = {"keyring": keyring} if keyring is not None else {}
        self.node: Node = node_factory(config, name=name, addr=addr, rng=rng, now=now, delegate=self, **extra)
        if name not in self._table.members:  # the Node may or may not report itself; serf knows itself either way
            self._table.handle_node_join(self.node.local)
        self._pump()

    def _get_node(self) -> Node:
        return self.node

    # ------------------------------------------------------------------ the parts' state, as serf names it

    @property
    def state(self) -> SerfState:
        return self._core.state

    @state.setter
    def state(self, value: SerfState) -> None:
        self._core.state = value

    @property
    def clock(self) -> LamportClock:
        """The member clock (join and leave intents)."""
        return self._core.clock

    @property
    def event_clock(self) -> LamportClock:
        return self._user_events.clock

    @property
    def query_clock(self) -> LamportClock:
        return self._queries.clock

    @property
    def malformed(self) -> int:
        """Serf messages dropped as unreadable (not in stats(): that mirrors serf's own keys)."""
        return self._core.malformed

    @property
    def coordinate_counts(self) -> dict[str, int]:
        """serf's coordinate metrics: samples refused by the client, and zero RTTs."""
        return self._coords.counts

    @property
    def coordinate_adjustments(self) -> deque[float]:
        """How far each coordinate update moved us (ms; the owner drains it, as Node.probe_durations)."""
        return self._coords.adjustments

    # ------------------------------------------------------------------ IO surface, forwarded to the Node

    def handle_datagram(self, now: float, addr: Addr, data: bytes) -> None:
        self._core.now = now
        self.node.handle_datagram(now, addr, data)
        self._pump()

    def handle_stream(self, now: float, addr: Addr, data: bytes) -> bytes | None:
        self._core.now = now
        reply = self.node.handle_stream(now, addr, data)
        self._pump()
        return reply

    def accept_stream(self, now: float, addr: Addr) -> int:
        self._core.now = now
        return self.node.accept_stream(now, addr)

    def handle_stream_data(self, now: float, stream_id: int, data: bytes) -> bytes | None:
        self._core.now = now
        reply = self.node.handle_stream_data(now, stream_id, data)
        self._pump()
        return reply

    def close_stream(self, stream_id: int) -> None:
        self.node.close_stream(stream_id)

    def handle_stream_reply(self, now: float, stream_id: int, data: bytes) -> bool:
        self._core.now = now
        done = self.node.handle_stream_reply(now, stream_id, data)
        self._pump()
        return bool(done)

    def handle_stream_error(self, now: float, stream_id: int, reason: str) -> None:
        self._core.now = now
        self.node.handle_stream_error(now, stream_id, reason)
        self._pump()

    def handle_timeout(self, now: float) -> None:
        """Run the Node's due timers, then ours (reap, reconnect, queue check, leave phases, prunes)."""
        self._core.now = now
        self.node.handle_timeout(now)
        self._pump()
        if self.state == SerfState.SHUTDOWN:
            return
        self._table.run_prunes(now)
        self._queries.expire(now)
        self._leaving.advance(now)
        if now >= self._next_reap:
            self._next_reap = now + self.config.reap_interval
            self._table.reap(now)
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
        events = self._core.events
        return events.popleft() if events else None

    def poll_timeout(self) -> float | None:
        """The earliest of the Node's next timer and ours."""
        node_deadline = self.node.poll_timeout()
        if self.state == SerfState.SHUTDOWN:
            return node_deadline
        ours = [self._next_reap, self._next_reconnect, self._next_queue_check]
        if self._leaving.op is not None:
            ours.append(self._leaving.op.deadline)
        ours.extend(deadline for deadline, _ in self._table.prunes)
        ours.extend(self._queries.deadlines())
        mine = min(ours)
        return mine if node_deadline is None else min(mine, node_deadline)

    # ------------------------------------------------------------------ commands

    def join(self, now: float, addrs: list[Addr], ignore_old: bool = False) -> None:
        """memberlist join to each address; on the first success, announce ourselves with a join intent."""
        self._core.now = now
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
        self._core.now = now
        if self.state == SerfState.LEFT:
            self._core.events.append(LeaveDone())
            return
        if self.state == SerfState.LEAVING:
            self._core.diag(LEVEL_WARN, "serf: leave already in progress")
            return
        if self.state == SerfState.SHUTDOWN:
            raise RuntimeError("Serf can't leave after shutdown")
        self._leaving.start(now)
        self._pump()

    def set_tags(self, now: float, tags: dict[str, str]) -> None:
        """New tags for us: checked against the 512-byte meta limit (ValueError), then gossiped by the Node."""
        self._core.now = now
        meta = check_tags_size(tags, self.config.serf_protocol_version)
        self._core.tags, self._core.meta = dict(tags), meta
        local = self._table.members.get(self.name)
        if local is not None:  # our record's ident is shared and never changed in place: a new one, our own
            local.ident = attrs.evolve(local.ident, tags=dict(tags))
        self.node.update_meta(now)
        self._pump()

    def force_leave(self, now: float, name: str, prune: bool = False) -> None:
        """serf's RemoveFailedNode(Prune): broadcast a leave intent on behalf of `name`.

        A failed member becomes left at once (and stops being reconnected); with `prune` it is erased.
        """
        self._core.now = now
        msg = LeaveIntent(self.clock.time(), name, prune)
        self.clock.increment()
        self._table.handle_leave_intent(msg)
        if self._table.has_alive_members():
            self._table.broadcasts.queue(None, encode_message(msg))
        self._pump()

    def user_event(self, now: float, name: str, payload: bytes = b"", coalesce: bool = True) -> None:
        """Broadcast a user event (serf.UserEvent); raises ValueError beyond user_event_size_limit."""
        self._core.now = now
        self._user_events.send(name, payload, coalesce)

    def key_query(self, now: float, operation: str, key_b64: str = "", relay_factor: int = 0) -> int:
        """Ask every member to install, use, remove or list keys (serf's KeyManager); returns a handle.

        A ``KeyQueryDone`` event with that handle follows once every live member answered or the query timed
        out. A malformed key raises KeyringError before anything is sent.
        """
        self._core.now = now
        return self._queries.key_query(now, operation, key_b64, relay_factor)

    def send_app_message(self, now: float, node_name: str, payload: bytes) -> None:
        """Send an application message to one member over TCP (memberlist's reliable user message).

        Raises KeyError for a member we don't know.  Delivery is best effort beyond TCP: a dial error is only a
        diagnostic, so callers that need an answer keep their own timeout and retry.
        """
        self._core.now = now
        ms = self._table.members[node_name]
        frame = bytes([APP_MESSAGE_TYPE]) + packb({"From": self.name, "Payload": bytes(payload)})
        self.node.send_reliable(ms.addr, frame)
        self._pump()

    def shutdown(self) -> None:
        """Stop at once; peers will see us fail unless leave() finished first."""
        if self.state == SerfState.SHUTDOWN:
            return
        if self.state != SerfState.LEFT:
            self._core.diag(LEVEL_WARN, "serf: shutdown without a leave")
        self.state = SerfState.SHUTDOWN
        self._leaving.op = None
        self._table.prunes.clear()
        self.node.shutdown()

    # ------------------------------------------------------------------ queries

    def members(self) -> list[Member]:
        return [ms.snapshot() for ms in self._table.members.values()]

    def local_member(self) -> Member:
        return self._table.members[self.name].snapshot()

    def member(self, name: str) -> Member | None:
        ms = self._table.members.get(name)
        return ms.snapshot() if ms is not None else None

    @property
    def tags(self) -> dict[str, str]:
        return dict(self._core.tags)

    def coordinate(self) -> Coordinate | None:
        """serf's GetCoordinate: our current network coordinate (None with disable_coordinates)."""
        client = self._coords.client
        return client.coordinate if client is not None else None

    def cached_coordinate(self, name: str) -> Coordinate | None:
        """serf's GetCachedCoordinate: the coordinate a member last sent us on an ack (ours under our name)."""
        return self._coords.cache.get(name)

    def cached_coordinates(self) -> dict[str, Coordinate]:
        """Every cached coordinate by member name (a copy)."""
        return dict(self._coords.cache)

    def stats(self) -> dict[str, int]:
        """serf's Stats, the numeric part (health_score is memberlist's awareness: 0 healthy, up to its max - 1)."""
        client = self._coords.client
        coords = {"coordinate_resets": client.resets} if client is not None else {}
        return {
            **coords,
            "members": len(self._table.members),
            "failed": len(self._table.failed),
            "left": len(self._table.left),
            "health_score": self.node.health_score,
            "member_time": self.clock.time(),
            "event_time": self.event_clock.time(),
            "query_time": self.query_clock.time(),
            "intent_queue": len(self._table.broadcasts) + len(self._leaving.own_intent),
            "event_queue": len(self._user_events.broadcasts),
            "query_queue": len(self._queries.broadcasts),
        }

    # ------------------------------------------------------------------ the Node's delegate (protocol/serf_delegate.py)
    # The Node calls these on the Serf, so that a subclass (a test's hostile or slow peer) can stand in for them.

    def node_meta(self, limit: int) -> bytes:
        return self._delegate.node_meta(limit)

    def notify_msg(self, now: float, payload: bytes) -> None:
        self._delegate.notify_msg(now, payload)

    def get_broadcasts(self, overhead: int, limit: int) -> list[bytes]:
        return self._delegate.get_broadcasts(overhead, limit)

    def has_broadcasts(self) -> bool:
        """Whether any of the queues get_broadcasts reads holds something (the node's gossip ticker sleeps
        otherwise)."""
        return self._delegate.has_broadcasts()

    def local_state(self, join: bool) -> bytes:
        return self._delegate.local_state(join)

    def merge_remote_state(self, now: float, buf: bytes, join: bool) -> None:
        self._delegate.merge_remote_state(now, buf, join)

    def ack_payload(self) -> bytes:
        return self._delegate.ack_payload()

    def notify_ping_complete(self, node: NodeState, rtt: float, payload: bytes) -> None:
        self._delegate.notify_ping_complete(node, rtt, payload)

    def notify_conflict(self, existing: NodeState, other: NodeState) -> None:
        self._delegate.notify_conflict(existing, other)

    def notify_join(self, now: float, node: NodeState) -> None:
        self._delegate.notify_join(now, node)

    def notify_leave(self, now: float, node: NodeState) -> None:
        self._delegate.notify_leave(now, node)

    def notify_update(self, now: float, node: NodeState) -> None:
        self._delegate.notify_update(now, node)

    # ------------------------------------------------------------------ periodic work

    def _reconnect(self, now: float) -> None:
        """Maybe join one failed member: with probability failed/alive, so the cluster tries each about once
        per interval. This is what heals a partition after memberlist has declared the far side dead."""
        failed = self._table.failed
        if self.state != SerfState.ALIVE or not failed:
            return
        num_alive = len(self._table.members) - len(failed) - len(self._table.left)
        prob = len(failed) / max(num_alive, 1)
        if self.rng.random() > prob:
            return
        ms = self._table.members[failed[self.rng.randrange(len(failed))]]
        addr = ms.addr
        self._core.diag(LEVEL_INFO, f"serf: attempting reconnect to {ms.name} {addr[0]}:{addr[1]}", "reconnect")
        self._join_ops.append(_JoinOp([addr], ignore_old=False, user=False))
        self.node.join(now, [addr])

    def _check_queues(self) -> None:
        """serf's checkQueueDepth: warn on deep queues and drop the excess past the maximum."""
        cap = self.config.max_queue_depth
        if self.config.min_queue_depth > 0:
            cap = max(2 * len(self._table.members), self.config.min_queue_depth)
        for label, queue in (
            ("intent", self._table.broadcasts),
            ("event", self._user_events.broadcasts),
            ("query", self._queries.broadcasts),
        ):
            depth = len(queue)
            if depth >= self.config.queue_depth_warning:
                self._core.diag(LEVEL_WARN, f"serf: {label} queue depth: {depth}")
            if depth > cap:
                self._core.diag(LEVEL_WARN, f"serf: {label} queue depth ({depth}) exceeds limit ({cap}), dropping")
                queue.prune(cap)

    # ------------------------------------------------------------------ node events

    def _pump(self) -> None:
        """Drain the Node's events: member changes arrive through the delegate, the rest is ours to route."""
        events = self._core.events
        while (ev := self.node.poll_event()) is not None:
            if isinstance(ev, NodeJoin | NodeLeave | NodeUpdate):
                continue
            if isinstance(ev, LeaveDone):
                self._leaving.node_left(ev)
                continue
            if isinstance(ev, JoinResult):
                self._on_join_result(ev)
                continue
            events.append(ev)
        if self._leaving.op is not None:
            self._leaving.advance(self._core.now)

    def _on_join_result(self, ev: JoinResult) -> None:
        """Match a JoinResult to its join; a user join announces us once, on its first success."""
        op = next((o for o in self._join_ops if ev.addr in o.pending), None)
        if op is None:
            self._core.events.append(ev)
            return
        op.pending.remove(ev.addr)
        if not op.pending:
            self._join_ops.remove(op)
        if not op.user:
            outcome = "ok" if ev.ok else f"failed: {ev.error}"
            self._core.diag(LEVEL_DEBUG, f"serf: reconnect to {ev.addr[0]}:{ev.addr[1]} {outcome}", "reconnect")
            return
        if ev.ok and not op.announced and self.state == SerfState.ALIVE:
            op.announced = True
            self._table.broadcast_join(self.clock.time())
        self._core.events.append(ev)

    def _event_join_ignore(self) -> bool:
        return any(op.ignore_old for op in self._join_ops)
