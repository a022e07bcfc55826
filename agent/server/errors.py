"""Errors of the raft data dir: each names the file (and offset) so the agent can exit 1 saying why."""

from __future__ import annotations

from pathlib import Path

from agent.datadir import DataDirError


class StoreError(DataDirError):
    """The raft store cannot open or write its files."""


class StoreCorrupt(StoreError):
    """Damage that is not a torn tail: a bad record before the end, a gap in the log, an undecodable file."""

    def __init__(self, path: Path, offset: int | None, reason: str) -> None:
        where = f"{path} at offset {offset}" if offset is not None else str(path)
        super().__init__(
            f"raft data corrupt: {where}: {reason}; restore the data dir from a backup or remove "
            f"{path.parent} to rejoin the cluster as a new server"
        )
        self.path = path
        self.offset = offset
        self.reason = reason


class ClusterMismatch(StoreError):
    """The data dir holds another cluster's Raft state."""
