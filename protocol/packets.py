"""memberlist's framing: compound, CRC, label, encryption, LZW compression for UDP packets and TCP streams.

Layering, outermost first, as memberlist writes a UDP packet: ``label header`` (transport, only if a label is
configured) > ``encryption`` (only with a keyring, protocol/keyring.py) > ``CRC`` (only to peers speaking
protocol >= 5) > ``compress`` (only if it made the packet smaller) > ``compound`` (only for more than one
message) > messages. A TCP stream is ``label header`` > ``encryption`` (an encryptMsg frame, type 10) >
``compress`` (always, when compression is on) > one message.

This module frames UDP packets; protocol/framing.py holds the layers packets and streams share,
protocol/streams.py the TCP streams and protocol/lzw.py the compression. Every public name of the four is
importable from here too, as ``packets.X`` has always been.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from protocol.codec import DecodeError, MessageType
from protocol.framing import (
    LZW_ALGO,
    add_crc,
    add_label,
    check_crc,
    check_label,
    compress,
    decompress_payload,
    make_compound,
    split_compound,
    strip_label,
)
from protocol.framing import compress as _compress_msg
from protocol.keyring import DecryptError, Keyring
from protocol.lzw import MAX_DECOMPRESSED, LzwReader, lzw_compress, lzw_decompress
from protocol.streams import (
    MAX_STREAM_BYTES,
    StreamReader,
    StreamTooLarge,
    open_stream_frame,
    read_stream,
    seal_stream_frame,
    strip_stream_label,
    unwrap_stream,
    wrap_stream,
)

__all__ = [
    "LZW_ALGO",
    "MAX_DECOMPRESSED",
    "MAX_STREAM_BYTES",
    "LzwReader",
    "StreamReader",
    "StreamTooLarge",
    "Unwrapped",
    "add_crc",
    "add_label",
    "check_crc",
    "compress",
    "decompress_payload",
    "lzw_compress",
    "lzw_decompress",
    "make_compound",
    "open_stream_frame",
    "read_stream",
    "seal_stream_frame",
    "split_compound",
    "strip_label",
    "strip_stream_label",
    "unwrap_packet",
    "unwrap_packet_info",
    "unwrap_stream",
    "wrap_packet",
    "wrap_stream",
]

#: nesting of compound/compress inside each other we are willing to follow
_MAX_DEPTH = 8

# ---------------------------------------------------------------------------------------------------------
# UDP packets


@attrs.frozen
class Unwrapped:
    """What unwrap_packet_info found: the messages, plus how they were framed (for diagnostics)."""

    messages: tuple[bytes, ...]
    truncated: int = 0  # compound parts cut off by the end of the packet
    label: str = ""
    crc: bool = False
    compressed: bool = False
    compound: bool = False
    encrypted: bool = False


def unwrap_packet_info(
    data: bytes, expected_label: str = "", *, keyring: Keyring | None = None, verify_incoming: bool = True
) -> Unwrapped:
    """Like unwrap_packet, also telling which framing was present and how many parts were truncated.

    With a keyring holding keys the packet is decrypted first (label as additional data); a packet no key
    opens raises DecryptError, unless ``verify_incoming`` is off: then it is read as plaintext (memberlist's
    ingestPacket, the middle steps of a move to encryption).
    """
    messages, found = _unwrap(data, expected_label, keyring, verify_incoming)
    return Unwrapped(
        tuple(messages),
        truncated=found["truncated"],
        label=found["label"],
        crc=found["crc"],
        compressed=found["compressed"],
        compound=found["compound"],
        encrypted=found["encrypted"],
    )


def _unwrap(
    data: bytes, expected_label: str, keyring: Keyring | None, verify_incoming: bool
) -> tuple[list[bytes], dict[str, Any]]:
    """The messages of a datagram and how it was framed (unwrap_packet_info's fields, by name)."""
    label, data = strip_label(data)
    check_label(label, expected_label, "packet")
    if not data:
        raise DecodeError("empty packet")
    encrypted = False
    if keyring is not None and keyring.enabled:
        try:
            data = keyring.decrypt(data, label.encode("utf-8", "surrogateescape"))
            encrypted = True
        except DecryptError:
            if verify_incoming:
                raise
        if not data:
            raise DecodeError("empty packet after decryption")
    elif data[0] == MessageType.ENCRYPT:
        raise DecodeError("encrypted packet but no keyring")
    crc = False
    if len(data) >= 5 and data[0] == MessageType.HAS_CRC:
        data = check_crc(data)
        crc = True
        if not data:
            raise DecodeError("empty packet after CRC header")
    found: dict[str, Any] = {"truncated": 0, "compressed": False, "compound": False}
    messages: list[bytes] = []
    _collect(data, messages, found, 0)
    found.update(label=label, crc=crc, encrypted=encrypted)
    return messages, found


_NESTING = frozenset((MessageType.COMPOUND, MessageType.COMPRESS))


def _collect(data: bytes, out: list[bytes], found: dict[str, Any], depth: int) -> None:
    """memberlist's handleCommand recursion over compound and compress messages."""
    if depth > _MAX_DEPTH:
        raise DecodeError(f"compound/compress nested deeper than {_MAX_DEPTH}")
    if not data:
        raise DecodeError("empty message inside a compound")
    kind = data[0]
    if kind == MessageType.COMPOUND:
        found["compound"] = True
        parts, truncated = split_compound(data)
        found["truncated"] = int(found["truncated"]) + truncated
        for part in parts:
            if part and part[0] not in _NESTING:  # a plain message (nearly all): no recursion for it
                out.append(part)
            else:
                _collect(part, out, found, depth + 1)
    elif kind == MessageType.COMPRESS:
        found["compressed"] = True
        _collect(decompress_payload(data[1:]), out, found, depth + 1)
    else:
        out.append(bytes(data))


def unwrap_packet(
    data: bytes, expected_label: str = "", *, keyring: Keyring | None = None, verify_incoming: bool = True
) -> list[bytes]:
    """One UDP datagram -> its messages (each starting with its type byte), framing removed.

    Label (must equal ``expected_label``), encryption, CRC, compression and compound are undone recursively as
    memberlist's ingestPacket/handleCommand do.  Truncated compound parts are dropped (see unwrap_packet_info).
    """
    return _unwrap(data, expected_label, keyring, verify_incoming)[0]  # (no Unwrapped built: once per datagram)


def wrap_packet(
    msgs: Sequence[bytes],
    *,
    crc: bool,
    label: str = "",
    compress: bool = False,
    limit: int = 1400,
    keyring: Keyring | None = None,
    compress_min: int = 0,
) -> bytes:
    """Frame messages into one datagram as memberlist sends them; ValueError if the result exceeds ``limit``.

    One message goes bare, several in a compound; compression is kept only if it shrinks the payload, and not
    tried on payloads shorter than ``compress_min`` (Config.compress_min_bytes says why); ``crc``
    should be true when the recipient speaks protocol >= 5; a ``keyring`` encrypts under its primary key
    (pass None when gossip_verify_outgoing is off).
    """
    if not msgs:
        raise ValueError("no messages to wrap")
    payload = bytes(msgs[0]) if len(msgs) == 1 else make_compound(msgs)
    if compress and len(payload) >= compress_min:
        packed = _compress_msg(payload)
        if len(packed) < len(payload):
            payload = packed
    if crc:
        payload = add_crc(payload)
    if keyring is not None and keyring.enabled:
        payload = keyring.encrypt(payload, label.encode())
    payload = add_label(payload, label)
    if len(payload) > limit:
        raise ValueError(f"packet of {len(payload)} bytes exceeds the limit of {limit}")
    return payload
