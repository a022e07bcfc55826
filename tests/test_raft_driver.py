"""agent.server.driver: the order send early -> persist -> send -> apply -> advance, with a real RaftStore and
real transports on loopback, driven by a trivial scripted node; a proposal's result comes from the state machine
once applied."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from agent.server.driver import Driver
from agent.server.hardstate import HardStateFile
from agent.server.raftstore import RaftStore
from agent.server.transport import Transport
from protocol.raft.types import Entry, HardState, Message, MsgType, Ready

DEADLINE = 15.0


class ScriptedNode:
    """Each proposal becomes one Ready: a heartbeat to b that may leave before the disk write; persist the entry
    and a hard state (a new term each time, so the store must make it durable before the rest is sent), send it
    to b, apply it."""

    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.pending: list[Ready] = []
        self.ticks = 0
        self.stepped: list[Message] = []
        self.index = 0

    def tick(self) -> None:
        self.ticks += 1

    def step(self, msg: Message) -> None:
        self.stepped.append(msg)

    def propose_batch(self, datas: Sequence[bytes]) -> tuple[int, int]:
        first = self.propose(datas[0])
        for data in datas[1:]:
            self.propose(data)
        return first

    def propose(self, data: bytes) -> tuple[int, int]:
        self.index += 1
        e = Entry(self.index, 1, data=data)
        self.pending.append(Ready(
            entries=(e,), hard_state=HardState(self.index, "a", self.index), must_sync=True, committed_entries=(e,),
            messages=(Message(type=MsgType.APPEND, to="b", from_="a", term=1, index=self.index - 1, entries=(e,)),),
            early_messages=(Message(type=MsgType.HEARTBEAT, to="b", from_="a", term=1),),
        ))
        return self.index, 1

    def has_ready(self) -> bool:
        return bool(self.pending)

    def take_early_messages(self) -> tuple[Message, ...]:
        return ()

    def ready(self) -> Ready:
        return self.pending[0]

    def advance(self) -> None:
        self.pending.pop(0)
        self.events.append("advance")


class RecordingStore(RaftStore):
    events: list[str]

    def sync(self) -> None:
        super().sync()
        self.events.append("sync")


class RecordingTransport(Transport):
    def __init__(self, *args: Any, store_dir: Path, events: list[str], **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.store_dir = store_dir
        self.events = events

    def send_all(self, msgs: Sequence[Message]) -> None:
        on_disk = HardStateFile(self.store_dir / "hardstate").load()  # what a restart would read now
        types = ",".join(m.type.name for m in msgs)
        self.events.append(f"send {types} (hard state on disk: commit {on_disk.commit})")
        super().send_all(msgs)


def test_a_ready_is_persisted_then_sent_then_applied_then_advanced(tmp_path: Path) -> None:
    async def main() -> None:
        events: list[str] = []
        store = RecordingStore.open(tmp_path, "c")
        store.events = events
        node = ScriptedNode(events)
        a = RecordingTransport("a", "c", port=0, store_dir=tmp_path / "raft", events=events)
        b = Transport("b", "c", port=0)
        applied: list[Entry] = []

        class Machine:
            def apply(self, entry: Entry) -> str:
                applied.append(entry)
                events.append("apply")
                return f"applied {entry.index}"

            def snapshot(self) -> bytes:
                return b""

            def restore(self, data: bytes) -> None:
                pass

        driver = Driver(node, store, a, Machine(), tick_interval=0.01)  # type: ignore[arg-type]
        async with trio.open_nursery() as nursery:
            await nursery.start(a.run)
            baddr = await nursery.start(b.run)
            a.add_peer("b", f"{baddr[0]}:{baddr[1]}")
            b.add_peer("a", None)
            await nursery.start(driver.run)
            for i in range(1, 4):
                assert await driver.propose(b"cmd%d" % i) == f"applied {i}"
            with trio.fail_after(DEADLINE):
                got = [await b.inbox.receive() for _ in range(6)]
            assert [m.entries[0].data for m in got if m.type is MsgType.APPEND] == [b"cmd1", b"cmd2", b"cmd3"]
            with trio.fail_after(DEADLINE):
                while len(applied) < 3:
                    await trio.sleep(0.01)
            assert events == [
                step for i in range(1, 4)
                for step in (f"send HEARTBEAT (hard state on disk: commit {i - 1})", "sync",
                             f"send APPEND (hard state on disk: commit {i})", "apply", "advance")
            ]
            b.send(Message(type=MsgType.HEARTBEAT, to="a", from_="b", term=1))
            with trio.fail_after(DEADLINE):
                while not node.stepped or node.ticks < 3:
                    await trio.sleep(0.01)
            assert node.stepped[0].type is MsgType.HEARTBEAT
            nursery.cancel_scope.cancel()
        store.close()
        reopened = RaftStore.open(tmp_path, "c")
        assert [e.data for e in reopened.entries(1, 4)] == [b"cmd1", b"cmd2", b"cmd3"]
        reopened.close()

    trio.run(functools.partial(main))


# ---------------------------------------------------------------- the driver with the real core


from recording_machine import RecordingMachine  # noqa: E402

from agent.server.driver import Timing  # noqa: E402
from protocol.raft import Config, NotLeader, RawNode, bootstrap  # noqa: E402
from protocol.raft.types import Role, Server  # noqa: E402

IDS = ("a", "b", "c")


class Member:
    """One server: a real store, transport, core and recording machine, driven by a real Driver."""

    def __init__(self, root: Path, sid: str, snapshot_every: int, election_tick: int = 10) -> None:
        self.sid, self.dir, self.snapshot_every = sid, root / sid, snapshot_every
        self.election_tick = election_tick
        self.store = RaftStore.open(self.dir, "c")
        self.transport = Transport(sid, "c", port=0)
        self.machine = RecordingMachine()
        self.driver: Driver | None = None

    async def start(self, nursery: trio.Nursery) -> None:
        snap = self.store.snapshot()
        if not snap.is_empty:
            self.machine.restore(snap.data)
        node = RawNode(Config(id=self.sid, election_tick=self.election_tick, applied=snap.meta.index), self.store,
                       __import__("random").Random(hash(self.sid)))
        self.driver = Driver(node, self.store, self.transport, self.machine, tick_interval=0.01,
                             snapshot_every=self.snapshot_every)
        await nursery.start(self.driver.run)


async def _cluster(tmp_path: Path, nursery: trio.Nursery, snapshot_every: int = 16384,
                   election_tick: int = 10) -> dict[str, Member]:
    members = {sid: Member(tmp_path, sid, snapshot_every, election_tick) for sid in IDS}
    addrs = {sid: await nursery.start(m.transport.run) for sid, m in members.items()}
    entries, hard = bootstrap([Server(sid, f"{addrs[sid][0]}:{addrs[sid][1]}") for sid in IDS])
    for m in members.values():
        for other in IDS:
            m.transport.add_peer(other, f"{addrs[other][0]}:{addrs[other][1]}")
        m.store.append(entries)
        m.store.set_hard_state(hard)
        m.store.sync()
        await m.start(nursery)
    return members


async def _leader(members: dict[str, Member]) -> Member:
    with trio.fail_after(DEADLINE):
        while True:
            leaders = [m for m in members.values() if m.driver and m.driver.soft_state.role is Role.LEADER]
            if len(leaders) == 1:
                return leaders[0]
            await trio.sleep(0.01)


def test_consul_timing_scales_with_raft_multiplier() -> None:
    t1, t5 = Timing.consul(1), Timing.consul(5)
    assert (t1.heartbeat_timeout, t1.election_timeout, t1.leader_lease) == (1.0, 1.0, 0.5)
    assert (t5.heartbeat_timeout, t5.election_timeout, t5.leader_lease) == (5.0, 5.0, 2.5)
    assert (t1.tick, t1.election_tick) == (0.1, 10)
    assert (t5.tick, t5.election_tick) == (0.5, 10)


def test_proposals_resolve_on_apply_on_the_leader_and_fail_fast_elsewhere(tmp_path: Path) -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            members = await _cluster(tmp_path, nursery)
            leader = await _leader(members)
            assert leader.driver is not None
            index, term = await leader.driver.propose(b"x", timeout=DEADLINE)
            assert (index, term, b"x") in leader.machine.applied
            follower = next(m for m in members.values() if m is not leader)
            assert follower.driver is not None
            try:
                await follower.driver.propose(b"y", timeout=DEADLINE)
            except NotLeader as err:
                assert err.leader == leader.sid
            else:
                raise AssertionError("a follower accepted a proposal")
            with trio.fail_after(DEADLINE):  # the follower applies the leader's entry too
                while (index, term, b"x") not in follower.machine.applied:
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_concurrent_proposals_share_one_append_and_one_fsync(tmp_path: Path) -> None:
    """16 writers at once: their proposals reach the driver in one round and go out as one append (one APPEND
    per follower, one fsync); each writer still gets its own entry's result."""
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            members = await _cluster(tmp_path, nursery)
            leader = await _leader(members)
            driver = leader.driver
            assert driver is not None
            await driver.propose(b"warm", timeout=DEADLINE)
            before = attrs.evolve(driver.stats)
            started = trio.current_time()
            results: dict[int, tuple[int, int]] = {}

            async def write(n: int) -> None:
                results[n] = await driver.propose(b"c%d" % n, timeout=DEADLINE)

            async with trio.open_nursery() as writers:
                for n in range(16):
                    writers.start_soon(write, n)
            indexes = sorted(results[n][0] for n in range(16))  # trio may start the writers in any order
            assert indexes == list(range(indexes[0], indexes[0] + 16))  # consecutive, one entry each
            assert all((results[n][0], results[n][1], b"c%d" % n) in leader.machine.applied for n in range(16))
            fsyncs = driver.stats.fsyncs - before.fsyncs
            entries = driver.stats.entries_persisted - before.entries_persisted
            # One append and one fsync when the 16 arrive in one driver round (an idle machine, always here); a
            # loaded one can wake the driver between them once.  One fsync per write would be 16.
            assert entries == 16 and fsyncs <= 2, (entries, fsyncs)
            sent_early = driver.stats.early_messages - before.early_messages  # APPENDs and heartbeats
            # One APPEND per follower per append round, plus the heartbeats of the ticks that passed (a loaded
            # machine stretches the window); one APPEND per command would be 32 on their own.
            ticks = int((trio.current_time() - started) / driver.tick_interval) + 1
            assert sent_early <= 2 * (fsyncs + ticks) < 32 or sent_early < 16, (sent_early, fsyncs, ticks)
            nursery.cancel_scope.cancel()

    trio.run(main)


