"""Dissemination: memberlist's gossip() and pushPull() (state.go) with the state exchange of net.go
(sendLocalState, mergeRemoteState).

* gossip: every gossip_interval, the queued broadcasts (and the delegate's user messages) go as compound packets
  to `gossip_nodes` random live, suspect or recently dead members; every other packet piggybacks them too
  (Core.send_msg).
* push/pull: on join and every push_pull_interval (scaled with the cluster's size), the whole member table is
  exchanged with one random member over TCP and merged, each remote record replayed through the state rules
  (protocol/membership.py); after a join, a few follow-up syncs close the gap a seed's snapshot leaves.

`Gossip` owns the two tickers' schedules and the follow-up count; what it sends, it reads from the shared Core.
"""

from __future__ import annotations

from collections.abc import Collection
from operator import attrgetter
from typing import Any

from protocol.codec import (
    Alive,
    Dead,
    DecodeError,
    ErrResp,
    PushNodeState,
    PushPull,
    Suspect,
    encode_push_pull_records,
)
from protocol.core import COMPOUND_HEADER_OVERHEAD, COMPOUND_OVERHEAD, Core, PendingStream
from protocol.membership import Membership
from protocol.outputs import JoinResult
from protocol.state import MERGE_AS, Addr, MergeAs, NodeState, NodeStateType, verify_protocol
from protocol.suspicion import push_pull_scale, retransmit_limit

__all__ = ["Gossip"]


