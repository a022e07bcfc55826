"""protocol.Serf's rules, unit by unit, against a scripted fake of protocol.Node.

The fake records commands (join, leave, update_meta) and lets a test play memberlist's callbacks
(notify_join/leave/update, notify_msg, push/pull state) in any order, which the real Node cannot easily be made to
do. The intent and status rules are tables whose rows follow serf.go's handleNodeJoinIntent/LeaveIntent and
handleNodeJoin/Leave.
"""

from __future__ import annotations

import random
from collections import deque
from typing import Any

import attrs
import pytest

from protocol.config import Config
from protocol.lamport import LamportClock
from protocol.node import Diagnostic, JoinResult, LeaveDone, NodeJoin
from protocol.serf import APP_MESSAGE_TYPE, AppMessage, EventKind, MemberEvent, MemberStatus, Serf, SerfState, UserEvent
from protocol.serf_messages import (
    QUERY_FLAG_ACK,
    ConflictResponse,
    JoinIntent,
    LeaveIntent,
    MemberInfo,
    NodeFilter,
    QueryMessage,
    QueryResponseMessage,
    RelayMessage,
    SerfPushPull,
    TagFilter,
    UserEventMessage,
    decode_message,
    encode_filter,
    encode_message,
    encode_tags,
)
from protocol.state import Addr, NodeState, NodeStateType

VSN = bytes([1, 5, 2, 2, 5, 4])


class FakeNode:
    """Just enough of protocol.Node: a local NodeState, an event queue, and recorded commands."""

    def __init__(self, config: Config, *, name: str, addr: Addr, rng: random.Random, now: float, delegate: Any):
        self.delegate = delegate
        self.name = name
        self.events: deque[Any] = deque()
        self.joins: list[list[Addr]] = []
        self.leaves: list[float] = []
        self.gossips: list[float] = []  # gossip_now calls: a leave sends its intent at once
        self.meta_updates = 0
        self.sent: list[tuple[Addr, bytes, str]] = []
        self.shut = False
        self.timeout: float | None = None
        self.health_score = 0  # memberlist's awareness score
        self.local = NodeState(name, addr, delegate.node_meta(512), 1, NodeStateType.ALIVE, now, VSN)
        delegate.notify_join(now, self.local)

    def poll_event(self) -> Any:
        return self.events.popleft() if self.events else None

    def poll_transmit(self) -> None:
        return None

    def poll_timeout(self) -> float | None:
        return self.timeout

    def handle_timeout(self, now: float) -> None:
        pass

    def join(self, now: float, addrs: list[Addr]) -> None:
        self.joins.append(list(addrs))

    def leave(self, now: float) -> None:
        self.leaves.append(now)

    def gossip_now(self, now: float) -> None:
        self.gossips.append(now)

    def update_meta(self, now: float) -> None:
        self.meta_updates += 1
        self.local = attrs.evolve(self.local, meta=self.delegate.node_meta(512), incarnation=self.local.incarnation + 1)
        self.delegate.notify_update(now, self.local)

    def shutdown(self) -> None:
        self.shut = True

    def send_best_effort(self, addr: Addr, payload: bytes, node_name: str = "") -> None:
        self.sent.append((addr, payload, node_name))

    def send_reliable(self, addr: Addr, payload: bytes) -> None:
        self.sent.append((addr, payload, "tcp"))


CFG = Config.lan(
    reap_interval=15,
    reconnect_interval=30,
    reconnect_timeout=100,
    tombstone_timeout=200,
    broadcast_timeout=5,
    leave_propagate_delay=1,
)


def make(name: str = "me", now: float = 0.0, tags: dict[str, str] | None = None, seed: int = 1) -> Serf:
    return Serf(
        CFG,
        name=name,
        addr=("10.0.0.1", 7946),
        rng=random.Random(seed),
        now=now,
        tags=tags or {"role": "test"},
        node_factory=FakeNode,
    )


def fake(s: Serf) -> FakeNode:
    assert isinstance(s.node, FakeNode)
    return s.node


def peer(name: str, state: NodeStateType = NodeStateType.ALIVE, tags: dict[str, str] | None = None) -> NodeState:
    n = int(name.strip("abcdefghijklmnopqrstuvwxyz") or 2)
    return NodeState(name, (f"10.0.0.{n}", 7946), encode_tags(tags or {"id": name}), 1, state, 0.0, VSN)


def events(s: Serf) -> list[Any]:
    out = []
    while (ev := s.poll_event()) is not None:
        out.append(ev)
    return out


def member_events(s: Serf) -> list[tuple[str, str]]:
    return [(str(e.kind), e.member.name) for e in events(s) if isinstance(e, MemberEvent)]


def status(s: Serf, name: str) -> MemberStatus | None:
    m = s.member(name)
    return m.status if m is not None else None


def drain_broadcasts(s: Serf, rounds: int = 50) -> list[Any]:
    """Everything the delegate hands memberlist for piggybacking, decoded, over many gossip rounds."""
    out = []
    for _ in range(rounds):
        out.extend(decode_message(m) for m in s.get_broadcasts(2, 1400))
    return out


# --- Lamport clock -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "witnessed", "after"),
    [(1, 0, 1), (5, 3, 5), (5, 5, 6), (5, 9, 10), (0, 0, 1)],
)
def test_lamport_witness(start: int, witnessed: int, after: int) -> None:
    c = LamportClock(start)
    c.witness(witnessed)
    assert c.time() == after


