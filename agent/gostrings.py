"""Go strings in a Python agent: the one rule for text that is not valid UTF-8 (issue 16, item 1).

A Go ``string`` is bytes.  Serf and Consul carry any bytes in a member name, a tag or a service field; our wire
decoders keep them losslessly as ``str`` with *surrogate escapes* (U+DC80..U+DCFF, Python's ``surrogateescape``).
JSON input can add a second kind of non-text: a lone ``"\\ud800"`` escape, which Python's ``json`` keeps as a lone
surrogate.  Neither can be encoded as UTF-8, so every place that turns text into bytes follows this module:

- **Our own wire (msgpack catalog messages)** is lossless: :data:`WIRE_ERRORS` (protocol.codec's one handler)
  writes a surrogate escape back as its original byte (what Go would send) and any other surrogate as U+FFFD,
  and reads invalid bytes as surrogate escapes.
- **JSON output and input** follow Go's ``encoding/json``: output strings are "coerced to valid UTF-8, replacing
  invalid bytes with the Unicode replacement rune", and on input an invalid ``\\uXXXX`` surrogate "falls back to
  the replacement rune".  :func:`valid_utf8` / :func:`scrub` do that: each surrogate code point (one per invalid
  byte) becomes one U+FFFD, exactly as Go replaces each invalid byte.
- **Bytes for a file name or a URL**: :func:`to_bytes` (the same lossless rule as the wire).
"""

from __future__ import annotations

import json
import re
from typing import Any

from protocol.codec import GO_STRING_ERRORS

__all__ = [
    "REPLACEMENT",
    "WIRE_ERRORS",
    "decode_json",
    "go_base64",
    "go_json_text",
    "go_quote",
    "has_surrogates",
    "scrub",
    "to_bytes",
    "valid_utf8",
]

REPLACEMENT = "\ufffd"
#: The wire rule is protocol's own (codec.GO_STRING_ERRORS): one handler for gossip and the catalog.
WIRE_ERRORS = GO_STRING_ERRORS
_SURROGATES = re.compile("[\ud800-\udfff]")
_REPLACEMENT_BYTES = REPLACEMENT.encode()


def has_surrogates(text: str) -> bool:
    """Does ``text`` hold a surrogate code point?  Only those make UTF-8 encoding fail (much faster to try than a
    regex over a large text)."""
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def valid_utf8(text: str) -> str:
    """``text`` as Go's encoding/json writes (or reads) it: each surrogate code point becomes U+FFFD."""
    return _SURROGATES.sub(REPLACEMENT, text) if has_surrogates(text) else text


def scrub(value: Any) -> Any:
    """A JSON-shaped value (dicts, lists, strings, scalars) with every string, keys included, :func:`valid_utf8`.

    Iterative, so a deeply nested value cannot exhaust the stack here.
    """
    if isinstance(value, str):
        return valid_utf8(value)
    if not isinstance(value, dict | list):
        return value
    root: list[Any] = [value]
    stack: list[tuple[Any, Any, Any]] = [(root, 0, value)]  # (container, key, child) to rebuild in place
    while stack:
        parent, key, node = stack.pop()
        if isinstance(node, dict):
            copy: dict[Any, Any] = {}
            for k, v in node.items():
                k = valid_utf8(k) if isinstance(k, str) else k
                copy[k] = v
                if isinstance(v, dict | list):
                    stack.append((copy, k, v))
                elif isinstance(v, str):
                    copy[k] = valid_utf8(v)
            parent[key] = copy
        else:
            items = list(node)
            for i, v in enumerate(items):
                if isinstance(v, dict | list):
                    stack.append((items, i, v))
                elif isinstance(v, str):
                    items[i] = valid_utf8(v)
            parent[key] = items
    return root[0]


def to_bytes(text: str) -> bytes:
    """The bytes Go would hold for ``text`` (surrogate escapes back to their bytes; never raises)."""
    return text.encode("utf-8", WIRE_ERRORS)


