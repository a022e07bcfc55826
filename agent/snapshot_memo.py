"""Values derived from a snapshot, built once while the snapshot stands.

Everything the agent reads from the member table is a pure function of one immutable snapshot (and a few other
immutable sources: the config, the store's tables), so a derived value (an encoded HTTP answer, the DNS catalog
view, the servers' registered-nodes answer) can be kept until a source changes.  ``SnapshotMemo`` holds sources by
identity, never comparing them by value, for the last few sources and a bounded number of keys each.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

__all__ = ["MAX_KEYS", "MAX_SOURCES", "SnapshotMemo"]

MAX_SOURCES = 4
MAX_KEYS = 64


class SnapshotMemo:
    """``get(sources, key, build)``: ``build()``'s value, built once per key while ``sources`` (compared by
    identity) stand."""

    def __init__(self, max_sources: int = MAX_SOURCES, max_keys: int = MAX_KEYS) -> None:
        self.max_sources = max_sources
        self.max_keys = max_keys
        self._tables: list[tuple[tuple[object, ...], dict[Hashable, Any]]] = []  # most recent first
        self.builds = 0  # how many answers were built (tests and statistics)

    def _table(self, sources: tuple[object, ...]) -> dict[Hashable, Any]:
        for i, (held, table) in enumerate(self._tables):
            if len(held) == len(sources) and all(a is b for a, b in zip(held, sources, strict=True)):
                if i:
                    self._tables.insert(0, self._tables.pop(i))
                return table
        table = {}
        self._tables.insert(0, (sources, table))
        del self._tables[self.max_sources :]
        return table

    def get(self, sources: tuple[object, ...], key: Hashable, build: Callable[[], Any]) -> Any:
        table = self._table(sources)
        try:
            return table[key]
        except KeyError:
            pass
        value = build()
        self.builds += 1
        if len(table) >= self.max_keys:
            del table[next(iter(table))]
        table[key] = value
        return value