def test_lamport_increment() -> None:
    c = LamportClock(1)
    assert c.increment() == 2 and c.time() == 2


def test_clocks_start_at_one_and_local_member_joined() -> None:
    s = make()
    assert (s.clock.time(), s.event_clock.time(), s.query_clock.time()) == (1, 1, 1)
    me = s.local_member()
    assert me.status == MemberStatus.ALIVE and me.tags == {"role": "test"}
    assert (me.protocol_min, me.protocol_max, me.protocol_cur) == (1, 5, 2)
    assert (me.delegate_min, me.delegate_max, me.delegate_cur) == (2, 5, 4)
    assert member_events(s) == [("member-join", "me")]


# --- join intents (serf handleNodeJoinIntent) ----------------------------------------------------------------

JOIN_INTENT_TABLE = [
    # status before, status_ltime, intent ltime -> rebroadcast, status after, status_ltime after
    (MemberStatus.ALIVE, 5, 6, True, MemberStatus.ALIVE, 6),
    (MemberStatus.ALIVE, 5, 5, False, MemberStatus.ALIVE, 5),
    (MemberStatus.ALIVE, 5, 4, False, MemberStatus.ALIVE, 5),
    (MemberStatus.LEAVING, 5, 6, True, MemberStatus.ALIVE, 6),
    (MemberStatus.LEAVING, 5, 5, False, MemberStatus.LEAVING, 5),
    (MemberStatus.LEFT, 5, 6, True, MemberStatus.LEFT, 6),
    (MemberStatus.FAILED, 5, 6, True, MemberStatus.FAILED, 6),
]


@pytest.mark.parametrize(("before", "lt", "intent", "rebroadcast", "after", "lt_after"), JOIN_INTENT_TABLE)
def test_join_intent_table(
    before: MemberStatus, lt: int, intent: int, rebroadcast: bool, after: MemberStatus, lt_after: int
) -> None:
    s = make()
    s.notify_join(0.0, peer("n2"))
    ms = s._table.members["n2"]
    ms.status, ms.status_ltime = before, lt
    assert s._table.handle_join_intent(JoinIntent(intent, "n2")) is rebroadcast
    assert (ms.status, ms.status_ltime) == (after, lt_after)
    assert s.clock.time() > intent  # witnessed


# --- leave intents (serf handleNodeLeaveIntent) --------------------------------------------------------------

LEAVE_INTENT_TABLE = [
    # status before, status_ltime, intent ltime -> rebroadcast, status after, status_ltime after, events
    (MemberStatus.ALIVE, 5, 6, True, MemberStatus.LEAVING, 6, []),
    (MemberStatus.ALIVE, 5, 5, False, MemberStatus.ALIVE, 5, []),
    (MemberStatus.LEAVING, 5, 6, True, MemberStatus.LEAVING, 6, []),  # time recorded: consul#8179
    (MemberStatus.LEAVING, 6, 6, False, MemberStatus.LEAVING, 6, []),
    (MemberStatus.LEFT, 5, 7, True, MemberStatus.LEFT, 7, []),
    (MemberStatus.FAILED, 5, 6, True, MemberStatus.LEFT, 6, [("member-leave", "n2")]),
    (MemberStatus.FAILED, 5, 3, False, MemberStatus.FAILED, 5, []),
    (MemberStatus.NONE, 5, 6, False, MemberStatus.NONE, 6, []),
]


@pytest.mark.parametrize(("before", "lt", "intent", "rebroadcast", "after", "lt_after", "evs"), LEAVE_INTENT_TABLE)
def test_leave_intent_table(
    before: MemberStatus,
    lt: int,
    intent: int,
    rebroadcast: bool,
    after: MemberStatus,
    lt_after: int,
    evs: list[tuple[str, str]],
) -> None:
    s = make()
    s.notify_join(0.0, peer("n2"))
    if before == MemberStatus.FAILED:
        s.notify_leave(0.0, peer("n2", NodeStateType.DEAD))
    events(s)
    ms = s._table.members["n2"]
    ms.status, ms.status_ltime = before, lt
    assert s._table.handle_leave_intent(LeaveIntent(intent, "n2")) is rebroadcast
    assert (ms.status, ms.status_ltime) == (after, lt_after)
    assert member_events(s) == evs
    if after == MemberStatus.LEFT and before == MemberStatus.FAILED:
        assert s.stats()["failed"] == 0 and s.stats()["left"] == 1


def test_leave_intent_about_us_is_refuted_with_newer_join() -> None:
    s = make()
    s.notify_join(0.0, peer("n2"))  # someone to gossip to
    drain_broadcasts(s)
    assert s._table.handle_leave_intent(LeaveIntent(10, "me")) is False
    assert status(s, "me") == MemberStatus.ALIVE
    sent = [m for m in drain_broadcasts(s) if isinstance(m, JoinIntent)]
    assert sent and sent[0].node == "me" and sent[0].ltime > 10
    assert s._table.members["me"].status_ltime == sent[0].ltime
    # the same stale leave again is now old news
    assert s._table.handle_leave_intent(LeaveIntent(10, "me")) is False


def test_leave_intent_about_us_while_leaving_is_accepted() -> None:
    s = make()
    s.notify_join(0.0, peer("n2"))
    s.leave(1.0)
    assert status(s, "me") == MemberStatus.LEAVING


