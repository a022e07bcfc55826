"""agent/http/memo.py: an answer is built once per source and key, and never served for another source."""

from __future__ import annotations

from agent.http.memo import SnapshotMemo


class Source:
    """A stand-in for a snapshot: equal to every other one, so only identity can tell them apart."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Source)

    def __hash__(self) -> int:
        return 0


def test_built_once_per_source_and_key() -> None:
    memo = SnapshotMemo()
    first, config = Source(), object()
    assert memo.get((first, config), "a", lambda: ["a", 1]) == ["a", 1]
    assert memo.get((first, config), "a", lambda: ["stale"]) == ["a", 1]
    assert memo.get((first, config), "b", lambda: ["b"]) == ["b"]
    assert memo.builds == 2
    second = Source()  # equal by value, but a new snapshot: nothing built for the first one is reused
    assert memo.get((second, config), "a", lambda: ["a", 2]) == ["a", 2]
    assert memo.get((first, object()), "a", lambda: ["other config"]) == ["other config"]
    assert memo.builds == 4


def test_bounded_sources_and_keys() -> None:
    memo = SnapshotMemo(max_sources=2, max_keys=3)
    sources = [(Source(),) for _ in range(3)]
    for source in sources:
        for key in range(5):
            memo.get(source, key, lambda key=key: key)
    assert memo.builds == 15
    memo.get(sources[2], 4, lambda: "rebuilt")  # the newest source keeps its last three keys
    memo.get(sources[2], 0, lambda: "rebuilt")  # ... not its first
    memo.get(sources[0], 4, lambda: "rebuilt")  # the oldest source was dropped
    assert memo.builds == 17
