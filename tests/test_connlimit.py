"""agent/connlimit.py: which connection makes room at the caps (pure bookkeeping plus trio cancel scopes)."""

from __future__ import annotations

import contextlib

import trio

from agent.connlimit import ConnectionSlots, Slot


def idle(slots: ConnectionSlots, slot: Slot, stack: contextlib.ExitStack) -> trio.CancelScope:
    scope = trio.CancelScope()
    stack.enter_context(slots.idle(slot, scope))
    return scope


def test_the_longest_idle_makes_room_and_busy_ones_never_do() -> None:
    slots = ConnectionSlots(max_total=3)
    a, b, c = (slots.admit(ip) for ip in ("1", "2", "3"))
    assert a and b and c
    with contextlib.ExitStack() as stack:
        scope_b = idle(slots, b, stack)  # b idle first, then c; a busy
        scope_c = idle(slots, c, stack)
        d = slots.admit("4")
        assert d is not None and b.evicted and scope_b.cancel_called and not c.evicted
        assert slots.statistics().open == 3
        e = slots.admit("5")
        assert e is not None and c.evicted and scope_c.cancel_called
        assert slots.admit("6") is None  # a, d, e all busy
        assert slots.statistics().refused == 1 and slots.statistics().evicted == 2
    slots.release(b)  # the evicted task finishing later changes nothing
    slots.release(c)
    assert slots.statistics().open == 3
    slots.release(a)
    assert slots.admit("6") is not None


def test_the_per_client_cap_evicts_only_that_clients_idle_connection() -> None:
    slots = ConnectionSlots(max_total=100, max_per_client=2)
    mine = [slots.admit("me"), slots.admit("me")]
    other = slots.admit("other")
    assert all(mine) and other
    with contextlib.ExitStack() as stack:
        idle(slots, other, stack)
        assert slots.admit("me") is None  # my two are busy; another client's idle one is not mine to take
        idle(slots, mine[1], stack)
        assert slots.admit("me") is not None and mine[1].evicted and not other.evicted
    assert slots.per_client["me"] == 2
