"""Majorities: the index a quorum of voters has, and the outcome of a vote."""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping


class VoteResult(enum.Enum):
    PENDING = 0
    WON = 1
    LOST = 2


def quorum_size(voters: Collection[str]) -> int:
    return len(voters) // 2 + 1


def committed_index(voters: Collection[str], match: Mapping[str, int]) -> int:
    """The highest index that a majority of `voters` hold (0 with no voters)."""
    if not voters:
        return 0
    held = sorted((match.get(v, 0) for v in voters), reverse=True)
    return held[quorum_size(voters) - 1]


def vote_result(voters: Collection[str], votes: Mapping[str, bool]) -> VoteResult:
    granted = sum(1 for v in voters if votes.get(v) is True)
    rejected = sum(1 for v in voters if votes.get(v) is False)
    q = quorum_size(voters)
    if granted >= q:
        return VoteResult.WON
    if len(voters) - rejected < q:
        return VoteResult.LOST
    return VoteResult.PENDING


def has_quorum(voters: Collection[str], ids: Collection[str]) -> bool:
    return bool(voters) and sum(1 for v in voters if v in ids) >= quorum_size(voters)
