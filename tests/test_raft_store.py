"""agent.server.raftstore: the Raft data dir on tmp_path, against an in-memory model, and on damaged files."""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from agent.server import records
from agent.server.errors import ClusterMismatch, StoreCorrupt
from agent.server.raftstore import RaftStore, snapshot_name
from protocol.raft.membership import conf_after
from protocol.raft.storage import Compacted, SnapshotOutOfDate, Unavailable, entry_size
from protocol.raft.types import (
    ConfChange,
    ConfChangeKind,
    ConfState,
    Entry,
    EntryKind,
    HardState,
    Server,
    Snapshot,
    SnapshotMeta,
    Suffrage,
    conf_change_to_bytes,
)

SMALL_SEGMENTS = 300  # bytes: a few entries per segment, so rolls and multi-segment truncation are exercised


def entry(index: int, term: int = 1, data: bytes | None = None) -> Entry:
    return Entry(index, term, EntryKind.NORMAL, data if data is not None else f"e{index}t{term}".encode())


def conf_entry(index: int, term: int, kind: ConfChangeKind, sid: str) -> Entry:
    return Entry(index, term, EntryKind.CONF_CHANGE, conf_change_to_bytes(ConfChange(kind, sid, f"10.0.0.{sid}:8300")))


def open_store(path: Path, cluster: str | None = "c1") -> RaftStore:
    return RaftStore.open(path, cluster, segment_bytes=SMALL_SEGMENTS)


def segments(path: Path) -> list[Path]:
    return sorted((path / "raft").glob("*.log"))


# ---------------------------------------------------------------------- the model


class Model:
    """What the store must answer: a plain list of entries after a snapshot, the synced hard state, and the
    entries that were in the log at the last sync (acknowledged: a power loss must keep those still in it)."""

    def __init__(self) -> None:
        self.snap = Snapshot()
        self.ents: list[Entry] = []
        self.hard = HardState()
        self.synced_hard = HardState()
        self.synced_ents: list[Entry] = []

    def synced(self, *, close: bool = False) -> None:
        """A sync makes the log durable and the hard state when its term or vote changed (a commit-only change
        waits for the next such change, or for close)."""
        if close or (self.hard.term, self.hard.vote) != (self.synced_hard.term, self.synced_hard.vote):
            self.synced_hard = self.hard
        self.synced_ents = list(self.ents)

    def acknowledged(self) -> int:
        """How many of the current entries must survive a power loss: those unchanged since the last sync."""
        at_sync = {e.index: e for e in self.synced_ents}
        n = 0
        while n < len(self.ents) and at_sync.get(self.ents[n].index) == self.ents[n]:
            n += 1
        return n

    @property
    def last(self) -> int:
        return self.snap.meta.index + len(self.ents)

    def conf(self) -> ConfState:
        conf = self.snap.meta.conf
        for e in self.ents:
            if e.kind is EntryKind.CONF_CHANGE:
                conf = conf_after(conf, (e,))
        return conf


