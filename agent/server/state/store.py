"""The current `State` and the Raft adapter: ``apply(entry) -> result``, ``snapshot() -> bytes``, ``restore``.

Like agent/members.py's MemberTable: one writer (the Raft driver's apply) swaps ``current`` for a new frozen
`State` per entry; readers take ``current`` (one attribute read) and never lock.  After each swap the
`WatchHub` wakes the blocking queries whose interests the entry touched, and only those.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from agent.watch import WatchHub
from protocol.raft.types import Entry, EntryKind

from .apply import Applied, Failed, apply_command
from .codec import decode_state, encode_state
from .commands import CommandError, decode
from .tables import State

__all__ = ["StateStore"]


class StateStore:
    """Holds ``current``; `apply`/`snapshot`/`restore` are the driver's apply interface."""

    def __init__(self, state: State | None = None) -> None:
        self.current: State = state if state is not None else State()
        self.hub = WatchHub()

    def apply(self, entry: Entry) -> Any:
        """Apply a committed entry; the result for its proposer (`Failed` for a refused or undecodable one).

        Entries other than NORMAL ones with data (configuration changes, a leader's empty no-op) only move
        ``applied``.  An entry at or below ``applied`` was applied already (a replay after restore): ignored."""
        state = self.current
        if entry.index <= state.applied:
            return None
        if entry.kind is not EntryKind.NORMAL or not entry.data:
            self.current = attrs.evolve(state, applied=entry.index)
            return None
        try:
            command = decode(entry.data)
        except CommandError as exc:
            self.current = attrs.evolve(state, applied=entry.index)
            return Failed(str(exc))
        return self._publish(apply_command(state, entry.index, command))

    def _publish(self, applied: Applied) -> Any:
        self.current = applied.state
        if applied.changes:
            self.hub.notify(applied.changes)
        return applied.result

    def snapshot(self) -> bytes:
        return encode_state(self.current)

    def snapshot_source(self) -> Callable[[], bytes]:
        """The current version, encoded when called: ``current`` is never mutated, so the Raft driver encodes
        it in a worker thread while later entries are applied."""
        state = self.current
        return lambda: encode_state(state)

    def restore(self, data: bytes) -> None:
        """Replace everything with a snapshot's state and wake every waiter (anything may have changed).

        Raises `codec.SnapshotError` on bad bytes, leaving ``current`` as it was."""
        state = decode_state(data)
        self.current = state
        self.hub.wake_all()
