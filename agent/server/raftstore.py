"""A server's Raft state on disk, ``<data_dir>/raft/``: the `Storage` the core reads, plus the writes the driver
makes from each `Ready` (append, hard state, snapshots, sync).

Files (docs/raft.md "On disk")::

    meta.json                      {"format": 1, "cluster_id": ...}: refuses another cluster's data dir
    hardstate                      [term, vote, commit] in two slots written in turn (agent.server.hardstate)
    <index, 20 digits>.snap        the latest snapshot, one record, written atomically
    <index, 20 digits>.log         log segments (agent.server.segments)

The log since the snapshot is also kept in memory (as etcd's server keeps its MemoryStorage beside its WAL), so
reads never touch the disk.  ``first_index()`` is always ``snapshot index + 1``: creating a snapshot makes the
entries it covers unavailable at once, and ``compact`` only reclaims their files.  All methods are synchronous
and blocking; the Raft driver calls them from a worker thread, one at a time, except `write_snapshot_file`,
which may run beside the others.
"""

from __future__ import annotations

import bisect
import itertools
import json
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

from agent.datadir import DataDir, fsync_dir
from protocol.raft.membership import conf_after
from protocol.raft.storage import Compacted, SnapshotOutOfDate, Unavailable, limit_size
from protocol.raft.types import (
    ConfState,
    Entry,
    EntryKind,
    HardState,
    Snapshot,
    SnapshotMeta,
    WireError,
    conf_change_from_bytes,
)

from . import records
from .errors import ClusterMismatch, StoreCorrupt, StoreError
from .hardstate import HardStateFile
from .payloads import PayloadError, snapshot_from_bytes, snapshot_to_parts
from .segments import DEFAULT_SEGMENT_BYTES, SegmentedLog

log = logging.getLogger("triumvir.raft.store")

RAFT_DIR = "raft"
META_FILE = "meta.json"
HARD_STATE_FILE = "hardstate"
FORMAT = 1
SNAPSHOT_RE = re.compile(r"(\d{20})\.snap")


def snapshot_name(index: int) -> str:
    return f"{index:020d}.snap"


