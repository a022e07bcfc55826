"""protocol.Node with two or three members wired by tests/simnet.py, plus hostile input."""

from __future__ import annotations

import random

import attrs
import pytest
from simnet import SimNet

from protocol import packets
from protocol.codec import Ack, Alive, Dead, ErrResp, Ping, Suspect, decode, encode
from protocol.config import Config
from protocol.node import (
    Datagram,
    Delegate,
    Diagnostic,
    JoinResult,
    LeaveDone,
    Node,
    NodeJoin,
    NodeLeave,
    NodeUpdate,
    StreamOpen,
)
from protocol.state import NodeStateType

CFG = Config.local()


class Recorder(Delegate):
    """A delegate that records what the node tells it."""

    def __init__(self, meta: bytes = b"", user_state: bytes = b"") -> None:
        self.meta = meta
        self.user_state = user_state
        self.calls: list[tuple] = []
        self.outbox: list[bytes] = []

    def node_meta(self, limit):
        return self.meta

    def notify_msg(self, now, payload):
        self.calls.append(("msg", payload))

    def get_broadcasts(self, overhead, limit):
        out, self.outbox = self.outbox, []
        return out

    def local_state(self, join):
        return self.user_state

    def merge_remote_state(self, now, buf, join):
        self.calls.append(("merge", buf, join))

    def ack_payload(self):
        return b"coord"

    def notify_ping_complete(self, node, rtt, payload):
        self.calls.append(("ping", node.name, rtt, payload))

    def notify_conflict(self, existing, other):
        self.calls.append(("conflict", existing.addr, other.addr))

    def notify_join(self, now, node):
        self.calls.append(("join", node.name))

    def notify_leave(self, now, node):
        self.calls.append(("leave", node.name, node.state))

    def notify_update(self, now, node):
        self.calls.append(("update", node.name, node.meta))

    def named(self, kind):
        return [c for c in self.calls if c[0] == kind]


def pair(config: Config = CFG, seed: int = 1, n: int = 2, delegates=None) -> SimNet:
    net = SimNet(seed=seed)
    delegates = delegates or {}
    for i in range(n):
        net.add_node(f"n{i}", config, delegates.get(f"n{i}"))
    for i in range(1, n):
        net.do(f"n{i}", lambda m, now: m.join(now, [net.hosts["n0"].addr]))
    assert net.run_until(lambda: all(net.machine(h).num_alive() == n for h in net.hosts), net.now + 5)
    return net


def test_join_exchanges_state_user_state_and_events():
    d0, d1 = Recorder(b"meta0", b"state0"), Recorder(b"meta1", b"state1")
    net = pair(delegates={"n0": d0, "n1": d1})
    assert net.events("n1", JoinResult) == [JoinResult(net.hosts["n0"].addr, True)]
    assert [e.node.name for e in net.events("n0", NodeJoin)] == ["n0", "n1"]
    assert net.machine("n0").get("n1").meta == b"meta1"
    assert net.machine("n1").get("n0").meta == b"meta0"
    assert ("merge", b"state1", True) in d0.calls and ("merge", b"state0", True) in d1.calls
    assert d0.named("join") == [("join", "n0"), ("join", "n1")]


def test_join_to_nobody_fails_after_tcp_timeout():
    net = SimNet(seed=2)
    net.add_node("a", CFG)
    net.do("a", lambda m, now: m.join(now, [("10.9.9.9", 7946)]))
    net.run_for(CFG.tcp_timeout + 0.1)
    assert net.events("a", JoinResult) == [JoinResult(("10.9.9.9", 7946), False, "timeout")]


def test_probe_acks_carry_the_ack_payload_and_rtt():
    d0 = Recorder()
    net = pair(delegates={"n0": d0, "n1": Recorder()})
    net.run_for(5)
    pings = d0.named("ping")
    assert pings and all(p[1] == "n1" and p[3] == b"coord" for p in pings)
    rtt = 2 * net.link_latency(net.hosts["n0"].addr, net.hosts["n1"].addr)
    assert all(p[2] == pytest.approx(rtt) for p in pings)
    assert net.machine("n0").health_score == 0


