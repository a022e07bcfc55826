"""``bexpr.CreateFilter`` and ``Filter.Execute`` (go-bexpr v0.1.2): check an expression against a type, then keep
the records it matches.

Checking (go-bexpr's ``validate``) walks each selector through the type's field configurations (``Selector "X"
is not valid``), checks the operator (``Invalid match operator "Equal" for selector "Tags"``), coerces the value
(``Failed to coerce value "x" for selector "Port": strconv.ParseInt: ...``) and compiles a regular expression
(``Failed to compile regular expression "(": error parsing regexp: ...``).  ``CreateFilter`` prefixes every error,
syntax ones included, with ``Failed to create boolean expression evaluator: ``.

Evaluation (evaluate.go): a list on the way down matches if *any* element matches the rest of the selector
(``Checks.Status == passing``: some check passes; ``Checks.Status != passing``: some check does not; an empty list
matches neither); a missing map key makes ``==``, ``in`` and ``is not empty`` false and every other operator
true; ``matches`` is an unanchored RE2 search, as Go's regexp.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs
import re2

from agent.filtering.ast import And, Expression, Match, MatchOp, Not, Or, selector_text
from agent.filtering.fields import ANY, Config, FieldType, ListOf, MapOf, Prim, Struct, config_of
from agent.filtering.grammar import FilterSyntaxError, parse
from agent.gostrings import go_quote

__all__ = ["CREATE_PREFIX", "CompiledFilter", "FilterError", "compile_filter", "create_filter"]

CREATE_PREFIX = "Failed to create boolean expression evaluator: "
#: Ours: Python's stack bounds the nesting (a few hundred levels of `and`, `not` or parentheses); Go's does not.
TOO_DEEP = "expression nested too deeply"

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False
# RE2's error codes in Go regexp/syntax's words (the argument after ": " is the same in both).
_GO_REGEXP_ERRORS = {
    "missing )": "missing closing )", "missing ]": "missing closing ]", "unexpected )": "unexpected )",
    "invalid perl operator": "invalid or unsupported Perl syntax", "invalid repetition size": "invalid repeat count",
    "bad repetition operator": "invalid nested repetition operator",
    "no argument for repetition operator": "missing argument to repetition operator",
    "invalid named capture group": "invalid named capture", "trailing \\": "trailing backslash at end of expression",
}  # fmt: skip


class FilterError(ValueError):
    """The expression does not parse, or does not fit the type; ``str()`` is go-bexpr's text."""


@attrs.frozen
class _Checked:
    """A match expression with its selector's type path checked and its value coerced (or compiled)."""

    match: Match
    value: Any


def _go_regexp(pattern: str) -> Any:
    try:
        return re2.compile(pattern.encode("utf-8", "surrogateescape"), _RE2_OPTIONS)
    except re2.error as exc:
        detail = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        code, _, arg = detail.partition(": ")
        if code == "trailing \\":
            arg = ""
        raise FilterError(f"Failed to compile regular expression {go_quote(pattern)}: error parsing regexp: "
                          f"{_GO_REGEXP_ERRORS.get(code, code)}: `{arg}`") from None  # fmt: skip


def _check_match(match: Match, top: dict[str, Config]) -> _Checked:
    configs: dict[str, Config] | None = top
    last: Config | None = None
    for i, part in enumerate(match.selector):
        config = (configs or {}).get(part) or (configs or {}).get(ANY)
        if config is None:
            raise FilterError(f"Selector {go_quote(selector_text(match.selector[: i + 1]))} is not valid")
        last = config
        configs = config.sub() if config.sub else None
    assert last is not None
    sel = go_quote(selector_text(match.selector))
    if match.op not in last.ops:
        raise FilterError(f"Invalid match operator {go_quote(match.op.value)} for selector {sel}")
    value: Any = match.value
    if match.value is not None:
        if last.coerce is not None:
            try:
                value = last.coerce(match.value)
            except ValueError as exc:
                raise FilterError(f"Failed to coerce value {go_quote(match.value)} for selector {sel}: {exc}") from None
        if match.op in (MatchOp.MATCHES, MatchOp.NOT_MATCHES):
            value = _go_regexp(value if isinstance(value, str) else match.value)
    return _Checked(match, value)


def _check(node: Expression, top: dict[str, Config]) -> Any:
    """go-bexpr's validateRecurse: left to right, the first error wins."""
    if isinstance(node, Match):
        return _check_match(node, top)
    if isinstance(node, Not):
        return Not(_check(node.operand, top))
    assert isinstance(node, And | Or)
    return type(node)(_check(node.left, top), _check(node.right, top))


