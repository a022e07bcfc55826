"""The catalog's anti-entropy (agent.catalog.replication) on a tiny in-memory network: no trio, no sockets.

Rules: every node is a Replicator; the harness delivers what ``poll_send`` yields (optionally dropping some),
turns ``poll_announce`` into member-update events carrying ``tcv`` to every other node, and runs timers on a
virtual clock.  Assertions are about what each node holds, never about message counts alone.
"""

from __future__ import annotations

import random

import attrs
import msgpack
import pytest

from agent.catalog import messages
from agent.catalog.indexed import apply_changes
from agent.catalog.record import MAX_VERSION, Announcement, CheckRecord, NodeCatalog, ServiceRecord, from_wire, to_wire
from agent.catalog.replication import Replicator, ReplicatorConfig

ALIVE, LEFT, FAILED = 1, 3, 4
CFG = ReplicatorConfig(digest_interval=10.0, fetch_timeout=1.0, announce_delay=0.05)


class Net:
    def __init__(self, names: list[str], seed: int = 1) -> None:
        self.now = 0.0
        self.rng = random.Random(seed)
        self.nodes = {n: Replicator(n, rng=random.Random(f"{seed}{n}"), now=0.0, config=CFG) for n in names}
        self.status = {n: ALIVE for n in names}
        self.drop: set[tuple[str, str]] = set()  # (from, to) links that lose messages
        self.sent = 0
        self.last_announced: dict[str, Announcement] = {}
        for a in self.nodes.values():
            a.set_local(0.0, 1000, (), ())
        self.step(0.1)

    def announce_member(self, name: str, status: int, tcv: Announcement | None) -> None:
        for other, r in self.nodes.items():
            if other != name:
                r.member(self.now, name, status, tcv)

    def pump(self) -> None:
        moved = True
        while moved:
            moved = False
            for name, r in self.nodes.items():
                if self.status[name] != ALIVE:
                    continue
                announcement = r.poll_announce(self.now)
                if announcement is not None:
                    self.last_announced[name] = announcement
                    self.announce_member(name, ALIVE, announcement)
                    moved = True
                while (out := r.poll_send()) is not None:
                    to, payload = out
                    self.sent += 1
                    moved = True
                    if (name, to) in self.drop or self.status.get(to) != ALIVE:
                        continue
                    self.nodes[to].handle_message(self.now, name, payload)

    def step(self, seconds: float, dt: float = 0.05) -> None:
        end = self.now + seconds
        while self.now < end:
            self.now = round(self.now + dt, 6)
            for name, r in self.nodes.items():
                if self.status[name] == ALIVE:
                    r.handle_timeout(self.now)
            self.pump()

    def versions(self, of: str) -> dict[str, int]:
        return {n: (r.records[of].version if of in r.records else 0) for n, r in self.nodes.items()}


def web(port: int = 8080) -> tuple[tuple[ServiceRecord, ...], tuple[CheckRecord, ...]]:
    return (ServiceRecord("web", "web", ("v1",), port=port),), (CheckRecord("service:web", "c", "passing",
                                                                            service_id="web"),)


def test_a_change_is_announced_fetched_and_held_everywhere() -> None:
    net = Net(["a", "b", "c"])
    services, checks = web()
    record = net.nodes["a"].set_local(net.now, 2000, services, checks)
    net.step(0.2)
    assert set(net.versions("a").values()) == {record.version}
    assert all(r.records["a"].services == services for r in net.nodes.values())


def test_versions_grow_even_when_the_wall_clock_does_not() -> None:
    r = Replicator("a", rng=random.Random(1), now=0.0, version_floor=5000)
    first = r.set_local(0.0, 10, *web())
    assert first.version == 5001
    assert r.set_local(0.0, 10, *web()) is first  # same content: no new version
    assert r.set_local(0.0, 10, *web(81)).version == 5002