def test_ping_for_another_name_is_not_acked():
    node = Node(CFG, name="a", addr=("10.0.0.1", 7946), rng=random.Random(1), now=0.0)
    node.handle_datagram(0.1, ("10.0.0.2", 7946), encode(Ping(7, "someone-else")))
    assert node.poll_transmit() is None
    assert node.stats["ping_wrong_node"] == 1
    node.handle_datagram(0.1, ("10.0.0.2", 7946), encode(Ping(8, "a")))
    tx = node.poll_transmit()
    assert isinstance(tx, Datagram) and tx.addr == ("10.0.0.2", 7946)
    assert decode(packets.unwrap_packet(tx.data)[0]) == Ack(8, b"")


def test_indirect_probes_keep_a_node_alive_when_the_direct_path_drops_udp():
    config = Config.local(disable_tcp_pings=True)
    net = pair(config, n=3, seed=3)
    net.block_udp("n0", "n1")
    net.run_for(60)
    assert all(s.state == NodeStateType.ALIVE for s in net.machine("n0").all_members())
    assert not net.events("n0", NodeLeave)
    # kRandomNodes may (rarely) find no relay in its 3n draws; then n1 is suspected and refutes.
    assert net.machine("n0").stats["suspicions"] <= 2


def test_tcp_fallback_keeps_a_node_alive_and_warns_that_udp_is_blocked():
    net = pair(seed=4)
    net.block_udp("n0", "n1")
    net.run_for(20)
    assert all(s.state == NodeStateType.ALIVE for s in net.machine("n0").all_members())
    warnings = [e for e in net.events("n0", Diagnostic) if e.kind == "udp-blocked"]
    assert warnings and warnings[0].level == "warning"
    assert "n1" in warnings[0].message and "10.0.0.2:7946" in warnings[0].message


def test_missed_probes_raise_the_health_score_unless_peers_nack():
    # Two nodes: a failed probe has nobody to nack, so it counts against us.
    net = pair(seed=5)
    net.kill("n1")
    net.run_for(3)
    assert net.machine("n0").health_score > 0
    # Three nodes: n2 relays our probe of the dead n1 and nacks, proving we are healthy.
    net = pair(seed=5, n=3)
    net.kill("n1")
    net.run_for(3)
    assert net.machine("n0").health_score == 0


def test_suspect_and_dead_about_us_are_refuted():
    net = pair(seed=6)
    n1 = net.machine("n1")
    inc = n1.incarnation
    spoof = packets.wrap_packet([encode(Suspect(inc, "n1", "n0"))], crc=False)
    net.hosts["n1"].machine.handle_datagram(net.now, net.hosts["n0"].addr, spoof)
    net.do("n1", lambda m, now: None)
    assert n1.incarnation == inc + 1 and n1.local.state == NodeStateType.ALIVE
    assert n1.health_score == 1
    dead = packets.wrap_packet([encode(Dead(inc + 5, "n1", "n0"))], crc=False)
    net.hosts["n1"].machine.handle_datagram(net.now, net.hosts["n0"].addr, dead)
    net.do("n1", lambda m, now: None)
    assert n1.incarnation == inc + 6
    assert net.run_until(lambda: net.machine("n0").get("n1").incarnation == inc + 6, net.now + 2)
    assert [e.kind for e in net.events("n1", Diagnostic) if e.kind == "refute"] == ["refute", "refute"]


def test_stalled_node_declared_dead_comes_back_by_refuting():
    net = pair(seed=7, n=3)
    net.stall("n2", 40)
    assert net.run_until(lambda: net.machine("n0").get("n2").state == NodeStateType.DEAD, net.now + 40)
    net.run_for(45 - (net.now % 45))
    assert net.run_until(
        lambda: all(net.machine(n).get("n2").state == NodeStateType.ALIVE for n in ("n0", "n1")), net.now + 10
    )
    assert net.machine("n2").stats["refutes"] >= 1


def test_leave_then_left_at_peer():
    d1 = Recorder()
    net = pair(seed=8, delegates={"n1": d1})
    net.do("n0", lambda m, now: m.leave(now))
    assert net.run_until(lambda: net.events("n0", LeaveDone) == [LeaveDone()], net.now + 5)
    assert net.machine("n0").local.state == NodeStateType.LEFT
    assert net.machine("n1").get("n0").state == NodeStateType.LEFT
    assert d1.named("leave") == [("leave", "n0", NodeStateType.LEFT)]
    net.do("n0", lambda m, now: m.leave(now))  # idempotent
    assert net.events("n0", LeaveDone) == [LeaveDone(), LeaveDone()]


