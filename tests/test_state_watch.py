"""Blocking queries on the state: woken only by writes to what they read (issue 10: "Today every change of the
one global index wakes every blocking query; that ends here")."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio
import trio.testing
from state_helpers import Driven

from agent.server.state import commands as c
from agent.server.state import reads
from agent.server.state.wait import wait_past
from agent.watch import Interest, WatchHub


def run(fn: Callable[[], Awaitable[None]]) -> None:
    trio.run(fn, clock=trio.testing.MockClock(autojump_threshold=0))


def test_hub_matches_exact_prefix_and_table() -> None:
    hub = WatchHub()
    fired: list[str] = []
    hub.register([Interest("kvs", "a/b")], lambda: fired.append("exact"))
    hub.register([Interest("kvs", "a/", prefix=True)], lambda: fired.append("prefix"))
    hub.register([Interest("sessions")], lambda: fired.append("table"))
    assert hub.notify([("kvs", "b/x"), ("nodes", "a/b")]) == 0
    assert hub.notify([("kvs", "a/c")]) == 1 and fired == ["prefix"]
    assert hub.notify([("kvs", "a/b"), ("sessions", "x")]) == 2 and sorted(fired) == ["exact", "prefix", "table"]
    assert hub.waiting() == 0  # each fires once, then is gone


def test_cancel_unregisters() -> None:
    hub = WatchHub()
    waiter = hub.register([Interest("kvs", "k"), Interest("kvs", "p", prefix=True)], lambda: None)
    assert hub.waiting() == 1
    waiter.cancel()
    assert hub.waiting() == 0 and hub.notify([("kvs", "k")]) == 0


def test_store_wakes_only_readers_of_what_changed() -> None:
    d = Driven()
    d.run(c.KVSet(key="web/a", value=b"1"))
    woken: list[str] = []
    readers = {
        "key": reads.kv_get(d.state, "web/a"),
        "prefix": reads.kv_list(d.state, "web/"),
        "other": reads.kv_list(d.state, "db/"),
        "sessions": reads.session_list(d.state),
    }
    for name, read in readers.items():
        d.store.hub.register(read.interests, lambda name=name: woken.append(name))
    d.run(c.KVSet(key="web/b", value=b"1"))
    assert woken == ["prefix"]
    d.run(c.KVDeleteTree(prefix="web/"))  # deletes web/a: its key reader wakes (tombstones wake prefix readers)
    assert woken == ["prefix", "key"]
    d.session("s1")
    assert woken == ["prefix", "key", "sessions"]


def test_wait_past_blocks_until_the_key_changes() -> None:
    run(wait_past_blocks_until_the_key_changes)


async def wait_past_blocks_until_the_key_changes() -> None:
    d = Driven()
    d.run(c.KVSet(key="k", value=b"1"))
    d.run(c.KVSet(key="other", value=b"1"))
    got: list[int] = []

    async def reader() -> None:
        answer = await wait_past(d.store, lambda s: reads.kv_get(s, "k"), 1)
        got.append(answer.index)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        d.run(c.KVSet(key="other", value=b"2"))  # unrelated: the reader stays parked
        await trio.testing.wait_all_tasks_blocked()
        assert got == [] and d.store.hub.waiting() == 1
        d.run(c.KVSet(key="k", value=b"2"))
    assert got == [4] and d.store.hub.waiting() == 0


def test_wait_past_times_out_with_move_on_after() -> None:
    run(wait_past_times_out_with_move_on_after)


async def wait_past_times_out_with_move_on_after() -> None:
    d = Driven()
    d.run(c.KVSet(key="k", value=b"1"))
    with trio.move_on_after(5) as scope:
        await wait_past(d.store, lambda s: reads.kv_get(s, "k"), 1)
    assert scope.cancelled_caught and d.store.hub.waiting() == 0


def test_thousand_watchers_of_one_key_all_wake_once() -> None:
    run(thousand_watchers_of_one_key_all_wake_once)


async def thousand_watchers_of_one_key_all_wake_once() -> None:
    d = Driven()
    d.run(c.KVSet(key="k", value=b"1"))
    done = 0

    async def reader() -> None:
        nonlocal done
        await wait_past(d.store, lambda s: reads.kv_get(s, "k"), 1)
        done += 1

    async with trio.open_nursery() as nursery:
        for _ in range(1000):
            nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        assert d.store.hub.waiting() == 1000
        d.run(c.KVSet(key="k", value=b"2"))
    assert done == 1000


def test_restore_wakes_everyone() -> None:
    run(restore_wakes_everyone)


async def restore_wakes_everyone() -> None:
    d = Driven()
    d.run(c.KVSet(key="k", value=b"1"))
    snap = d.store.snapshot()
    d.run(c.KVSet(key="k", value=b"2"))
    other = Driven()
    other.store.restore(snap)
    got: list[bytes] = []

    async def reader() -> None:
        answer = await wait_past(other.store, lambda s: reads.kv_get(s, "k"), 1)
        got.append(answer.value.value)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        other.store.restore(d.store.snapshot())
    assert got == [b"2"]
