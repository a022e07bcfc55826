"""go-bexpr's grammar (v0.1.2, the version Consul links) on lark, and its parse errors in pigeon's words.

go-bexpr's PEG puts whitespace in its operators (``_ "and" _``, ``_? "==" _?``, ``"not" _``), so the tokens here
carry their whitespace the same way: ``a == 1 and(b == 2)`` is as wrong here as there.  A number must end at
whitespace, ``)`` or the end; a double-quoted string ends at the next ``"`` (so it cannot hold ``\\"``) and is
then unquoted as Go's ``strconv.Unquote``; an unquoted value is a selector's text (``Meta.env == qa``).

Errors read as pigeon's: ``LINE:COL (OFFSET): no match found, expected: ...`` (the alternatives pigeon would list
at the position it failed, best effort) or ``LINE:COL (OFFSET): rule NAME: MESSAGE`` for go-bexpr's own checks
(``Unmatched parentheses``, ``Invalid number literal``, ``Unterminated string literal``, ``Invalid index``,
``Unclosed index expression``, ``Invalid selector``, a string ``strconv.Unquote`` refuses: ``invalid syntax``).
"""

from __future__ import annotations

import functools

from lark import Lark, Token, Transformer, UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from agent.filtering.ast import And, Expression, Match, MatchOp, Not, Or
from agent.filtering.gostrconv import unquote

__all__ = ["FilterSyntaxError", "parse"]

_WS = "[ \\t\\r\\n]"
#: go-bexpr's NotExpression is ``"not" _ NotExpression / ...``: a PEG tries the keyword first and backtracks when the
#: rest is no expression, so in ``not == 1``, ``not is empty`` or ``not in Tags`` the word is a selector named
#: ``not``.  The lexer cannot backtrack; it reads ``not`` as the keyword unless the whole whitespace run after it is
#: followed by an operator that a match on the selector ``not`` would take (and not by a value such an operator
#: could start with: ``not contains == 1`` is ``not (contains == 1)``, as in go-bexpr).
_NOT_BEFORE_OPERATOR = (rf"(?!{_WS}|==|!=|is{_WS}+(?:not{_WS}+)?empty(?![a-zA-Z0-9_])"
                        rf"|(?:contains|matches|in){_WS}+(?![=!]|is{_WS}|(?:and|or|contains|matches|in){_WS}))")
GRAMMAR = rf"""
start: _LEAD? or_expr _TRAIL?
?or_expr: and_expr | and_expr OR or_expr -> or_
?and_expr: not_expr | not_expr AND and_expr -> and_
?not_expr: NOT not_expr -> not_ | group
?group: LPAR or_expr RPAR | match
match: selector SV_OP value -> match_sv
     | selector S_OP -> match_s
     | value VS_OP selector -> match_vs
selector: IDENT part*
?part: DOT IDENT -> field
     | LSQB index_string RSQB -> index
index_string: STRING | BAD_STRING
value: selector -> selector_value
     | NUMBER -> literal
     | BAD_NUMBER -> literal
     | STRING -> literal
     | BAD_STRING -> literal
SV_OP: EQ | NE | CONTAINS | NOT_CONTAINS | MATCHES | NOT_MATCHES
S_OP: IS_EMPTY | IS_NOT_EMPTY
VS_OP: IN | NOT_IN
EQ: /{_WS}*==(?:{_WS}*)/
NE: /{_WS}*!=(?:{_WS}*)/
CONTAINS: /{_WS}+contains{_WS}+/
NOT_CONTAINS: /{_WS}+not{_WS}+contains{_WS}+/
MATCHES: /{_WS}+matches{_WS}+/
NOT_MATCHES: /{_WS}+not{_WS}+matches{_WS}+/
IS_EMPTY: /{_WS}+is{_WS}+empty/
IS_NOT_EMPTY: /{_WS}+is{_WS}+not{_WS}+empty/
IN: /{_WS}+in{_WS}+/
NOT_IN: /{_WS}+not{_WS}+in{_WS}+/
AND: /{_WS}+and{_WS}+/
OR: /{_WS}+or{_WS}+/
NOT.3: /not{_WS}+{_NOT_BEFORE_OPERATOR}/
LPAR: /\({_WS}*/
RPAR: /{_WS}*\)/
LSQB: /\[{_WS}*/
RSQB: /{_WS}*\]/
_LEAD: /\A{_WS}+/
_TRAIL: /{_WS}+\Z/
DOT: "."
IDENT: /[a-zA-Z][a-zA-Z0-9_]*/
NUMBER.2: /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?={_WS}|\)|\Z)/
BAD_NUMBER.1: /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?/
STRING.2: /"[^"]*"|`[^`]*`/s
BAD_STRING.1: /"[^"]*\Z|`[^`]*\Z/s
"""


