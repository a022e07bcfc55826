"""The per-read index rules of the agent's catalog (agent/catalog/indexes.py), table-driven and pure.

A real MemberTable gets members, replicated records (as the runner applies them) and registered nodes (as the
mirror publishes them); each case makes one change and says exactly which reads' indexes move.  After every
case the invariants are checked too: an index never exceeds the snapshot's, never goes back, a read that moved
reports the snapshot's index, and the hub was told of exactly the interests of the reads that moved.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import pytest

from agent.catalog import indexes, query
from agent.catalog.indexed import apply_changes
from agent.catalog.record import CheckRecord, NodeCatalog, ServiceRecord
from agent.catalog.registered import Registered, RegisteredNode
from agent.members import STATUS_FAILED, STATUS_LEFT, Member, MemberTable, Snapshot

DC = "dc1"

#: Every read the HTTP layer answers from the table, by the endpoint that answers with it.
READS: dict[str, Callable[[indexes.CatalogIndexes], indexes.ReadIndex]] = {
    "catalog/nodes": indexes.nodes_read,
    "catalog/node/n1": lambda i: indexes.node_read(i, "n1"),
    "catalog/node/n2": lambda i: indexes.node_read(i, "n2"),
    "catalog/node/ext": lambda i: indexes.node_read(i, "ext"),
    "catalog/node/n9": lambda i: indexes.node_read(i, "n9"),
    "health/node/n1": lambda i: indexes.node_checks_read(i, "n1"),
    "health/node/n2": lambda i: indexes.node_checks_read(i, "n2"),
    "service/web": lambda i: indexes.service_read(i, "web"),
    "service/db": lambda i: indexes.service_read(i, "db"),
    "service/cache": lambda i: indexes.service_read(i, "cache"),
    "catalog/services": indexes.services_read,
    "health/state": indexes.checks_read,
}


def member(name: str, status: int = 1, **extra: str) -> Member:
    return Member(name=name, addr="10.0.0.1", port=8301, status=status,
                  tags={"role": "node", "dc": DC, "build": "1.20.1:abc", "id": f"id-{name}", **extra})  # fmt: skip


def web(sid: str = "web", tags: tuple[str, ...] = ("v1",)) -> ServiceRecord:
    return ServiceRecord(id=sid, name="web", tags=tags, port=80)


def db(tags: tuple[str, ...] = ()) -> ServiceRecord:
    return ServiceRecord(id="db", name="db", tags=tags, port=5432)


def chk(cid: str, status: str, service_id: str = "") -> CheckRecord:
    return CheckRecord(id=cid, name=cid, status=status, service_id=service_id)


def ext(name: str = "ext", services: tuple[ServiceRecord, ...] = (web("ext-web"),), meta: str = "") -> RegisteredNode:
    return RegisteredNode(name, "10.9.9.9", meta={"m": meta} if meta else {}, create_index=40, modify_index=41,
                          services=tuple((s, 40, 41) for s in services))  # fmt: skip


class World:
    """The table and the records each agent node publishes (a version bump per publication)."""

    def __init__(self) -> None:
        self.table = MemberTable(datacenter=DC)
        self.records: dict[str, NodeCatalog] = {}
        self.registered: dict[str, RegisteredNode] = {}

    def join(self, name: str, **tags: str) -> None:
        self.table.apply("member-join", member(name, **tags))

    def publish(self, node: str, services: tuple[ServiceRecord, ...] = (),
                checks: tuple[CheckRecord, ...] = ()) -> None:  # fmt: skip
        previous = self.records.get(node)
        record = NodeCatalog(node=node, version=(previous.version + 1) if previous else 1, services=services,
                             checks=checks)  # fmt: skip
        self.records[node] = record
        self.table.apply_catalog(lambda catalog, index: apply_changes(catalog, {node: record}, index), [node])

    def register(self, *nodes: RegisteredNode, drop: str = "") -> None:
        self.registered.pop(drop, None)
        self.registered.update({n.node: n for n in nodes})
        self.table.set_registered(Registered.of(len(self.registered) + 100, list(self.registered.values())))


def base() -> World:
    """n1 runs web (with a service check), n2 runs db (with a node check), ext is a registered node running web;
    a node and a service have already gone (so missing ones answer their extinction, not a table's index)."""
    w = World()
    w.join("old")
    w.table.apply("member-leave", member("old", STATUS_LEFT))
    w.join("n1")
    w.join("n2")
    w.publish("n1", (web(),), (chk("service:web", "passing", "web"),))
    w.publish("n2", (db(), ServiceRecord(id="tmp", name="tmp")), (chk("mem", "passing"),))
    w.publish("n2", (db(),), (chk("mem", "passing"),))
    w.register(ext())
    w.table.set_leader("10.0.0.1:8300", ["10.0.0.1:8300"])
    return w


# (case, change, the reads whose index moves); every other read must stay where it was.
CASES: list[tuple[str, Callable[[World], None], set[str]]] = [
    ("a web instance added on n2", lambda w: w.publish("n2", (db(), web("web-2")), (chk("mem", "passing"),)),
     {"service/web", "catalog/services", "catalog/node/n2"}),
    ("db's tags changed", lambda w: w.publish("n2", (db(("primary",)),), (chk("mem", "passing"),)),
     {"service/db", "catalog/services", "catalog/node/n2"}),
    ("db, the last instance, removed", lambda w: w.publish("n2", (), (chk("mem", "passing"),)),
     {"service/db", "service/cache", "catalog/services", "catalog/node/n2"}),
    ("web's service check warns on n1", lambda w: w.publish("n1", (web(),), (chk("service:web", "warning", "web"),)),
     {"service/web", "health/state", "health/node/n1"}),
    ("a node check of n2 fails: every service of n2", lambda w: w.publish("n2", (db(),), (chk("mem", "critical"),)),
     {"service/db", "health/state", "health/node/n2"}),
    ("n2 fails (serfHealth critical)", lambda w: w.table.apply("member-failed", member("n2", STATUS_FAILED)),
     {"service/db", "health/state", "health/node/n2"}),
    ("n1 leaves: its node and its instances go", lambda w: w.table.apply("member-leave", member("n1", STATUS_LEFT)),
     {"catalog/nodes", "catalog/node/n1", "catalog/node/n9", "health/node/n1", "service/web", "catalog/services",
      "health/state"}),
    ("n1's gossip tags change (a catalog announcement): nothing the catalog shows",
     lambda w: w.table.apply("member-update", member("n1", tcv="7:abc")), set()),
    ("n1's address changes: the node, and every service it hosts",
     lambda w: w.table.apply("member-update", attrs.evolve(member("n1"), addr="10.0.0.7")),
     {"catalog/nodes", "catalog/node/n1", "health/node/n1", "service/web"}),
    ("a new agent node with no services", lambda w: w.join("n3"), {"catalog/nodes", "health/state"}),
    ("a registered node with a web instance", lambda w: w.register(ext("ext2")),
     {"catalog/nodes", "service/web", "catalog/services"}),
    ("the registered node's meta changes", lambda w: w.register(ext(meta="x")),
     {"catalog/nodes", "catalog/node/ext", "service/web"}),
    ("the registered node is deregistered", lambda w: w.register(drop="ext"),
     {"catalog/nodes", "catalog/node/ext", "catalog/node/n9", "service/web", "catalog/services"}),
    ("an agent node of another DC joins", lambda w: w.join("far", dc="dc2"), set()),
    ("a member that is not a Consul node joins", lambda w: w.join("serf-only", role="web"), set()),
    ("the leader changes", lambda w: w.table.set_leader("10.0.0.2:8300", ["10.0.0.2:8300"]), set()),
    ("a record republished unchanged", lambda w: w.publish("n1", (web(),), (chk("service:web", "passing", "web"),)),
     set()),
]


def _read_all(snapshot: Snapshot) -> dict[str, indexes.ReadIndex]:
    return {name: read(snapshot.indexes) for name, read in READS.items()}


@pytest.mark.parametrize(("case", "change", "moved"), CASES, ids=[c[0] for c in CASES])
def test_which_indexes_a_change_moves(case: str, change: Callable[[World], None], moved: set[str]) -> None:
    w = base()
    before = _read_all(w.table.current)
    notified: list[str] = []
    for name, answer in before.items():  # a waiter per read, as a blocking query registers it
        w.table.hub.register(answer.interests, lambda name=name: notified.append(name))
    change(w)
    snapshot = w.table.current
    after = _read_all(snapshot)
    assert {n for n in READS if after[n].index != before[n].index} == moved
    for name in READS:
        assert 0 <= before[name].index <= after[name].index <= snapshot.index, name
        if name in moved:
            assert after[name].index == snapshot.index, name
    # The hub woke exactly the readers whose index moved; a read of a missing node or service answers the last
    # extinction of any, but only its own name's return wakes it (Consul's watch on the missing key).
    assert set(notified) == moved - {"catalog/node/n9", "service/cache"}


def test_a_missing_service_answers_its_extinction_and_its_return_moves_past_it() -> None:
    w = World()
    w.join("n1")
    w.join("n2")
    w.publish("n2", (db(),), ())
    w.publish("n1", (web(),), ())
    assert indexes.service_read(w.table.current.indexes, "cache").index == w.table.current.indexes.table(
        "nodes", "services")  # never existed, nothing extinct: the tables' index, as Consul's fallback
    w.publish("n2", (), ())  # db's only instance goes
    gone = w.table.current.index
    assert indexes.service_read(w.table.current.indexes, "db").index == gone
    assert indexes.service_read(w.table.current.indexes, "cache").index == gone  # service_last_extinction
    assert indexes.service_read(w.table.current.indexes, "web").index < gone  # web did not move
    w.publish("n1", (web(), db()), ())
    assert indexes.service_read(w.table.current.indexes, "db").index == w.table.current.index > gone


def test_catalog_json_indexes_move_only_with_what_they_describe() -> None:
    """A node's, its serfHealth's and a server's ``consul`` service's Create/ModifyIndex are the catalog's, not
    the member's (which moves on every gossip tag update)."""
    w = base()
    w.table.apply("member-join", member("s1", role="consul", port="8300"))
    joined = w.table.current.index
    w.table.apply("member-update", member("s1", role="consul", port="8300", tcv="1:x"))
    w.table.apply("member-update", member("n1", tcv="9:y"))
    snap = w.table.current
    s1 = query.find_node(snap, "s1", DC)
    assert s1 is not None and (s1.create_index, s1.modify_index) == (joined, joined)
    assert snap.members["s1"].modify_index > joined  # the member moved, the node did not
    consul = query.node_services(snap, s1)[0]
    assert consul[0].id == "consul" and consul[1:] == (joined, joined)
    n1 = query.find_node(snap, "n1", DC)
    assert n1 is not None
    serf = next(c for c in query.node_checks(snap, n1) if c.check.id == "serfHealth")
    assert (serf.create_index, serf.modify_index) == (n1.create_index, n1.create_index)
    w.table.apply("member-failed", member("n1", STATUS_FAILED, tcv="9:y"))
    failed = w.table.current.index
    now = query.find_node(w.table.current, "n1", DC)
    assert now is not None and now.modify_index == n1.modify_index  # the node itself: unchanged
    serf = next(c for c in query.node_checks(w.table.current, now) if c.check.id == "serfHealth")
    assert (serf.check.status, serf.create_index, serf.modify_index) == ("critical", n1.create_index, failed)


def test_a_registration_shadowed_by_an_agent_node_moves_nothing() -> None:
    w = base()
    before = _read_all(w.table.current)
    w.register(RegisteredNode("n1", "10.9.9.1", create_index=50, modify_index=50))
    assert _read_all(w.table.current) == before
    w.register(RegisteredNode("n1", "10.9.9.2", create_index=50, modify_index=51))
    assert _read_all(w.table.current) == before


def test_apply_catalog_without_the_nodes_named_finds_them_by_comparing_the_maps() -> None:
    named, unnamed = base(), base()
    record = NodeCatalog(node="n2", version=9, services=(db(), web("web-2")))
    named.table.apply_catalog(lambda catalog, index: apply_changes(catalog, {"n2": record}, index), ["n2"])
    unnamed.table.apply_catalog(lambda catalog, index: apply_changes(catalog, {"n2": record}, index))
    assert unnamed.table.current.indexes == named.table.current.indexes
    assert _read_all(unnamed.table.current)["service/web"].index == unnamed.table.current.index
