"""Entry encoding of the state commands: exact round trips, precise errors, and a bad entry changes nothing."""

from __future__ import annotations

import re

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st
from state_helpers import Driven

from agent.catalog.record import CheckRecord, ServiceRecord
from agent.server.state import commands as c
from agent.server.state.apply import Failed
from agent.server.state.codec import SnapshotError, decode_state, encode_state
from protocol.raft.types import Entry, EntryKind

text = st.text(max_size=8)
u64 = st.integers(0, 2**64 - 1)
blob = st.binary(max_size=16)
ops = st.builds(c.TxnOp, verb=st.sampled_from(sorted(c.TXN_VERBS)), key=text, value=blob, flags=u64, index=u64,
                session=text)  # fmt: skip
service = st.builds(ServiceRecord, id=st.text(min_size=1, max_size=5), name=st.text(min_size=1, max_size=5),
                    tags=st.lists(text, max_size=2).map(tuple), port=st.integers(0, 65535))  # fmt: skip
check = st.builds(CheckRecord, id=st.text(min_size=1, max_size=5), name=st.text(min_size=1, max_size=5),
                  status=st.sampled_from(["passing", "warning", "critical"]))  # fmt: skip
commands = st.one_of(
    st.builds(c.KVSet, key=text, value=blob, flags=u64, now=u64),
    st.builds(c.KVCas, key=text, index=u64, value=blob, flags=u64, now=u64),
    st.builds(c.KVLock, key=text, session=text, value=blob, flags=u64, now=u64),
    st.builds(c.KVUnlock, key=text, session=text, value=blob, now=u64),
    st.builds(c.KVDelete, key=text),
    st.builds(c.KVDeleteCas, key=text, index=u64),
    st.builds(c.KVDeleteTree, prefix=text),
    st.builds(
        c.SessionCreate,
        id=text,
        node=text,
        name=text,
        lock_delay=u64,
        behavior=text,
        ttl=text,
        node_checks=st.lists(text, max_size=2).map(tuple),
        service_checks=st.lists(st.tuples(text, text), max_size=2).map(tuple),
        checks=st.lists(text, max_size=2).map(tuple),
    ),
    st.builds(c.SessionDestroy, id=text, now=u64),
    st.builds(c.InvalidateCheck, node=text, check_id=text),
    st.builds(c.InvalidateNode, node=text),
    st.builds(c.TombstoneReap, index=u64),
    st.builds(c.Txn, ops=st.lists(ops, max_size=4).map(tuple)),
    st.builds(
        c.CatalogRegister,
        node=text,
        address=text,
        id=text,
        datacenter=text,
        tagged_addresses=st.dictionaries(text, text, max_size=2),
        node_meta=st.dictionaries(text, text, max_size=2),
        service=st.none() | service,
        checks=st.lists(check, max_size=2).map(tuple),
        skip_node_update=st.booleans(),
    ),
    st.builds(c.CatalogDeregister, node=text, service_id=text, check_id=text),
    st.builds(c.ACLBootstrap, accessor_id=text, secret_id=text, description=text, reset_index=u64, now=u64),
    st.builds(
        c.ACLTokenSet,
        accessor_id=text,
        secret_id=text,
        description=text,
        policies=st.lists(st.tuples(text, text), max_size=2).map(tuple),
        roles=st.lists(st.tuples(text, text), max_size=2).map(tuple),
        service_identities=st.lists(st.tuples(text, st.lists(text, max_size=2).map(tuple)), max_size=2).map(tuple),
        node_identities=st.lists(st.tuples(text, text), max_size=2).map(tuple),
        local=st.booleans(),
        expiration_time=u64,
        expiration_ttl=u64,
        create=st.booleans(),
    ),
    st.builds(c.ACLTokenDelete, accessor_id=text),
    st.builds(
        c.ACLPolicySet,
        id=text,
        name=text,
        description=text,
        rules=text,
        datacenters=st.lists(text, max_size=2).map(tuple),
        create=st.booleans(),
    ),
    st.builds(c.ACLPolicyDelete, id=text),
    st.builds(
        c.ACLRoleSet,
        id=text,
        name=text,
        description=text,
        policies=st.lists(st.tuples(text, text), max_size=2).map(tuple),
        node_identities=st.lists(st.tuples(text, text), max_size=2).map(tuple),
        create=st.booleans(),
    ),
    st.builds(c.ACLRoleDelete, id=text),
)


@given(commands)
def test_round_trip_exact(cmd: c.Command) -> None:
    data = c.encode(cmd)
    assert c.decode(data) == cmd
    assert c.encode(c.decode(data)) == data


def test_defaults_stay_off_the_wire() -> None:
    assert msgpack.unpackb(c.encode(c.KVSet(key="k", now=5))) == [1, "kv-set", 5, {"k": "k"}]