# --- the recent intent buffer -----------------------------------------------------------------------------------


def test_leave_intent_for_unknown_member_is_remembered() -> None:
    s = make()
    assert s._table.handle_leave_intent(LeaveIntent(8, "n2")) is True
    assert s._table.handle_leave_intent(LeaveIntent(8, "n2")) is False  # not news twice
    assert s._table.handle_join_intent(JoinIntent(7, "n2")) is False  # older than the buffered leave
    s.notify_join(1.0, peer("n2"))
    assert status(s, "n2") == MemberStatus.LEAVING
    assert s._table.members["n2"].status_ltime == 8
    assert member_events(s)[-1] == ("member-join", "n2")  # serf still reports the join
    # memberlist then reports it gone: a leave, not a failure
    s.notify_leave(2.0, peer("n2", NodeStateType.DEAD))
    assert member_events(s) == [("member-leave", "n2")]


def test_newer_join_intent_replaces_buffered_leave() -> None:
    s = make()
    s._table.handle_leave_intent(LeaveIntent(8, "n2"))
    assert s._table.handle_join_intent(JoinIntent(9, "n2")) is True
    s.notify_join(1.0, peer("n2"))
    assert status(s, "n2") == MemberStatus.ALIVE
    assert s._table.members["n2"].status_ltime == 9


def test_recent_intents_expire() -> None:
    s = make()
    s._table.handle_leave_intent(LeaveIntent(8, "n2"))
    s.handle_timeout(CFG.recent_intent_timeout + 20)
    s.notify_join(CFG.recent_intent_timeout + 21, peer("n2"))
    assert status(s, "n2") == MemberStatus.ALIVE


# --- memberlist notifications -> statuses (serf handleNodeJoin/Leave/Update) ------------------------------------

NOTIFY_LEAVE_TABLE = [
    # status before, memberlist state -> status after, event
    (MemberStatus.ALIVE, NodeStateType.DEAD, MemberStatus.FAILED, "member-failed"),
    (MemberStatus.ALIVE, NodeStateType.LEFT, MemberStatus.LEFT, "member-leave"),
    (MemberStatus.LEAVING, NodeStateType.DEAD, MemberStatus.LEFT, "member-leave"),
    (MemberStatus.LEAVING, NodeStateType.LEFT, MemberStatus.LEFT, "member-leave"),
    (MemberStatus.FAILED, NodeStateType.DEAD, MemberStatus.FAILED, None),
    (MemberStatus.LEFT, NodeStateType.LEFT, MemberStatus.LEFT, None),
]


@pytest.mark.parametrize(("before", "state", "after", "event"), NOTIFY_LEAVE_TABLE)
def test_notify_leave_table(before: MemberStatus, state: NodeStateType, after: MemberStatus, event: str | None) -> None:
    s = make()
    s.notify_join(0.0, peer("n2"))
    events(s)
    s._table.members["n2"].status = before
    s.notify_leave(3.0, peer("n2", state))
    assert status(s, "n2") == after
    assert member_events(s) == ([(event, "n2")] if event else [])
    if event:
        assert s._table.members["n2"].leave_time == 3.0


def test_notify_leave_for_unknown_member_is_ignored() -> None:
    s = make()
    events(s)
    s.notify_leave(1.0, peer("n9", NodeStateType.DEAD))
    assert events(s) == [] and s.member("n9") is None


def test_failed_member_rejoining_is_alive_and_off_the_failed_list() -> None:
    s = make()
    s.notify_join(0.0, peer("n2"))
    s.notify_leave(1.0, peer("n2", NodeStateType.DEAD))
    assert s.stats()["failed"] == 1
    s.notify_join(2.0, peer("n2", tags={"v": "2"}))
    m = s.member("n2")
    assert m is not None and m.status == MemberStatus.ALIVE and m.tags == {"v": "2"}
    assert s.stats()["failed"] == 0
    assert member_events(s)[-1] == ("member-join", "n2")


def test_update_changes_tags_and_addr() -> None:
    s = make()
    s.notify_join(0.0, peer("n2"))
    events(s)
    s.notify_update(1.0, attrs.evolve(peer("n2", tags={"x": "y"}), addr=("10.9.9.9", 1234)))
    m = s.member("n2")
    assert m is not None and (m.addr, m.port, m.tags) == ("10.9.9.9", 1234, {"x": "y"})
    assert member_events(s) == [("member-update", "n2")]


def test_member_event_snapshots_do_not_change_later() -> None:
    s = make()
    s.notify_join(0.0, peer("n2"))
    ev = [e for e in events(s) if isinstance(e, MemberEvent)][-1]
    s.notify_leave(1.0, peer("n2", NodeStateType.DEAD))
    assert ev.member.status == MemberStatus.ALIVE
    assert ev.kind == "member-join" and ev.kind is EventKind.MEMBER_JOIN


def test_old_protocol_role_meta() -> None:
    s = make()
    s.notify_join(0.0, attrs.evolve(peer("n2"), meta=b"web"))
    m = s.member("n2")
    assert m is not None and m.tags == {"role": "web"}


# --- tags -------------------------------------------------------------------------------------------------------


