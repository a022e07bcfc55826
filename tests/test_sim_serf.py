"""Serf over the real protocol.Node on tests/simnet.py: whole-cluster behaviour, deterministic for a seed.

Every test asserts on what each member *reported* (its MemberEvent log) as well as on its final member list,
because the promise Serf makes is about events: a graceful leave is never announced as a failure, a crash is
announced as a failure everywhere within the protocol's bound, a partition heals without an operator.
Compression is off: LZW in pure Python would dominate the run time and is tested elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import attrs
import pytest
from simnet import SimNet

from protocol.config import Config
from protocol.node import Diagnostic, LeaveDone
from protocol.serf import EventKind, MemberEvent, MemberStatus, Serf, UserEvent
from protocol.state import Addr, NodeState, NodeStateType
from protocol.suspicion import suspicion_timeout

LAN = Config.lan(enable_compression=False)


def serf_factory(cfg: Config, name: str) -> Callable[[Any, Any, float], Serf]:
    return lambda addr, rng, now: Serf(cfg, name=name, addr=addr, rng=rng, now=now, tags=tags_of(name))


def tags_of(name: str) -> dict[str, str]:
    return {"id": name, "role": "node", "dc": "sim"}


def names(n: int) -> list[str]:
    return [f"n{i:03d}" for i in range(n)]


def build(net: SimNet, cfg: Config, n: int, stagger: float = 0.02) -> list[str]:
    """n Serf members; each joins the first one, a few milliseconds apart."""
    all_names = names(n)
    seed = net.spawn(all_names[0], serf_factory(cfg, all_names[0]))
    for name in all_names[1:]:
        net.spawn(name, serf_factory(cfg, name))
        net.do(name, lambda m, now: m.join(now, [seed.addr]))
        net.run_for(stagger)
    return all_names


def serf(net: SimNet, name: str) -> Serf:
    m = net.machine(name)
    assert isinstance(m, Serf)
    return m


def statuses(net: SimNet, observer: str) -> dict[str, MemberStatus]:
    return {m.name: m.status for m in serf(net, observer).members()}


def all_see(net: SimNet, observers: Iterable[str], expected: dict[str, MemberStatus | None]) -> bool:
    """Every observer's view matches `expected` (None = not in its member list at all)."""
    for o in observers:
        view = statuses(net, o)
        for name, want in expected.items():
            if view.get(name) != want:
                return False
    return True


def member_events(net: SimNet, observer: str, about: str) -> list[tuple[float, str]]:
    """(time, kind) of every MemberEvent an observer reported about one member."""
    return [
        (t, str(e.kind)) for t, e in net.hosts[observer].log if isinstance(e, MemberEvent) and e.member.name == about
    ]


def count_kind(net: SimNet, kind: EventKind, observers: Iterable[str]) -> int:
    return sum(1 for o in observers for _t, e in net.hosts[o].log if isinstance(e, MemberEvent) and e.kind == kind)


def converged(net: SimNet, members: list[str]) -> bool:
    return all_see(net, members, dict.fromkeys(members, MemberStatus.ALIVE))


def failure_bound(cfg: Config, n: int) -> float:
    """Detection + dissemination bound: a few probe rounds to reach the dead member, the longest suspicion
    (no confirmations at all), then a few gossip rounds for the dead message to reach everyone."""
    longest = cfg.suspicion_max_timeout_mult * suspicion_timeout(cfg.suspicion_mult, n, cfg.probe_interval)
    return 3 * cfg.probe_interval + longest + 10 * cfg.gossip_interval + 2 * cfg.probe_interval


# --- convergence --------------------------------------------------------------------------------------------


