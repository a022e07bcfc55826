"""The hard state file: two fixed slots written in turn, so a write needs one fsync and can never be lost whole.

``hardstate`` is 8 KiB: slot 0 at offset 0, slot 1 at offset 4096, each one record (`agent.server.records`)
of msgpack ``[seq, term, vote, commit]``, zero-padded.  A write goes to the slot *not* holding the newest state,
then fdatasync; opening reads both and takes the valid one with the higher ``seq``.  A torn write can only damage
the slot being written (the slots are in different 4 KiB blocks), and the other still holds the state before it.
A rename-based atomic write would cost a second fsync (the directory) on every Raft Ready that moves the commit
index.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgpack

from agent.datadir import fsync_dir
from protocol.raft.types import HardState

from . import records
from .errors import StoreCorrupt
from .payloads import PayloadError, hard_state_from_bytes, hard_state_to_bytes

SLOT_SIZE = 4096
FILE_SIZE = 2 * SLOT_SIZE


def encode_slot(seq: int, hs: HardState) -> bytes:
    rec = records.encode(msgpack.packb([seq, hard_state_to_bytes(hs)], use_bin_type=True))
    if len(rec) > SLOT_SIZE:
        raise ValueError(f"hard state of {len(rec)} bytes does not fit a {SLOT_SIZE}-byte slot (vote {hs.vote!r:.40})")
    return rec + b"\0" * (SLOT_SIZE - len(rec))


def decode_slot(slot: bytes) -> tuple[int, HardState]:
    """(seq, hard state) of one slot; RecordError or PayloadError when it holds none."""
    rec = records.read_at(slot, 0)
    try:
        seq, payload = msgpack.unpackb(rec.payload, raw=False)
    except Exception as exc:
        raise PayloadError(f"hard state slot: expected [seq, state] ({exc})") from None
    if type(seq) is not int or seq < 0 or not isinstance(payload, bytes):
        raise PayloadError(f"hard state slot: expected [seq, state], got {seq!r:.20}")
    return seq, hard_state_from_bytes(payload)


def newest(buf: bytes, path: Path) -> tuple[int, int, HardState]:
    """(slot, seq, hard state) of the newest valid slot; StoreCorrupt when neither is valid."""
    if len(buf) != FILE_SIZE:
        raise StoreCorrupt(path, None, f"{len(buf)} bytes where {FILE_SIZE} were expected")
    found, errors = [], []
    for slot in (0, 1):
        try:
            seq, hs = decode_slot(buf[slot * SLOT_SIZE : (slot + 1) * SLOT_SIZE])
        except (records.RecordError, PayloadError) as err:
            errors.append(f"slot {slot} at offset {slot * SLOT_SIZE}: {err}")
            continue
        found.append((seq, slot, hs))
    if not found:
        if not buf[SLOT_SIZE:].strip(b"\0"):  # slot 1 never written: only the first write was tried, and torn
            return 1, 0, HardState()
        raise StoreCorrupt(path, 0, "no valid hard state: " + "; ".join(errors))
    seq, slot, hs = max(found)
    return slot, seq, hs


class HardStateFile:
    """Reads and writes ``hardstate``; synchronous, like the rest of the store."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._slot = 1  # the slot holding the newest state: the next write goes to the other
        self._seq = 0

    def load(self) -> HardState:
        """The stored hard state; the empty one when there is no file yet."""
        try:
            buf = self.path.read_bytes()
        except FileNotFoundError:
            return HardState()
        self._slot, self._seq, hs = newest(buf, self.path)
        return hs

    def write(self, hs: HardState) -> None:
        """Durable on return."""
        if self._fd is None:
            self._open()
        assert self._fd is not None
        slot = 1 - self._slot
        data = encode_slot(self._seq + 1, hs)
        written = os.pwrite(self._fd, data, slot * SLOT_SIZE)
        if written != len(data):
            raise OSError(f"short write to {self.path}: {written} of {len(data)} bytes")
        os.fdatasync(self._fd)
        self._slot, self._seq = slot, self._seq + 1

    def _open(self) -> None:
        if self.path.exists():
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CLOEXEC)
            return
        # first write: create the file whole (both slots invalid zeros), durable with its directory entry
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        os.ftruncate(self._fd, FILE_SIZE)
        os.fsync(self._fd)
        fsync_dir(self.path.parent)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