def test_set_tags_updates_meta_and_gossips() -> None:
    s = make()
    s.set_tags(1.0, {"role": "db", "dc": "x"})
    assert fake(s).meta_updates == 1
    assert s.node_meta(512) == encode_tags({"role": "db", "dc": "x"})
    assert s.local_member().tags == {"role": "db", "dc": "x"}


def test_set_tags_too_big_is_a_clear_error_and_changes_nothing() -> None:
    s = make()
    with pytest.raises(ValueError, match="512"):
        s.set_tags(1.0, {"big": "x" * 600})
    assert s.tags == {"role": "test"} and fake(s).meta_updates == 0


def test_create_with_too_big_tags_fails() -> None:
    with pytest.raises(ValueError, match="512"):
        make(tags={"big": "x" * 600})


# --- user messages ----------------------------------------------------------------------------------------------


def test_notify_msg_rebroadcasts_news_only() -> None:
    s = make()
    s.notify_join(0.0, peer("n2"))
    raw = encode_message(JoinIntent(20, "n2"))
    s.notify_msg(1.0, raw)
    s.notify_msg(1.0, raw)
    sent = drain_broadcasts(s)
    assert sent.count(JoinIntent(20, "n2")) == CFG.retransmit_mult  # one message, 4 * ceil(log10(2+1)) transmits


def test_notify_msg_garbage_is_a_diagnostic() -> None:
    s = make()
    events(s)
    s.notify_msg(1.0, b"\x01\xc1")
    s.notify_msg(1.0, b"")
    s.notify_msg(1.0, b"\x63")
    diags = [e for e in events(s) if isinstance(e, Diagnostic)]
    assert len(diags) == 2 and diags[0].level == "error" and "join" in diags[0].message


def test_user_events_dedupe_rebroadcast_and_report() -> None:
    s = make()
    s.notify_join(0.0, peer("n2"))
    events(s)
    raw = encode_message(UserEventMessage(5, "deploy", b"v1", True))
    s.notify_msg(1.0, raw)
    s.notify_msg(1.0, raw)
    evs = [e for e in events(s) if isinstance(e, UserEvent)]
    assert evs == [UserEvent(5, "deploy", b"v1", True)]
    assert s.event_clock.time() == 6
    assert drain_broadcasts(s).count(UserEventMessage(5, "deploy", b"v1", True)) == CFG.retransmit_mult


def test_user_event_originated() -> None:
    s = make()
    s.notify_join(0.0, peer("n2"))
    s.user_event(1.0, "hello", b"p")
    assert s.event_clock.time() == 2
    assert UserEventMessage(1, "hello", b"p", True) in drain_broadcasts(s)
    with pytest.raises(ValueError, match="limit"):
        s.user_event(1.0, "x", b"y" * 600)


def test_queries_keep_clock_dedupe_and_respect_no_broadcast() -> None:
    s = make()
    s.notify_join(0.0, peer("n2"))
    q = QueryMessage(ltime=9, id=1, name="_serf_ping", source_node="n2")
    s.notify_msg(1.0, encode_message(q))
    s.notify_msg(1.0, encode_message(q))
    s.notify_msg(1.0, encode_message(attrs.evolve(q, id=2, flags=2)))  # NoBroadcast
    assert s.query_clock.time() == 10
    sent = drain_broadcasts(s)
    assert sent.count(q) == CFG.retransmit_mult and not [m for m in sent if getattr(m, "id", 0) == 2]


def test_user_events_and_queries_older_than_their_buffer_are_dropped_with_a_warning() -> None:
    s = make()
    s.notify_join(0.0, peer("n2"))
    events(s)
    newest, old = CFG.event_buffer + 10, 5  # the clocks move past newest; old is then beyond the 512 LTimes kept
    s.notify_msg(1.0, encode_message(UserEventMessage(newest, "fresh", b"", False)))
    s.notify_msg(1.0, encode_message(QueryMessage(ltime=newest, id=1, name="_serf_ping", source_node="n2")))
    events(s)
    s.notify_msg(1.0, encode_message(UserEventMessage(old, "stale", b"", False)))
    s.notify_msg(1.0, encode_message(QueryMessage(ltime=old, id=2, name="_serf_ping", source_node="n2")))
    evs = events(s)
    assert not [e for e in evs if isinstance(e, UserEvent)]
    warnings = [e.message for e in evs if isinstance(e, Diagnostic) and e.level == "warning"]
    assert warnings == [
        f"serf: received old event stale from time {old} (current {newest + 1})",
        f"serf: received old query _serf_ping from time {old} (current {newest + 1})",
    ]
    sent = drain_broadcasts(s)
    assert UserEventMessage(old, "stale", b"", False) not in sent and not [m for m in sent if getattr(m, "id", 0) == 2]


def test_relay_is_forwarded_to_its_destination() -> None:
    s = make()
    inner = b"\x05\x80"
    relay = RelayMessage(bytes([127, 0, 0, 9]), 8301, "origin", inner)
    s.notify_msg(1.0, encode_message(relay))
    assert fake(s).sent == [(("127.0.0.9", 8301), inner, "origin")]


# --- push/pull state ------------------------------------------------------------------------------------------


