"""LZW as Go's compress/lzw writes and reads it (order LSB, literal width 8): memberlist's only compression.

The writer compresses a whole message; LzwReader inflates as the bytes arrive, bounded by ``max_size`` (memberlist
has no bound; this one guards against decompression bombs), so a large compressed stream is inflated slice by
slice (protocol/streams.py).
"""

from __future__ import annotations

from protocol.codec import MAX_PUSH_STATE_BYTES
from protocol.go_msgpack import DecodeError

#: refuse to inflate beyond this (memberlist has no limit; this guards against decompression bombs)
MAX_DECOMPRESSED = MAX_PUSH_STATE_BYTES + (1 << 20)

_CLEAR = 256
_EOF = 257
_MAX_CODE = 4095
_MAX_WIDTH = 12
#: a reader's code table before any code: the 256 literals, then room for the codes it will define
_INITIAL_TABLE: list[bytes | None] = [bytes([i]) for i in range(256)] + [None] * (_MAX_CODE + 1 - 256)


def lzw_compress(data: bytes, *, clear_first: bool = True) -> bytes:
    """compress/lzw NewWriter(w, LSB, 8): Write(data) then Close().

    Go >= 1.17 starts the stream with a clear code (``clear_first``); older Go does not.  Both decode the same.
    memberlist compresses every push/pull and every large packet, so this loop is a node's hottest: the code
    writer is inlined and the table's lookup bound to a local (a helper call per code cost about half the time).
    """
    out = bytearray()
    append = out.append
    bits = 0
    nbits = 0
    width = 9
    hi = _EOF
    overflow = 512
    table: dict[int, int] = {}
    lookup = table.get
    if clear_first:
        bits, nbits = _CLEAR, 9
    if not data:
        return _close(out, bits, nbits, 9, (_EOF,))
    code = data[0]
    for literal in data[1:]:
        key = (code << 8) | literal
        found = lookup(key)
        if found is not None:
            code = found
            continue
        bits |= code << nbits  # write `code` in `width` bits, LSB first
        nbits += width
        while nbits >= 8:
            append(bits & 0xFF)
            bits >>= 8
            nbits -= 8
        code = literal
        hi += 1  # Writer.incHi: the next code; a wider one past the overflow; at the last code a clear
        if hi == overflow:
            width += 1
            overflow <<= 1
        if hi == _MAX_CODE:
            bits |= _CLEAR << nbits
            nbits += width
            width, hi, overflow = 9, _EOF, 512
            table.clear()
            continue
        table[key] = hi
    # Close(): the saved code, incHi (which may widen or clear), then eof and the final partial byte.
    bits |= code << nbits
    nbits += width
    hi += 1
    if hi == overflow:
        width += 1
    if hi == _MAX_CODE:
        return _close(out, bits, nbits, width, (_CLEAR, _EOF), clear_at=0)
    return _close(out, bits, nbits, width, (_EOF,))


def _close(
    out: bytearray, bits: int, nbits: int, width: int, codes: tuple[int, ...], *, clear_at: int = -1
) -> bytes:
    """The closing codes after the pending bits (the width back to 9 after a clear), then the last partial byte."""
    for i, c in enumerate(codes):
        bits |= c << nbits
        nbits += width
        if i == clear_at:
            width = 9
    while nbits >= 8:
        out.append(bits & 0xFF)
        bits >>= 8
        nbits -= 8
    if nbits:
        out.append(bits & 0xFF)
    return bytes(out)


class LzwReader:
    """compress/lzw NewReader(r, LSB, 8) as a sans-IO reader: ``feed(chunk)`` returns the bytes those codes
    inflate to, so a large compressed stream is inflated slice by slice as it arrives (no stall at the end).

    ``done`` once the eof code was read (bytes after it are ignored, as Go does); ``finish()`` raises if the data
    ended before it. The output is bounded by ``max_size`` (decompression bombs).
    """

    def __init__(self, max_size: int = MAX_DECOMPRESSED) -> None:
        self.max_size = max_size
        self.done = False
        self.produced = 0
        self._table = _INITIAL_TABLE.copy()  # a list copy: far cheaper than 256 bytes objects per reader
        self._width = 9
        self._hi = _EOF
        self._overflow = 512
        self._last: int | None = None
        self._bits = 0
        self._nbits = 0

    def feed(self, data: bytes | bytearray | memoryview) -> bytes:
        if self.done:
            return b""
        out = bytearray()
        table = self._table
        width, hi, overflow, last = self._width, self._hi, self._overflow, self._last
        bits, nbits = self._bits, self._nbits
        pos, n = 0, len(data)
        room = self.max_size - self.produced
        try:
            while True:
                while nbits < width:
                    if pos >= n:
                        return bytes(out)
                    bits |= data[pos] << nbits
                    pos += 1
                    nbits += 8
                code = bits & ((1 << width) - 1)
                bits >>= width
                nbits -= width
                if code == _CLEAR:
                    width, hi, overflow, last = 9, _EOF, 512, None
                    continue
                if code == _EOF:
                    self.done = True
                    return bytes(out)
                if code < _CLEAR:
                    entry = table[code]
                elif code == hi and last is not None:
                    prev = table[last]
                    assert prev is not None
                    entry = prev + prev[:1]
                elif code <= hi:
                    entry = table[code]
                    if entry is None:
                        raise DecodeError(f"lzw: code {code} used before it was defined")
                else:
                    raise DecodeError(f"lzw: invalid code {code} (next code is {hi})")
                assert entry is not None
                out += entry
                if len(out) > room:
                    raise DecodeError(f"lzw: output exceeds {self.max_size} bytes")
                if last is not None:
                    prev = table[last]
                    assert prev is not None
                    table[hi] = prev + entry[:1]
                last = code
                hi += 1
                if hi >= overflow:
                    if width == _MAX_WIDTH:
                        last = None
                        hi -= 1
                    else:
                        width += 1
                        overflow <<= 1
        finally:
            self.produced += len(out)
            self._width, self._hi, self._overflow, self._last = width, hi, overflow, last
            self._bits, self._nbits = bits, nbits

    def finish(self) -> None:
        """The compressed data ended: it must have carried the eof code."""
        if not self.done:
            raise DecodeError("lzw: unexpected end of data (no eof code)")


def lzw_decompress(data: bytes, *, max_size: int = MAX_DECOMPRESSED) -> bytes:
    """compress/lzw NewReader(r, LSB, 8) read to the end: the eof code is required, bytes after it ignored."""
    reader = LzwReader(max_size)
    out = reader.feed(data)
    reader.finish()
    return out
