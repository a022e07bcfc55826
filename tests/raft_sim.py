"""A seeded, fault-injecting simulation of a Raft cluster on a virtual clock (no sockets, no wall time).

Time is in milliseconds of virtual time; every server ticks every TICK_MS with its own phase. A run has a
fault phase (loss, duplication, reordering by random delays, symmetric and one-way partitions, crashes that
lose unsynced writes or tear the Ready being written, restarts) and then a calm phase: faults stop, every
server restarts, and the liveness bounds are checked. The Checker runs after every step of every server.

    sim = Simulation(seed=12, servers=5, scenario=Scenario(...)); sim.run()

Everything is deterministic for a seed: one random.Random drives the network and the workload, and each
server's core gets its own seeded Random.
"""

from __future__ import annotations

import heapq
import json
import random
from collections.abc import Callable

import attrs
import msgpack
from linearizability import UNKNOWN, Op, check
from raft_harness import Checker, InvariantViolation, Server, bootstrapped_storage

from protocol.raft import Config, MemoryStorage, NotLeader, ProposalDropped, RaftError, ReadOnlyOption
from protocol.raft.types import ConfChange, ConfChangeKind, Message, Role, from_wire, to_wire

TICK_MS = 10


@attrs.frozen(kw_only=True)
class Scenario:
    servers: int = 3
    fault_ms: int = 1500  # length of the fault phase
    fault_every_ms: tuple[int, int] = (50, 300)  # the gap between two fault events, uniform
    calm_ms: int = 1500  # the calm phase's budget (liveness must hold well within it)
    loss: float = 0.0
    duplicate: float = 0.0
    delay_ms: tuple[int, int] = (1, 4)  # per message, uniform: a spread wider than a tick reorders
    partitions: bool = False
    one_way: bool = False
    crashes: bool = False
    tear: bool = False
    proposals_per_s: float = 40.0
    snapshot_every: int = 0
    membership: bool = False
    transfers: bool = False  # the leader hands over to a random voter now and then
    wire: bool = False  # every message goes through to_wire, msgpack and from_wire, as on the server port
    stalls: bool = False  # a server freezes (SIGSTOP, a long GC pause) and later works off its backlog
    # >0: persisting a Ready takes up to this many ms (uniform from 1), as the driver's fsync in its worker
    # thread does; meanwhile the server is stepped and ticked, its early messages (a leader's APPENDs) already
    # sent, and a crash then loses the Ready (or, tearing, keeps a prefix of its entries)
    persist_ms: int = 0
    election_tick: int = 10
    heartbeat_tick: int = 2
    max_inflight_msgs: int = 4
    max_size_per_msg: int = 64
    pre_vote: bool = True
    check_quorum: bool = True
    read_only: ReadOnlyOption = ReadOnlyOption.SAFE
    clients: int = 0  # >0: clients run read / write / cas on the register instead of anonymous proposals
    client_timeout_ms: int = 300
    # liveness, stated in election timeouts (election_tick ticks) after the faults stop
    leader_within_elections: int = 10
    commit_within_elections: int = 5


