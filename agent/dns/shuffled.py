"""A service answer kept as wire pieces: shuffled, trimmed and joined per query without dnspython.

Why: Consul shuffles service answers on every query, so one cached reply per (snapshot, question) would serve the
same order until the next snapshot.  ``ShuffledReply`` renders each record once (``compile``) and then, per query,
draws a Fisher-Yates order, applies Consul's trimming on the pieces' sizes (``render``'s rules: the UDP answer cap
and 512 bytes measured uncompressed without EDNS0, the client's buffer with it, 64 KiB over TCP; after a cut only
the address record of each remaining SRV target stays in the additional section) and joins bytes.

Pieces are position-independent: answer owners are a pointer to the question (they are the question name), the
additional records' owners are compressed against the question's suffixes only (``consul.``), and record data is
never compressed (SRV targets must not be).  So every piece has a fixed size whatever the order, and the message
size is a sum.  The price: the additional owners are a few bytes longer than with full compression.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Sequence

import attrs
import dns.flags
import dns.name
import dns.rdata

from agent.dns.services import ServiceAnswer
from agent.dns.trim import trim

__all__ = ["ShuffledReply"]

_RR_HEADER = struct.Struct("!HHIH")
_POINTER = struct.Struct("!H")
_OPT_ECHO = b"\x00\x00\x29%s\x00\x00\x00\x00\x00\x00"


@attrs.frozen
class _Piece:
    """An answer record: fixed bytes (its owner is a pointer to the question)."""

    wire: bytes
    plain: int  # uncompressed size (what Consul measures against 512 bytes without EDNS0)


@attrs.frozen
class _Group:
    """The additional records of one owner name; the owner is compressed per query (it depends on the position)."""

    labels: tuple[bytes, ...]  # wire form of each label (length byte + label), root excluded
    keys: tuple[tuple[bytes, ...], ...]  # the lower-cased suffix starting at each label: the compression keys
    tails: tuple[bytes, ...]  # per record: type, class, TTL, length, data
    plain: tuple[int, ...]  # per record: uncompressed size


def _suffix_offsets(qname: dns.name.Name) -> dict[tuple[bytes, ...], int]:
    """Where each suffix of the question name starts in the message (the question is at offset 12)."""
    out: dict[tuple[bytes, ...], int] = {}
    offset = 12
    labels = tuple(label.lower() for label in qname.labels[:-1])
    for i in range(len(labels)):
        out[labels[i:]] = offset
        offset += len(labels[i]) + 1
    return out


def _tail(ttl: int, rdata: dns.rdata.Rdata) -> bytes:
    data = rdata.to_wire()  # never compressed: SRV targets must not be
    assert data is not None
    return _RR_HEADER.pack(rdata.rdtype, rdata.rdclass, ttl, len(data)) + data


def _answer_piece(qname: dns.name.Name, ttl: int, rdata: dns.rdata.Rdata) -> _Piece:
    tail = _tail(ttl, rdata)
    return _Piece(b"\xc0\x0c" + tail, len(qname.to_wire()) + len(tail))


def _group(name: dns.name.Name, ttl: int, rdatas: Sequence[dns.rdata.Rdata]) -> _Group:
    labels = name.labels[:-1]
    tails = tuple(_tail(ttl, rd) for rd in rdatas)
    lowered = tuple(label.lower() for label in labels)
    return _Group(tuple(bytes((len(label),)) + label for label in labels),
                  tuple(lowered[i:] for i in range(len(lowered))), tails,
                  tuple(len(name.to_wire()) + len(t) for t in tails))  # fmt: skip


def _encode(groups: Sequence[_Group], seed: dict[tuple[bytes, ...], int], pos: int, first_only: bool) -> list[bytes]:
    """The additional records of ``groups`` from message offset ``pos``, owners compressed exactly as dnspython
    compresses them (longest known suffix becomes a pointer; new suffixes below 0x4000 become known)."""
    known = dict(seed)
    out: list[bytes] = []
    for group in groups:
        for tail in group.tails[:1] if first_only else group.tails:
            labels, keys = group.labels, group.keys
            parts: list[bytes] = []
            at = pos
            for i, key in enumerate(keys):
                ptr = known.get(key)
                if ptr is not None:
                    parts.append(_POINTER.pack(0xC000 | ptr))
                    break
                if at <= 0x3FFF:
                    known[key] = at
                parts.append(labels[i])
                at += len(labels[i])
            else:
                parts.append(b"\x00")
            parts.append(tail)
            piece = b"".join(parts)
            out.append(piece)
            pos += len(piece)
    return out


@attrs.define
class ShuffledReply:
    """The compiled reply for one (snapshot, normalised question, transport, EDNS size)."""

    flags: int  # QR, AA, RA as the answer set them (the client's RD/CD are spliced in by the cache)
    question: bytes
    answers: tuple[_Piece, ...]
    targets: tuple[int, ...]  # per answer: its SRV target's group, -1
    metas: tuple[int, ...]  # per answer: the node-meta group when it is not the target, -1
    groups: tuple[_Group, ...]  # additional records by owner name; the address record first
    seed: dict[tuple[bytes, ...], int]
    service: ServiceAnswer
    tcp: bool
    payload: int  # the client's EDNS0 size, -1 without EDNS0
    udp_answer_limit: int
    enable_truncate: bool

    @classmethod
    def compile(cls, service: ServiceAnswer, question: bytes, *, tcp: bool, payload: int, udp_answer_limit: int,
                enable_truncate: bool) -> ShuffledReply:  # fmt: skip
        ttl = service.ttl
        answers = tuple(_answer_piece(service.qname, ttl, r.rdata) for r in service.records)
        groups = tuple(_group(e.name, ttl, e.rdatas) for e in service.extras)
        flags = int(service.response.flags & ~(dns.flags.RD | dns.flags.CD))
        return cls(flags, question, answers, tuple(r.target for r in service.records),
                   tuple(r.meta for r in service.records), groups, _suffix_offsets(service.qname), service, tcp,
                   payload, udp_answer_limit, enable_truncate)

    def wire(self, rng: random.Random) -> bytes:
        """One reply: a fresh order, trimmed for the transport, as wire bytes with ID 0."""
        order = self.service.order(rng)
        original = len(order)
        opt = b"" if self.payload < 0 else _OPT_ECHO % struct.pack("!H", self.payload)
        fixed = 12 + len(self.question) + len(opt)
        trimmed = _Trim(self, order, fixed)
        limit, _ = trim(trimmed, tcp=self.tcp, payload=max(self.payload, 0), udp_answer_limit=self.udp_answer_limit,
                        srv=self.service.srv)
        extras = trimmed.extras()
        if fixed + trimmed.answer_size(False) + sum(map(len, extras)) > limit:
            extras = []  # never send more than the client can take: additional records go first
        flags = self.flags
        if len(trimmed.order) < original and self.enable_truncate:
            flags |= dns.flags.TC
        head = struct.pack("!HHHHHH", 0, flags, 1, len(trimmed.order), 0, len(extras) + (1 if opt else 0))
        return b"".join((head, self.question, *(self.answers[i].wire for i in trimmed.order),
                         *extras, opt))  # fmt: skip


class _Trim:
    """An answer of pre-encoded pieces, as `agent.dns.trim` trims it."""

    def __init__(self, reply: ShuffledReply, order: list[int], fixed: int) -> None:
        self.reply = reply
        self.order = order
        self.fixed = fixed
        self.synced = False  # after a cut, only the address record of each SRV target remains
        self.chosen: list[_Group] = []

    def cut(self, n: int) -> None:
        self.order = self.order[:n]
        self.synced = True

    def extras(self) -> list[bytes]:
        """The additional records for the current answers, encoded at their place in the message."""
        reply = self.reply
        groups: list[_Group] = []
        seen: set[int] = set()
        for i in self.order:
            for group in (reply.targets[i],) if self.synced else (reply.targets[i], reply.metas[i]):
                if group >= 0 and group not in seen:
                    seen.add(group)
                    groups.append(reply.groups[group])
        self.chosen = groups
        start = len(reply.question) + 12 + self.answer_size(False)
        return _encode(groups, reply.seed, start, self.synced)

    def answer_size(self, plain: bool, order: Sequence[int] | None = None) -> int:
        answers = self.reply.answers
        if plain:
            return sum(answers[i].plain for i in (self.order if order is None else order))
        return sum(len(answers[i].wire) for i in (self.order if order is None else order))

    def count(self) -> int:
        return len(self.order)

    def drop_authority(self) -> None:
        """A cached service answer has no authority section."""

    def save(self) -> object:
        return self.order, self.synced

    def restore(self, saved: object) -> None:
        self.order, self.synced = saved  # type: ignore[misc]

    def size(self, compressed: bool) -> int:
        extras = self.extras()
        if not compressed:
            extra = sum(g.plain[0] if self.synced else sum(g.plain) for g in self.chosen)
        else:
            extra = sum(map(len, extras))
        return self.fixed + self.answer_size(not compressed) + extra
