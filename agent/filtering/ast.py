"""The expression tree go-bexpr's grammar builds: ``not``, ``and``/``or`` and match expressions."""

from __future__ import annotations

import enum

import attrs

__all__ = ["And", "Expression", "Match", "MatchOp", "Not", "Or", "selector_text"]


class MatchOp(enum.Enum):
    """A match operator, valued by go-bexpr's ``MatchOperator.String()`` (used in its error texts)."""

    EQUAL = "Equal"
    NOT_EQUAL = "Not Equal"
    IN = "In"  # also ``contains`` (the grammar maps it here)
    NOT_IN = "Not In"  # also ``not contains``
    IS_EMPTY = "Is Empty"
    IS_NOT_EMPTY = "Is Not Empty"
    MATCHES = "Matches"
    NOT_MATCHES = "Not Matches"


def selector_text(path: tuple[str, ...]) -> str:
    """go-bexpr's ``Selector.String()``: the parts joined by ``.`` (an index ``["a.b"]`` is just a part)."""
    return ".".join(path)


@attrs.frozen
class Match:
    """``selector OP value``, ``selector is [not] empty`` or ``value [not] in selector``; ``value`` is the raw text
    (a quoted string unquoted, a number or a selector as written) or None for the emptiness checks."""

    selector: tuple[str, ...]
    op: MatchOp
    value: str | None = None


@attrs.frozen
class Not:
    operand: Expression


@attrs.frozen
class And:
    left: Expression
    right: Expression


@attrs.frozen
class Or:
    left: Expression
    right: Expression


Expression = Match | Not | And | Or
