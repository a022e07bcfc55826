"""memberlist's TCP stream framing: label header > encryption (an encryptMsg frame) > compress > one message.

A stream carries one message (push/pull, or a reliable user message). StreamReader reads it as it arrives, the
h11 way: each byte is parsed once, and a compressed or encrypted stream is inflated or opened as its bytes come.
wrap_stream writes one as memberlist's rawSendMsgStream does.
"""

from __future__ import annotations

import struct
from typing import Protocol

from protocol.codec import (
    MAX_PUSH_STATE_BYTES,
    DecodeError,
    Incomplete,
    Message,
    MessageType,
    StreamDecoder,
    decode_stream_value,
)
from protocol.framing import LZW_ALGO, add_label, check_label, compress_struct, read_label_header
from protocol.framing import compress as _compress_msg
from protocol.keyring import DecryptError, Keyring, encrypted_length
from protocol.lzw import LzwReader

#: the default bound on the bytes of one TCP stream: maxPushStateBytes (20 MiB) of user state plus ample room
#: for the node states of a large cluster (protocol.Config.stream_max_bytes)
MAX_STREAM_BYTES = 32 * 1024 * 1024


def strip_stream_label(data: bytes, expected_label: str = "") -> tuple[str, int]:
    """(label, header length) at the start of a stream; Incomplete until the whole header is there."""
    if not data:
        raise Incomplete("need the first byte of the stream")
    label, size = read_label_header(data, whole=False)
    check_label(label, expected_label, "stream")
    return label, size


class _Layer(Protocol):
    """What StreamReader asks of the layer under the label: a plain message, a compressed or an encrypted one."""

    waiting_for: str
    consumed: int

    def feed(self, data: bytes | bytearray | memoryview) -> Message | None: ...


#: the encryptMsg frame header: type byte 10 + big-endian uint32 length of the blob that follows
_FRAME_HEADER = struct.Struct(">BI")


def seal_stream_frame(payload: bytes, keyring: Keyring, label: str = "") -> bytes:
    """memberlist encryptLocalState: ``[10][len][blob]``, the 5 header bytes + label as additional data."""
    header = _FRAME_HEADER.pack(MessageType.ENCRYPT, encrypted_length(1, len(payload)))
    return header + keyring.encrypt(payload, header + label.encode())


def open_stream_frame(data: bytes, off: int, keyring: Keyring, label: str = "") -> tuple[bytes, int]:
    """memberlist decryptRemoteState on the frame at ``data[off]``: (plain message, end of the frame).

    Raises Incomplete until the whole frame is there, DecodeError for a frame over maxPushStateBytes and
    DecryptError when no key opens it.
    """
    if len(data) < off + _FRAME_HEADER.size:
        raise Incomplete("need the encrypted frame header")
    kind, size = _FRAME_HEADER.unpack_from(data, off)
    if kind != MessageType.ENCRYPT:
        raise DecodeError(f"expected an encrypted frame (type 10), got type {kind}")
    if size > MAX_PUSH_STATE_BYTES:
        raise DecodeError(f"remote node state is larger than limit ({size})")
    end = off + _FRAME_HEADER.size + size
    if len(data) < end:
        raise Incomplete(f"need {end - len(data)} more bytes of the encrypted frame")
    aad = bytes(data[off : off + _FRAME_HEADER.size]) + label.encode("utf-8", "surrogateescape")
    plain = keyring.decrypt(bytes(data[off + _FRAME_HEADER.size : end]), aad)
    if not plain:
        raise DecodeError("encrypted stream frame holds an empty message")
    return plain, end


def _stream_is_encrypted(kind: int, keyring: Keyring | None, verify_incoming: bool) -> bool:
    """memberlist readStream's rule on a stream's first byte: an encrypted frame needs a keyring, and with a
    keyring a plaintext stream is refused unless verify-incoming is off (the rolling move to encryption)."""
    encrypting = keyring is not None and keyring.enabled
    if kind == MessageType.ENCRYPT:
        if not encrypting:
            raise DecryptError("remote state is encrypted and encryption is not configured")
        return True
    if encrypting and verify_incoming:
        raise DecryptError("encryption is configured but remote state is not encrypted")
    return False


