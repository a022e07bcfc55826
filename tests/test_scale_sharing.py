"""Issue 14's shortcuts for large simulations keep the protocol's semantics.

Member records are N^2 in a simulation of N members in one process, so equal immutable values are shared between
the members' records and the first word about a member takes a shorter path than the general alive rules. These
tests pin that the shortcuts change nothing a member can observe: the same records, broadcasts and events as the
general path, and no mutable state shared between two members.
"""

from __future__ import annotations

import ipaddress
import random
import subprocess
import sys

import attrs
import pytest

from protocol import interning
from protocol.broadcast import BroadcastQueue
from protocol.codec import (
    Alive,
    PushNodeState,
    PushPull,
    decode,
    encode,
    encode_push_pull_records,
)
from protocol.config import Config
from protocol.gossip import _version_sample
from protocol.node import Node, NodeJoin
from protocol.serf import MemberStatus, Serf
from protocol.serf_messages import SerfPushPull, encode_message, encode_tags
from protocol.state import NodeState, NodeStateType, verify_protocol

CFG = Config.local()
TAGS = {"role": "node", "dc": "sim"}


def _node(name: str, i: int) -> Node:
    node = Node(CFG, name=name, addr=(f"10.0.0.{i}", 7946), rng=random.Random(i), now=0.0)
    node._core.broadcasts.reset()  # its own alive: only what it learns is looked at here
    return node


def _events(node: Node) -> list[object]:
    out = []
    while (ev := node.poll_event()) is not None:
        out.append(ev)
    return out


def _alive(inc: int = 1, name: str = "x", meta: bytes = b"m") -> Alive:
    return Alive(inc, name, bytes([10, 0, 0, 9]), 7946, meta, CFG.vsn)


def test_a_member_heard_of_for_the_first_time_gets_the_general_rules_record_broadcast_and_event() -> None:
    node = _node("a", 1)
    _events(node)
    alive = _alive(3)
    node.handle_datagram(2.5, ("10.0.0.9", 7946), encode(alive))
    core = node._core
    rec = core.nodes["x"]
    assert rec == NodeState("x", ("10.0.0.9", 7946), b"m", 3, NodeStateType.ALIVE, 2.5, CFG.vsn)
    assert "x" in core.order and len(core.order) == 2
    queued = core.broadcasts.snapshot()
    assert [(q.key, q.msg, q.transmits) for q in queued] == [("x", encode(alive), 0)]
    assert [ev for ev in _events(node) if isinstance(ev, NodeJoin)] == [NodeJoin(rec)]
    # the same alive again is stale: nothing new queued, no second event
    node.handle_datagram(2.6, ("10.0.0.9", 7946), encode(alive))
    assert len(core.broadcasts) == 1 and not [ev for ev in _events(node) if isinstance(ev, NodeJoin)]


def test_an_alive_at_incarnation_zero_about_a_stranger_still_takes_the_general_path() -> None:
    # memberlist records the stranger DEAD at incarnation 0 and then finds the alive stale: no join, no broadcast
    node = _node("a", 1)
    _events(node)
    node.handle_datagram(1.0, ("10.0.0.9", 7946), encode(_alive(0)))
    rec = node._core.nodes["x"]
    assert (rec.state, rec.incarnation) == (NodeStateType.DEAD, 0)
    assert len(node._core.broadcasts) == 0
    assert not [ev for ev in _events(node) if isinstance(ev, NodeJoin)]


def test_an_alive_with_bad_versions_about_a_stranger_is_ignored() -> None:
    node = _node("a", 1)
    node.handle_datagram(1.0, ("10.0.0.9", 7946), encode(Alive(1, "x", bytes([10, 0, 0, 9]), 7946, b"", bytes(6))))
    assert "x" not in node._core.nodes and len(node._core.broadcasts) == 0


def test_two_members_share_immutable_values_but_no_record_or_queue() -> None:
    a, b = _node("a", 1), _node("b", 2)
    for n in (a, b):
        n.handle_datagram(1.0, ("10.0.0.9", 7946), encode(_alive(1, meta=b"meta-x")))
    ra, rb = a._core.nodes["x"], b._core.nodes["x"]
    assert ra is not rb and ra.meta is rb.meta and ra.addr is rb.addr  # values shared, records not
    qa, qb = a._core.broadcasts, b._core.broadcasts
    assert qa is not qb
    # transmitting from one queue leaves the other's counts alone
    sent = qa.get_broadcasts(2, 1400, 2)
    assert sent == [encode(_alive(1, meta=b"meta-x"))]
    assert [q.transmits for q in qa.snapshot()] == [1]
    assert [q.transmits for q in qb.snapshot()] == [0]
    # a newer word about x in a's queue does not touch b's
    a.handle_datagram(2.0, ("10.0.0.9", 7946), encode(_alive(2, meta=b"meta-x2")))
    assert [decode(q.msg).incarnation for q in qa.snapshot()] == [2]
    assert [decode(q.msg).incarnation for q in qb.snapshot()] == [1]
    assert b._core.nodes["x"].incarnation == 1 and b._core.nodes["x"].meta == b"meta-x"


