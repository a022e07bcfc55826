"""Responses as Consul writes them: Go's JSON (compact, or 4-space indented plus a newline), plain-text errors,
canonical header names, and gzip for large bodies when the client asks (NYTimes gziphandler, min size 1400).
"""

from __future__ import annotations

import email.utils
import gzip
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

import attrs

from agent.gostrings import go_json_text, valid_utf8

__all__ = [
    "GZIP_MIN_SIZE",
    "TEXT_PLAIN",
    "Encoded",
    "Response",
    "go_json",
    "maybe_gzip",
    "reason_phrase",
    "response_head",
    "wire_headers",
]

TEXT_PLAIN = "text/plain; charset=utf-8"  # what Go sniffs for a plain-text body
GZIP_MIN_SIZE = 1400


def go_json(obj: Any, *, pretty: bool) -> bytes:
    """``json.Marshal`` (compact) or ``json.MarshalIndent(obj, "", "    ")`` + ``\\n`` (``?pretty``, ``-dev``)."""
    text = go_json_text(obj, "    " if pretty else None)
    return (text + "\n" if pretty else text).encode("utf-8")


@attrs.frozen
class Encoded:
    """An endpoint's result already written as its JSON answer (`go_json`, compact or pretty as the request
    asks): sent as it is (agent/http/memo.py keeps such answers per snapshot)."""

    body: bytes


@attrs.define
class Response:
    """Status, headers (canonical names, in insertion order) and body; the server adds Date and Content-Length."""

    status: int = 200
    headers: dict[str, str] = attrs.Factory(dict)
    body: bytes = b""
    close: bool = False  # send Connection: close and drop the connection afterwards
    #: A streamed body (``/v1/agent/monitor``): the server sends the head, then calls ``stream(send)``; every
    #: ``await send(chunk)`` goes out at once (chunked), and the response ends when ``stream`` returns.
    stream: Callable[[Callable[[bytes], Awaitable[None]]], Awaitable[None]] | None = None

    @classmethod
    def text(cls, status: int, text: str, headers: dict[str, str] | None = None) -> Response:
        """A plain-text body, as Go's content sniffing labels it; an empty body gets no Content-Type."""
        h = dict(headers or {})
        if text:
            h["Content-Type"] = TEXT_PLAIN
        return cls(status, h, valid_utf8(text).encode("utf-8"))


def _accepts_gzip(accept_encoding: str) -> bool:
    for item in accept_encoding.split(","):
        name, _, params = item.strip().partition(";")
        if name.strip().lower() not in ("gzip", "*"):
            continue
        q = params.strip()
        if q.startswith("q="):
            try:
                return float(q[2:]) > 0
            except ValueError:
                return False
        return True
    return False


_GZIPPED: dict[bytes, bytes] = {}  # body -> its gzip, for the bodies memoized answers send again and again
_GZIPPED_MAX = 16


def _gzipped(body: bytes) -> bytes:
    """``body`` compressed (level 6, no mtime: the same bytes every time), the last few remembered."""
    packed = _GZIPPED.get(body)
    if packed is None:
        packed = gzip.compress(body, compresslevel=6, mtime=0)
        if len(_GZIPPED) >= _GZIPPED_MAX:
            del _GZIPPED[next(iter(_GZIPPED))]
        _GZIPPED[body] = packed
    return packed


def maybe_gzip(response: Response, accept_encoding: str) -> Response:
    """Compress bodies of at least 1400 bytes for clients that accept gzip (python-requests does)."""
    response.headers.setdefault("Vary", "Accept-Encoding")
    if response.stream is not None or len(response.body) < GZIP_MIN_SIZE or not _accepts_gzip(accept_encoding):
        return response
    response.body = _gzipped(response.body)
    response.headers["Content-Encoding"] = "gzip"
    return response


_date: tuple[int, str] = (0, "")


def http_date() -> str:
    """The Date header's value (RFC 7231's IMF-fixdate), formatted once per second."""
    global _date
    now = int(time.time())
    if _date[0] != now:
        _date = (now, email.utils.formatdate(now, usegmt=True))
    return _date[1]


def wire_headers(response: Response, *, close: bool = False) -> list[tuple[str, str]]:
    """The header list to send: the response's own headers sorted as Go writes them, plus Date/Content-Length
    (and ``Connection: close`` when the response or the caller closes the connection after it)."""
    headers = dict(response.headers)
    headers["Date"] = http_date()
    if response.stream is None:
        headers["Content-Length"] = str(len(response.body))
    if response.close or close:
        headers["Connection"] = "close"
    return sorted(headers.items())


def reason_phrase(status: int) -> str:
    """The status line's reason (``OK``, ``Not Found``; empty for a code Python does not name)."""
    reason = _PHRASES.get(status)
    if reason is None:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = ""
        _PHRASES[status] = reason
    return reason


_PHRASES: dict[int, str] = {}


def response_head(response: Response, *, close: bool) -> bytes | None:
    """An HTTP/1.1 status line and headers for a response of known length, as h11 writes them, without h11's
    validation of every header (which costs more than the rest of a memoized answer).  The names are ours; a
    value holding a line break or a NUL (which h11 refuses) makes this None, and the caller goes through h11."""
    headers = wire_headers(response, close=close)
    status = response.status
    text = "".join([f"HTTP/1.1 {status} {reason_phrase(status)}\r\n", *[f"{k}: {v}\r\n" for k, v in headers], "\r\n"])
    lines = len(headers) + 2
    if text.count("\n") != lines or text.count("\r") != lines or "\0" in text:
        return None
    return text.encode("latin-1")