def test_an_idle_serf_cluster_wakes_once_a_probe_and_news_still_goes_out_at_the_next_gossip_tick() -> None:
    """Serf's queues (intents, events, queries) tell the node when there is something to gossip: idle, a member
    wakes for its probes only (not the gossip ticker's five a second, nor an acked probe's probe_timeout), and
    a user event queued then is gossiped at the next tick and reaches everyone."""
    net = SimNet(seed=12)
    members = build(net, LAN, 5)
    assert net.run_until(lambda: converged(net, members), deadline=net.now + 30)
    net.run_for(15.0)  # the join intents and alive broadcasts retire
    first = serf(net, members[0])
    wakeups: list[float] = []
    inner = first.handle_timeout

    def counting(now: float) -> None:
        wakeups.append(now)
        inner(now)

    first.handle_timeout = counting  # type: ignore[method-assign]
    window = 30.0
    net.run_for(window)
    assert len(wakeups) <= 1.2 * window / LAN.probe_interval + 2, len(wakeups)  # before: about 7 a second
    assert not first.has_broadcasts()

    net.do(members[0], lambda m, now: m.user_event(now, "deploy", b"v2"))
    assert first.has_broadcasts()
    wake = first.poll_timeout()
    assert wake is not None and wake <= net.now + LAN.gossip_interval
    heard = lambda: all(  # noqa: E731
        any(isinstance(e, UserEvent) and e.name == "deploy" for _t, e in net.hosts[o].log) for o in members[1:]
    )
    assert net.run_until(heard, deadline=net.now + 1.0)



def test_200_members_converge_through_one_seed_with_all_tags() -> None:
    net = SimNet(seed=11)
    members = build(net, LAN, 200)
    assert net.run_until(lambda: converged(net, members), deadline=net.now + 60, check_every=0.5)
    for o in members:
        for m in serf(net, o).members():
            assert m.tags == tags_of(m.name), (o, m.name)
            assert (m.delegate_min, m.delegate_max, m.delegate_cur) == (2, 5, 4)
    assert count_kind(net, EventKind.MEMBER_FAILED, members) == 0
    # everyone witnessed every join intent: the member clocks agree within a small window
    clocks = [serf(net, o).clock.time() for o in members]
    assert max(clocks) - min(clocks) <= 2


def test_member_records_share_their_values_and_the_scale_net_keeps_no_log_or_link_table() -> None:
    """Issue 14: member records are per pair of members, so the values in them are shared, not copied per record:
    every member's record of member X holds the same name, address tuple, meta, versions and decoded tags objects.
    SimNet(keep_log=False, hashed_latency=True) still delivers every event to on_event, stores none, keeps no
    per-link latency table, and its latencies stay fixed per link, in range and the same for a seed."""
    seen: list[Any] = []
    net = SimNet(seed=5, keep_log=False, hashed_latency=True)
    net.on_event = lambda host, now, ev: seen.append(ev)
    members = build(net, LAN, 12)
    assert net.run_until(lambda: converged(net, members), deadline=net.now + 30, check_every=0.5)
    target = members[5]
    records = [serf(net, o).node.get(target) for o in members if o != target]
    states = [serf(net, o)._table.members[target].ident for o in members if o != target]
    assert len({id(m) for m in states}) == 1  # the whole name/address/tags/versions record is one object
    for field in ("name", "addr", "meta", "vsn"):
        assert len({id(getattr(r, field)) for r in records}) == 1, field
    assert len({id(m.tags) for m in states}) == 1 and states[0].tags == tags_of(target)
    assert len({id(m.addr) for m in states}) == 1
    # handed-out members are copies: changing one cannot reach the shared dict
    handed = serf(net, members[0]).member(target)
    assert handed is not None and handed.tags is not states[0].tags
    assert sum(isinstance(e, MemberEvent) for e in seen) >= len(members) * (len(members) - 1)
    assert all(not net.hosts[o].log for o in members) and not net._link_latency
    a, b = net.hosts[members[1]].addr, net.hosts[members[2]].addr
    lat = net.link_latency(a, b)
    assert lat == net.link_latency(b, a) == SimNet(seed=5, hashed_latency=True).link_latency(a, b)
    assert net.latency[0] <= lat <= net.latency[1]
    assert lat != SimNet(seed=6, hashed_latency=True).link_latency(a, b)