def _stream_body(
    data: bytes, expected_label: str, keyring: Keyring | None = None, verify_incoming: bool = True
) -> tuple[int, bytes | None, int]:
    """Label stripped, encryption and compression undone: (offset of the message, the decrypted or inflated
    message or None when the stream is plain, end of the frame). Raises Incomplete while a header is arriving."""
    label, off = strip_stream_label(data, expected_label)
    if len(data) <= off:
        raise Incomplete("need the message type byte")
    kind = data[off]
    if _stream_is_encrypted(kind, keyring, verify_incoming):
        assert keyring is not None
        plain, end = open_stream_frame(data, off, keyring, label)
        if plain[0] != MessageType.COMPRESS:
            return off, plain, end
        try:
            obj, _ = decode_stream_value(plain, 1)
        except Incomplete as exc:
            raise DecodeError(f"compressed message in an encrypted frame is truncated: {exc}") from None
        return off, _inflate_stream(obj), end
    if kind != MessageType.COMPRESS:
        return off, None, off
    obj, end = decode_stream_value(data, off + 1)
    return off, _inflate_stream(obj), end


def _inflate_stream(obj: object) -> bytes:
    inner = compress_struct(obj)
    if not inner:
        raise DecodeError("compressed stream holds an empty message")
    return inner


def unwrap_stream(
    data: bytes, expected_label: str = "", *, keyring: Keyring | None = None, verify_incoming: bool = True
) -> bytes:
    """A stream buffer -> the bytes of the message inside (label header removed, compression undone).

    For an uncompressed stream this is simply the rest of the buffer (feed it to codec.decode_stream, which
    may still raise Incomplete); for a compressMsg it is the inflated message, which must then be complete.
    Raises Incomplete while the label header or the compress message is still arriving.
    """
    off, inner, _ = _stream_body(data, expected_label, keyring, verify_incoming)
    return inner if inner is not None else bytes(data[off:])


class StreamTooLarge(DecodeError):
    """More bytes arrived on one stream than its bound allows."""


class StreamReader:
    """One TCP stream as it arrives: label header checked, compression undone, one message out.

    The h11 shape: ``feed(chunk)`` returns the message once it is complete, else None, and raises DecodeError as
    soon as the bytes cannot be one (a wrong label, an unknown type, more than ``max_bytes`` received). Every
    byte is parsed once: a plain message through codec.StreamDecoder, a compressMsg through a resumable msgpack
    reader and then inflated slice by slice, an encrypted frame (type 10) gathered whole and opened once (GCM
    authenticates the frame as one). ``fed`` counts the bytes handed to the parsers (tests check it stays
    linear). The first byte after the label picks the layer in ``_start``, where the verify-incoming rule
    is applied as memberlist's readStream does.
    """

    def __init__(
        self,
        expected_label: str = "",
        max_bytes: int = MAX_STREAM_BYTES,
        *,
        keyring: Keyring | None = None,
        verify_incoming: bool = True,
    ) -> None:
        self.expected_label = expected_label
        self.max_bytes = max_bytes
        self.keyring = keyring
        self.verify_incoming = verify_incoming
        self._label = ""
        self.received = 0
        self.message: Message | None = None
        self.consumed = 0  # bytes of the stream the message took (label and compress framing included)
        self.waiting_for = "need the first byte of the stream"
        self._head = bytearray()  # the label header while it arrives
        self._offset = 0  # where the layer after the label starts
        self._plain: StreamDecoder | None = None
        self._compressed: _CompressedStream | None = None
        self._encrypted: _EncryptedStream | None = None

    @property
    def inflated(self) -> int:
        """Bytes inflated so far from a compressMsg (0 for a plain stream): they grow as the stream arrives."""
        return self._compressed.inflated if self._compressed is not None else 0

    @property
    def fed(self) -> int:
        if self._encrypted is not None:
            return self._encrypted.fed
        if self._compressed is not None:
            return self._compressed.fed
        return self._plain.fed if self._plain is not None else 0

    def feed(self, data: bytes | bytearray | memoryview) -> Message | None:
        if self.message is not None:
            return self.message
        self.received += len(data)
        if self.received > self.max_bytes:
            raise StreamTooLarge(f"stream exceeds the bound of {self.max_bytes} bytes (stream_max_bytes)")
        if self._plain is None and self._compressed is None and self._encrypted is None:
            self._head += data
            try:
                self._label, off = strip_stream_label(bytes(self._head[:257]), self.expected_label)
            except Incomplete as exc:
                self.waiting_for = str(exc)
                return None
            if len(self._head) <= off:
                self.waiting_for = "need the message type byte"
                return None
            self._offset = off
            data = self._start(self._head[off], bytes(self._head[off:]))
            self._head.clear()
        if self._encrypted is not None:
            msg = self._feed_layer(self._encrypted, data)
        elif self._plain is not None:
            msg = self._feed_layer(self._plain, data)
        else:
            assert self._compressed is not None
            msg = self._feed_layer(self._compressed, data, type_byte=1)  # _start kept its type byte out
        self.message = msg
        return msg

    def _start(self, kind: int, rest: bytes) -> bytes:
        """Pick the layer from the first byte after the label; returns the bytes that belong to it."""
        if _stream_is_encrypted(kind, self.keyring, self.verify_incoming):
            assert self.keyring is not None
            self._encrypted = _EncryptedStream(self.keyring, self._label, self.max_bytes)
            return rest
        if kind == MessageType.COMPRESS:
            self._compressed = _CompressedStream()
            return rest[1:]
        self._plain = StreamDecoder()
        return rest

    def _feed_layer(self, layer: _Layer, data: bytes | bytearray | memoryview, type_byte: int = 0) -> Message | None:
        """Feed the layer the stream turned out to be; its message once whole, the stream's bytes it took counted
        from the start (label, then ``type_byte`` the layer was not fed, then the layer's own)."""
        msg = layer.feed(data)
        if msg is None:
            self.waiting_for = layer.waiting_for
            return None
        self.consumed = self._offset + type_byte + layer.consumed
        return msg