def test_local_state_round_trip_between_two_serfs() -> None:
    a, b = make("a"), make("b", seed=2)
    for x in ("n2", "n3"):
        a.notify_join(0.0, peer(x))
    a.notify_leave(1.0, peer("n3", NodeStateType.DEAD))
    a._table.handle_leave_intent(LeaveIntent(30, "n3"))  # failed -> left
    a.user_event(1.0, "ev", b"1")
    state = a.local_state(join=False)
    pp = decode_message(state)
    assert isinstance(pp, SerfPushPull)
    assert pp.left_members == ("n3",) and pp.status_ltimes["n3"] == 30
    b.merge_remote_state(2.0, state, join=False)
    assert b.clock.time() >= pp.ltime  # witnessed ltime - 1, then one past it
    assert b.event_clock.time() >= pp.event_ltime
    # b has not met the members yet: their intents are buffered
    b.notify_join(3.0, peer("n3"))
    assert status(b, "n3") == MemberStatus.LEAVING
    b.notify_join(3.0, peer("n2"))
    assert status(b, "n2") == MemberStatus.ALIVE and b._table.members["n2"].status_ltime == pp.status_ltimes["n2"]
    assert [e for e in events(b) if isinstance(e, UserEvent)] == [UserEvent(1, "ev", b"1", False)]


@pytest.mark.parametrize("left", [set(), {"n5"}], ids=["none-left", "one-left"])
def test_a_push_pulls_join_intents_merge_as_one_intent_each(left: set[str]) -> None:
    """MemberTable.join_intents (a push/pull's status LTimes, the clock witnessing the newest once) ends where
    join_intent, member by member, ends: statuses, times, buffered intents, events and the clock."""
    ltimes = {"n2": 4, "n3": 7, "n4": 12, "n9": 6, "n5": 40}
    twins = [make("b", seed=2), make("b", seed=2)]
    before = {"n2": (MemberStatus.ALIVE, 5), "n3": (MemberStatus.LEAVING, 3), "n4": (MemberStatus.ALIVE, 9),
              "n5": (MemberStatus.ALIVE, 1)}  # fmt: skip
    for s in twins:
        for name, (st, lt) in before.items():
            s.notify_join(0.0, peer(name))
            ms = s._table.members[name]
            ms.status, ms.status_ltime = st, lt
        events(s)
    bulk, one_by_one = twins
    bulk._table.join_intents(ltimes, left)
    for name, lt in ltimes.items():
        if name not in left:
            one_by_one._table.join_intent(lt, name)

    def seen(s: Serf) -> tuple[Any, ...]:
        table = s._table
        members = {n: (ms.status, ms.status_ltime) for n, ms in table.members.items()}
        evs = [(type(e).__name__, e.member.name, e.member.status) for e in events(s)]
        return members, dict(table._recent_intents), evs, s.clock.time()

    got = seen(bulk)
    assert got == seen(one_by_one)
    members, intents, evs, clock = got
    assert members["n3"] == (MemberStatus.ALIVE, 7) and members["n2"] == (MemberStatus.ALIVE, 5)
    assert list(intents) == ["n9"] and evs == [("MemberStatusChanged", "n3", MemberStatus.ALIVE)]
    assert clock == (13 if left else 41)


def test_merge_on_join_with_ignore_old_skips_old_events() -> None:
    a, b = make("a"), make("b", seed=2)
    a.user_event(1.0, "old", b"")
    b.join(1.0, [("10.0.0.1", 7946)], ignore_old=True)
    b.merge_remote_state(1.5, a.local_state(join=True), join=True)
    fake(b).events.append(JoinResult(("10.0.0.1", 7946), True))
    assert not [e for e in events(b) if isinstance(e, UserEvent)]
    # without ignore_old, the same state delivers the event
    c = make("c", seed=3)
    c.merge_remote_state(1.5, a.local_state(join=True), join=True)
    assert [e.name for e in events(c) if isinstance(e, UserEvent)] == ["old"]


def test_merge_rejects_bad_state_with_diagnostic() -> None:
    s = make()
    events(s)
    s.merge_remote_state(1.0, b"", join=False)
    s.merge_remote_state(1.0, b"\x01\x80", join=False)
    s.merge_remote_state(1.0, b"\x02\xc1", join=False)
    assert [e.level for e in events(s)] == ["error"] * 3


# --- join ------------------------------------------------------------------------------------------------------


def test_join_broadcasts_one_join_intent_on_first_success() -> None:
    s = make()
    a1, a2 = ("10.0.0.2", 7946), ("10.0.0.3", 7946)
    s.join(1.0, [a1, a2])
    assert fake(s).joins == [[a1, a2]]
    s.notify_join(1.1, peer("n2"))
    fake(s).events.extend([JoinResult(a1, True), JoinResult(a2, False, "refused")])
    evs = events(s)
    assert [e for e in evs if isinstance(e, JoinResult)] == [JoinResult(a1, True), JoinResult(a2, False, "refused")]
    joins = [m for m in drain_broadcasts(s) if isinstance(m, JoinIntent)]
    assert len(set(joins)) == 1 and joins[0].node == "me"
    assert s._join_ops == []


def test_node_member_events_are_not_duplicated() -> None:
    s = make()
    events(s)
    fake(s).events.append(NodeJoin(peer("n2")))
    assert events(s) == []


def test_join_after_leave_refused() -> None:
    s = make()
    s.leave(0.0)
    with pytest.raises(RuntimeError):
        s.join(1.0, [("10.0.0.2", 1)])


# --- graceful leave ---------------------------------------------------------------------------------------------