@functools.cache
def _parser() -> Lark:
    """The LALR parser, built on first use (its tables take a tenth of a second: not at agent start)."""
    return Lark(GRAMMAR, parser="lalr", lexer="contextual", propagate_positions=False, maybe_placeholders=False)


_OPS = {
    "==": MatchOp.EQUAL, "!=": MatchOp.NOT_EQUAL, "contains": MatchOp.IN, "not contains": MatchOp.NOT_IN,
    "matches": MatchOp.MATCHES, "not matches": MatchOp.NOT_MATCHES, "is empty": MatchOp.IS_EMPTY,
    "is not empty": MatchOp.IS_NOT_EMPTY, "in": MatchOp.IN, "not in": MatchOp.NOT_IN,
}  # fmt: skip


class FilterSyntaxError(ValueError):
    """The expression does not parse; ``str()`` is pigeon's error text."""


def _op(token: Token) -> MatchOp:
    return _OPS[" ".join(str(token).split())]


class _Build(Transformer):  # type: ignore[type-arg]
    def start(self, items: list) -> Expression:
        return items[0]

    def or_(self, items: list) -> Expression:
        return Or(items[0], items[2])

    def and_(self, items: list) -> Expression:
        return And(items[0], items[2])

    def not_(self, items: list) -> Expression:
        operand = items[1]
        return operand.operand if isinstance(operand, Not) else Not(operand)  # go-bexpr folds `not not`

    def group(self, items: list) -> Expression:
        return items[1]

    def selector(self, items: list) -> tuple[str, ...]:
        return (str(items[0]), *items[1:])

    def field(self, items: list) -> str:
        return str(items[1])

    def index(self, items: list) -> str:
        return items[1]

    def index_string(self, items: list) -> str:
        return str(items[0].value)

    def selector_value(self, items: list) -> str:
        return ".".join(items[0])

    def literal(self, items: list) -> str:
        return str(items[0].value)  # a string's value is already unquoted (_check_token)

    def match_sv(self, items: list) -> Match:
        return Match(items[0], _op(items[1]), items[2])

    def match_s(self, items: list) -> Match:
        return Match(items[0], _op(items[1]))

    def match_vs(self, items: list) -> Match:
        return Match(items[2], _op(items[1]), items[0])


class _Source:
    """Positions as pigeon prints them: 1-based line and column in characters, offset in UTF-8 bytes."""

    def __init__(self, text: str) -> None:
        self.text = text

    def where(self, pos: int) -> str:
        before = self.text[:pos]
        line = before.count("\n") + 1
        col = pos - (before.rfind("\n") + 1) + 1
        offset = len(before.encode("utf-8", "surrogateescape"))
        return f"{line}:{col} ({offset})"

    def error(self, pos: int, rule: str, message: str) -> FilterSyntaxError:
        return FilterSyntaxError(f'{self.where(pos)}: rule "{rule}": {message}')

    def skip_ws(self, pos: int) -> int:
        while pos < len(self.text) and self.text[pos] in " \t\r\n":
            pos += 1
        return pos


# How each terminal shows in pigeon's "expected" list: right where the last token ended ("tight"), and after
# whitespace pigeon has consumed ("spaced").  None: not expected there.  Pigeon's own spellings (strconv.Quote'd
# literals, character classes as written in grammar.peg).
_SPACE = "[ \\t\\r\\n]"
_KEYWORD = {"AND": '"and"', "OR": '"or"', "IN": '"in"', "NOT_IN": '"not"', "CONTAINS": '"contains"',
            "NOT_CONTAINS": '"not"', "MATCHES": '"matches"', "NOT_MATCHES": '"not"', "IS_EMPTY": '"is"',
            "IS_NOT_EMPTY": '"is"'}  # fmt: skip
