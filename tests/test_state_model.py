"""The state machine against a plain model (hypothesis stateful), determinism, and snapshot round trips.

The model re-states Consul's KV/lock/session rules in the simplest form (dicts, no indexes beyond the
entries'): kvs.go kvsSetTxn/kvsSetCASTxn/kvsLockTxn/kvsUnlockTxn/kvsDeleteCASTxn/kvsDeleteTreeTxn and
session.go deleteSessionTxn, as cited in test_state_kv.py.  After every step the store's entries, sessions,
lock-delays and per-key read indexes must equal the model's; a twin store fed the same entries must produce
the same snapshot bytes; at random points the store is replaced by one restored from its snapshot."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from agent.server.state import commands as c
from agent.server.state import reads
from agent.server.state.apply import Failed
from agent.server.state.store import StateStore
from protocol.raft.types import Entry

SEC = 10**9
KEYS = ("a", "a/b", "a/c", "b", "b/a")
PREFIXES = ("", "a", "a/", "b/", "z")
SESSIONS = ("s1", "s2", "s3")
values = st.binary(max_size=3)
flags = st.integers(0, 3)
keys = st.sampled_from(KEYS)
sids = st.sampled_from(SESSIONS)


@attrs.define
class MEntry:
    value: bytes
    flags: int
    session: str
    lock_index: int
    create: int
    modify: int


class Model:
    def __init__(self) -> None:
        self.kvs: dict[str, MEntry] = {}
        self.sessions: dict[str, tuple[str, int]] = {}  # id -> (behavior, lock delay ns)
        self.delays: dict[str, int] = {}

    def _write(self, idx: int, key: str, value: bytes, fl: int, session: str, lock_index: int) -> None:
        old = self.kvs.get(key)
        if old is not None and (old.value, old.flags, old.session, old.lock_index) == (value, fl, session, lock_index):
            return
        create = old.create if old else idx
        self.kvs[key] = MEntry(value, fl, session, lock_index, create, idx)

    def set(self, idx: int, key: str, value: bytes, fl: int) -> bool:
        old = self.kvs.get(key)
        self._write(idx, key, value, fl, old.session if old else "", 0)
        return True

    def cas(self, idx: int, key: str, index: int, value: bytes, fl: int) -> bool:
        old = self.kvs.get(key)
        if (index == 0 and old is not None) or (index != 0 and (old is None or old.modify != index)):
            return False
        return self.set(idx, key, value, fl)

    def lock(self, idx: int, now: int, key: str, sid: str, value: bytes, fl: int) -> Any:
        if now < self.delays.get(key, 0):
            return False
        if sid not in self.sessions:
            return Failed(f'invalid session "{sid}"')
        old = self.kvs.get(key)
        if old is None:
            li = 1
        elif old.session == sid:
            li = old.lock_index
        elif old.session:
            return False
        else:
            li = old.lock_index + 1
        self._write(idx, key, value, fl, sid, li)
        return True

    def unlock(self, idx: int, key: str, sid: str, value: bytes, fl: int) -> bool:
        old = self.kvs.get(key)
        if old is None or old.session != sid:
            return False
        self._write(idx, key, value, fl, "", old.lock_index)
        return True

    def delete_cas(self, key: str, index: int) -> bool:
        old = self.kvs.get(key)
        if old is None:
            return True
        if old.modify != index:
            return False
        del self.kvs[key]
        return True

    def destroy(self, idx: int, now: int, sid: str) -> None:
        if sid not in self.sessions:
            return
        behavior, delay = self.sessions.pop(sid)
        delay = min(delay, 60 * SEC)
        for key in sorted(k for k, e in self.kvs.items() if e.session == sid):
            if behavior == "delete":
                del self.kvs[key]
            else:
                e = self.kvs[key]
                self._write(idx, key, e.value, e.flags, "", e.lock_index)
            if delay > 0:
                self.delays = {k: v for k, v in self.delays.items() if v > now}
                self.delays[key] = now + delay


class StateMachineVsModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.store = StateStore()
        self.twin = StateStore()
        self.model = Model()
        self.index = 0
        self.now = 1_000 * SEC

    def apply(self, cmd: c.Command) -> Any:
        self.index += 1
        data = c.encode(attrs.evolve(cmd, now=self.now))
        entry = Entry(index=self.index, term=1, data=data)
        result = self.store.apply(entry)
        assert self.twin.apply(entry) == result
        return result

    @rule(step=st.integers(0, 30 * SEC))
    def tick(self, step: int) -> None:
        self.now += step

    @rule(key=keys, value=values, fl=flags)
    def kv_set(self, key: str, value: bytes, fl: int) -> None:
        assert self.apply(c.KVSet(key=key, value=value, flags=fl)) is True
        self.model.set(self.index, key, value, fl)

    @rule(key=keys, value=values, fl=flags, current=st.booleans(), other=st.integers(0, 40))
    def kv_cas(self, key: str, value: bytes, fl: int, current: bool, other: int) -> None:
        old = self.model.kvs.get(key)
        index = old.modify if current and old else other
        got = self.apply(c.KVCas(key=key, index=index, value=value, flags=fl))
        assert got == self.model.cas(self.index, key, index, value, fl)

    @rule(key=keys, sid=sids, value=values, fl=flags)
    def kv_lock(self, key: str, sid: str, value: bytes, fl: int) -> None:
        got = self.apply(c.KVLock(key=key, session=sid, value=value, flags=fl))
        assert got == self.model.lock(self.index, self.now, key, sid, value, fl)

    @rule(key=keys, sid=sids, value=values, fl=flags)
    def kv_unlock(self, key: str, sid: str, value: bytes, fl: int) -> None:
        got = self.apply(c.KVUnlock(key=key, session=sid, value=value, flags=fl))
        assert got == self.model.unlock(self.index, key, sid, value, fl)

    @rule(key=keys)
    def kv_delete(self, key: str) -> None:
        self.apply(c.KVDelete(key=key))
        self.model.kvs.pop(key, None)

    @rule(key=keys, current=st.booleans(), other=st.integers(0, 40))
    def kv_delete_cas(self, key: str, current: bool, other: int) -> None:
        old = self.model.kvs.get(key)
        index = old.modify if current and old else other
        assert self.apply(c.KVDeleteCas(key=key, index=index)) == self.model.delete_cas(key, index)

    @rule(prefix=st.sampled_from(PREFIXES))
    def kv_delete_tree(self, prefix: str) -> None:
        self.apply(c.KVDeleteTree(prefix=prefix))
        for key in [k for k in self.model.kvs if k.startswith(prefix)]:
            del self.model.kvs[key]

    @rule(sid=sids, behavior=st.sampled_from(["release", "delete"]), delay=st.sampled_from([0, 5 * SEC, 90 * SEC]))
    def session_create(self, sid: str, behavior: str, delay: int) -> None:
        got = self.apply(c.SessionCreate(id=sid, node="n1", behavior=behavior, lock_delay=delay))
        if sid in self.model.sessions:
            assert isinstance(got, Failed)
        else:
            assert got == sid
            self.model.sessions[sid] = (behavior, delay)

    @rule(sid=sids)
    def session_destroy(self, sid: str) -> None:
        assert self.apply(c.SessionDestroy(id=sid)) is True
        self.model.destroy(self.index, self.now, sid)

    @rule(key=keys, value=values, fail=st.booleans())
    def txn_set_then_check(self, key: str, value: bytes, fail: bool) -> None:
        # all-or-nothing: a set followed by a failing check-not-exists leaves nothing behind.
        ops = (c.TxnOp(verb="set", key=key, value=value), c.TxnOp(verb="check-not-exists", key=key if fail else "zz"))
        out = self.apply(c.Txn(ops=ops))
        assert out.ok is not fail
        if not fail:
            self.model.set(self.index, key, value, 0)

    @rule()
    def snapshot_round_trip(self) -> None:
        data = self.store.snapshot()
        fresh = StateStore()
        fresh.restore(data)
        assert fresh.current == self.store.current
        assert fresh.snapshot() == data
        self.store = fresh

    @invariant()
    def matches_model(self) -> None:
        state = self.store.current
        got = {
            k: MEntry(e.value, e.flags, e.session, e.lock_index, e.create_index, e.modify_index)
            for k, e in state.kvs.items()
        }
        assert got == self.model.kvs
        assert {s: (v.behavior, v.lock_delay) for s, v in state.sessions.items()} == self.model.sessions
        assert {k: v for k, v in state.lock_delays.items() if v > self.now} == {
            k: v for k, v in self.model.delays.items() if v > self.now
        }
        assert state.kv_keys == tuple(sorted(state.kvs))
        holders: dict[str, set[str]] = {}
        for key, e in state.kvs.items():
            if e.session:
                holders.setdefault(e.session, set()).add(key)
        assert dict(state.held) == {s: frozenset(keys) for s, keys in holders.items()}
        for prefix in PREFIXES:
            assert [e.key for e in reads.kv_list(state, prefix).value] == sorted(
                k for k in self.model.kvs if k.startswith(prefix)
            )
        for key in KEYS:
            read = reads.kv_get(state, key)
            entry = self.model.kvs.get(key)
            if entry is not None:
                assert read.index == entry.modify
            else:
                assert read.index == max(1, state.table_index("kvs", "tombstones"))

    @invariant()
    def twin_is_identical(self) -> None:
        assert self.twin.snapshot() == self.store.snapshot()


StateMachineVsModel.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestStateMachineVsModel = StateMachineVsModel.TestCase


# ------------------------------------------------------------------ determinism across processes

_RUNNER = """
import hashlib, sys
sys.path.insert(0, sys.argv[1])
from agent.server.state.store import StateStore
from protocol.raft.types import Entry
import msgpack
entries = msgpack.unpackb(sys.stdin.buffer.read())
store = StateStore()
for i, data in enumerate(entries, 1):
    store.apply(Entry(index=i, term=1, data=data))