def test_leave_sequence_intent_memberlist_propagate() -> None:
    s = make()
    s.notify_join(0.0, peer("n2"))
    events(s)
    s.leave(10.0)
    assert s.state == SerfState.LEAVING and status(s, "me") == MemberStatus.LEAVING
    assert fake(s).leaves == []  # waits for the intent to spread first
    sent = drain_broadcasts(s)
    assert sent.count(LeaveIntent(1, "me")) == CFG.retransmit_mult
    s.handle_timeout(10.5)
    assert fake(s).leaves == [10.5]
    fake(s).events.append(LeaveDone())
    s.handle_timeout(10.6)
    assert s.state == SerfState.LEAVING and not [e for e in events(s) if isinstance(e, LeaveDone)]
    assert s.poll_timeout() == pytest.approx(11.6)
    s.handle_timeout(11.6)
    assert s.state == SerfState.LEFT
    assert [e for e in events(s) if isinstance(e, LeaveDone)] == [LeaveDone()]


def test_leave_is_bounded_when_nothing_is_sent() -> None:
    s = make()
    s.notify_join(0.0, peer("n2"))
    events(s)
    s.leave(0.0)
    assert s.poll_timeout() == 5.0
    s.handle_timeout(5.0)  # intent never went out: go on anyway
    assert fake(s).leaves == [5.0]
    s.handle_timeout(10.0)  # memberlist never reported LeaveDone: go on anyway
    s.handle_timeout(11.0)
    evs = events(s)
    assert s.state == SerfState.LEFT and LeaveDone(timed_out=True) in evs
    assert sum(1 for e in evs if isinstance(e, Diagnostic) and e.level == "warning") == 2


def test_leave_alone_goes_straight_to_memberlist() -> None:
    s = make()
    s.leave(0.0)
    assert fake(s).leaves == [0.0]
    s.leave(0.1)  # already leaving: a warning, nothing else
    assert fake(s).leaves == [0.0]


def test_leave_when_left_reports_done_again() -> None:
    s = make()
    s.leave(0.0)
    fake(s).events.append(LeaveDone())
    s.handle_timeout(0.5)
    s.handle_timeout(1.5)
    assert s.state == SerfState.LEFT
    events(s)
    s.leave(2.0)
    assert events(s) == [LeaveDone()]


# --- force leave ------------------------------------------------------------------------------------------------


def test_force_leave_failed_member_becomes_left_and_is_broadcast() -> None:
    s = make()
    s.notify_join(0.0, peer("n2"))
    s.notify_join(0.0, peer("n3"))
    s.notify_leave(1.0, peer("n3", NodeStateType.DEAD))
    events(s)
    s.force_leave(2.0, "n3")
    assert status(s, "n3") == MemberStatus.LEFT
    assert member_events(s) == [("member-leave", "n3")]
    assert any(isinstance(m, LeaveIntent) and m.node == "n3" and not m.prune for m in drain_broadcasts(s))


def test_force_leave_of_a_live_member_shows_it_leaving_until_it_refutes() -> None:
    """serf's handleNodeLeaveIntent: alive -> leaving, no member event; the member's newer join intent makes it
    alive again.  Both changes are reported as MemberStatusChanged, so event followers see what members() shows."""
    s = make()
    s.notify_join(0.0, peer("n2"))
    s.notify_join(0.0, peer("n3"))
    events(s)
    s.force_leave(2.0, "n3")
    assert status(s, "n3") == MemberStatus.LEAVING
    changed = events(s)
    assert [(type(e).__name__, e.member.name, e.member.status) for e in changed] == [
        ("MemberStatusChanged", "n3", MemberStatus.LEAVING)
    ]
    leave = next(m for m in drain_broadcasts(s) if isinstance(m, LeaveIntent) and m.node == "n3")
    s.notify_msg(3.0, encode_message(JoinIntent(leave.ltime + 1, "n3")))  # n3 refutes
    assert status(s, "n3") == MemberStatus.ALIVE
    assert [(type(e).__name__, e.member.status) for e in events(s)] == [("MemberStatusChanged", MemberStatus.ALIVE)]


def test_force_leave_prune_erases_at_once() -> None:
    s = make()
    s.notify_join(0.0, peer("n2"))
    s.notify_join(0.0, peer("n3"))
    s.notify_leave(1.0, peer("n3", NodeStateType.DEAD))
    events(s)
    s.force_leave(2.0, "n3", prune=True)
    assert s.member("n3") is None
    assert member_events(s) == [("member-leave", "n3"), ("member-reap", "n3")]
    assert s.stats()["left"] == 0 and s.stats()["failed"] == 0
    assert any(isinstance(m, LeaveIntent) and m.node == "n3" and m.prune for m in drain_broadcasts(s))


def test_prune_of_leaving_member_waits_for_its_leave() -> None:
    s = make()
    s.notify_join(0.0, peer("n2"))
    events(s)
    s.notify_msg(1.0, encode_message(LeaveIntent(50, "n2", prune=True)))
    assert status(s, "n2") == MemberStatus.LEAVING
    assert s.poll_timeout() == pytest.approx(1.0 + 5 + 1)
    s.notify_leave(3.0, peer("n2", NodeStateType.LEFT))
    s.handle_timeout(7.0)
    assert s.member("n2") is None
    assert member_events(s) == [("member-leave", "n2"), ("member-reap", "n2")]


# --- reap and reconnect -----------------------------------------------------------------------------------------