_TIGHT: dict[str, tuple[str, ...]] = {
    "DOT": ('"."',), "LSQB": ('"["',), "RSQB": ('"]"', _SPACE), "EQ": ('"=="', _SPACE), "NE": ('"!="', _SPACE),
    "LPAR": ('"("',), "RPAR": ('")"', _SPACE), "NOT": ('"not"',), "IDENT": ("[a-zA-Z]",),
    "NUMBER": ('"-"', '"0"', "[1-9]"), "STRING": ('"\\""', '"`"'), "$END": (_SPACE,),
    **{name: (_SPACE,) for name in _KEYWORD},
}  # fmt: skip
_SPACED: dict[str, tuple[str, ...]] = {
    **{name: (word,) for name, word in _KEYWORD.items()}, "EQ": ('"=="',), "NE": ('"!="',), "RSQB": ('"]"',),
    "RPAR": ('")"',), "LPAR": ('"("',), "NOT": ('"not"',), "IDENT": ("[a-zA-Z]",),
    "NUMBER": ('"-"', '"0"', "[1-9]"), "STRING": ('"\\""', '"`"'),
}  # fmt: skip
# The words of the operators whose whitespace pigeon matches between them (`_ "is" _ "not" _ "empty"`).
_WORDS = {"AND": ("and",), "OR": ("or",), "IN": ("in",), "NOT_IN": ("not", "in"), "CONTAINS": ("contains",),
          "NOT_CONTAINS": ("not", "contains"), "MATCHES": ("matches",), "NOT_MATCHES": ("not", "matches"),
          "IS_EMPTY": ("is", "empty"), "IS_NOT_EMPTY": ("is", "not", "empty")}  # fmt: skip
_GROUPS = {"SV_OP": ("EQ", "NE", "CONTAINS", "NOT_CONTAINS", "MATCHES", "NOT_MATCHES"),
           "S_OP": ("IS_EMPTY", "IS_NOT_EMPTY"), "VS_OP": ("IN", "NOT_IN")}  # fmt: skip


def _join(expected: list[str]) -> str:
    """pigeon's listJoin: ``a, b or c``."""
    if len(expected) <= 1:
        return "".join(expected)
    return ", ".join(expected[:-1]) + " or " + expected[-1]


def _no_match(src: _Source, pos: int, accepts: set[str], last: Token | None) -> FilterSyntaxError:
    """pigeon's ``no match found`` for a failure at ``pos`` where ``accepts`` were the tokens that could follow."""
    names: set[str] = set()
    if last is not None and last.type == "NOT":
        accepts = accepts | set(_GROUPS)  # pigeon also tries the `not` it just read as a selector
    for name in accepts:
        names.update(_GROUPS.get(name, (name,)))
    start = src.skip_ws(pos)
    spaced = start > pos or (pos > 0 and src.text[pos - 1] in " \t\r\n")
    if spaced and start < len(src.text) and (cut := _cut_operator(src, start, names)) is not None:
        return cut
    table = _SPACED if spaced else _TIGHT
    expected: set[str] = set()
    for name in names - {"$END", "BAD_NUMBER", "BAD_STRING"}:
        expected.update(table.get(name, ()))
    if spaced:
        expected.add(_SPACE)
    elif last is not None and last.type == "IDENT" and last.end_pos == pos:
        expected.add("[a-zA-Z0-9_]")
    ordered = sorted(expected)
    if "$END" in names:
        ordered.append("EOF")
    return FilterSyntaxError(f"{src.where(start)}: no match found, expected: {_join(ordered)}")


