"""memberlist's message framing shared by UDP packets and TCP streams: compress, compound, CRC and label.

Each layer is a message of its own type wrapping others (compressMsg 9, compoundMsg 7, hasCrcMsg 12, hasLabelMsg
244); protocol/packets.py stacks them into a datagram and protocol/streams.py into a stream.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from itertools import accumulate

from protocol.codec import MessageType
from protocol.go_msgpack import DecodeError, Incomplete, decode_stream_value, go_bytes, go_str, packb
from protocol.lzw import lzw_compress, lzw_decompress

LZW_ALGO = 0

# ---------------------------------------------------------------------------------------------------------
# compress message


def compress(data: bytes) -> bytes:
    """A full compressMsg: type 9 + msgpack {Algo: 0, Buf: raw LZW}, as memberlist's compressPayload."""
    return bytes([MessageType.COMPRESS]) + packb({"Algo": LZW_ALGO, "Buf": lzw_compress(data)})


def compress_struct(obj: object) -> bytes:
    """Validate a decoded compress{} struct and inflate its Buf."""
    if not isinstance(obj, dict):
        raise DecodeError(f"compress: expected a msgpack map, got {type(obj).__name__}")
    algo = obj.get(b"Algo", 0)
    buf = obj.get(b"Buf", b"")
    if algo is None:
        algo = 0
    if buf is None:
        buf = b""
    if isinstance(algo, bool) or not isinstance(algo, int):
        raise DecodeError(f"compress.Algo: expected integer, got {type(algo).__name__}")
    if algo != LZW_ALGO:
        raise DecodeError(f"compress: cannot decompress unknown algorithm {algo}")
    if not isinstance(buf, bytes):
        raise DecodeError(f"compress.Buf: expected raw bytes, got {type(buf).__name__}")
    return lzw_decompress(buf)


def decompress_payload(buf: bytes) -> bytes:
    """Inflate a compressMsg body (the msgpack {Algo, Buf}); a leading type byte 9 is accepted too."""
    if buf[:1] == bytes([MessageType.COMPRESS]):
        buf = buf[1:]
    try:
        obj, _ = decode_stream_value(buf, 0)
    except Incomplete as exc:
        raise DecodeError(f"compress: truncated: {exc}") from None
    return compress_struct(obj)


# ---------------------------------------------------------------------------------------------------------
# compound, CRC, label


def make_compound(msgs: Sequence[bytes]) -> bytes:
    """type 7, uint8 count, one big-endian uint16 length per message, then the messages."""
    if len(msgs) > 255:
        raise ValueError(f"a compound message holds at most 255 messages, got {len(msgs)}")
    lengths = list(map(len, msgs))
    if lengths and max(lengths) > 0xFFFF:
        too_long = next(n for n in lengths if n > 0xFFFF)
        raise ValueError(f"message of {too_long} bytes does not fit a compound (max 65535)")
    head = struct.pack(f">BB{len(msgs)}H", MessageType.COMPOUND, len(msgs), *lengths)
    return head + b"".join(msgs)  # join takes any bytes-like part as it is


def split_compound(data: bytes) -> tuple[list[bytes], int]:
    """Split a compound message (type byte 7 included); returns (parts, number of truncated parts).

    As memberlist's decodeCompoundMessage, parts cut off by the end of the packet are counted, not an error.
    """
    if not data or data[0] != MessageType.COMPOUND:
        raise DecodeError("not a compound message")
    if len(data) < 2:
        raise DecodeError("compound: missing length byte")
    count = data[1]
    end_lengths = 2 + 2 * count
    if len(data) < end_lengths:
        raise DecodeError(f"compound: truncated length table ({count} messages)")
    lengths = struct.unpack_from(f">{count}H", data, 2)
    data = bytes(data)  # (no copy of bytes) so that each part is a slice of bytes, itself bytes
    if len(data) >= end_lengths + sum(lengths):  # nothing truncated (nearly always): one comprehension
        offsets = accumulate(lengths, initial=end_lengths)
        return [data[off : off + length] for off, length in zip(offsets, lengths, strict=False)], 0
    parts: list[bytes] = []
    off = end_lengths
    for idx, length in enumerate(lengths):
        if len(data) < off + length:
            return parts, count - idx
        parts.append(data[off : off + length])
        off += length
    return parts, 0


def add_crc(data: bytes) -> bytes:
    """type 12 + big-endian CRC-32 (IEEE) of ``data`` + ``data``."""
    return struct.pack(">BI", MessageType.HAS_CRC, zlib.crc32(data)) + bytes(data)


def check_crc(data: bytes) -> bytes:
    """Verify and strip a CRC header (type byte 12 included); raises DecodeError on mismatch."""
    if not data or data[0] != MessageType.HAS_CRC:
        raise DecodeError("not a CRC-wrapped message")
    if len(data) < 5:
        raise DecodeError("CRC header truncated")
    (expected,) = struct.unpack_from(">I", data, 1)
    rest = bytes(data[5:])
    got = zlib.crc32(rest)
    if got != expected:
        raise DecodeError(f"invalid checksum: computed {got:08x}, packet says {expected:08x}")
    return rest


def label_overhead(label: str) -> int:
    """The bytes `add_label` puts in front of a packet (memberlist's labelOverhead)."""
    return 2 + len(go_bytes(label)) if label else 0


def add_label(data: bytes, label: str) -> bytes:
    """type 244 + uint8 length + label; no header at all for the empty label (as memberlist)."""
    if not label:
        return bytes(data)
    raw = go_bytes(label)
    if len(raw) > 255:
        raise ValueError(f"label is {len(raw)} bytes, at most 255 allowed")
    return bytes([MessageType.HAS_LABEL, len(raw)]) + raw + bytes(data)


def read_label_header(data: bytes, *, whole: bool) -> tuple[str, int]:
    """The label header at the start of ``data`` (type 244, a length byte of 1 to 255, the label): (label, header
    length), or ("", 0) without one. ``whole``: ``data`` is a datagram, and one that ends inside the header is
    malformed (DecodeError); else it is a stream still arriving, which only needs more bytes (Incomplete)."""
    if not data or data[0] != MessageType.HAS_LABEL:
        return "", 0
    size = data[1] if len(data) >= 2 else None
    if size == 0:
        raise DecodeError("label header cannot be empty when present")
    if size is None or len(data) < 2 + size:
        if whole:
            raise DecodeError("cannot decode label; packet has been truncated")
        if size is None:
            raise Incomplete("need the label length byte")
        raise Incomplete(f"need {2 + size - len(data)} more bytes of label")
    return go_str(data[2 : 2 + size]), 2 + size


def strip_label(data: bytes) -> tuple[str, bytes]:
    """(label, rest); ("", data) if there is no label header."""
    label, size = read_label_header(data, whole=True)
    return label, bytes(data[size:])


def check_label(got: str, expected: str, what: str) -> None:
    if got != expected:
        raise DecodeError(f"discarding {what} with unacceptable label {got!r} (expected {expected!r})")