def test_a_lost_announcement_is_repaired_by_the_digest() -> None:
    net = Net(["a", "b", "c", "d"])
    net.drop = {("a", "b")}  # b can ask a, but a's answers to b are lost
    net.nodes["a"].set_local(net.now, 2000, *web())
    net.step(0.5)
    assert net.versions("a")["b"] == 1000
    net.drop = set()
    net.step(3 * CFG.digest_interval)
    assert net.versions("a")["b"] == 2000


def test_fetch_is_retried_then_left_to_the_digest() -> None:
    net = Net(["a", "b"])
    net.drop = {("a", "b")}
    net.nodes["a"].set_local(net.now, 2000, *web())
    net.step(CFG.fetch_timeout * 4)
    assert net.nodes["b"].stats.fetch_retries == CFG.fetch_attempts - 1
    assert not net.nodes["b"]._fetches


def test_left_nodes_go_at_once_and_are_not_resurrected_failed_ones_stay() -> None:
    net = Net(["a", "b", "c"])
    net.nodes["c"].set_local(net.now, 2000, *web())
    net.step(0.2)
    # c fails: everyone keeps its record.
    net.status["c"] = FAILED
    net.announce_member("c", FAILED, net.last_announced["c"])
    net.step(0.2)
    assert all("c" in net.nodes[n].records for n in ("a", "b"))
    # c leaves: a hears it first; b's digest must not bring c back to a.
    net.nodes["a"].member(net.now, "c", LEFT, net.last_announced["c"])
    assert "c" not in net.nodes["a"].records
    assert net.nodes["a"].poll_changes()["c"] is None
    net.step(3 * CFG.digest_interval)
    assert "c" not in net.nodes["a"].records


def test_an_owner_that_lost_its_state_jumps_past_what_others_hold() -> None:
    net = Net(["a", "b"])
    net.nodes["a"].set_local(net.now, 5000, *web())
    net.step(0.2)
    # a restarts without its data dir and with a clock behind: a fresh replicator at a lower version.
    fresh = Replicator("a", rng=random.Random(9), now=net.now, config=CFG)
    net.nodes["a"] = fresh
    fresh.member(net.now, "b", ALIVE, net.last_announced["b"])  # what the gossip layer tells it at start
    fresh.set_local(net.now, 3000, *web(9090))
    net.step(3 * CFG.digest_interval)
    assert fresh.local is not None and fresh.local.version > 5000
    assert net.nodes["b"].records["a"].services[0].port == 9090


def test_thirty_nodes_converge_after_changes_everywhere() -> None:
    names = [f"n{i}" for i in range(30)]
    net = Net(names, seed=3)
    for i, name in enumerate(names):
        net.nodes[name].set_local(net.now, 2000 + i, *web(8000 + i))
    net.step(1.0)
    for name in names:
        assert set(net.versions(name).values()) == {net.nodes[name].local.version}


def test_records_and_messages_round_trip_and_bad_bytes_are_dropped() -> None:
    record = NodeCatalog("a", 7, *web(), meta={"rack": "r1"})
    assert from_wire(to_wire(record)) == record
    for message in (messages.Digest((("a", 1),)), messages.Request(("a",)), messages.Records((record,))):
        assert messages.decode(messages.encode(message)) == message
    r = Replicator("b", rng=random.Random(1), now=0.0)
    for junk in (b"", b"\xc1", messages.encode(messages.Request(("a",)))[:-1], b"\x81\xa1t\xa1r\xa1r\x91\x01"):
        r.handle_message(0.0, "a", junk)
    assert r.stats.malformed == 4
    with pytest.raises(ValueError):
        from_wire({"n": "a", "v": 1, "c": [{"i": "x", "n": "x", "s": "bogus"}]})


def test_indexes_move_only_for_what_changed() -> None:
    import immutables

    services, checks = web()
    one = apply_changes(immutables.Map(), {"a": NodeCatalog("a", 1, services, checks)}, 10)
    flipped = (CheckRecord("service:web", "c", "critical", service_id="web"),)
    two = apply_changes(one, {"a": NodeCatalog("a", 2, services, flipped)}, 11)
    entry = two["a"]
    assert entry.service_indexes("web") == (10, 10)
    assert entry.check_indexes("service:web") == (10, 11)
    assert apply_changes(two, {}, 12) is two
    assert "a" not in apply_changes(two, {"a": None}, 12)