class Gossip:
    """The gossip and push/pull tickers, and the state exchange of a push/pull in both directions."""

    def __init__(self, core: Core, membership: Membership) -> None:
        self.core = core
        self.membership = membership
        self.tick_at = 0.0
        #: the gossip ticker is not a heap timer: its phase is `tick_at`, reported only while something waits to
        #: be gossiped (memberlist's gossip() sends nothing without broadcasts, so skipped ticks change nothing on
        #: the wire; an idle node is spared five wake-ups a second)
        self.ticking = False
        self._followups_pending = 0  # join follow-up push/pulls still to run
        self._known_at_join = 0  # how many members our join's push/pull left us knowing

    # ----------------------------------------------------------------------------------------------------
    # gossip

    def gossip_tick(self, now: float) -> None:
        """memberlist gossip(): broadcasts to a few random live, suspect or recently dead members."""
        self.tick_at = self.core.next_tick(self.tick_at, self.core.config.gossip_interval, now)
        self.gossip_now(now)

    def due_at(self) -> float | None:
        """When the ticker wants to run: its next tick while anything is queued, else never."""
        return self.tick_at if self.ticking and self.has_gossip() else None

    def gossip_now(self, now: float) -> None:
        """One gossip round outside the ticker: a leaving node sends its news at once rather than at the next
        tick (memberlist waits for the tick; the bytes on the wire are the same)."""
        core = self.core
        cfg = core.config
        if not self.has_gossip():
            return

        def exclude(n: NodeState) -> bool:
            if n.name == core.name:
                return True
            if n.state in (NodeStateType.ALIVE, NodeStateType.SUSPECT):
                return False
            if n.state == NodeStateType.DEAD:
                return now - n.state_change > cfg.gossip_to_the_dead_time
            return True

        avail = cfg.udp_buffer_size - COMPOUND_HEADER_OVERHEAD - core.packet_overhead()
        for node in core.k_random(cfg.gossip_nodes, exclude):
            msgs = core.get_broadcasts(COMPOUND_OVERHEAD, avail)
            if not msgs:
                return
            core.raw_send(node.addr, msgs, node)

    def has_gossip(self) -> bool:
        """Anything queued for a gossip round: our broadcasts or the delegate's."""
        return bool(len(self.core.broadcasts)) or self.core.delegate.has_broadcasts()

    # ----------------------------------------------------------------------------------------------------
    # push/pull: when

    def start_push_pull_ticker(self, now: float) -> None:
        """memberlist pushPullTrigger, at the end of its random stagger: the ticker starts, and its first push/pull
        comes one (scaled) interval later, not at the stagger."""
        core = self.core
        core.at(now + push_pull_scale(core.config.push_pull_interval, core.estimated_nodes()), self.push_pull_tick)

    def push_pull_tick(self, now: float) -> None:
        self.start_push_pull_ticker(now)  # the next tick, with the interval scaled to the cluster as it is now
        self._push_pull_with_random_peer(now)

    def _push_pull_with_random_peer(self, now: float) -> None:
        """memberlist pushPull(): one random live member other than us, if there is one."""
        core = self.core
        peers = core.k_random(1, lambda n: n.name == core.name or n.state != NodeStateType.ALIVE)
        if peers:
            self.start_push_pull(now, peers[0].addr, join=False)

    def _schedule_join_followups(self, now: float) -> None:
        """After a join, a few extra push/pulls with random members (config.join_followup_syncs).

        The seed's state only holds who had joined it so far; members that joined at the same moment are
        announced by broadcasts that may retire before they reach us. Syncing again, once per broadcast
        lifetime, closes that gap in seconds instead of one periodic push/pull interval.
        """
        core = self.core
        cfg = core.config
        if self._followups_pending or cfg.push_pull_interval <= 0:  # push/pull disabled: no follow-ups either
            return
        self._followups_pending = cfg.join_followup_syncs
        self._known_at_join = core.estimated_nodes()
        spacing = cfg.gossip_interval * retransmit_limit(cfg.retransmit_mult, self._known_at_join)
        for i in range(1, cfg.join_followup_syncs + 1):
            core.at(now + i * spacing, self._join_followup)

    def _join_followup(self, now: float) -> None:
        """One follow-up, unless we joined an established cluster (config.join_followup_established) and nobody
        joined since: our seed's state was then complete, and a sync would carry it again."""
        self._followups_pending -= 1
        known = self._known_at_join
        if known >= self.core.config.join_followup_established and self.core.estimated_nodes() <= known:
            return
        self._push_pull_with_random_peer(now)

    # ----------------------------------------------------------------------------------------------------
    # push/pull: the exchange

    def _local_push_pull(self, join: bool) -> bytes:
        core = self.core
        records = map(core.nodes.__getitem__, core.order)
        return encode_push_pull_records(join, records, core.packed, core.delegate.local_state(join))

    def start_push_pull(self, now: float, addr: Addr, *, join: bool) -> None:
        core = self.core
        data = core.wrap_stream(self._local_push_pull(join))
        pending = PendingStream(
            addr,
            lambda t, msg: self._push_pull_replied(t, addr, join, msg),
            lambda t, reason: self._push_pull_failed(addr, join, reason),
        )
        core.open_stream(addr, data, pending, core.config.tcp_timeout)

    def serve_push_pull(self, now: float, addr: Addr, msg: PushPull) -> bytes:
        """A push/pull someone opened to us: our state goes back (as it was before theirs is merged)."""
        core = self.core
        reply = core.wrap_stream(self._local_push_pull(msg.join))
        err = self._merge_remote_state(now, msg)
        if err is not None:
            core.diag("error", f"failed push/pull merge from {addr[0]}:{addr[1]}: {err}", "push-pull")
        return reply

    def _push_pull_replied(self, now: float, addr: Addr, join: bool, msg: Any) -> None:
        if isinstance(msg, ErrResp):
            self._push_pull_failed(addr, join, f"remote error: {msg.error}")
            return
        if not isinstance(msg, PushPull):
            self._push_pull_failed(addr, join, f"unexpected {type(msg).__name__} in reply to push/pull")
            return
        err = self._merge_remote_state(now, msg)
        if err is not None:
            self._push_pull_failed(addr, join, err)
        elif join:
            self.core.events.append(JoinResult(addr, True))
            self._schedule_join_followups(now)

    def _push_pull_failed(self, addr: Addr, join: bool, reason: str) -> None:
        core = self.core
        where = f"{addr[0]}:{addr[1]}"
        if join:
            core.diag("debug", f"failed to join {where}: {reason}", "join")
            core.events.append(JoinResult(addr, False, reason))
        else:
            core.diag("error", f"push/pull with {where} failed: {reason}", "push-pull")

    def _merge_remote_state(self, now: float, pp: PushPull) -> str | None:
        """memberlist mergeRemoteState: verify versions, replay each state, hand user state over."""
        core = self.core
        remote = [(n.name, _STATE_OF.get(n.state, NodeStateType.DEAD), n.vsn) for n in _version_sample(pp.nodes)]
        err = verify_protocol(remote, _version_sample(core.nodes.values()))
        if err is not None:
            return err
        if pp.join and core.custom["notify_merge"]:
            peers = [
                NodeState(n.name, (core.ip(n.addr), n.port), n.meta, n.incarnation, _state_type(n.state), now, n.vsn)
                for n in pp.nodes
            ]
            err = core.delegate.notify_merge(peers)
            if err:
                return err
        # alive_node's stale case (a state we already hold at that incarnation and address), checked here without
        # a call per state: a push/pull carries every member, and nearly all of them are known already
        nodes, local, port0, packed = core.nodes, core.name, core.addr[1], core.packed
        plain, stale = not core.custom["notify_alive"], 0
        learn = self.membership.alive_node
        for r in pp.nodes:
            if plain and r.state == 0 and r.name != local:
                current = nodes.get(r.name)
                if current is None and r.incarnation > 0 and len(r.addr) in (4, 16):
                    # a member we never heard of: straight to alive_node's first-learn path (_merge_one's checks
                    # all pass for it: nothing known to be implausible against, the address decodes)
                    port = r.port or port0
                    learn(now, Alive(r.incarnation, r.name, r.addr, port, r.meta, r.vsn), (core.ip(r.addr), port))
                    continue
                if (
                    current is not None
                    and r.incarnation <= current.incarnation
                    and current.addr[1] == (r.port or port0)
                    and packed(current.addr[0]) == r.addr
                ):
                    stale += 1
                    continue
            self._merge_one(now, r)
        if stale:
            core.stats["msg_alive"] += stale
        if pp.user_state:
            core.delegate.merge_remote_state(now, pp.user_state, pp.join)
        return None

    def _merge_one(self, now: float, r: PushNodeState) -> None:
        core = self.core
        membership = self.membership
        if r.state not in (0, 1, 2, 3):
            return
        current = core.nodes.get(r.name)
        if (
            r.state == NodeStateType.ALIVE
            and current is not None
            and r.incarnation <= current.incarnation
            and r.name != core.name
            and not core.custom["notify_alive"]
            and current.addr[1] == (r.port or core.addr[1])
            and core.packed(current.addr[0]) == r.addr
        ):
            core.stats["msg_alive"] += 1  # alive_node's stale case, without building the Alive (push/pull: N each)
            return
        if membership.implausible(r.name, r.incarnation, "push/pull state", None):
            return
        how = MERGE_AS[NodeStateType(r.state)]
        if how is MergeAs.ALIVE:
            try:
                addr = (core.ip(r.addr), r.port or core.addr[1])
            except DecodeError as exc:
                core.malformed("push/pull node state", None, exc)
                return
            membership.alive_node(now, Alive(r.incarnation, r.name, r.addr, addr[1], r.meta, r.vsn), addr)
        elif how is MergeAs.LEFT:
            membership.dead_node(now, Dead(r.incarnation, r.name, r.name))
        else:
            membership.suspect_node(now, Suspect(r.incarnation, r.name, core.name))


_STATE_OF = {int(t): t for t in NodeStateType}
_VSN = attrgetter("vsn")


def _version_sample(states: Collection[Any]) -> list[Any]:
    """The states verify_protocol must see to judge all of `states`: all of them, or, when they share one version
    vector (nearly always), the first one and the first alive one. It reads only which vectors occur, the first
    state holding each and whether an alive one does, and a push/pull carries every member (N^2 states a round
    of syncs in a simulation, issue 14)."""
    if len(set(map(_VSN, states))) > 1:
        return list(states)
    first = next(iter(states), None)
    if first is None or first.state == NodeStateType.ALIVE:
        return [] if first is None else [first]
    alive = next((s for s in states if s.state == NodeStateType.ALIVE), None)
    return [first] if alive is None else [first, alive]


def _state_type(value: int) -> NodeStateType:
    try:
        return NodeStateType(value)
    except ValueError:
        return NodeStateType.DEAD