def test_leave_alone_is_done_at_once():
    net = SimNet(seed=9)
    net.add_node("a", CFG)
    net.do("a", lambda m, now: m.leave(now))
    assert net.events("a", LeaveDone) == [LeaveDone()]


def test_update_meta_reaches_the_peer():
    d0, d1 = Recorder(b"v1"), Recorder()
    net = pair(seed=10, delegates={"n0": d0, "n1": d1})
    d0.meta = b"v2"
    net.do("n0", lambda m, now: m.update_meta(now))
    assert net.run_until(lambda: net.machine("n1").get("n0").meta == b"v2", net.now + 2)
    assert d1.named("update") == [("update", "n0", b"v2")]
    assert [e.node.meta for e in net.events("n1", NodeUpdate)] == [b"v2"]


def test_user_messages_piggyback_and_direct_sends():
    d0, d1 = Recorder(), Recorder()
    net = pair(seed=11, delegates={"n0": d0, "n1": d1})
    d0.outbox = [b"hello"]
    net.run_for(2)
    assert ("msg", b"hello") in d1.calls
    net.do("n0", lambda m, now: m.send_best_effort(net.hosts["n1"].addr, b"udp", "n1"))
    net.do("n0", lambda m, now: m.send_reliable(net.hosts["n1"].addr, b"tcp"))
    net.run_for(0.1)
    assert ("msg", b"udp") in d1.calls and ("msg", b"tcp") in d1.calls


def test_name_conflict_notifies_and_refutes_once_without_flapping():
    d0 = Recorder()
    node = Node(CFG, name="a", addr=("10.0.0.1", 7946), rng=random.Random(1), now=0.0, delegate=d0)
    impostor = Alive(5, "a", bytes([10, 0, 0, 99]), 7946, b"", CFG.vsn)
    for t in (1.0, 1.5, 2.0):
        node.handle_datagram(t, ("10.0.0.99", 7946), encode(impostor))
    assert node.local.addr == ("10.0.0.1", 7946)
    assert d0.named("conflict") == [("conflict", ("10.0.0.1", 7946), ("10.0.0.99", 7946))] * 3
    assert node.incarnation == 6 and node.stats["refutes"] == 1
    events = []
    while (e := node.poll_event()) is not None:
        events.append(e)
    assert [e.kind for e in events if isinstance(e, Diagnostic) and e.kind == "conflict"] == ["conflict"] * 3


def test_crc_only_for_peers_that_understand_protocol_5():
    node = Node(CFG, name="a", addr=("10.0.0.1", 7946), rng=random.Random(1), now=0.0)
    old = bytes((1, 4, 2, 2, 5, 4))
    node.handle_datagram(0.0, ("10.0.0.2", 7946), encode(Alive(1, "v5", bytes([10, 0, 0, 2]), 7946, b"", CFG.vsn)))
    node.handle_datagram(0.0, ("10.0.0.3", 7946), encode(Alive(1, "v4", bytes([10, 0, 0, 3]), 7946, b"", old)))
    node.handle_datagram(0.0, ("10.0.0.2", 7946), encode(Ping(1, "a", bytes([10, 0, 0, 2]), 7946, "v5")))
    node.handle_datagram(0.0, ("10.0.0.3", 7946), encode(Ping(2, "a", bytes([10, 0, 0, 3]), 7946, "v4")))
    sent = {tx.addr[0]: tx.data for tx in iter(node.poll_transmit, None)}
    assert sent["10.0.0.2"][0] == 12  # HAS_CRC
    assert sent["10.0.0.3"][0] != 12


GARBAGE = [
    b"",
    b"\x00",
    b"\xff\xff\xff",
    encode(Ping(1, "a"))[:4],  # truncated msgpack
    b"\x07\x05\x00\x10",  # compound claiming 5 parts
    packets.add_crc(encode(Ping(1, "a")))[:-1] + b"\x00",  # CRC mismatch
    packets.add_label(encode(Ping(1, "a")), "other-cluster"),  # wrong label
    b"\x09" + b"\x82\xa4Algo\x00\xa3Buf\xc4\x03abc",  # broken LZW
    b"\x04\x86" + b"\xa1x" * 6,  # alive with wrong field types
    encode(Alive(1, "x", b"\x01\x02\x03", 7946, b"", CFG.vsn)),  # 3-byte address
    b"\x00" * 70000,  # oversized
]


