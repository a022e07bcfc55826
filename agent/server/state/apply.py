"""One command on a `State`: the new state, the result the proposer gets, and the changes for watchers.

Pure and deterministic: the result depends only on the state, the Raft index and the command (whose ``now``
the leader stamped).  A command a rule refuses returns `Failed` with Consul's text and leaves every table as it
was (only ``applied`` moves), like a transaction that fails.
"""

from __future__ import annotations

from typing import Any

import attrs

from . import acl, catalog
from . import commands as c
from .kvs import (
    StateError,
    kv_delete,
    kv_delete_cas,
    kv_delete_tree,
    kv_lock,
    kv_set,
    kv_set_cas,
    kv_unlock,
    lock_delay_expiry,
)
from .sessions import create_session, destroy_session, invalidate_check, invalidate_node
from .tables import KVEntry, Session, State, Tx
from .txn import run_txn

__all__ = ["Applied", "Failed", "apply_command"]


@attrs.frozen
class Failed:
    """A command refused: ``error`` is Consul's text (the HTTP layer shows it as Consul's endpoint would)."""

    error: str


@attrs.frozen
class Applied:
    state: State
    result: Any
    changes: frozenset[tuple[str, str]] = frozenset()


def _kv(cmd: c.KVSet | c.KVCas | c.KVLock | c.KVUnlock, session: str = "") -> KVEntry:
    return KVEntry(cmd.key, cmd.value, cmd.flags, session=session)


def _run(tx: Tx, cmd: c.Command) -> Any:
    if isinstance(cmd, c.KVSet):
        kv_set(tx, _kv(cmd))
        return True
    if isinstance(cmd, c.KVCas):
        return kv_set_cas(tx, _kv(cmd), cmd.index) is not None
    if isinstance(cmd, c.KVLock):
        # Consul checks the lock-delay on the leader before the apply (kvs_endpoint.go); here the leader's time
        # is in the entry, so every server decides the same, and nothing can slip between check and apply.
        if cmd.now < lock_delay_expiry(tx, cmd.key):
            return False
        return kv_lock(tx, _kv(cmd, cmd.session)) is not None
    if isinstance(cmd, c.KVUnlock):
        return kv_unlock(tx, _kv(cmd, cmd.session)) is not None
    if isinstance(cmd, c.KVDelete):
        kv_delete(tx, cmd.key)
        return True
    if isinstance(cmd, c.KVDeleteCas):
        return kv_delete_cas(tx, cmd.key, cmd.index)
    if isinstance(cmd, c.KVDeleteTree):
        kv_delete_tree(tx, cmd.prefix)
        return True
    if isinstance(cmd, c.SessionCreate):
        fields = attrs.asdict(cmd, recurse=False)
        del fields["now"]
        return create_session(tx, Session(**fields))
    if isinstance(cmd, c.SessionDestroy):
        destroy_session(tx, cmd.id)
        return True
    if isinstance(cmd, c.InvalidateCheck):
        return invalidate_check(tx, cmd.node, cmd.check_id)
    if isinstance(cmd, c.InvalidateNode):
        return invalidate_node(tx, cmd.node)
    if isinstance(cmd, c.TombstoneReap):
        # graveyard.go ReapTxn: the tombstones go, no index moves and nobody is woken (a prefix read's index may
        # then fall back to its entries', as Consul's own test of it shows).
        doomed = sorted(k for k, i in tx.tombstones.items() if i <= cmd.index)
        for key in doomed:
            tx.tombstones = tx.tombstones.delete(key)
        return len(doomed)
    if isinstance(cmd, c.Txn):
        return run_txn(tx, cmd.ops)
    if isinstance(cmd, c.CatalogRegister):
        return catalog.register(tx, cmd)
    if isinstance(cmd, c.CatalogDeregister):
        return catalog.deregister(tx, cmd)
    if isinstance(cmd, c.ACLBootstrap):
        return acl.bootstrap(tx, cmd)
    if isinstance(cmd, c.ACLTokenSet):
        return acl.set_token(tx, cmd)
    if isinstance(cmd, c.ACLTokenDelete):
        return acl.delete_token(tx, cmd.accessor_id)
    if isinstance(cmd, c.ACLPolicySet):
        return acl.set_policy(tx, cmd)
    if isinstance(cmd, c.ACLPolicyDelete):
        return acl.delete_policy(tx, cmd.id)
    if isinstance(cmd, c.ACLRoleSet):
        return acl.set_role(tx, cmd)
    if isinstance(cmd, c.ACLRoleDelete):
        return acl.delete_role(tx, cmd.id)
    raise TypeError(f"no rule for {type(cmd).__name__}")


def apply_command(state: State, index: int, cmd: c.Command) -> Applied:
    """``cmd`` applied at Raft ``index``."""
    tx = Tx(state, index, cmd.now)
    try:
        result = _run(tx, cmd)
    except StateError as exc:
        return Applied(attrs.evolve(state, applied=max(index, state.applied)), Failed(str(exc)))
    if isinstance(cmd, c.Txn) and not result.ok:
        return Applied(attrs.evolve(state, applied=max(index, state.applied)), result)
    return Applied(tx.commit(), result, frozenset(tx.changes))
