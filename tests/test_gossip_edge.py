"""Hostile gossip input at the protocol layer (issue 16, items 1 and 3): one datagram must never crash, evict or
poison a member.

Deterministic: real protocol.Serf / protocol.Node machines, fed bytes built with our own codec (what any peer may
send), with a virtual clock. The same findings through real sockets are in tests/test_gossip_edge_live.py.
"""

from __future__ import annotations

import random

import attrs
import msgpack
import pytest

from protocol import packets
from protocol.codec import (
    Alive,
    Dead,
    PushNodeState,
    PushPull,
    Suspect,
    decode_stream,
    encode,
    go_bytes,
    go_str,
    packb,
)
from protocol.config import Config
from protocol.node import Diagnostic, Node
from protocol.serf import APP_MESSAGE_TYPE, AppMessage, MemberStatus, Serf
from protocol.serf_messages import JoinIntent, SerfPushPull, decode_message, encode_message, encode_tags
from protocol.state import NodeStateType

VSN = bytes([1, 5, 2, 2, 5, 4])
EVIL = b"evil\xff"
U32 = (1 << 32) - 1
PEER = ("10.0.0.2", 7946)


def _serf(name: str = "victim", addr: tuple[str, int] = ("10.0.0.1", 7946)) -> Serf:
    return Serf(Config.local(), name=name, addr=addr, rng=random.Random(7), now=0.0, tags={"role": "node"})


def _drain(machine: Serf | Node) -> list[object]:
    out = []
    while (ev := machine.poll_event()) is not None:
        out.append(ev)
    while machine.poll_transmit() is not None:
        pass
    return out


def _internal_errors(machine: Serf | Node) -> int:
    node = machine.node if isinstance(machine, Serf) else machine
    return node.stats["internal_error"]


def _push_pull_reply(machine: Serf | Node, pp: PushPull) -> PushPull:
    """Serve ``pp`` as an inbound stream and decode the machine's answer (its own push/pull)."""
    reply = machine.handle_stream(1.0, PEER, encode(pp))
    assert reply, "no push/pull answer"
    msg, _ = packets.read_stream(reply)
    assert isinstance(msg, PushPull)
    return msg


# ------------------------------------------------------------------------------------------------ Go strings


@pytest.mark.parametrize("raw", [b"", b"plain", EVIL, b"\xed\xa0\x80", b"\xc0\xaf", b"\x80\x81\xfe", "é".encode()])
def test_go_strings_round_trip_byte_for_byte(raw: bytes) -> None:
    assert go_bytes(go_str(raw)) == raw
    # and through msgpack, as every message field goes
    assert packb(go_str(raw)) == packb(raw)


def test_go_bytes_never_raises_on_lone_surrogates() -> None:
    """A surrogate no bytes decode to (JSON's "\\ud800") is written as Go's decoder would have stored it: U+FFFD."""
    assert go_bytes("a\ud800b") == "a\ufffdb".encode()
    assert go_bytes("\udc00") == "\ufffd".encode()  # below the escape range: not from any byte
    assert go_bytes(go_str(EVIL)) == EVIL


@pytest.mark.parametrize("tags", [None, {"role": "node"}, {"tcv": "7", "role": "node"}, {"tcv": "\udcff"}])
def test_non_utf8_member_name_is_carried_losslessly(tags: dict[str, str] | None) -> None:
    """Issue 16 item 1: an alive for b"evil\\xff" (with and without Serf tags, the catalog tag tcv too) joins the
    member list, and every message we write about it carries the very same name bytes."""
    serf = _serf()
    name = go_str(EVIL)
    meta = b"" if tags is None else encode_tags(tags)
    serf.handle_datagram(1.0, PEER, encode(Alive(1, name, bytes([10, 0, 0, 9]), 7946, meta, VSN)))
    _drain(serf)
    member = serf.member(name)
    assert member is not None and member.status == MemberStatus.ALIVE
    if tags is not None:
        assert member.tags == tags
    # our push/pull lists it under the identical bytes, in memberlist's part and in Serf's user state
    ours = _push_pull_reply(serf, PushPull(False, ()))
    wire = encode(ours)
    assert EVIL in wire
    assert [n.name for n in ours.nodes if go_bytes(n.name) == EVIL]
    state = decode_message(ours.user_state)
    assert isinstance(state, SerfPushPull) and name in state.status_ltimes
    # a join intent about it, an app message from it: handled, nothing raised
    serf.handle_datagram(2.0, PEER, encode(Alive(2, name, bytes([10, 0, 0, 9]), 7946, meta, VSN)))
    serf.notify_msg(2.0, encode_message(JoinIntent(5, name)))
    serf.notify_msg(2.0, bytes([APP_MESSAGE_TYPE]) + packb({"From": EVIL, "Payload": b"x"}))
    events = _drain(serf)
    assert AppMessage(name, b"x") in events
    assert _internal_errors(serf) == 0


