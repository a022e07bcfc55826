"""The Raft state machine: roles, elections, replication, commitment, reads, snapshots and transfers.

Inputs are `tick()`, `step(message)` and the requests RawNode forwards; outputs accumulate in `msgs` and
`read_states` and in the log's unstable part, which RawNode turns into a Ready. Everything that must be
durable before a message leaves (a vote, a term, appended entries) changes here in the same call that
queues the message, so both always land in the same Ready (persist, then send).

The leader's own log counts toward a commit only once persisted (`on_persisted`, from RawNode.advance), not
when appended: so the leader may send its APPENDs while its own fsync runs (thesis §10.2.1, etcd-io/raft's
self-MsgAppResp), and an entry is committed only when a quorum holds it on disk, the leader or not.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from .config import Config, ReadOnlyOption
from .errors import ConfChangeRejected, NotLeader, ProposalDropped
from .log import LogInvariantError, RaftLog
from .membership import ConfHistory, validate_change
from .progress import Inflights, Progress, ProgressState
from .quorum import VoteResult, committed_index, has_quorum, vote_result
from .read_only import Lease, ReadIndexQueue
from .storage import Compacted, Storage
from .types import (
    NO_ID,
    ConfChange,
    ConfState,
    Entry,
    EntryKind,
    Message,
    MsgType,
    ReadState,
    Role,
    Snapshot,
    conf_change_to_bytes,
)

CAMPAIGN_TRANSFER = b"transfer"  # a vote request's context when the old leader asked for it (TIMEOUT_NOW)

_FROM_LEADER = (MsgType.APPEND, MsgType.HEARTBEAT, MsgType.SNAPSHOT)
_LOCAL = (MsgType.PROPOSE, MsgType.READ_INDEX)  # forwarded requests carry term 0, as etcd's do


class Raft:
    def __init__(self, cfg: Config, storage: Storage, rng: random.Random) -> None:
        cfg.validate()
        self.cfg = cfg
        self.id = cfg.id
        self.rng = rng
        self.log = RaftLog(storage)
        hard, _ = storage.initial_state()
        snap = storage.snapshot()
        self.confs = ConfHistory(snap.meta.index, snap.meta.conf)
        self._load_confs(storage)
        self.term = hard.term
        self.vote = hard.vote
        # a snapshot holds only committed entries, even if the commit index written with it was not synced
        self.log.commit_to(max(hard.commit, snap.meta.index))
        # the state machine starts from the snapshot unless the driver says it has applied more
        self.log.applied_to(max(cfg.applied, snap.meta.index))
        self.role = Role.FOLLOWER
        self.lead = NO_ID
        self.msgs: list[Message] = []
        self.read_states: list[ReadState] = []
        self.prs: dict[str, Progress] = {}
        self.votes: dict[str, bool] = {}
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = cfg.election_tick
        self.lead_transferee = NO_ID
        self.pending_conf_index = 0
        self.reads = ReadIndexQueue()
        self.reads_waiting_commit: list[tuple[str, bytes]] = []
        self.lease = Lease()
        self.now = 0  # ticks since start: the leader's lease clock
        # LEASE: a server that just started may have acknowledged a leader it no longer remembers; it grants
        # no vote for an election timeout so that leader's lease runs out first.
        self.vote_fence = cfg.election_tick if cfg.read_only is ReadOnlyOption.LEASE else 0
        self.become_follower(self.term, NO_ID)

    def _load_confs(self, storage: Storage) -> None:
        if storage.first_index() > self.confs.latest_index + 1:
            raise LogInvariantError(f"storage starts at {storage.first_index()} but its snapshot ends at "
                                    f"{self.confs.latest_index}: the entries between are lost")
        lo, last = self.confs.latest_index + 1, storage.last_index()
        while lo <= last:
            batch = storage.entries(lo, last + 1, 1 << 22)
            self.confs.add(batch)
            lo = batch[-1].index + 1

    # ------------------------------------------------------------------ small facts
    @property
    def conf(self) -> ConfState:
        return self.confs.current

    def promotable(self) -> bool:
        return self.id in self.conf.voters()

    def committed_in_term(self) -> bool:
        return self.log.term_or_none(self.log.committed) == self.term

    def _send(self, type_: MsgType, to: str, *, term: int | None = None, **fields) -> None:
        self.msgs.append(Message(type=type_, to=to, from_=self.id,
                                 term=self.term if term is None else term, **fields))

    # ------------------------------------------------------------------ role changes
    def _reset(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self.vote = NO_ID
        self.lead = NO_ID
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = self.cfg.election_tick + self.rng.randrange(self.cfg.election_tick)
        self.lead_transferee = NO_ID
        self.votes = {}
        self.prs = {}
        self.pending_conf_index = 0
        self.reads = ReadIndexQueue()
        self.reads_waiting_commit = []
        self.lease = Lease()

    def become_follower(self, term: int, lead: str) -> None:
        self._reset(term)
        self.role = Role.FOLLOWER
        self.lead = lead

    def become_pre_candidate(self) -> None:
        # no new term and no vote: only the role and the tally change
        self.role = Role.PRE_CANDIDATE
        self.votes = {}
        self.lead = NO_ID

    def become_candidate(self) -> None:
        self._reset(self.term + 1)
        self.role = Role.CANDIDATE
        self.vote = self.id

    def become_leader(self) -> None:
        self._reset(self.term)
        self.role = Role.LEADER
        self.lead = self.id
        self._reset_progress()
        self._append([Entry(0, 0, EntryKind.NORMAL, b"")])  # the term's no-op: commits the earlier terms
        self.pending_conf_index = self.log.last_index()  # no change before the no-op is applied

    def _new_progress(self) -> Progress:
        return Progress(next=self.log.last_index() + 1, inflights=Inflights(self.cfg.max_inflight_msgs))

    def _reset_progress(self) -> None:
        self.prs = {sid: self._new_progress() for sid in self.conf.ids()}
        if self.id in self.prs:
            self.prs[self.id].match = self.log.last_stable_index()

    # ------------------------------------------------------------------ ticks
    def tick(self) -> None:
        self.now += 1
        if self.vote_fence:
            self.vote_fence -= 1
        if self.role is Role.LEADER:
            self._tick_leader()
        else:
            self._tick_election()

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self.promotable() and self.election_elapsed >= self.randomized_election_timeout:
            self.election_elapsed = 0
            self.campaign(pre_vote=self.cfg.pre_vote)

    def _tick_leader(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.cfg.election_tick:
            self.election_elapsed = 0
            if self.cfg.check_quorum and not self._quorum_active():
                self.become_follower(self.term, NO_ID)
                return
            self.lead_transferee = NO_ID  # the transfer did not finish within an election timeout
        for sid, pr in self.prs.items():
            if pr.state is ProgressState.SNAPSHOT and sid != self.id:
                pr.snapshot_ticks += 1
                if pr.snapshot_ticks >= self.cfg.election_tick:
                    pr.become_probe()  # the snapshot or its answer was lost: start over
        self.lease.prune(self.now - 2 * self.cfg.election_tick)
        if self.heartbeat_elapsed >= self.cfg.heartbeat_tick:
            self.heartbeat_elapsed = 0
            self._bcast_heartbeat()

    def _quorum_active(self) -> bool:
        active = {sid for sid, pr in self.prs.items() if pr.recent_active or sid == self.id}
        for sid, pr in self.prs.items():
            if sid != self.id:
                pr.recent_active = False
        return has_quorum(self.conf.voters(), active)

    # ------------------------------------------------------------------ elections
    def campaign(self, *, pre_vote: bool = False, transfer: bool = False) -> None:
        if not self.promotable():
            return
        if pre_vote:
            self.become_pre_candidate()
            vote_type, term = MsgType.PRE_VOTE, self.term + 1
        else:
            self.become_candidate()
            vote_type, term = MsgType.VOTE, self.term
        if self._poll(self.id, True) is VoteResult.WON:
            self._won(pre_vote)
            return
        last = self.log.last_index()
        for sid in sorted(self.conf.voters() - {self.id}):
            self._send(vote_type, sid, term=term, index=last, log_term=self.log.last_term(),
                       context=CAMPAIGN_TRANSFER if transfer else b"")

    def _won(self, pre_vote: bool) -> None:
        if pre_vote:
            self.campaign()
        else:
            self.become_leader()

    def _poll(self, sid: str, granted: bool) -> VoteResult:
        self.votes.setdefault(sid, granted)
        return vote_result(self.conf.voters(), self.votes)

    def _in_lease(self) -> bool:
        return self.cfg.check_quorum and (
            (self.lead != NO_ID and self.election_elapsed < self.cfg.election_tick) or self.vote_fence > 0)

    def _handle_vote_request(self, m: Message) -> None:
        pre = m.type is MsgType.PRE_VOTE
        resp = MsgType.PRE_VOTE_RESP if pre else MsgType.VOTE_RESP
        can_vote = (self.vote == m.from_ or (self.vote == NO_ID and self.lead == NO_ID)
                    or (pre and m.term > self.term))
        if can_vote and self.log.is_up_to_date(m.index, m.log_term):
            self._send(resp, m.from_, term=m.term)
            if not pre:
                self.election_elapsed = 0
                self.vote = m.from_
        else:
            self._send(resp, m.from_, reject=True)

    # ------------------------------------------------------------------ step
    def step(self, m: Message) -> None:
        if m.term == 0 and m.type in _LOCAL:
            pass
        elif m.term > self.term:
            if (m.type in (MsgType.VOTE, MsgType.PRE_VOTE) and m.context != CAMPAIGN_TRANSFER
                    and self._in_lease()):
                return  # we hear a leader: a disruptive candidate is not listened to
            if m.type is MsgType.PRE_VOTE or (m.type is MsgType.PRE_VOTE_RESP and not m.reject):
                pass  # a pre-vote changes no term
            else:
                self.become_follower(m.term, m.from_ if m.type in _FROM_LEADER else NO_ID)
        elif m.term < self.term:
            if (self.cfg.check_quorum or self.cfg.pre_vote) and m.type in (MsgType.APPEND, MsgType.HEARTBEAT):
                # a stale leader learns our term (it could not win an election to get past it otherwise)
                self._send(MsgType.APPEND_RESP, m.from_)
            elif m.type is MsgType.PRE_VOTE:
                self._send(MsgType.PRE_VOTE_RESP, m.from_, reject=True)
            return
        if m.type in (MsgType.VOTE, MsgType.PRE_VOTE):
            self._handle_vote_request(m)
        elif self.role is Role.LEADER:
            self._step_leader(m)
        elif self.role is Role.FOLLOWER:
            self._step_follower(m)
        else:
            self._step_candidate(m)

    def _step_follower(self, m: Message) -> None:
        t = m.type
        if t in _FROM_LEADER:
            self.election_elapsed = 0
            self.lead = m.from_
            if t is MsgType.APPEND:
                self._handle_append(m)
            elif t is MsgType.HEARTBEAT:
                self._handle_heartbeat(m)
            else:
                self._handle_snapshot(m)
        elif t is MsgType.TIMEOUT_NOW:
            self.campaign(transfer=True)
        elif t is MsgType.READ_INDEX_RESP:
            self.read_states.append(ReadState(m.index, m.context))
        elif t is MsgType.PROPOSE and self.cfg.forward_proposals and self.lead != NO_ID:
            self.msgs.append(Message(type=MsgType.PROPOSE, to=self.lead, from_=self.id, entries=m.entries))

    def _step_candidate(self, m: Message) -> None:
        t = m.type
        if t in _FROM_LEADER:
            self.become_follower(self.term, m.from_)  # someone won this term
            self._step_follower(m)
        elif t in (MsgType.VOTE_RESP, MsgType.PRE_VOTE_RESP):
            mine = MsgType.PRE_VOTE_RESP if self.role is Role.PRE_CANDIDATE else MsgType.VOTE_RESP
            if t is not mine:
                return
            result = self._poll(m.from_, not m.reject)
            if result is VoteResult.WON:
                self._won(self.role is Role.PRE_CANDIDATE)
            elif result is VoteResult.LOST:
                self.become_follower(self.term, NO_ID)

    def _handle_append(self, m: Message) -> None:
        if m.index < self.log.committed:
            self._send(MsgType.APPEND_RESP, m.from_, index=self.log.committed)
            return
        result = self.log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if result is None:
            hint, hint_term = self.log.find_conflict_by_term(min(m.index, self.log.last_index()), m.log_term)
            self._send(MsgType.APPEND_RESP, m.from_, index=m.index, reject=True, reject_hint=hint,
                       log_term=hint_term)
            return
        last_new, written = result
        if written:
            self.confs.truncate_from(written[0].index)
            self.confs.add(written)
        self._send(MsgType.APPEND_RESP, m.from_, index=last_new)

    def _handle_heartbeat(self, m: Message) -> None:
        self.log.commit_to(m.commit)
        self._send(MsgType.HEARTBEAT_RESP, m.from_, index=m.index, context=m.context)

    def _handle_snapshot(self, m: Message) -> None:
        snap = m.snapshot
        if snap is not None and self._restore(snap):
            self._send(MsgType.APPEND_RESP, m.from_, index=self.log.last_index())
        else:
            self._send(MsgType.APPEND_RESP, m.from_, index=self.log.committed)

    def _restore(self, snap: Snapshot) -> bool:
        if snap.meta.index <= self.log.committed:
            return False
        if self.log.match_term(snap.meta.index, snap.meta.term):
            self.log.commit_to(snap.meta.index)  # we hold that entry: only the commit moves
            return False
        self.log.restore(snap)
        self.confs.reset(snap.meta.index, snap.meta.conf)
        return True

    # ------------------------------------------------------------------ leader
    def _step_leader(self, m: Message) -> None:
        t = m.type
        if t is MsgType.PROPOSE:
            # forwarded commands only (a configuration change is the leader's own decision); dropped when
            # the leader could not take them itself
            if self.lead_transferee == NO_ID and self.id in self.conf.ids():
                self._append([e for e in m.entries if e.kind is EntryKind.NORMAL])
            return
        if t is MsgType.READ_INDEX:
            self.read_index(m.context, origin=m.from_)
            return
        pr = self.prs.get(m.from_)
        if pr is None or m.from_ == self.id:
            return
        if t is MsgType.APPEND_RESP:
            pr.recent_active = True
            self._handle_append_resp(m, pr)
        elif t is MsgType.HEARTBEAT_RESP:
            pr.recent_active = True
            pr.probe_sent = False
            if pr.state is ProgressState.REPLICATE and pr.inflights.full():
                pr.inflights.free_first()
            if pr.match < self.log.last_index() or pr.state is ProgressState.PROBE:
                self._send_append(m.from_)
            self.lease.ack(m.from_, m.index)
            if m.context:
                for req in self.reads.ack(m.from_, m.context, self.conf.voters()):
                    self._answer_read(req.origin, req.index, req.context)

    def _handle_append_resp(self, m: Message, pr: Progress) -> None:
        if m.reject:
            hint = m.reject_hint
            if m.log_term > 0:
                hint, _ = self.log.find_conflict_by_term(m.reject_hint, m.log_term)
            if pr.maybe_decrease_to(m.index, hint):
                if pr.state is ProgressState.REPLICATE:
                    pr.become_probe()
                self._send_append(m.from_)
            return
        was_paused = pr.is_paused()
        if not pr.maybe_update(m.index):
            return
        if pr.state is ProgressState.PROBE:
            pr.become_replicate()
        elif pr.state is ProgressState.SNAPSHOT:
            if pr.match >= pr.pending_snapshot:
                pr.become_probe()
                pr.become_replicate()
        else:
            pr.inflights.free_le(m.index)
        if self._maybe_commit():
            self._bcast_append()
        elif was_paused:
            self._send_append(m.from_)
        while self.role is Role.LEADER and m.from_ in self.prs and self._send_append(m.from_, send_if_empty=False):
            pass
        if m.from_ == self.lead_transferee and pr.match == self.log.last_index():
            self._send(MsgType.TIMEOUT_NOW, m.from_)

    def _send_append(self, to: str, send_if_empty: bool = True) -> bool:
        pr = self.prs[to]
        if pr.is_paused():
            return False
        last = self.log.last_index()
        try:
            prev_term = self.log.term(pr.next - 1)
            entries = self.log.slice(pr.next, last + 1, self.cfg.max_size_per_msg)
        except Compacted:
            snap = self.log.snapshot()
            if snap.is_empty:
                raise AssertionError(f"entries before {pr.next} are compacted but there is no snapshot") from None
            self._send(MsgType.SNAPSHOT, to, snapshot=snap)
            pr.become_snapshot(snap.meta.index)
            return True
        if not entries and not send_if_empty:
            return False
        self._send(MsgType.APPEND, to, index=pr.next - 1, log_term=prev_term, entries=tuple(entries),
                   commit=self.log.committed)
        if pr.state is ProgressState.REPLICATE:
            if entries:
                pr.next = entries[-1].index + 1
                pr.inflights.add(entries[-1].index)
        elif pr.state is ProgressState.PROBE:
            pr.probe_sent = True
        return True

    def _bcast_append(self) -> None:
        for sid in sorted(self.prs):
            if sid != self.id:
                self._send_append(sid)

    def _bcast_heartbeat(self, context: bytes | None = None) -> None:
        ctx = self.reads.last_context() if context is None else context
        round_ = self.lease.next_round(self.now)
        for sid in sorted(self.prs):
            if sid != self.id:
                pr = self.prs[sid]
                self._send(MsgType.HEARTBEAT, sid, commit=min(pr.match, self.log.committed), context=ctx,
                           index=round_)

    def _maybe_commit(self) -> bool:
        match = {sid: pr.match for sid, pr in self.prs.items()}
        if not self.log.maybe_commit(committed_index(self.conf.voters(), match), self.term):
            return False
        self._after_commit()
        return True

    def _after_commit(self) -> None:
        if self.reads_waiting_commit and self.committed_in_term():
            waiting, self.reads_waiting_commit = self.reads_waiting_commit, []
            for origin, ctx in waiting:
                self.read_index(ctx, origin=origin)
        if self.id not in self.conf.voters() and self.log.committed >= self.confs.latest_index:
            self._step_down_removed()

    def _step_down_removed(self) -> None:
        """Our removal (or demotion) is committed: hand over to the most up-to-date voter, then follow."""
        last = self.log.last_index()
        for sid in sorted(self.conf.voters()):
            pr = self.prs.get(sid)
            if pr is not None and pr.match == last:
                self._send(MsgType.TIMEOUT_NOW, sid)
                break
        self.become_follower(self.term, NO_ID)

    def _append(self, entries: list[Entry]) -> tuple[int, int]:
        last = self.log.last_index()
        stamped = [Entry(last + n, self.term, e.kind, e.data) for n, e in enumerate(entries, start=1)]
        if not stamped:
            return last, self.term
        self.log.append(stamped)
        if self.confs.add(stamped):
            self._apply_conf_to_progress()
        # our own match moves in on_persisted, once these entries are on our disk
        self._maybe_commit()
        if self.role is Role.LEADER:
            self._bcast_append()
        return stamped[-1].index, self.term

    def on_persisted(self, index: int, term: int) -> None:
        """The driver made our log durable up to (index, term): as the leader, that counts as our own
        acknowledgement (it may commit, and then the followers learn the new commit index)."""
        pr = self.prs.get(self.id) if self.role is Role.LEADER else None
        if pr is None or not self.log.match_term(index, term) or not pr.maybe_update(index):
            return
        if self._maybe_commit():
            self._bcast_append()

    def _apply_conf_to_progress(self) -> None:
        ids = self.conf.ids()
        for sid in list(self.prs):
            if sid not in ids:
                del self.prs[sid]
        for sid in ids:
            if sid not in self.prs:
                self.prs[sid] = self._new_progress()
        if self.id in self.prs:
            self.prs[self.id].maybe_update(self.log.last_stable_index())
        if self.lead_transferee and self.lead_transferee not in self.conf.voters():
            self.lead_transferee = NO_ID

    # ------------------------------------------------------------------ requests (RawNode)
    def propose(self, datas: Sequence[bytes]) -> tuple[int, int] | None:
        """Append commands together (one APPEND per follower for all of them): (index of the first, term)."""
        entries = [Entry(0, 0, EntryKind.NORMAL, data) for data in datas]
        if not entries:
            raise ValueError("propose: no command given")
        if self.role is not Role.LEADER:
            if self.cfg.forward_proposals and self.lead != NO_ID:
                self.msgs.append(Message(type=MsgType.PROPOSE, to=self.lead, from_=self.id, entries=tuple(entries)))
                return None
            raise NotLeader(self.lead, "proposal")
        self._check_can_propose()
        last, term = self._append(entries)
        return last - len(entries) + 1, term

    def _check_can_propose(self) -> None:
        if self.lead_transferee != NO_ID:
            raise ProposalDropped(f"leadership transfer to {self.lead_transferee!r} in progress")
        if self.id not in self.conf.ids():
            raise ProposalDropped("this leader is being removed from the configuration")

    def propose_conf_change(self, cc: ConfChange) -> tuple[int, int]:
        if self.role is not Role.LEADER:
            raise NotLeader(self.lead, "configuration change")
        self._check_can_propose()
        if self.pending_conf_index > self.log.applied:
            raise ConfChangeRejected(
                f"a configuration change (or this term's first entry) at index {self.pending_conf_index} is "
                f"not applied yet (applied {self.log.applied})")
        validate_change(self.conf, cc)
        index, term = self._append([Entry(0, 0, EntryKind.CONF_CHANGE, conf_change_to_bytes(cc))])
        self.pending_conf_index = index
        return index, term

    def read_index(self, context: bytes, origin: str | None = None) -> None:
        origin = origin or self.id
        if self.role is not Role.LEADER:
            if origin != self.id:
                return
            if self.role is Role.FOLLOWER and self.lead != NO_ID:
                self.msgs.append(Message(type=MsgType.READ_INDEX, to=self.lead, from_=self.id, context=context))
                return
            raise NotLeader(self.lead, "read index")
        if not self.committed_in_term():
            # our commit index may lag the previous leader's until this term's no-op commits
            self.reads_waiting_commit.append((origin, context))
            return
        voters = self.conf.voters()
        if voters == {self.id} or (self.cfg.read_only is ReadOnlyOption.LEASE and self.lease.valid(
                self.id, voters, self.now, self.cfg.lease_ticks())):
            self._answer_read(origin, self.log.committed, context)
        elif self.reads.add(self.log.committed, context, origin):
            for req in self.reads.ack(self.id, context, voters):
                self._answer_read(req.origin, req.index, req.context)
            self._bcast_heartbeat(context)

    def _answer_read(self, origin: str, index: int, context: bytes) -> None:
        if origin == self.id:
            self.read_states.append(ReadState(index, context))
        else:
            self._send(MsgType.READ_INDEX_RESP, origin, index=index, context=context)

    def report_unreachable(self, to: str) -> None:
        """The transport could not deliver to `to`: stop pipelining to it and probe again."""
        pr = self.prs.get(to) if self.role is Role.LEADER else None
        if pr is not None and pr.state is ProgressState.REPLICATE:
            pr.become_probe()

    def report_snapshot(self, to: str, delivered: bool) -> None:
        """The transport's verdict on a SNAPSHOT it sent: failed, probe again at once (rather than after an
        election timeout); delivered, wait for the follower's answer before sending more."""
        pr = self.prs.get(to) if self.role is Role.LEADER else None
        if pr is None or pr.state is not ProgressState.SNAPSHOT:
            return
        if not delivered:
            pr.pending_snapshot = 0
        pr.become_probe()
        pr.probe_sent = True

    def transfer_leadership(self, to: str) -> None:
        if self.role is not Role.LEADER:
            raise NotLeader(self.lead, "leadership transfer")
        if to == self.id:
            return
        if to not in self.conf.voters():
            raise ProposalDropped(f"leadership transfer: {to!r} is not a voter")
        if self.lead_transferee == to:
            return
        self.lead_transferee = to
        self.election_elapsed = 0
        self.lease.revoked = True  # the transferee's forced votes ignore the followers' promise
        pr = self.prs[to]
        if pr.match == self.log.last_index():
            self._send(MsgType.TIMEOUT_NOW, to)
        else:
            self._send_append(to)
