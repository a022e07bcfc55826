"""Serf's graceful leave: our leave intent, the memberlist leave, a linger, then LeaveDone (serf's Leave).

Each phase waits for its step to finish and is bounded by a deadline: ``intent`` until our leave intent has been
gossiped out (and at least config.leave_intent_grace), ``memberlist`` until the Node's own leave broadcast went
out, ``propagate`` for config.leave_propagate_delay. A missed deadline is reported and the leave goes on.
"""

from __future__ import annotations

import attrs

from protocol.broadcast import BroadcastQueue
from protocol.node import LeaveDone
from protocol.serf_core import LEVEL_WARN, NodeGetter, SerfCore, SerfState
from protocol.serf_events import MemberStatus
from protocol.serf_members import MemberTable
from protocol.serf_messages import LeaveIntent, encode_message


@attrs.define
class _LeaveOp:
    """Where a graceful leave stands: 'intent' -> 'memberlist' -> 'propagate', each with a deadline."""

    phase: str
    deadline: float
    not_before: float = 0.0  # the memberlist leave waits at least until then (config.leave_intent_grace)
    intent_sent: bool = False
    node_left: bool = False
    timed_out: bool = False


class GracefulLeave:
    """One Serf's leave, from its intent to LeaveDone."""

    def __init__(self, core: SerfCore, table: MemberTable, node: NodeGetter) -> None:
        self._core = core
        self._table = table
        self._node = node  # the intent goes out through it, and the memberlist leave is its own
        self.op: _LeaveOp | None = None
        self.own_intent = BroadcastQueue(core.config.retransmit_mult)  # empty again = fully transmitted

    def node_left(self, ev: LeaveDone) -> None:
        """The Node finished its memberlist leave."""
        if self.op is not None and self.op.phase == "memberlist":
            self.op.node_left = True
            self.op.timed_out |= ev.timed_out

    def start(self, now: float) -> None:
        """Leave intent (gossiped, and sent straight to every alive member), or the memberlist leave at once
        when nobody is there to tell."""
        self._core.state = SerfState.LEAVING
        msg = LeaveIntent(self._core.clock.time(), self._core.name)
        self._core.clock.increment()
        self._table.handle_leave_intent(msg)
        if self._table.has_alive_members():
            config = self._core.config
            self.op = _LeaveOp("intent", now + config.broadcast_timeout, now + config.leave_intent_grace)
            raw = encode_message(msg)
            self.own_intent.queue(None, raw, self._on_intent_sent)
            self._tell_every_alive_member(raw)
            self._node().gossip_now(now)  # and gossiped now, not at the next gossip tick
        else:
            self._start_memberlist_leave(now)

    def _tell_every_alive_member(self, raw: bytes) -> None:
        """Send our leave intent straight to every alive member, ahead of the memberlist leave.

        A Go serf peer that gets our memberlist "dead, from ourselves" before the intent records us *failed*
        (serf's handleNodeLeave); gossip alone retires the intent after a few sends, not after everyone has
        it. One datagram per member, once per leave, sent before the dead message (same socket, same order).
        """
        for ms in self._table.members.values():
            if ms.name != self._core.name and ms.status == MemberStatus.ALIVE:
                self._node().send_best_effort(ms.addr, raw, ms.name)

    def _on_intent_sent(self) -> None:
        """The intent is fully gossiped: the memberlist leave may start, though not before the grace is over."""
        op = self.op
        if op is not None and op.phase == "intent":
            op.intent_sent = True
            op.deadline = min(op.deadline, max(self._core.now, op.not_before))

    def _start_memberlist_leave(self, now: float) -> None:
        if self.op is None:
            self.op = _LeaveOp("memberlist", now)
        self.op.phase, self.op.deadline = "memberlist", now + self._core.config.broadcast_timeout
        self._node().leave(now)

    def advance(self, now: float) -> None:
        """Step the leave along; every phase is bounded by its deadline, and a missed one is reported."""
        op = self.op
        if op is None:
            return
        if op.phase == "intent" and now >= op.deadline:
            if not op.intent_sent:
                op.timed_out = True
                self._core.diag(LEVEL_WARN, "serf: timeout while waiting for graceful leave intent to spread", "leave")
            self._start_memberlist_leave(now)
        if op.phase == "memberlist" and (op.node_left or now >= op.deadline):
            if not op.node_left:
                op.timed_out = True
                self._core.diag(LEVEL_WARN, "serf: timeout waiting for the memberlist leave broadcast", "leave")
            op.phase, op.deadline = "propagate", now + self._core.config.leave_propagate_delay
        if op.phase == "propagate" and now >= op.deadline:
            self.op = None
            self._core.state = SerfState.LEFT
            self._core.events.append(LeaveDone(op.timed_out))
