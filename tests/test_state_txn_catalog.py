"""Transactions and catalog registrations in the servers' state machine.

Sources: txn.mdx and hashicorp/consul agent/consul/state/txn.go (txnKVS error texts), kvs.go check texts;
catalog.go ensureRegistrationTxn/ensureCheckTxn/deleteNodeTxn (anchors §2.4; issue 10)."""

from __future__ import annotations

import attrs
import pytest
from state_helpers import Driven

from agent.catalog.record import CheckRecord, ServiceRecord
from agent.server.state import commands as c
from agent.server.state import reads, views
from agent.server.state.apply import Failed
from agent.server.state.txn import TxnOutcome


@pytest.fixture
def d() -> Driven:
    return Driven()


def op(verb: str, key: str = "", **kw: object) -> c.TxnOp:
    return c.TxnOp(verb=verb, key=key, **kw)  # type: ignore[arg-type]


def test_txn_success_results(d: Driven) -> None:
    # txn.go txnKVS: results carry Value only for get/get-tree; none for deletes and check-not-exists.
    d.run(c.KVSet(key="t/a", value=b"1"))
    out = d.run(c.Txn(ops=(op("set", "t/b", value=b"2"), op("get", "t/a"), op("get-tree", "t/"),
                           op("check-not-exists", "t/c"), op("delete", "t/zz"))))  # fmt: skip
    assert out.ok
    body = views.txn_json(out)
    assert body["Errors"] is None
    assert [(r["KV"]["Key"], r["KV"]["Value"]) for r in body["Results"]] == [
        ("t/b", None), ("t/a", "MQ=="), ("t/a", "MQ=="), ("t/b", "Mg=="),
    ]  # fmt: skip
    assert body["Results"][0]["KV"]["ModifyIndex"] == 2


def test_txn_is_all_or_nothing_and_reports_every_failure(d: Driven) -> None:
    # txn.mdx: "If any operation fails, the transaction is rolled back"; txn.go collects an error per op.
    d.run(c.KVSet(key="k", value=b"1"))
    before = d.state
    out = d.run(c.Txn(ops=(op("set", "new", value=b"x"), op("cas", "k", value=b"2", index=9),
                           op("get", "nope"), op("check-index", "k", index=5),
                           op("check-session", "k", session="s"), op("check-not-exists", "k"),
                           op("delete-cas", "k", index=3), op("lock", "k", session="s"),
                           op("unlock", "k", session="s"))))  # fmt: skip
    assert isinstance(out, TxnOutcome) and not out.ok
    assert views.txn_json(out) == {"Results": None, "Errors": [
        {"OpIndex": 1, "What": 'failed to set key "k", index is stale'},
        {"OpIndex": 2, "What": 'key "nope" doesn\'t exist'},
        {"OpIndex": 3, "What": 'failed index check for key "k", current modify index 1 != 5'},
        {"OpIndex": 4, "What": 'failed session check for key "k", current session "" != "s"'},
        {"OpIndex": 5, "What": 'key "k" exists'},
        {"OpIndex": 6, "What": 'failed to delete key "k", index is stale'},
        {"OpIndex": 7, "What": 'invalid session "s"'},
        {"OpIndex": 8, "What": 'failed to unlock key "k", lock isn\'t held, or is held by another session'},
    ]}  # fmt: skip
    assert attrs.evolve(d.state, applied=0) == attrs.evolve(before, applied=0)  # every table untouched
    assert d.state.applied == before.applied + 1


def test_txn_ops_see_earlier_ops(d: Driven) -> None:
    # txn.go: ops run in order inside one state-store transaction.
    d.session("s")
    out = d.run(c.Txn(ops=(op("lock", "l", session="s", value=b"v"), op("check-session", "l", session="s"),
                           op("unlock", "l", session="s"), op("delete-tree", "l"))))  # fmt: skip
    assert out.ok and "l" not in d.state.kvs


def test_txn_limit_is_refused_at_decode() -> None:
    # issue 10: at most 64 operations (413 at the endpoint); the entry decoder refuses more too.
    data = c.encode(c.Txn(ops=tuple(op("get", f"k{i}") for i in range(c.MAX_TXN_OPS + 1))))
    with pytest.raises(c.CommandError, match="65 operations, at most 64"):
        c.decode(data)


WEB = ServiceRecord(id="web1", name="web", tags=("a",), port=80)


def register(d: Driven, **kw: object) -> object:
    kw.setdefault("node", "ext")
    kw.setdefault("address", "10.0.0.9")
    return d.run(c.CatalogRegister(**kw))  # type: ignore[arg-type]