# --- failure ------------------------------------------------------------------------------------------------


def test_killed_member_is_failed_everywhere_within_the_bound() -> None:
    net = SimNet(seed=12)
    members = build(net, LAN, 24)
    assert net.run_until(lambda: converged(net, members), deadline=net.now + 30)
    victim, others = members[7], [m for m in members if m != members[7]]
    killed_at = net.now
    net.kill(victim)
    bound = failure_bound(LAN, len(members))
    assert net.run_until(
        lambda: all_see(net, others, {victim: MemberStatus.FAILED}), deadline=killed_at + bound, check_every=0.25
    ), f"not failed everywhere within {bound:.1f}s: {[statuses(net, o)[victim] for o in others]}"
    for o in others:
        kinds = [k for _t, k in member_events(net, o, victim)]
        assert kinds[-1] == "member-failed" and kinds.count("member-failed") == 1
    # nobody else was taken down with it
    assert count_kind(net, EventKind.MEMBER_FAILED, others) == len(others)


# --- graceful leave -----------------------------------------------------------------------------------------


def test_graceful_leave_is_left_everywhere_never_failed_first() -> None:
    net = SimNet(seed=13)
    members = build(net, LAN, 24)
    assert net.run_until(lambda: converged(net, members), deadline=net.now + 30)
    leaver, others = members[5], [m for m in members if m != members[5]]
    started = net.now
    net.do(leaver, lambda m, now: m.leave(now))
    assert net.run_until(lambda: bool(net.events(leaver, LeaveDone)), deadline=started + 15)
    done_at = net.now
    # bounded: intent spread + memberlist leave + propagate delay, each within broadcast_timeout
    assert done_at - started <= 2 * LAN.broadcast_timeout + LAN.leave_propagate_delay + 0.5
    net.kill(leaver)  # the process exits after LeaveDone; probes now go unanswered
    assert net.run_until(lambda: all_see(net, others, {leaver: MemberStatus.LEFT}), deadline=net.now + 10)
    net.run_for(60)  # long past any suspicion timeout: a left member must stay left
    for o in others:
        kinds = [k for _t, k in member_events(net, o, leaver)]
        assert "member-failed" not in kinds, (o, kinds)
        assert kinds[-1] == "member-leave" and kinds.count("member-leave") == 1, (o, kinds)
        assert statuses(net, o)[leaver] == MemberStatus.LEFT
    assert count_kind(net, EventKind.MEMBER_FAILED, others) == 0


class BusyGoSerf(Serf):
    """A peer that handles packets as a busy Go serf 0.9 does (the Debian `serf` the interop tests run).

    Go memberlist queues inbound dead, suspect and user messages on one handoff list that its handler
    goroutine drains newest first (net.go getNextMessage is LIFO). Here every datagram waits `handler_delay`
    (the goroutine was not scheduled) and the ones that piled up meanwhile are handled newest first. And serf
    0.9's handleNodeLeave records an alive member whose dead arrives as *failed* even when the dead came from
    the member itself (serf 0.10 made that *left*; our Serf does that too, so it is undone here).
    """

    handler_delay = 0.05

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._handoff: list[tuple[Addr, bytes]] = []
        self._handoff_due: float | None = None

    def handle_datagram(self, now: float, addr: Addr, data: bytes) -> None:
        self._handoff.append((addr, data))
        if self._handoff_due is None:
            self._handoff_due = now + self.handler_delay

    def poll_timeout(self) -> float | None:
        deadlines = [d for d in (super().poll_timeout(), self._handoff_due) if d is not None]
        return min(deadlines, default=None)

    def handle_timeout(self, now: float) -> None:
        if self._handoff_due is not None and now >= self._handoff_due:
            queued, self._handoff, self._handoff_due = self._handoff, [], None
            for addr, data in reversed(queued):
                super().handle_datagram(now, addr, data)
        super().handle_timeout(now)

    def notify_leave(self, now: float, node: NodeState) -> None:
        super().notify_leave(now, attrs.evolve(node, state=NodeStateType.DEAD))