def _serf(name: str, i: int) -> Serf:
    return Serf(CFG, name=name, addr=(f"10.0.1.{i}", 7946), rng=random.Random(i), now=0.0, tags=TAGS)


def _push_pull(names: list[str]) -> PushPull:
    meta = encode_tags(TAGS)
    nodes = tuple(PushNodeState(n, bytes([10, 0, 2, i + 1]), 7946, meta, 1, 0, CFG.vsn) for i, n in enumerate(names))
    user = encode_message(SerfPushPull(5000, {n: 1000 + i for i, n in enumerate(names)}))
    return PushPull(False, nodes, user)


def test_serf_member_records_learned_from_a_push_pull_are_separate_per_serf() -> None:
    s1, s2 = _serf("s1", 1), _serf("s2", 2)
    for s in (s1, s2):
        s.node._gossip._merge_remote_state(1.0, _push_pull(["p", "q"]))
    m1, m2 = s1._table.members["p"], s2._table.members["p"]
    assert m1 is not m2 and m1.ident is m2.ident  # the name/address/tags record is shared, the state is not
    # each push/pull decodes fresh ints: the Lamport times kept are one object per value for all records
    assert m1.status_ltime == 1000 and m1.status_ltime is m2.status_ltime
    assert s1.member("p").status == s2.member("p").status == MemberStatus.ALIVE
    m1.status = MemberStatus.FAILED
    assert s2.member("p").status == MemberStatus.ALIVE
    handed_out = s1.member("q")
    handed_out.tags["role"] = "changed"  # a caller's copy: neither the shared record nor the other serf sees it
    assert s1.member("q").tags == TAGS and s2.member("q").tags == TAGS
    # each learned member was queued for gossip in each serf's own queue, by name
    keys1 = {q.key for q in s1.node._core.broadcasts.snapshot()}
    assert {"p", "q"} <= keys1


def test_a_queue_entry_gives_back_the_bytes_it_was_given_through_every_transmit() -> None:
    q = BroadcastQueue(retransmit_mult=1)  # 1 * ceil(log10(n + 1)) = 1 transmit for n = 2... use n = 20: 2
    msgs = {f"k{i}": bytes([i]) * (10 + i % 3) for i in range(6)}
    finished: list[str] = []
    for k, m in msgs.items():
        q.queue(k, bytearray(m), lambda k=k: finished.append(k))
    seen: list[bytes] = []
    while len(q):
        seen.extend(q.get_broadcasts(2, 40, 20))
    assert sorted(seen) == sorted(list(msgs.values()) * 2)
    assert all(type(m) is bytes for m in seen)
    assert sorted(finished) == sorted(msgs)


def test_a_push_pull_encoded_from_member_records_is_the_same_bytes_and_follows_their_changes() -> None:
    """encode_push_pull_records keeps each record's body by (name, incarnation, state): a record with the same
    three but another address, meta or version vector is not handed the kept body."""
    meta = encode_tags(TAGS)
    records = [
        NodeState("a", ("10.0.0.1", 7946), meta, 1, NodeStateType.ALIVE, 0.0, CFG.vsn),
        NodeState("b", ("10.0.0.2", 8301), b"", 7, NodeStateType.DEAD, 5.0, CFG.vsn),
        NodeState("c", ("::", 7946), meta, 3, NodeStateType.LEFT, 0.0, b""),
    ]

    def want(recs: list[NodeState]) -> bytes:
        rows = (PushNodeState(r.name, _packed(r.addr[0]), r.addr[1], r.meta, r.incarnation, r.state, r.vsn)
                for r in recs)  # fmt: skip
        return encode(PushPull(False, tuple(rows), b"user"))

    assert encode_push_pull_records(False, records, _packed, b"user") == want(records)
    assert encode_push_pull_records(False, iter(records), _packed, b"user") == want(records)  # from the kept bodies
    for change in ({"addr": ("10.0.0.9", 7946)}, {"addr": ("10.0.0.1", 7947)}, {"meta": b""}, {"vsn": bytes(6)}):
        changed = [attrs.evolve(records[0], **change), *records[1:]]
        assert encode_push_pull_records(False, changed, _packed, b"user") == want(changed), change
        assert encode_push_pull_records(False, records, _packed, b"user") == want(records)


