"""agent.members: the immutable member snapshot, its index, history and waiters.

Rules of this file: no sockets; every async test runs under ``trio.run`` with ``MockClock(autojump_threshold=0)``
so virtual time jumps whenever all tasks are parked (a missed wake-up shows up as a ``move_on_after`` that
expires, never as a hung test).
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable

import attrs
import immutables
import pytest
import trio
import trio.testing

from agent.members import (
    STATUS_ALIVE,
    STATUS_FAILED,
    STATUS_LEAVING,
    STATUS_LEFT,
    Change,
    Member,
    MemberTable,
    Snapshot,
)


def run(fn: Callable[[], Awaitable[None]]) -> None:
    trio.run(fn, clock=trio.testing.MockClock(autojump_threshold=0))


def member(name: str, status: int = STATUS_ALIVE, **tags: str) -> Member:
    return Member(name=name, addr="10.0.0.1", port=8301, tags=tags or {"role": "node"}, status=status)


# ---------------------------------------------------------------------- values


def test_member_defaults_are_modern_serf() -> None:
    m = member("a")
    assert (m.protocol_min, m.protocol_max, m.protocol_cur) == (1, 5, 2)
    assert (m.delegate_min, m.delegate_max, m.delegate_cur) == (2, 5, 4)
    assert isinstance(m.tags, immutables.Map)


def test_member_tags_dict_is_copied_into_an_immutable_map() -> None:
    tags = {"role": "node"}
    m = Member(name="a", addr="10.0.0.1", port=8301, tags=tags, status=STATUS_ALIVE)
    tags["role"] = "consul"
    assert m.tags["role"] == "node"
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        m.status = STATUS_FAILED  # type: ignore[misc]


def test_initial_snapshot_is_empty_at_index_zero() -> None:
    table = MemberTable()
    snap = table.current
    assert snap.index == 0 and len(snap.members) == 0
    assert snap.leader == "" and snap.servers == ()


# ---------------------------------------------------------------------- apply


def test_apply_bumps_index_and_keeps_create_index() -> None:
    table = MemberTable()
    s1 = table.apply("member-join", member("a"))
    s2 = table.apply("member-join", member("b"))
    s3 = table.apply("member-failed", member("a", STATUS_FAILED))
    assert [s.index for s in (s1, s2, s3)] == [1, 2, 3]
    assert table.current is s3
    a = s3.members["a"]
    assert (a.create_index, a.modify_index, a.status) == (1, 3, STATUS_FAILED)
    b = s3.members["b"]
    assert (b.create_index, b.modify_index) == (2, 2)


def test_set_status_changes_the_status_alone_without_a_history_entry() -> None:
    """A leave intent on an alive member (force-leave) and its refutation: the snapshot shows it, the history of
    Serf events does not (so a member stream replays Serf's events only)."""
    table = MemberTable()
    table.apply("member-join", member("a", role="node"))
    leaving = table.set_status("a", STATUS_LEAVING)
    a = leaving.members["a"]
    assert (leaving.index, a.status, a.modify_index, a.create_index, dict(a.tags)) == (2, STATUS_LEAVING, 2, 1,
                                                                                      {"role": "node"})  # fmt: skip
    assert table.set_status("a", STATUS_LEAVING) is leaving  # no change, no new snapshot
    assert table.set_status("ghost", STATUS_LEAVING) is leaving  # unknown member: nothing to change
    assert table.set_status("a", STATUS_ALIVE).members["a"].status == STATUS_ALIVE
    assert [c.kind for c in table.changes_since(0) or []] == ["member-join"]


def test_apply_overrides_caller_indexes() -> None:
    table = MemberTable()
    snap = table.apply("member-join", attrs.evolve(member("a"), create_index=99, modify_index=99))
    assert (snap.members["a"].create_index, snap.members["a"].modify_index) == (1, 1)


def test_reap_removes_member_and_unknown_reap_is_a_no_op() -> None:
    table = MemberTable()
    table.apply("member-join", member("a"))
    table.apply("member-leave", member("a", STATUS_LEFT))
    snap = table.apply("member-reap", member("a", STATUS_LEFT))
    assert snap.index == 3 and "a" not in snap.members
    assert table.changes_since(2) == [
        Change(3, "member-reap", attrs.evolve(member("a", STATUS_LEFT), create_index=1, modify_index=3))
    ]
    again = table.apply("member-reap", member("a", STATUS_LEFT))
    assert again is snap and table.current.index == 3


def test_a_rejoin_after_reap_is_a_new_sighting() -> None:
    table = MemberTable()
    table.apply("member-join", member("a"))
    table.apply("member-reap", member("a"))
    snap = table.apply("member-join", member("a"))
    assert snap.members["a"].create_index == 3


def test_unknown_kind_is_rejected_and_changes_nothing() -> None:
    table = MemberTable()
    with pytest.raises(ValueError, match="member-explode"):
        table.apply("member-explode", member("a"))
    assert table.current.index == 0


def test_old_snapshots_never_change() -> None:
    table = MemberTable()
    s1 = table.apply("member-join", member("a"))
    s1_members = dict(s1.members)
    s2 = table.apply("member-update", member("a", role="consul"))
    table.apply("member-join", member("b"))
    table.set_leader("10.0.0.1:8300", ["10.0.0.1:8300"])
    table.apply("member-reap", member("a"))
    assert s1.index == 1 and dict(s1.members) == s1_members and s1.members["a"].tags["role"] == "node"
    assert s2.index == 2 and set(s2.members) == {"a"} and s2.members["a"].tags["role"] == "consul"
    assert s1.leader == "" and s2.servers == ()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        s1.index = 7  # type: ignore[misc]


def test_index_moves_by_one_per_published_change() -> None:
    table = MemberTable(history_limit=8)
    seen = [table.current]
    for i in range(50):
        kind = ("member-join", "member-update", "member-failed", "member-reap")[i % 4]
        seen.append(table.apply(kind, member(f"n{i % 5}")))
        if i % 7 == 0:
            seen.append(table.set_leader(f"10.0.0.{i}:8300", [f"10.0.0.{i}:8300"]))
    for before, after in itertools.pairwise(seen):
        # a new snapshot is exactly one index ahead; an unchanged one (reap of an unknown member) is the same object
        assert after.index == before.index + 1 or after is before
    assert seen[-1].index > 40


# ---------------------------------------------------------------------- leader


def test_set_leader_bumps_only_on_change() -> None:
    table = MemberTable()
    table.apply("member-join", member("a"))
    s = table.set_leader("10.0.0.1:8300", ["10.0.0.1:8300", "10.0.0.2:8300"])
    assert (s.index, s.leader, s.servers) == (2, "10.0.0.1:8300", ("10.0.0.1:8300", "10.0.0.2:8300"))
    assert table.set_leader("10.0.0.1:8300", ("10.0.0.1:8300", "10.0.0.2:8300")) is s
    assert table.set_leader("10.0.0.1:8300", ["10.0.0.1:8300"]).index == 3
    # leader changes carry over to member updates, and add no history entry
    assert table.apply("member-join", member("b")).leader == "10.0.0.1:8300"
    assert [c.index for c in table.changes_since(0) or []] == [1, 4]


# ---------------------------------------------------------------------- history


def test_changes_since_returns_what_follows_in_order() -> None:
    table = MemberTable()
    for name in "abcd":
        table.apply("member-join", member(name))
    changes = table.changes_since(1)
    assert changes is not None
    assert [(c.index, c.kind, c.member.name) for c in changes] == [
        (2, "member-join", "b"),
        (3, "member-join", "c"),
        (4, "member-join", "d"),
    ]
    assert table.changes_since(4) == []
    assert table.changes_since(100) == []
    assert [c.member.name for c in table.changes_since(0) or []] == list("abcd")


def test_history_is_bounded_and_says_when_a_reader_fell_behind() -> None:
    table = MemberTable(history_limit=3)
    for i in range(10):
        table.apply("member-join", member(f"n{i}"))
    stats = table.statistics()
    assert (stats.history, stats.history_limit, stats.history_floor) == (3, 3, 7)
    assert table.changes_since(6) is None  # change 7 was dropped
    assert [c.index for c in table.changes_since(7) or []] == [8, 9, 10]
    assert table.changes_since(0) is None


def test_zero_history_only_serves_the_head() -> None:
    table = MemberTable(history_limit=0)
    table.apply("member-join", member("a"))
    assert table.changes_since(0) is None
    assert table.changes_since(1) == []


def test_negative_history_limit_is_rejected() -> None:
    with pytest.raises(ValueError):
        MemberTable(history_limit=-1)


# ---------------------------------------------------------------------- waiting


def test_wait_past_returns_at_once_when_already_past() -> None:
    async def main() -> None:
        table = MemberTable()
        table.apply("member-join", member("a"))
        with trio.testing.assert_checkpoints():
            snap = await table.wait_past(0)
        assert snap.index == 1

    run(main)


def test_waiters_are_woken_by_apply() -> None:
    async def main() -> None:
        table = MemberTable()
        results: dict[int, Snapshot] = {}

        async def waiter(i: int) -> None:
            with trio.fail_after(10):
                results[i] = await table.wait_past(0)

        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(waiter, i)
            await trio.testing.wait_all_tasks_blocked()
            assert table.statistics().waiters == 20
            table.apply("member-join", member("a"))
        assert len(results) == 20 and all(s.index == 1 for s in results.values())
        assert table.statistics().waiters == 0

    run(main)


def test_wait_past_waits_for_the_index_it_was_given() -> None:
    async def main() -> None:
        table = MemberTable()
        got: list[Snapshot] = []

        async def waiter() -> None:
            got.append(await table.wait_past(2))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            table.apply("member-join", member("a"))
            await trio.testing.wait_all_tasks_blocked()
            table.set_leader("10.0.0.1:8300", ["10.0.0.1:8300"])
            await trio.testing.wait_all_tasks_blocked()
            assert got == []
            table.apply("member-join", member("b"))
        assert [s.index for s in got] == [3]

    run(main)


def test_wait_past_is_woken_by_set_leader() -> None:
    async def main() -> None:
        table = MemberTable()
        async with trio.open_nursery() as nursery:

            async def waiter() -> None:
                snap = await table.wait_past(0)
                assert snap.leader == "10.0.0.1:8300"

            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            table.set_leader("10.0.0.1:8300", ["10.0.0.1:8300"])

    run(main)


def test_wait_past_is_bounded_by_the_caller() -> None:
    async def main() -> None:
        table = MemberTable()
        start = trio.current_time()
        with trio.move_on_after(300) as scope:
            await table.wait_past(0)
        assert scope.cancelled_caught
        assert trio.current_time() - start == pytest.approx(300)
        assert table.statistics().waiters == 0

    run(main)


def test_wait_changes_pairs_snapshot_and_history() -> None:
    async def main() -> None:
        table = MemberTable(history_limit=2)
        cursor = 0
        seen: list[str] = []

        async def subscriber() -> None:
            nonlocal cursor
            while cursor < 3:
                snap, changes = await table.wait_changes(cursor)
                assert changes is not None
                seen.extend(c.member.name for c in changes)
                cursor = snap.index

        async with trio.open_nursery() as nursery:
            nursery.start_soon(subscriber)
            for name in "abc":
                await trio.testing.wait_all_tasks_blocked()
                table.apply("member-join", member(name))
        assert seen == ["a", "b", "c"]

        snap, changes = await table.wait_changes(0)  # fell behind the bounded history
        assert snap.index == 3 and changes is None

    run(main)


def test_statistics() -> None:
    table = MemberTable(history_limit=10)
    table.apply("member-join", member("a"))
    table.apply("member-join", member("b"))
    stats = table.statistics()
    assert (stats.index, stats.members, stats.waiters, stats.history) == (2, 2, 0, 2)


def test_sorted_members_and_get() -> None:
    table = MemberTable()
    for name in "cab":
        table.apply("member-join", member(name))
    snap = table.current
    assert [m.name for m in snap.sorted_members()] == ["a", "b", "c"]
    assert snap.get("b") is snap.members["b"] and snap.get("zz") is None