def _forged_web(record: NodeCatalog, address: str, version: int) -> NodeCatalog:
    service = attrs.evolve(record.services[0], address=address)
    return attrs.evolve(record, version=version, services=(service,))


def test_records_are_accepted_only_from_their_owner_as_announced() -> None:
    """Issue 16 item 4: a forger (a member, even one that claims to be the owner) cannot change a's record."""
    net = Net(["a", "b", "c"])
    real = net.nodes["a"].set_local(net.now, 2000, *web())
    net.step(0.2)
    b = net.nodes["b"]
    assert b.records["a"] == real
    forgeries = [
        ("c", _forged_web(real, "10.6.6.6", real.version + 1)),  # a third party, newer version
        ("a", _forged_web(real, "10.6.6.6", real.version + 1)),  # claims to be a, version a never announced
        ("a", _forged_web(real, "10.6.6.6", real.version)),  # claims to be a, announced version, other content
    ]
    refused = b.stats.records_refused
    for sender, forged in forgeries:
        b.handle_message(net.now, sender, messages.encode(messages.Records((forged,))))
        assert b.records["a"] == real
    assert b.stats.records_refused == refused + 3
    notes = b.poll_notes()
    assert len(notes) == 3 and all("refused the record of 'a'" in n for n in notes)
    # The owner's next change is still accepted, and a's record is still relayed by nobody but a.
    changed = net.nodes["a"].set_local(net.now, 3000, *web(9090))
    net.step(0.2)
    assert all(r.records["a"] == changed for r in net.nodes.values())


@pytest.mark.parametrize("version", [2**64 - 1, 2**63, -1, "7", 1.5, True, None])
def test_a_digest_with_an_impossible_version_is_a_counted_drop(version: object) -> None:
    """Issue 16 item 2: a digest claiming our own record at 2**64-1 (or any non-version) must not kill us."""
    net = Net(["a", "b"])
    b = net.nodes["b"]
    before = b.local_version
    b.handle_message(net.now, "a", msgpack.packb({"t": "d", "v": {"b": version, "a": 5}}))
    assert b.stats.malformed == 1 and b.local_version == before
    assert "malformed" in b.poll_notes()[0]
    net.step(3 * CFG.digest_interval)  # everything it sends still encodes
    assert b.local_version == before


def test_a_claim_near_the_version_limit_does_not_exhaust_our_versions() -> None:
    net = Net(["a", "b"])
    b = net.nodes["b"]
    before = b.local_version
    b.handle_message(net.now, "a", messages.encode(messages.Digest((("b", MAX_VERSION),))))
    assert b.local_version == before and b.stats.claims_refused == 1
    b.handle_message(net.now, "mallory", messages.encode(messages.Digest((("b", before + 10),))))
    assert b.local_version == before and b.stats.claims_refused == 2  # not a member: not believed
    b.handle_message(net.now, "a", messages.encode(messages.Digest((("b", before + 10),))))
    assert b.local_version == before + 11  # a real claim (we lost state) is still outbid


def test_names_and_fields_with_non_utf8_bytes_travel_losslessly() -> None:
    """Issue 16 item 1: a member name from the wire (surrogate escapes) never makes an encode raise."""
    name = "evil\udcff"
    record = NodeCatalog(name, 7, (ServiceRecord("w\udcfe", "w\udcfe", ("t\udc80",), meta={"k\udcff": "v\udcff"}),))
    for message in (messages.Digest(((name, 7),)), messages.Request((name,)), messages.Records((record,))):
        assert messages.decode(messages.encode(message)) == message
    # A lone surrogate that is not an escape (JSON's "\ud800") is sent as U+FFFD, never raised on.
    odd = NodeCatalog("n", 1, (ServiceRecord("x\ud800", "x"),))
    assert messages.decode(messages.encode(messages.Records((odd,)))).records[0].services[0].id == "x\ufffd"
    assert Announcement.of(record).matches(messages.decode(messages.encode(messages.Records((record,)))).records[0])
