"""The go-msgpack dialect memberlist and Serf write, byte-compatible with hashicorp/go-msgpack.

memberlist and Serf encode with hashicorp/go-msgpack ``codec.MsgpackHandle{}`` (v0.5.x, WriteExt false):

* ``string`` and ``[]byte`` are both written as the old *raw* type (fixraw 0xa0-0xbf, raw16 0xda, raw32 0xdb);
  never str8 (0xd9) nor bin8/16/32 (0xc4-0xc6).  A nil ``[]byte`` is written as nil (0xc0).
* integers take the smallest form: a non-negative value is written as positive fixint/uint8/16/32/64 whatever
  its Go type; negative values as negative fixint/int8/16/32/64.
* a struct is a map of field name -> value whose keys are sorted by name (go-msgpack 0.5 sorts struct fields
  by their encoded name when writing maps), ``omitempty`` fields left out when zero.  Decoding matches
  keys exactly (case-sensitive, as Go's decoder does), skips unknown keys (newer memberlist versions add
  fields) and also accepts the array form (fields in declaration order).

Go strings are bytes (docs/wire.md): go_str and go_bytes are the one rule for turning them into text and back.
The message classes built on this are in protocol/codec.py (memberlist) and protocol/serf_messages.py (Serf).
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from typing import Any

import attrs
import msgpack


class DecodeError(ValueError):
    """Bytes that are not a valid message; the text says exactly what was wrong."""


class Incomplete(Exception):
    """The stream buffer ends before the message does: read more bytes and try again.

    Deliberately not a DecodeError: "wait for more" and "reject" must not be caught by the same handler.
    """


# ---------------------------------------------------------------------------------------------------------
# Go strings: the one rule (docs/wire.md, "Go strings are bytes")


def _go_string_errors(exc: UnicodeError) -> tuple[str | bytes, int]:
    """Codec error handler behind GO_STRING_ERRORS: surrogateescape both ways, and on encoding any other lone
    surrogate (which no bytes decode to) becomes U+FFFD, the character Go's own decoders put in its place."""
    if isinstance(exc, UnicodeDecodeError):
        return codecs.lookup_error("surrogateescape")(exc)
    if isinstance(exc, UnicodeEncodeError):
        out = bytearray()
        for ch in exc.object[exc.start : exc.end]:
            code = ord(ch)
            out += bytes([code - 0xDC00]) if 0xDC80 <= code <= 0xDCFF else "\ufffd".encode()
        return bytes(out), exc.end
    raise exc


#: The error handler every Go ``string`` crosses the wire with: registered once, used by go_str, go_bytes, packb
#: and anything else that must read or write a Go string (msgpack's ``unicode_errors`` takes its name).
GO_STRING_ERRORS = "triumvir-go-string"
codecs.register_error(GO_STRING_ERRORS, _go_string_errors)


def go_str(raw: bytes | bytearray | memoryview) -> str:
    """A Go ``string`` off the wire: any bytes, kept losslessly (invalid UTF-8 as surrogate escapes)."""
    return bytes(raw).decode("utf-8", GO_STRING_ERRORS)


def go_bytes(text: str) -> bytes:
    """The inverse of go_str: the exact bytes go_str read; never raises (a surrogate no bytes decode to,
    e.g. from JSON's ``"\\ud800"``, is written as U+FFFD, as Go's JSON decoder would have stored it)."""
    return text.encode("utf-8", GO_STRING_ERRORS)


# ---------------------------------------------------------------------------------------------------------
# generic msgpack


def packb(obj: Any) -> bytes:
    """Encode as go-msgpack does: str and bytes both as raw, smallest int forms, dict order kept.

    ``str`` is written with go_bytes's rule, so Go strings that are not UTF-8 survive a round trip.
    """
    packer = msgpack.Packer(use_bin_type=False, unicode_errors=GO_STRING_ERRORS, autoreset=True)
    return packer.pack(obj)


def msgpack_reader() -> msgpack.Unpacker:
    """A resumable msgpack reader in our dialect's settings: feed bytes as they come, unpack when whole."""
    return msgpack.Unpacker(
        raw=True,
        strict_map_key=False,
        use_list=False,
        max_buffer_size=0,
    )


def decode_stream_value(buf: bytes | bytearray | memoryview, offset: int = 0) -> tuple[Any, int]:
    """Decode one msgpack value at ``buf[offset:]``; returns (value, new_offset).

    Raises Incomplete if the buffer ends inside the value, DecodeError if the bytes are not msgpack.
    Raw/str/bin all come back as ``bytes``; arrays as tuples.
    """
    if offset >= len(buf):
        raise Incomplete("need a msgpack value, buffer is empty")
    unpacker = msgpack_reader()
    unpacker.feed(memoryview(buf)[offset:])
    try:
        value = unpacker.unpack()
    except msgpack.OutOfData:
        raise Incomplete("buffer ends inside a msgpack value") from None
    except Exception as exc:  # msgpack raises FormatError, StackError, TypeError (unhashable key), ...
        raise DecodeError(f"invalid msgpack at offset {offset}: {type(exc).__name__}: {exc}") from None
    return value, offset + unpacker.tell()


def unpackb(data: bytes | bytearray | memoryview) -> Any:
    """Decode one msgpack value that must fill ``data`` exactly (any msgpack form accepted)."""
    try:
        value, end = decode_stream_value(data, 0)
    except Incomplete as exc:
        raise DecodeError(f"truncated msgpack: {exc}") from None
    if end != len(data):
        raise DecodeError(f"{len(data) - end} trailing bytes after msgpack value")
    return value


