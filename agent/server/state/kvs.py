"""Consul's KV rules on a `Tx` (hashicorp/consul ``agent/consul/state/kvs.go``, ``kvs_oss.go``; wave2-anchors §2.1).

Each function returns what Consul's returns: a bool for set/cas/lock/unlock/delete-cas, or raises
`StateError` with Consul's text where Consul returns an error (a lock without a session, an unknown session).
"""

from __future__ import annotations

import attrs

from agent.gostrings import go_quote

from .tables import KVEntry, Tx

__all__ = [
    "StateError",
    "go_quote",
    "kv_delete",
    "kv_delete_cas",
    "kv_delete_tree",
    "kv_lock",
    "kv_set",
    "kv_set_cas",
    "kv_unlock",
    "lock_delay_expiry",
]


class StateError(Exception):
    """A rule refused the command with Consul's error text (the HTTP layer shows it as Consul does)."""


def kv_set(tx: Tx, entry: KVEntry, *, update_session: bool = False) -> KVEntry:
    """``kvsSetTxn``: keep CreateIndex; keep the existing session unless ``update_session``; a write that
    changes nothing (``DirEntry.Equal``) keeps the old ModifyIndex and writes nothing.  Returns the entry as
    stored (what a transaction's result shows)."""
    existing = tx.kvs.get(entry.key)
    create = tx.create_index(existing)
    session = entry.session if update_session else (existing.session if existing is not None else "")
    entry = attrs.evolve(entry, create_index=create, session=session)
    if existing is not None and existing.same_content(entry):
        return attrs.evolve(entry, modify_index=existing.modify_index)
    entry = attrs.evolve(entry, modify_index=tx.index)
    tx.put_kv(entry)
    tx.touch("kvs", entry.key)
    return entry


def kv_set_cas(tx: Tx, entry: KVEntry, cas: int) -> KVEntry | None:
    """``kvsSetCASTxn``: ``cas`` 0 sets only an absent key, else only a key whose ModifyIndex is ``cas``."""
    existing = tx.kvs.get(entry.key)
    if cas == 0 and existing is not None:
        return None
    if cas != 0 and (existing is None or existing.modify_index != cas):
        return None
    return kv_set(tx, entry)


def kv_lock(tx: Tx, entry: KVEntry) -> KVEntry | None:
    """``kvsLockTxn``: needs a live session; a lock held by another session refuses (None); the holder
    re-acquiring keeps LockIndex; a new holder increments it (1 for a new key)."""
    if not entry.session:
        raise StateError("missing session")
    if entry.session not in tx.sessions:
        raise StateError(f"invalid session {go_quote(entry.session)}")
    existing = tx.kvs.get(entry.key)
    if existing is None:
        lock_index = 1
    elif existing.session == entry.session:
        lock_index = existing.lock_index
    elif existing.session:
        return None
    else:
        lock_index = existing.lock_index + 1
    return kv_set(tx, attrs.evolve(entry, lock_index=lock_index), update_session=True)


def kv_unlock(tx: Tx, entry: KVEntry) -> KVEntry | None:
    """``kvsUnlockTxn``: only the holder releases; the session is cleared, LockIndex kept, value written."""
    if not entry.session:
        raise StateError("missing session")
    existing = tx.kvs.get(entry.key)
    if existing is None or existing.session != entry.session:
        return None
    return kv_set(tx, attrs.evolve(entry, session="", lock_index=existing.lock_index), update_session=True)


def kv_delete(tx: Tx, key: str) -> None:
    """``kvsDeleteTxn``: a tombstone keeps the key's delete index, so a prefix read's index never slides back."""
    if key not in tx.kvs:
        return
    tx.tombstones = tx.tombstones.set(key, tx.index)
    tx.touch("tombstones", key)
    tx.drop_kv(key)
    tx.touch("kvs", key)


def kv_delete_cas(tx: Tx, key: str, cas: int) -> bool:
    """``kvsDeleteCASTxn``: deletes when ModifyIndex equals ``cas``; a key already absent answers true."""
    existing = tx.kvs.get(key)
    if existing is None:
        return True
    if existing.modify_index != cas:
        return False
    kv_delete(tx, key)
    return True


def kv_delete_tree(tx: Tx, prefix: str) -> None:
    """``kvsDeleteTreeTxn``: one tombstone for the prefix (none for the whole tree, ""); nothing deleted, no
    write at all."""
    doomed = [key for key in tx.kvs if key.startswith(prefix)]  # a delete-tree may scan: it writes anyway
    if not doomed:
        return
    for key in doomed:
        tx.drop_kv(key)
        tx.touch("kvs", key)
    if prefix:
        tx.tombstones = tx.tombstones.set(prefix, tx.index)
        tx.touch("tombstones", prefix)


def lock_delay_expiry(tx: Tx, key: str) -> int:
    """The key's lock-delay expiry in leader ns (0: none); Consul's ``KVSLockDelay``."""
    return tx.lock_delays.get(key, 0)