class RaftStore:
    """The durable Storage of one server.  Open with `RaftStore.open`; one user (the driver) at a time."""

    def __init__(self, data_dir: Path, segment_bytes: int) -> None:
        self._data_dir = DataDir(data_dir)
        self.dir = data_dir / RAFT_DIR
        self._log = SegmentedLog(self.dir, segment_bytes)
        self._hard_file = HardStateFile(self.dir / HARD_STATE_FILE)
        self._cluster_id: str | None = None
        self._snap = Snapshot()
        self._ents: list[Entry] = []  # first_index() .. last_index()
        self._confs: list[tuple[int, ConfState]] = []  # the configuration after each CONF_CHANGE in _ents
        self._hard = HardState()
        self._hard_on_disk = HardState()

    # ---------------------------------------------------------------- open / close

    @classmethod
    def open(
        cls,
        data_dir: str | os.PathLike[str],
        cluster_id: str | None,
        *,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    ) -> RaftStore:
        """Open (creating when absent) ``<data_dir>/raft``.  ``cluster_id`` None adopts whatever the dir holds;
        a different stored id raises ClusterMismatch; damage raises StoreCorrupt naming file and offset."""
        store = cls(Path(data_dir), segment_bytes)
        try:
            store.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            store._load(cluster_id)
        except BaseException as err:
            store._log.close()
            store._hard_file.close()
            if isinstance(err, OSError):
                raise StoreError(f"cannot open raft data in {store.dir}: {err}") from err
            raise
        return store

    def _load(self, cluster_id: str | None) -> None:
        for leftover in self.dir.glob(".*.tmp"):  # an atomic write that crashed before its rename
            log.warning("raft data: removing %s, left by an interrupted write", leftover)
            leftover.unlink()
        self._load_meta(cluster_id)
        self._hard = self._hard_on_disk = self._hard_file.load()
        self._snap = self._load_snapshot()
        entries = self._log.load()
        self._adopt_log(entries)
        self._replay_confs()

    def _load_meta(self, cluster_id: str | None) -> None:
        path = self.dir / META_FILE
        try:
            doc = json.loads(path.read_bytes())
        except FileNotFoundError:
            self._write_meta(cluster_id)
            return
        except ValueError as err:
            raise StoreCorrupt(path, None, f"not JSON ({err})") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("cluster_id"),
                                                                                      (str, type(None))):
            raise StoreCorrupt(path, None, f"expected {{'format': {FORMAT}, 'cluster_id': ...}}, got {doc!r:.80}")
        stored = doc["cluster_id"]
        if stored is not None and cluster_id is not None and stored != cluster_id:
            raise ClusterMismatch(
                f"raft data in {self.dir} belongs to cluster {stored}, not to this server's cluster {cluster_id}; "
                f"point -data-dir elsewhere or remove {self.dir} to join as a new server"
            )
        self._cluster_id = stored
        if stored is None and cluster_id is not None:
            self._write_meta(cluster_id)

    def _write_meta(self, cluster_id: str | None) -> None:
        doc = {"format": FORMAT, "cluster_id": cluster_id}
        self._data_dir.atomic_write(f"{RAFT_DIR}/{META_FILE}", json.dumps(doc).encode() + b"\n")
        self._cluster_id = cluster_id

    def _load_snapshot(self) -> Snapshot:
        found = sorted((int(m.group(1)), p) for p in self.dir.iterdir() if (m := SNAPSHOT_RE.fullmatch(p.name)))
        if not found:
            return Snapshot()
        index, path = found[-1]
        try:
            snap = snapshot_from_bytes(_single_record(path, path.read_bytes()))
        except PayloadError as err:
            raise StoreCorrupt(path, records.HEADER_SIZE, str(err)) from None
        if snap.meta.index != index:
            raise StoreCorrupt(path, None, f"holds the snapshot of index {snap.meta.index}, named for {index}")
        for _, older in found[:-1]:  # a crash after installing a newer snapshot, before removing the old one
            older.unlink()
        return snap

    def _adopt_log(self, entries: list[Entry]) -> None:
        """Make the log on disk agree with the snapshot: keep entries after it when the log holds the snapshot's
        own entry (or starts right after it); otherwise the log predates a snapshot whose install was cut short
        by a crash, and is dropped, as the install would have done."""
        snap = self._snap.meta
        if not entries:
            self._ents = []
            return
        first, last = entries[0].index, entries[-1].index
        if snap.index == 0 and first != 1:
            raise StoreCorrupt(self._log.segments[0].path, None,
                               f"the log starts at index {first} but there is no snapshot")
        if first > snap.index + 1:
            raise StoreCorrupt(self._log.segments[0].path, None,
                               f"the log starts at index {first}, after a gap from snapshot index {snap.index}")
        if first == snap.index + 1 or (last >= snap.index and entries[snap.index - first].term == snap.term):
            self._ents = entries[snap.index + 1 - first :]
            return
        log.warning("raft data: dropping log %d..%d, superseded by snapshot %d (term %d) whose install was cut "
                    "short", first, last, snap.index, snap.term)
        self._log.clear()
        self._ents = []

    def close(self) -> None:
        """Sync (the commit index too) and release the files."""
        self.sync()
        if self._hard != self._hard_on_disk:
            self._write_hard()
        self._log.close()
        self._hard_file.close()

    # ---------------------------------------------------------------- cluster id

    @property
    def cluster_id(self) -> str | None:
        return self._cluster_id

    def set_cluster_id(self, cluster_id: str) -> None:
        """Record the cluster once it is known (bootstrap, or the first message from a leader)."""
        if self._cluster_id == cluster_id:
            return
        if self._cluster_id is not None:
            raise ClusterMismatch(f"raft data in {self.dir} belongs to cluster {self._cluster_id}, not {cluster_id}")
        self._write_meta(cluster_id)

    # ---------------------------------------------------------------- Storage (read side)

    def initial_state(self) -> tuple[HardState, ConfState]:
        return self._hard, self._confs[-1][1] if self._confs else self._snap.meta.conf

    @property
    def hard_state(self) -> HardState:
        return self._hard

    def first_index(self) -> int:
        return self._snap.meta.index + 1

    def last_index(self) -> int:
        return self._snap.meta.index + len(self._ents)

    def term(self, index: int) -> int:
        offset = self._snap.meta.index
        if index < offset:
            raise Compacted(f"index {index} is compacted (snapshot at {offset})")
        if index == offset:
            return self._snap.meta.term
        if index > self.last_index():
            raise Unavailable(f"index {index} is after the last index {self.last_index()}")
        return self._ents[index - offset - 1].term

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        if lo > hi:
            raise ValueError(f"entries: lo {lo} > hi {hi}")
        if lo < self.first_index():
            raise Compacted(f"index {lo} is compacted (first index {self.first_index()})")
        if hi > self.last_index() + 1:
            raise Unavailable(f"entries up to {hi - 1} asked, last index is {self.last_index()}")
        offset = self._snap.meta.index + 1
        return limit_size(self._ents[lo - offset : hi - offset], max_bytes)

    def snapshot(self) -> Snapshot:
        return self._snap

    # ---------------------------------------------------------------- write side (the driver)

    def append(self, entries: Sequence[Entry]) -> None:
        """Append entries; one at an index already held overwrites it and drops everything after.  Entries
        the snapshot covers are skipped.  Durable after `sync()`."""
        for a, b in itertools.pairwise(entries):
            if b.index != a.index + 1:
                raise ValueError(f"append: entries are not consecutive ({a.index} then {b.index})")
        entries = [e for e in entries if e.index > self._snap.meta.index]
        if not entries:
            return
        first = entries[0].index
        if first > self.last_index() + 1:
            raise ValueError(f"append: entry {first} would leave a gap after the last index {self.last_index()}")
        for e in entries:  # validate conf changes before anything is written
            if e.kind is EntryKind.CONF_CHANGE:
                try:
                    conf_change_from_bytes(e.data)
                except WireError as err:
                    raise ValueError(f"append: entry {e.index}: {err}") from None
        if first <= self.last_index():
            self._log.truncate_from(first)
            del self._ents[first - self.first_index() :]
            del self._confs[bisect.bisect_left(self._confs, first, key=lambda c: c[0]) :]
        self._log.append(entries)
        self._ents.extend(entries)
        for e in entries:
            self._note_conf(e)

    def _replay_confs(self) -> None:
        self._confs = []
        for e in self._ents:
            self._note_conf(e)

    def _note_conf(self, entry: Entry) -> None:
        if entry.kind is EntryKind.CONF_CHANGE:
            current = self._confs[-1][1] if self._confs else self._snap.meta.conf
            self._confs.append((entry.index, conf_after(current, (entry,))))

    def set_hard_state(self, hs: HardState) -> None:
        """Durable after `sync()`."""
        self._hard = hs

    def sync(self) -> None:
        """Make every append durable, and the hard state's term and vote: the log first, so a stored commit
        index never points past the stored log.  A change of the commit index alone is not written here (it
        is written with the next term or vote change, and at `close`): losing it in a crash is harmless, the
        commit index is learned again (etcd's MustSync rule), and writing it would cost every Ready a second
        fsync, on the leader and on each follower, in the write path."""
        self._log.sync()
        on_disk = self._hard_on_disk
        if (self._hard.term, self._hard.vote) != (on_disk.term, on_disk.vote):
            self._write_hard()

    def _write_hard(self) -> None:
        self._hard_file.write(self._hard)
        self._hard_on_disk = self._hard

    def apply_snapshot(self, snap: Snapshot) -> None:
        """Install a snapshot received from the leader: the whole log is replaced by it.  Durable on return."""
        if snap.meta.index <= self._snap.meta.index:
            raise SnapshotOutOfDate(f"snapshot at {snap.meta.index}, already hold one at {self._snap.meta.index}")
        self.write_snapshot_file(snap, self._snap.meta.index)
        self._snap = snap
        self._log.clear()
        self._ents = []
        self._replay_confs()

    def create_snapshot(self, index: int, conf: ConfState, data: bytes) -> Snapshot:
        """Save the state machine as of ``index`` (applied, so in the log); entries up to it become Compacted.
        Durable on return.  Their files go with `compact`.  (The driver does the same in three steps, so that
        the file is written beside its appends: `snapshot_meta`, `write_snapshot_file`, `adopt_snapshot`.)"""
        snap = Snapshot(self.snapshot_meta(index, conf), data)
        self._log.sync()  # the entries it covers are durable before the snapshot that assumes them
        self.write_snapshot_file(snap, self._snap.meta.index)
        self.adopt_snapshot(snap)
        return snap

    def snapshot_meta(self, index: int, conf: ConfState) -> SnapshotMeta:
        """The meta of a snapshot of the state as of ``index`` (applied, so in the log), to be written."""
        if index <= self._snap.meta.index:
            raise SnapshotOutOfDate(f"snapshot at {index}, already hold one at {self._snap.meta.index}")
        return SnapshotMeta(index, self.term(index), conf)

    def write_snapshot_file(self, snap: Snapshot, older: int) -> None:
        """Write ``snap``'s file atomically, then remove the file of the snapshot at ``older`` (the one in force
        when it was taken).  Changes nothing in memory and touches no other file, so it may run in a thread of
        its own while the log is appended and synced.  The entries it covers must already be durable (the
        driver applies only what it has synced).  Until `adopt_snapshot`, the store serves the older snapshot
        from memory; a crash meanwhile reopens with the new file and the log after it (`_load`)."""
        self._data_dir.atomic_write(f"{RAFT_DIR}/{snapshot_name(snap.meta.index)}",
                                    records.encode_parts(snapshot_to_parts(snap)))
        if older and older != snap.meta.index:
            (self.dir / snapshot_name(older)).unlink(missing_ok=True)
            fsync_dir(self.dir)

    def adopt_snapshot(self, snap: Snapshot) -> bool:
        """Make ``snap``, whose file `write_snapshot_file` wrote, the store's: the entries it covers become
        Compacted (cheap: memory only; with no write in flight, as for every change the core reads).  False, and
        its file removed, when a newer snapshot was installed meanwhile (received from the leader)."""
        current = self._snap.meta.index
        if snap.meta.index <= current:
            if snap.meta.index < current:
                (self.dir / snapshot_name(snap.meta.index)).unlink(missing_ok=True)
            return False
        del self._ents[: snap.meta.index - current]
        self._snap = snap
        self._replay_confs()  # from the snapshot's configuration, exactly as a reopen will
        return True

    def compact(self, index: int) -> int:
        """Delete the segment files whose entries all precede ``index`` (which the snapshot must cover);
        returns how many were deleted."""
        if index > self._snap.meta.index + 1:
            raise ValueError(f"compact: index {index} is not covered by the snapshot at {self._snap.meta.index}")
        return self._log.drop_before(index)


def _single_record(path: Path, buf: bytes) -> bytes:
    """The payload of a file written atomically as one record (a crash can't tear it: any damage is real)."""
    try:
        rec = records.read_at(buf, 0)
    except records.RecordError as err:
        raise StoreCorrupt(path, err.offset, err.reason) from None
    if rec.end != len(buf):
        raise StoreCorrupt(path, rec.end, f"{len(buf) - rec.end} unexpected bytes after the record")
    return rec.payload
