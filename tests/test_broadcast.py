"""The transmit-limited broadcast queue: memberlist's queue_test.go cases, then properties against a model."""

from __future__ import annotations

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from protocol.broadcast import BroadcastQueue
from protocol.suspicion import retransmit_limit

MSGS = [b"1. this is a test.", b"2. this is a test.", b"3. this is a test.", b"4. this is a test."]


class Finished:
    """Records on_finished calls by label."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def cb(self, label: str):
        return lambda: self.calls.append(label)


def keys(q: BroadcastQueue) -> list[str | None]:
    return [b.key for b in q.snapshot()]


# --- examples ---


def test_empty_queue() -> None:
    q = BroadcastQueue(retransmit_mult=4)
    assert len(q) == 0
    assert q.get_broadcasts(2, 1400, 10) == []


def test_queue_order_and_invalidation() -> None:
    # TestTransmitLimited_Queue: snapshot is in transmit order, i.e. newest first among equals.
    done = Finished()
    q = BroadcastQueue(retransmit_mult=1)
    for name in ("test", "foo", "bar"):
        q.queue(name, b"", done.cb(name))
    assert keys(q) == ["bar", "foo", "test"]
    q.queue("test", b"", done.cb("test2"))
    assert len(q) == 3
    assert keys(q) == ["test", "bar", "foo"]
    assert done.calls == ["test"]


def test_none_key_is_never_invalidated() -> None:
    q = BroadcastQueue(retransmit_mult=1)
    q.queue(None, b"a")
    q.queue(None, b"a")
    q.queue("n", b"b")
    q.queue("n", b"c")
    assert len(q) == 3
    assert [b.msg for b in q.snapshot()] == [b"c", b"a", b"a"]


def test_invalidated_message_is_never_sent() -> None:
    q = BroadcastQueue(retransmit_mult=4)
    q.queue("n1", b"alive-1")
    q.queue("n2", b"alive-2")
    q.queue("n1", b"dead-1")
    assert q.get_broadcasts(0, 1400, 10) == [b"alive-2", b"dead-1"]


def test_limit_packing_and_retirement() -> None:
    # TestTransmitLimited_GetBroadcasts_Limit: 18-byte messages + 3 overhead, 80-byte budget, limit 2.
    done = Finished()
    q = BroadcastQueue(retransmit_mult=1)
    assert retransmit_limit(1, 10) == 2
    for name, msg in zip(["test", "foo", "bar", "baz"], MSGS, strict=True):
        q.queue(name, msg, done.cb(name))
    assert q.get_broadcasts(3, 80, 10) == [MSGS[3], MSGS[2], MSGS[1]]
    assert q.get_broadcasts(3, 80, 10) == [MSGS[0], MSGS[3], MSGS[2]]
    assert done.calls == ["baz", "bar"]
    assert q.get_broadcasts(3, 80, 10) == [MSGS[1], MSGS[0]]
    assert done.calls == ["baz", "bar", "foo", "test"]
    assert q.get_broadcasts(3, 80, 10) == []
    assert len(q) == 0


def test_get_broadcasts_returns_all_when_they_fit() -> None:
    # TestTransmitLimited_GetBroadcasts: 2 * (18 + 3) <= 80.
    q = BroadcastQueue(retransmit_mult=3)
    q.queue("test", MSGS[0])
    q.queue("foo", MSGS[1])
    assert q.get_broadcasts(3, 80, 10) == [MSGS[1], MSGS[0]]
    assert [b.transmits for b in q.snapshot()] == [1, 1]


def test_largest_fitting_message_first_within_a_tier() -> None:
    q = BroadcastQueue(retransmit_mult=4)
    q.queue("small", b"x" * 10)
    q.queue("big", b"x" * 50)
    q.queue("mid", b"x" * 30)
    q.queue("mid2", b"y" * 30)
    # 100 bytes, overhead 2: big (52), then mid2 (newer of the 30s, 32), then nothing fits but small (12).
    assert q.get_broadcasts(2, 100, 10) == [b"x" * 50, b"y" * 30, b"x" * 10]
    assert keys(q) == ["mid", "big", "mid2", "small"]


def test_a_fresher_tier_goes_before_a_bigger_message() -> None:
    q = BroadcastQueue(retransmit_mult=4)
    q.queue("old", b"o" * 40, initial_transmits=1)
    q.queue("new", b"n" * 5)
    assert q.get_broadcasts(0, 1400, 10) == [b"n" * 5, b"o" * 40]


def test_message_sent_once_per_call_even_when_room_remains() -> None:
    q = BroadcastQueue(retransmit_mult=4)
    q.queue("a", b"a")
    assert q.get_broadcasts(0, 1400, 100) == [b"a"]
    assert q.snapshot()[0].transmits == 1


def test_overhead_alone_exhausting_the_limit_sends_nothing() -> None:
    q = BroadcastQueue(retransmit_mult=4)
    q.queue("a", b"")
    assert q.get_broadcasts(10, 10, 5) == []
    assert q.get_broadcasts(10, 11, 5) == [b""]


def test_retired_after_retransmit_limit() -> None:
    done = Finished()
    q = BroadcastQueue(retransmit_mult=4)
    q.queue("n", b"msg", done.cb("n"))
    limit = retransmit_limit(4, 20)
    assert limit == 8
    sends = 0
    while q.get_broadcasts(0, 1400, 20):
        sends += 1
    assert sends == limit
    assert done.calls == ["n"]


def test_zero_nodes_means_a_single_transmit() -> None:
    done = Finished()
    q = BroadcastQueue(retransmit_mult=4)
    q.queue("n", b"msg", done.cb("n"))
    assert q.get_broadcasts(0, 1400, 0) == [b"msg"]
    assert len(q) == 0
    assert done.calls == ["n"]


def test_ordering_by_transmits() -> None:
    # TestTransmitLimited_ordering.
    q = BroadcastQueue(retransmit_mult=1)
    for name, transmits in [("node0", 0), ("node1", 10), ("node2", 3), ("node3", 4), ("node4", 7)]:
        q.queue(name, name.encode(), initial_transmits=transmits)
    assert [b.transmits for b in reversed(q.snapshot())] == [10, 7, 4, 3, 0]


def test_prune_keeps_the_freshest() -> None:
    # TestTransmitLimited_Prune: the two oldest are finished.
    done = Finished()
    q = BroadcastQueue(retransmit_mult=1)
    for name, msg in zip(["test", "foo", "bar", "baz"], MSGS, strict=True):
        q.queue(name, msg, done.cb(name))
    q.prune(2)
    assert len(q) == 2
    assert done.calls == ["test", "foo"]
    assert keys(q) == ["baz", "bar"]
    q.queue("test", b"again")  # its key was released
    assert len(q) == 3


def test_prune_drops_the_most_transmitted_first() -> None:
    q = BroadcastQueue(retransmit_mult=10)
    q.queue("sent", b"s")
    q.get_broadcasts(0, 1400, 10)
    q.queue("fresh", b"f")
    q.prune(1)
    assert keys(q) == ["fresh"]


def test_reset_finishes_everything() -> None:
    done = Finished()
    q = BroadcastQueue(retransmit_mult=1)
    q.queue("a", b"a", done.cb("a"))
    q.queue(None, b"b", done.cb("b"))
    q.reset()
    assert len(q) == 0
    assert sorted(done.calls) == ["a", "b"]
    q.queue("a", b"a2")
    assert len(q) == 1


def test_callback_may_requeue() -> None:
    q = BroadcastQueue(retransmit_mult=1)
    q.queue("a", b"first", lambda: q.queue("b", b"follow-up"))
    q.queue("a", b"second")
    assert sorted(b.msg for b in q.snapshot()) == [b"follow-up", b"second"]


# --- properties against a straightforward model ---


@attrs.define
class Model:
    """The obvious implementation: sort everything, one greedy pass."""

    key: str | None
    msg: bytes
    transmits: int
    id: int
    label: int


def model_get(items: list[Model], overhead: int, limit: int, transmit_limit: int) -> tuple[list, list]:
    used, sent, retired = 0, [], []
    for item in sorted(items, key=lambda m: (m.transmits, -len(m.msg), -m.id)):
        if limit - used - overhead <= 0:
            break
        if len(item.msg) + overhead + used <= limit:
            used += overhead + len(item.msg)
            sent.append(item)
    for item in sent:
        item.transmits += 1
        if item.transmits >= transmit_limit:
            items.remove(item)
            retired.append(item.label)
    return [m.msg for m in sent], retired


class QueueMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.mult = 2
        self.q = BroadcastQueue(self.mult)
        self.model: list[Model] = []
        self.finished: list[int] = []
        self.expected_finished: list[int] = []
        self.next = 0

    @rule(
        key=st.one_of(st.none(), st.sampled_from(["a", "b", "c", "d"])),
        size=st.integers(min_value=0, max_value=40),
    )
    def queue(self, key: str | None, size: int) -> None:
        self.next += 1
        label = self.next
        msg = bytes([label % 256]) * size
        if key is not None:
            for old in [m for m in self.model if m.key == key]:
                self.model.remove(old)
                self.expected_finished.append(old.label)
        self.model.append(Model(key, msg, 0, label, label))
        self.q.queue(key, msg, lambda: self.finished.append(label))

    @rule(
        overhead=st.integers(min_value=0, max_value=5),
        limit=st.integers(min_value=0, max_value=120),
        nodes=st.integers(min_value=0, max_value=200),
    )
    def get(self, overhead: int, limit: int, nodes: int) -> None:
        got = self.q.get_broadcasts(overhead, limit, nodes)
        want, retired = model_get(self.model, overhead, limit, retransmit_limit(self.mult, nodes))
        assert got == want
        assert sum(len(m) + overhead for m in got) <= limit
        self.expected_finished.extend(retired)

    @rule(keep=st.integers(min_value=0, max_value=6))
    def prune(self, keep: int) -> None:
        ordered = sorted(self.model, key=lambda m: (m.transmits, -len(m.msg), -m.id))
        for item in reversed(ordered[keep:]):
            self.model.remove(item)
            self.expected_finished.append(item.label)
        self.q.prune(keep)

    @invariant()
    def same_contents(self) -> None:
        assert len(self.q) == len(self.model)
        ordered = sorted(self.model, key=lambda m: (m.transmits, -len(m.msg), -m.id))
        assert [(b.key, b.msg, b.transmits) for b in self.q.snapshot()] == [
            (m.key, m.msg, m.transmits) for m in ordered
        ]
        assert self.finished == self.expected_finished
        named = [b.key for b in self.q.snapshot() if b.key is not None]
        assert len(named) == len(set(named))


QueueMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
TestQueueMachine = QueueMachine.TestCase


@given(
    st.lists(st.integers(min_value=0, max_value=60), min_size=1, max_size=30),
    st.integers(min_value=0, max_value=500),
    st.integers(min_value=1, max_value=6),
    st.integers(min_value=0, max_value=4),
)
def test_every_message_is_sent_exactly_limit_times(sizes: list[int], nodes: int, mult: int, overhead: int) -> None:
    q = BroadcastQueue(mult)
    finished: list[int] = []
    msgs = [i.to_bytes(2, "big") + b"x" * size for i, size in enumerate(sizes)]
    for i, msg in enumerate(msgs):
        q.queue(None, msg, lambda i=i: finished.append(i))
    counts = dict.fromkeys(msgs, 0)
    for _ in range(10_000):
        batch = q.get_broadcasts(overhead, 100, nodes)
        if not batch:
            break
        assert len(set(batch)) == len(batch)
        assert sum(len(m) + overhead for m in batch) <= 100
        for msg in batch:
            counts[msg] += 1
    assert len(q) == 0
    assert sorted(finished) == list(range(len(sizes)))
    assert set(counts.values()) == {max(retransmit_limit(mult, nodes), 1)}
