"""The record framing of every file in ``<data_dir>/raft/``, sans-IO: pure functions over bytes.

A record is ``magic(4) | length(4, big-endian) | crc32(length bytes + payload)(4) | payload``.  The magic lets a
scan tell "damaged here, valid records after" (corruption: refuse to start) from "damaged here, nothing valid
after" (a write torn by a crash: cut it) with a fast ``bytes.find`` instead of trying every byte offset.  The CRC
is zlib's CRC-32 (IEEE), which the standard library computes in C; it also covers the length, so a flipped length
bit is caught like a flipped payload bit.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

import attrs

MAGIC = b"\xd7TRL"
_HEADER = struct.Struct(">4sII")
HEADER_SIZE = _HEADER.size
MAX_PAYLOAD = (1 << 31) - 1


class RecordError(Exception):
    """A damaged record at ``offset`` of a buffer; ``reason`` says what is wrong with it."""

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(f"offset {offset}: {reason}")
        self.offset = offset
        self.reason = reason


@attrs.frozen
class Record:
    offset: int  # where the record starts in the buffer
    payload: bytes

    @property
    def end(self) -> int:
        return self.offset + HEADER_SIZE + len(self.payload)


@attrs.frozen
class Scan:
    records: tuple[Record, ...]
    valid_end: int  # bytes [0, valid_end) hold whole, checked records
    torn: RecordError | None = None  # set when bytes after valid_end were cut as a torn tail


def _crc(length: int, payload: bytes | memoryview) -> int:
    return zlib.crc32(payload, zlib.crc32(length.to_bytes(4, "big")))


def encode(payload: bytes) -> bytes:
    return b"".join(encode_parts((payload,)))


def encode_parts(parts: Sequence[bytes]) -> list[bytes]:
    """`encode` of the parts joined, as pieces to write one after the other (no copy of a large payload)."""
    length = sum(len(part) for part in parts)
    if length > MAX_PAYLOAD:
        raise ValueError(f"record payload of {length} bytes exceeds {MAX_PAYLOAD}")
    crc = _crc(length, b"")
    for part in parts:
        crc = zlib.crc32(part, crc)
    return [_HEADER.pack(MAGIC, length, crc), *parts]


def read_at(buf: bytes, offset: int) -> Record:
    """The record starting at ``offset``; RecordError saying why there is none."""
    view = memoryview(buf)
    if len(buf) - offset < HEADER_SIZE:
        raise RecordError(offset, f"short header: {len(buf) - offset} of {HEADER_SIZE} bytes")
    magic, length, crc = _HEADER.unpack_from(buf, offset)
    if magic != MAGIC:
        raise RecordError(offset, f"bad record magic {magic.hex()}")
    start = offset + HEADER_SIZE
    if len(buf) - start < length:
        raise RecordError(offset, f"short record: {len(buf) - start} of {length} payload bytes")
    payload = view[start : start + length]
    if _crc(length, payload) != crc:
        raise RecordError(offset, "checksum mismatch")
    return Record(offset, bytes(payload))


def next_valid(buf: bytes, start: int) -> int | None:
    """The offset of the first valid record at or after ``start``, if any."""
    pos = buf.find(MAGIC, start)
    while pos != -1:
        try:
            read_at(buf, pos)
            return pos
        except RecordError:
            pos = buf.find(MAGIC, pos + 1)
    return None


def scan(buf: bytes, *, tail: bool) -> Scan:
    """All records of ``buf``.  A damaged record is a torn tail (cut, reported in ``Scan.torn``) only when
    ``tail`` (the file written last) and no valid record follows it; otherwise it raises RecordError."""
    records: list[Record] = []
    offset = 0
    while offset < len(buf):
        try:
            record = read_at(buf, offset)
        except RecordError as err:
            if not tail:
                raise
            after = next_valid(buf, offset + 1)
            if after is not None:
                raise RecordError(offset, f"{err.reason} (valid records follow at offset {after})") from None
            return Scan(tuple(records), offset, err)
        records.append(record)
        offset = record.end
    return Scan(tuple(records), offset)
