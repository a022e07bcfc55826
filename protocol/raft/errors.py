"""What the core raises at its callers: a request it cannot take, said precisely, and nothing changed."""

from __future__ import annotations


class RaftError(Exception):
    """Base of the core's errors."""


class ConfigError(RaftError, ValueError):
    """A `Config` that cannot run safely (the message names the knob)."""


class NotLeader(RaftError):
    """Only the leader takes this request; `leader` is the leader this node knows of ("" when none)."""

    def __init__(self, leader: str, what: str = "request") -> None:
        self.leader = leader
        where = f"the leader is {leader!r}" if leader else "no leader is known"
        super().__init__(f"not the leader: {what} refused ({where})")


class ProposalDropped(RaftError):
    """The leader cannot take a proposal now (a leadership transfer is in progress, or it is being removed)."""


class ConfChangeRejected(RaftError):
    """A membership change that is invalid or must wait (another change is not applied yet)."""
