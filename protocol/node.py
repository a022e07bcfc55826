"""protocol.Node: memberlist's failure detector and membership gossip as a sans-IO state machine.

It reproduces hashicorp/memberlist (state.go, net.go, memberlist.go) behaviour for behaviour, so that a
cluster mixing Go and Python nodes agrees on who is alive:

* probing: randomized round robin over a shuffled member list; a ping with an ack deadline of
  probe_timeout, then indirect pings through `indirect_checks` peers (asking for nacks) and a TCP ping in
  parallel, all awaited until the (awareness-scaled) probe interval ends; no ack -> suspect.
* Lifeguard: awareness deltas (-1 per successful probe, +missed nacks or +1 per failed one, +1 per refute),
  suspicion timers that shrink with independent confirmations, refutation by incarnation bump.
* dissemination: every outgoing packet piggybacks queued broadcasts (and the delegate's user messages) up to
  udp_buffer_size; periodic gossip to `gossip_nodes` random live or recently dead members.
* anti-entropy: push/pull of the full state over TCP on join and every push_pull_interval (scaled).

Nothing here does IO or reads a clock: inputs arrive through `handle_*` with the current time, outputs are
pulled with `poll_transmit` / `poll_event`, and `poll_timeout` says when to call `handle_timeout` next.

This module is the facade and memberlist.go's share (create, join, leave, update, send, shut down). The work is
done by collaborators split as memberlist splits its files, each holding the one shared `Core` (protocol/core.py:
the Memberlist struct's fields, timers, diagnostics, sending) and its own state:

    membership.py  the alive/suspect/dead/refute state machine (state.go's aliveNode, suspectNode, deadNode)
    probing.py     the probe cycle, indirect probes, acks and nacks, awareness (state.go probe, net.go handlers)
    gossip.py      the gossip tick and push/pull state exchange (state.go gossip/pushPull, net.go mergeRemoteState)
    net.py         what arrives: packets and streams unwrapped, bounded and dispatched (net.go's receiving half)

Composition rather than one class over several files (memberlist's way, which Python could only copy with mixins):
each part names what it needs from the others, and owns state no other part writes. The precedence rules of
alive/suspect/dead live in protocol/state.py; membership.py carries them out.
"""

from __future__ import annotations

import random

from protocol.codec import Dead, User, UserStream, encode
from protocol.config import Config
from protocol.core import Core
from protocol.delegate import Delegate
from protocol.gossip import Gossip
from protocol.keyring import Keyring
from protocol.membership import Membership
from protocol.net import Net
from protocol.outputs import (
    Datagram,
    Diagnostic,
    JoinResult,
    LeaveDone,
    NodeEvent,
    NodeJoin,
    NodeLeave,
    NodeUpdate,
    StreamOpen,
    Transmit,
)
from protocol.probing import Prober
from protocol.state import INCARNATION_JUMP_LIMIT, Addr, NodeState

# protocol.node is where the driver, Serf and the tests take the Node's whole surface from: the IO records too.
__all__ = [
    "Datagram",
    "Delegate",
    "Diagnostic",
    "JoinResult",
    "LeaveDone",
    "Node",
    "NodeEvent",
    "NodeJoin",
    "NodeLeave",
    "NodeUpdate",
    "StreamOpen",
    "Transmit",
]

