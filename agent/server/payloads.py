"""What the records of ``<data_dir>/raft/`` carry: entries, the hard state and snapshots as msgpack, sans-IO.

Entries and snapshots use the wire forms of `protocol.raft.types` (one encoding of an entry on disk and on the
network); a payload that does not decode raises PayloadError with the reason, which the store turns into a
corruption error naming the file and offset.
"""

from __future__ import annotations

from typing import Any

import attrs
import msgpack

from protocol.raft.types import (
    Entry,
    HardState,
    Snapshot,
    WireError,
    entry_from_wire,
    entry_to_wire,
    snapshot_from_wire,
    snapshot_to_wire,
)


class PayloadError(ValueError):
    """A record whose checksum is right but whose contents are not what the file should hold."""


def _unpack(data: bytes, what: str) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:
        raise PayloadError(f"{what}: not msgpack ({exc})") from None


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def entry_to_bytes(entry: Entry) -> bytes:
    return _pack(entry_to_wire(entry))


def entry_from_bytes(data: bytes) -> Entry:
    try:
        return entry_from_wire(_unpack(data, "entry"))
    except WireError as err:
        raise PayloadError(str(err)) from None


def hard_state_to_bytes(hs: HardState) -> bytes:
    return _pack([hs.term, hs.vote, hs.commit])


def hard_state_from_bytes(data: bytes) -> HardState:
    raw = _unpack(data, "hard state")
    if (
        not isinstance(raw, list)
        or len(raw) != 3
        or type(raw[0]) is not int
        or not isinstance(raw[1], str)
        or type(raw[2]) is not int
        or raw[0] < 0
        or raw[2] < 0
    ):
        raise PayloadError(f"hard state: expected [term, vote, commit], got {raw!r:.60}")
    return HardState(term=raw[0], vote=raw[1], commit=raw[2])


def snapshot_to_bytes(snap: Snapshot) -> bytes:
    return _pack(snapshot_to_wire(snap))


def snapshot_to_parts(snap: Snapshot) -> tuple[bytes, bytes]:
    """`snapshot_to_bytes` as ``(head, data)`` with ``head + data`` the same bytes, without copying the data:
    a snapshot of a large store is written in a worker thread, and packing its data into a new buffer is one
    long GIL-holding copy (~0.1 s per 100 MB) that stalls the Raft driver's loop."""
    head = _pack(snapshot_to_wire(attrs.evolve(snap, data=b"")))
    assert head.endswith(b"\xc4\x00")  # the empty data's bin 8 header: replaced by the real one
    n = len(snap.data)
    size = b"\xc4" + n.to_bytes(1, "big") if n < 1 << 8 else (
        b"\xc5" + n.to_bytes(2, "big") if n < 1 << 16 else b"\xc6" + n.to_bytes(4, "big"))
    return head[:-2] + size, snap.data


def snapshot_from_bytes(data: bytes) -> Snapshot:
    try:
        return snapshot_from_wire(_unpack(data, "snapshot"))
    except WireError as err:
        raise PayloadError(str(err)) from None
