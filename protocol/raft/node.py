"""RawNode: the core's surface for a driver (etcd-io/raft's RawNode, synchronous, no threads, no clock).

    node = RawNode(Config(id="a"), storage, random.Random(seed))
    loop:   node.tick() on the timer; node.step(msg) per message; node.propose(data) per request
            if node.has_ready():
                rd = node.ready()
                send rd.early_messages (they need not wait for the disk)
                persist rd.snapshot, rd.entries, rd.hard_state (fsync if rd.must_sync)
                send rd.messages; apply rd.committed_entries; serve rd.read_states once applied >= index
                node.advance()

Between ready() and advance() the node may be stepped and ticked (what that produces waits for the next
Ready); advance() tells the leader its own entries are durable, which is when they count toward a commit.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import attrs

from .config import Config
from .core import Raft
from .progress import ProgressState
from .storage import Storage
from .types import ConfChange, ConfState, HardState, Message, MsgType, Ready, Role, SoftState

#: messages that claim nothing about the sender's disk: a leader's replication and its heartbeats
_EARLY_TYPES = frozenset({MsgType.APPEND, MsgType.HEARTBEAT, MsgType.SNAPSHOT, MsgType.TIMEOUT_NOW})


@attrs.frozen
class FollowerStatus:
    match: int
    next: int
    state: ProgressState
    inflight: int


@attrs.frozen(kw_only=True)
class Status:
    id: str
    term: int
    vote: str
    commit: int
    applied: int
    last_index: int
    last_term: int
    lead: str
    role: Role
    conf: ConfState
    lead_transferee: str
    progress: dict[str, FollowerStatus]  # the leader's view of every server; empty elsewhere


class RawNode:
    def __init__(self, config: Config, storage: Storage, rng: random.Random) -> None:
        self.raft = Raft(config, storage, rng)
        self._prev_soft = SoftState(self.raft.lead, self.raft.role)
        self._prev_hard = HardState(self.raft.term, self.raft.vote, self.raft.log.committed)
        self._in_flight: Ready | None = None
        self._in_flight_votes = False  # the Ready in flight changes the term or vote (its early list was empty)

    # ------------------------------------------------------------------ inputs
    def tick(self) -> None:
        self.raft.tick()

    def campaign(self) -> None:
        """Start an election now (skipping pre-vote), e.g. for a single bootstrapped server."""
        self.raft.campaign()

    def step(self, m: Message) -> None:
        """A message from a peer (`m.to` must be us; anything else is refused with ValueError)."""
        if m.to != self.raft.id:
            raise ValueError(f"message for {m.to!r} stepped into {self.raft.id!r}")
        self.raft.step(m)

    def propose(self, data: bytes) -> tuple[int, int] | None:
        """Append a command; its (index, term): it took effect iff that index is applied with that term.
        Raises NotLeader / ProposalDropped; None when forwarded to the leader (forward_proposals)."""
        return self.raft.propose((data,))

    def propose_batch(self, datas: Sequence[bytes]) -> tuple[int, int] | None:
        """Append several commands at once, as `propose` does one: they go to the followers in one APPEND each
        rather than one per command.  The i-th is at the returned index + i; all or none are taken."""
        return self.raft.propose(datas)

    def propose_conf_change(self, cc: ConfChange) -> tuple[int, int]:
        return self.raft.propose_conf_change(cc)

    def read_index(self, context: bytes) -> None:
        """Ask for a linearizable read; a ReadState with this (unique) context comes in a later Ready.
        On a follower the request goes to the leader; if it is lost, no ReadState ever comes."""
        self.raft.read_index(context)

    def transfer_leadership(self, to: str) -> None:
        self.raft.transfer_leadership(to)

    def report_unreachable(self, to: str) -> None:
        """The transport failed to send to `to` (connection down): the leader probes it instead of pipelining."""
        self.raft.report_unreachable(to)

    def report_snapshot(self, to: str, delivered: bool) -> None:
        """The transport's outcome for a SNAPSHOT message to `to` (sent whole, or failed)."""
        self.raft.report_snapshot(to, delivered)

    # ------------------------------------------------------------------ outputs
    def has_ready(self) -> bool:
        r = self.raft
        return bool(
            SoftState(r.lead, r.role) != self._prev_soft
            or HardState(r.term, r.vote, r.log.committed) != self._prev_hard
            or r.log.unstable.entries or r.log.unstable.snapshot is not None
            or r.msgs or r.read_states or r.log.has_next_committed())

    def ready(self) -> Ready:
        if self._in_flight is not None:
            raise RuntimeError("ready() called again before advance()")
        r = self.raft
        soft = SoftState(r.lead, r.role)
        hard = HardState(r.term, r.vote, r.log.committed)
        snap = r.log.unstable.snapshot
        entries = tuple(r.log.unstable.entries)
        committed = tuple(r.log.next_committed())
        vote_changed = (hard.term, hard.vote) != (self._prev_hard.term, self._prev_hard.vote)
        early: tuple[Message, ...] = ()
        late = tuple(r.msgs)
        if not vote_changed:  # a message of a term not yet on disk waits for it, whatever its type
            early = tuple(m for m in r.msgs if m.type in _EARLY_TYPES)
            late = tuple(m for m in r.msgs if m.type not in _EARLY_TYPES)
        rd = Ready(
            soft_state=soft if soft != self._prev_soft else None,
            hard_state=hard if hard != self._prev_hard else None,
            entries=entries,
            snapshot=snap,
            committed_entries=committed,
            messages=late,
            read_states=tuple(r.read_states),
            must_sync=bool(entries) or snap is not None or vote_changed,
            early_messages=early,
        )
        r.msgs, r.read_states = [], []
        self._prev_soft, self._prev_hard = soft, hard
        if snap is not None:
            r.log.applying = max(r.log.applying, snap.meta.index)
        if committed:
            r.log.applying = committed[-1].index
        self._in_flight = rd
        self._in_flight_votes = vote_changed
        return rd

    def take_early_messages(self) -> tuple[Message, ...]:
        """While a Ready is being persisted: the messages queued since that claim nothing about our disk (a
        leader's APPENDs and heartbeats, by the rule `ready` applies to its own early list), taken out of the
        next Ready so that a slow fsync does not hold back heartbeats and read rounds.  Nothing while the Ready
        in flight, or anything since, changes the term or vote: messages of a term not yet on disk wait for it."""
        r = self.raft
        if self._in_flight is None or self._in_flight_votes:
            return ()
        if (r.term, r.vote) != (self._prev_hard.term, self._prev_hard.vote):
            return ()
        early = tuple(m for m in r.msgs if m.type in _EARLY_TYPES)
        if early:
            r.msgs = [m for m in r.msgs if m.type not in _EARLY_TYPES]
        return early

    def advance(self) -> None:
        """The last Ready is persisted, sent and applied."""
        rd, self._in_flight = self._in_flight, None
        if rd is None:
            raise RuntimeError("advance() without a ready()")
        log = self.raft.log
        if rd.snapshot is not None:
            if log.unstable.snapshot is rd.snapshot:
                log.unstable.snapshot = None
            log.applied_to(rd.snapshot.meta.index)
        if rd.committed_entries:
            log.applied_to(rd.committed_entries[-1].index)
        if rd.entries:
            last = rd.entries[-1]
            log.unstable.stable_to(last.index, last.term)
            self.raft.on_persisted(last.index, last.term)
        self.raft.confs.compact(log.applied)

    # ------------------------------------------------------------------ inspection
    def status(self) -> Status:
        r = self.raft
        progress = {}
        if r.role is Role.LEADER:
            progress = {sid: FollowerStatus(pr.match, pr.next, pr.state, pr.inflights.count())
                        for sid, pr in r.prs.items()}
        return Status(id=r.id, term=r.term, vote=r.vote, commit=r.log.committed, applied=r.log.applied,
                      last_index=r.log.last_index(), last_term=r.log.last_term(), lead=r.lead, role=r.role, conf=r.conf,
                      lead_transferee=r.lead_transferee, progress=progress)

    def applied_conf(self) -> ConfState:
        """The configuration in force at the applied index: what a snapshot taken now must record."""
        return self.raft.confs.at(self.raft.log.applied)
