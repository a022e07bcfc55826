"""Member records and the precedence rules of memberlist's alive/suspect/dead messages.

This module is pure: it only *judges* an incoming claim against what we know and says what to do
(`Verdict`); `protocol.membership.Membership` carries the verdict out (timers, broadcasts, events). Keeping the rules
here, as small functions over tables, makes them testable one row at a time and keeps them identical to
memberlist's `aliveNode`, `suspectNode`, `deadNode` and `mergeState` (state.go).

The rules, in order of application (first match wins):

alive(inc, addr) about N
  1. we left and N is us                                  -> IGNORE (a queued alive must not re-join us)
  2. Vsn present with pmin == 0, pmax == 0 or pmin > pmax -> IGNORE (bad versions)
  3. N unknown                                            -> recorded as DEAD inc 0 (`Verdict.is_new`), go on
  4. N known at another address: LEFT, or DEAD for longer than dead_node_reclaim_time (> 0)
                                                          -> the address may change (`updates_addr`), go on
     otherwise                                            -> CONFLICT (first address wins; never flap)
  5. not us, inc <= known inc and not changing address    -> IGNORE (stale)
     us, inc < known inc                                  -> IGNORE (stale)
  6. us (not bootstrapping): same inc, meta and vsn       -> IGNORE; otherwise REFUTE
  7.                                                      -> APPLY: state ALIVE, take inc/addr/meta/vsn
suspect(inc, from) about N
  unknown -> IGNORE; inc < known -> IGNORE; a suspicion timer runs -> CONFIRM;
  then by current state (`ON_SUSPECT`): ALIVE -> SUSPECT (or REFUTE if N is us), others IGNORE
dead(inc, from) about N
  unknown -> IGNORE; inc < known -> IGNORE (from here on any suspicion timer is cleared);
  then by current state (`ON_DEAD`): ALIVE/SUSPECT -> KILL (LEFT when from == N, else DEAD;
  REFUTE instead if N is us and we did not leave), DEAD/LEFT -> IGNORE
push/pull merge (`MERGE_AS`): alive -> alive rules; suspect and dead -> suspect rules with From = us
  (prefer suspecting over declaring dead); left -> dead rules with From = N.
"""

from __future__ import annotations

import enum

import attrs

Addr = tuple[str, int]

META_MAX_SIZE = 512  # memberlist MetaMaxSize

#: Incarnations are uint32 on the wire (memberlist nodeState.Incarnation); ours never goes past this.
MAX_INCARNATION = (1 << 32) - 1
#: The most a claim about a member may be ahead of the incarnation we know for it (docs/wire.md, "Incarnations").
#: A member's incarnation grows by one per refute, and an honest accuser only repeats one the member published, so
#: a claim further ahead than this is forged: it is dropped (counted) rather than believed.
INCARNATION_JUMP_LIMIT = 1 << 16



class NodeStateType(enum.IntEnum):
    """memberlist's NodeStateType; the integer values are on the wire (push/pull `State`)."""

    ALIVE = 0
    SUSPECT = 1
    DEAD = 2
    LEFT = 3


@attrs.frozen(weakref_slot=False)
class NodeState:
    """Our view of one member (memberlist nodeState). Frozen so events can carry it safely. No weakref slot: every
    member holds one about every other (N^2 in a simulation), and nothing refers to them weakly."""

    name: str
    addr: Addr
    meta: bytes = b""
    incarnation: int = 0
    state: NodeStateType = NodeStateType.DEAD
    state_change: float = 0.0
    vsn: bytes = b""  # pmin, pmax, pcur, dmin, dmax, dcur

    @property
    def dead_or_left(self) -> bool:
        return self.state in (NodeStateType.DEAD, NodeStateType.LEFT)

    def _v(self, i: int) -> int:
        return self.vsn[i] if len(self.vsn) > i else 0

    @property
    def pmin(self) -> int:
        return self._v(0)

    @property
    def pmax(self) -> int:
        return self._v(1)

    @property
    def pcur(self) -> int:
        return self._v(2)

    @property
    def dmin(self) -> int:
        return self._v(3)

    @property
    def dmax(self) -> int:
        return self._v(4)

    @property
    def dcur(self) -> int:
        return self._v(5)


class Action(enum.Enum):
    """What the node must do with a claim."""

    IGNORE = "ignore"  # stale, irrelevant or invalid
    APPLY = "apply"  # alive: mark ALIVE with the claim's fields and re-broadcast
    REFUTE = "refute"  # the claim is about us and wrong: bump our incarnation, broadcast alive
    CONFLICT = "conflict"  # alive for a live name at another address: tell the conflict delegate
    SUSPECT = "suspect"  # start a suspicion timer, mark SUSPECT, re-broadcast
    CONFIRM = "confirm"  # a suspicion timer runs: count an independent confirmation
    KILL = "kill"  # mark DEAD (or LEFT), re-broadcast, notify leave


