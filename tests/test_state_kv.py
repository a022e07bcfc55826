"""Consul's KV, lock and session rules in the servers' state machine (agent/server/state), one rule per test.

Sources: wave2-anchors §2.1-2.2 (kv.mdx, session.mdx) and hashicorp/consul agent/consul/state/kvs.go,
kvs_oss.go, session.go, kvs_endpoint.go (read through the code index; cited per test)."""

from __future__ import annotations

import pytest
from state_helpers import SEC, Driven

from agent.server.state import commands as c
from agent.server.state import reads, views
from agent.server.state.apply import Failed
from agent.server.state.tables import KVEntry


@pytest.fixture
def d() -> Driven:
    return Driven()


def entry(d: Driven, key: str) -> KVEntry | None:
    return d.state.kvs.get(key)


# ------------------------------------------------------------------ set / cas / delete


def test_set_keeps_create_index_and_moves_modify_index(d: Driven) -> None:
    # kvs.go kvsSetTxn: CreateIndex from the existing entry, ModifyIndex = the apply's index.
    assert d.run(c.KVSet(key="k", value=b"1")) is True
    assert d.run(c.KVSet(key="k", value=b"2", flags=7)) is True
    e = entry(d, "k")
    assert (e.create_index, e.modify_index, e.value, e.flags) == (1, 2, b"2", 7)


def test_identical_set_writes_nothing(d: Driven) -> None:
    # kvs.go kvsSetTxn: "Skip further writing in the state store if the entry is not actually changed".
    d.run(c.KVSet(key="k", value=b"1"))
    d.run(c.KVSet(key="k", value=b"1"))
    assert entry(d, "k").modify_index == 1
    assert d.state.indexes["kvs"] == 1


def test_cas_zero_only_creates(d: Driven) -> None:
    # kv.mdx / anchors §2.1: cas=0 is create-only; py-consul test_kv: put(cas=0) True on a missing key.
    assert d.run(c.KVCas(key="k", index=0, value=b"a")) is True
    assert d.run(c.KVCas(key="k", index=0, value=b"b")) is False
    assert entry(d, "k").value == b"a"


def test_cas_needs_the_current_modify_index(d: Driven) -> None:
    # anchors §2.1: cas=n only if ModifyIndex == n; py-consul: put(cas=50) on a missing key -> False.
    assert d.run(c.KVCas(key="missing", index=50, value=b"x")) is False
    d.run(c.KVSet(key="k", value=b"a"))
    assert d.run(c.KVCas(key="k", index=99, value=b"b")) is False
    assert d.run(c.KVCas(key="k", index=entry(d, "k").modify_index, value=b"b")) is True
    assert entry(d, "k").value == b"b"


def test_delete_leaves_a_tombstone_and_prefix_index_does_not_slide_back(d: Driven) -> None:
    # kvs_oss.go / kvs.go kvsListTxn: the graveyard's max index under the prefix counts.
    d.run(c.KVSet(key="p/a", value=b"1"))
    d.run(c.KVSet(key="p/b", value=b"1"))
    d.run(c.KVDelete(key="p/b"))
    assert d.state.tombstones["p/b"] == 3
    assert reads.kv_list(d.state, "p/").index == 3
    assert [e.key for e in reads.kv_list(d.state, "p/").value] == ["p/a"]


def test_delete_of_missing_key_writes_nothing(d: Driven) -> None:
    # kvs.go kvsDeleteTxn: no entry, return nil.
    d.run(c.KVDelete(key="nope"))
    assert "kvs" not in d.state.indexes and not d.state.tombstones


def test_delete_cas(d: Driven) -> None:
    # kvs.go kvsDeleteCASTxn: stale index -> false; a key already absent -> true.
    d.run(c.KVSet(key="k", value=b"1"))
    assert d.run(c.KVDeleteCas(key="k", index=7)) is False
    assert "k" in d.state.kvs
    assert d.run(c.KVDeleteCas(key="k", index=1)) is True
    assert "k" not in d.state.kvs
    assert d.run(c.KVDeleteCas(key="k", index=1)) is True


def test_delete_tree_one_tombstone_for_the_prefix_none_for_everything(d: Driven) -> None:
    # kvs_oss.go kvsDeleteTreeTxn: one tombstone for the prefix; "don't insert a tombstone if the entire tree
    # is deleted"; nothing deleted, no write.
    for k in ("a/1", "a/2", "b/1"):
        d.run(c.KVSet(key=k, value=b"x"))
    d.run(c.KVDeleteTree(prefix="zzz/"))
    assert d.state.indexes["kvs"] == 3
    d.run(c.KVDeleteTree(prefix="a/"))
    assert sorted(d.state.kvs) == ["b/1"] and dict(d.state.tombstones) == {"a/": 5}
    d.run(c.KVDeleteTree(prefix=""))
    assert not d.state.kvs and dict(d.state.tombstones) == {"a/": 5}
    assert d.state.indexes["kvs"] == 6


