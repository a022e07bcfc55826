"""A Wing-Gong-Lowe linearizability checker (Lowe, "Testing for linearizability", 2016; the algorithm
Porcupine and Knossos use), with a compare-and-set register model.

A history is a list of `Op`s: who called what, when it was invoked and when it returned, and what it
returned. An operation whose outcome is unknown (the client timed out: it may or may not have taken effect)
has `ret=None`: it is treated as still running at the end of the history, so the search may place it
anywhere after its invocation, including after everything else (where it changes nothing observed), and
its output is not checked.

The search walks the history in time order, tries to linearize each call whose predecessors are done, and
backtracks when a return is reached with its call not yet linearized. (linearized set, model state) pairs
already explored are cached, which keeps it fast on the histories the simulations produce.

Unknown-outcome operations with the same input are interchangeable (neither returns, both may take effect any
time after their call), so they are linearized in call order only: a later twin is not tried while an earlier
one is still open. Without that, k identical timed-out writes open 2^k subsets to the search, every one
leading to the same states.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import attrs

UNKNOWN = object()  # an output that was never observed


@attrs.frozen
class Op:
    client: int
    call: float
    ret: float | None  # None: no answer (timed out); the operation may or may not have taken effect
    input: Any  # the model's description of the operation
    output: Any = UNKNOWN


@attrs.frozen
class Model:
    init: Hashable
    step: Callable[[Hashable, Any, Any], tuple[bool, Hashable]]  # (state, input, output) -> (legal, state')


# ----------------------------------------------------------------------------------- the register with CAS
def _register_step(state: Hashable, inp: Any, out: Any) -> tuple[bool, Hashable]:
    f = inp[0]
    if f == "read":
        return (out is UNKNOWN or out == state), state
    if f == "write":
        return True, inp[1]
    if f == "cas":
        _, old, new = inp
        if out is UNKNOWN:
            return True, (new if state == old else state)
        if out:
            return state == old, new
        return state != old, state
    raise ValueError(f"register: unknown operation {f!r}")


CAS_REGISTER = Model(init=None, step=_register_step)


# ----------------------------------------------------------------------------------- the search
class _Node:
    __slots__ = ("call", "id", "match", "next", "op", "prev", "twin")

    def __init__(self, op_id: int, op: Op | None, call: bool) -> None:
        self.id = op_id
        self.op = op
        self.call = call
        self.match: _Node | None = None  # a call's return node
        self.twin = 0  # unknown outcome: the bit of the previous unknown op with the same input (0: none)
        self.prev: _Node | None = None
        self.next: _Node | None = None


def _build(history: Sequence[Op]) -> _Node:
    events = []
    for i, op in enumerate(history):
        ret = math.inf if op.ret is None else op.ret
        if ret < op.call:
            raise ValueError(f"operation {i} returns ({ret}) before it is called ({op.call})")
        # at equal times calls sort before returns: such operations count as concurrent
        events.append((op.call, 0, i, True))
        events.append((ret, 1, i, False))
    events.sort()
    head = _Node(-1, None, False)
    tail = head
    calls: dict[int, _Node] = {}
    last_unknown: dict[Any, int] = {}  # (input, output) of an unknown op -> the latest such op's id, by call
    for _, _, i, is_call in events:
        node = _Node(i, history[i], is_call)
        if is_call:
            calls[i] = node
            op = history[i]
            if op.ret is None:
                twin_key = (op.input, op.output)
                if twin_key in last_unknown:
                    node.twin = 1 << last_unknown[twin_key]
                last_unknown[twin_key] = i
        else:
            calls[i].match = node
        node.prev, tail.next = tail, node
        tail = node
    return head


def _lift(call: _Node) -> None:
    call.prev.next = call.next
    call.next.prev = call.prev
    ret = call.match
    ret.prev.next = ret.next
    if ret.next is not None:
        ret.next.prev = ret.prev


def _unlift(call: _Node) -> None:
    ret = call.match
    ret.prev.next = ret
    if ret.next is not None:
        ret.next.prev = ret
    call.prev.next = call
    call.next.prev = call


def check(history: Sequence[Op], model: Model = CAS_REGISTER, max_states: int = 2_000_000) -> bool:
    """True if the history is linearizable under `model`. Raises RuntimeError past `max_states` explored
    configurations (so a pathological history fails loudly instead of running for ever)."""
    if not history:
        return True
    head = _build(history)
    state = model.init
    linearized = 0
    cache: set[tuple[int, Hashable]] = set()
    stack: list[tuple[_Node, Hashable]] = []
    entry = head.next
    explored = 0
    while head.next is not None:
        if entry.call:
            if entry.twin and not linearized & entry.twin:  # its earlier twin first (see the module's text)
                entry = entry.next
                continue
            legal, new_state = model.step(state, entry.op.input, entry.op.output)
            if legal:
                key = (linearized | (1 << entry.id), new_state)
                if key not in cache:
                    explored += 1
                    if explored > max_states:
                        raise RuntimeError(f"linearizability: gave up after {max_states} states")
                    cache.add(key)
                    stack.append((entry, state))
                    state, linearized = new_state, key[0]
                    _lift(entry)
                    entry = head.next
                    continue
            entry = entry.next
        else:
            if not stack:
                return False
            call, state = stack.pop()
            linearized &= ~(1 << call.id)
            _unlift(call)
            entry = call.next
    return True