class _EncryptedStream:
    """An encrypted frame on a stream: gathered until its header's length is all there (checking the length is
    O(1) per chunk), opened once, and the plaintext (a plain or compressed message) read by a StreamReader."""

    def __init__(self, keyring: Keyring, label: str, max_bytes: int) -> None:
        self._keyring = keyring
        self._label = label
        self._max_bytes = max_bytes
        self._buf = bytearray()
        self.fed = 0
        self.consumed = 0
        self.waiting_for = "need the encrypted frame header"

    def feed(self, data: bytes | bytearray | memoryview) -> Message | None:
        self._buf += data
        self.fed += len(data)
        try:
            plain, end = open_stream_frame(self._buf, 0, self._keyring, self._label)
        except Incomplete as exc:
            self.waiting_for = str(exc)
            return None
        inner = StreamReader(max_bytes=self._max_bytes)
        msg = inner.feed(plain)
        if msg is None:
            raise DecodeError(f"encrypted stream message is truncated: {inner.waiting_for}")
        self.consumed = end
        return msg


#: the msgpack raw/str/bin headers: first byte -> bytes of big-endian length after it (fixraw handled apart)
_RAW_LENGTH_BYTES = {0xD9: 1, 0xDA: 2, 0xDB: 4, 0xC4: 1, 0xC5: 2, 0xC6: 4}
#: a compressMsg's map header and small entries (Algo, unknown keys) may take this much before Buf's bytes
_COMPRESS_HEADER_MAX = 4096