def raw(*parts: object) -> bytes:
    return msgpack.packb(list(parts), use_bin_type=True)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xc1", "state command: not msgpack"),
        (raw(1, "kv-set", 0), r"expected \[format, kind, now, body\]"),
        (raw(2, "kv-set", 0, {"k": "a"}), "format 2 is not 1"),
        (raw(1, "kv-frob", 0, {}), "unknown kind 'kv-frob'"),
        (raw(1, "kv-set", -1, {"k": "a"}), r"kv-set.now: -1 is out of range"),
        (raw(1, "kv-set", 0, {}), "kv-set: missing field 'key'"),
        (raw(1, "kv-set", 0, {"k": 3}), "kv-set.key: expected a string, got int"),
        (raw(1, "kv-set", 0, {"k": "a", "v": "text"}), "kv-set.value: expected bytes, got str"),
        (raw(1, "kv-set", 0, {"k": "a", "zz": 1}), "kv-set: unknown field 'zz'"),
        (raw(1, "kv-cas", 0, {"k": "a", "i": True}), "kv-cas.index: expected an unsigned integer, got bool"),
        (raw(1, "txn", 0, {"o": [{"vb": "frob"}]}), r"txn.ops\[0\].verb: unknown KV verb 'frob'"),
        (raw(1, "txn", 0, {"o": [{"k": "a"}]}), r"txn.ops\[0\]: missing field 'verb'"),
        (raw(1, "session-create", 0, {"id": "s", "n": "n", "sc": [["a"]]}), r"service_checks\[0\]: expected"),
        (raw(1, "catalog-register", 0, {"n": "x", "s": {"i": "a"}}), "catalog-register.service: .*missing name"),
        (raw(1, "acl-token-set", 0, {}), "acl-token-set: missing field 'accessor_id'"),
        (raw(1, "acl-token-set", 0, {"a": "x", "p": [["id"]]}), r"acl-token-set.policies\[0\]: expected a pair"),
        (raw(1, "acl-token-set", 0, {"a": "x", "si": [["web", "dc1"]]}),
         r"acl-token-set.service_identities\[0\].datacenters: expected a list, got str"),
        (raw(1, "acl-policy-set", 0, {"id": "p", "n": "n", "c": 1}), "acl-policy-set.create: expected a bool"),
        (raw(1, "acl-bootstrap", 0, {"a": "x", "s": "y", "r": -2}), r"acl-bootstrap.reset_index: -2 is out of range"),
    ],
)
def test_bad_bytes_precise_error_and_store_unchanged(data: bytes, message: str) -> None:
    with pytest.raises(c.CommandError, match=message):
        c.decode(data)
    d = Driven()
    d.run(c.KVSet(key="k", value=b"v"))
    before = d.state
    result = d.store.apply(Entry(index=2, term=1, data=data))
    assert isinstance(result, Failed) and re.search(message, result.error)
    assert d.state.kvs is before.kvs and d.state.indexes is before.indexes and d.state.applied == 2


def test_non_command_entries_only_move_applied() -> None:
    d = Driven()
    assert d.store.apply(Entry(index=1, term=1, data=b"")) is None  # a leader's no-op
    assert d.store.apply(Entry(index=2, term=1, kind=EntryKind.CONF_CHANGE, data=b"\x90")) is None
    assert d.state.applied == 2 and not d.state.indexes
    d.index = 2
    d.run(c.KVSet(key="k"))
    assert d.store.apply(Entry(index=3, term=1, data=c.encode(c.KVDelete(key="k")))) is None  # replayed: ignored
    assert "k" in d.state.kvs


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"\xc1", "not msgpack"), (raw(1, 2), "11 parts"), (raw(9, 0, [], [], [], [], [], [], [], [], []), "format 9"),
     (raw(1, 0, [], [], [["k"] * 9], [], [], [], [], [], []), r"kvs\[0\]")],
)  # fmt: skip
def test_bad_snapshot_bytes(data: bytes, message: str) -> None:
    d = Driven()
    d.run(c.KVSet(key="k"))
    before = d.state
    with pytest.raises(SnapshotError, match=message):
        d.store.restore(data)
    assert d.state is before
    assert decode_state(encode_state(before)) == before


def test_a_snapshot_streamed_row_by_row_is_the_bytes_of_one_packb_of_every_table() -> None:
    """encode_state packs a row at a time (so a worker thread's encoding does not hold the GIL for long); the
    bytes are still those of packing the whole list at once, which servers compare, and decode to the state."""
    d = Driven()
    for i in range(40):
        d.run(c.KVSet(key=f"k/{39 - i:02d}", value=b"v%d" % i, flags=i))
    d.run(c.KVDelete(key="k/07"))
    state = d.state
    data = encode_state(state)
    parts = msgpack.unpackb(data, raw=False, strict_map_key=False)
    assert len(parts) == 14 and len(parts[4]) == 39 and parts[5]  # kvs and a tombstone
    assert [row[0] for row in parts[4]] == sorted(state.kvs.keys())
    assert data == msgpack.packb(parts, use_bin_type=True)
    assert decode_state(data) == state
