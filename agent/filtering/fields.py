"""The Go types a filter is checked against, and the field configurations go-bexpr v0.1.2 derives from them.

A type here mirrors the Go struct an endpoint filters (agent.filtering.consul_types): a primitive, a list, a
``map[string]T`` or a struct whose fields have go-bexpr's names (a field may read another JSON key, or convert
the value the endpoint shows, e.g. a member's address text into the bytes of Go's ``net.IP``).  The operators a
selector allows and how its value is coerced follow go-bexpr's generator: strings take every operator, numbers
and booleans ``==``/``!=``; a list of primitives takes ``in``/``is empty``; a list of structs ``is empty`` and its
elements' fields; a map takes ``in`` (a key), ``is empty`` and any key below it; a struct only its fields.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from agent.filtering.ast import MatchOp
from agent.filtering.gostrconv import parse_bool, parse_int, parse_uint

__all__ = ["ANY", "Coerce", "Config", "Field", "FieldType", "ListOf", "MapOf", "Prim", "Struct", "config_of"]

Coerce = Callable[[str], Any]
ANY = ""  # go-bexpr's FieldNameAny: any key of a map

_EQ = (MatchOp.EQUAL, MatchOp.NOT_EQUAL)
_STRING_OPS = (*_EQ, MatchOp.IN, MatchOp.NOT_IN, MatchOp.MATCHES, MatchOp.NOT_MATCHES)
_EMPTY = (MatchOp.IS_EMPTY, MatchOp.IS_NOT_EMPTY)


@attrs.frozen
class Prim:
    """A Go string, signed or unsigned integer of ``bits`` bits, or bool."""

    kind: str  # "string" | "int" | "uint" | "bool"
    bits: int = 64

    def coerce(self, raw: str) -> Any:
        if self.kind == "int":
            return parse_int(raw, self.bits)
        if self.kind == "uint":
            return parse_uint(raw, self.bits)
        if self.kind == "bool":
            return parse_bool(raw)
        return raw

    def zero(self) -> Any:
        return "" if self.kind == "string" else False if self.kind == "bool" else 0


@attrs.frozen
class ListOf:
    elem: FieldType

    def zero(self) -> Any:
        return []


@attrs.frozen
class MapOf:
    """``map[string]elem``."""

    elem: FieldType

    def zero(self) -> Any:
        return {}


@attrs.frozen
class Field:
    """A struct field: its go-bexpr name, the key it has in the endpoint's JSON, an optional conversion."""

    name: str
    type: FieldType
    key: str = ""
    convert: Callable[[Any], Any] | None = None

    def read(self, record: Any) -> Any:
        """This field of ``record`` (a dict as the endpoint renders it); Go's zero value when absent or null."""
        value = record.get(self.key or self.name) if isinstance(record, dict) else None
        if value is None:
            return self.type.zero()
        return self.convert(value) if self.convert else value


@attrs.frozen
class Struct:
    fields: tuple[Field, ...]

    def zero(self) -> Any:
        return {}

    def field(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)


FieldType = Prim | ListOf | MapOf | Struct


@attrs.frozen
class Config:
    """go-bexpr's FieldConfiguration: the operators a selector ending here allows, how its value is coerced, and
    the selectors below it (``ANY`` for a map's keys)."""

    ops: tuple[MatchOp, ...]
    coerce: Coerce | None
    sub: Callable[[], dict[str, Config]] | None = None


def _struct_configs(struct: Struct) -> dict[str, Config]:
    return {f.name: config_of(f.type) for f in struct.fields}


def config_of(typ: FieldType) -> Config:
    """The field configuration go-bexpr's generator gives a field of type ``typ``."""
    if isinstance(typ, Prim):
        return Config(_STRING_OPS if typ.kind == "string" else _EQ, typ.coerce)
    if isinstance(typ, ListOf):
        if isinstance(typ.elem, Prim):
            return Config((MatchOp.IN, MatchOp.NOT_IN, *_EMPTY), typ.elem.coerce)
        elem = typ.elem
        return Config(_EMPTY, None, (lambda: _struct_configs(elem)) if isinstance(elem, Struct) else None)
    if isinstance(typ, MapOf):
        elem_type = typ.elem
        return Config((*_EMPTY, MatchOp.IN, MatchOp.NOT_IN), Prim("string").coerce,
                      lambda: {ANY: config_of(elem_type)})  # fmt: skip
    return Config((), None, lambda: _struct_configs(typ))