def test_tombstone_reap(d: Driven) -> None:
    # kvs.go ReapTombstones: tombstones at or below the index go.
    d.run(c.KVSet(key="a", value=b"x"))
    d.run(c.KVDelete(key="a"))
    d.run(c.KVSet(key="b", value=b"x"))
    d.run(c.KVDelete(key="b"))
    assert d.run(c.TombstoneReap(index=2)) == 1
    assert dict(d.state.tombstones) == {"b": 4}
    assert d.state.indexes["tombstones"] == 4  # graveyard.go ReapTxn moves no index


# ------------------------------------------------------------------ reads and their indexes


def test_get_index_is_modify_index_or_the_tables_index_when_missing(d: Driven) -> None:
    # kvs_endpoint.go Get: an entry -> its ModifyIndex; none -> the kvs/tombstones index, never 0.
    assert reads.kv_get(d.state, "x").index == 1
    d.run(c.KVSet(key="a", value=b"1"))
    d.run(c.KVSet(key="b", value=b"1"))
    assert reads.kv_get(d.state, "a").index == 1
    assert reads.kv_get(d.state, "x").index == 2
    d.run(c.KVDelete(key="b"))
    assert reads.kv_get(d.state, "x").index == 3


def test_list_index_is_the_highest_under_the_prefix(d: Driven) -> None:
    # kvs.go kvsListTxn: max ModifyIndex under the prefix (tombstones too); empty result -> tables' index.
    d.run(c.KVSet(key="a/1", value=b"1"))
    d.run(c.KVSet(key="b/1", value=b"1"))
    assert reads.kv_list(d.state, "a/").index == 1
    assert reads.kv_list(d.state, "c/").index == 2
    assert reads.kv_list(d.state, "").index == 2


def test_keys_with_separator_roll_up(d: Driven) -> None:
    # py-consul test_kv (anchors §2.5): keys=True, separator="/" on "base/" -> ["base/base/", "base/foo"].
    for k in ("base/foo", "base/base/foo", "base/base/bar"):
        d.run(c.KVSet(key=k, value=b"1"))
    assert reads.kv_keys(d.state, "base/", "/").value == ("base/base/", "base/foo")
    assert reads.kv_keys(d.state, "base/").value == ("base/base/bar", "base/base/foo", "base/foo")


def test_entry_json(d: Driven) -> None:
    # kv.mdx: LockIndex, Key, Flags, Value (base64 or null), Session only when set, CreateIndex, ModifyIndex.
    d.run(c.KVSet(key="k", value=b"hello", flags=42))
    assert views.kv_entry_json(entry(d, "k")) == {
        "LockIndex": 0, "Key": "k", "Flags": 42, "Value": "aGVsbG8=", "CreateIndex": 1, "ModifyIndex": 1,
    }  # fmt: skip
    d.run(c.KVSet(key="e", value=b""))
    assert views.kv_entry_json(entry(d, "e"))["Value"] is None  # py-consul: an empty value reads back as None
    d.session("s1")
    d.run(c.KVLock(key="k", session="s1", value=b"hello", flags=42))
    assert list(views.kv_entry_json(entry(d, "k"))) == [
        "LockIndex", "Key", "Flags", "Value", "Session", "CreateIndex", "ModifyIndex",
    ]  # fmt: skip


# ------------------------------------------------------------------ locks


def test_acquire_release_as_py_consul_expects(d: Driven) -> None:
    # anchors §2.5 (py-consul test_kv acquire/release sequence) and kvs.go kvsLockTxn/kvsUnlockTxn.
    d.session("s1")
    d.session("s2")
    assert d.run(c.KVLock(key="k", session="s1", value=b"v")) is True
    assert entry(d, "k").lock_index == 1 and entry(d, "k").session == "s1"
    assert d.run(c.KVLock(key="k", session="s2", value=b"v")) is False
    assert d.run(c.KVLock(key="k", session="s1", value=b"w")) is True
    assert entry(d, "k").lock_index == 1 and entry(d, "k").value == b"w"  # the holder re-acquires: no increment
    assert d.run(c.KVUnlock(key="k", session="foo")) is False
    assert d.run(c.KVUnlock(key="k", session="s2")) is False
    assert d.run(c.KVUnlock(key="k", session="s1", value=b"done")) is True
    e = entry(d, "k")
    assert (e.session, e.lock_index, e.value) == ("", 1, b"done")  # release keeps LockIndex, writes the value
    assert d.run(c.KVLock(key="k", session="s2")) is True
    assert entry(d, "k").lock_index == 2


def test_plain_put_overwrites_a_locked_key_and_keeps_the_session(d: Driven) -> None:
    # anchors §2.1: "a plain PUT without acquire still overwrites a locked key"; kvsSetTxn keeps the session.
    d.session("s1")
    d.run(c.KVLock(key="k", session="s1", value=b"v"))
    assert d.run(c.KVSet(key="k", value=b"other")) is True
    assert (entry(d, "k").value, entry(d, "k").session) == (b"other", "s1")