@attrs.frozen
class Verdict:
    action: Action
    reason: str = ""
    new_state: NodeStateType | None = None  # for KILL: DEAD or LEFT
    is_new: bool = False  # alive about an unknown node: record it (as DEAD inc 0) first
    updates_addr: bool = False  # alive takes over the address of a left/reclaimable dead node
    clear_suspicion: bool = False  # dead: drop any suspicion timer, whatever the outcome


# State-dependent part of suspectNode/deadNode once incarnation and timers were checked.
ON_SUSPECT: dict[NodeStateType, Action] = {
    NodeStateType.ALIVE: Action.SUSPECT,
    NodeStateType.SUSPECT: Action.IGNORE,  # (a suspicion timer would have confirmed first)
    NodeStateType.DEAD: Action.IGNORE,
    NodeStateType.LEFT: Action.IGNORE,
}
ON_DEAD: dict[NodeStateType, Action] = {
    NodeStateType.ALIVE: Action.KILL,
    NodeStateType.SUSPECT: Action.KILL,
    NodeStateType.DEAD: Action.IGNORE,
    NodeStateType.LEFT: Action.IGNORE,
}


class MergeAs(enum.Enum):
    ALIVE = "alive"
    SUSPECT = "suspect"
    LEFT = "left"  # a dead message with From == the node


# mergeState: how a pushed remote state is replayed locally.
MERGE_AS: dict[NodeStateType, MergeAs] = {
    NodeStateType.ALIVE: MergeAs.ALIVE,
    NodeStateType.SUSPECT: MergeAs.SUSPECT,
    NodeStateType.DEAD: MergeAs.SUSPECT,  # prefer suspecting to declaring dead outright
    NodeStateType.LEFT: MergeAs.LEFT,
}


def valid_versions(vsn: bytes) -> bool:
    """aliveNode's sanity check: pmin and pmax non-zero and ordered (only if present)."""
    if len(vsn) < 3:
        return True
    pmin, pmax = vsn[0], vsn[1]
    return not (pmin == 0 or pmax == 0 or pmin > pmax)


def judge_alive(
    current: NodeState | None,
    *,
    node: str,
    incarnation: int,
    addr: Addr,
    meta: bytes,
    vsn: bytes,
    local_name: str,
    has_left: bool,
    bootstrap: bool,
    now: float,
    reclaim_time: float,
) -> Verdict:
    """memberlist aliveNode's decision (see module docstring for the rule order)."""
    is_local = node == local_name
    if has_left and is_local:
        return Verdict(Action.IGNORE, "we left; ignoring alive about ourselves")
    if not valid_versions(vsn):
        return Verdict(Action.IGNORE, f"bad protocol versions {list(vsn[:3])}")
    is_new = current is None
    updates_addr = False
    if current is None:
        current = NodeState(name=node, addr=addr, meta=meta, state=NodeStateType.DEAD)
    elif current.addr != addr:
        reclaimable = (
            current.state == NodeStateType.DEAD and reclaim_time > 0 and now - current.state_change > reclaim_time
        )
        if current.state == NodeStateType.LEFT or reclaimable:
            updates_addr = True
        else:
            return Verdict(
                Action.CONFLICT,
                f"conflicting address for {node}: known {current.addr[0]}:{current.addr[1]}, "
                f"claimed {addr[0]}:{addr[1]} (known state {current.state.name})",
            )
    if not is_local and incarnation <= current.incarnation and not updates_addr:
        return Verdict(Action.IGNORE, "stale incarnation", is_new=is_new)
    if is_local and incarnation < current.incarnation:
        return Verdict(Action.IGNORE, "stale incarnation about us", is_new=is_new)
    if is_local and not bootstrap:
        if incarnation == current.incarnation and meta == current.meta and vsn == current.vsn:
            return Verdict(Action.IGNORE, "our own alive", is_new=is_new)
        return Verdict(Action.REFUTE, "alive about us with other meta/vsn/incarnation", is_new=is_new)
    return Verdict(Action.APPLY, is_new=is_new, updates_addr=updates_addr)


