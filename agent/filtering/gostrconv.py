"""The Go ``strconv`` parsers go-bexpr uses, with their exact error texts: ``Unquote`` for string literals,
``ParseInt``/``ParseUint`` with base 0 (prefixes, underscores) and ``ParseBool`` for coercing match values."""

from __future__ import annotations

from agent.gostrings import go_quote

__all__ = ["NumError", "parse_bool", "parse_int", "parse_uint", "unquote"]

_SIMPLE_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92}


class NumError(ValueError):
    """``*strconv.NumError``: ``strconv.ParseInt: parsing "x": invalid syntax``."""

    def __init__(self, func: str, num: str, reason: str) -> None:
        super().__init__(f"strconv.{func}: parsing {go_quote(num)}: {reason}")


SYNTAX = "invalid syntax"
RANGE = "value out of range"


def unquote(literal: str) -> str:
    """``strconv.Unquote`` of a ``"..."`` or raw `````...````` literal; ValueError("invalid syntax") when Go's fails."""
    if len(literal) < 2 or literal[0] != literal[-1] or literal[0] not in "\"`":
        raise ValueError(SYNTAX)
    body = literal[1:-1]
    if literal[0] == "`":
        return body.replace("\r", "")  # Go drops carriage returns from raw strings
    if "\n" in body:
        raise ValueError(SYNTAX)
    out = bytearray()
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out += c.encode("utf-8", "replace")  # an invalid byte decodes to U+FFFD, as Go's UnquoteChar does
            i += 1
            continue
        if i + 1 >= len(body):
            raise ValueError(SYNTAX)
        e = body[i + 1]
        i += 2
        if e in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[e])
        elif e in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[e]
            digits = body[i : i + width]
            if len(digits) != width or any(d not in "0123456789abcdefABCDEF" for d in digits):
                raise ValueError(SYNTAX)
            value = int(digits, 16)
            i += width
            if e == "x":
                out.append(value)
            elif value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:
                raise ValueError(SYNTAX)
            else:
                out += chr(value).encode()
        elif e in "01234567":
            digits = body[i - 1 : i + 2]
            if len(digits) != 3 or any(d not in "01234567" for d in digits) or int(digits, 8) > 255:
                raise ValueError(SYNTAX)
            out.append(int(digits, 8))
            i += 2
        else:  # includes \' (only valid in a rune literal) and anything unknown
            raise ValueError(SYNTAX)
    return out.decode("utf-8", "surrogateescape")


def _underscore_ok(s: str) -> bool:
    """Go's ``underscoreOK``: underscores only between digits (a base prefix counts as one)."""
    saw = "^"
    i = 0
    if s[:1] in ("-", "+"):
        s = s[1:]
    hexa = False
    if len(s) >= 2 and s[0] == "0" and s[1].lower() in "box":
        i, saw, hexa = 2, "0", s[1].lower() == "x"
    while i < len(s):
        ch = s[i]
        if ch.isascii() and (ch.isdigit() or (hexa and ch.lower() in "abcdef")):
            saw = "0"
        elif ch == "_":
            if saw != "0":
                return False
            saw = "_"
        elif saw == "_":
            return False
        else:
            saw = "!"
        i += 1
    return saw != "_"


def _parse_magnitude(s: str, func: str, num: str) -> int:
    """The digits of ``s`` in base 0 (``0x``, ``0o``, ``0b``, a leading ``0`` for octal; ``_`` separators)."""
    if not s:
        raise NumError(func, num, SYNTAX)
    base, digits = 10, s
    if s[0] == "0":
        if len(s) >= 3 and s[1].lower() in "box":
            base, digits = {"b": 2, "o": 8, "x": 16}[s[1].lower()], s[2:]
        else:
            base, digits = 8, s[1:]
    value = 0
    underscores = False
    for ch in digits:
        if ch == "_":
            underscores = True
            continue
        d = int(ch, 36) if ch.isascii() and ch.isalnum() else 99
        if d >= base:
            raise NumError(func, num, SYNTAX)
        value = value * base + d
    if underscores and not _underscore_ok(s):
        raise NumError(func, num, SYNTAX)
    return value


def parse_uint(s: str, bits: int = 64) -> int:
    """``strconv.ParseUint(s, 0, bits)``."""
    value = _parse_magnitude(s, "ParseUint", s)
    if value >= 1 << bits:
        raise NumError("ParseUint", s, RANGE)
    return value


def parse_int(s: str, bits: int = 64) -> int:
    """``strconv.ParseInt(s, 0, bits)``."""
    if not s:
        raise NumError("ParseInt", s, SYNTAX)
    body, negative = s, False
    if s[0] in "+-":
        body, negative = s[1:], s[0] == "-"
    value = _parse_magnitude(body, "ParseInt", s)
    limit = 1 << (bits - 1)
    if (not negative and value >= limit) or (negative and value > limit):
        raise NumError("ParseInt", s, RANGE)
    return -value if negative else value


def parse_bool(s: str) -> bool:
    """``strconv.ParseBool``."""
    if s in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if s in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise NumError("ParseBool", s, SYNTAX)