class Node:
    """One memberlist member; see the module docstring and docs/internals.md for the IO surface."""

    INCARNATION_JUMP_LIMIT = INCARNATION_JUMP_LIMIT

    def __init__(
        self,
        config: Config,
        *,
        name: str,
        addr: Addr,
        rng: random.Random,
        now: float,
        delegate: Delegate | None = None,
        keyring: Keyring | None = None,
    ) -> None:
        core = Core(config, name, addr, rng, delegate if delegate is not None else Delegate(), keyring)
        self._core = core
        self._membership = Membership(core)
        self._prober = Prober(core, self._membership)
        self._gossip = Gossip(core, self._membership)
        self._net = Net(core, self._membership, self._prober, self._gossip)
        self.stats = core.stats
        #: Seconds each finished probe took, ack or probe interval end (memberlist's probeNode timer); the agent's
        #: metrics drain it, and only the latest are kept for a reader that never comes.
        self.probe_durations = self._prober.durations
        self._membership.set_alive(now)
        self._schedule_tickers(now)

    def _schedule_tickers(self, now: float) -> None:
        """memberlist schedule(): probe, push/pull and gossip tickers, each with a random stagger."""
        core, prober, gossip = self._core, self._prober, self._gossip
        cfg = core.config
        prober.tick_at = now + core.rng.random() * cfg.probe_interval
        gossip.tick_at = now + core.rng.random() * cfg.gossip_interval
        if cfg.probe_interval > 0:
            core.at(prober.tick_at, prober.probe_tick)
        if cfg.push_pull_interval > 0:
            core.at(now + core.rng.random() * cfg.push_pull_interval, gossip.start_push_pull_ticker)
        gossip.ticking = cfg.gossip_interval > 0 and cfg.gossip_nodes > 0

    # ----------------------------------------------------------------------------------------------------
    # public views

    @property
    def config(self) -> Config:
        return self._core.config

    @property
    def name(self) -> str:
        return self._core.name

    @property
    def addr(self) -> Addr:
        return self._core.addr

    @property
    def keyring(self) -> Keyring | None:
        """Gossip encryption (protocol/keyring.py); shared with Serf, whose key queries change it in place."""
        return self._core.keyring

    @property
    def local(self) -> NodeState:
        return self._core.nodes[self._core.name]

    @property
    def incarnation(self) -> int:
        return self._membership.incarnation

    @property
    def health_score(self) -> int:
        """Lifeguard awareness score (0 = healthy)."""
        return self._core.awareness.score

    @property
    def has_left(self) -> bool:
        return self._membership.left

    def members(self) -> list[NodeState]:
        """Live members (alive or suspect), ourselves included, as memberlist Members()."""
        return [s for s in self.all_members() if not s.dead_or_left]

    def all_members(self) -> list[NodeState]:
        """Every known member, dead and left ones included, in probe order."""
        nodes = self._core.nodes
        return [nodes[n] for n in self._core.order]

    def get(self, name: str) -> NodeState | None:
        return self._core.nodes.get(name)

    def num_alive(self) -> int:
        """Members not dead or left, ourselves included (memberlist NumMembers)."""
        return sum(1 for s in self._core.nodes.values() if not s.dead_or_left)

    def estimated_nodes(self) -> int:
        """memberlist estNumNodes: everything in the probe list, recently dead included."""
        return self._core.estimated_nodes()

    # ----------------------------------------------------------------------------------------------------
    # outputs and time

    def poll_transmit(self) -> Transmit | None:
        transmits = self._core.transmits
        return transmits.popleft() if transmits else None

    def poll_event(self) -> NodeEvent | None:
        events = self._core.events
        return events.popleft() if events else None

    def poll_timeout(self) -> float | None:
        deadlines = [d for d in (self._core.poll_timeout(), self._gossip.due_at()) if d is not None]
        return min(deadlines) if deadlines else None

    def handle_timeout(self, now: float) -> None:
        """Run every timer due at or before `now` (in deadline order), the gossip ticker's included."""
        core, gossip = self._core, self._gossip
        while not core.stopped and gossip.ticking and gossip.tick_at <= now:
            core.handle_timeout(gossip.tick_at)  # timers due before the tick go first
            if core.stopped:
                return
            core.guarded(gossip.gossip_tick, now)  # moves tick_at past now: the loop ends
        core.handle_timeout(now)

    # ----------------------------------------------------------------------------------------------------
    # commands

    def join(self, now: float, addrs: list[Addr]) -> None:
        """Push/pull (join=True) with each address; one JoinResult event per address."""
        if self._core.stopped:
            return
        for addr in addrs:
            self._gossip.start_push_pull(now, tuple(addr), join=True)  # type: ignore[arg-type]

    def leave(self, now: float) -> None:
        """Broadcast a dead message about ourselves with From == us (a graceful leave); LeaveDone follows
        once that broadcast has been fully sent, at once if nobody is alive to tell, or after
        broadcast_timeout (then with timed_out=True)."""
        core, membership = self._core, self._membership
        if core.stopped:
            return
        if membership.left:
            core.events.append(LeaveDone())
            return
        membership.left = True
        membership.leave_pending = True
        me = self.local
        membership.dead_node(now, Dead(me.incarnation, me.name, me.name))
        self.gossip_now(now)
        if not membership.leave_pending:
            return  # already finished
        if any(not s.dead_or_left and s.name != core.name for s in core.nodes.values()):
            membership.leave_timer = core.at(now + core.config.broadcast_timeout, membership.leave_timeout)
        else:
            membership.leave_finished()

    def update_meta(self, now: float) -> None:
        """Re-read delegate.node_meta, bump the incarnation and gossip the new alive (UpdateNode)."""
        if not self._core.stopped:
            self._membership.update_meta(now)

    def gossip_now(self, now: float) -> None:
        """One gossip round outside the ticker: a leaving node sends its news at once rather than at the next
        tick (memberlist waits for the tick; the bytes on the wire are the same)."""
        self._gossip.gossip_now(now)

    def shutdown(self) -> None:
        """Stop everything: no timers, no transmits, inputs ignored (memberlist Shutdown, no leave)."""
        core = self._core
        core.stopped = True
        core.timers.clear()
        self._gossip.ticking = False
        core.transmits.clear()
        core.streams.clear()
        self._net.clear()
        self._prober.clear()

    def send_best_effort(self, addr: Addr, payload: bytes, node_name: str = "") -> None:
        """A user message over UDP to one member (memberlist SendBestEffort / SendToAddress)."""
        core = self._core
        if not core.stopped:
            core.raw_send(addr, [encode(User(payload))], core.nodes.get(node_name))

    def send_reliable(self, addr: Addr, payload: bytes) -> None:
        """A user message over TCP (memberlist SendReliable); no reply is read."""
        core = self._core
        if not core.stopped:
            core.open_stream(addr, core.wrap_stream(encode(UserStream(payload))), None, core.config.tcp_timeout)

    # ----------------------------------------------------------------------------------------------------
    # inputs (protocol/net.py)

    def handle_datagram(self, now: float, addr: Addr, data: bytes) -> None:
        """One UDP packet: label/CRC/compression/compound framing undone, each message handled."""
        self._net.handle_datagram(now, addr, data)

    def accept_stream(self, now: float, addr: Addr) -> int:
        """A TCP connection from `addr` was accepted: its id for handle_stream_data and close_stream."""
        return self._net.accept_stream(now, addr)

    def handle_stream_data(self, now: float, stream_id: int, data: bytes) -> bytes | None:
        """The next bytes of an accepted stream (only the new ones: the reader keeps what came before).

        None = read more; bytes = write them, then close (b"" = just close). Each byte is parsed once. A stream
        past config.stream_max_bytes or older than config.tcp_timeout is answered with an error and dropped.
        """
        return self._net.handle_stream_data(now, stream_id, data)

    def close_stream(self, stream_id: int) -> None:
        """The accepted connection is gone (closed, timed out): forget its partial message."""
        self._net.close_stream(stream_id)

    def handle_stream(self, now: float, addr: Addr, data: bytes) -> bytes | None:
        """A whole inbound stream in one buffer (accept, feed, close): None if it ends before the message."""
        stream_id = self.accept_stream(now, addr)
        try:
            return self.handle_stream_data(now, stream_id, data)
        finally:
            self.close_stream(stream_id)

    def handle_stream_reply(self, now: float, stream_id: int, data: bytes) -> bool:
        """The next reply bytes on a stream we opened (only the new ones); True once a whole reply was handled
        (or refused). The reply is bounded like an inbound stream (config.stream_max_bytes)."""
        return self._net.handle_stream_reply(now, stream_id, data)

    def handle_stream_error(self, now: float, stream_id: int, reason: str) -> None:
        """A stream we opened failed (dial, read, timeout)."""
        self._net.handle_stream_error(now, stream_id, reason)