def test_non_utf8_name_survives_a_node_to_node_push_pull() -> None:
    """One machine learns the name, hands it to another through its push/pull: the bytes are unchanged."""
    a, b = _serf("a", ("10.0.0.1", 7946)), _serf("b", ("10.0.0.3", 7946))
    a.handle_datagram(1.0, PEER, encode(Alive(1, go_str(EVIL), bytes([10, 0, 0, 9]), 7946, b"", VSN)))
    _drain(a)
    from_a = _push_pull_reply(a, PushPull(False, ()))
    _push_pull_reply(b, from_a)
    _drain(b)
    from_b = _push_pull_reply(b, PushPull(False, ()))
    assert EVIL in encode(from_b)
    assert b.member(go_str(EVIL)) is not None


# ------------------------------------------------------------------------------------------------ incarnations


def _victim_and_spoof(kind: str, incarnation: int, *, about_left: bool = False) -> tuple[Serf, bytes]:
    victim = _serf()
    _drain(victim)
    if kind == "dead":
        msg = encode(Dead(incarnation, "victim", "victim" if about_left else "mallory"))
    else:
        msg = encode(Suspect(incarnation, "victim", "mallory"))
    return victim, msg


@pytest.mark.parametrize("kind", ["dead", "suspect"])
@pytest.mark.parametrize("about_left", [False, True])
def test_victim_of_a_top_incarnation_accusation_keeps_working(kind: str, about_left: bool) -> None:
    """Issue 16 item 3: a spoofed dead/suspect with incarnation 2^32-1 about the victim. The victim must not turn
    every push/pull into an internal error, must still join, and must leave without a ValueError."""
    victim, spoof = _victim_and_spoof(kind, U32, about_left=about_left)
    victim.handle_datagram(1.0, PEER, spoof)
    _drain(victim)
    assert victim.node.incarnation <= U32
    ours = _push_pull_reply(victim, PushPull(False, ()))  # answering a push/pull encodes our own state
    assert any(n.name == "victim" for n in ours.nodes)
    victim.join(2.0, [PEER])  # a join encodes our state too
    victim.handle_timeout(40.0)  # the periodic push/pull
    victim.leave(41.0)
    for t in range(42, 60):
        victim.handle_timeout(float(t))
    _drain(victim)
    assert _internal_errors(victim) == 0


@pytest.mark.parametrize("incarnation", [U32, U32 - 1, 1 << 31, 1 << 20])
@pytest.mark.parametrize("kind", ["dead", "suspect"])
def test_peers_refuse_an_accusation_no_honest_member_could_make(kind: str, incarnation: int) -> None:
    """A peer that knows the victim at incarnation 1 gets an accusation far above it: dropped and counted, the
    victim stays alive on that peer (an honest accuser only repeats an incarnation the victim itself published,
    and the victim's incarnation grows by one per refute)."""
    peer = Node(Config.local(), name="peer", addr=PEER, rng=random.Random(3), now=0.0)
    peer.handle_datagram(0.5, ("10.0.0.1", 7946), encode(Alive(1, "victim", bytes([10, 0, 0, 1]), 7946, b"", VSN)))
    _drain(peer)
    accusation = Dead(incarnation, "victim", "mallory") if kind == "dead" else Suspect(incarnation, "victim", "mal")
    peer.handle_datagram(1.0, ("10.6.6.6", 7946), encode(accusation))
    events = _drain(peer)
    state = peer.get("victim")
    assert state is not None and state.state == NodeStateType.ALIVE and state.incarnation == 1
    assert peer.stats["implausible_incarnation"] == 1
    assert any(isinstance(e, Diagnostic) and e.kind == "implausible-incarnation" for e in events)
    # and the same accusation inside a push/pull (merged as suspect / left)
    entry_state = 3 if kind == "dead" else 1
    pushed = PushNodeState("victim", bytes([10, 0, 0, 1]), 7946, b"", incarnation, entry_state, VSN)
    peer.handle_stream(2.0, ("10.6.6.6", 7946), encode(PushPull(False, (pushed,))))
    _drain(peer)
    state = peer.get("victim")
    assert state is not None and state.state == NodeStateType.ALIVE
    assert peer.stats["implausible_incarnation"] == 2
    assert peer.stats["internal_error"] == 0