def _reopen_and_check(path: Path, applied: list[Any]) -> RaftStore:
    """The stopped server's store reopened: its snapshot restores exactly what had been applied up to it."""
    again = RaftStore.open(path, "c")
    machine = RecordingMachine()
    machine.restore(again.snapshot().data)
    assert machine.applied == [item for item in applied if item[0] <= again.snapshot().meta.index]
    return again


def test_snapshots_every_n_entries_compact_the_log_and_restore_on_restart(tmp_path: Path) -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            members = await _cluster(tmp_path, nursery, snapshot_every=5)
            leader = await _leader(members)
            assert leader.driver is not None
            for i in range(12):
                await leader.driver.propose(b"cmd%d" % i, timeout=DEADLINE)
            with trio.fail_after(DEADLINE):  # taken beside the loop: the last one may still be writing
                while leader.store.snapshot().meta.index < 10:
                    await trio.sleep(0.01)
            snap_index = leader.store.snapshot().meta.index
            assert snap_index >= 10 and leader.store.first_index() == snap_index + 1
            assert leader.driver.snapshots_taken >= 2
            applied = list(leader.machine.applied)
            nursery.cancel_scope.cancel()
        for m in members.values():
            m.store.close()
        _reopen_and_check(tmp_path / leader.sid, applied).close()

    trio.run(main)


