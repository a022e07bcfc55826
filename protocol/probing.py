"""Failure detection: memberlist's probe cycle (state.go probe/probeNode) and the ping, indirect ping, ack and nack
handlers (net.go), with Lifeguard's awareness (protocol/awareness.py) scaling the probe interval.

One probe round against the next live member in the shuffled order: a ping with an ack deadline of probe_timeout,
then indirect pings through `indirect_checks` peers (asking for nacks) and a TCP ping in parallel, all awaited until
the (awareness-scaled) probe interval ends; no ack means suspect (handed to protocol/membership.py). memberlist runs
probeNode as one goroutine blocking on channels; here it is a small state machine (`Probe`) over the Core's timers
and the ack handlers table, which the ack and nack handlers complete. `Prober` owns that table, the probe order's
cursor and the sequence numbers, so nothing else can complete a probe.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import attrs

from protocol.codec import Ack, IndirectPing, Nack, Ping, Suspect, encode
from protocol.core import Core, PendingStream, Timer
from protocol.membership import Membership
from protocol.state import Addr, NodeState, NodeStateType

__all__ = ["Probe", "Prober"]


@attrs.define(eq=False)
class _AckHandler:
    on_ack: Callable[[float, bytes], None]
    on_nack: Callable[[], None] | None
    timer: Timer


@attrs.define(eq=False)
class Probe:
    """One probe round against `target` (memberlist probeNode's locals)."""

    target: NodeState
    seq: int
    sent: float
    deadline: float
    indirect_timer: Timer | None = None  # probe_timeout: indirect pings and TCP fallback, unless acked by then
    indirect: bool = False  # past probe_timeout: indirect pings and TCP fallback are out
    expected_nacks: int = 0
    nacks: int = 0
    fallback_ok: bool = False
    done: bool = False


def _fallback_failed(now: float, reason: str) -> None:
    """A dead node is expected to refuse the fallback ping: not worth a log line."""


class Prober:
    """The probe cycle and the ping/ack exchange it rests on."""

    def __init__(self, core: Core, membership: Membership) -> None:
        self.core = core
        self.membership = membership
        #: Seconds each finished probe took, ack or probe interval end (memberlist's probeNode timer); the agent's
        #: metrics drain it, and only the latest are kept for a reader that never comes.
        self.durations: deque[float] = deque(maxlen=256)
        self.tick_at = 0.0
        self._seq = 0
        self._probe_index = 0
        self._probe: Probe | None = None
        self._probe_tick_pending = False
        self._acks: dict[int, _AckHandler] = {}

    def clear(self) -> None:
        """Shutdown: no ack is awaited any more."""
        self._acks.clear()

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        return self._seq

    # ----------------------------------------------------------------------------------------------------
    # the probe cycle

    def probe_tick(self, now: float) -> None:
        core = self.core
        self.tick_at = core.next_tick(self.tick_at, core.config.probe_interval, now)
        core.at(self.tick_at, self.probe_tick)
        if self._probe is not None:
            self._probe_tick_pending = True  # Go's ticker keeps one tick buffered while probeNode runs
            return
        self._probe_round(now)

    def _probe_round(self, now: float) -> None:
        """memberlist probe(): the next live member in the shuffled order, reshuffling at the end."""
        core = self.core
        num_check = 0
        while True:
            if num_check >= len(core.order):
                return
            if self._probe_index >= len(core.order):
                self.membership.reset_nodes(now)
                self._probe_index = 0
                num_check += 1
                continue
            state = core.nodes[core.order[self._probe_index]]
            self._probe_index += 1
            if state.name == core.name or state.dead_or_left:
                num_check += 1
                continue
            self._probe_node(now, state)
            return

    def _probe_node(self, now: float, node: NodeState) -> None:
        """memberlist probeNode, as a small state machine over timers and ack handlers."""
        core = self.core
        cfg = core.config
        interval = core.awareness.scale_timeout(cfg.probe_interval)
        seq = self._next_seq()
        probe = Probe(node, seq, now, now + interval)
        self._probe = probe
        deadline_timer = core.at(probe.deadline, lambda t: self._probe_deadline(probe, t))
        self._acks[seq] = _AckHandler(
            on_ack=lambda t, payload: self._probe_acked(probe, t, payload),
            on_nack=lambda: self._probe_nacked(probe),
            timer=deadline_timer,
        )
        ping = encode(Ping(seq, node.name, core.packed_addr, core.addr[1], core.name))
        if node.state == NodeStateType.ALIVE:
            core.send_msg(node.addr, ping, node)
        else:
            # Let a suspect refute as early as possible: tack the suspicion onto the ping.
            suspect = encode(Suspect(node.incarnation, node.name, core.name))
            core.raw_send(node.addr, [ping, suspect], node)
        probe.indirect_timer = core.at(now + cfg.probe_timeout, lambda t: self._probe_indirect(probe, t))

    def _probe_acked(self, probe: Probe, now: float, payload: bytes) -> None:
        if probe.done:
            return
        if not probe.indirect:
            self.core.delegate.notify_ping_complete(probe.target, now - probe.sent, payload)
        self._finish_probe(probe, now, -1)

    def _probe_nacked(self, probe: Probe) -> None:
        if not probe.done and probe.nacks < self.core.config.indirect_checks + 1:
            probe.nacks += 1

    def _probe_indirect(self, probe: Probe, now: float) -> None:
        """No direct ack within probe_timeout: ask peers, and try TCP, until the probe interval ends."""
        if probe.done:
            return
        core = self.core
        probe.indirect = True
        target = probe.target
        self._keep_indirect_window(probe, now)
        core.diag("debug", f"Failed UDP ping: {target.name} (timeout reached)", "ping-timeout")
        peers = core.k_random(
            core.config.indirect_checks,
            lambda n: n.name == core.name or n.name == target.name or n.state != NodeStateType.ALIVE,
        )
        for peer in peers:
            want_nack = peer.pmax >= 4
            if want_nack:
                probe.expected_nacks += 1
            ind = IndirectPing(
                probe.seq,
                core.packed(target.addr[0]),
                target.addr[1],
                target.name,
                want_nack,
                core.packed_addr,
                core.addr[1],
                core.name,
            )
            core.send_msg(peer.addr, encode(ind), peer)
        # The deadline is ahead (_keep_indirect_window); the check guards a negative dial timeout all the same.
        if not core.config.disable_tcp_pings and target.pmax >= 3 and probe.deadline > now:
            ping = Ping(probe.seq, target.name, core.packed_addr, core.addr[1], core.name)
            pending = PendingStream(target.addr, lambda t, msg: self._fallback_replied(probe, msg), _fallback_failed)
            core.open_stream(target.addr, core.wrap_stream(encode(ping)), pending, probe.deadline - now)

    def _keep_indirect_window(self, probe: Probe, now: float) -> None:
        """A stalled process runs this probe_timeout timer late, up to past the probe's end, and the deadline timer
        would follow at once: the indirect pings and the TCP fallback sent now could not be answered in time, and
        a starved node would suspect members that are fine (then churn through their refutations exactly when
        CPU is short). The deadline moves so that they get the (awareness-scaled) time memberlist's schedule gives
        them: probe interval less probe_timeout. A node that is not stalled never moves it."""
        window = (probe.deadline - probe.sent) - self.core.config.probe_timeout
        if window <= 0 or now + window <= probe.deadline:
            return
        probe.deadline = now + window
        handler = self._acks.get(probe.seq)
        if handler is not None:
            handler.timer.cancel()
            handler.timer = self.core.at(probe.deadline, lambda t: self._probe_deadline(probe, t))

    def _fallback_replied(self, probe: Probe, msg: Any) -> None:
        if isinstance(msg, Ack) and msg.seq_no == probe.seq:
            probe.fallback_ok = True
        else:
            self.core.diag("error", f"failed fallback ping: unexpected {type(msg).__name__}", "fallback")

    def _probe_deadline(self, probe: Probe, now: float) -> None:
        """The probe interval ended without an ack: TCP fallback success, or suspicion."""
        core = self.core
        self._acks.pop(probe.seq, None)
        if probe.done:
            return
        target = probe.target
        if probe.fallback_ok:
            core.stats["udp_blocked"] += 1
            core.diag(
                "warning",
                f"was able to connect to {target.name} over TCP but UDP probes failed; the network may be "
                f"blocking UDP to {target.addr[0]}:{target.addr[1]} (udp port {target.addr[1]})",
                "udp-blocked",
            )
            self._finish_probe(probe, now, -1)
            return
        # With nack-capable peers, missed nacks measure our own health; without, any failure counts.
        delta = max(probe.expected_nacks - probe.nacks, 0) if probe.expected_nacks > 0 else 1
        self._finish_probe(probe, now, delta)
        core.diag("info", f"Suspect {target.name} has failed, no acks received", "probe-failed")
        self.membership.suspect_node(now, Suspect(target.incarnation, target.name, core.name))

    def _finish_probe(self, probe: Probe, now: float, awareness_delta: int) -> None:
        probe.done = True
        self.durations.append(now - probe.sent)
        self.core.awareness.apply_delta(awareness_delta)
        handler = self._acks.pop(probe.seq, None)
        if handler is not None:
            handler.timer.cancel()
        if probe.indirect_timer is not None:
            probe.indirect_timer.cancel()  # acked in time: no wake-up at probe_timeout just to find it done
        if self._probe is probe:
            self._probe = None
        if self._probe_tick_pending and not self.core.stopped:
            self._probe_tick_pending = False
            self._probe_round(now)

    # ----------------------------------------------------------------------------------------------------
    # pings, indirect pings, acks and nacks that arrive

    def handle_ping(self, now: float, addr: Addr, p: Ping) -> None:
        core = self.core
        if p.node and p.node != core.name:
            core.stats["ping_wrong_node"] += 1
            core.diag("warning", f"got ping for unexpected node '{p.node}' from {addr[0]}:{addr[1]}", "wrong-node")
            return
        ack = encode(Ack(p.seq_no, core.delegate.ack_payload()))
        core.send_msg(self._reply_addr(p.source_addr, p.source_port, addr), ack, core.nodes.get(p.source_node))

    def _reply_addr(self, source_addr: bytes, source_port: int, from_addr: Addr) -> Addr:
        if source_addr and source_port > 0:
            return (self.core.ip(source_addr), source_port)
        return from_addr

    def handle_indirect_ping(self, now: float, addr: Addr, ind: IndirectPing) -> None:
        """Probe the target for the requester; relay its ack, or send a nack after probe_timeout."""
        core = self.core
        target = (core.ip(ind.target), ind.port or core.addr[1])
        reply_to = self._reply_addr(ind.source_addr, ind.source_port, addr)
        requester = core.nodes.get(ind.source_node)
        local_seq = self._next_seq()
        timeout = core.config.probe_timeout
        nack_timer: Timer | None = None

        def relay(t: float, payload: bytes) -> None:
            if nack_timer is not None:
                nack_timer.cancel()
            core.send_msg(reply_to, encode(Ack(ind.seq_no, b"")), requester)

        def reap(t: float) -> None:
            self._acks.pop(local_seq, None)

        self._acks[local_seq] = _AckHandler(relay, None, core.at(now + timeout, reap))
        ping = Ping(local_seq, ind.node, core.packed_addr, core.addr[1], core.name)
        core.send_msg(target, encode(ping), core.nodes.get(ind.node))
        if ind.nack:

            def nack(t: float) -> None:
                core.send_msg(reply_to, encode(Nack(ind.seq_no)), requester)

            nack_timer = core.at(now + timeout, nack)

    def handle_ack(self, now: float, addr: Addr, ack: Ack) -> None:
        handler = self._acks.pop(ack.seq_no, None)
        if handler is None:
            return
        handler.timer.cancel()
        handler.on_ack(now, ack.payload)

    def handle_nack(self, now: float, addr: Addr, nack: Nack) -> None:
        handler = self._acks.get(nack.seq_no)
        if handler is not None and handler.on_nack is not None:
            handler.on_nack()

    def serve_ping(self, msg: Ping) -> bytes:
        """A ping over TCP (another member's fallback probe): the ack to write back, or b"" if it is not for us."""
        core = self.core
        if msg.node and msg.node != core.name:
            core.stats["ping_wrong_node"] += 1
            core.diag("warning", f"got TCP ping for unexpected node {msg.node}", "wrong-node")
            return b""
        return core.wrap_stream(encode(Ack(msg.seq_no, b"")))