print(hashlib.sha256(store.snapshot()).hexdigest())
"""


def random_log(seed: int, n: int) -> list[bytes]:
    rng = random.Random(seed)
    out: list[bytes] = []
    now = 1_000 * SEC
    for _ in range(n):
        now += rng.randrange(0, 20 * SEC)
        key = rng.choice(KEYS) + rng.choice(["", "/x", "/y/z"])
        sid = rng.choice(SESSIONS)
        cmd = rng.choice([
            c.KVSet(key=key, value=rng.randbytes(3), now=now),
            c.KVCas(key=key, index=rng.randrange(0, 30), value=b"c", now=now),
            c.KVLock(key=key, session=sid, value=b"l", now=now),
            c.KVUnlock(key=key, session=sid, now=now),
            c.KVDelete(key=key, now=now),
            c.KVDeleteTree(prefix=rng.choice(PREFIXES), now=now),
            c.SessionCreate(id=sid, node=rng.choice(["n1", "N2"]), lock_delay=5 * SEC,
                            behavior=rng.choice(["release", "delete"]), node_checks=("serfHealth",), now=now),
            c.SessionDestroy(id=sid, now=now),
            c.InvalidateCheck(node="n2", check_id="serfHealth", now=now),
            c.Txn(ops=(c.TxnOp(verb="set", key=key, value=b"t"), c.TxnOp(verb="get-tree", key="a")), now=now),
        ])  # fmt: skip
        out.append(c.encode(cmd))
    return out


def test_same_log_same_snapshot_bytes_in_processes_with_different_hash_seeds() -> None:
    import msgpack

    log = msgpack.packb(random_log(7, 600))
    root = str(Path(__file__).resolve().parent.parent)
    digests = set()
    for seed in ("1", "2", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", _RUNNER, root], input=log, capture_output=True, env=env,
                             check=True, timeout=60)  # fmt: skip
        digests.add(out.stdout.strip())
    local = StateStore()
    for i, data in enumerate(msgpack.unpackb(log), 1):
        local.apply(Entry(index=i, term=1, data=data))
    assert digests == {hashlib.sha256(local.snapshot()).hexdigest().encode()}
    assert len(local.current.kvs) > 0 and local.current.applied == 600