class _CompressedStream:
    """A compressMsg on a stream, ``{Algo, Buf}``, read as it arrives: Buf's bytes go through LzwReader and the
    inflated bytes straight into a StreamDecoder, so a large compressed stream is inflated and parsed slice by
    slice (no multi-second inflate of the whole buffer at the end). Entries other than Buf are small and parsed
    from a bounded header buffer; Algo must be 0 (LZW), wherever it appears in the map."""

    def __init__(self) -> None:
        self._head = bytearray()  # unparsed map bytes (header, small entries)
        self._entries: int | None = None  # entries still to read
        self._buf_left: int | None = None  # Buf bytes still to come while streaming it
        self._saw_buf = False
        self._algo = LZW_ALGO
        self._lzw = LzwReader()
        self._inner = StreamDecoder()
        self.inflated = 0
        self.consumed = 0  # bytes of the compressMsg body consumed so far
        self.fed = 0
        self.waiting_for = "the compressMsg is still arriving"

    def feed(self, data: bytes | bytearray | memoryview) -> Message | None:
        self.fed += len(data)
        view = memoryview(bytes(data))
        while True:
            if self._buf_left is not None:
                take = min(self._buf_left, len(view))
                if take:
                    self._inflate(view[:take])
                    self._buf_left -= take
                    self.consumed += take
                    view = view[take:]
                if self._buf_left:
                    return None
                self._buf_left = None
                self._lzw.finish()
            self._head += view
            view = memoryview(b"")
            if not self._parse_head():
                if len(self._head) > _COMPRESS_HEADER_MAX:
                    raise DecodeError(f"compress: more than {_COMPRESS_HEADER_MAX} bytes of header before Buf")
                return None
            if self._buf_left is None:
                return self._finish()
            view = memoryview(bytes(self._head))  # what followed Buf's header: Buf's first bytes
            self._head.clear()

    def _inflate(self, chunk: memoryview) -> None:
        out = self._lzw.feed(chunk)
        if out:
            self.inflated += len(out)
            self.fed += len(out)
            self._inner.feed(out)

    def _parse_head(self) -> bool:
        """Parse the map header and entries up to Buf's bytes (or the end); False = need more bytes."""
        head = self._head
        off = 0
        try:
            if self._entries is None:
                if not head:
                    return False
                first = head[0]
                if 0x80 <= first <= 0x8F:
                    self._entries, off = first & 0x0F, 1
                elif first in (0xDE, 0xDF):
                    size = 2 if first == 0xDE else 4
                    if len(head) < 1 + size:
                        return False
                    self._entries, off = int.from_bytes(head[1 : 1 + size], "big"), 1 + size
                elif first == 0xC0:
                    self._entries, off = 0, 1
                else:
                    raise DecodeError(f"compress: expected a msgpack map, got first byte 0x{first:02x}")
            while self._entries:
                key, after_key = decode_stream_value(head, off)
                if key == b"Buf":
                    if after_key >= len(head):
                        return False
                    tag = head[after_key]
                    if 0xA0 <= tag <= 0xBF:
                        length, start = tag & 0x1F, after_key + 1
                    elif tag in _RAW_LENGTH_BYTES:
                        size = _RAW_LENGTH_BYTES[tag]
                        if len(head) < after_key + 1 + size:
                            return False
                        length = int.from_bytes(head[after_key + 1 : after_key + 1 + size], "big")
                        start = after_key + 1 + size
                    elif tag == 0xC0:
                        length, start = 0, after_key + 1
                    else:
                        raise DecodeError("compress.Buf: expected raw bytes")
                    self._entries -= 1
                    self._saw_buf = True
                    self._buf_left = length
                    self.consumed += start
                    del head[:start]
                    return True
                value, off_next = decode_stream_value(head, after_key)
                if key == b"Algo":
                    algo = 0 if value is None else value
                    if isinstance(algo, bool) or not isinstance(algo, int):
                        raise DecodeError(f"compress.Algo: expected integer, got {type(algo).__name__}")
                    if algo != LZW_ALGO:
                        raise DecodeError(f"compress: cannot decompress unknown algorithm {algo}")
                self._entries -= 1
                off = off_next
        except Incomplete:
            self.consumed += off  # whole entries (and the map header) are done: never parse them again
            del head[:off]
            return False
        self.consumed += off
        del head[:off]
        return True

    def _finish(self) -> Message:
        if not self._saw_buf or self.inflated == 0:
            raise DecodeError("compressed stream holds an empty message")
        msg = self._inner.message
        if msg is None:
            raise DecodeError(f"compressed stream message is truncated: {self._inner.waiting_for}")
        return msg


def read_stream(
    data: bytes, expected_label: str = "", *, keyring: Keyring | None = None, verify_incoming: bool = True
) -> tuple[Message, int]:
    """A whole stream buffer -> (message, bytes of ``data`` consumed), or Incomplete (StreamReader in one go)."""
    reader = StreamReader(
        expected_label, max_bytes=max(len(data), MAX_STREAM_BYTES), keyring=keyring, verify_incoming=verify_incoming
    )
    msg = reader.feed(data)
    if msg is None:
        raise Incomplete(reader.waiting_for)
    return msg, reader.consumed


def wrap_stream(msg: bytes, *, label: str = "", compress: bool = False, keyring: Keyring | None = None) -> bytes:
    """One encoded message -> stream bytes, as rawSendMsgStream (always compresses when enabled, then encrypts
    with a keyring: pass None when gossip_verify_outgoing is off) + label."""
    payload = _compress_msg(msg) if compress else bytes(msg)
    if keyring is not None and keyring.enabled:
        payload = seal_stream_frame(payload, keyring, label)
    return add_label(payload, label)
