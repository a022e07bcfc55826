"""Driving protocol.raft cores in tests: servers on MemoryStorage that process Ready batches the way a real
driver must (persist, then send, then apply, then advance), the safety checkers that watch them, and a
synchronous network for step-by-step unit tests.

The seeded, fault-injecting simulation is in tests/raft_sim.py; it uses the same Server and Checker.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable

import attrs

from protocol.raft import Config, MemoryStorage, RawNode, bootstrap
from protocol.raft.quorum import has_quorum
from protocol.raft.types import (
    ConfState,
    Entry,
    EntryKind,
    HardState,
    Message,
    MsgType,
    ReadState,
    Ready,
    Role,
    Snapshot,
)
from protocol.raft.types import (
    Server as ConfServer,
)


class InvariantViolation(AssertionError):
    pass


# --------------------------------------------------------------------------------------------- state machine
class Register:
    """The state machine of the simulations: one register with compare-and-set, plus a hash of every applied
    entry (so two servers that applied different commands end in different states)."""

    def __init__(self) -> None:
        self.value: str | None = None
        self.results: dict[str, object] = {}  # op id -> outcome, for the clients
        self.digest = 0
        self.count = 0

    def apply(self, e: Entry) -> None:
        self.digest = hash((self.digest, e.index, e.term, e.data)) & 0xFFFFFFFFFFFF
        self.count += 1
        if e.kind is not EntryKind.NORMAL or not e.data.startswith(b"{"):
            return
        op = json.loads(e.data)
        if op["f"] == "write":
            self.value = op["v"]
            self.results[op["id"]] = True
        elif op["f"] == "cas":
            ok = self.value == op["old"]
            if ok:
                self.value = op["new"]
            self.results[op["id"]] = ok

    def dump(self) -> bytes:
        return json.dumps([self.value, self.results, self.digest, self.count]).encode()

    @classmethod
    def load(cls, data: bytes) -> Register:
        r = cls()
        if data:
            r.value, r.results, r.digest, r.count = json.loads(data)
        return r


# --------------------------------------------------------------------------------------------- a server
class Server:
    """A RawNode, its MemoryStorage and its state machine, with a crash model: writes of a Ready that did
    not ask for fsync (a commit-only hard state change) are lost on a crash."""

    def __init__(self, sid: str, cfg: Config, storage: MemoryStorage, rng: random.Random,
                 checker: Checker | None = None, snapshot_every: int = 0, keep_after_snapshot: int = 5) -> None:
        self.id = sid
        self.cfg = cfg
        self.storage = storage
        self.rng = rng
        self.checker = checker
        self.snapshot_every = snapshot_every
        self.keep_after_snapshot = keep_after_snapshot
        self.durable_hard = storage.hard_state
        self.alive = True
        self.incarnation = 0
        self.read_states: list[ReadState] = []
        self.checked_leader_term = -1  # the Checker's note: leader completeness checked for this term
        self.tear_next_ready = False
        self.torn_crashes = 0
        self.torn_entries = 0
        self.in_flight: Ready | None = None  # taken from the node, not yet persisted (start_ready/finish_ready)
        self._start()

    def _start(self) -> None:
        snap = self.storage.snapshot()
        self.sm = Register.load(snap.data)
        self.applied = snap.meta.index
        self.node = RawNode(attrs_evolve(self.cfg, applied=self.applied), self.storage, self.rng)
        self.last_commit = self.node.raft.log.committed
        self.incarnation += 1
        if self.checker:
            self.checker.on_start(self)

    @property
    def raft(self):
        return self.node.raft

    def process_ready(self) -> list[Message]:
        """Handle every pending Ready; the messages to send (each Ready's early ones before its persist)."""
        out: list[Message] = []
        while self.alive and self.in_flight is None and self.node.has_ready():
            rd, early = self.start_ready()
            out.extend(early)
            if self.alive:
                out.extend(self.finish_ready(rd))
        if self.checker and self.alive:
            self.checker.after_step(self)
        return out

    def start_ready(self) -> tuple[Ready, list[Message]]:
        """Take the next Ready and let its early messages go (a leader's APPENDs leave before its fsync);
        the Ready stays in flight until finish_ready.  A crash due now tears this Ready's persist."""
        rd = self.node.ready()
        self.in_flight = rd
        if self.checker:
            for m in rd.early_messages:
                self.checker.on_send(self, m)
        early = list(rd.early_messages)
        if self.tear_next_ready:
            self._torn_crash(rd)
        return rd, early

    def early_meanwhile(self) -> list[Message]:
        """While a Ready is in flight: the early messages stepping and ticking produced since (the driver sends
        them during its fsync, `RawNode.take_early_messages`)."""
        early = list(self.node.take_early_messages())
        if self.checker:
            for m in early:
                self.checker.on_send(self, m)
        return early

    def finish_ready(self, rd: Ready) -> list[Message]:
        """Persist the Ready in flight, then send, apply and advance; the messages to send after persist."""
        assert rd is self.in_flight, "finish_ready for a Ready not in flight"
        if rd.snapshot is not None:
            self.storage.apply_snapshot(rd.snapshot)
        if rd.entries:
            self.storage.append(rd.entries)
        if rd.hard_state is not None:
            self.storage.set_hard_state(rd.hard_state)
        if rd.must_sync:
            self.durable_hard = self.storage.hard_state
        if self.checker:
            self.checker.on_persisted(self, rd.entries)
            self.checker.note_commit(self)
        if self.checker:
            for m in rd.messages:
                self.checker.on_send(self, m)
        if rd.snapshot is not None:
            self.sm = Register.load(rd.snapshot.data)
            self.applied = rd.snapshot.meta.index
            if self.checker:
                self.checker.on_snapshot_applied(self, rd.snapshot)
        for e in rd.committed_entries:
            if self.checker:
                self.checker.on_apply(self, e)
            self.sm.apply(e)
            self.applied = e.index
        self.read_states.extend(rd.read_states)
        self.in_flight = None
        self.node.advance()
        if self.checker:
            self.checker.note_commit(self)  # advance may commit: our own entries now count
        self._maybe_compact()
        return list(rd.messages)

    def _maybe_compact(self) -> None:
        if not self.snapshot_every:
            return
        if self.applied - self.storage.snapshot().meta.index >= self.snapshot_every:
            self.storage.create_snapshot(self.applied, self.node.applied_conf(), self.sm.dump())
            self.storage.compact(max(self.storage.first_index() - 1, self.applied - self.keep_after_snapshot))

    def crash(self) -> None:
        """Stop now: the hard state written without fsync since the last fsync is lost, and so is a Ready
        in flight (a crash before its fsync completed)."""
        self.storage.set_hard_state(self.durable_hard)
        self.alive = False
        self.read_states = []
        self.tear_next_ready = False
        self.in_flight = None

    def crash_while_writing_next_ready(self) -> None:
        """Crash part-way through persisting the next Ready (or the one in flight): a prefix of its entries
        reaches the disk, its hard state does not, and only its early messages (already sent) left."""
        if self.in_flight is not None:
            self._torn_crash(self.in_flight)
        else:
            self.tear_next_ready = True

    def _torn_crash(self, rd: Ready) -> None:
        self.torn_entries = 0
        if rd.snapshot is None and rd.entries:
            self.torn_entries = self.rng.randrange(len(rd.entries) + 1)
            self.storage.append(rd.entries[: self.torn_entries])
        self.torn_crashes += 1
        self.crash()

    def restart(self) -> None:
        self.alive = True
        self._start()


def attrs_evolve(cfg: Config, **changes) -> Config:
    return attrs.evolve(cfg, **changes)


def bootstrapped_storage(ids: Iterable[str]) -> MemoryStorage:
    entries, hard = bootstrap([ConfServer(i, f"{i}:8300") for i in ids])
    s = MemoryStorage()
    s.append(entries)
    s.set_hard_state(hard)
    return s


# --------------------------------------------------------------------------------------------- the checkers
class Checker:
    """Raft's safety properties, checked incrementally after every step of every server:

    * election safety: at most one leader per term;
    * log matching: an (index, term) names one entry, and the same entry before it, on every server;
    * leader completeness: an entry committed in term T is in the log of every leader of a later term;
    * state-machine safety: no two servers apply different entries at one index; applied prefixes agree
      (each server applies consecutive indexes, from its snapshot on);
    * commit never decreases within a server's life nor passes its last index; applied <= commit;
    * persist before send: a vote request, a granted vote, an acknowledgement leave only once the term, the
      vote or the entries they vouch for are in the server's storage;
    * durable commit: when a leader's commit index moves, a quorum of its voters holds that entry in storage
      (a leader that sent its APPENDs before its own fsync counts itself only once it is on its disk).
    """

    def __init__(self) -> None:
        self.leaders: dict[int, str] = {}
        self.entries: dict[tuple[int, int], tuple[int, bytes, int | None]] = {}
        self.committed: dict[int, tuple[int, bytes]] = {}  # index -> (term, data) known committed
        self.commit_term: dict[int, int] = {}  # index -> lowest term at which a server saw it committed
        self.applied: dict[int, tuple[int, bytes]] = {}
        self.servers: dict[str, Server] = {}  # every server seen, alive or not: their storage is their disk
        self.steps = 0

    def fail(self, what: str) -> None:
        raise InvariantViolation(what)

    def on_start(self, s: Server) -> None:
        self.servers[s.id] = s
        r = s.raft
        if r.log.committed > r.log.last_index():
            self.fail(f"{s.id}: restarted with commit {r.log.committed} past last index {r.log.last_index()}")

    def on_persisted(self, s: Server, entries: tuple[Entry, ...]) -> None:
        for e in entries:
            prev = s.storage.term(e.index - 1) if e.index - 1 >= s.storage.first_index() - 1 else None
            key = (e.index, e.term)
            mine = (int(e.kind), e.data, prev)
            seen = self.entries.setdefault(key, mine)
            if seen[:2] != mine[:2] or (seen[2] is not None and prev is not None and seen[2] != prev):
                self.fail(f"log matching: {s.id} holds {key} as {mine!r:.80}, another server as {seen!r:.80}")

    def on_send(self, s: Server, m: Message) -> None:
        """Persist before send: what a message vouches for is on the server's disk when it leaves."""
        hs = s.storage.hard_state
        if m.type not in (MsgType.PRE_VOTE, MsgType.PRE_VOTE_RESP) and m.term > hs.term:
            self.fail(f"{s.id}: sends {m.type.name} of term {m.term} with term {hs.term} on disk")
        # a later term on disk is as good: the server can never vote in m.term again
        if m.type is MsgType.VOTE and hs.term <= m.term and (hs.term, hs.vote) != (m.term, s.id):
            self.fail(f"{s.id}: asks for votes in term {m.term} before its own vote is on disk ({hs})")
        if m.type is MsgType.VOTE_RESP and not m.reject and hs.term <= m.term and (hs.term, hs.vote) != (m.term, m.to):
            self.fail(f"{s.id}: grants {m.to} its vote in term {m.term} before it is on disk ({hs})")
        if m.type is MsgType.APPEND_RESP and not m.reject and m.index > s.storage.last_index():
            self.fail(f"{s.id}: acknowledges {m.index} with only {s.storage.last_index()} on disk")

    def on_snapshot_applied(self, s: Server, snap: Snapshot) -> None:
        got = self.committed.get(snap.meta.index)
        if got is not None and got[0] != snap.meta.term:
            self.fail(f"{s.id}: snapshot at {snap.meta.index} has term {snap.meta.term}, committed term {got[0]}")

    def on_apply(self, s: Server, e: Entry) -> None:
        if e.index != s.applied + 1:
            self.fail(f"{s.id}: applied {e.index} after {s.applied} (applied prefixes must be contiguous)")
        seen = self.applied.setdefault(e.index, (e.term, e.data))
        if seen != (e.term, e.data):
            self.fail(f"state-machine safety: {s.id} applied {(e.term, e.data)!r:.80} at {e.index}, "
                      f"another server {seen!r:.80}")
        if e.index > s.raft.log.committed:
            self.fail(f"{s.id}: applied {e.index} beyond its commit {s.raft.log.committed}")

    def after_step(self, s: Server) -> None:
        self.steps += 1
        r = s.raft
        log = r.log
        if log.committed > log.last_index():
            self.fail(f"{s.id}: commit {log.committed} past last index {log.last_index()}")
        if log.committed < s.last_commit:
            self.fail(f"{s.id}: commit went back from {s.last_commit} to {log.committed}")
        if s.applied > log.committed:
            self.fail(f"{s.id}: applied {s.applied} past commit {log.committed}")
        if r.role is Role.LEADER:
            holder = self.leaders.setdefault(r.term, s.id)
            if holder != s.id:
                self.fail(f"election safety: {holder} and {s.id} both lead term {r.term}")
            if s.checked_leader_term != r.term:
                s.checked_leader_term = r.term
                for idx, t in self.commit_term.items():
                    if t < r.term:
                        self._expect_in_log(s, idx, f"leader completeness: new leader of term {r.term}")
        self.note_commit(s)

    def note_commit(self, s: Server) -> None:
        """Record newly committed entries (before the server may compact them away)."""
        r = s.raft
        log = r.log
        if log.committed < s.last_commit:
            self.fail(f"{s.id}: commit went back from {s.last_commit} to {log.committed}")
        if r.role is Role.LEADER and log.committed > s.last_commit:
            self._expect_durable_quorum(s, log.committed, log.term(log.committed))
        first_new = max(s.last_commit + 1, log.first_index())
        for idx in range(first_new, log.committed + 1):
            term = log.term(idx)
            data = log.slice(idx, idx + 1)[0].data
            seen = self.committed.setdefault(idx, (term, data))
            if seen != (term, data):
                self.fail(f"{s.id}: committed {(term, data)!r:.60} at {idx}, elsewhere {seen!r:.60}")
            if idx not in self.commit_term or r.term < self.commit_term[idx]:
                self.commit_term[idx] = r.term
        s.last_commit = log.committed

    def _expect_durable_quorum(self, s: Server, index: int, term: int) -> None:
        voters = s.raft.conf.voters()
        holders = {v for v in voters if v in self.servers and _holds(self.servers[v].storage, index, term)}
        if not has_quorum(voters, holders):
            self.fail(f"durable commit: {s.id} (leader of term {s.raft.term}) commits {index} (term {term}) held "
                      f"on disk only by {sorted(holders)} of voters {sorted(voters)}")

    def check_leaders_complete(self, servers: Iterable[Server]) -> None:
        for s in servers:
            if s.alive and s.raft.role is Role.LEADER:
                for idx, t in self.commit_term.items():
                    if t < s.raft.term:
                        self._expect_in_log(s, idx, f"leader completeness: leader of term {s.raft.term}")

    def _expect_in_log(self, s: Server, idx: int, what: str) -> None:
        log = s.raft.log
        if idx < log.first_index() - 1:
            return  # inside its snapshot, which on_snapshot_applied compared
        term, _ = self.committed[idx]
        if log.term_or_none(idx) != term:
            self.fail(f"{what}: {s.id} lacks committed entry {idx} (term {term}), has {log.term_or_none(idx)}")


def _holds(storage: MemoryStorage, index: int, term: int) -> bool:
    """Whether storage holds entry (index, term), or a snapshot past it (which holds only committed entries)."""
    if index < storage.first_index():
        return True
    return index <= storage.last_index() and storage.term(index) == term


# --------------------------------------------------------------------------------------------- unit-test net
Filter = Callable[[Message], bool]


class Net:
    """Synchronous delivery for focused tests (etcd's `network`): send() runs until no message is left.
    `drop` filters decide which messages are lost; `isolate`, `cut` and `recover` edit the links."""

    def __init__(self, ids: Iterable[str], *, seed: int = 1, checker: Checker | None = None, **cfg) -> None:
        ids = list(ids)
        self.checker = checker or Checker()
        self.servers: dict[str, Server] = {}
        for n, i in enumerate(ids):
            config = Config(id=i, **cfg)
            self.servers[i] = Server(i, config, bootstrapped_storage(ids), random.Random(seed * 1000 + n),
                                     checker=self.checker)
        self.cut_links: set[tuple[str, str]] = set()
        self.drops: list[Filter] = []
        self.delivered: list[Message] = []
        self.pending: list[Message] = []

    def __getitem__(self, sid: str) -> Server:
        return self.servers[sid]

    def add(self, sid: str, storage: MemoryStorage | None = None, **cfg) -> Server:
        any_cfg = next(iter(self.servers.values())).cfg
        config = attrs_evolve(any_cfg, id=sid, **cfg)
        s = Server(sid, config, storage or MemoryStorage(), random.Random(len(self.servers)), checker=self.checker)
        self.servers[sid] = s
        return s

    def isolate(self, sid: str) -> None:
        for other in self.servers:
            if other != sid:
                self.cut_links |= {(sid, other), (other, sid)}

    def cut(self, a: str, b: str) -> None:
        self.cut_links |= {(a, b), (b, a)}

    def recover(self) -> None:
        self.cut_links.clear()
        self.drops.clear()

    def flush(self, sid: str) -> None:
        self.send(self.servers[sid].process_ready())

    def send(self, msgs: Iterable[Message] = ()) -> None:
        queue = list(self.pending) + list(msgs)
        self.pending = []
        for _ in range(100_000):
            if not queue:
                return
            m = queue.pop(0)
            if (m.from_, m.to) in self.cut_links or any(f(m) for f in self.drops):
                continue
            s = self.servers.get(m.to)
            if s is None or not s.alive:
                continue
            self.delivered.append(m)
            s.node.step(m)
            queue.extend(s.process_ready())
        raise AssertionError("messages kept flowing for 100,000 deliveries")

    def tick(self, sid: str, n: int = 1) -> None:
        for _ in range(n):
            self.servers[sid].node.tick()
            self.flush(sid)

    def tick_all(self, n: int = 1) -> None:
        for _ in range(n):
            for sid, s in self.servers.items():
                if s.alive:
                    s.node.tick()
                    self.flush(sid)

    def campaign(self, sid: str) -> None:
        self.servers[sid].node.campaign()
        self.flush(sid)

    def elect(self, sid: str) -> None:
        self.campaign(sid)
        assert self.servers[sid].raft.role is Role.LEADER, f"{sid} did not win: {self.servers[sid].raft.role}"

    def propose(self, sid: str, data: bytes) -> tuple[int, int] | None:
        r = self.servers[sid].node.propose(data)
        self.flush(sid)
        return r

    def leader(self) -> str | None:
        leaders = [s for s in self.servers.values() if s.alive and s.raft.role is Role.LEADER]
        return max(leaders, key=lambda s: s.raft.term).id if leaders else None

    def types(self, type_: MsgType) -> list[Message]:
        return [m for m in self.delivered if m.type is type_]


__all__ = ["Checker", "ConfState", "HardState", "InvariantViolation", "Net", "Register", "Server",
           "bootstrapped_storage"]