def test_reap_failed_after_reconnect_timeout_and_left_after_tombstone() -> None:
    s = make()
    for n in ("n2", "n3", "n4"):
        s.notify_join(0.0, peer(n))
    s.notify_leave(10.0, peer("n3", NodeStateType.DEAD))  # failed
    s.notify_leave(10.0, peer("n4", NodeStateType.LEFT))  # left
    events(s)
    t = 0.0
    reaped: dict[str, float] = {}
    while t < 400:
        t = s.poll_timeout() or t + 1
        s.handle_timeout(t)
        for kind, name in member_events(s):
            if kind == "member-reap":
                reaped[name] = t
    assert set(reaped) == {"n3", "n4"}
    assert 110 < reaped["n3"] <= 110 + CFG.reap_interval
    assert 210 < reaped["n4"] <= 210 + CFG.reap_interval
    assert s.member("n2") is not None


def test_reconnect_tries_failed_members() -> None:
    s = make()
    s.notify_join(0.0, peer("n2"))
    s.notify_join(0.0, peer("n3"))
    s.notify_leave(1.0, peer("n3", NodeStateType.DEAD))
    events(s)
    for i in range(1, 11):
        s.handle_timeout(30.0 * i)
    # probability failed / alive = 1 / 2: about half the intervals try
    assert 2 <= len(fake(s).joins) <= 8
    assert all(j == [("10.0.0.3", 7946)] for j in fake(s).joins)
    # reconnect outcomes are ours: logged, not passed on as JoinResults
    for j in fake(s).joins:
        fake(s).events.append(JoinResult(j[0], False, "timeout"))
    assert not [e for e in events(s) if isinstance(e, JoinResult)]


def test_no_reconnect_without_failed_members_or_when_leaving() -> None:
    s = make()
    s.notify_join(0.0, peer("n2"))
    s.handle_timeout(31.0)
    assert fake(s).joins == []
    s.notify_leave(32.0, peer("n2", NodeStateType.DEAD))
    s.leave(33.0)
    for i in range(2, 10):
        s.handle_timeout(30.0 * i)
    assert fake(s).joins == []


# --- misc -------------------------------------------------------------------------------------------------------


def test_conflict_is_logged_with_both_addresses() -> None:
    s = make()
    events(s)
    s.notify_conflict(peer("n2"), attrs.evolve(peer("n2"), addr=("10.9.9.9", 1)))
    s.notify_conflict(peer("me"), attrs.evolve(peer("me"), addr=("10.9.9.8", 2)))
    msgs = [e for e in events(s) if isinstance(e, Diagnostic)]
    assert "10.0.0.2:7946" in msgs[0].message and "10.9.9.9:1" in msgs[0].message
    assert msgs[1].level == "error" and "10.9.9.8:2" in msgs[1].message


def test_poll_timeout_is_min_of_ours_and_nodes() -> None:
    s = make()
    assert s.poll_timeout() == CFG.reap_interval
    fake(s).timeout = 0.3
    assert s.poll_timeout() == 0.3


def test_shutdown_stops_our_timers() -> None:
    s = make()
    s.shutdown()
    assert fake(s).shut and s.poll_timeout() is None


def test_get_broadcasts_respects_limit() -> None:
    s = make()
    s.notify_join(0.0, peer("n2"))
    for i in range(40):
        s._table.broadcasts.queue(None, encode_message(JoinIntent(i + 100, f"node-{i:03d}")))
    msgs = s.get_broadcasts(3, 200)
    assert msgs and sum(len(m) + 3 for m in msgs) <= 200


# --- queries: acks, filters, internal queries -------------------------------------------------------------------


def query(**kw: Any) -> QueryMessage:
    base = dict(ltime=3, id=42, addr=bytes([10, 0, 0, 9]), port=8301, source_node="asker", name="whoami")
    return QueryMessage(**(base | kw))


def responses(s: Serf) -> list[tuple[Addr, Any, str]]:
    return [(addr, decode_message(raw), name) for addr, raw, name in fake(s).sent]


def test_query_ack_goes_straight_to_the_asker() -> None:
    s = make()
    s.notify_msg(1.0, encode_message(query(flags=QUERY_FLAG_ACK)))
    assert responses(s) == [(("10.0.0.9", 8301), QueryResponseMessage(3, 42, "me", QUERY_FLAG_ACK), "asker")]


def test_query_without_ack_flag_is_not_answered() -> None:
    s = make()
    s.notify_msg(1.0, encode_message(query()))
    assert fake(s).sent == []


def test_query_ack_is_relayed_through_relay_factor_peers() -> None:
    s = make()
    for n in ("n2", "n3", "n4"):
        s.notify_join(0.0, peer(n))
    s.notify_msg(1.0, encode_message(query(flags=QUERY_FLAG_ACK, relay_factor=2)))
    sent = responses(s)
    assert sent[0][0] == ("10.0.0.9", 8301)
    relays = sent[1:]
    assert len(relays) == 2 and len({r[0] for r in relays}) == 2
    for addr, msg, name in relays:
        assert isinstance(msg, RelayMessage) and (msg.dest_ip, msg.dest_port, msg.dest_name) == (
            bytes([10, 0, 0, 9]),
            8301,
            "asker",
        )
        assert decode_message(msg.inner) == QueryResponseMessage(3, 42, "me", QUERY_FLAG_ACK)
        assert name in ("n2", "n3", "n4") and addr[0] != "10.0.0.1"


