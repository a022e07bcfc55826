"""What a handler sees of a request, parsed the way Go's net/http and url packages parse it.

Consul's behaviour at the edges (which query strings are errors, which paths are redirected, when a flag counts as
present) comes from Go's standard library, so this module copies those rules instead of Python's looser ones:
``url.ParseQuery`` refuses ``;`` and bad ``%`` escapes, a query flag is *present* even with no ``=``, and
``Query.get`` is ``Values.Get`` (the first value, ``""`` when absent).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import quote_plus, unquote_to_bytes, urlsplit

import attrs

from agent.gostrings import to_bytes

__all__ = ["BadTarget", "Query", "Request", "clean_path", "parse_target", "split_target"]

_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


class BadTarget(ValueError):
    """The request line's target is not a URL Go would accept: the server answers 400 Bad Request."""


def _unescape(text: str, *, plus_is_space: bool) -> str:
    if "%" not in text:  # nothing escaped (most keys, values and paths): only the pluses to read
        return text.replace("+", " ") if plus_is_space and "+" in text else text
    if _BAD_ESCAPE.search(text):
        raise ValueError(f"invalid URL escape in {text!r}")
    if plus_is_space:
        text = text.replace("+", " ")
    return unquote_to_bytes(text).decode("utf-8", errors="surrogateescape")  # Go keeps the bytes


@attrs.frozen
class Query:
    """Go's ``url.Values``: ordered (key, value) pairs plus whether ``url.ParseQuery`` reported an error."""

    pairs: tuple[tuple[str, str], ...] = ()
    error: str | None = None

    @classmethod
    def parse(cls, raw: str) -> Query:
        """``url.ParseQuery``: keep every good pair, remember the first error (Consul checks it, handlers don't)."""
        pairs: list[tuple[str, str]] = []
        error: str | None = None
        for part in raw.split("&"):
            if not part:
                continue
            if ";" in part:
                error = error or "invalid semicolon separator in query"
                continue
            key, _, value = part.partition("=")
            try:
                pairs.append((_unescape(key, plus_is_space=True), _unescape(value, plus_is_space=True)))
            except ValueError as exc:
                error = error or str(exc)
        return cls(tuple(pairs), error)

    def get(self, key: str) -> str:
        """The first value of ``key``, ``""`` if absent (``Values.Get``)."""
        for k, v in self.pairs:
            if k == key:
                return v
        return ""

    def has(self, key: str) -> bool:
        """Presence, whatever the value: how Consul reads ``stale``, ``consistent``, ``pretty``, ``prune``."""
        return any(k == key for k, _ in self.pairs)

    def get_all(self, key: str) -> list[str]:
        return [v for k, v in self.pairs if k == key]

    def encode(self) -> str:
        """``Values.Encode``: sorted by key (each key's values in order), every part ``QueryEscape``d."""
        def escape(text: str) -> str:
            return quote_plus(to_bytes(text), safe="-_.~")

        return "&".join(f"{escape(k)}={escape(v)}" for k, v in sorted(self.pairs, key=lambda p: to_bytes(p[0])))

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.pairs)


@attrs.frozen
class Request:
    """One complete request: head, decoded path, parsed query and the (size-capped) body."""

    method: str
    target: str
    path: str
    raw_query: str
    query: Query
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""
    remote: str = ""

    def header(self, name: str) -> str:
        """The first header called ``name`` (case-insensitive), ``""`` if absent: Go's ``Header.Get``."""
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return ""


def header_tokens(value: str) -> set[str]:
    """A comma-separated header value's tokens, case-folded (``Connection: keep-alive, Upgrade``)."""
    return {t.strip().lower() for t in value.split(",")}


def keep_alive(request: Request, version: bytes) -> bool:
    """Does the client keep the connection after this request?  h11's rule: HTTP/1.1 and no ``close`` among the
    ``Connection`` headers' tokens."""
    if version != b"1.1":
        return False
    return not any(k == "connection" and "close" in header_tokens(v) for k, v in request.headers)


def split_target(target: str) -> tuple[str, str]:
    """The escaped (still percent-encoded) path and the raw query of a request target (origin or absolute form)."""
    if target.startswith(("http://", "https://")):
        parts = urlsplit(target)
        raw_path, raw_query = parts.path or "/", parts.query
    elif target.startswith("/"):
        raw_path, _, raw_query = target.partition("?")
    else:
        raise BadTarget(f"invalid request target {target!r}")
    return raw_path.split("#", 1)[0], raw_query


def parse_target(target: str) -> tuple[str, str]:
    """The decoded path and raw query of a request target (origin-form or absolute-form), as Go parses them."""
    raw_path, raw_query = split_target(target)
    try:
        path = _unescape(raw_path, plus_is_space=False)
    except ValueError as exc:
        raise BadTarget(str(exc)) from None
    return path, raw_query


def clean_path(path: str) -> str:
    """Go's ``cleanPath`` (net/http): ``path.Clean`` that keeps a trailing slash.  A mismatch means a 301."""
    if path.startswith("/") and "//" not in path and "/." not in path:
        return path  # already clean (nearly every request): no segment to drop
    if not path:
        return "/"
    if not path.startswith("/"):
        path = "/" + path
    out: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if out:
                out.pop()
            continue
        out.append(segment)
    cleaned = "/" + "/".join(out)
    if path.endswith("/") and cleaned != "/":
        cleaned += "/"
    return cleaned
