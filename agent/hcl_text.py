"""HCL text as python-hcl2 reads it for the agent's config files and for ACL rules, and what a parse error says.

Both read the same way (no comments, string quotes stripped, heredocs as their text; blocks come as lists of
dicts) and describe lark's errors the same way; each caller words the location as Consul does
(``invalid HCL at line 4, column 1: ...`` in a config file, ``At 4:1: ...`` in ACL rules).
"""

from __future__ import annotations

from typing import Any


class HclSyntaxError(ValueError):
    """Text python-hcl2 refused: ``what`` went wrong, and where (``line`` None when the parser does not say)."""

    def __init__(self, what: str, line: int | None, column: int | None) -> None:
        super().__init__(what)
        self.what, self.line, self.column = what, line, column


def load_hcl(text: str) -> Any:
    """python-hcl2's value for ``text``; HclSyntaxError when it is not HCL."""
    import hcl2  # imported when needed: the CLI and JSON-only configs never pay for lark
    from hcl2.utils import SerializationOptions

    # python-hcl2 8.x keeps the quotes of strings ('"n1"') unless told otherwise.
    options = SerializationOptions(with_comments=False, strip_string_quotes=True, preserve_heredocs=False)
    try:
        return hcl2.loads(text, serialization_options=options)
    except Exception as exc:  # lark's errors, and python-hcl2's own
        raise _syntax_error(exc) from None


def _syntax_error(exc: Exception) -> HclSyntaxError:
    line, column = getattr(exc, "line", None), getattr(exc, "column", None)
    token = getattr(exc, "token", None)
    if token is not None:
        text = str(token)
        if token.type == "$END":
            what = "unexpected end of input"
        elif not text.strip():
            what = "unexpected newline" if "\n" in text else "unexpected whitespace"
        else:
            what = f"unexpected {text.strip()!r}"
    elif getattr(exc, "char", None) is not None:
        what = f"unexpected character {exc.char!r}"  # type: ignore[attr-defined]
    else:
        what = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(line, int) and line > 0:
        return HclSyntaxError(what, line, column)
    return HclSyntaxError(what, None, None)
