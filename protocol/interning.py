"""Process-wide tables of immutable values, shared by every protocol machine in the process (issue 14).

In a simulation of N members in one process, each member keeps a record about every other: N^2 records whose
values (addresses, tags, encoded and decoded node states, Lamport times, broadcast queue ids) are mostly equal, so
they are interned once for the process instead of copied per record. A single agent meets few distinct values: by
default each table keeps at most `AGENT_LIMIT` entries and queue ids are not shared, so an agent does not carry a
simulator's tables. `share_widely` (the simulator calls it) raises both. A table that is full is cleared:
interning saves memory and decoding, it is never needed for correctness, and hostile input cannot grow a table
past its bound.
"""

from __future__ import annotations

from typing import Any, TypeVar

__all__ = ["AGENT_LIMIT", "QUEUE_IDS", "SIMULATION_LIMIT", "bounded_put", "limit", "share_widely"]

V = TypeVar("V")

AGENT_LIMIT = 4096
SIMULATION_LIMIT = 1 << 16

#: The broadcast ids 0, 1, 2, ... as the same int objects for every queue in the process (each queue counts from
#: 1; an int past 256 is a 32-byte object, and each member of a large simulation queues thousands).
#: Empty for an agent; extended in place by `share_widely`, so a module holding a reference sees it grow.
QUEUE_IDS: list[int] = []

_limit = AGENT_LIMIT


def limit() -> int:
    """The most entries one table keeps."""
    return _limit


def bounded_put(table: dict[Any, V], key: Any, value: V) -> V:
    """``table[key] = value``, clearing the table first when it is full; returns ``value``."""
    if len(table) >= _limit:
        table.clear()
    table[key] = value
    return value


def share_widely(entries: int = SIMULATION_LIMIT, queue_ids: int = SIMULATION_LIMIT) -> None:
    """For a process that runs many members (the simulator): larger tables, and shared queue ids."""
    global _limit
    _limit = max(_limit, entries)
    if len(QUEUE_IDS) < queue_ids:
        QUEUE_IDS.extend(range(len(QUEUE_IDS), queue_ids))