def _packed(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


@pytest.mark.parametrize(
    "vsns",
    [
        [CFG.vsn] * 4,
        [CFG.vsn, CFG.vsn, bytes((1, 5, 9, 2, 5, 4)), CFG.vsn],  # one member speaks an incompatible version
        [b"\x01\x05"] * 3,  # too short: refused only if an alive member carries it
        [CFG.vsn, b""],
        [],
    ],
    ids=["one-vector", "mixed", "short", "with-empty", "none"],
)
@pytest.mark.parametrize("first_alive", [True, False], ids=["first-alive", "first-dead"])
@pytest.mark.parametrize("any_alive", [True, False], ids=["some-alive", "none-alive"])
def test_verify_protocol_judges_the_version_sample_as_it_judges_every_state(
    vsns: list[bytes], first_alive: bool, any_alive: bool
) -> None:
    """Gossip._merge_remote_state hands verify_protocol a sample of the states (_version_sample): the first state
    and the first alive one when all share one version vector. Its verdict must be the one on every state, for
    the pushed states and for ours."""
    dead, alive = NodeStateType.DEAD, NodeStateType.ALIVE
    states = [alive if any_alive and (i > 0 or first_alive) else dead for i in range(len(vsns))]
    pairs = list(enumerate(zip(vsns, states, strict=True)))
    pushed = [PushNodeState(f"r{i}", bytes(4), 1, b"", 1, int(st), v) for i, (v, st) in pairs]
    ours = [NodeState(f"l{i}", ("10.0.0.1", 1), b"", 1, st, 0.0, v) for i, (v, st) in pairs]
    mine = [NodeState("me", ("10.0.0.2", 1), b"", 1, alive, 0.0, CFG.vsn)]

    def remote(nodes: list[PushNodeState]) -> list[tuple[str, NodeStateType, bytes]]:
        return [(n.name, NodeStateType(n.state), n.vsn) for n in nodes]

    for theirs, local in ((pushed, mine), (pushed[:1], ours)):
        want = verify_protocol(remote(theirs), local)
        assert verify_protocol(remote(_version_sample(theirs)), _version_sample(local)) == want
    for local in (ours, {n.name: n for n in ours}.values()):  # a list, or the member table's values
        want = verify_protocol(remote(pushed), list(local))
        assert verify_protocol(remote(_version_sample(pushed)), _version_sample(local)) == want
    if len(set(vsns)) == 1 and not first_alive and any_alive:  # the case the sample's second state is for
        assert len(_version_sample(pushed)) == 2


def test_verify_protocol_names_the_first_incompatible_node_in_push_order() -> None:
    good, bad, worse = CFG.vsn, bytes((1, 5, 9, 2, 5, 4)), bytes((1, 5, 2, 2, 5, 9))
    A = NodeStateType.ALIVE
    remote = [("r1", A, good), ("r2", A, worse), ("r3", A, bad), ("r4", A, worse)]
    local = [NodeState("l1", ("10.0.0.1", 1), vsn=good, state=A)]
    assert verify_protocol(remote, local) == "Node 'r2' delegate protocol version (9) is incompatible: [2, 5]"
    assert verify_protocol([("r1", A, good), ("r3", A, bad), ("r2", A, worse)], local).startswith("Node 'r3'")
    assert verify_protocol([("r1", A, good)] * 3, local) is None


def test_an_agent_process_keeps_small_tables_and_the_simulator_widens_them() -> None:
    """A process that never calls share_widely (an agent) shares no queue ids and bounds each table at
    AGENT_LIMIT entries (a simulator's tables cost an agent 2.5 MiB of ids alone); share_widely grows the shared
    ids in place, so a queue module's reference sees them; a full table is cleared, never grown past its bound."""
    probe = (
        "import protocol.serf, protocol.interning as i; ids = i.QUEUE_IDS; before = (len(ids), i.limit()); "
        "i.share_widely(8192, 300); table = {}; [i.bounded_put(table, k, k) for k in range(8193)]; "
        "print(before, len(i.QUEUE_IDS), i.QUEUE_IDS is ids, i.QUEUE_IDS[299], i.limit(), len(table))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["(0,", f"{interning.AGENT_LIMIT})", "300", "True", "299", "8192", "1"]
