"""Serf's member table: statuses from memberlist's events and Lamport-ordered intents, prune, reap.

memberlist says who is reachable; the table adds *why* a member went away. A member that announced a leave
intent (a Lamport-stamped broadcast) and then vanished is ``left``; one that vanished without it is ``failed``.
Intents are ordered by the member clock so that a stale leave never beats a newer join, and are buffered when
they arrive before memberlist reports the member. The rules follow serf.go (handleNodeJoin/Leave/Update,
handleNodeJoinIntent/LeaveIntent, eraseNode, reap); where we differ it is said at the spot.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

import attrs

from protocol.broadcast import BroadcastQueue
from protocol.interning import bounded_put
from protocol.serf_core import LEVEL_DEBUG, LEVEL_ERROR, LEVEL_INFO, LEVEL_WARN, SerfCore, SerfState
from protocol.serf_events import EventKind, Member, MemberStatus, MemberStatusChanged
from protocol.serf_messages import JoinIntent, LeaveIntent, SerfMessageType, decode_tags, encode_message
from protocol.state import NodeState, NodeStateType

_SHARED_TAGS: dict[bytes, dict[str, str]] = {}
_SHARED_IDENTS: dict[tuple[str, str, int, bytes, bytes], Member] = {}
_SHARED_LTIMES: dict[int, int] = {}


def _shared_ltime(ltime: int) -> int:
    """One int object per Lamport time for every member record of every Serf in the process: status_ltime is per
    pair of members, and a time decoded from each push/pull and intent is a fresh 32-byte int above 256."""
    found = _SHARED_LTIMES.get(ltime)
    if found is None:
        found = bounded_put(_SHARED_LTIMES, ltime, ltime)
    return found


@attrs.define(weakref_slot=False)  # per pair of members, like NodeState: no slot nothing uses
class MemberState:
    """serf's memberState: the member, its status, the Lamport time of its last intent and when it went away.

    `ident` (name, address, tags, versions) is shared by every MemberState, in every Serf of the process, that
    knows the member the same way (`_shared_ident`): every member holds a record of every other one, so these are
    N^2, and one Member each was most of a large simulation's memory (issue 14). It is never changed in place: a
    new address or new tags replace it. Only `status` and the two times are this Serf's own. `snapshot()` is the
    Member handed out (a copy with our status and its own tags dict).
    """

    ident: Member
    status: MemberStatus
    status_ltime: int = 0
    leave_time: float = 0.0

    @property
    def name(self) -> str:
        return self.ident.name

    @property
    def addr(self) -> tuple[str, int]:
        return self.ident.addr, self.ident.port

    def snapshot(self) -> Member:
        i = self.ident
        return Member(
            i.name, i.addr, i.port, dict(i.tags), self.status,
            i.protocol_min, i.protocol_max, i.protocol_cur, i.delegate_min, i.delegate_max, i.delegate_cur,
        )


@attrs.frozen
class _Intent:
    """serf's nodeIntent: the latest intent about a member memberlist has not reported yet."""

    type: SerfMessageType
    wall_time: float
    ltime: int


