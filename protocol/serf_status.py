"""Serf's member statuses, in a module of their own with no imports of ours: the CLI names them without loading
the gossip machinery (`protocol.serf` re-exports the class for everyone else)."""

from __future__ import annotations

import enum


class MemberStatus(enum.IntEnum):
    """serf's MemberStatus (the values are serf's)."""

    NONE = 0
    ALIVE = 1
    LEAVING = 2
    LEFT = 3
    FAILED = 4

    def __str__(self) -> str:
        return self.name.lower()
