"""The core's knobs, counted in ticks (the driver decides how long a tick is; Consul's scale is in docs/raft.md)."""

from __future__ import annotations

import enum

import attrs

from .errors import ConfigError


class ReadOnlyOption(enum.Enum):
    """SAFE confirms leadership with a heartbeat round per read batch; LEASE trusts a quorum's recent
    heartbeat acknowledgements for a little less than an election timeout (needs check_quorum)."""

    SAFE = "safe"
    LEASE = "lease"


@attrs.frozen(kw_only=True)
class Config:
    id: str
    election_tick: int = 10  # a follower campaigns after a random [election_tick, 2*election_tick) quiet ticks
    heartbeat_tick: int = 1
    max_size_per_msg: int = 1 << 20  # bytes of entry data per APPEND (at least one entry is always sent)
    max_inflight_msgs: int = 256  # APPENDs in flight to one follower while replicating
    check_quorum: bool = True  # a leader that has not heard from a quorum for an election timeout steps down
    pre_vote: bool = True  # campaign only after a pre-vote round a quorum would grant
    read_only: ReadOnlyOption = ReadOnlyOption.SAFE
    lease_margin_ticks: int = 1  # LEASE: ticks of clock drift the lease gives away
    forward_proposals: bool = False  # a follower forwards proposals to the leader instead of refusing them
    applied: int = 0  # the state machine's applied index at start (at least the snapshot's index)

    def validate(self) -> None:
        if not self.id:
            raise ConfigError("id: a server needs a non-empty id")
        if self.heartbeat_tick <= 0:
            raise ConfigError(f"heartbeat_tick: must be positive, got {self.heartbeat_tick}")
        if self.election_tick <= self.heartbeat_tick:
            raise ConfigError(
                f"election_tick ({self.election_tick}) must exceed heartbeat_tick ({self.heartbeat_tick})")
        if self.max_inflight_msgs <= 0:
            raise ConfigError(f"max_inflight_msgs: must be positive, got {self.max_inflight_msgs}")
        if self.max_size_per_msg <= 0:
            raise ConfigError(f"max_size_per_msg: must be positive, got {self.max_size_per_msg}")
        if self.read_only is ReadOnlyOption.LEASE:
            if not self.check_quorum:
                raise ConfigError("read_only=LEASE needs check_quorum: without it a deposed leader keeps its lease")
            if self.lease_ticks() <= self.heartbeat_tick:
                raise ConfigError(
                    f"read_only=LEASE: election_tick {self.election_tick} leaves a lease of {self.lease_ticks()} "
                    f"ticks, not more than heartbeat_tick {self.heartbeat_tick}")

    def lease_ticks(self) -> int:
        """How long a quorum's acknowledgement of a heartbeat sent at tick t keeps the lease: followers refuse
        votes for election_tick of their ticks after hearing the leader; one tick is lost at each end to
        tick granularity, and the margin to drift."""
        return self.election_tick - 2 - self.lease_margin_ticks