FILTER_TABLE = [
    ([NodeFilter(("me", "x"))], True),
    ([NodeFilter(("x",))], False),
    ([TagFilter("role", "^te")], True),
    ([TagFilter("role", "es")], True),  # Go's MatchString searches
    ([TagFilter("role", "^db$")], False),
    ([TagFilter("missing", "^$")], True),  # a missing tag is the empty string
    ([TagFilter("role", "(")], False),  # bad regex: not for us
    ([NodeFilter(("me",)), TagFilter("role", "db")], False),  # all filters must match
]


@pytest.mark.parametrize(("filters", "selected"), FILTER_TABLE)
def test_query_filters(filters: list[Any], selected: bool) -> None:
    s = make()
    s.notify_join(0.0, peer("n2"))
    q = query(flags=QUERY_FLAG_ACK, filters=tuple(encode_filter(f) for f in filters))
    s.notify_msg(1.0, encode_message(q))
    assert bool(fake(s).sent) is selected
    assert q in drain_broadcasts(s)  # rebroadcast either way: it is news


def test_unknown_filter_type_selects_nobody() -> None:
    s = make()
    s.notify_msg(1.0, encode_message(query(flags=QUERY_FLAG_ACK, filters=(b"\x07\x90",))))
    assert fake(s).sent == []


def test_conflict_query_is_answered_with_our_view_of_the_member() -> None:
    s = make()
    s.notify_join(0.0, peer("n2", tags={"a": "b"}))
    s.notify_msg(1.0, encode_message(query(name="_serf_conflict", payload=b"n2")))
    [(addr, resp, _)] = responses(s)
    assert addr == ("10.0.0.9", 8301) and isinstance(resp, QueryResponseMessage) and resp.flags == 0
    answer = decode_message(resp.payload)
    assert answer == ConflictResponse(
        MemberInfo("n2", bytes([10, 0, 0, 2]), 7946, {"a": "b"}, int(MemberStatus.ALIVE), 1, 5, 2, 2, 5, 4)
    )


def test_conflict_query_about_unknown_member_answers_nil_and_about_us_not_at_all() -> None:
    s = make()
    s.notify_msg(1.0, encode_message(query(name="_serf_conflict", payload=b"ghost")))
    assert decode_message(responses(s)[0][1].payload) == ConflictResponse(None)
    fake(s).sent.clear()
    s.notify_msg(1.0, encode_message(query(id=43, name="_serf_conflict", payload=b"me")))
    assert fake(s).sent == []


def test_app_messages_go_reliable_to_the_member_and_come_back_as_events() -> None:
    a = make("me")
    a.notify_join(0.0, peer("n2"))
    events(a)
    a.send_app_message(1.0, "n2", b"hello")
    addr, frame, how = fake(a).sent[-1]
    assert (addr, how, frame[0]) == (("10.0.0.2", 7946), "tcp", APP_MESSAGE_TYPE)
    with pytest.raises(KeyError):
        a.send_app_message(1.0, "nobody", b"x")
    b = make("n2")
    b.notify_msg(2.0, frame)
    assert [e for e in events(b) if isinstance(e, AppMessage)] == [AppMessage("me", b"hello")]
    # Garbage after the type byte is a debug diagnostic, never an exception nor a rebroadcast.
    b.notify_msg(2.0, bytes([APP_MESSAGE_TYPE, 0xC1]))
    evs = events(b)
    assert not [e for e in evs if isinstance(e, AppMessage)]
    assert [e.kind for e in evs if isinstance(e, Diagnostic)] == ["serf-malformed"]


def test_leave_sends_the_intent_to_every_alive_member_before_the_memberlist_leave() -> None:
    """A Go serf peer that hears our memberlist leave before our intent records us failed: every alive member
    gets the intent directly, and the memberlist leave waits until it has been gossiped too."""
    s = make()
    for name in ("n2", "n3", "n4"):
        s.notify_join(0.0, peer(name))
    s.notify_leave(0.0, peer("n4", NodeStateType.DEAD))  # a failed member is not told
    node = fake(s)
    s.leave(1.0)
    direct = [(name, decode_message(payload)) for _addr, payload, name in node.sent]
    assert sorted(name for name, _ in direct) == ["n2", "n3"]
    assert all(isinstance(msg, LeaveIntent) and msg.node == "me" for _, msg in direct)
    assert node.gossips == [1.0]
    assert node.leaves == []  # the memberlist leave comes once the intent has been gossiped
    drain_broadcasts(s)
    # Gossiped, but a Go peer may not have handled it yet (its handoff queue is LIFO): wait out the grace.
    s.handle_timeout(1.2)
    assert node.leaves == []
    assert s.poll_timeout() == pytest.approx(1.0 + CFG.leave_intent_grace)
    s.handle_timeout(1.0 + CFG.leave_intent_grace)
    assert node.leaves == [1.0 + CFG.leave_intent_grace]


def test_stats_carry_memberlist_health_score() -> None:
    """serf's Stats has health_score (Consul shows it in /v1/agent/self's serf_lan): memberlist's awareness."""
    s = make()
    assert s.stats()["health_score"] == 0
    s.node.health_score = 2  # type: ignore[misc]
    assert s.stats()["health_score"] == 2