def test_lock_with_unknown_or_missing_session_is_an_error(d: Driven) -> None:
    # kvs.go kvsLockTxn: "missing session" / invalid session %#v; an error, not false (py-consul: acquire="foo").
    assert d.run(c.KVLock(key="k", session="foo")) == Failed('invalid session "foo"')
    assert d.run(c.KVLock(key="k", session="")) == Failed("missing session")
    assert "k" not in d.state.kvs


def test_destroy_release_behavior_releases_and_sets_lock_delay(d: Driven) -> None:
    # session.go deleteSessionTxn: release clears Session (ModifyIndex bumped), lock-delay from leader time.
    d.session("s1", lock_delay=15 * SEC)
    d.run(c.KVLock(key="k", session="s1", value=b"v"))
    d.run(c.SessionDestroy(id="s1"), now=2_000 * SEC)
    e = entry(d, "k")
    assert e.session == "" and e.modify_index == 3 and e.lock_index == 1
    assert d.state.lock_delays["k"] == 2_015 * SEC
    assert "s1" not in d.state.sessions


def test_destroy_delete_behavior_deletes_held_keys(d: Driven) -> None:
    # anchors §2.5: a "delete" session's destroy deletes the held key (py-consul test_session).
    d.session("s1", behavior="delete")
    d.run(c.KVLock(key="k", session="s1", value=b"v"))
    d.run(c.KVSet(key="other", value=b"v"))
    d.run(c.SessionDestroy(id="s1"))
    assert "k" not in d.state.kvs and "other" in d.state.kvs
    assert d.state.tombstones["k"] == 4


def test_lock_delay_blocks_acquire_until_it_passes(d: Driven) -> None:
    # kvs_endpoint.go: "Rejecting lock ... due to lock-delay" -> false; decided with the entry's leader time.
    d.session("s1", lock_delay=10 * SEC)
    d.session("s2")
    d.run(c.KVLock(key="k", session="s1"))
    d.run(c.SessionDestroy(id="s1"), now=100 * SEC)
    assert d.run(c.KVLock(key="k", session="s2"), now=109 * SEC) is False
    assert entry(d, "k").session == ""
    assert d.run(c.KVLock(key="k", session="s2"), now=110 * SEC) is True


def test_lock_delay_is_capped_at_60s(d: Driven) -> None:
    # session.go: "Enforce the max lock delay" (structs.MaxLockDelay = 60s).
    d.session("s1", lock_delay=600 * SEC)
    d.run(c.KVLock(key="k", session="s1"))
    d.run(c.SessionDestroy(id="s1"), now=100 * SEC)
    assert d.state.lock_delays["k"] == 160 * SEC


def test_destroy_unknown_session_is_a_noop(d: Driven) -> None:
    # session.go deleteSessionTxn: no session, return nil; session.mdx: destroy is idempotent (true).
    assert d.run(c.SessionDestroy(id="nope")) is True
    assert "sessions" not in d.state.indexes


def test_session_create_rules(d: Driven) -> None:
    # session.go sessionCreateTxn: Behavior must be release|delete; indexes stamped; session.mdx JSON.
    assert d.run(c.SessionCreate(id="s", node="n1", behavior="bogus")) == Failed("Invalid session behavior: bogus")
    sid = d.session("s1", name="x", lock_delay=15 * SEC, ttl="30s", node_checks=("serfHealth",))
    assert sid == "s1"
    assert views.session_json(d.state.sessions["s1"]) == {
        "ID": "s1", "Name": "x", "Node": "n1", "LockDelay": 15_000_000_000, "Behavior": "release", "TTL": "30s",
        "NodeChecks": ["serfHealth"], "ServiceChecks": None, "CreateIndex": 2, "ModifyIndex": 2,
    }  # fmt: skip
    assert d.run(c.SessionCreate(id="s1", node="n1")) == Failed("Session ID 's1' already exists")


def test_check_critical_invalidates_bound_sessions_only(d: Driven) -> None:
    # session docs (anchors §2.2): a bound check turning critical invalidates the session; serfHealth by default.
    d.session("a", node="n1", node_checks=("serfHealth",))
    d.session("b", node="n1", node_checks=("web",))
    d.session("c", node="N2", node_checks=("serfHealth",))
    d.run(c.KVLock(key="k", session="a"))
    assert d.run(c.InvalidateCheck(node="N1", check_id="SERFHEALTH")) == ("a",)
    assert sorted(d.state.sessions) == ["b", "c"]
    assert entry(d, "k").session == ""
    assert ("n1", "serfhealth") not in d.state.session_checks
    assert d.run(c.InvalidateNode(node="n2")) == ("c",)
    assert sorted(d.state.sessions) == ["b"]


def test_session_reads(d: Driven) -> None:
    # session.go SessionGet/SessionList/NodeSessions: the sessions table's index.
    d.session("b", node="n1")
    d.session("a", node="n2")
    assert reads.session_get(d.state, "a").value.node == "n2"
    assert reads.session_get(d.state, "zz").value is None and reads.session_get(d.state, "zz").index == 2
    assert [s.id for s in reads.session_list(d.state).value] == ["a", "b"]
    assert [s.id for s in reads.node_sessions(d.state, "N1").value] == ["b"]