class StoreMachine(RuleBasedStateMachine):
    """Random operations against the model.  os.fsync is wrapped (the real one still runs) to record each
    file's size when it was last fsynced: what a power loss cannot take away."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="raftstore-"))
        self.durable: dict[str, int] = {}
        self._real_fsync = os.fsync

        def fsync(fd: int) -> None:
            self._real_fsync(fd)
            self.durable[os.readlink(f"/proc/self/fd/{fd}")] = os.fstat(fd).st_size

        os.fsync = fsync
        self.store = open_store(self.tmp)
        self.model = Model()
        self.term = 1

    def teardown(self) -> None:
        os.fsync = self._real_fsync
        self.store.close()
        shutil.rmtree(self.tmp)

    @rule(back=st.integers(0, 12), count=st.integers(1, 8), bump=st.booleans(), data=st.data())
    def append(self, back: int, count: int, bump: bool, data: st.DataObject) -> None:
        """Append at last + 1, or overwrite from an earlier index (a new leader's entries); sometimes from
        before the snapshot, whose part must be skipped."""
        if bump:
            self.term += 1
        m = self.model
        start = max(1, m.last + 1 - back)
        new = []
        for i in range(start, start + count):
            if data.draw(st.integers(0, 5)) == 0:
                kind = data.draw(st.sampled_from(ConfChangeKind))
                new.append(conf_entry(i, self.term, kind, data.draw(st.sampled_from("123"))))
            else:
                new.append(entry(i, self.term, data.draw(st.binary(max_size=40))))
        self.store.append(new)
        kept = [e for e in new if e.index > m.snap.meta.index]
        if kept:
            del m.ents[kept[0].index - m.snap.meta.index - 1 :]
            m.ents.extend(kept)
            # The caller replaced everything from kept[0] on: what was acknowledged there no longer is, even if a
            # new entry happens to equal the old one (Raft overwrites only uncommitted entries of an older term,
            # so it never rewrites an equal one; the store is not asked to notice).
            m.synced_ents = [e for e in m.synced_ents if e.index < kept[0].index]

    @rule(commit=st.integers(0, 50), vote=st.sampled_from(["", "a", "b"]))
    def set_hard_state(self, commit: int, vote: str) -> None:
        hs = HardState(self.term, vote, commit)
        self.store.set_hard_state(hs)
        self.model.hard = hs

    @rule()
    def sync(self) -> None:
        self.store.sync()
        self.model.synced()

    @precondition(lambda self: self.model.last > self.model.snap.meta.index)
    @rule(data=st.data())
    def create_snapshot(self, data: st.DataObject) -> None:
        m = self.model
        index = data.draw(st.integers(m.snap.meta.index + 1, m.last))
        conf = ConfState((Server("s", "127.0.0.1:8300"),))
        snap = self.store.create_snapshot(index, conf, b"state@%d" % index)
        m.synced_ents = list(m.ents)  # the log is synced before the snapshot is written
        assert snap == Snapshot(SnapshotMeta(index, m.ents[index - m.snap.meta.index - 1].term, conf), snap.data)
        del m.ents[: index - m.snap.meta.index]
        m.snap = snap

    @rule(data=st.data())
    def compact(self, data: st.DataObject) -> None:
        self.store.compact(data.draw(st.integers(0, self.model.snap.meta.index + 1)))

    @rule(ahead=st.integers(1, 20), term_ahead=st.integers(0, 2))
    def apply_snapshot(self, ahead: int, term_ahead: int) -> None:
        m = self.model
        self.term += term_ahead
        index = m.snap.meta.index + ahead
        snap = Snapshot(SnapshotMeta(index, self.term, ConfState((Server("x", "127.0.0.9:8300"),))), b"recv")
        self.store.apply_snapshot(snap)
        m.snap, m.ents = snap, []

    @rule()
    def reopen(self) -> None:
        self.store.close()
        self.store = open_store(self.tmp, None)
        self.model.synced(close=True)

    @rule()
    def crash_and_reopen(self) -> None:
        """The process dies without close(): written log bytes survive (the page cache), unsynced hard state not."""
        self.store._log._close_fd()
        self.store = open_store(self.tmp)
        self.model.hard = self.model.synced_hard

    @rule(data=st.data())
    def power_loss(self, data: st.DataObject) -> None:
        """The machine loses power: every segment keeps at least what was fsynced and any part of what was
        written after, possibly followed by zeros (a file extended but not filled); the hard state is the synced
        one.  The reopened log must be a prefix of the log before the loss that holds every acknowledged entry."""
        self.store._log._close_fd()
        for seg in segments(self.tmp):
            size, durable = seg.stat().st_size, self.durable.get(str(seg), 0)
            if size > durable:
                keep = data.draw(st.integers(durable, size), label=f"keep of {seg.name}")
                with seg.open("r+b") as f:
                    f.truncate(keep)
                    if data.draw(st.booleans(), label="zeros after"):
                        f.seek(keep)
                        f.write(b"\0" * (size - keep))
        self.store = open_store(self.tmp)
        m, s = self.model, self.store
        assert s.snapshot() == m.snap and s.first_index() == m.snap.meta.index + 1
        survived = s.entries(s.first_index(), s.last_index() + 1)
        assert survived == m.ents[: len(survived)]
        assert len(survived) >= m.acknowledged(), "an acknowledged entry was lost"
        m.ents = survived
        m.hard = m.synced_hard
        m.synced()
        for seg in segments(self.tmp):  # after the loss, what is on disk is all there is
            self.durable[str(seg)] = seg.stat().st_size

    @invariant()
    def agrees_with_model(self) -> None:
        s, m = self.store, self.model
        assert s.first_index() == m.snap.meta.index + 1
        assert s.last_index() == m.last
        assert s.entries(s.first_index(), s.last_index() + 1) == m.ents
        assert s.snapshot() == m.snap
        assert s.term(m.snap.meta.index) == m.snap.meta.term
        assert [s.term(e.index) for e in m.ents] == [e.term for e in m.ents]
        assert s.initial_state() == (m.hard, m.conf())


TestStoreAgainstModel = StoreMachine.TestCase
TestStoreAgainstModel.settings = settings(
    max_examples=150, stateful_step_count=50, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


# ---------------------------------------------------------------------- the Storage contract


def test_storage_answers_and_errors(tmp_path: Path) -> None:
    s = open_store(tmp_path)
    assert (s.first_index(), s.last_index(), s.term(0)) == (1, 0, 0)
    assert s.entries(1, 1) == []
    s.append([entry(i, data=b"x" * 10) for i in range(1, 11)])
    assert [e.index for e in s.entries(3, 7)] == [3, 4, 5, 6]
    assert [e.index for e in s.entries(3, 7, max_bytes=2 * entry_size(entry(3, data=b"x" * 10)))] == [3, 4]
    assert [e.index for e in s.entries(3, 7, max_bytes=0)] == [3]  # at least one
    with pytest.raises(Unavailable):
        s.entries(5, 12)
    with pytest.raises(Unavailable):
        s.term(11)
    s.create_snapshot(4, ConfState(), b"s4")
    with pytest.raises(Compacted):
        s.entries(4, 6)
    with pytest.raises(Compacted):
        s.term(3)
    assert s.term(4) == 1
    with pytest.raises(SnapshotOutOfDate):
        s.create_snapshot(4, ConfState(), b"again")
    with pytest.raises(SnapshotOutOfDate):
        s.apply_snapshot(Snapshot(SnapshotMeta(3, 1), b"old"))
    with pytest.raises(ValueError, match="gap"):
        s.append([entry(12)])
    with pytest.raises(ValueError, match="consecutive"):
        s.append([entry(11), entry(13)])
    with pytest.raises(ValueError, match="not covered"):
        s.compact(6)
    s.close()


def test_overwrite_truncates_across_segments_and_survives_reopen(tmp_path: Path) -> None:
    s = open_store(tmp_path)
    s.append([entry(i, 1) for i in range(1, 41)])
    s.sync()
    assert len(segments(tmp_path)) >= 3
    s.append([entry(i, 2) for i in range(8, 10)])  # a new leader's entries replace 8.. and drop the rest
    assert [p.name for p in segments(tmp_path)] == ["00000000000000000001.log"]
    s.close()
    s = open_store(tmp_path)
    assert [(e.index, e.term) for e in s.entries(1, s.last_index() + 1)] == [(i, 1) for i in range(1, 8)] + [
        (8, 2), (9, 2)]
    s.close()


def test_conf_state_follows_conf_changes_and_their_truncation(tmp_path: Path) -> None:
    s = open_store(tmp_path)
    s.append([conf_entry(1, 1, ConfChangeKind.ADD_VOTER, "1"), conf_entry(2, 1, ConfChangeKind.ADD_NONVOTER, "2"),
              conf_entry(3, 1, ConfChangeKind.ADD_VOTER, "2")])
    assert s.initial_state()[1].voters() == {"1", "2"}
    s.append([conf_entry(3, 2, ConfChangeKind.REMOVE_SERVER, "1")])
    conf = s.initial_state()[1]
    assert conf.ids() == {"2"} and conf.get("2").suffrage is Suffrage.NONVOTER
    s.close()
    assert open_store(tmp_path).initial_state()[1] == conf
    with pytest.raises(ValueError, match="conf change"):
        open_store(tmp_path / "x").append([Entry(1, 1, EntryKind.CONF_CHANGE, b"\xc1")])


def test_compact_deletes_only_files_the_snapshot_covers(tmp_path: Path) -> None:
    s = open_store(tmp_path)
    s.append([entry(i) for i in range(1, 41)])
    before = segments(tmp_path)
    s.create_snapshot(20, ConfState(), b"s20")
    assert s.compact(21) > 0
    after = segments(tmp_path)
    assert len(after) < len(before) and int(after[0].stem) <= 21
    s.close()
    s = open_store(tmp_path)
    assert (s.first_index(), s.last_index(), s.snapshot().data) == (21, 40, b"s20")
    assert [e.index for e in s.entries(21, 41)] == list(range(21, 41))
    s.close()


# ---------------------------------------------------------------------- torn tails and corruption


def _written(tmp_path: Path, n: int = 12) -> tuple[Path, list[int], bytes]:
    """A store with entries 1..n; returns its last segment, the record offsets in it, and its bytes."""
    s = open_store(tmp_path)
    s.append([entry(i, 1, bytes([i]) * 20) for i in range(1, n + 1)])
    s.close()
    last = segments(tmp_path)[-1]
    buf = last.read_bytes()
    return last, [r.offset for r in records.scan(buf, tail=False).records], buf


def test_torn_tail_at_every_byte_of_the_last_record_is_cut(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    last, offsets, buf = _written(tmp_path)
    n = 12
    for cut in range(offsets[-1] + 1, len(buf)):
        for tail in (b"", b"\0" * (len(buf) - cut)):
            last.write_bytes(buf[:cut] + tail)
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="triumvir.raft"):
                s = open_store(tmp_path)
            assert s.last_index() == n - 1, cut
            assert s.entries(1, n) == [entry(i, 1, bytes([i]) * 20) for i in range(1, n)]
            assert f"{last}: cutting a torn record at offset {offsets[-1]}" in caplog.text
            assert last.stat().st_size == offsets[-1]  # cut on disk, so the next append follows the good ones
            s.append([entry(n, 2)])
            s.close()
            s = open_store(tmp_path)
            assert s.term(n) == 2
            s.close()


def test_flipped_byte_before_the_tail_names_file_and_offset(tmp_path: Path) -> None:
    last, offsets, buf = _written(tmp_path)
    victim = offsets[-2] + 14
    bad = bytearray(buf)
    bad[victim] ^= 0x40
    last.write_bytes(bytes(bad))
    with pytest.raises(StoreCorrupt) as info:
        open_store(tmp_path)
    assert info.value.path == last and info.value.offset == offsets[-2]
    assert f"{last} at offset {offsets[-2]}" in str(info.value)
    last.write_bytes(buf)
    # any damage in a segment that is not the newest is corruption, even in its last record
    first = segments(tmp_path)[0]
    good = first.read_bytes()
    first.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(StoreCorrupt, match=re.escape(f"{first.name} at offset")):
        open_store(tmp_path)


def test_index_gaps_and_missing_snapshot_are_corruption(tmp_path: Path) -> None:
    _written(tmp_path, 40)
    segs = segments(tmp_path)
    segs[1].unlink()
    with pytest.raises(StoreCorrupt, match="expected"):
        open_store(tmp_path)
    segs[0].unlink()
    with pytest.raises(StoreCorrupt, match="no snapshot"):
        open_store(tmp_path)


def test_damaged_snapshot_is_an_error(tmp_path: Path) -> None:
    s = open_store(tmp_path)
    s.append([entry(i) for i in range(1, 5)])
    s.create_snapshot(3, ConfState(), b"snap")
    s.close()
    snap = tmp_path / "raft" / snapshot_name(3)
    good = snap.read_bytes()
    snap.write_bytes(good[:-2])
    with pytest.raises(StoreCorrupt, match=re.escape(str(snap)) + ".*short record"):
        open_store(tmp_path)
    snap.write_bytes(good + b"\0")
    with pytest.raises(StoreCorrupt, match="unexpected bytes after the record"):
        open_store(tmp_path)


# ---------------------------------------------------------------------- crash safety of atomic writes


def test_leftover_temp_files_are_ignored(tmp_path: Path) -> None:
    s = open_store(tmp_path)
    s.append([entry(i) for i in range(1, 6)])
    s.set_hard_state(HardState(1, "a", 3))
    s.create_snapshot(2, ConfState(), b"s2")
    s.close()
    raft = tmp_path / "raft"
    # a crash mid-way through the next atomic writes leaves a temp file of garbage or of a newer state
    (raft / ".hardstate.abc123.tmp").write_bytes(records.encode(b"\x93\x09\xa1z\x09"))
    (raft / f".{snapshot_name(4)}.def456.tmp").write_bytes(b"torn")
    s = open_store(tmp_path)
    assert s.initial_state()[0] == HardState(1, "a", 3)
    assert s.snapshot().meta.index == 2
    assert not list(raft.glob(".*.tmp"))
    s.close()


def test_interrupted_snapshot_install_completes_on_open(tmp_path: Path) -> None:
    """A crash between writing a received snapshot and dropping the old log: the stale log is dropped on open,
    unless it holds the snapshot's own entry (then the entries after it are kept)."""
    s = open_store(tmp_path)
    s.append([entry(i, 1) for i in range(1, 21)])
    s.close()
    saved = {p.name: p.read_bytes() for p in segments(tmp_path)}
    s = open_store(tmp_path)
    s.apply_snapshot(Snapshot(SnapshotMeta(10, 5), b"leader's"))  # term 5 at 10: our entries conflict
    s.close()
    for name, data in saved.items():  # put the old log back as if its removal never reached the disk
        (tmp_path / "raft" / name).write_bytes(data)
    s = open_store(tmp_path)
    assert (s.first_index(), s.last_index(), s.snapshot().data) == (11, 10, b"leader's")
    assert not segments(tmp_path)
    s.close()

    other = tmp_path / "other"
    s = open_store(other)
    s.append([entry(i, 1) for i in range(1, 21)])
    s.create_snapshot(10, ConfState(), b"mine")
    s.close()
    s = open_store(other)
    assert (s.first_index(), s.last_index()) == (11, 20)  # the log agrees with the snapshot: kept
    s.close()


def test_older_snapshot_left_by_a_crash_is_removed(tmp_path: Path) -> None:
    s = open_store(tmp_path)
    s.append([entry(i) for i in range(1, 9)])
    s.create_snapshot(3, ConfState(), b"s3")
    old = (tmp_path / "raft" / snapshot_name(3)).read_bytes()
    s.create_snapshot(6, ConfState(), b"s6")
    s.close()
    (tmp_path / "raft" / snapshot_name(3)).write_bytes(old)
    s = open_store(tmp_path)
    assert s.snapshot().data == b"s6"
    assert not (tmp_path / "raft" / snapshot_name(3)).exists()
    s.close()


def test_a_snapshot_written_beside_appends_but_never_adopted_is_in_force_after_a_crash(tmp_path: Path) -> None:
    """The driver's steps: the file is written (in another thread) while appends go on; a crash before it is
    adopted reopens with it, and with the log after it, including what was appended meanwhile."""
    s = open_store(tmp_path)
    s.append([entry(i) for i in range(1, 11)])
    s.sync()
    s.create_snapshot(3, ConfState(), b"s3")
    snap = Snapshot(s.snapshot_meta(8, ConfState()), b"s8")
    s.append([entry(i) for i in range(11, 15)])  # beside the write
    s.write_snapshot_file(snap, 3)
    s.append([entry(15)])
    s.sync()
    assert s.snapshot().data == b"s3" and s.first_index() == 4  # not adopted: the older is served
    s._log.close()  # crash: no adopt, no close
    s._hard_file.close()
    s = open_store(tmp_path)
    assert (s.snapshot().data, s.first_index(), s.last_index()) == (b"s8", 9, 15)
    assert not (tmp_path / "raft" / snapshot_name(3)).exists()
    assert [e.index for e in s.entries(9, 16)] == list(range(9, 16))
    s.close()


def test_adopting_a_snapshot_overtaken_by_a_received_one_drops_it(tmp_path: Path) -> None:
    s = open_store(tmp_path)
    s.append([entry(i) for i in range(1, 11)])
    s.sync()
    mine = Snapshot(s.snapshot_meta(6, ConfState()), b"mine")
    s.write_snapshot_file(mine, 0)
    s.apply_snapshot(Snapshot(SnapshotMeta(9, 1), b"leader's"))  # installed while ours was being written
    assert not s.adopt_snapshot(mine)
    assert (s.snapshot().data, s.first_index()) == (b"leader's", 10)
    assert not (tmp_path / "raft" / snapshot_name(6)).exists()
    s.close()
    s = open_store(tmp_path)
    assert s.snapshot().data == b"leader's"
    s.close()


# ---------------------------------------------------------------------- cluster id


def test_another_clusters_data_dir_is_refused(tmp_path: Path) -> None:
    open_store(tmp_path, "cluster-a").close()
    with pytest.raises(ClusterMismatch) as info:
        open_store(tmp_path, "cluster-b")
    assert "cluster-a" in str(info.value) and "cluster-b" in str(info.value) and str(tmp_path) in str(info.value)
    s = open_store(tmp_path, None)  # adopt
    assert s.cluster_id == "cluster-a"
    with pytest.raises(ClusterMismatch):
        s.set_cluster_id("cluster-b")
    s.close()


def test_a_fresh_server_learns_its_cluster_later(tmp_path: Path) -> None:
    s = open_store(tmp_path, None)
    assert s.cluster_id is None
    s.set_cluster_id("cluster-a")
    s.close()
    with pytest.raises(ClusterMismatch):
        open_store(tmp_path, "cluster-b")
    assert open_store(tmp_path, "cluster-a").cluster_id == "cluster-a"


def test_damaged_meta_is_refused(tmp_path: Path) -> None:
    open_store(tmp_path).close()
    (tmp_path / "raft" / "meta.json").write_text('{"format": 99}')
    with pytest.raises(StoreCorrupt, match=r"meta\.json"):
        open_store(tmp_path)


# ---------------------------------------------------------------------- what sync() makes durable, in order


def test_sync_fsyncs_the_log_before_the_hard_state_and_only_what_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real os.fsync/os.fdatasync run; the wrappers only record which file each call was for."""
    calls: list[str] = []
    real_fsync, real_fdatasync = os.fsync, os.fdatasync

    def fsync(fd: int) -> None:
        calls.append("fsync " + os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    def fdatasync(fd: int) -> None:
        calls.append("fdatasync " + os.readlink(f"/proc/self/fd/{fd}"))
        real_fdatasync(fd)

    s = open_store(tmp_path)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "fdatasync", fdatasync)
    raft = str(tmp_path / "raft")
    seg, hard = f"{raft}/00000000000000000001.log", f"{raft}/hardstate"
    s.append([entry(1)])
    s.set_hard_state(HardState(1, "a", 1))
    assert calls == [f"fsync {raft}"]  # the new segment's directory entry, at once; its data waits for sync()
    calls.clear()
    s.sync()  # the log first; then the hard state file, created whole once, then its slot written
    assert calls == [f"fsync {seg}", f"fsync {hard}", f"fsync {raft}", f"fdatasync {hard}"]
    calls.clear()
    s.append([entry(2)])
    s.sync()
    assert calls == [f"fsync {seg}"]  # same segment, same hard state: one fsync
    calls.clear()
    s.append([entry(3)])
    s.set_hard_state(HardState(1, "a", 3))
    s.sync()
    assert calls == [f"fsync {seg}"]  # the steady state: a commit-only change waits (etcd's MustSync rule)
    calls.clear()
    s.append([entry(4)])
    s.set_hard_state(HardState(2, "b", 3))
    s.sync()
    assert calls == [f"fsync {seg}", f"fdatasync {hard}"]  # a new term or vote is durable before sync returns
    calls.clear()
    s.set_hard_state(HardState(2, "b", 4))
    s.close()
    assert calls == [f"fdatasync {hard}"]  # close writes the commit index too (the log had nothing new)
    reopened = open_store(tmp_path, None)
    assert reopened.initial_state()[0] == HardState(2, "b", 4)
    reopened.close()
