"""Go's ``flag`` package and ``strconv.ParseBool``/``ParseInt``: the one parser behind the agent's flags and
every CLI subcommand, and the one boolean reader behind query strings and watch parameters.

Go's rules, because operators' scripts are written against them: ``-x`` or ``--x``, ``-x=v`` or ``-x v``;
booleans by presence or ``-x=true|false`` (never ``-x false``); parsing stops at the first non-flag or after
``--``; ``-h``/``-help``, when not defined, is ``ErrHelp``.  Stdlib only: the CLI imports this.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Flag",
    "FlagError",
    "HelpFlag",
    "go_int",
    "go_uint",
    "parse_bool",
    "parse_flag_pairs",
    "parse_flags",
]

#: strconv.ParseBool's accepted spellings.
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def parse_bool(text: str | None) -> bool | None:
    """Go's ``strconv.ParseBool``; None where it would fail (each caller words its own error)."""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return None


class FlagError(Exception):
    """A flag-parse failure; ``str(err)`` is Go's message (``flag provided but not defined: -x``)."""


class HelpFlag(FlagError):
    """``-h``/``-help`` given but not defined: Go's ``flag.ErrHelp``."""


@dataclass(frozen=True)
class Flag:
    name: str
    help: str = ""
    is_bool: bool = False
    default: str = ""
    placeholder: str = ""
    # Go's typed flags (Uint64Var, DurationVar, ...): converts the text or raises ValueError("parse error" or
    # "value out of range"); the parser then yields the converted value.
    convert: Callable[[str], Any] | None = None
    # flags.AppendSliceValue: each use appends; parse_flags gives the list of them in order.
    repeated: bool = False


def parse_flag_pairs(args: Sequence[str], flags: Sequence[Flag], rest: list[str]) -> Iterator[tuple[str, Any]]:
    """Go's ``flag.FlagSet.Parse``, one ``(name, value)`` per flag given, in command-line order (repeated flags
    and their interleaving matter to some callers).  ``rest`` receives the positional arguments left over."""
    formal = {f.name: f for f in flags}
    remaining = list(args)
    while remaining:
        s = remaining[0]
        if len(s) < 2 or s[0] != "-":
            break
        dashes = 2 if s[1] == "-" else 1
        if s == "--":
            remaining.pop(0)
            break
        name = s[dashes:]
        if not name or name[0] in "-=":
            raise FlagError(f"bad flag syntax: {s}")
        remaining.pop(0)
        name, eq, value = name.partition("=")
        spec = formal.get(name)
        if spec is None:
            if name in ("h", "help"):
                raise HelpFlag("flag: help requested")
            raise FlagError(f"flag provided but not defined: -{name}")
        if spec.is_bool:
            if not eq:
                yield name, True
                continue
            parsed = parse_bool(value)
            if parsed is None:
                raise FlagError(f'invalid boolean value "{value}" for -{name}: parse error')
            yield name, parsed
            continue
        if not eq:
            if not remaining:
                raise FlagError(f"flag needs an argument: -{name}")
            value = remaining.pop(0)
        if spec.convert is not None:
            try:
                yield name, spec.convert(value)
            except ValueError as err:
                raise FlagError(f'invalid value "{value}" for flag -{name}: {err}') from None
            continue
        yield name, value
    rest.extend(remaining)


def parse_flags(args: Sequence[str], flags: Sequence[Flag]) -> tuple[dict[str, Any], list[str]]:
    """Go's ``flag.FlagSet.Parse``: (values by flag name, only the flags given, the last of each or, for a
    ``repeated`` flag, the list of all; the remaining positional args)."""
    rest: list[str] = []
    repeated = {f.name for f in flags if f.repeated}
    values: dict[str, Any] = {}
    for name, value in parse_flag_pairs(args, flags, rest):
        if name in repeated:
            values.setdefault(name, []).append(value)
        else:
            values[name] = value
    return values, rest


def go_uint(text: str, bits: int = 64) -> int:
    """strconv.ParseUint(text, 0, bits), as flag.Uint64Var parses: 0x/0o/0b prefixes, a leading 0 is octal."""
    value = _go_base0(text)
    if value >= 1 << bits:
        raise ValueError("value out of range")
    return value


def go_int(text: str, bits: int = 64) -> int:
    """strconv.ParseInt(text, 0, bits), as flag.IntVar parses: an optional sign, then ParseUint's forms."""
    sign = -1 if text[:1] == "-" else 1
    value = sign * _go_base0(text[1:] if text[:1] in "+-" else text)
    if not -(1 << (bits - 1)) <= value < 1 << (bits - 1):
        raise ValueError("value out of range")
    return value


# strconv's base-0 syntax: prefixed hex/octal/binary, a bare leading 0 for octal, underscores between digits.
_GO_BASE0 = re.compile(r"0[xX](_?[0-9a-fA-F])+|0[oO](_?[0-7])+|0[bB](_?[01])+|0(_?[0-7])*|[1-9](_?[0-9])*")


def _go_base0(text: str) -> int:
    if not _GO_BASE0.fullmatch(text):
        raise ValueError("parse error")
    if len(text) > 1 and text[0] == "0" and text[1] not in "xXoObB":
        text = "0o" + text[1:]  # Go's legacy octal, which Python's int(_, 0) refuses
    return int(text, 0)