def test_honest_accusations_still_count() -> None:
    """The plausibility window does not blunt the failure detector: a dead one incarnation ahead still kills."""
    peer = Node(Config.local(), name="peer", addr=PEER, rng=random.Random(3), now=0.0)
    peer.handle_datagram(0.5, ("10.0.0.1", 7946), encode(Alive(5, "victim", bytes([10, 0, 0, 1]), 7946, b"", VSN)))
    peer.handle_datagram(1.0, ("10.0.0.3", 7946), encode(Dead(6, "victim", "other")))
    _drain(peer)
    state = peer.get("victim")
    assert state is not None and state.state == NodeStateType.DEAD and state.incarnation == 6


def test_a_refute_never_overflows_and_peers_take_it_back() -> None:
    """The victim refutes the highest accusation a peer accepts, and the peer believes the refutation."""
    victim = _serf()
    peer = Node(Config.local(), name="peer", addr=PEER, rng=random.Random(3), now=0.0)
    peer.handle_datagram(0.5, ("10.0.0.1", 7946), encode(Alive(1, "victim", bytes([10, 0, 0, 1]), 7946, b"", VSN)))
    _drain(peer)
    worst = 1 + Node.INCARNATION_JUMP_LIMIT
    peer.handle_datagram(1.0, ("10.6.6.6", 7946), encode(Dead(worst, "victim", "mallory")))
    assert peer.get("victim").state == NodeStateType.DEAD  # type: ignore[union-attr]
    victim.handle_datagram(1.0, ("10.6.6.6", 7946), encode(Dead(worst, "victim", "mallory")))
    assert victim.node.incarnation == worst + 1
    ours = _push_pull_reply(victim, PushPull(False, ()))
    _push_pull_reply(peer, ours)
    _drain(peer)
    state = peer.get("victim")
    assert state is not None and state.state == NodeStateType.ALIVE and state.incarnation == worst + 1


def test_unbeatable_accusation_takes_a_new_incarnation_base() -> None:
    """Our own incarnation is at the top (the victim accepted a top accusation before this fix, or a peer that
    does not check plausibility made us climb): we cannot beat it, so we never encode an overflow: we wrap to a
    new base, say so, and are re-admitted once peers forget the dead record (gossip_to_the_dead_time)."""
    victim = _serf()
    _drain(victim)
    victim.node._membership.incarnation = U32 - 1  # as if we had been pushed all the way up, one step at a time
    victim.handle_datagram(1.0, PEER, encode(Dead(U32 - 1, "victim", "mallory")))
    assert victim.node.incarnation == U32
    events = _drain(victim)
    victim.handle_datagram(2.0, PEER, encode(Dead(U32, "victim", "mallory")))
    events = _drain(victim)
    assert victim.node.incarnation == 1
    assert any(isinstance(e, Diagnostic) and e.kind == "incarnation-wrapped" for e in events)
    ours = _push_pull_reply(victim, PushPull(False, ()))
    assert [n.incarnation for n in ours.nodes if n.name == "victim"] == [1]
    assert _internal_errors(victim) == 0


