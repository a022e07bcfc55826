"""The pieces under the core: MemoryStorage, the log's unstable tail, the configuration history, quorums."""

from __future__ import annotations

import random

import pytest
from raft_harness import Net

from protocol.raft import Config, MemoryStorage, RawNode, bootstrap, conf_at_end
from protocol.raft.log import LogInvariantError, RaftLog
from protocol.raft.membership import ConfHistory, apply_change
from protocol.raft.quorum import VoteResult, committed_index, vote_result
from protocol.raft.storage import Compacted, SnapshotOutOfDate, Unavailable
from protocol.raft.types import (
    ConfChange,
    ConfChangeKind,
    ConfState,
    Entry,
    EntryKind,
    HardState,
    Server,
    conf_change_to_bytes,
)


def entries(lo: int, hi: int, term: int) -> list[Entry]:
    return [Entry(i, term, data=b"x%d" % i) for i in range(lo, hi)]


def test_memory_storage_append_compact_snapshot():
    s = MemoryStorage()
    assert (s.first_index(), s.last_index(), s.term(0)) == (1, 0, 0)
    s.append(entries(1, 11, 1))
    s.append(entries(8, 10, 2))  # replaces 8.. (the old 10 goes too)
    assert s.last_index() == 9 and s.term(8) == 2 and s.term(7) == 1
    with pytest.raises(ValueError, match="gap"):
        s.append(entries(12, 13, 2))
    with pytest.raises(ValueError, match="snapshot covers"):
        s.compact(5)
    conf = ConfState((Server("a", "a:1"),))
    snap = s.create_snapshot(6, conf, b"state")
    assert (snap.meta.index, snap.meta.term, snap.meta.conf) == (6, 1, conf)
    s.compact(4)
    assert s.first_index() == 5 and s.term(4) == 1
    with pytest.raises(Compacted):
        s.term(3)
    with pytest.raises(Compacted):
        s.entries(4, 6)
    with pytest.raises(Unavailable):
        s.entries(5, 11)
    assert [e.index for e in s.entries(5, 10)] == [5, 6, 7, 8, 9]
    assert [e.index for e in s.entries(5, 10, max_bytes=1)] == [5]  # at least one
    with pytest.raises(SnapshotOutOfDate):
        s.create_snapshot(6, conf, b"again")
    newer = s.create_snapshot(9, conf, b"s9")
    fresh = MemoryStorage()
    fresh.apply_snapshot(newer)
    assert (fresh.first_index(), fresh.last_index(), fresh.term(9)) == (10, 9, 2)
    with pytest.raises(SnapshotOutOfDate):
        fresh.apply_snapshot(snap)


def test_initial_state_configuration_is_the_snapshot_then_every_change_after_it():
    boot, hard = bootstrap([Server("b", "b:1"), Server("a", "a:1")])
    assert [e.index for e in boot] == [1, 2] and hard.commit == 2
    s = MemoryStorage()
    s.append(boot)
    s.set_hard_state(hard)
    add_c = ConfChange(ConfChangeKind.ADD_NONVOTER, "c", "c:1")
    s.append([Entry(3, 2, EntryKind.CONF_CHANGE, conf_change_to_bytes(add_c))])
    hs, conf = s.initial_state()
    assert hs == hard
    assert conf.voters() == {"a", "b"} and conf.ids() == {"a", "b", "c"}
    assert conf == conf_at_end(s.snapshot(), s.entries(1, 4))


def test_unstable_tail_truncation_and_stable_to():
    s = MemoryStorage()
    s.append(entries(1, 6, 1))
    log = RaftLog(s)
    log.append(entries(6, 9, 2))
    assert log.last_index() == 8 and log.term(7) == 2
    log.append(entries(4, 6, 3))  # conflicts with stored 4..5: the unstable part now starts at 4
    assert log.unstable.offset == 4 and log.last_index() == 5 and log.term(5) == 3
    assert [e.index for e in log.slice(2, 6)] == [2, 3, 4, 5]
    log.unstable.stable_to(5, 2)  # a stale Ready's entry: wrong term, nothing is let go
    assert log.unstable.offset == 4
    s.append(log.unstable.entries)
    log.unstable.stable_to(5, 3)
    assert log.unstable.entries == [] and log.unstable.offset == 6
    log.commit_to(5)
    with pytest.raises(LogInvariantError, match="committed"):
        log.append(entries(5, 6, 4))
    with pytest.raises(LogInvariantError, match="beyond"):
        log.commit_to(9)