# ---------------------------------------------------------------------------------------------------------
# Go struct <-> msgpack map


def _to_uint(bits: int) -> Callable[[str, Any], int]:
    top = (1 << bits) - 1

    def conv(name: str, v: Any) -> int:
        if v is None:
            return 0
        if isinstance(v, bool) or not isinstance(v, int):
            raise DecodeError(f"field {name}: expected unsigned integer, got {type(v).__name__}")
        if v < 0:
            raise DecodeError(f"field {name}: negative value {v} for uint{bits}")
        if v > top:
            raise DecodeError(f"field {name}: value {v} overflows uint{bits}")
        return v

    return conv


def _to_int(name: str, v: Any) -> int:
    if v is None:
        return 0
    if isinstance(v, bool) or not isinstance(v, int):
        raise DecodeError(f"field {name}: expected integer, got {type(v).__name__}")
    if not -(1 << 63) <= v < (1 << 63):
        raise DecodeError(f"field {name}: value {v} overflows int64")
    return v


def _to_bool(name: str, v: Any) -> bool:
    # go-msgpack's decodeBool also takes fixint 0 / 1.
    if v is None:
        return False
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    raise DecodeError(f"field {name}: expected bool, got {v!r:.40}")


def _to_bytes(name: str, v: Any) -> bytes:
    if v is None:
        return b""
    if isinstance(v, bytes):
        return v
    raise DecodeError(f"field {name}: expected raw bytes, got {type(v).__name__}")


def to_str(name: str, v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bytes):
        return go_str(v)
    raise DecodeError(f"field {name}: expected string, got {type(v).__name__}")


_U8 = _to_uint(8)
_U16 = _to_uint(16)
_U32 = _to_uint(32)

# kind -> (decoder, "is []byte" for nil-on-empty encoding)
_KINDS: dict[str, Callable[[str, Any], Any]] = {
    "u8": _U8,
    "u16": _U16,
    "u32": _U32,
    "int": _to_int,
    "bool": _to_bool,
    "bytes": _to_bytes,
    "str": to_str,
}


@attrs.frozen
class GoField:
    """One Go struct field: its msgpack key, our attribute, how its value is checked, omitempty."""

    go: str  # Go field name = msgpack key
    attr: str  # Python attribute
    kind: str
    omitempty: bool = False


def _sorted_fields(fields: tuple[GoField, ...]) -> tuple[GoField, ...]:
    """go-msgpack 0.5 writes struct maps with keys sorted by (byte-wise) name."""
    return tuple(sorted(fields, key=lambda f: f.go.encode()))


def struct_values(fields: tuple[GoField, ...], obj: Any, what: str) -> dict[str, Any]:
    """Decode a struct from a map (by exact key) or array (declaration order), Go style."""
    out: dict[str, Any] = {}
    if isinstance(obj, dict):
        by_key = {f.go.encode(): f for f in fields}
        for key, value in obj.items():
            if not isinstance(key, bytes):
                raise DecodeError(f"{what}: map key {key!r:.40} is not a string")
            field = by_key.get(key)
            if field is None:
                continue  # unknown field: a newer version's addition, ignored as Go does
            out[field.attr] = _KINDS[field.kind](f"{what}.{field.go}", value)
    elif isinstance(obj, tuple):
        for field, value in zip(fields, obj, strict=False):
            out[field.attr] = _KINDS[field.kind](f"{what}.{field.go}", value)
    elif obj is None:
        pass  # Go decodes nil into a zero struct
    else:
        raise DecodeError(f"{what}: expected a msgpack map, got {type(obj).__name__}")
    for field in fields:
        if field.attr not in out:
            out[field.attr] = _KINDS[field.kind](field.go, None)
    return out


def struct_map(fields: tuple[GoField, ...], msg: Any) -> dict[str, Any]:
    """The ordered dict that packb turns into Go's bytes for this struct."""
    out: dict[str, Any] = {}
    for field in _sorted_fields(fields):
        value = getattr(msg, field.attr)
        if field.omitempty and not value:
            continue
        if field.kind == "bytes" and not value:
            value = None  # a nil []byte (the usual Go zero) encodes as nil, 0xc0
        out[field.go] = value
    return out


def check_struct_range(fields: tuple[GoField, ...], msg: Any) -> None:
    """Refuse to encode a value its Go field could not hold (wrong type, out of the uint range)."""
    for field in fields:
        value = getattr(msg, field.attr)
        kind = field.kind
        if kind in ("u8", "u16", "u32", "int"):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{type(msg).__name__}.{field.attr} must be int")
            bits = {"u8": 8, "u16": 16, "u32": 32}.get(kind)
            if bits is not None and not 0 <= value < (1 << bits):
                raise ValueError(f"{type(msg).__name__}.{field.attr}={value} does not fit uint{bits}")
        elif kind == "bytes" and not isinstance(value, bytes | bytearray):
            raise TypeError(f"{type(msg).__name__}.{field.attr} must be bytes")
        elif kind == "str" and not isinstance(value, str):
            raise TypeError(f"{type(msg).__name__}.{field.attr} must be str")


def go_field(go: str, attr: str, kind: str, omitempty: bool = False) -> GoField:
    return GoField(go, attr, kind, omitempty)