def test_graceful_leave_is_left_on_busy_go_serf_peers() -> None:
    """Our leave intent must be handled by a Go peer before our memberlist dead, even though a Go peer takes
    queued messages newest first: the dead waits leave_intent_grace after the intent (interop flake, seen as
    `serf: EventMemberFailed` on a real serf about 1 leave in 10 on a loaded machine)."""
    local = Config.local(enable_compression=False)  # retransmit_mult 2: one gossip_now round retires the intent
    net = SimNet(seed=21)
    go_names = ["serf1", "serf2"]
    for name in go_names:
        net.spawn(name, lambda addr, rng, now, name=name: BusyGoSerf(local, name=name, addr=addr, rng=rng, now=now))
    net.do("serf2", lambda m, now: m.join(now, [net.hosts["serf1"].addr]))
    net.spawn("tri1", serf_factory(local, "tri1"))
    net.do("tri1", lambda m, now: m.join(now, [net.hosts["serf1"].addr]))
    everyone = [*go_names, "tri1"]
    assert net.run_until(lambda: converged(net, everyone), deadline=net.now + 10)
    net.do("tri1", lambda m, now: m.leave(now))
    assert net.run_until(lambda: bool(net.events("tri1", LeaveDone)), deadline=net.now + 15)
    net.kill("tri1")
    assert net.run_until(lambda: all_see(net, go_names, {"tri1": MemberStatus.LEFT}), deadline=net.now + 10)
    for o in go_names:
        assert [k for _t, k in member_events(net, o, "tri1")] == ["member-join", "member-leave"], o


# --- partition ---------------------------------------------------------------------------------------------


def test_30s_partition_heals_by_itself() -> None:
    net = SimNet(seed=14)
    members = build(net, LAN, 20)
    assert net.run_until(lambda: converged(net, members), deadline=net.now + 30)
    left_side, right_side = members[:10], members[10:]
    net.partition(left_side, right_side)
    net.run_for(30)
    # each side has written the other off by now
    assert all_see(net, left_side, dict.fromkeys(right_side, MemberStatus.FAILED))
    assert all_see(net, right_side, dict.fromkeys(left_side, MemberStatus.FAILED))
    net.heal()
    healed_at = net.now
    # reconnect runs every reconnect_interval with probability failed/alive (= 1 here)
    assert net.run_until(
        lambda: converged(net, members), deadline=healed_at + 3 * LAN.reconnect_interval, check_every=0.5
    )
    for o in left_side:
        kinds = [k for _t, k in member_events(net, o, right_side[0])]
        assert kinds[-2:] == ["member-failed", "member-join"], kinds


# --- reaping -------------------------------------------------------------------------------------------------

REAP = Config.lan(enable_compression=False, reap_interval=2, reconnect_timeout=20, tombstone_timeout=40)


def test_failed_reaped_after_reconnect_timeout_left_after_tombstone_timeout() -> None:
    net = SimNet(seed=15)
    members = build(net, REAP, 12)
    assert net.run_until(lambda: converged(net, members), deadline=net.now + 30)
    crashed, leaver = members[3], members[4]
    others = [m for m in members if m not in (crashed, leaver)]
    net.kill(crashed)
    net.do(leaver, lambda m, now: m.leave(now))
    assert net.run_until(lambda: bool(net.events(leaver, LeaveDone)), deadline=net.now + 15)
    net.kill(leaver)
    assert net.run_until(
        lambda: all_see(net, others, {crashed: None, leaver: None}), deadline=net.now + 120, check_every=0.5
    )
    for o in others:
        for who, went, timeout in ((crashed, "member-failed", 20), (leaver, "member-leave", 40)):
            evs = member_events(net, o, who)
            t_gone = next(t for t, k in evs if k == went)
            t_reap = next(t for t, k in evs if k == "member-reap")
            assert timeout < t_reap - t_gone <= timeout + REAP.reap_interval + 0.1, (o, who, evs)
    # reaped members do not come back through push/pull gossip from slower peers
    net.run_for(30)
    assert all_see(net, others, {crashed: None, leaver: None})