@pytest.mark.parametrize("data", GARBAGE, ids=range(len(GARBAGE)))
def test_malformed_datagrams_are_counted_and_dropped(data):
    node = Node(CFG, name="a", addr=("10.0.0.1", 7946), rng=random.Random(1), now=0.0)
    while node.poll_event() is not None:
        pass
    node.handle_datagram(1.0, ("10.0.0.2", 7946), data)
    assert node.stats["malformed"] + node.stats["oversized"] >= 1
    assert node.stats["internal_error"] == 0
    assert node.poll_transmit() is None
    assert [m.name for m in node.all_members()] == ["a"]
    diags = list(iter(node.poll_event, None))
    assert diags and all(isinstance(d, Diagnostic) and d.level == "debug" for d in diags)


def test_malformed_streams_get_an_error_reply():
    node = Node(CFG, name="a", addr=("10.0.0.1", 7946), rng=random.Random(1), now=0.0)
    assert node.handle_stream(1.0, ("10.0.0.2", 1), b"") is None  # need more
    assert node.handle_stream(1.0, ("10.0.0.2", 1), b"\x06\x83") is None  # header still arriving
    reply = node.handle_stream(1.0, ("10.0.0.2", 1), b"\x06\xc1\xc1")
    msg, _ = packets.read_stream(reply)
    assert isinstance(msg, ErrResp)
    assert node.handle_stream(1.0, ("10.0.0.2", 1), encode(Ping(3, "b"))) == b""  # wrong node: no ack
    reply = node.handle_stream(1.0, ("10.0.0.2", 1), packets.wrap_stream(encode(Ping(4, "a")), compress=True))
    assert packets.read_stream(reply)[0] == Ack(4, b"")
    assert node.stats["internal_error"] == 0


def test_timers_are_one_heap_and_need_no_clock():
    node = Node(CFG, name="a", addr=("10.0.0.1", 7946), rng=random.Random(1), now=100.0)
    first = node.poll_timeout()
    assert first is not None and 100.0 <= first <= 100.0 + CFG.push_pull_interval
    node.handle_timeout(first)
    assert node.poll_timeout() > first
    node.shutdown()
    assert node.poll_timeout() is None
    node.handle_datagram(200.0, ("10.0.0.2", 7946), encode(Ping(1, "a")))
    assert node.poll_transmit() is None


def _count_wakeups(net: SimNet, name: str) -> list[float]:
    """Wrap the machine's handle_timeout: the times it is called at from now on."""
    machine = net.machine(name)
    calls: list[float] = []
    inner = machine.handle_timeout

    def counting(now: float) -> None:
        calls.append(now)
        inner(now)

    machine.handle_timeout = counting
    return calls


def test_an_idle_node_wakes_only_to_probe_and_sends_only_pings_and_acks():
    """With no broadcast queued, the gossip ticker (5 a second in lan) must not wake the node, and an acked
    probe must not leave its probe_timeout timer to fire: an idle node wakes about once a probe interval. What
    goes on the wire is unchanged (memberlist's gossip() sends nothing without broadcasts): a ping and an ack."""
    config = Config.lan(enable_compression=False)
    net = pair(config, seed=3)
    net.run_for(10.0)  # the join's alive broadcasts retire
    n0 = net.machine("n0")
    assert not len(n0._core.broadcasts)
    n1 = net.machine("n1")
    wakeups = _count_wakeups(net, "n0")
    sent_before = n0.stats["udp_sent"]
    probed_before = len(n0.probe_durations), len(n1.probe_durations)
    window = 30.0
    net.run_for(window)
    ticks = window / config.probe_interval
    assert ticks - 1 <= len(wakeups) <= ticks + 3  # the probe ticks, a push/pull tick or two (before: 198)
    # Our pings and our acks of n1's pings: nothing else. (Alone with one peer, memberlist's probe() skips a
    # tick now and then when the reshuffled order puts us first.)
    pings, acks = (len(m.probe_durations) - before for m, before in zip((n0, n1), probed_before, strict=True))
    assert abs(n0.stats["udp_sent"] - sent_before - (pings + acks)) <= 1
    assert pings >= ticks / 2
    assert all(net.machine(h).num_alive() == 2 for h in net.hosts)

    # News wakes the ticker again at its next tick (not at the next probe): an update reaches the peer by gossip.
    net.do("n0", lambda m, now: m.update_meta(now))
    now = net.now
    wake = n0.poll_timeout()
    assert wake is not None and wake <= now + config.gossip_interval
    updated = lambda: n1.get("n0").incarnation == n0.incarnation  # noqa: E731
    assert net.run_until(updated, deadline=now + config.gossip_interval + 0.1)