def test_a_message_breaking_the_log_invariants_is_dropped_and_logged(tmp_path: Path, caplog: Any) -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            members = await _cluster(tmp_path, nursery)
            leader = await _leader(members)
            assert leader.driver is not None
            await leader.driver.propose(b"x", timeout=DEADLINE)
            follower = next(m for m in members.values() if m is not leader)
            assert follower.driver is not None
            with trio.fail_after(DEADLINE):
                while follower.driver.status().commit < 4:
                    await trio.sleep(0.01)
            term = follower.driver.status().term
            # the leader's id and term, but a commit index beyond the follower's log: a faulty peer
            last = follower.driver.status().last_index
            bad = Message(type=MsgType.HEARTBEAT, to=follower.sid, from_=leader.sid, term=term, commit=last + 100)
            await follower.driver.inject(bad)
            with trio.fail_after(DEADLINE):
                while follower.driver.faulty_messages == 0:
                    await trio.sleep(0.01)
            index, t = await leader.driver.propose(b"after", timeout=DEADLINE)
            with trio.fail_after(DEADLINE):
                while (index, t, b"after") not in follower.machine.applied:
                    await trio.sleep(0.01)
            assert follower.driver.status().commit < last + 100
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert any("breaks the log's invariants" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------- ReadIndex and leader_ready (the store's reads)


def _isolate(member: Member) -> None:
    """Cut ``member`` off: nothing it sends leaves, nothing sent to it is stepped (its driver still ticks)."""
    driver = member.driver
    assert driver is not None
    driver.transport.send_all = lambda msgs: None  # type: ignore[method-assign]
    driver._step = lambda msg: None  # type: ignore[method-assign]


def test_a_read_index_on_a_healthy_leader_covers_every_acknowledged_write(tmp_path: Path) -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            members = await _cluster(tmp_path, nursery)
            leader = await _leader(members)
            assert leader.driver is not None
            acknowledged = [(await leader.driver.propose(b"w%d" % i, timeout=DEADLINE))[0] for i in range(5)]
            for _ in range(3):
                index = await leader.driver.read_index(timeout=DEADLINE)
                assert index >= max(acknowledged)
                assert leader.driver.applied >= index  # read_index returns once the index is applied here
                acknowledged.append((await leader.driver.propose(b"more", timeout=DEADLINE))[0])
            assert leader.driver.leader_ready()
            for m in members.values():
                if m is not leader:
                    assert m.driver is not None and not m.driver.leader_ready()
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_concurrent_read_indexes_share_heartbeat_rounds_and_each_covers_the_writes_before_it(tmp_path: Path) -> None:
    """50 reads asked at once: one round answers all that were queued when it started (etcd's batching), so far
    fewer rounds than reads; a read asked after a write was acknowledged never gets an index before that write."""
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            members = await _cluster(tmp_path, nursery)
            leader = await _leader(members)
            driver = leader.driver
            assert driver is not None
            acknowledged = (await driver.propose(b"first", timeout=DEADLINE))[0]
            rounds_before = driver.read_rounds
            results: list[tuple[int, int]] = []  # (index acknowledged before asking, read index)

            async def reader(i: int) -> None:
                assert driver is not None
                floor = acknowledged if i % 2 else (await driver.propose(b"w%d" % i, timeout=DEADLINE))[0]
                results.append((floor, await driver.read_index(timeout=DEADLINE)))

            async with trio.open_nursery() as readers:
                for i in range(50):
                    readers.start_soon(reader, i)
            assert len(results) == 50
            assert all(index >= floor for floor, index in results), results
            assert 1 <= driver.read_rounds - rounds_before < 50
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_a_read_index_on_a_deposed_leader_fails_with_not_leader(tmp_path: Path) -> None:
    """The leader is cut off while it still believes it leads: its read index never returns an index (it cannot
    gather a quorum); when check-quorum deposes it, the read fails with NotLeader.  Meanwhile the others elect a
    leader and commit a write that the old one never saw, and reads there cover it."""
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            members = await _cluster(tmp_path, nursery)
            old = await _leader(members)
            assert old.driver is not None
            await old.driver.propose(b"before", timeout=DEADLINE)
            _isolate(old)
            assert old.driver.soft_state.role is Role.LEADER
            outcome: list[object] = []

            async def read_on_old() -> None:
                assert old.driver is not None
                try:
                    outcome.append(await old.driver.read_index(timeout=DEADLINE))
                except NotLeader as err:
                    outcome.append(err)

            nursery.start_soon(read_on_old)
            rest = {sid: m for sid, m in members.items() if m is not old}
            new = await _leader(rest)
            assert new.driver is not None
            index, _ = await new.driver.propose(b"after", timeout=DEADLINE)
            assert await new.driver.read_index(timeout=DEADLINE) >= index
            with trio.fail_after(DEADLINE):
                while not outcome:
                    await trio.sleep(0.01)
            assert isinstance(outcome[0], NotLeader), outcome
            assert not old.driver.leader_ready()
            with pytest.raises(NotLeader):  # and a read asked now is refused at once
                await old.driver.read_index(timeout=DEADLINE)
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_a_new_leader_is_ready_only_once_its_state_holds_every_earlier_commit(tmp_path: Path) -> None:
    """leader_ready is what lets a leader answer default reads from its own state: the first moment it is true on
    a new leader, that leader has applied every write the old leader acknowledged."""
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            members = await _cluster(tmp_path, nursery)
            old = await _leader(members)
            assert old.driver is not None
            acknowledged = [await old.driver.propose(b"w%d" % i, timeout=DEADLINE) for i in range(20)]
            _isolate(old)
            rest = [m for m in members.values() if m is not old]
            with trio.fail_after(DEADLINE):
                while True:  # poll at every scheduling point: catch the first moment a new leader is ready
                    ready = [m for m in rest if m.driver is not None and m.driver.leader_ready()]
                    if ready:
                        break
                    await trio.sleep(0)
            (new,) = ready
            assert new.driver is not None and new.driver.soft_state.role is Role.LEADER
            applied = {(index, term) for index, term, _ in new.machine.applied}
            assert set(acknowledged) <= applied
            assert new.driver.applied > max(index for index, _ in acknowledged)  # its own term's entry too
            nursery.cancel_scope.cancel()

    trio.run(main)


# ---------------------------------------------------------------- a slow disk


def test_a_leader_keeps_its_followers_while_its_fsync_is_slow(tmp_path: Path) -> None:
    """The leader's fsync of a write takes four times the longest election timeout.  Meanwhile it is still
    ticked and stepped, and its heartbeats go out: the followers keep hearing it, nobody campaigns, and the write
    commits (on the followers' disks) and is acknowledged once the leader's own fsync returns.  (A driver that
    fed its node nothing during an fsync fell silent for the whole of it and was deposed.)"""
    slow = 2.4  # seconds; election timeout 0.3-0.6 s (30 ticks of 10 ms)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            members = await _cluster(tmp_path, nursery, election_tick=30)
            leader = await _leader(members)
            driver = leader.driver
            assert driver is not None
            await driver.propose(b"warm", timeout=DEADLINE)
            term = driver.status().term
            followers = [m for m in members.values() if m is not leader]
            syncing = threading.Event()
            real_sync = leader.store.sync

            def slow_sync() -> None:  # in the driver's worker thread
                syncing.set()
                time.sleep(slow)
                real_sync()

            leader.store.sync = slow_sync  # type: ignore[method-assign]
            writer = trio.Event()
            result: list[tuple[int, int]] = []

            async def write() -> None:
                result.append(await driver.propose(b"slow", timeout=DEADLINE))
                writer.set()

            nursery.start_soon(write)
            with trio.fail_after(DEADLINE):
                while not syncing.is_set():
                    await trio.sleep(0.01)
            started = trio.current_time()
            await trio.sleep(slow / 2)
            for f in followers:  # heard from the leader well after its fsync began
                assert f.driver is not None and f.driver.last_contact > started + slow / 4, f.sid
            leader.store.sync = real_sync  # type: ignore[method-assign]
            with trio.fail_after(DEADLINE):
                await writer.wait()
            assert trio.current_time() - started >= slow * 0.9  # it did wait for its own disk
            assert (result[0][0], result[0][1], b"slow") in leader.machine.applied
            for m in members.values():
                assert m.driver is not None and m.driver.status().term == term, m.sid
            assert driver.soft_state.role is Role.LEADER
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_a_leader_keeps_leading_and_committing_while_a_slow_snapshot_is_taken(tmp_path: Path) -> None:
    """Encoding the leader's state takes four times the longest election timeout (a large store: docs/raft.md
    measures ~1 s per 100k KV entries).  It runs beside the loop: meanwhile the leader heartbeats, nobody
    campaigns, and writes keep committing; then the snapshot is adopted and the log compacted, and a restart
    restores from it.  (A driver that awaited the snapshot in its loop fell silent and was deposed.)"""
    slow = 2.4  # seconds; election timeout 0.3-0.6 s (30 ticks of 10 ms)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            members = await _cluster(tmp_path, nursery, snapshot_every=20, election_tick=30)
            leader = await _leader(members)
            driver = leader.driver
            assert driver is not None
            term = driver.status().term
            encoding = threading.Event()
            real_source = leader.machine.snapshot_source

            def slow_source() -> Any:
                encode = real_source()

                def slow_encode() -> bytes:  # in the snapshot's worker thread
                    encoding.set()
                    time.sleep(slow)
                    return encode()
                return slow_encode

            leader.machine.snapshot_source = slow_source  # type: ignore[method-assign]
            leader.machine.snapshot = lambda: slow_source()()  # type: ignore[method-assign]
            n = 0
            while not encoding.is_set():  # up to the snapshot threshold
                n += 1
                await driver.propose(b"before%d" % n, timeout=DEADLINE)
            started = trio.current_time()
            during = 0
            while trio.current_time() - started < slow * 0.75:
                during += 1
                await driver.propose(b"during%d" % during, timeout=1.0)  # each commits at once, not after it
            assert leader.store.snapshot().meta.index == 0  # still encoding: nothing adopted yet
            for f in followers(members, leader):
                assert f.driver is not None and f.driver.last_contact > started + slow / 2, f.sid
            with trio.fail_after(DEADLINE):
                while leader.store.snapshot().meta.index == 0:
                    await trio.sleep(0.01)
            snap = leader.store.snapshot()
            assert snap.meta.index >= 20 and leader.store.first_index() == snap.meta.index + 1
            assert during >= 10
            for m in members.values():
                assert m.driver is not None and m.driver.status().term == term, m.sid
            assert driver.soft_state.role is Role.LEADER and driver.snapshots_taken == 1
            await driver.propose(b"after", timeout=DEADLINE)  # the next persist unlinks the compacted segments
            applied = list(leader.machine.applied)
            nursery.cancel_scope.cancel()
        for m in members.values():
            m.store.close()
        again = _reopen_and_check(tmp_path / leader.sid, applied)
        # a later snapshot may have been written since this one was checked, and not adopted before the stop
        assert again.snapshot().meta.index >= snap.meta.index
        assert again.last_index() >= applied[-1][0] and applied[-1][2] == b"after"
        again.close()

    trio.run(main)


def followers(members: dict[str, Member], leader: Member) -> list[Member]:
    return [m for m in members.values() if m is not leader]


def test_a_lagging_follower_catches_up_from_a_snapshot_taken_beside_the_loop(tmp_path: Path) -> None:
    """A follower cut off while the leader snapshots (beside its loop) and compacts past the follower's log is
    sent the leader's adopted snapshot whole: it restores it and then holds exactly the leader's state."""
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            members = await _cluster(tmp_path, nursery, snapshot_every=10, election_tick=30)
            leader = await _leader(members)
            assert leader.driver is not None
            lagging = followers(members, leader)[0]
            assert lagging.driver is not None
            await leader.driver.propose(b"first", timeout=DEADLINE)
            with trio.fail_after(DEADLINE):
                while lagging.driver.applied < leader.driver.applied:
                    await trio.sleep(0.01)
            behind = lagging.store.last_index()
            restored: list[int] = []
            real_restore = lagging.machine.restore

            def restore(data: bytes) -> None:
                real_restore(data)
                restored.append(lagging.machine.applied[-1][0])

            lagging.machine.restore = restore  # type: ignore[method-assign]
            _isolate(lagging)
            for i in range(40):
                await leader.driver.propose(b"w%d" % i, timeout=DEADLINE)
            with trio.fail_after(DEADLINE):
                while leader.store.first_index() <= behind + 1:
                    await trio.sleep(0.01)
            del lagging.driver.transport.send_all, lagging.driver._step  # connected again
            last, _ = await leader.driver.propose(b"last", timeout=DEADLINE)
            with trio.fail_after(DEADLINE):
                while lagging.driver.applied < last:
                    await trio.sleep(0.01)
            assert len(restored) == 1 and restored[0] > behind  # the log it lacked came as the leader's snapshot
            assert lagging.machine.applied == [item for item in leader.machine.applied if item[0] <= last]
            assert lagging.machine.applied[-1][2] == b"last"
            nursery.cancel_scope.cancel()

    trio.run(main)