# --- force leave ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prune", [False, True])
def test_force_leave(prune: bool) -> None:
    net = SimNet(seed=16)
    members = build(net, LAN, 12)
    assert net.run_until(lambda: converged(net, members), deadline=net.now + 30)
    victim, operator = members[6], members[0]
    others = [m for m in members if m != victim]
    net.kill(victim)
    assert net.run_until(
        lambda: all_see(net, others, {victim: MemberStatus.FAILED}), deadline=net.now + failure_bound(LAN, 12)
    )
    net.do(operator, lambda m, now: m.force_leave(now, victim, prune=prune))
    want = None if prune else MemberStatus.LEFT
    assert net.run_until(lambda: all_see(net, others, {victim: want}), deadline=net.now + 10)
    for o in others:
        kinds = [k for _t, k in member_events(net, o, victim)]
        assert kinds[-2:] == (["member-leave", "member-reap"] if prune else ["member-failed", "member-leave"])
    # a left member is no longer reconnected; the rest of the cluster is untouched
    net.run_for(2 * LAN.reconnect_interval)
    assert all_see(net, others, {victim: want} | dict.fromkeys([m for m in others], MemberStatus.ALIVE))


# --- robustness ---------------------------------------------------------------------------------------------


def test_lossy_links_and_a_stalled_member_cause_no_failures_in_10_minutes() -> None:
    net = SimNet(seed=17, debug=True)  # the suspicions are debug lines
    members = build(net, LAN, 32)
    assert net.run_until(lambda: converged(net, members), deadline=net.now + 30)
    net.loss = 0.10
    stalled = [members[9], members[20], members[27]]
    for who in stalled:  # a 3 s stall every ~3 minutes; at least one of them is probed while frozen
        net.run_for(60)
        net.stall(who, 3.0)
        net.run_for(120)
    net.run_for(600 - 3 * 180)
    assert count_kind(net, EventKind.MEMBER_FAILED, members) == 0
    assert count_kind(net, EventKind.MEMBER_LEAVE, members) == 0
    assert converged(net, members)
    # the scenario did bite: packets were lost, a stalled member was suspected and refuted it
    assert net.stats["udp_lost"] > 1000
    suspected = {who for who in stalled for o in members for e in net.events(o, Diagnostic)
                 if e.kind == "suspect" and f"suspects {who} " in e.message}  # suspected, not the suspecter
    assert suspected
    assert all(serf(net, who).node.stats["refutes"] >= 1 for who in suspected)


# --- refutation, restart, conflicts ---------------------------------------------------------------------------


def test_force_leave_of_a_live_member_is_refuted() -> None:
    """A leave intent about a member that is alive and not leaving is beaten by its newer join intent."""
    net = SimNet(seed=18)
    members = build(net, LAN, 12)
    assert net.run_until(lambda: converged(net, members), deadline=net.now + 30)
    target = members[4]
    before = serf(net, target).clock.time()
    net.do(members[0], lambda m, now: m.force_leave(now, target))
    net.run_for(10)
    assert converged(net, members)
    assert serf(net, target).clock.time() > before
    for o in members:
        assert not [k for _t, k in member_events(net, o, target) if k in ("member-leave", "member-failed")]