class Simulation:
    def __init__(self, seed: int, scenario: Scenario, on_event: Callable[[Simulation], None] | None = None) -> None:
        self.seed = seed
        self.sc = scenario
        self.rng = random.Random(seed)
        self.now = 0
        self.checker = Checker()
        self._queue: list[tuple[int, int, Callable[[], None]]] = []
        self._seq = 0
        self.blocked: set[tuple[str, str]] = set()
        self.loss = scenario.loss
        self.duplicate = scenario.duplicate
        self.delay = scenario.delay_ms
        self.faults_on = True
        self.accepted: list[tuple[str, int, int, bytes]] = []  # (server, index, term, data)
        self.proposal_seq = 0
        self.stats = {"delivered": 0, "lost": 0, "crashes": 0, "partitions": 0, "conf_changes": 0, "transfers": 0,
                      "stalls": 0, "crashes_in_flight": 0, "early_meanwhile": 0,
                      "calm_retries": 0}
        self.on_event = on_event
        self.next_id = scenario.servers
        ids = [f"s{i}" for i in range(scenario.servers)]
        self.servers: dict[str, Server] = {}
        for i in ids:
            self._add_server(i, bootstrapped_storage(ids))
        self.removed: set[str] = set()
        self.history: list[Op] = []
        self.stalled_until: dict[str, int] = {}
        self.op_seq = 0

    # ------------------------------------------------------------------ plumbing
    def _config(self, sid: str) -> Config:
        sc = self.sc
        return Config(id=sid, election_tick=sc.election_tick, heartbeat_tick=sc.heartbeat_tick,
                      max_inflight_msgs=sc.max_inflight_msgs, max_size_per_msg=sc.max_size_per_msg,
                      pre_vote=sc.pre_vote, check_quorum=sc.check_quorum, read_only=sc.read_only)

    def _add_server(self, sid: str, storage: MemoryStorage) -> Server:
        s = Server(sid, self._config(sid), storage, random.Random(self.rng.getrandbits(64)), checker=self.checker,
                   snapshot_every=self.sc.snapshot_every)
        self.servers[sid] = s
        self.at(self.rng.randrange(TICK_MS), lambda: self._tick(s, s.incarnation))
        return s

    def at(self, delay: int, fn: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (self.now + delay, self._seq, fn))

    def _tick(self, s: Server, incarnation: int) -> None:
        if not s.alive or s.incarnation != incarnation:
            return
        if self._frozen(s):  # a frozen process misses its timer ticks
            self.at(TICK_MS, lambda: self._tick(s, incarnation))
            return
        s.node.tick()
        self._flush(s)
        self.at(TICK_MS, lambda: self._tick(s, incarnation))

    def _flush(self, s: Server) -> None:
        if self.sc.persist_ms:
            self._start_persist(s)
        else:
            for m in s.process_ready():
                self._send(m)
        if self.on_event:
            self.on_event(self)

    def _start_persist(self, s: Server) -> None:
        """Take the next Ready, send its early messages now and persist it after a while (unless a crash
        comes first); the server keeps stepping and ticking meanwhile, and what that makes of early messages
        leaves at once."""
        if s.alive and s.in_flight is None and s.node.has_ready():
            rd, early = s.start_ready()
            for m in early:
                self._send(m)
            if s.alive:
                inc = s.incarnation
                self.at(self.rng.randint(1, self.sc.persist_ms), lambda: self._finish_persist(s, inc, rd))
        elif s.alive and s.in_flight is not None:  # heartbeats and APPENDs go on during the fsync
            for m in s.early_meanwhile():
                self.stats["early_meanwhile"] += 1
                self._send(m)
        if s.alive and s.checker:
            s.checker.after_step(s)

    def _finish_persist(self, s: Server, incarnation: int, rd) -> None:
        if not s.alive or s.incarnation != incarnation or s.in_flight is not rd:
            return  # crashed before its fsync completed
        for m in s.finish_ready(rd):
            self._send(m)
        self._flush(s)

    def _send(self, m: Message) -> None:
        if self.sc.wire:
            m = from_wire(msgpack.unpackb(msgpack.packb(to_wire(m), use_bin_type=True), raw=False))
        copies = 1
        if self.faults_on:
            if (m.from_, m.to) in self.blocked or self.rng.random() < self.loss:
                self.stats["lost"] += 1
                return
            if self.rng.random() < self.duplicate:
                copies = 2
        for _ in range(copies):
            self.at(self.rng.randint(*self.delay), lambda m=m: self._deliver(m))

    def _deliver(self, m: Message) -> None:
        if (m.from_, m.to) in self.blocked:
            return
        s = self.servers.get(m.to)
        if s is None or not s.alive:
            return
        if self.stalled_until.get(s.id, 0) > self.now:
            self.at(self.stalled_until[s.id] - self.now, lambda: self._deliver(m))  # the backlog, in order
            return
        self.stats["delivered"] += 1
        s.node.step(m)
        self._flush(s)

    def run_until(self, t: int, stop: Callable[[], bool] | None = None) -> bool:
        while self._queue and self._queue[0][0] <= t:
            when, _, fn = heapq.heappop(self._queue)
            self.now = when
            fn()
            if stop is not None and stop():
                return True
        self.now = t
        return stop() if stop is not None else False

    # ------------------------------------------------------------------ observation
    def _frozen(self, s: Server) -> bool:
        return self.stalled_until.get(s.id, 0) > self.now

    def alive(self) -> list[Server]:
        return [s for s in self.servers.values() if s.alive]

    def leader(self) -> Server | None:
        leaders = [s for s in self.alive() if s.raft.role is Role.LEADER]
        return max(leaders, key=lambda s: s.raft.term) if leaders else None

    def members(self) -> list[Server]:
        """The servers in the newest leader's configuration (the ones liveness is promised for)."""
        lead = self.leader()
        ids = lead.raft.conf.ids() if lead else set(self.servers) - self.removed
        return [self.servers[i] for i in sorted(ids) if i in self.servers]

    # ------------------------------------------------------------------ workload and faults
    def _propose_somewhere(self) -> None:
        if not self.faults_on:
            return
        s = self.rng.choice(self.alive() or list(self.servers.values()))
        if s.alive and not self._frozen(s):
            self.proposal_seq += 1
            data = b"p%d" % self.proposal_seq
            try:
                r = s.node.propose(data)
            except (NotLeader, ProposalDropped):
                r = None
            if r is not None:
                self.accepted.append((s.id, r[0], r[1], data))
            self._flush(s)
        self.at(int(self.rng.expovariate(self.sc.proposals_per_s) * 1000) + 1, self._propose_somewhere)

    def _fault(self) -> None:
        if not self.faults_on:
            return
        sc, rng = self.sc, self.rng
        choices = ["heal"]
        if sc.partitions:
            choices += ["partition", "partition"]
        if sc.one_way:
            choices += ["one_way"]
        if sc.crashes:
            choices += ["crash", "restart"]
        if sc.membership:
            choices += ["membership"]
        if sc.transfers:
            choices += ["transfer"]
        if sc.stalls:
            choices += ["stall"]
        kind = rng.choice(choices)
        ids = sorted(self.servers)
        if kind == "heal":
            self.blocked.clear()
        elif kind == "partition":
            self.stats["partitions"] += 1
            rng.shuffle(ids)
            cut = rng.randrange(1, len(ids))
            a, b = ids[:cut], ids[cut:]
            self.blocked = {(x, y) for x in a for y in b} | {(y, x) for x in a for y in b}
        elif kind == "one_way":
            x, y = rng.sample(ids, 2)
            self.blocked.add((x, y))
        elif kind == "crash":
            up = self.alive()
            if len(up) > 1:
                victim = rng.choice(up)
                lead = self.leader()
                if sc.persist_ms and lead is not None and rng.random() < 0.5:
                    victim = lead  # the case async persistence is about: a leader whose fsync is still running
                if victim.in_flight is not None and victim.in_flight.entries:
                    self.stats["crashes_in_flight"] += 1
                if sc.tear and rng.random() < 0.5:
                    victim.crash_while_writing_next_ready()
                else:
                    victim.crash()
                self.stats["crashes"] += 1
        elif kind == "restart":
            down = [s for s in self.servers.values() if not s.alive]
            if down:
                self._restart(rng.choice(down))
        elif kind == "membership":
            self._change_membership()
        elif kind == "stall":
            victim = self.leader() if rng.random() < 0.5 else rng.choice(list(self.servers.values()))
            if victim is not None and self._frozen(victim):
                victim = None
            if victim is not None:
                self.stalled_until[victim.id] = self.now + rng.randint(50, 4 * sc.election_tick * TICK_MS)
                self.stats["stalls"] += 1
        elif kind == "transfer":
            lead = self.leader()
            if lead is not None and not self._frozen(lead):
                others = sorted(lead.raft.conf.voters() - {lead.id})
                if others:
                    lead.node.transfer_leadership(rng.choice(others))
                    self.stats["transfers"] += 1
                    self._flush(lead)
        self.at(rng.randint(*sc.fault_every_ms), self._fault)

    def _restart(self, s: Server) -> None:
        s.restart()
        self.at(self.rng.randrange(TICK_MS), lambda: self._tick(s, s.incarnation))
        self._flush(s)

    def _change_membership(self) -> None:
        lead = self.leader()
        if lead is None or self._frozen(lead):
            return
        conf = lead.raft.conf
        voters = sorted(conf.voters())
        if len(voters) > self.sc.servers or (len(voters) >= 3 and self.rng.random() < 0.5):
            cc = ConfChange(ConfChangeKind.REMOVE_SERVER, self.rng.choice(voters))
        else:
            new = f"s{self.next_id}"
            cc = ConfChange(ConfChangeKind.ADD_VOTER, new, f"{new}:8300")
        try:
            lead.node.propose_conf_change(cc)
        except RaftError:
            return
        self.stats["conf_changes"] += 1
        if cc.kind is ConfChangeKind.ADD_VOTER:
            self.next_id += 1
            self._add_server(cc.server_id, MemoryStorage())
        else:
            self.removed.add(cc.server_id)
        self._flush(lead)

    # ------------------------------------------------------------------ the run
    # ------------------------------------------------------------------ clients of the register
    def _client(self, client: int) -> None:
        if not self.faults_on:
            return
        rng = self.rng
        self.op_seq += 1
        op_id = f"c{client}.{self.op_seq}"
        s = rng.choice(list(self.servers.values()))
        if not s.alive or self._frozen(s):
            self.at(rng.randint(1, 20), lambda: self._client(client))
            return
        kind = rng.choice(["read", "read", "write", "cas"])
        call = self.now
        if kind == "read":
            try:
                s.node.read_index(op_id.encode())
            except RaftError:
                self.at(rng.randint(1, 20), lambda: self._client(client))
                return
            self._flush(s)
            self._poll_read(client, s, s.incarnation, op_id, call, None)
            return
        if kind == "write":
            inp = ("write", op_id)
            data = {"f": "write", "id": op_id, "v": op_id}
        else:
            old = rng.choice([None, self._last_value_seen()])
            inp = ("cas", old, op_id)
            data = {"f": "cas", "id": op_id, "old": old, "new": op_id}
        try:
            r = s.node.propose(json.dumps(data).encode())
        except RaftError:
            self.at(rng.randint(1, 20), lambda: self._client(client))
            return
        assert r is not None
        self._flush(s)
        self._poll_write(client, s, s.incarnation, op_id, call, inp, r)

    def _last_value_seen(self) -> str | None:
        for op in reversed(self.history):
            if op.ret is not None and op.input[0] == "read":
                return op.output
        return None

    def _finish(self, client: int, op: Op | None) -> None:
        if op is not None:
            self.history.append(op)
        self.at(self.rng.randint(1, 20), lambda: self._client(client))

    def _poll_read(self, client: int, s: Server, inc: int, op_id: str, call: int, index: int | None) -> None:
        if not s.alive or s.incarnation != inc or self.now - call > self.sc.client_timeout_ms:
            self._finish(client, None)  # a read with no answer changed nothing: leave it out
            return
        if index is None:
            ctx = op_id.encode()
            for rs in s.read_states:
                if rs.context == ctx:
                    s.read_states.remove(rs)
                    index = rs.index
                    break
        if index is not None and s.applied >= index:
            self._finish(client, Op(client, call, self.now, ("read",), s.sm.value))
            return
        self.at(2, lambda: self._poll_read(client, s, inc, op_id, call, index))

    def _poll_write(self, client: int, s: Server, inc: int, op_id: str, call: int, inp: tuple,
                    at: tuple[int, int]) -> None:
        index, term = at
        if s.alive and s.incarnation == inc and s.applied >= index:
            got = self.checker.applied.get(index)
            if got is not None and got[0] == term:
                self._finish(client, Op(client, call, self.now, inp, s.sm.results[op_id]))
            else:
                self._finish(client, None)  # another entry took its index: it never took effect
            return
        if not s.alive or s.incarnation != inc or self.now - call > self.sc.client_timeout_ms:
            self._finish(client, Op(client, call, None, inp, UNKNOWN))
            return
        self.at(2, lambda: self._poll_write(client, s, inc, op_id, call, inp, at))

    def check_history(self) -> None:
        if not check(self.history):
            lines = "\n".join(repr(op) for op in sorted(self.history, key=lambda o: o.call))
            raise InvariantViolation(f"linearizability: the register history is not linearizable:\n{lines}")

    # ------------------------------------------------------------------ the run
    def run(self) -> dict[str, int]:
        sc = self.sc
        if sc.clients:
            for c in range(sc.clients):
                self.at(1 + c, lambda c=c: self._client(c))
        else:
            self.at(1, self._propose_somewhere)
        self.at(self.rng.randint(*sc.fault_every_ms), self._fault)
        self.run_until(sc.fault_ms)
        # calm: faults stop, every server comes back
        self.faults_on = False
        self.blocked.clear()
        self.stalled_until.clear()
        self.delay = (1, 4)
        for s in list(self.servers.values()):
            s.tear_next_ready = False
            if not s.alive:
                self._restart(s)
        calm_start = self.now
        election_ms = sc.election_tick * TICK_MS
        deadline = calm_start + (sc.leader_within_elections + sc.commit_within_elections) * election_ms
        attempt = 0
        while True:
            attempt += 1
            if not self.run_until(deadline, self._stable_leader):
                raise InvariantViolation(f"liveness: no leader all members follow {deadline - calm_start} ms "
                                         f"after the faults stopped ({self._roles()})")
            self.stats["leader_after_ms"] = self.now - calm_start
            if self._calm_proposals_commit(deadline):
                break
            # the leader changed under the proposals (a TIMEOUT_NOW still in flight when the faults stopped
            # can do that); they were lost, not half-applied: try again, within the same overall bound
            if attempt >= 3:
                raise InvariantViolation(f"liveness: calm proposals lost {attempt} times ({self._roles()})")
            self.stats["calm_retries"] += 1
        if not sc.clients:
            self._check_accepted_resolved()
        self.checker.check_leaders_complete(self.servers.values())
        if sc.clients:
            self.check_history()
            self.stats["ops"] = len(self.history)
            self.stats["unknown"] = sum(1 for op in self.history if op.ret is None)
        self.stats["steps"] = self.checker.steps
        self.stats["torn_crashes"] = sum(s.torn_crashes for s in self.servers.values())
        return self.stats

    def _calm_proposals_commit(self, deadline: int) -> bool:
        """Three proposals at the stable leader: True once every member applied them; False if another
        entry took their index; a failure if neither happens before the deadline."""
        lead = self.leader()
        assert lead is not None
        proposed = []
        for n in range(3):
            try:
                r = lead.node.propose(b"calm%d" % n)
            except RaftError as exc:
                raise InvariantViolation(f"liveness: the stable leader {lead.id} refused a proposal: {exc}") from exc
            assert r is not None
            proposed.append(r)
        self._flush(lead)
        last = proposed[-1][0]
        t0 = self.now

        def decided() -> bool:
            return all(s.applied >= last for s in self.members()) or any(
                self.checker.applied.get(i, (t,))[0] != t for i, t in proposed)

        if not self.run_until(deadline, decided):
            raise InvariantViolation(f"liveness: proposals at {last} not applied everywhere by the deadline, "
                                     f"{deadline - t0} ms after they were made ({self._roles()})")
        if any(self.checker.applied.get(i, (t,))[0] != t for i, t in proposed):
            return False
        self.stats["commit_after_ms"] = self.now - t0
        return True

    def _stable_leader(self) -> bool:
        lead = self.leader()
        if (lead is None or not lead.raft.committed_in_term() or lead.id not in lead.raft.conf.voters()
                or lead.raft.lead_transferee):
            return False
        # and every member heard from it within the last heartbeats (none is about to time out)
        return all(s.raft.lead == lead.id and s.raft.term == lead.raft.term
                   and (s is lead or s.raft.election_elapsed <= self.sc.heartbeat_tick + 1) for s in self.members())

    def _check_accepted_resolved(self) -> None:
        """Every proposal a leader accepted is decided once faults stop and the calm proposals commit: it
        committed at its index with its term, or its index holds another term's entry, or it lies past the
        committed log whose last entry has a later term (log matching then rules it out for ever)."""
        committed = self.checker.committed
        top = max(committed)
        for sid, index, term, data in self.accepted:
            got = committed.get(index)
            if got is None:
                if index > top and committed[top][0] > term:
                    continue
                raise InvariantViolation(f"accepted proposal {data!r} at {index} (term {term}, by {sid}) undecided")
            if got[0] == term and got[1] != data:
                raise InvariantViolation(f"accepted proposal {data!r} at {index} term {term}: committed {got!r}")

    def _roles(self) -> str:
        return ", ".join(f"{s.id}:{s.raft.role.name.lower()}@{s.raft.term}" + ("" if s.alive else "(down)")
                         for s in self.servers.values())
