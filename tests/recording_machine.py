"""State machines the Raft driver applies committed commands to (`agent.server.driver.StateMachine`).

`RecordingMachine` is the raft tests' machine: it keeps every applied command as
``(index, term, data)`` and answers each with its ``(index, term)``, so tests can see exactly what committed where.
"""

from __future__ import annotations

from collections.abc import Callable

import msgpack

from protocol.raft.types import Entry


class RecordingMachine:
    """Applies nothing but remembers everything (bounded by snapshots: `snapshot` keeps the whole record)."""

    def __init__(self) -> None:
        self.applied: list[tuple[int, int, bytes]] = []

    def apply(self, entry: Entry) -> tuple[int, int]:
        self.applied.append((entry.index, entry.term, entry.data))
        return entry.index, entry.term

    def snapshot(self) -> bytes:
        return msgpack.packb([list(item) for item in self.applied], use_bin_type=True)

    def snapshot_source(self) -> Callable[[], bytes]:
        items = list(self.applied)  # the list grows as entries apply: encode a copy
        return lambda: msgpack.packb([list(item) for item in items], use_bin_type=True)

    def restore(self, data: bytes) -> None:
        self.applied = [(int(i), int(t), bytes(d)) for i, t, d in msgpack.unpackb(data, raw=False)] if data else []