def test_find_conflict_by_term_skips_a_term():
    s = MemoryStorage()
    s.append(entries(1, 4, 1) + entries(4, 10, 3))
    log = RaftLog(s)
    assert log.find_conflict_by_term(9, 2) == (3, 1)
    assert log.find_conflict_by_term(9, 3) == (9, 3)
    assert log.find_conflict_by_term(20, 5) == (9, 3)


def test_conf_history_rolls_back_a_cut_change():
    base = ConfState((Server("a", "a:1"), Server("b", "b:1")))
    h = ConfHistory(0, base)
    add = Entry(5, 2, EntryKind.CONF_CHANGE, conf_change_to_bytes(ConfChange(ConfChangeKind.ADD_VOTER, "c", "c:1")))
    assert h.add([Entry(4, 2), add])
    assert h.current.voters() == {"a", "b", "c"} and h.at(4) == base
    assert h.truncate_from(5) and h.current == base
    assert apply_change(base, ConfChange(ConfChangeKind.REMOVE_SERVER, "zz")) == base


def test_quorums():
    voters = {"a", "b", "c", "d", "e"}
    assert committed_index(voters, {"a": 9, "b": 7, "c": 5, "d": 1}) == 5
    assert vote_result(voters, {"a": True, "b": True}) is VoteResult.PENDING
    assert vote_result(voters, {"a": True, "b": True, "c": True}) is VoteResult.WON
    assert vote_result(voters, {"a": False, "b": False, "c": False}) is VoteResult.LOST


def test_a_follower_that_loses_an_uncommitted_change_falls_back_to_the_old_configuration():
    ids = ["a", "b", "c", "d", "e"]
    net = Net(ids, check_quorum=False)
    net.elect("a")
    net.isolate("a")
    net.cut_links -= {("a", "b"), ("b", "a")}
    net["a"].node.propose_conf_change(ConfChange(ConfChangeKind.REMOVE_SERVER, "e"))
    net.flush("a")
    assert net["b"].raft.conf.voters() == {"a", "b", "c", "d"}  # in force on b while uncommitted
    net.recover()
    net.isolate("a")
    net.isolate("b")
    net.cut_links -= {(x, y) for x in "cde" for y in "cde"}
    net.elect("c")  # c, d, e never saw the change
    net.recover()
    net.isolate("a")
    net.propose("c", b"overwrite")
    net.tick("c", 2)
    assert net["b"].raft.log.term(net["b"].raft.log.last_index()) == net["c"].raft.term
    assert net["b"].raft.conf.voters() == set(ids)


def test_a_restarted_node_applies_from_its_snapshot_not_from_the_compaction_point():
    boot, _ = bootstrap([Server("a", "a:1"), Server("b", "b:1")])
    s = MemoryStorage()
    s.append(boot + entries(3, 11, 2))
    s.set_hard_state(HardState(term=2, commit=10))
    s.create_snapshot(8, ConfState((Server("a", "a:1"), Server("b", "b:1"))), b"state at 8")
    s.compact(5)  # entries 6..8 are kept although the snapshot covers them
    node = RawNode(Config(id="a"), s, random.Random(1))
    rd = node.ready()
    assert [e.index for e in rd.committed_entries] == [9, 10]


def test_storage_compacted_past_its_snapshot_is_refused():
    class Broken(MemoryStorage):
        def first_index(self) -> int:
            return 5  # claims entries start at 5 with no snapshot before them

    s = Broken()
    s.append(entries(1, 8, 1))
    with pytest.raises(LogInvariantError, match="entries between are lost"):
        RawNode(Config(id="a"), s, random.Random(1))