def judge_suspect(current: NodeState | None, *, incarnation: int, local_name: str, suspicion_running: bool) -> Verdict:
    """memberlist suspectNode's decision."""
    if current is None:
        return Verdict(Action.IGNORE, "unknown node")
    if incarnation < current.incarnation:
        return Verdict(Action.IGNORE, "stale incarnation")
    if suspicion_running:
        return Verdict(Action.CONFIRM)
    action = ON_SUSPECT[current.state]
    if action is Action.SUSPECT and current.name == local_name:
        return Verdict(Action.REFUTE, "suspect about us")
    return Verdict(action, "" if action is not Action.IGNORE else f"node is {current.state.name}")


def judge_dead(current: NodeState | None, *, incarnation: int, from_: str, local_name: str, has_left: bool) -> Verdict:
    """memberlist deadNode's decision; a dead with From == Node means the node left."""
    if current is None:
        return Verdict(Action.IGNORE, "unknown node")
    if incarnation < current.incarnation:
        return Verdict(Action.IGNORE, "stale incarnation")
    action = ON_DEAD[current.state]
    if action is Action.IGNORE:
        return Verdict(Action.IGNORE, f"already {current.state.name}", clear_suspicion=True)
    if current.name == local_name and not has_left:
        return Verdict(Action.REFUTE, "dead about us", clear_suspicion=True)
    new_state = NodeStateType.LEFT if from_ == current.name else NodeStateType.DEAD
    return Verdict(Action.KILL, new_state=new_state, clear_suspicion=True)


class Notify(enum.Enum):
    NONE = "none"
    JOIN = "join"
    UPDATE = "update"


def notify_after_alive(old_state: NodeStateType, old_meta: bytes, new_meta: bytes) -> Notify:
    """aliveNode's event: dead/left -> alive is a join, a meta change of a live node an update."""
    if old_state in (NodeStateType.DEAD, NodeStateType.LEFT):
        return Notify.JOIN
    if old_meta != new_meta:
        return Notify.UPDATE
    return Notify.NONE


def verify_protocol(remote: list[tuple[str, NodeStateType, bytes]], local: list[NodeState]) -> str | None:
    """memberlist verifyProtocol: every speaking version must fit the cluster's common range.

    `remote` holds (name, state, vsn) of the pushed states. Returns an error text, or None if fine.
    """
    maxpmin = maxdmin = 0
    minpmax = mindmax = 255
    # Each distinct vector is judged once, in the order of its first node (the one an error names): a push/pull
    # carries every member, nearly all with the same vector.
    first_remote: dict[bytes, str] = {}
    alive_remote: dict[bytes, None] = {}
    alive = NodeStateType.ALIVE
    for name, state, vsn in remote:
        if vsn not in first_remote:
            first_remote[vsn] = name
        if state == alive and vsn not in alive_remote:
            alive_remote[vsn] = None
    for vsn in alive_remote:
        if len(vsn) == 0:
            continue
        if len(vsn) < 6:
            return f"short version vector {list(vsn)}"
        maxpmin, minpmax = max(maxpmin, vsn[0]), min(minpmax, vsn[1])
        maxdmin, mindmax = max(maxdmin, vsn[3]), min(mindmax, vsn[4])
    # The local loops read vsn directly rather than through the pmin.. properties: this runs over every member on
    # every push/pull, and equal version vectors are judged once (a missing byte reads as 0, as NodeState._v).
    local_vsns = {n.vsn for n in local if n.state == NodeStateType.ALIVE}
    for vsn in local_vsns:
        v = bytes(vsn).ljust(6, b"\0")
        maxpmin, minpmax = max(maxpmin, v[0]), min(minpmax, v[1])
        maxdmin, mindmax = max(maxdmin, v[3]), min(mindmax, v[4])
    checks = [(name, _v(vsn, 2), _v(vsn, 5)) for vsn, name in first_remote.items()]
    first_with: dict[bytes, str] = {}
    for n in local:
        first_with.setdefault(n.vsn, n.name)
    checks += [(name, _v(vsn, 2), _v(vsn, 5)) for vsn, name in first_with.items()]
    for name, pcur, dcur in checks:
        if pcur < maxpmin or pcur > minpmax:
            return f"Node '{name}' protocol version ({pcur}) is incompatible: [{maxpmin}, {minpmax}]"
        if dcur < maxdmin or dcur > mindmax:
            return f"Node '{name}' delegate protocol version ({dcur}) is incompatible: [{maxdmin}, {mindmax}]"
    return None


def _v(vsn: bytes, i: int) -> int:
    return vsn[i] if len(vsn) > i else 0


def implausible_incarnation(current: NodeState | None, incarnation: int) -> bool:
    """True for a claim no honest member could have made: far ahead of what we know of that member.

    Unknown members are not judged (a node we never heard of may be at any incarnation).
    """
    return current is not None and incarnation > current.incarnation + INCARNATION_JUMP_LIMIT
