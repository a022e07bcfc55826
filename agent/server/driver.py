"""The Raft driver: runs a `RawNode` against `RaftStore`, `Transport` and a state machine.

Every Ready is handled in the order the core requires (docs/raft.md): its early messages (a leader's APPENDs
and heartbeats) go to the transport first, so the followers write while the leader's own fsync runs; then
persist (snapshot, entries, hard state; fsync when the core says so), then send the rest, then apply, then
advance (which is when the leader's own entries count toward a commit).  Persisting is blocking file IO, so it
runs in a worker thread (`trio.to_thread`); the node itself is only ever called from this task, between awaits,
so it needs no lock.  While the fsync runs (the slow part: the entries are written first, with nothing else
going on, so the store's memory never changes under the core), ticks, peers' messages and read requests are
still fed to the node, and the heartbeats and APPENDs that produces go out at once (`RawNode.take_early_messages`):
a slow disk delays this server's acknowledgements, not its leadership (a leader whose fsync outlasts an election
timeout would otherwise fall silent and be deposed).  Proposals, membership changes and calls that arrive
meanwhile wait for the next Ready and go into it together, one append and one fsync for all of them.

A proposal is an event on the same queue as ticks and messages; its caller waits on a `_Waiter` resolved when
the entry at its index is applied (the state machine's result) or shown not to be ours (another term at that
index: `ProposalLost`), or at once with `NotLeader` / `ProposalDropped` (then it was not appended at all).

ReadIndex requests are batched as etcd's server batches them: one round (one heartbeat to every peer) is in flight
at a time, and every request that arrives meanwhile waits for the next round, which answers them all.  A request
never joins a round already started (its index was taken before the request came, and could miss a write the
requester saw acknowledged).

Every `snapshot_every` applied entries the state machine is snapshotted and the log before it compacted, beside
the loop: the machine's state at the applied index (an immutable version) is encoded and its file written in a
worker thread by a task of the driver's nursery, at most one at a time, while the loop goes on; the written
snapshot is then adopted by the store on this task (memory only, between Readies), and the segment files it
covers are unlinked in the next persist's worker thread, after that Ready's writes, so the log's files only ever
change in one thread at a time.  Encoding a large store takes seconds (docs/raft.md); a leader that waited for it
fell silent and was deposed.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any, Protocol

import attrs
import trio

from protocol.raft import NotLeader, ProposalDropped, RawNode, Status
from protocol.raft.errors import ConfChangeRejected, RaftError
from protocol.raft.log import LogInvariantError
from protocol.raft.types import ConfChange, Entry, EntryKind, Message, Ready, Role, Snapshot, SnapshotMeta, SoftState

from .raftstore import RaftStore
from .transport import Transport

log = logging.getLogger("triumvir.raft")

#: hashicorp/raft's SnapshotThreshold as Consul sets it (raft_snapshot_threshold, 16384).
DEFAULT_SNAPSHOT_EVERY = 16384


class StateMachine(Protocol):
    """What the driver applies committed commands to (the state store's side).  Small on purpose."""

    def apply(self, entry: Entry) -> Any:
        """Apply one committed NORMAL entry with data; the result goes to the proposer (on the leader)."""
        ...

    def snapshot(self) -> bytes: ...

    def snapshot_source(self) -> Callable[[], bytes]:
        """The state as of now, to encode later in another thread while `apply` goes on (so: an immutable
        version, or a copy).  Called on the driver's task; the function it returns, in a worker thread."""
        ...

    def restore(self, data: bytes) -> None: ...


class ProposalLost(RaftError):
    """The proposal's index was filled by another leader's entry: it did not take effect."""


@attrs.frozen
class Timing:
    """Consul's Raft timing: at ``raft_multiplier`` 1 the heartbeat timeout and the election timeout are 1000 ms
    and the leader lease 500 ms (agent/config/default.go), each multiplied by ``raft_multiplier``.

    The core counts ticks: a tick is a tenth of the heartbeat timeout (hashicorp/raft's leader heartbeats at that
    rate), and ``election_tick`` is the election timeout in ticks, so a follower campaigns after a random
    [election timeout, 2 x election timeout) of silence, as hashicorp/raft's randomized heartbeat timeout does."""

    multiplier: int = 5
    heartbeat_timeout: float = 1.0
    election_timeout: float = 1.0
    leader_lease: float = 0.5

    @classmethod
    def consul(cls, multiplier: int) -> Timing:
        return cls(multiplier, 1.0 * multiplier, 1.0 * multiplier, 0.5 * multiplier)

    @property
    def tick(self) -> float:
        return self.heartbeat_timeout / 10

    @property
    def election_tick(self) -> int:
        return max(2, round(self.election_timeout / self.tick))


@attrs.define
class DriverStats:
    """Counts of the write path, to read what a write costs (bench/kv_vs_etcd.py reads them per PUT)."""

    readies: int = 0
    persists: int = 0  # Readies that wrote to the store
    fsyncs: int = 0  # Readies the core asked to sync (one fsync of the log, plus the hard state's if it changed)
    entries_persisted: int = 0
    messages: int = 0  # Raft messages handed to the transport
    early_messages: int = 0  # of which sent before their Ready was persisted
    proposals: int = 0


@attrs.define(eq=False)
class _Waiter:
    term: int = 0
    done: trio.Event = attrs.Factory(trio.Event)
    result: Any = None
    error: BaseException | None = None

    def resolve(self, result: Any = None, error: BaseException | None = None) -> None:
        self.result, self.error = result, error
        self.done.set()


@attrs.frozen
class _Tick:
    pass


@attrs.frozen
class _Propose:
    data: bytes
    waiter: _Waiter


@attrs.frozen
class _ConfChange:
    change: ConfChange
    waiter: _Waiter


@attrs.frozen
class _ReadIndex:
    waiter: _Waiter


@attrs.frozen
class _Call:
    """Run a function on the node from the driver's task (e.g. transfer_leadership)."""

    fn: Callable[[RawNode], Any]
    waiter: _Waiter


@attrs.frozen
class _SnapshotWritten:
    """The snapshot task's file is durable: the store may adopt it (on the driver's task, between Readies)."""

    snap: Snapshot


Event = Message | _Tick | _Propose | _ConfChange | _ReadIndex | _Call | _SnapshotWritten


class Driver:
    def __init__(
        self,
        node: RawNode,
        store: RaftStore,
        transport: Transport,
        machine: StateMachine,
        *,
        tick_interval: float,
        max_batch: int = 256,
        snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
        read_round_timeout: float = 5.0,
    ) -> None:
        self.node = node
        self.store = store
        self.transport = transport
        self.machine = machine
        self.tick_interval = tick_interval
        self.max_batch = max_batch
        self.snapshot_every = snapshot_every
        #: a ReadIndex round with no quorum answer after this long fails its readers, so the next can start
        self.read_round_timeout = read_round_timeout
        self.read_rounds = 0  # ReadIndex rounds started (statistics: requests / rounds is the batching)
        self.soft_state = SoftState()
        self.applied = store.snapshot().meta.index
        self.last_contact = 0.0  # trio time of the last message from the leader (followers)
        self.snapshots_taken = 0
        self.faulty_messages = 0  # messages the core refused with LogInvariantError
        self.stats = DriverStats()
        self.conf_index = 0  # index of the last configuration entry applied (Consul's configuration Index)
        self._waiters: dict[int, _Waiter] = {}
        self._read_queue: list[_Waiter] = []  # ReadIndex requests waiting for the next round
        self._read_round: tuple[bytes, float, list[_Waiter]] | None = None  # (context, started, waiters) in flight
        self._read_seq = 0
        self._applied_event = trio.Event()  # set (and replaced) whenever `applied` moves
        self._term_start = 0  # as leader: the index of our term's first entry (default reads wait for it)
        self._changed = trio.Event()
        self._events_send, self._events = trio.open_memory_channel[Event](1024)
        self._deferred: list[Event] = []  # arrived while a Ready was in flight; fed before anything newer
        self._nursery: trio.Nursery | None = None  # run()'s: the snapshot task runs in it
        self._snapshotting = False  # a snapshot is being encoded and written (at most one)
        self._compact_to = 0  # an adopted snapshot's index whose segments the next persist unlinks
        self.longest_snapshot = 0.0  # seconds from the start of a snapshot to its file being durable (statistics)

    # ---------------------------------------------------------------- the API

    async def propose(self, data: bytes, *, timeout: float | None = None) -> Any:
        """Replicate and apply ``data``; the state machine's result.  NotLeader at once on a follower;
        ProposalLost if another leader's entry took its index; trio.TooSlowError after ``timeout``."""
        return await self._request(_Propose(data, _Waiter()), timeout)

    async def change_membership(self, change: ConfChange, *, timeout: float | None = None) -> Any:
        """Propose one membership change and wait until it is applied (ConfChangeRejected, NotLeader)."""
        return await self._request(_ConfChange(change, _Waiter()), timeout)

    async def call(self, fn: Callable[[RawNode], Any]) -> Any:
        """Run ``fn(node)`` on the driver's task (between Readies) and return its result."""
        return await self._request(_Call(fn, _Waiter()), None)

    async def read_index(self, *, timeout: float) -> int:
        """A linearizable read point: confirm leadership with a quorum (ReadIndex) and return once the state
        machine has applied that index.  NotLeader on a follower or if leadership is lost meanwhile;
        trio.TooSlowError after ``timeout``."""
        with trio.fail_after(timeout):
            index = await self._request(_ReadIndex(_Waiter()), None)
            await self.wait_applied(index)
        return index

    async def wait_applied(self, index: int) -> None:
        while self.applied < index:
            await self._applied_event.wait()

    def leader_ready(self) -> bool:
        """Leader with an entry of its own term applied: its state holds every earlier commit."""
        return self.soft_state.role is Role.LEADER and self.applied >= self._term_start

    async def _request(self, event: _Propose | _ConfChange | _ReadIndex | _Call, timeout: float | None) -> Any:
        await self._events_send.send(event)
        with trio.fail_after(timeout) if timeout is not None else contextlib.nullcontext():
            await event.waiter.done.wait()
        if event.waiter.error is not None:
            raise event.waiter.error
        return event.waiter.result

    def status(self) -> Status:
        return self.node.status()

    async def wait_changed(self) -> None:
        """Return after the next change of leader, role or applied configuration."""
        await self._changed.wait()

    # ---------------------------------------------------------------- the loop

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._ticker)
            nursery.start_soon(self._forward_inbox)
            task_status.started()
            await self._loop()

    async def inject(self, msg: Message) -> None:
        """Feed a message received before the driver started (a leader's first APPEND to a new server)."""
        await self._events_send.send(msg)

    async def _ticker(self) -> None:
        while True:
            await trio.sleep(self.tick_interval)
            await self._events_send.send(_Tick())

    async def _forward_inbox(self) -> None:
        async for msg in self.transport.inbox:
            await self._events_send.send(msg)

    async def _loop(self) -> None:
        while True:
            batch, self._deferred = self._deferred, []
            if not batch:
                batch = [await self._events.receive()]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._events.receive_nowait())
                except trio.WouldBlock:
                    break
            proposals: list[_Propose] = []
            for event in batch:
                if isinstance(event, _Propose):
                    proposals.append(event)  # consecutive ones go to the followers together
                    continue
                self._propose_all(proposals)
                proposals = []
                self._feed(event)
            self._propose_all(proposals)
            self._start_read_round()
            while self.node.has_ready():
                await self._handle(self.node.ready())
                self._start_read_round()

    def _feed(self, event: Event) -> None:
        if isinstance(event, _Tick):
            self.node.tick()
        elif isinstance(event, _Propose):
            self._propose_all([event])
        elif isinstance(event, _ConfChange):
            try:
                receipt = self.node.propose_conf_change(event.change)
            except (NotLeader, ProposalDropped, ConfChangeRejected) as err:
                event.waiter.resolve(error=err)
                return
            self._expect(receipt, event.waiter)
        elif isinstance(event, _ReadIndex):
            self._read_queue.append(event.waiter)
        elif isinstance(event, _Call):
            try:
                event.waiter.resolve(event.fn(self.node))
            except RaftError as err:
                event.waiter.resolve(error=err)
        elif isinstance(event, _SnapshotWritten):
            self._adopt_snapshot(event.snap)
        else:
            self._step(event)

    def _propose_all(self, proposals: list[_Propose]) -> None:
        """Proposals that arrived together: one append, one APPEND per follower, one fsync for all."""
        if not proposals:
            return
        self.stats.proposals += len(proposals)
        try:
            receipt = self.node.propose_batch([p.data for p in proposals])
        except (NotLeader, ProposalDropped) as err:
            for p in proposals:
                p.waiter.resolve(error=err)
            return
        for n, p in enumerate(proposals):
            self._expect(None if receipt is None else (receipt[0] + n, receipt[1]), p.waiter)

    def _start_read_round(self) -> None:
        """One ReadIndex round for every request queued, unless one is in flight (then they wait for its end)."""
        if self._read_round is not None:
            context, started, waiters = self._read_round
            if trio.current_time() - started < self.read_round_timeout:
                return
            self._read_round = None  # no quorum answered (lost messages): its readers fail, the next round starts
            error = RaftError(f"read index: no quorum answered within {self.read_round_timeout:g}s")
            for waiter in waiters:
                waiter.resolve(error=error)
        if not self._read_queue:
            return
        waiters, self._read_queue = self._read_queue, []
        self._read_seq += 1
        context = b"r%d" % self._read_seq
        try:
            self.node.read_index(context)
        except (NotLeader, RaftError) as err:
            for waiter in waiters:
                waiter.resolve(error=err)
            return
        self.read_rounds += 1
        self._read_round = (context, trio.current_time(), waiters)

    def _expect(self, receipt: tuple[int, int] | None, waiter: _Waiter) -> None:
        if receipt is None:  # forwarded (forward_proposals): we cannot follow it, and it may yet apply
            waiter.resolve(error=RaftError(f"proposal forwarded to the leader {self.soft_state.leader or '?'}: "
                                           f"its outcome is not followed here"))
            return
        index, waiter.term = receipt
        self._waiters[index] = waiter

    def _step(self, msg: Message) -> None:
        if msg.from_ == self.soft_state.leader:
            self.last_contact = trio.current_time()
        try:
            self.node.step(msg)
        except LogInvariantError as err:  # a faulty peer: its message is dropped, our log is unchanged
            self.faulty_messages += 1
            log.error("raft: dropped a %s from %s that breaks the log's invariants: %s", msg.type.name, msg.from_, err)
        except ValueError as err:
            log.warning("raft: dropped a %s from %s: %s", msg.type.name, msg.from_, err)

    async def _handle(self, rd: Ready) -> None:
        """send early -> persist -> send -> apply -> advance."""
        self.stats.readies += 1
        if rd.early_messages:
            self.transport.send_all(rd.early_messages)
            self.stats.early_messages += len(rd.early_messages)
        changed = False
        if rd.soft_state is not None:
            if rd.soft_state.role is not Role.LEADER and self.soft_state.role is Role.LEADER:
                log.info("raft: no longer the leader (now %s)", rd.soft_state.role.name.lower())
            elif rd.soft_state.role is Role.LEADER and self.soft_state.role is not Role.LEADER:
                log.info("raft: elected leader")
                self._term_start = self.node.status().last_index
            if rd.soft_state.role is not Role.LEADER or rd.soft_state.leader != self.soft_state.leader:
                self._fail_reads(NotLeader(rd.soft_state.leader, "read index"))
            self.soft_state = rd.soft_state
            changed = True
        if rd.snapshot is not None or rd.entries or rd.must_sync:
            await trio.to_thread.run_sync(self._persist, rd)
            if rd.must_sync:
                await self._sync_while_stepping()
            self.stats.persists += 1
            self.stats.fsyncs += rd.must_sync
            self.stats.entries_persisted += len(rd.entries)
        elif rd.hard_state is not None:  # the commit index alone: noted in memory (RaftStore.sync), no thread hop
            self._write(rd)
        self.transport.send_all(rd.messages)
        self.stats.messages += len(rd.messages) + len(rd.early_messages)
        if rd.snapshot is not None:
            self.machine.restore(rd.snapshot.data)
            self.applied = self.conf_index = rd.snapshot.meta.index
            self._settle_waiters_upto(self.applied, None)
            changed = True
        for entry in rd.committed_entries:
            result = None
            if entry.kind is EntryKind.NORMAL and entry.data:
                result = self.machine.apply(entry)
            elif entry.kind is EntryKind.CONF_CHANGE:
                changed = True
                self.conf_index = entry.index
            self.applied = entry.index
            self._settle_waiters_upto(entry.index, entry, result)
        for read in rd.read_states:
            if self._read_round is not None and read.context == self._read_round[0]:
                waiters = self._read_round[2]
                self._read_round = None
                for waiter in waiters:
                    waiter.resolve(read.index)
        if rd.committed_entries or rd.snapshot is not None:
            self._applied_event.set()
            self._applied_event = trio.Event()
        self.node.advance()
        if rd.committed_entries and self.applied - self.store.snapshot().meta.index >= self.snapshot_every:
            self._start_snapshot()
        if changed:
            self._changed.set()
            self._changed = trio.Event()

    def _fail_reads(self, error: BaseException) -> None:
        """Leadership changed: a ReadIndex in flight may never be answered (a lost forward, a deposed leader);
        the ones queued behind it fail too, as they would have on being asked of a node that no longer leads."""
        waiters = self._read_queue + (self._read_round[2] if self._read_round is not None else [])
        self._read_queue, self._read_round = [], None
        for waiter in waiters:
            waiter.resolve(error=error)

    def _settle_waiters_upto(self, index: int, entry: Entry | None, result: Any = None) -> None:
        """Entry None: a received snapshot covered the indexes, so whether a proposal there took effect is unknown."""
        for idx in [i for i in self._waiters if i <= index]:
            waiter = self._waiters.pop(idx)
            if entry is None:
                waiter.resolve(error=ProposalLost(f"entry {idx} was covered by a snapshot: its outcome is unknown"))
            elif idx == entry.index and entry.term == waiter.term:
                waiter.resolve(result)
            else:
                waiter.resolve(error=ProposalLost(f"entry {idx} of term {waiter.term} was overwritten"))

    def _persist(self, rd: Ready) -> None:
        """In a worker thread: the Ready's writes, then the compaction an adopted snapshot left pending (the
        only other change of the log's files, so never beside an append)."""
        self._write(rd)
        if self._compact_to:
            index, self._compact_to = self._compact_to, 0
            dropped = self.store.compact(min(index, self.store.snapshot().meta.index + 1))
            log.debug("raft: log compacted before index %d (%d segment files)", index, dropped)

    def _write(self, rd: Ready) -> None:
        """In a worker thread: the Ready's writes, not yet durable.  Nothing else runs meanwhile (the core reads
        the store's memory, which this changes)."""
        if rd.snapshot is not None:
            self.store.apply_snapshot(rd.snapshot)
        if rd.entries:
            self.store.append(rd.entries)
        if rd.hard_state is not None:
            self.store.set_hard_state(rd.hard_state)

    async def _sync_while_stepping(self) -> None:
        """fsync in a worker thread while this task keeps feeding the node what arrives: ticks, messages and
        read requests (`sync` changes nothing the core reads); the early messages that produces leave at once,
        the rest waits for the next Ready; proposals and calls are deferred to it."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._step_meanwhile)
            await trio.to_thread.run_sync(self.store.sync)
            nursery.cancel_scope.cancel()

    async def _step_meanwhile(self) -> None:
        while True:
            event = await self._events.receive()  # cancel-safe: a cancelled receive takes nothing
            if isinstance(event, _Tick | Message | _ReadIndex):
                self._feed(event)
                self._start_read_round()
                early = self.node.take_early_messages()
                if early:
                    self.transport.send_all(early)
                    self.stats.messages += len(early)
                    self.stats.early_messages += len(early)
            else:
                self._deferred.append(event)

    def _start_snapshot(self) -> None:
        """Snapshot the state at the applied index beside the loop, unless one is under way already."""
        if self._snapshotting or self._nursery is None:
            return
        meta = self.store.snapshot_meta(self.applied, self.node.applied_conf())
        self._snapshotting = True
        self._nursery.start_soon(self._take_snapshot, meta, self.machine.snapshot_source(),
                                 self.store.snapshot().meta.index, trio.current_time())

    async def _take_snapshot(self, meta: SnapshotMeta, encode: Callable[[], bytes], older: int,
                             started: float) -> None:
        def write() -> Snapshot:  # in a worker thread: encoding and writing touch nothing the loop uses
            snap = Snapshot(meta, encode())
            self.store.write_snapshot_file(snap, older)
            return snap

        try:
            snap = await trio.to_thread.run_sync(write)
        except Exception:
            self._snapshotting = False  # tried again after the next applied entries
            log.exception("raft: snapshot at index %d failed", meta.index)
            return
        self.longest_snapshot = max(self.longest_snapshot, trio.current_time() - started)
        await self._events_send.send(_SnapshotWritten(snap))

    def _adopt_snapshot(self, snap: Snapshot) -> None:
        self._snapshotting = False
        if self.store.adopt_snapshot(snap):
            self._compact_to = snap.meta.index
            self.snapshots_taken += 1
            log.info("raft: snapshot at index %d, log compacted", snap.meta.index)
