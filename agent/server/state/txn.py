"""``/v1/txn`` KV operations (hashicorp/consul ``agent/consul/state/txn.go`` ``txnKVS``; txn.mdx;
wave2-anchors §2.4).

First Consul's pre-check (``txn_endpoint.go`` ``preCheck``): a ``lock`` inside its key's lock-delay fails with
"failed to lock key %q due to lock delay", and any such failure ends the transaction before it runs.  Then every
operation runs, in order, on the transaction's working copy; each failure adds ``(OpIndex, What)`` with
Consul's text and the run goes on (Consul reports every failing op).  Any failure: nothing is kept.  Results:
``get`` shows the value, ``get-tree`` one result per entry with values, writes and checks show the entry with
its value blanked, deletes show nothing.
"""

from __future__ import annotations

import attrs

from .commands import TxnOp
from .kvs import (
    StateError,
    go_quote,
    kv_delete,
    kv_delete_cas,
    kv_delete_tree,
    kv_lock,
    kv_set,
    kv_set_cas,
    kv_unlock,
    lock_delay_expiry,
)
from .reads import kv_list
from .tables import KVEntry, Tx

__all__ = ["TxnOutcome", "run_txn"]


@attrs.frozen
class TxnOutcome:
    """``results`` (entries, each with or without its value) on success; ``errors`` ``(op index, what)``."""

    results: tuple[KVEntry, ...] = ()
    errors: tuple[tuple[int, str], ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors


def _blank(entry: KVEntry) -> KVEntry:
    return attrs.evolve(entry, value=b"")


def _run_op(tx: Tx, op: TxnOp) -> list[KVEntry]:
    entry = KVEntry(op.key, op.value, op.flags, session=op.session)
    verb, key, q = op.verb, op.key, go_quote(op.key)
    if verb == "set":
        return [_blank(kv_set(tx, entry))]
    if verb == "cas":
        stored = kv_set_cas(tx, entry, op.index)
        if stored is None:
            raise StateError(f"failed to set key {q}, index is stale")
        return [_blank(stored)]
    if verb == "lock":
        stored = kv_lock(tx, entry)
        if stored is None:
            raise StateError(f"failed to lock key {q}, lock is already held")
        return [_blank(stored)]
    if verb == "unlock":
        stored = kv_unlock(tx, entry)
        if stored is None:
            raise StateError(f"failed to unlock key {q}, lock isn't held, or is held by another session")
        return [_blank(stored)]
    if verb == "get":
        found = tx.kvs.get(key)
        if found is None:
            raise StateError(f"key {q} doesn't exist")
        return [found]
    if verb == "get-tree":
        return list(kv_list(tx.view(), key).value)
    if verb == "check-index":
        found = tx.kvs.get(key)
        if found is None:
            raise StateError(f"failed to check index, key {q} doesn't exist")
        if found.modify_index != op.index:
            raise StateError(f"failed index check for key {q}, current modify index {found.modify_index} != {op.index}")
        return [_blank(found)]
    if verb == "check-session":
        found = tx.kvs.get(key)
        if found is None:
            raise StateError(f"failed to check session, key {q} doesn't exist")
        if found.session != op.session:
            raise StateError(
                f"failed session check for key {q}, current session {go_quote(found.session)} != {go_quote(op.session)}"
            )
        return [_blank(found)]
    if verb == "check-not-exists":
        if key in tx.kvs:
            raise StateError(f"key {q} exists")
        return []
    if verb == "delete":
        kv_delete(tx, key)
        return []
    if verb == "delete-cas":
        if not kv_delete_cas(tx, key, op.index):
            raise StateError(f"failed to delete key {q}, index is stale")
        return []
    if verb == "delete-tree":
        kv_delete_tree(tx, key)
        return []
    raise StateError(f"unknown KV verb {go_quote(verb)}")


def run_txn(tx: Tx, ops: tuple[TxnOp, ...]) -> TxnOutcome:
    """Run ``ops`` on ``tx`` (its ``now`` is the leader's); the caller commits ``tx`` only when the outcome is ok."""
    delayed = tuple(
        (i, f"failed to lock key {go_quote(op.key)} due to lock delay")
        for i, op in enumerate(ops)
        if op.verb == "lock" and tx.now < lock_delay_expiry(tx, op.key)
    )
    if delayed:
        return TxnOutcome(errors=delayed)
    results: list[KVEntry] = []
    errors: list[tuple[int, str]] = []
    for i, op in enumerate(ops):
        try:
            results.extend(_run_op(tx, op))
        except StateError as exc:
            errors.append((i, str(exc)))
    if errors:
        return TxnOutcome(errors=tuple(errors))
    return TxnOutcome(results=tuple(results))