def test_register_node_service_check(d: Driven) -> None:
    # catalog.go ensureRegistrationTxn: node, then service, then checks; a check's service name from the service.
    assert register(d, service=WEB, checks=(CheckRecord(id="c1", name="c1", status="passing", service_id="web1"),))
    node = reads.catalog_node(d.state, "EXT").value
    assert node["node"].address == "10.0.0.9" and node["services"][0].service == WEB
    assert node["checks"][0].check.service_name == "web"
    assert views.catalog_node_json(node["node"])["CreateIndex"] == 1


def test_register_unchanged_node_writes_nothing(d: Driven) -> None:
    # catalog.go: "worth seeing if we need to modify the node at all so we prevent doing a write".
    register(d)
    register(d, service=WEB)
    assert d.state.nodes["ext"].modify_index == 1 and d.state.indexes["services"] == 2
    register(d, address="10.0.0.10", skip_node_update=True)
    assert d.state.nodes["ext"].address == "10.0.0.9"


def test_register_errors(d: Driven) -> None:
    # catalog endpoint / catalog.go: ErrMissingNode, ErrMissingService texts; nothing kept.
    assert d.run(c.CatalogRegister(node="x")) == Failed("Must provide address if SkipNodeUpdate is not set")
    assert register(d, checks=(CheckRecord(id="c", name="c", service_id="nope"),)) == Failed(
        "Missing service registration"
    )
    assert not d.state.nodes


def test_critical_check_and_deregistration_invalidate_sessions(d: Driven) -> None:
    # catalog.go ensureCheckTxn (critical -> sessions destroyed), deleteCheckTxn, deleteNodeTxn.
    register(d, service=WEB, checks=(CheckRecord(id="c1", name="c1", status="passing"),))
    d.session("a", node="ext", node_checks=("c1",))
    d.session("b", node="ext", node_checks=())
    d.run(c.KVLock(key="k", session="a"))
    register(d, checks=(CheckRecord(id="c1", name="c1", status="critical"),))
    assert sorted(d.state.sessions) == ["b"] and d.state.kvs["k"].session == ""
    d.run(c.CatalogDeregister(node="ext", service_id="web1"))
    assert not d.state.services
    d.run(c.CatalogDeregister(node="Ext"))
    assert not d.state.nodes and not d.state.checks and not d.state.sessions


def test_per_service_index_and_extinction(d: Driven) -> None:
    # catalog.go maxIndexForService: the name's own index "service.<name>"; after its last instance goes,
    # a read of the name reports service_last_extinction (so its blocking readers see the removal).
    register(d, service=WEB)  # 1
    register(d, node="other", service=ServiceRecord(id="db1", name="db"))  # 2
    assert reads.catalog_service(d.state, "WEB").index == 1
    register(d, node="other", service=ServiceRecord(id="db1", name="db", port=5432))  # 3: db only
    assert reads.catalog_service(d.state, "web").index == 1
    assert reads.catalog_service(d.state, "db").index == 3
    d.run(c.CatalogDeregister(node="ext", service_id="web1"))  # 4
    gone = reads.catalog_service(d.state, "web")
    assert gone.value == () and gone.index == 4
    assert [n.node for n in reads.catalog_nodes(d.state).value] == ["ext", "other"]
    assert reads.catalog_nodes(d.state).index == 2


def test_txn_lock_inside_lock_delay_fails_before_running(d: Driven) -> None:
    # txn_endpoint.go preCheck: kvsPreApply's lock-delay check -> "failed to lock key %q due to lock delay";
    # any pre-check error ends the transaction before any op runs.
    d.session("s1", lock_delay=10 * 10**9)
    d.session("s2")
    d.run(c.KVLock(key="k", session="s1"))
    d.run(c.SessionDestroy(id="s1"), now=100 * 10**9)
    ops = (op("set", "x", value=b"1"), op("lock", "k", session="s2"), op("get", "nope"))
    out = d.run(c.Txn(ops=ops), now=105 * 10**9)
    assert out.errors == ((1, 'failed to lock key "k" due to lock delay'),)
    assert "x" not in d.state.kvs
    assert d.run(c.Txn(ops=ops[:2]), now=110 * 10**9).ok


def test_error_texts_quote_keys_as_go_does(d: Driven) -> None:
    # txn.go formats keys with %q (strconv.Quote): quotes and control characters escaped, invalid bytes \xNN.
    out = d.run(c.Txn(ops=(op("get", 'a"b\n'), op("get", "k\udcff"), op("get", "é"))))
    assert [what for _, what in out.errors] == [
        'key "a\\"b\\n" doesn\'t exist',
        'key "k\\xff" doesn\'t exist',
        'key "é" doesn\'t exist',
    ]