def test_a_probe_timer_run_after_the_probe_ended_opens_no_tcp_fallback_with_a_negative_timeout():
    """A stalled process runs an overdue probe_timeout timer after the probe's deadline: its TCP fallback would
    get a negative timeout (which trio refuses: a loaded seed agent crashed on it). The probe's deadline moves
    to give the fallback and the indirect pings their window (Prober._keep_indirect_window): every stream opened
    has a positive timeout."""
    net = pair(Config.lan(enable_compression=False), seed=6)
    n0 = net.machine("n0")
    opened: list[StreamOpen] = []
    inner = n0.poll_transmit

    def recording():
        tx = inner()
        if isinstance(tx, StreamOpen):
            opened.append(tx)
        return tx

    n0.poll_transmit = recording
    net.block_udp("n0", "n1")
    assert net.run_until(lambda: n0._prober._probe is not None, deadline=net.now + 5)
    net.stall("n0", 2 * n0.config.probe_interval)  # past probe_timeout and the probe's end
    net.run_for(6 * n0.config.probe_interval)
    assert opened and all(tx.timeout > 0 for tx in opened), [tx.timeout for tx in opened]  # later probes: TCP
    assert n0.stats["internal_error"] == 0


def test_a_stalled_prober_waits_for_its_indirect_acks_before_suspecting():
    """Lifeguard under CPU starvation: the prober stalls past its probe's end, so its probe_timeout and deadline
    timers are both overdue when it resumes. The indirect pings it sends then must get their window (probe
    interval less probe_timeout) instead of the deadline firing at once: the target, reachable through a peer,
    is not suspected."""
    config = Config.lan(enable_compression=False, disable_tcp_pings=True)
    net = pair(config, seed=3, n=3)
    n0 = net.machine("n0")
    net.block_udp("n0", "n1")  # direct pings fail; the indirect path through n2 works
    probing_n1 = lambda: n0._prober._probe is not None and n0._prober._probe.target.name == "n1"  # noqa: E731
    assert net.run_until(probing_n1, deadline=net.now + 10, check_every=0.01)
    started = net.now
    net.stall("n0", 2 * config.probe_interval)
    net.run_for(3 * config.probe_interval)
    log = net.hosts["n0"].log
    failed = [e for t, e in log if t >= started and isinstance(e, Diagnostic) and e.kind == "probe-failed"]
    assert failed == []
    assert n0.get("n1").state == NodeStateType.ALIVE
    assert n0.stats["internal_error"] == 0


def test_a_labeled_node_fills_packets_to_memberlists_budget_not_past_it():
    """memberlist takes the label's header (2 + its length) off the piggyback budget, as it does the encryption
    overhead, so a labeled node's packets are no larger on the wire than an unlabeled node's can be: at most the
    UDP buffer size plus 2 (the ack's own compound entry) plus 5 (the CRC header)."""
    label = "a-rather-long-cluster-label"
    most = CFG.udp_buffer_size + 2 + 5
    for config in (CFG, attrs.evolve(CFG, label=label)):
        node = Node(config, name="a", addr=("10.0.0.1", 7946), rng=random.Random(1), now=0.0)
        for i in range(2, 120):  # every member learned is queued to be gossiped: far more than one packet holds
            alive = encode(Alive(1, f"m{i:03d}", bytes([10, 0, i >> 8, i & 255]), 7946, b"", CFG.vsn))
            node.handle_datagram(0.0, ("10.0.0.2", 7946), packets.add_label(alive, config.label))
        ping = encode(Ping(1, "a", bytes([10, 0, 0, 2]), 7946, "m002"))
        node.handle_datagram(0.0, ("10.0.0.2", 7946), packets.add_label(ping, config.label))  # an ack piggybacks
        node.gossip_now(0.0)
        sent = [tx.data for tx in iter(node.poll_transmit, None) if isinstance(tx, Datagram)]
        assert len(sent) >= 2 and all(packets.strip_label(d)[0] == config.label for d in sent)
        assert most - 40 < max(len(d) for d in sent) <= most, (config.label, sorted(len(d) for d in sent))
