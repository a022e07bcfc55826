"""The member state machine: memberlist's aliveNode, suspectNode, deadNode and refute (state.go), carried out.

protocol/state.py judges a claim (the precedence rules, pure); `Membership` carries the verdict out on the member
table in the shared Core: records written, suspicion timers started and confirmed (protocol/suspicion.py), news
queued for broadcast, join/update/leave events raised, and our own incarnation bumped to refute. It owns what only
it writes: our incarnation, whether we left, the running suspicions. Probing (a failed probe suspects), push/pull
(a merge replays each remote state) and the UDP handlers below all come in through `alive_node`, `suspect_node`
and `dead_node`, so there is one way a member's state changes.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import attrs

from protocol.codec import Alive, Dead, Suspect, encode
from protocol.core import Core, Timer, encoded_once, packed_address, shared
from protocol.outputs import LeaveDone
from protocol.state import (
    INCARNATION_JUMP_LIMIT,
    MAX_INCARNATION,
    META_MAX_SIZE,
    Action,
    Addr,
    NodeState,
    NodeStateType,
    Notify,
    implausible_incarnation,
    judge_alive,
    judge_dead,
    judge_suspect,
    notify_after_alive,
    valid_versions,
)
from protocol.suspicion import Suspicion, random_offset, suspicion_timeout

__all__ = ["Membership"]


@attrs.define(eq=False)
class _SuspicionTimer:
    suspicion: Suspicion
    timer: Timer
    change_time: float


class Membership:
    """Carries out the alive/suspect/dead rules on the member table; our incarnation, refutes and leave state."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.incarnation = 0
        self.left = False
        self.leave_pending = False
        self.leave_timer: Timer | None = None
        self._conflict_refuted: dict[Addr, float] = {}
        self._suspicions: dict[str, _SuspicionTimer] = {}
        #: no delegate judges alives: the stale ones need no verdict (read once, for every alive received)
        self._plain_alive = not core.custom["notify_alive"]

    # ----------------------------------------------------------------------------------------------------
    # our own alive

    def _read_meta(self) -> bytes:
        meta = self.core.delegate.node_meta(META_MAX_SIZE)
        if len(meta) > META_MAX_SIZE:
            raise ValueError(f"node meta of {len(meta)} bytes is longer than the limit of {META_MAX_SIZE}")
        return meta

    def set_alive(self, now: float) -> None:
        """memberlist setAlive: our own alive, applied locally as if received (bootstrap)."""
        core = self.core
        self.incarnation += 1
        alive = Alive(self.incarnation, core.name, core.packed_addr, core.addr[1], self._read_meta(), core.config.vsn)
        self.alive_node(now, alive, core.addr, bootstrap=True)

    def update_meta(self, now: float) -> None:
        """memberlist UpdateNode: re-read the delegate's meta, bump the incarnation and gossip the new alive."""
        core = self.core
        me = core.nodes[core.name]
        self.incarnation = self._next_incarnation()
        alive = Alive(self.incarnation, core.name, core.packed_addr, core.addr[1], self._read_meta(), core.config.vsn)
        self.alive_node(now, alive, me.addr, bootstrap=True)

    def _next_incarnation(self) -> int:
        """Our incarnation plus one; past the top of the uint32 range we take a new base, 1 (memberlist wraps
        the same way, to 0). Peers then see us as stale until they forget us (docs/wire.md, "Incarnations")."""
        if self.incarnation < MAX_INCARNATION:
            return self.incarnation + 1
        self.core.stats["incarnation_wrapped"] += 1
        self.core.diag("warning", f"incarnation {MAX_INCARNATION} reached: starting again at 1", "incarnation-wrapped")
        return 1

    def _refute(self, now: float, accused_inc: int) -> None:
        """Beat `accused_inc` with a new incarnation and broadcast our alive (memberlist refute).

        An accusation at the top of the uint32 range cannot be beaten: memberlist's arithmetic wraps there and
        encodes a lower number; we do not jump at all, just step by one (so we stay ahead of what honest peers
        know) and say so. Peers that check plausibility never accepted such an accusation in the first place.
        """
        core = self.core
        inc = self._next_incarnation()
        if accused_inc >= inc:
            if accused_inc < MAX_INCARNATION:
                inc = accused_inc + 1
            else:
                core.stats["unbeatable_accusation"] += 1
                core.diag(
                    "warning",
                    f"cannot beat an accusation at incarnation {accused_inc} (the uint32 maximum); refuting at {inc}",
                    "incarnation-unbeatable",
                )
        self.incarnation = inc
        me = attrs.evolve(core.nodes[core.name], incarnation=inc)
        core.nodes[core.name] = me
        core.awareness.apply_delta(1)
        core.stats["refutes"] += 1
        alive = Alive(inc, me.name, core.packed_addr, me.addr[1], me.meta, me.vsn)
        core.broadcast(me.name, encode(alive))

    # ----------------------------------------------------------------------------------------------------
    # the state rules, carried out

    def alive_node(self, now: float, a: Alive, addr: Addr, *, bootstrap: bool = False) -> None:
        """memberlist aliveNode."""
        core = self.core
        core.stats["msg_alive"] += 1  # memberlist.msg.alive: every alive message processed
        current = core.nodes.get(a.node)
        if (
            current is not None
            and a.incarnation <= current.incarnation
            and current.addr == addr
            and a.node != core.name
            and not core.custom["notify_alive"]
        ):
            return  # the common case, an old alive gossiped back to us: judge_alive's "stale" without a verdict
        new_member = current is None and a.incarnation > 0 and a.node != core.name
        if new_member and not core.custom["notify_alive"] and valid_versions(a.vsn):
            self._learn(now, a, addr)
            return
        if core.custom["notify_alive"] and valid_versions(a.vsn) and not (self.left and a.node == core.name):
            err = core.delegate.notify_alive(NodeState(a.node, addr, a.meta, a.incarnation, vsn=a.vsn))
            if err:
                core.diag("warning", f"ignoring alive message for '{a.node}': {err}", "alive-rejected")
                return
        verdict = judge_alive(
            current,
            node=a.node,
            incarnation=a.incarnation,
            addr=addr,
            meta=a.meta,
            vsn=a.vsn,
            local_name=core.name,
            has_left=self.left,
            bootstrap=bootstrap,
            now=now,
            reclaim_time=core.config.dead_node_reclaim_time,
        )
        action = verdict.action
        if action is Action.CONFLICT:
            assert current is not None
            self._conflict(now, current, a, addr, verdict.reason)
            return
        if verdict.is_new:
            current = _record(now, a, addr, 0, NodeStateType.DEAD)
            self._add_node(current)
        if action is Action.IGNORE:
            if verdict.reason.startswith("bad protocol"):
                core.diag("warning", f"ignoring alive for '{a.node}': {verdict.reason}", "bad-version")
            return
        assert current is not None
        self.clear_suspicion(a.node)
        if action is Action.REFUTE:
            self._refute(now, a.incarnation)
            core.diag(
                "warning",
                f"refuting an alive message for '{a.node}' ({addr[0]}:{addr[1]}) "
                f"meta:({a.meta!r} VS {current.meta!r}), vsn:({list(a.vsn)} VS {list(current.vsn)})",
                "refute",
            )
            return
        # APPLY
        # keyed by the record's interned name, not the decoded one (a fresh string per pair); the bytes are shared
        core.broadcast(current.name, encoded_once(a))
        new = attrs.evolve(
            current,
            incarnation=a.incarnation,
            meta=shared(a.meta),
            addr=current.addr if current.addr == addr else shared(addr),
            vsn=_shared_vsn(a.vsn, current.vsn),
            state=NodeStateType.ALIVE,
            state_change=now if current.state != NodeStateType.ALIVE else current.state_change,
        )
        core.nodes[a.node] = new
        if verdict.updates_addr:
            core.diag(
                "info",
                f"updating address for left or failed node {a.node} from {current.addr[0]}:{current.addr[1]} "
                f"to {addr[0]}:{addr[1]}",
                "addr-update",
            )
        core.notify(now, notify_after_alive(current.state, current.meta, new.meta), new)

    def _learn(self, now: float, a: Alive, addr: Addr) -> None:
        """judge_alive's APPLY for a member we have never heard of (rules 3 and 7: not us, incarnation above the
        0 of the new record, valid versions), without the verdict, the placeholder DEAD record and its copy:
        every member learns every other one once, N^2 times in all, the most frequent case after the stale one
        (issue 14). Same records, broadcast and event as the general path."""
        core = self.core
        new = _record(now, a, addr, a.incarnation, NodeStateType.ALIVE)
        self._add_node(new)
        self.clear_suspicion(new.name)
        core.broadcast(new.name, encoded_once(a))
        core.notify(now, Notify.JOIN, new)

    def _conflict(self, now: float, current: NodeState, a: Alive, addr: Addr, reason: str) -> None:
        """A live name claimed from another address: first address wins; tell the delegate.

        If the name is ours we also refute (so our incarnation stays ahead of the impostor's), but at
        most once per suspicion-timeout window per impostor address: two processes sharing a name would
        otherwise outbid each other forever.
        """
        core = self.core
        core.stats["conflicts"] += 1
        other = NodeState(a.node, addr, a.meta, a.incarnation, NodeStateType.ALIVE, now, a.vsn)
        core.diag("error", reason, "conflict")
        core.delegate.notify_conflict(current, other)
        if a.node != core.name or self.left or a.incarnation < self.incarnation:
            return
        holdoff = core.config.suspicion_mult * core.config.probe_interval
        last = self._conflict_refuted.get(addr)
        if last is not None and now - last < holdoff:
            return
        self._conflict_refuted[addr] = now
        self._refute(now, a.incarnation)
        core.diag("warning", f"refuting alive for our name from {addr[0]}:{addr[1]}", "refute")

    def _add_node(self, state: NodeState) -> None:
        """Insert at a random position so the failure detection bound stays low (memberlist aliveNode)."""
        core = self.core
        core.nodes[state.name] = state
        order = core.order
        n = len(order)
        offset = random_offset(core.rng, n)
        order.append(state.name)
        order[offset], order[n] = order[n], order[offset]

    def clear_suspicion(self, name: str) -> None:
        st = self._suspicions.pop(name, None)
        if st is not None:
            st.timer.cancel()

    def suspect_node(self, now: float, s: Suspect) -> None:
        """memberlist suspectNode."""
        core = self.core
        core.stats["msg_suspect"] += 1  # memberlist.msg.suspect: every suspect message processed
        current = core.nodes.get(s.node)
        running = self._suspicions.get(s.node)
        verdict = judge_suspect(
            current, incarnation=s.incarnation, local_name=core.name, suspicion_running=running is not None
        )
        action = verdict.action
        if action is Action.IGNORE:
            return
        assert current is not None
        if action is Action.CONFIRM:
            assert running is not None
            if running.suspicion.confirm(now, s.from_):
                core.broadcast(s.node, encode(s))
                susp = running.suspicion
                core.diag(  # memberlist does not log confirmations: debug, for diagnosis and tests
                    "debug",
                    f"suspicion of {s.node} confirmed by {s.from_} "
                    f"({susp.confirmations} of {susp.k} confirmations, first suspected by {susp.from_node})",
                    "suspect-confirm",
                )
                running.timer.cancel()
                running.timer = core.at(max(susp.deadline, now), self._suspicion_timeout_fn(s.node))
            return
        if action is Action.REFUTE:
            self._refute(now, s.incarnation)
            core.diag("warning", f"Refuting a suspect message (from: {s.from_})", "refute")
            return
        # SUSPECT
        core.broadcast(s.node, encode(s))
        core.nodes[s.node] = attrs.evolve(
            current, incarnation=s.incarnation, state=NodeStateType.SUSPECT, state_change=now
        )
        cfg = core.config
        k = cfg.suspicion_mult - 2
        n = core.estimated_nodes()
        if n - 2 < k:
            k = 0
        min_t = suspicion_timeout(cfg.suspicion_mult, n, cfg.probe_interval)
        max_t = cfg.suspicion_max_timeout_mult * min_t
        susp = Suspicion(now, s.from_, k, min_t, max_t)
        timer = core.at(susp.deadline, self._suspicion_timeout_fn(s.node))
        self._suspicions[s.node] = _SuspicionTimer(susp, timer, now)
        core.stats["suspicions"] += 1
        core.diag(  # memberlist logs only its own failed probes ("Suspect ... has failed"): debug, for diagnosis
            "debug",
            f"{s.from_} suspects {s.node} (incarnation {s.incarnation}); wants {k} confirmations, "
            f"timeout {min_t:g}-{max_t:g}s",
            "suspect",
        )

    def _suspicion_timeout_fn(self, name: str) -> Callable[[float], None]:
        def fire(now: float) -> None:
            core = self.core
            st = self._suspicions.get(name)
            state = core.nodes.get(name)
            if st is None or state is None:
                return
            if state.state != NodeStateType.SUSPECT or state.state_change != st.change_time:
                return
            susp = st.suspicion
            confirmers = ", ".join(susp.confirmers) or "none"
            core.diag(  # memberlist's text and level (operators grep for it), our detail after it
                "info",
                f"Marking {name} as failed, suspect timeout reached ({susp.confirmations} peer confirmations) "
                f"[confirmed by {confirmers}; first suspected by {susp.from_node}]",
                "failed",
            )
            self.dead_node(now, Dead(state.incarnation, name, core.name))

        return fire

    def dead_node(self, now: float, d: Dead) -> None:
        """memberlist deadNode; a dead with From == Node marks the node LEFT."""
        core = self.core
        core.stats["msg_dead"] += 1  # memberlist.msg.dead: every dead message processed
        current = core.nodes.get(d.node)
        verdict = judge_dead(
            current, incarnation=d.incarnation, from_=d.from_, local_name=core.name, has_left=self.left
        )
        if verdict.clear_suspicion:
            self.clear_suspicion(d.node)
        action = verdict.action
        if action is Action.IGNORE:
            return
        assert current is not None
        if action is Action.REFUTE:
            self._refute(now, d.incarnation)
            core.diag("warning", f"Refuting a dead message (from: {d.from_})", "refute")
            return
        # KILL
        if d.node == core.name:
            core.broadcast(d.node, encode(d), self.leave_finished)
        else:
            core.broadcast(d.node, encode(d))
        assert verdict.new_state is not None
        new = attrs.evolve(current, incarnation=d.incarnation, state=verdict.new_state, state_change=now)
        core.nodes[d.node] = new
        core.notify(now, "leave", new)

    def reset_nodes(self, now: float) -> None:
        """Forget members dead or left for longer than gossip_to_the_dead_time, then shuffle (resetNodes with
        moveDeadNodes' DeadOrLeft). A forgotten member's next alive, at any incarnation, makes it new again."""
        core = self.core
        keep: list[str] = []
        for name in core.order:
            st = core.nodes[name]
            if st.dead_or_left and now - st.state_change > core.config.gossip_to_the_dead_time and name != core.name:
                del core.nodes[name]
                self.clear_suspicion(name)
                continue
            keep.append(name)
        # moveDeadNodes preserves nothing about order that matters once we shuffle.
        core.rng.shuffle(keep)
        core.order = keep

    # ----------------------------------------------------------------------------------------------------
    # our leave

    def leave_finished(self, timed_out: bool = False) -> None:
        """memberlist Leave returns: the leave broadcast retired (or was replaced), or we timed out."""
        if not self.leave_pending:
            return
        self.leave_pending = False
        if self.leave_timer is not None:
            self.leave_timer.cancel()
            self.leave_timer = None
        if timed_out:
            self.core.diag("warning", "timeout waiting for leave broadcast", "leave-timeout")
        self.core.events.append(LeaveDone(timed_out))

    def leave_timeout(self, now: float) -> None:
        self.leave_timer = None
        self.leave_finished(timed_out=True)

    # ----------------------------------------------------------------------------------------------------
    # alive, suspect and dead messages over UDP

    def implausible(self, name: str, incarnation: int, what: str, addr: Addr | None) -> bool:
        """A claim about another member far ahead of its known incarnation: no honest member could make it
        (docs/wire.md, "Incarnations"), so drop and count it instead of believing it. Claims about us are
        always judged: we refute them (bounded, see _refute), which also covers our own restart."""
        core = self.core
        if name == core.name or not implausible_incarnation(core.nodes.get(name), incarnation):
            return False
        known = core.nodes[name].incarnation
        core.stats["implausible_incarnation"] += 1
        src = f" from {addr[0]}:{addr[1]}" if addr else ""
        core.diag(
            "warning",
            f"dropped {what} about {name!r}{src}: incarnation {incarnation} is more than "
            f"{INCARNATION_JUMP_LIMIT} ahead of the {known} it published",
            "implausible-incarnation",
        )
        return True

    def handle_alive(self, now: float, addr: Addr, a: Alive) -> None:
        core = self.core
        port = a.port or core.addr[1]
        current = core.nodes.get(a.node)
        if current is not None and a.incarnation <= current.incarnation and self._plain_alive:
            # alive_node's stale case, checked before anything is built: most alives a member gets are news it
            # already has (each is gossiped L times); counted as alive_node counts it
            known = current.addr
            if (
                known[1] == port
                and a.node != core.name
                and (packed_address(known[0]) or core.packed(known[0])) == a.addr
            ):
                core.stats["msg_alive"] += 1
                return
        if self.implausible(a.node, a.incarnation, "alive", addr):
            return
        self.alive_node(now, a if port == a.port else attrs.evolve(a, port=port), (core.ip(a.addr), port))

    def handle_suspect(self, now: float, addr: Addr, s: Suspect) -> None:
        if not self.implausible(s.node, s.incarnation, "suspect", addr):
            self.suspect_node(now, s)

    def handle_dead(self, now: float, addr: Addr, d: Dead) -> None:
        if not self.implausible(d.node, d.incarnation, "dead", addr):
            self.dead_node(now, d)


def _shared_vsn(vsn: bytes, otherwise: bytes) -> bytes:
    """A version vector as records keep it: shared when whole (6 bytes or more), else ``otherwise``."""
    return shared(vsn) if len(vsn) >= 6 else otherwise


def _record(now: float, a: Alive, addr: Addr, incarnation: int, state: NodeStateType) -> NodeState:
    """A new member record from an alive, holding the values every record shares (interned name, address, meta)."""
    return NodeState(sys.intern(a.node), shared(addr), shared(a.meta), incarnation, state, now, _shared_vsn(a.vsn, b""))