def test_a_peer_forgets_a_left_member_and_takes_it_back() -> None:
    """memberlist (resetNodes/moveDeadNodes) forgets dead *and left* members after gossip_to_the_dead_time; then
    the member's next alive, whatever its incarnation, joins it again. Before, triumvir kept left records forever,
    so a victim recorded left at a high incarnation stayed left even after a restart and rejoin."""
    cfg = Config.local()
    peer = Node(cfg, name="peer", addr=PEER, rng=random.Random(3), now=0.0)
    peer.handle_datagram(0.5, ("10.0.0.1", 7946), encode(Alive(1, "victim", bytes([10, 0, 0, 1]), 7946, b"", VSN)))
    peer.handle_datagram(1.0, ("10.0.0.1", 7946), encode(Dead(50, "victim", "victim")))  # left at 50
    assert peer.get("victim").state == NodeStateType.LEFT  # type: ignore[union-attr]
    t = 1.0
    while peer.get("victim") is not None and t < 1.0 + cfg.gossip_to_the_dead_time + 60:
        t += 0.25
        peer.handle_timeout(t)
        _drain(peer)
    assert peer.get("victim") is None, "left record never forgotten"
    peer.handle_datagram(t, ("10.0.0.1", 7946), encode(Alive(1, "victim", bytes([10, 0, 0, 1]), 7946, b"", VSN)))
    assert peer.get("victim").state == NodeStateType.ALIVE  # type: ignore[union-attr]


@pytest.mark.parametrize("value", [1 << 32, (1 << 64) - 1, -1, -(1 << 63), 1.5, "x", True, None, [1]])
def test_out_of_range_incarnation_is_a_counted_drop(value: object) -> None:
    """Extreme and wrong-typed incarnations from the wire never reach the state machine and never raise."""
    peer = Node(Config.local(), name="peer", addr=PEER, rng=random.Random(3), now=0.0)
    peer.handle_datagram(0.5, ("10.0.0.1", 7946), encode(Alive(1, "victim", bytes([10, 0, 0, 1]), 7946, b"", VSN)))
    _drain(peer)
    before = peer.stats["malformed"]
    for kind, body in ((5, {"From": "m", "Incarnation": value, "Node": "victim"}),
                       (3, {"From": "m", "Incarnation": value, "Node": "victim"})):
        peer.handle_datagram(1.0, ("10.6.6.6", 7946), bytes([kind]) + packb(body))
    events = _drain(peer)
    state = peer.get("victim")
    assert state is not None and state.state == NodeStateType.ALIVE
    if value is None:  # nil is Go's zero value: a stale accusation, ignored
        assert peer.stats["malformed"] == before
    else:
        assert peer.stats["malformed"] == before + 2
        assert sum(isinstance(e, Diagnostic) and e.kind == "malformed" for e in events) == 2
    assert peer.stats["internal_error"] == 0


def test_decode_stream_still_reads_a_stream_whole() -> None:
    pp = PushPull(True, (PushNodeState(go_str(EVIL), bytes([10, 0, 0, 9]), 1, b"", 3, 0, VSN),), b"us")
    msg, used = decode_stream(encode(pp))
    assert msg == pp and used == len(encode(pp))


# ------------------------------------------------------------------------------------------------ streams (item 12)


class _CountingUnpacker(msgpack.Unpacker):
    """msgpack's resumable reader, counting every byte handed to it (the parse work of a stream)."""

    fed = 0

    def feed(self, next_bytes: bytes) -> None:  # type: ignore[override]
        _CountingUnpacker.fed += len(next_bytes)
        super().feed(next_bytes)


def _big_push_pull(members: int) -> bytes:
    nodes = tuple(
        PushNodeState(f"node-{i:05d}", bytes([10, i >> 16 & 255, i >> 8 & 255, i & 255]), 7946,
                      encode_tags({"role": "node", "dc": "dc1"}), 1 + i % 7, 0, VSN)
        for i in range(members)
    )
    return encode(PushPull(False, nodes, b"\x02" + b"u" * 1000))


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "compressed"])
@pytest.mark.parametrize("chunk", [1, 1024, 65536])
def test_a_5000_member_push_pull_is_parsed_once_whatever_the_chunking(
    monkeypatch: pytest.MonkeyPatch, chunk: int, compress: bool
) -> None:
    """Issue 16 item 12: the stream is fed in slices; the bytes handed to the msgpack parser stay equal to the
    stream's length (before, the whole buffer so far was decoded again after every chunk)."""
    monkeypatch.setattr(msgpack, "Unpacker", _CountingUnpacker)
    _CountingUnpacker.fed = 0
    data = packets.wrap_stream(_big_push_pull(5000), compress=compress)
    node = Node(Config.local(), name="n", addr=("10.1.0.1", 7946), rng=random.Random(1), now=0.0)
    sid = node.accept_stream(0.0, PEER)
    reply = None
    view = memoryview(data)
    for off in range(0, len(data), chunk):
        reply = node.handle_stream_data(0.0, sid, bytes(view[off : off + chunk]))
        if reply is not None:
            break
    assert reply, "no push/pull answer"
    assert off + chunk >= len(data)
    assert node.num_alive() == 5001
    inbound_work = _CountingUnpacker.fed
    # the parser saw each byte of our stream once; decoding the inflated message adds its length once more
    assert inbound_work <= 2 * len(packets.wrap_stream(_big_push_pull(5000))) + 64, inbound_work
    assert node.stats["internal_error"] == 0