def test_restart_after_leave_rejoins_as_alive() -> None:
    net = SimNet(seed=19)
    members = build(net, LAN, 12)
    assert net.run_until(lambda: converged(net, members), deadline=net.now + 30)
    who, others = members[8], [m for m in members if m != members[8]]
    net.do(who, lambda m, now: m.leave(now))
    assert net.run_until(lambda: bool(net.events(who, LeaveDone)), deadline=net.now + 15)
    net.kill(who)
    assert net.run_until(lambda: all_see(net, others, {who: MemberStatus.LEFT}), deadline=net.now + 10)
    net.run_for(20)
    host = net.hosts[who]
    net.replace(who, Serf(LAN, name=who, addr=host.addr, rng=host.rng, now=net.now, tags={"id": who, "v": "2"}))
    net.do(who, lambda m, now: m.join(now, [net.hosts[members[0]].addr]))
    assert net.run_until(lambda: converged(net, members), deadline=net.now + 30)
    for o in others:
        m = serf(net, o).member(who)
        assert m is not None and m.tags == {"id": who, "v": "2"}
        kinds = [k for _t, k in member_events(net, o, who)]
        assert kinds[-2:] == ["member-leave", "member-join"] and "member-failed" not in kinds


def test_killed_member_restarted_on_its_address_is_alive_again_at_once() -> None:
    """The interop restart case on the local profile: the member restarts with incarnation 1 (what the others
    hold as failed), joins one member, and the push/pull reply makes it refute its death: everyone sees everyone
    alive again within a few gossip rounds, with no push/pull interval (15 s) to wait for."""
    local = Config.local(enable_compression=False)
    net = SimNet(seed=22)
    members = build(net, local, 3)
    assert net.run_until(lambda: converged(net, members), deadline=net.now + 10)
    who, others = members[1], [members[0], members[2]]
    net.kill(who)
    assert net.run_until(lambda: all_see(net, others, {who: MemberStatus.FAILED}), deadline=net.now + 25)
    host = net.hosts[who]
    net.replace(who, Serf(local, name=who, addr=host.addr, rng=host.rng, now=net.now, tags=tags_of(who)))
    net.do(who, lambda m, now: m.join(now, [net.hosts[members[2]].addr]))
    restarted = net.now
    assert net.run_until(lambda: converged(net, members), deadline=restarted + 3)
    assert serf(net, who).node.stats["refutes"] >= 1


def test_a_member_the_rejoin_gossip_missed_is_repaired_by_its_push_pull_within_memberlists_bound() -> None:
    """Why the rolling-restart interop test once waited > 20 s for one member (15012ea): not a lost or dropped
    alive, but infect-and-die gossip missing a member, as memberlist's own does. n0 leaves, restarts at
    incarnation 1, joins n1 and refutes its leave at incarnation 2. In 5 LAN members each member that takes the
    news sends it retransmit_limit(4, 5) = 4 times: to 3 of its 4 peers, then to 1. A given member escapes one
    sender with probability 1/4 * 3/4 = 3/16, and all four senders with (3/16)^4 ~ 0.12% (so ~0.5% of rejoins
    leave some member behind; a sweep of 1,500 seeds of this scenario found 5 still behind 5 s after the rejoin,
    1,000 simulated runs of the whole rolling test 41 past 20 s). Seed 735 is one: n4 still holds n0 LEFT at
    incarnation 1 once every queue is empty and the join follow-ups ran, while the others hold it alive at 2.
    Nothing gossips to it again; its push/pull repairs it (memberlist's schedule: within stagger + one
    interval of its own start, 2 * push_pull_interval at most), here 36 s after the rejoin."""
    net = SimNet(seed=735)
    members = [f"n{i}" for i in range(5)]
    first = net.spawn(members[0], lambda a, r, now: Serf(LAN, name=members[0], addr=a, rng=r, now=now, tags={}))
    for name in members[1:]:
        net.spawn(name, lambda a, r, now, name=name: Serf(LAN, name=name, addr=a, rng=r, now=now, tags={}))
        net.do(name, lambda m, now: m.join(now, [first.addr]))
        net.run_for(0.3)
    net.run_for(10)
    assert converged(net, members)
    net.do("n0", lambda m, now: m.leave(now))
    assert net.run_until(lambda: bool(net.events("n0", LeaveDone)), deadline=net.now + 15)
    net.kill("n0")
    net.run_for(2)
    host = net.hosts["n0"]
    net.replace("n0", Serf(LAN, name="n0", addr=host.addr, rng=host.rng, now=net.now, tags={}))
    net.do("n0", lambda m, now: m.join(now, [net.hosts["n1"].addr]))
    rejoined = net.now
    net.run_for(5)
    assert serf(net, "n0").node.incarnation == 2  # refuted the LEFT at 1 the join's push/pull reply carried
    for o in members[1:]:
        record = serf(net, o).node.get("n0")
        assert record is not None
        if o == "n4":
            assert (record.state, record.incarnation, statuses(net, o)["n0"]) == (
                NodeStateType.LEFT, 1, MemberStatus.LEFT)  # fmt: skip
        else:
            assert (record.state, record.incarnation, statuses(net, o)["n0"]) == (
                NodeStateType.ALIVE, 2, MemberStatus.ALIVE)  # fmt: skip
    assert all(len(serf(net, m).node._core.broadcasts) == 0 for m in members)  # every sender retired it
    pushed = net.stats["tcp_opened"]
    assert net.run_until(lambda: converged(net, members), deadline=rejoined + 2 * LAN.push_pull_interval)
    assert net.now - rejoined > 20 and net.stats["tcp_opened"] > pushed


