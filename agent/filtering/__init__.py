"""go-bexpr boolean filter expressions (Consul's ``?filter=``), pure: parse, validate against a type, evaluate.

Consul links go-bexpr v0.1.2, whose rules this package follows: the grammar (``grammar.py``), the field
configurations a Go type yields and the checks ``CreateFilter`` makes against them (``fields.py``,
``compile.py``), and the evaluation with its "any element" walk through lists and its missing-map-key rules
(``evaluate.py``).  ``consul_types.py`` describes the Consul structs the HTTP endpoints filter.
"""

from agent.filtering.ast import Expression, Match, MatchOp, Not
from agent.filtering.compile import CompiledFilter, FilterError, compile_filter, create_filter
from agent.filtering.grammar import FilterSyntaxError, parse

__all__ = [
    "CompiledFilter",
    "Expression",
    "FilterError",
    "FilterSyntaxError",
    "Match",
    "MatchOp",
    "Not",
    "compile_filter",
    "create_filter",
    "parse",
]
