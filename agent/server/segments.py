"""The Raft log on disk: segment files of CRC-framed entry records, named by their first index.

``<raft dir>/<first index, 20 digits>.log`` holds the entries first, first + 1, ... one record each
(`agent.server.records`).  Appends go to the last segment; once it reaches ``segment_bytes`` it is fsynced and
closed and the next entry starts a new file, so only the last segment can ever hold a torn write.  Dropping a
suffix (a follower's conflicting entries) unlinks later files newest first, truncates the one that holds the cut
and fsyncs both the file and the directory at once, so no crash can bring back an entry after a newer one.
The file format's rules are pure (`records.scan`); this module only reads, writes and fsyncs.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

import attrs

from agent.datadir import fsync_dir
from protocol.raft.types import Entry

from . import records
from .errors import StoreCorrupt
from .payloads import PayloadError, entry_from_bytes, entry_to_bytes

log = logging.getLogger("triumvir.raft.log")

SEGMENT_RE = re.compile(r"(\d{20})\.log")
DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024


def segment_name(first_index: int) -> str:
    return f"{first_index:020d}.log"


@attrs.define
class Segment:
    first: int
    path: Path
    offsets: list[int]  # offsets[i]: where entry first + i starts
    size: int

    @property
    def last(self) -> int:
        return self.first + len(self.offsets) - 1


class SegmentedLog:
    """The physical log: entries ``first .. last`` in consecutive segment files.  Synchronous on purpose; the
    Raft driver calls it from a worker thread."""

    def __init__(self, directory: Path, segment_bytes: int = DEFAULT_SEGMENT_BYTES) -> None:
        self.dir = directory
        self.segment_bytes = segment_bytes
        self.segments: list[Segment] = []
        self._fd: int | None = None  # open for writing: the last segment
        self._dirty_fd = False

    # ---------------------------------------------------------------- open

    def load(self) -> list[Entry]:
        """Read every segment, cut a torn tail (with a warning), and return the entries in order."""
        names = sorted(
            (int(m.group(1)), p) for p in self.dir.iterdir() if (m := SEGMENT_RE.fullmatch(p.name)) is not None
        )
        entries: list[Entry] = []
        for n, (first, path) in enumerate(names):
            is_tail = n == len(names) - 1
            if entries and first != entries[-1].index + 1:
                raise StoreCorrupt(path, None, f"segment starts at index {first}, expected {entries[-1].index + 1}")
            if not entries and n > 0:
                raise StoreCorrupt(path, None, f"segment {names[n - 1][1].name} before it holds no entries")
            entries.extend(self._load_segment(first, path, is_tail))
        if self.segments:
            self._open_tail()
            assert self._fd is not None
            # A process that crashed may have left written but unsynced bytes in the page cache: we read them as
            # the log, and may acknowledge them, so make them durable first (older segments were fsynced when
            # the tail moved on).
            os.fsync(self._fd)
        return entries

    def _load_segment(self, first: int, path: Path, is_tail: bool) -> list[Entry]:
        buf = path.read_bytes()
        try:
            scanned = records.scan(buf, tail=is_tail)
        except records.RecordError as err:
            raise StoreCorrupt(path, err.offset, err.reason) from None
        entries = []
        for rec in scanned.records:
            try:
                entry = entry_from_bytes(rec.payload)
            except PayloadError as err:
                raise StoreCorrupt(path, rec.offset, str(err)) from None
            expected = first + len(entries)
            if entry.index != expected:
                raise StoreCorrupt(path, rec.offset, f"entry index {entry.index} where {expected} was expected")
            entries.append(entry)
        if scanned.torn is not None:
            log.warning(
                "raft log %s: cutting a torn record at offset %d (%s); %d bytes dropped, "
                "everything before it is intact",
                path, scanned.valid_end, scanned.torn.reason, len(buf) - scanned.valid_end,
            )
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.ftruncate(fd, scanned.valid_end)
                os.fsync(fd)
            finally:
                os.close(fd)
        self.segments.append(Segment(first, path, [r.offset for r in scanned.records], scanned.valid_end))
        return entries

    # ---------------------------------------------------------------- facts

    @property
    def last(self) -> int | None:
        return self.segments[-1].last if self.segments and self.segments[-1].offsets else None

    # ---------------------------------------------------------------- writes

    def append(self, entries: Sequence[Entry]) -> None:
        """Write entries that continue the log (``entries[0].index == last + 1``, or any index when empty)."""
        if not entries:
            return
        last = self.last
        if last is not None and entries[0].index != last + 1:
            raise ValueError(f"segmented log: append at {entries[0].index} does not continue {last}")
        pending: list[bytes] = []  # records for the tail, written together; they start at tail.size
        pending_size = 0
        for entry in entries:
            if self._fd is None or (self.segments[-1].size >= self.segment_bytes and self.segments[-1].offsets):
                self._flush(pending)
                pending, pending_size = [], 0
                self._roll(entry.index)
            tail = self.segments[-1]
            if tail.offsets and tail.first + len(tail.offsets) != entry.index:
                raise ValueError(f"segmented log: entry {entry.index} does not continue {tail.last}")
            if not tail.offsets and tail.first != entry.index:
                self._replace_empty_tail(entry.index)
                tail = self.segments[-1]
            rec = records.encode(entry_to_bytes(entry))
            tail.offsets.append(tail.size + pending_size)
            pending.append(rec)
            pending_size += len(rec)
            if tail.size + pending_size >= self.segment_bytes:
                self._flush(pending)
                pending, pending_size = [], 0
        self._flush(pending)

    def _flush(self, pending: list[bytes]) -> None:
        if not pending:
            return
        assert self._fd is not None
        tail = self.segments[-1]
        data = b"".join(pending)
        _pwrite_all(self._fd, data, tail.size)
        tail.size += len(data)
        self._dirty_fd = True

    def _roll(self, first: int) -> None:
        """Close the full tail (fsynced: only the newest file may ever be torn) and start a new segment, its
        directory entry fsynced at once."""
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
            self._dirty_fd = False
        path = self.dir / segment_name(first)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        self.segments.append(Segment(first, path, [], 0))
        fsync_dir(self.dir)  # rare (once per segment), and then no crash can lose a file while a later one stays

    def _replace_empty_tail(self, first: int) -> None:
        """An empty tail named for another index (left by a crash right after a roll): start it afresh."""
        self._close_fd()
        seg = self.segments.pop()
        seg.path.unlink()
        self._roll(first)

    def truncate_from(self, index: int) -> None:
        """Drop entries ``index`` and after, durably, before anything newer is written."""
        unlinked = False
        while self.segments and self.segments[-1].first >= index:
            self._close_fd()
            self.segments.pop().path.unlink()
            unlinked = True
        if unlinked:
            fsync_dir(self.dir)
        if not self.segments:
            return
        tail = self.segments[-1]
        keep = index - tail.first
        if keep < len(tail.offsets):
            cut = tail.offsets[keep]
            self._open_tail()
            assert self._fd is not None
            os.ftruncate(self._fd, cut)
            os.fsync(self._fd)
            del tail.offsets[keep:]
            tail.size = cut
        self._open_tail()

    def drop_before(self, index: int) -> int:
        """Unlink segments whose entries all precede ``index``; returns how many."""
        dropped = 0
        while self.segments and self.segments[0].offsets and self.segments[0].last < index:
            seg = self.segments.pop(0)
            if not self.segments:
                self._close_fd()
            seg.path.unlink()
            dropped += 1
        if dropped:
            fsync_dir(self.dir)
        return dropped

    def clear(self) -> None:
        self.truncate_from(0)

    def sync(self) -> None:
        """fsync what was written to the tail since the last sync (older segments were fsynced when the tail
        moved on, and every directory change is fsynced where it is made)."""
        if self._fd is not None and self._dirty_fd:
            os.fsync(self._fd)
            self._dirty_fd = False

    def close(self) -> None:
        self.sync()
        self._close_fd()

    def _open_tail(self) -> None:
        if self._fd is None and self.segments:
            self._fd = os.open(self.segments[-1].path, os.O_WRONLY | os.O_CLOEXEC)

    def _close_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self._dirty_fd = False


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n