def _final(op: MatchOp, value: Any, typ: FieldType, wanted: Any) -> bool:
    if op in (MatchOp.IS_EMPTY, MatchOp.IS_NOT_EMPTY):
        return (len(value) == 0) == (op is MatchOp.IS_EMPTY)
    if op in (MatchOp.MATCHES, MatchOp.NOT_MATCHES):
        found = wanted.search(str(value).encode("utf-8", "surrogateescape")) is not None
        return found == (op is MatchOp.MATCHES)
    if op in (MatchOp.IN, MatchOp.NOT_IN):
        if isinstance(typ, MapOf):
            found = wanted in value
        elif isinstance(typ, ListOf):
            found = any(item == wanted for item in value)
        else:
            found = str(wanted) in str(value)
        return found == (op is MatchOp.IN)
    equal = value == wanted if not (isinstance(typ, Prim) and typ.kind == "bool") else bool(value) == wanted
    return equal == (op is MatchOp.EQUAL)


def _match(checked: _Checked, depth: int, value: Any, typ: FieldType) -> bool:
    """evaluateMatchExpressionRecurse: walk ``value`` (of type ``typ``) down the rest of the selector."""
    match = checked.match
    if depth >= len(match.selector):
        return _final(match.op, value, typ, checked.value)
    if isinstance(typ, ListOf):  # any element matching the rest of the selector
        return any(_match(checked, depth, item, typ.elem) for item in value)
    if isinstance(typ, MapOf):
        key = match.selector[depth]
        if not isinstance(value, dict) or key not in value:
            return match.op not in (MatchOp.EQUAL, MatchOp.IS_NOT_EMPTY, MatchOp.IN)
        item = value[key]
        return _match(checked, depth + 1, typ.elem.zero() if item is None else item, typ.elem)
    if isinstance(typ, Struct):
        field = typ.field(match.selector[depth])
        assert field is not None  # checked
        return _match(checked, depth + 1, field.read(value), field.type)
    raise FilterError(  # unreachable once checked; go-bexpr's text for completeness
        f"Value at selector {go_quote(selector_text(match.selector[:depth]))} with type {typ} does not support "
        "nested field selection"
    )


def _evaluate(node: Any, record: Any, typ: Struct) -> bool:
    if isinstance(node, _Checked):
        return _match(node, 0, record, typ)
    if isinstance(node, Not):
        return not _evaluate(node.operand, record, typ)
    if isinstance(node, And):
        return _evaluate(node.left, record, typ) and _evaluate(node.right, record, typ)
    return _evaluate(node.left, record, typ) or _evaluate(node.right, record, typ)


@attrs.define
class CompiledFilter:
    """An expression parsed for ``type``: ``matches`` one record, ``keep`` those of many.  Checked against the
    type when compiled, or (``check_now=False``, as Consul's /v1/agent/checks) on the first record evaluated."""

    expression: str
    type: Struct
    parsed: Expression
    checked: Any = None

    def _tree(self) -> Any:
        if self.checked is None:
            self.checked = _check(self.parsed, _fields(self.type))
        return self.checked

    def matches(self, record: Any) -> bool:
        try:
            return _evaluate(self._tree(), record, self.type)
        except RecursionError:
            raise FilterError(TOO_DEEP) from None

    def keep(self, records: Iterable[Any]) -> list[Any]:
        return [r for r in records if self.matches(r)]


def _fields(typ: Struct) -> dict[str, Config]:
    sub = config_of(typ).sub
    assert sub is not None
    return sub()


def compile_filter(expression: str, typ: Struct, *, check_now: bool = True) -> CompiledFilter:
    """Parse ``expression`` (and check it against ``typ``); FilterError with go-bexpr's bare text."""
    try:
        parsed = parse(expression)
    except FilterSyntaxError as exc:
        raise FilterError(str(exc)) from None
    compiled = CompiledFilter(expression, typ, parsed)
    if check_now:
        try:
            compiled._tree()
        except RecursionError:
            raise FilterError(TOO_DEEP) from None
    return compiled


def create_filter(expression: str, typ: Struct, *, check_now: bool = True) -> CompiledFilter:
    """``bexpr.CreateFilter``: compile_filter with its prefix on the errors it finds (a deferred check's errors,
    found by ``Execute``, come bare)."""
    try:
        return compile_filter(expression, typ, check_now=check_now)
    except FilterError as exc:
        raise FilterError(CREATE_PREFIX + str(exc)) from None