def _cut_operator(src: _Source, start: int, names: set[str]) -> FilterSyntaxError | None:
    """When the rest of the input is the start of an operator that could come at ``start`` (``Tags is``, ``a == 1
    or``, ``Tags is emp``), pigeon's error: it matches an operator word by word, so it fails where the input stops
    or where a word goes wrong, not where the operator began."""
    rest = src.text[start:]
    words = rest.split()
    operators = [_WORDS[n] for n in names & _WORDS.keys()]
    if not words or not operators:
        return None
    ends_spaced = rest[-1] in " \t\r\n"
    following: set[str] = set()  # the words that may come next, after whitespace
    unfinished = False  # an operator's words are all there, but its closing whitespace is not
    for op in operators:
        if tuple(words) == op[: len(words)]:
            if len(words) < len(op):
                following.add(op[len(words)])
            elif op[-1] != "empty":
                unfinished = True
    if following or unfinished:
        if not ends_spaced:
            return FilterSyntaxError(f"{src.where(len(src.text))}: no match found, expected: {_SPACE}")
        expected = sorted({f'"{w}"' for w in following} | {_SPACE})
        return FilterSyntaxError(f"{src.where(len(src.text))}: no match found, expected: {_join(expected)}")
    # the last word goes wrong: pigeon fails at its start, wanting the word each operator has there
    head, last = tuple(words[:-1]), words[-1]
    wanted = {op[len(head)] for op in operators if len(op) > len(head) and op[: len(head)] == head}
    if not head or not wanted or ends_spaced:
        return None
    at = start + rest.rindex(last)
    expected = sorted({f'"{w}"' for w in wanted} | {_SPACE})
    return FilterSyntaxError(f"{src.where(at)}: no match found, expected: {_join(expected)}")


def _check_token(src: _Source, token: Token) -> None:
    """go-bexpr's own literal checks, raised where pigeon raises them."""
    if token.type == "BAD_NUMBER":
        raise src.error(token.end_pos, "number", "Invalid number literal")
    if token.type == "BAD_STRING":
        raise src.error(len(src.text), "string", "Unterminated string literal")
    if token.type == "STRING":
        try:
            token.value = unquote(str(token))
        except ValueError as exc:
            raise src.error(token.start_pos, "string", str(exc)) from None


def parse(expression: str) -> Expression:
    """The expression tree of ``expression``, or FilterSyntaxError with pigeon's text."""
    src = _Source(expression)
    interactive = _parser().parse_interactive(expression)
    tokens: list[Token] = []
    try:
        for token in interactive.iter_parse():
            _check_token(src, token)
            tokens.append(token)
        tree = interactive.resume_parse()
    except (UnexpectedToken, UnexpectedCharacters) as exc:
        if isinstance(exc, UnexpectedToken) and tokens and exc.token is tokens[-1]:
            tokens.pop()  # lexed, but the parser refused it
        raise _syntax_error(src, exc, _accepts_after(expression, tokens), tokens[-1] if tokens else None) from None
    except UnexpectedInput as exc:  # pragma: no cover - lark's other kinds (EOF) surface as UnexpectedToken here
        raise FilterSyntaxError(f"{src.where(0)}: no match found") from exc
    except RecursionError:
        raise FilterSyntaxError(f"{src.where(0)}: expression nested too deeply") from None
    try:
        return _Build().transform(tree)
    except RecursionError:
        raise FilterSyntaxError(f"{src.where(0)}: expression nested too deeply") from None


def _accepts_after(body: str, tokens: list[Token]) -> set[str]:
    """The terminals the parser could shift right after ``tokens`` (before LALR's reductions on the bad one)."""
    interactive = _parser().parse_interactive(body)
    for token in tokens:
        interactive.feed_token(token)
    return set(interactive.accepts())


def _syntax_error(src: _Source, exc: UnexpectedInput, accepts: set[str],
                  last: Token | None) -> FilterSyntaxError:  # fmt: skip
    """Which of go-bexpr's errors pigeon would report for lark's failure."""
    if isinstance(exc, UnexpectedToken) and exc.token.type == "$END":
        pos = len(src.text)
    else:
        pos = exc.pos_in_stream if exc.pos_in_stream is not None else 0
    if last is not None:
        if last.type == "VS_OP":  # `in` / `not in` not followed by a selector
            return src.error(src.skip_ws(pos), "match", "Invalid selector")
        if last.type == "LSQB":
            return src.error(last.end_pos, "index", "Invalid index")
        if last.type == "STRING" and "RSQB" in accepts:
            return src.error(src.skip_ws(last.end_pos), "index", "Unclosed index expression")
    if "RPAR" in accepts and last is not None:
        return src.error(src.skip_ws(pos), "grouping", "Unmatched parentheses")
    return _no_match(src, pos, accepts, last)
