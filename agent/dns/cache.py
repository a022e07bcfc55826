"""Bytes in, bytes out: the responder both servers share, with answers cached per snapshot.

Why a cache keyed by the question bytes: an answer depends only on the snapshot, the (lower-cased) question, the
transport and the client's EDNS size, so it is rendered once per snapshot and then served by splicing the query's
ID, RD/CD bits and question (its letter case as sent) into the stored bytes.  The common query never reaches
dnspython.  Service answers are the exception to "same bytes": Consul shuffles them per query, so their entry is
the compiled record set (``shuffled.ShuffledReply``) and each hit draws an order and joins pre-rendered pieces.
The cache is dropped whenever ``table.current`` is a different snapshot, so it is never stale: DNS
answers from exactly the snapshot the HTTP API reads.

Anything unusual (several questions, compression in the question, EDNS options we must echo, other opcodes,
garbage) takes the slow path: dnspython parses it, ``answer`` decides, nothing is cached.  Input that cannot be
parsed gets FORMERR when its ID can be read; shorter input, and responses, are dropped.  An exception while
answering is logged and becomes SERVFAIL: no input stops the responder.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs
import dns.exception
import dns.flags
import dns.message
import dns.rrset

from agent.dns.answer import answer, prepare, render
from agent.dns.services import ServiceAnswer
from agent.dns.shuffled import ShuffledReply

if TYPE_CHECKING:
    from agent.dns.settings import DnsSettings
    from agent.members import Snapshot

__all__ = ["CACHE_LIMIT", "Forward", "Responder", "ResponderStatistics", "error_reply"]

log = logging.getLogger("agent.dns")

CACHE_LIMIT = 50_000  # entries; past it the cache starts over (random names must not grow memory forever)
_ONE_QUESTION = b"\x00\x01\x00\x00\x00\x00"  # QDCOUNT 1, ANCOUNT 0, NSCOUNT 0
_OPT_TYPE = b"\x00\x29"
_ECS_OPTION = 8
_RD, _CD = 0x01, 0x10  # bits of header bytes 2 and 3


@attrs.frozen
class Forward:
    """Not ours: send ``wire`` (the client's query, parsed as ``query``) to the recursors."""

    query: dns.message.Message
    wire: bytes


@attrs.frozen
class ResponderStatistics:
    hits: int
    misses: int
    uncached: int
    entries: int
    snapshot_index: int


def error_reply(data: bytes, rcode: int) -> bytes | None:
    """A header-only reply (FORMERR, SERVFAIL) to whatever ``data`` is, if its ID can be read and it is a query."""
    if len(data) < 12 or data[2] & 0x80:
        return None
    # QR, the query's opcode and RD; no question (it may be what failed to parse).
    return data[:2] + bytes(((data[2] & 0x79) | 0x80, rcode & 0x0F)) + b"\x00" * 8


class Responder:
    """Answers raw queries from ``table.current``; one per server, shared by its UDP and TCP sides."""

    def __init__(self, table: Any, settings: DnsSettings, *, cache_limit: int = CACHE_LIMIT, metrics: Any = None,
                 metric_labels: dict[str, str] | None = None,
                 acl: Callable[[], Any] | None = None, rng: random.Random | None = None) -> None:  # fmt: skip
        #: The DNS token's current view (agent.acl.authorizer.Authorizer, None: ACLs off); answers are cached per
        #: view as they are per snapshot.
        self._acl = acl or (lambda: None)
        self._view: Any = None
        # Consul's timers, one series each (no per-query key building on this path)
        self._domain_query = metrics.series("consul.dns.domain_query", metric_labels) if metrics else None
        self._ptr_query = metrics.series("consul.dns.ptr_query", metric_labels) if metrics else None
        self._table = table
        self.settings = settings
        self._cache_limit = cache_limit
        self._cache: dict[tuple[bytes, bool, int], bytes | ShuffledReply] = {}
        self._rng = rng or random.Random()  # the answers' shuffle (tests pass a seeded one)
        self._snapshot: Snapshot | None = None
        self._hits = self._misses = self._uncached = 0

    def statistics(self) -> ResponderStatistics:
        index = self._snapshot.index if self._snapshot is not None else -1
        return ResponderStatistics(self._hits, self._misses, self._uncached, len(self._cache), index)

    def respond(self, data: bytes, tcp: bool) -> bytes | Forward | None:
        """The reply bytes, a Forward for the recursors, or None (drop).  Never raises."""
        started = time.perf_counter()
        try:
            reply = self._respond(data, tcp)
        except Exception:
            log.exception("dns: failed to answer a %d-byte query", len(data))
            reply = error_reply(data, 2)  # SERVFAIL
        if self._domain_query is not None and self._ptr_query is not None:
            reverse = data.find(b"\x04arpa\x00", 12) > 0 or data.find(b"\x04ARPA\x00", 12) > 0
            (self._ptr_query if reverse else self._domain_query).since(started)
        return reply

    def _respond(self, data: bytes, tcp: bool) -> bytes | Forward | None:
        snapshot = self._table.current
        view = self._acl()
        if snapshot is not self._snapshot or view is not self._view:
            self._cache.clear()
            self._snapshot = snapshot
            self._view = view
        n = len(data)
        # Fast path: a plain QUERY with one question and at most an OPT record.
        if n < 17 or data[2] & 0xF8 or data[4:10] != _ONE_QUESTION:
            return self._slow(data, tcp, snapshot)
        arcount = (data[10] << 8) | data[11]
        i = 12
        while True:
            length = data[i]
            if length == 0:
                break
            if length > 63:
                return self._slow(data, tcp, snapshot)  # a compression pointer or a reserved label type
            i += length + 1
            if i >= n:
                return self._slow(data, tcp, snapshot)
        qend = i + 5
        edns = -1
        if arcount == 0:
            if qend != n:
                return self._slow(data, tcp, snapshot)
        elif arcount == 1:
            edns = _plain_opt(data, qend)
            if edns < 0:
                return self._slow(data, tcp, snapshot)
        else:
            return self._slow(data, tcp, snapshot)
        key = (data[12:qend].lower(), tcp, edns)
        cached = self._cache.get(key)
        if cached is None:
            self._misses += 1
            built = self._build(data, key, tcp, snapshot)
            if not isinstance(built, bytes | ShuffledReply):
                return built
            cached = built
        else:
            self._hits += 1
        if cached.__class__ is not bytes:
            cached = cached.wire(self._rng)  # type: ignore[union-attr]  # a service answer: a fresh order
        return b"".join((
            data[:2],
            bytes((cached[2] | (data[2] & _RD), cached[3] | (data[3] & _CD))),
            cached[4:12],
            data[12:qend],
            cached[qend:],
        ))

    def _build(
        self, data: bytes, key: tuple[bytes, bool, int], tcp: bool, snapshot: Snapshot
    ) -> bytes | ShuffledReply | Forward | None:
        """Render the answer for a normalised query (ID 0, no RD/CD, lower-cased question) and cache it; a service
        answer is cached as its compiled record set, ordered afresh for every query."""
        try:
            query = dns.message.from_wire(data)
        except dns.exception.DNSException:
            return error_reply(data, 1)  # FORMERR
        question = query.question[0]
        normal = dns.message.Message(id=0)
        normal.flags = 0
        normal.question = [dns.rrset.RRset(question.name.canonicalize(), question.rdclass, question.rdtype)]
        if query.edns >= 0:
            normal.use_edns(query.edns, query.ednsflags, query.payload)
        prepared = prepare(normal, snapshot, self.settings, acl=self._view)
        if prepared is None:
            return Forward(query, data)
        if isinstance(prepared, ServiceAnswer):
            s = self.settings
            reply = ShuffledReply.compile(prepared, key[0], tcp=tcp, payload=key[2],
                                          udp_answer_limit=s.udp_answer_limit, enable_truncate=s.enable_truncate)
            self._store(key, reply)
            return reply
        wire = render(normal, prepared, self.settings, tcp=tcp)
        qend = len(key[0]) + 12
        if wire[12:qend] != key[0]:
            # Not the question layout we splice into (should not happen): answer this once, uncached.
            self._uncached += 1
            return self._slow(data, tcp, snapshot)
        self._store(key, wire)
        return wire

    def _store(self, key: tuple[bytes, bool, int], value: bytes | ShuffledReply) -> None:
        if len(self._cache) >= self._cache_limit:
            self._cache.clear()
        self._cache[key] = value

    def _slow(self, data: bytes, tcp: bool, snapshot: Snapshot) -> bytes | Forward | None:
        """dnspython parses, ``answer`` decides, nothing is cached."""
        self._uncached += 1
        try:
            query = dns.message.from_wire(data)
        except dns.message.ShortHeader:
            return None
        except Exception:
            return error_reply(data, 1)  # FORMERR: malformed, truncated, trailing junk, bad OPT...
        if query.flags & dns.flags.QR:
            return None  # never answer a response (reflection loops)
        response = answer(query, snapshot, self.settings, acl=self._view)
        if response is None:
            return Forward(query, data)
        return render(query, response, self.settings, tcp=tcp)


def _plain_opt(data: bytes, at: int) -> int:
    """The UDP size of an OPT record that ends the message at ``at`` (version 0, no option we must echo), else -1."""
    end = at + 11
    if end > len(data) or data[at] != 0 or data[at + 1:at + 3] != _OPT_TYPE or data[at + 6] != 0:
        return -1
    if data[at + 5] != 0:
        return -1  # extended RCODE bits in a query: let dnspython judge it
    rdlen = (data[at + 9] << 8) | data[at + 10]
    if end + rdlen != len(data):
        return -1
    pos = end
    while pos < len(data):
        if pos + 4 > len(data):
            return -1
        code = (data[pos] << 8) | data[pos + 1]
        length = (data[pos + 2] << 8) | data[pos + 3]
        if code == _ECS_OPTION:
            return -1
        pos += 4 + length
    if pos != len(data):
        return -1
    return (data[at + 3] << 8) | data[at + 4]
