"""Consul's answer truncation (``agent/dns.go`` trimUDPResponse, trimTCPResponse, dnsBinaryTruncate), once.

Two representations are trimmed: a dnspython message (`agent.dns.answer`) and pre-encoded pieces of a cached,
reshuffled service answer (`agent.dns.shuffled`).  Both implement `Trimmable`; the policy (how many answers a
transport takes, when to measure uncompressed, the 8-byte UDP slack, binary then linear cutting) lives here only.
"""

from __future__ import annotations

from typing import Protocol

__all__ = [
    "DEFAULT_UDP_SIZE",
    "MAX_TCP_ANSWERS",
    "MAX_TCP_SIZE",
    "MAX_UDP_ANSWERS",
    "MAX_UDP_DATAGRAM",
    "Trimmable",
    "trim",
]

DEFAULT_UDP_SIZE = 512
MAX_UDP_ANSWERS = 8  # Consul's ceiling on udp_answer_limit
MAX_UDP_DATAGRAM = 65535 - 68  # Consul: a larger EDNS buffer is clamped to this
MAX_TCP_SIZE = 65523  # Consul: 64k minus DNS overhead
MAX_TCP_ANSWERS = 4096  # 1024 for SRV


class Trimmable(Protocol):
    """An answer being trimmed: its answer count, dropping its authority section (the first thing a shrink
    does), a cut to the first ``n`` answers (which, as Consul's syncExtra
    does, keeps only each remaining SRV target's address record), its wire size, and a save/restore of the
    answers for the binary search's probes."""

    def count(self) -> int: ...

    def drop_authority(self) -> None: ...

    def cut(self, n: int) -> None: ...

    def size(self, compressed: bool) -> int: ...

    def save(self) -> object: ...

    def restore(self, saved: object) -> None: ...


def trim(answer: Trimmable, *, tcp: bool, payload: int, udp_answer_limit: int, srv: bool) -> tuple[int, bool]:
    """Trim ``answer`` for its transport; returns the byte limit the reply must respect and whether answers
    were cut (what sets TC when ``enable_truncate``).  ``payload`` is the client's EDNS buffer (0 without EDNS)."""
    original = answer.count()
    if tcp:
        limit = 65535
        if answer.count() > MAX_TCP_ANSWERS:
            answer.cut(1024 if srv else MAX_TCP_ANSWERS)
        _shrink(answer, MAX_TCP_SIZE, 0, compressed=True)
    else:
        limit = min(max(DEFAULT_UDP_SIZE, payload), MAX_UDP_DATAGRAM)
        compressed = True
        max_answers = min(MAX_UDP_ANSWERS, udp_answer_limit)
        if limit == DEFAULT_UDP_SIZE and answer.count() > max_answers:
            compressed = False  # Consul measures non-EDNS answers uncompressed, then sends them compressed
            answer.cut(max_answers)
        _shrink(answer, limit, 8, compressed=compressed)
    return limit, answer.count() < original


def _shrink(answer: Trimmable, max_size: int, slack: int, *, compressed: bool) -> None:
    while answer.count() > 1 and answer.size(compressed) > max_size - slack:
        answer.drop_authority()
        if answer.size(compressed) - max_size > 100:
            answer.cut(_binary_cut(answer, max_size, compressed))
        else:
            answer.cut(answer.count() - 1)


def _binary_cut(answer: Trimmable, max_size: int, compressed: bool) -> int:
    """dnsBinaryTruncate: the largest answer count that fits (within 10 bytes is good enough)."""
    saved = answer.save()
    start, end = 0, answer.count() + 1
    best = None
    while end - start > 1:
        median = start + (end - start) // 2
        answer.cut(median)
        length = answer.size(compressed)
        answer.restore(saved)
        if length <= max_size:
            if max_size - length < 10:
                best = median
                break
            start = median
        else:
            end = median
    return max(1, best if best is not None else start)
