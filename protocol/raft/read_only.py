"""Linearizable reads without writing the log.

ReadIndex (§6.4 of the Raft thesis): the leader notes its commit index for a read, then confirms it is still
the leader by a heartbeat round a quorum acknowledges; the read is served once the state machine has
applied that index. A round confirms every read queued before it, so reads are batched.

Lease: a quorum that acknowledged a heartbeat sent at leader tick t will not vote for anyone else for an
election timeout after receiving it (check-quorum makes followers ignore votes while they hear a leader),
so until t + lease_ticks the leader may answer reads at its commit index without a round. Leadership
transfer bypasses that promise, so a transfer ends the lease for the rest of the term.
"""

from __future__ import annotations

from collections import OrderedDict

import attrs

from .quorum import has_quorum, quorum_size


@attrs.define
class ReadRequest:
    index: int
    context: bytes
    origin: str  # who asked: the leader itself or a follower to answer
    acks: set[str] = attrs.Factory(set)


class ReadIndexQueue:
    def __init__(self) -> None:
        self._pending: OrderedDict[bytes, ReadRequest] = OrderedDict()

    def add(self, index: int, context: bytes, origin: str) -> bool:
        if context in self._pending:
            return False
        self._pending[context] = ReadRequest(index, context, origin)
        return True

    def last_context(self) -> bytes:
        return next(reversed(self._pending)) if self._pending else b""

    def ack(self, voter: str, context: bytes, voters: frozenset[str]) -> list[ReadRequest]:
        """Record a heartbeat acknowledgement for `context`; the requests it confirms, oldest first."""
        req = self._pending.get(context)
        if req is None:
            return []
        req.acks.add(voter)
        if not has_quorum(voters, req.acks):
            return []
        done: list[ReadRequest] = []
        while self._pending:
            ctx, r = self._pending.popitem(last=False)
            done.append(r)
            if ctx == context:
                break
        return done

    def __len__(self) -> int:
        return len(self._pending)


class Lease:
    """Heartbeat rounds numbered per term: the tick each was sent at and the last one each peer answered."""

    def __init__(self) -> None:
        self.round = 0
        self.sent_at: dict[int, int] = {}
        self.acked: dict[str, int] = {}
        self.revoked = False

    def next_round(self, now: int) -> int:
        self.round += 1
        self.sent_at[self.round] = now
        return self.round

    def ack(self, peer: str, round_: int) -> None:
        if round_ in self.sent_at and round_ > self.acked.get(peer, 0):
            self.acked[peer] = round_

    def prune(self, keep_after_tick: int) -> None:
        """Forget rounds too old to matter, but keep each peer's last acknowledged one."""
        keep = set(self.acked.values())
        for r in [r for r, t in self.sent_at.items() if t < keep_after_tick and r not in keep]:
            del self.sent_at[r]

    def valid(self, me: str, voters: frozenset[str], now: int, lease_ticks: int) -> bool:
        if self.revoked or not voters:
            return False
        starts = sorted((now if v == me else self.sent_at[self.acked[v]]
                         for v in voters if v == me or v in self.acked), reverse=True)
        q = quorum_size(voters)
        if len(starts) < q:
            return False
        return now < starts[q - 1] + lease_ticks