class MemberTable:
    """Every member Serf knows, with its status, the failed and left lists, and the intents not yet placed."""

    def __init__(self, core: SerfCore, forget_coordinate: Callable[[str], None]) -> None:
        self._core = core
        self._forget_coordinate = forget_coordinate  # a reaped member's coordinate goes with it
        self.members: dict[str, MemberState] = {}
        self.failed: list[str] = []
        self.left: list[str] = []
        self._recent_intents: dict[str, _Intent] = {}
        self.prunes: list[tuple[float, str]] = []  # (when, name): pruning force-leaves of still-leaving members
        #: join and leave intents to gossip (ours and the ones we rebroadcast)
        self.broadcasts = BroadcastQueue(core.config.retransmit_mult)

    # ------------------------------------------------------------------ memberlist events -> statuses

    def handle_node_join(self, node: NodeState) -> None:
        """serf's handleNodeJoin: a new member takes any buffered intent; a known one becomes alive again."""
        ms = self.members.get(node.name)
        if ms is None:
            old = MemberStatus.NONE
            ms = MemberState(self._ident(node), MemberStatus.ALIVE)
            intent = self._recent_intents.get(node.name)
            if intent is not None and intent.type == SerfMessageType.JOIN:
                ms.status_ltime = _shared_ltime(intent.ltime)
            if intent is not None and intent.type == SerfMessageType.LEAVE:
                ms.status = MemberStatus.LEAVING
                ms.status_ltime = _shared_ltime(intent.ltime)
            self.members[node.name] = ms
        else:
            old = ms.status
            ms.status = MemberStatus.ALIVE
            ms.leave_time = 0.0
            ms.ident = self._ident(node)
        if old in (MemberStatus.FAILED, MemberStatus.LEFT):
            self._forget_gone(node.name)
        self._core.emit(EventKind.MEMBER_JOIN, ms.snapshot())

    def handle_node_leave(self, node: NodeState) -> None:
        """serf's handleNodeLeave: leaving -> left, alive -> failed.

        One addition: memberlist's LEFT state (the member announced its own death) also means left, so a peer
        that missed the leave intent never reports a graceful leave as a failure.
        """
        ms = self.members.get(node.name)
        if ms is None:
            return
        graceful = node.state == NodeStateType.LEFT
        if ms.status == MemberStatus.LEAVING or (ms.status == MemberStatus.ALIVE and graceful):
            ms.status, kind = MemberStatus.LEFT, EventKind.MEMBER_LEAVE
            self.left.append(ms.name)
        elif ms.status == MemberStatus.ALIVE:
            ms.status, kind = MemberStatus.FAILED, EventKind.MEMBER_FAILED
            self.failed.append(ms.name)
        else:
            self._core.diag(LEVEL_WARN, f"serf: bad state when leave: {node.name} is {ms.status}")
            return
        ms.leave_time = self._core.now
        self._core.emit(kind, ms.snapshot())

    def handle_node_update(self, node: NodeState) -> None:
        ms = self.members.get(node.name)
        if ms is None:
            return
        ms.ident = self._ident(node)
        self._core.emit(EventKind.MEMBER_UPDATE, ms.snapshot())

    def _ident(self, node: NodeState) -> Member:
        """The shared Member for this name, address, meta and versions (see MemberState); status unused (NONE)."""
        meta, vsn = bytes(node.meta or b""), bytes(node.vsn or b"")
        key = (node.name, node.addr[0], node.addr[1], meta, vsn)
        ident = _SHARED_IDENTS.get(key)
        if ident is None:
            tags = self._decode_tags(meta)
            ident = Member(node.name, node.addr[0], node.addr[1], tags, MemberStatus.NONE, *vsn.ljust(6, b"\0")[:6])
            if tags is not _SHARED_TAGS.get(meta):
                return ident  # undecodable meta (counted): not worth a shared entry
            bounded_put(_SHARED_IDENTS, key, ident)
        return ident

    def _decode_tags(self, meta: bytes) -> dict[str, str]:
        """Decoded once per distinct meta and shared by every member record (of every Serf in the process)
        that carries it: the records are per pair of members, and their tags are never changed in place
        (a new dict replaces them; Member.copy hands out copies)."""
        meta = bytes(meta or b"")
        tags = _SHARED_TAGS.get(meta)
        if tags is None:
            tags, error = decode_tags(meta)
            if error is not None:
                self._core.drop_malformed(LEVEL_ERROR, f"serf: {error}")
                return tags
            bounded_put(_SHARED_TAGS, meta, tags)
        return tags

    # ------------------------------------------------------------------ intents (Lamport-ordered)

    def handle_join_intent(self, msg: JoinIntent) -> bool:
        """serf's handleNodeJoinIntent; returns whether to rebroadcast (only news is)."""
        return self.join_intent(msg.ltime, msg.node)

    def join_intent(self, ltime: int, node: str) -> bool:
        """`handle_join_intent` of the intent's two fields."""
        self._core.clock.witness(ltime)
        ms = self.members.get(node)
        if ms is not None and ltime <= ms.status_ltime:
            return False
        return self._newer_join(ms, node, ltime)

    def join_intents(self, ltimes: dict[str, int], left: Collection[str]) -> None:
        """`join_intent` for each member of a push/pull's status LTimes but its left ones, the clock witnessing the
        newest time once: a push/pull names every member, nearly none of them news, and witnessing each time in
        turn ends at the same clock."""
        times = ltimes.values() if not left else [t for n, t in ltimes.items() if n not in left]
        if times:
            self._core.clock.witness(max(times))
        found = self.members.get
        for node, ltime in ltimes.items():
            ms = found(node)
            if (ms is not None and ltime <= ms.status_ltime) or node in left:
                continue
            self._newer_join(ms, node, ltime)

    def _newer_join(self, ms: MemberState | None, node: str, ltime: int) -> bool:
        """A join intent newer than what we hold: buffered if memberlist has not reported the member, else taken
        (a leaving member is alive again). Returns whether it was news."""
        if ms is None:
            return self._upsert_intent(node, SerfMessageType.JOIN, ltime)
        ms.status_ltime = _shared_ltime(ltime)
        if ms.status == MemberStatus.LEAVING:  # the leave we saw was older than this join
            ms.status = MemberStatus.ALIVE
            self._core.events.append(MemberStatusChanged(ms.snapshot()))
        return True

    def handle_leave_intent(self, msg: LeaveIntent) -> bool:
        """serf's handleNodeLeaveIntent; a leave about us while we are alive is refuted with a newer join."""
        self._core.clock.witness(msg.ltime)
        ms = self.members.get(msg.node)
        if ms is None:
            return self._upsert_intent(msg.node, SerfMessageType.LEAVE, msg.ltime)
        if msg.ltime <= ms.status_ltime:
            return False
        if msg.node == self._core.name and self._core.state == SerfState.ALIVE:
            self._core.diag(LEVEL_DEBUG, "serf: refuting an older leave intent")
            self.broadcast_join(self._core.clock.time())
            return False
        # Record the time even without a status change, or two peers rebroadcast each other forever
        # (consul#8179).
        ms.status_ltime = _shared_ltime(msg.ltime)
        match ms.status:
            case MemberStatus.ALIVE:
                ms.status = MemberStatus.LEAVING
                self._core.events.append(MemberStatusChanged(ms.snapshot()))
            case MemberStatus.FAILED:
                ms.status = MemberStatus.LEFT
                self.failed.remove(ms.name)
                self.left.append(ms.name)
                self._core.emit(EventKind.MEMBER_LEAVE, ms.snapshot())  # forced: the failed member is now left
            case MemberStatus.LEAVING | MemberStatus.LEFT:
                pass
            case _:
                return False
        if msg.prune:
            self._handle_prune(ms)
        return True

    def _upsert_intent(self, name: str, kind: SerfMessageType, ltime: int) -> bool:
        """Buffer an intent about a member memberlist has not reported; True if it was news."""
        known = self._recent_intents.get(name)
        if known is None or ltime > known.ltime:
            self._recent_intents[name] = _Intent(kind, self._core.now, ltime)
            return True
        return False

    def broadcast_join(self, ltime: int) -> None:
        """Announce (or re-announce, to refute a leave) our join at `ltime`."""
        msg = JoinIntent(ltime, self._core.name)
        self._core.clock.witness(ltime)
        self.handle_join_intent(msg)
        self.broadcasts.queue(None, encode_message(msg))

    def _handle_prune(self, ms: MemberState) -> None:
        """Erase a member on a pruning force-leave; a still-leaving one first gets time to finish leaving."""
        if ms.status == MemberStatus.LEAVING:
            delay = self._core.config.broadcast_timeout + self._core.config.leave_propagate_delay
            self.prunes.append((self._core.now + delay, ms.name))
            return
        self._erase(ms)

    def run_prunes(self, now: float) -> None:
        due = [name for deadline, name in self.prunes if deadline <= now]
        self.prunes = [(d, n) for d, n in self.prunes if d > now]
        for name in due:
            ms = self.members.get(name)
            # serf erases regardless; we spare a member that re-joined meanwhile, or it would vanish for good.
            if ms is not None and ms.status != MemberStatus.ALIVE:
                self._erase(ms)

    def _erase(self, ms: MemberState) -> None:
        """serf's eraseNode: forget the member entirely (member-reap)."""
        self.members.pop(ms.name, None)
        self._forget_gone(ms.name)
        self._forget_coordinate(ms.name)
        self._core.diag(LEVEL_INFO, f"serf: EventMemberReap: {ms.name}", "reap")
        self._core.emit(EventKind.MEMBER_REAP, ms.snapshot())

    def _forget_gone(self, name: str) -> None:
        if name in self.failed:
            self.failed.remove(name)
        if name in self.left:
            self.left.remove(name)

    def reap(self, now: float) -> None:
        """Erase failed members past reconnect_timeout and left ones past tombstone_timeout; expire intents."""
        config = self._core.config
        timeouts = ((self.failed, config.reconnect_timeout), (self.left, config.tombstone_timeout))
        for names, timeout in timeouts:
            for name in list(names):
                ms = self.members.get(name)
                if ms is not None and now - ms.leave_time > timeout:
                    self._erase(ms)
        horizon = config.recent_intent_timeout
        for name in [n for n, i in self._recent_intents.items() if now - i.wall_time > horizon]:
            del self._recent_intents[name]

    def has_alive_members(self) -> bool:
        return any(ms.status == MemberStatus.ALIVE for n, ms in self.members.items() if n != self._core.name)