def test_stream_bounds_bytes_and_time() -> None:
    """Config.stream_max_bytes and tcp_timeout bound one stream, each with its own drop reason and an error reply."""
    cfg = attrs.evolve(Config.local(), stream_max_bytes=100_000)
    node = Node(cfg, name="n", addr=("10.1.0.1", 7946), rng=random.Random(1), now=0.0)
    big = _big_push_pull(2000)
    sid = node.accept_stream(0.0, PEER)
    replies = [node.handle_stream_data(0.0, sid, big[off : off + 65536]) for off in range(0, 2 * 65536, 65536)]
    assert replies[0] is None and replies[1]
    err, _ = packets.read_stream(replies[1])
    assert "stream_max_bytes" in err.error  # type: ignore[union-attr]
    assert node.stats["oversized"] == 1
    sid = node.accept_stream(0.0, PEER)
    assert node.handle_stream_data(1.0, sid, big[:1000]) is None
    late = node.handle_stream_data(1.0 + cfg.tcp_timeout + 0.1, sid, big[1000:2000])
    assert late and "tcp_timeout" in packets.read_stream(late)[0].error  # type: ignore[union-attr]
    assert node.stats["stream_timeout"] == 1
    assert node.num_alive() == 1  # nothing of either stream was merged


def test_a_compressed_stream_is_inflated_as_it_arrives() -> None:
    """A large compressMsg (what Go peers always send with compression on) is inflated and parsed slice by slice:
    half-way through the stream, about half of it is already inflated, so no single read stalls the loop for the
    whole inflate (0.3-0.4 s per MiB in pure Python) at the end."""
    state = bytes(random.Random(5).randbytes(1 << 20))
    data = packets.wrap_stream(encode(PushPull(False, (), b"\x02" + state)), compress=True)
    reader = packets.StreamReader()
    progress = []
    msg = None
    for off in range(0, len(data), 65536):
        msg = reader.feed(data[off : off + 65536])
        progress.append(reader.inflated)
    assert isinstance(msg, PushPull) and msg.user_state == b"\x02" + state
    half = progress[len(progress) // 2 - 1]
    assert 0.3 * reader.inflated < half < 0.7 * reader.inflated, progress


@pytest.mark.parametrize(
    "payload",
    [
        bytes([1]) + packb({"LTime": 1.5, "Node": "x"}),  # a float
        bytes([0]) + packb({"LTime": -1, "Node": "x"}),
        bytes([3]) + packb({"LTime": 1, "Name": 5}),  # wrong type
        bytes([4]) + packb({"ID": 1 << 32}),
        bytes([1]) + b"\xc1",  # not msgpack
        bytes([APP_MESSAGE_TYPE]) + packb({"From": 5, "Payload": b"x"}),
    ],
)
def test_unreadable_serf_messages_are_counted_drops(payload: bytes) -> None:
    serf = _serf()
    _drain(serf)
    serf.handle_datagram(1.0, PEER, b"\x08" + payload)
    events = _drain(serf)
    assert serf.malformed == 1
    assert any(isinstance(e, Diagnostic) and e.kind == "serf-malformed" for e in events)
    assert _internal_errors(serf) == 0


def test_lamport_clocks_never_pass_uint64() -> None:
    """A join intent at LTime 2^64-1: our clock stays encodable (Go's wraps), and our push/pull still encodes."""
    serf = _serf()
    serf.notify_msg(1.0, encode_message(JoinIntent((1 << 64) - 1, "someone")))
    serf.clock.increment()
    assert serf.clock.time() == (1 << 64) - 1
    ours = _push_pull_reply(serf, PushPull(False, ()))
    assert isinstance(decode_message(ours.user_state), SerfPushPull)
    assert _internal_errors(serf) == 0