def test_name_conflict_is_logged_with_both_addresses_and_never_flaps() -> None:
    net = SimNet(seed=20)
    members = build(net, LAN, 8)
    assert net.run_until(lambda: converged(net, members), deadline=net.now + 30)
    original = net.hosts[members[3]].addr
    impostor = net.spawn("impostor", serf_factory(LAN, members[3]))
    net.do("impostor", lambda m, now: m.join(now, [net.hosts[members[0]].addr]))
    net.run_for(60)
    honest = [m for m in members if m != members[3]]
    for o in honest:
        m = serf(net, o).member(members[3])
        assert m is not None and (m.addr, m.port) == original and m.status == MemberStatus.ALIVE
        kinds = [k for _t, k in member_events(net, o, members[3])]
        assert kinds == ["member-join"], (o, kinds)  # no flapping between the two claimants
    logs = [e.message for o in [*members, "impostor"] for e in net.events(o, Diagnostic) if e.kind == "name-conflict"]
    both = [msg for msg in logs if f"{original[0]}:{original[1]}" in msg and impostor.addr[0] in msg]
    assert both, logs[:3]


@pytest.mark.parametrize("seed", [0, 7, 33])
def test_a_mass_join_leaves_no_straggler_waiting_for_the_periodic_push_pull(seed: int) -> None:
    """30 untagged members join one seed at the same instant; all know all within 3 s, not one push/pull
    interval later. These seeds are the ones where, without the join follow-up syncs (join_followup_syncs=0,
    memberlist's behaviour), a member that missed a retired broadcast waits 5-11 s for the periodic push/pull."""
    cfg = Config.lan()
    net = SimNet(seed=seed)
    members = [f"n{i}" for i in range(30)]
    for name in members:
        net.spawn(name, lambda addr, rng, now, name=name: Serf(cfg, name=name, addr=addr, rng=rng, now=now, tags={}))
    seed_addr = net.hosts[members[0]].addr
    for name in members[1:]:
        net.do(name, lambda m, now: m.join(now, [seed_addr]))
    converged = net.run_until(
        lambda: all_see(net, members, dict.fromkeys(members, MemberStatus.ALIVE)), deadline=net.now + 3.0
    )
    assert converged, {m: len(statuses(net, m)) for m in members if len(statuses(net, m)) < 30}