def _too_deep_char(text: str, limit: int) -> str:
    """The bracket that first nests deeper than ``limit`` (for Go's "invalid character '[' exceeded max depth")."""
    depth, in_string, escaped = 0, False, False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return char
        elif char in "]}":
            depth -= 1
    return "["


def decode_json(raw: bytes | str) -> Any:
    """A JSON document read as Go's encoding/json reads it: invalid UTF-8 bytes and lone ``\\uXXXX`` surrogates
    become U+FFFD, and nesting too deep for this parser is a ValueError ("exceeded max depth"), never a
    RecursionError.  Other syntax errors are ValueErrors with Python's message."""
    text = raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else raw
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError(f"invalid character {_too_deep_char(text, 500)!r} exceeded max depth") from None
    return scrub(value)


_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v",
            "\\": "\\\\", '"': '\\"'}  # fmt: skip


def go_quote(text: str) -> str:
    """Go's ``%q`` (``strconv.Quote``) of a Go string kept as ``str``: Consul's error texts quote keys so.

    Surrogate escapes (bytes that were not UTF-8) come out as ``\\xNN``, as Go writes invalid bytes."""
    out = ['"']
    for char in text:
        code = ord(char)
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif char.isprintable():
            out.append(char)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_DECODE = {c: i for i, c in enumerate(_ALPHABET)}
_NEWLINES = (ord("\n"), ord("\r"))
_PAD = ord("=")


class _Corrupt(ValueError):
    def __init__(self, offset: int) -> None:
        super().__init__(f"illegal base64 data at input byte {offset}")


def go_base64(text: str) -> bytes:
    """``base64.StdEncoding.Decode`` as Go does it: padding required, CR/LF skipped anywhere, and the error
    naming the byte offset Go names (``illegal base64 data at input byte N``)."""
    src = text.encode("utf-8", "surrogateescape")
    out = bytearray()
    si, n = 0, len(src)
    while True:
        sextets: list[int] = []
        done = False
        while len(sextets) < 4:
            if si == n:
                if not sextets:
                    return bytes(out)
                raise _Corrupt(si - len(sextets))  # a short final quantum without its padding
            c = src[si]
            si += 1
            if c in _DECODE:
                sextets.append(_DECODE[c])
                continue
            if c in _NEWLINES:
                continue
            if c != _PAD or len(sextets) < 2:
                raise _Corrupt(si - 1)
            if len(sextets) == 2:  # "==" expected: the second one after any newlines
                while si < n and src[si] in _NEWLINES:
                    si += 1
                if si == n:
                    raise _Corrupt(n)
                if src[si] != _PAD:
                    raise _Corrupt(si - 1)
                si += 1
            while si < n and src[si] in _NEWLINES:
                si += 1
            if si < n:
                raise _Corrupt(si)  # anything after the padding
            done = True
            break
        value = 0
        for sextet in sextets:
            value = value << 6 | sextet
        value <<= 6 * (4 - len(sextets))
        out += value.to_bytes(3, "big")[: len(sextets) - 1]
        if done:
            return bytes(out)


# Go's encoding/json escapes these for safe embedding in HTML (SetEscapeHTML defaults to true).
_GO_JSON_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028",
                                  "\u2029": "\\u2029"})


_GO_JSON_ESCAPED = "<>&\u2028\u2029"


def go_json_text(value: Any, indent: str | None = None) -> str:
    """``json.Marshal`` (``indent`` None: compact) or ``json.MarshalIndent(value, "", indent)`` as Go writes them:
    raw UTF-8 with invalid text replaced (valid_utf8), and <, >, & and U+2028/9 escaped."""
    if indent is None:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    else:
        text = json.dumps(value, ensure_ascii=False, indent=indent)
    text = valid_utf8(text)
    if any(char in text for char in _GO_JSON_ESCAPED):
        text = text.translate(_GO_JSON_ESCAPES)
    return text
