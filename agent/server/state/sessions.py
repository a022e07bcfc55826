"""Consul's session rules on a `Tx` (hashicorp/consul ``agent/consul/state/session.go``; wave2-anchors §2.2).

Create records the session and its check bindings; destroy is the one invalidation path (explicit destroy, TTL
expiry proposed by the leader, a bound check turned critical or deregistered, the node gone): the session's
locks are released (``release``) or their keys deleted (``delete``), and each of those keys gets a lock-delay
of the session's LockDelay (at most 60 s, ``structs.MaxLockDelay``) from the entry's leader time.
"""

from __future__ import annotations

import attrs
import immutables

from .kvs import StateError, kv_delete, kv_set
from .tables import BEHAVIOR_DELETE, BEHAVIOR_RELEASE, Session, Tx, node_key

__all__ = ["MAX_LOCK_DELAY_NS", "create_session", "destroy_session", "invalidate_check", "invalidate_node"]

MAX_LOCK_DELAY_NS = 60 * 10**9


def _binding(node: str, check: str) -> tuple[str, str]:
    return (node_key(node), check.lower())


def create_session(tx: Tx, session: Session) -> str:
    """``sessionCreateTxn``: behavior must be release|delete; indexes stamped; check bindings recorded.

    The node and its checks are validated by the leader before proposing (`leader.session_create_error`): agent
    nodes live in gossip, not in this store, and an apply must not read anything but the log."""
    if not session.id:
        raise StateError("Missing session ID")
    if session.behavior not in (BEHAVIOR_RELEASE, BEHAVIOR_DELETE):
        raise StateError(f"Invalid session behavior: {session.behavior}")
    if session.id in tx.sessions:
        raise StateError(f"Session ID {session.id!r} already exists")
    session = attrs.evolve(session, create_index=tx.index, modify_index=tx.index)
    tx.sessions = tx.sessions.set(session.id, session)
    tx.touch("sessions", session.id)
    tx.changes.add(("sessions-node", node_key(session.node)))
    for check in session.check_ids():
        key = _binding(session.node, check)
        bound = tx.session_checks.get(key, ())
        tx.session_checks = tx.session_checks.set(key, tuple(sorted({*bound, session.id})))
        tx.touch("session_checks", f"{key[0]}/{key[1]}")
    return session.id


def _set_lock_delay(tx: Tx, key: str, delay: int) -> None:
    # Expired delays are dropped whenever one is added, so the table stays as small as the live delays.
    live = {k: v for k, v in tx.lock_delays.items() if v > tx.now}
    live[key] = tx.now + delay
    tx.lock_delays = immutables.Map(live)


def destroy_session(tx: Tx, session_id: str) -> bool:
    """``deleteSessionTxn``: unknown ids are a no-op (false); else invalidate as the behavior says."""
    session = tx.sessions.get(session_id)
    if session is None:
        return False
    tx.sessions = tx.sessions.delete(session_id)
    tx.touch("sessions", session_id)
    tx.changes.add(("sessions-node", node_key(session.node)))
    delay = min(session.lock_delay, MAX_LOCK_DELAY_NS)
    held = sorted(tx.held.get(session_id, ()))
    for key in held:
        if session.behavior == BEHAVIOR_DELETE:
            kv_delete(tx, key)
        else:
            kv_set(tx, attrs.evolve(tx.kvs[key], session=""), update_session=True)
        if delay > 0:
            _set_lock_delay(tx, key, delay)
    for check in session.check_ids():
        key = _binding(session.node, check)
        bound = tuple(s for s in tx.session_checks.get(key, ()) if s != session_id)
        tx.session_checks = tx.session_checks.set(key, bound) if bound else tx.session_checks.delete(key)
        tx.touch("session_checks", f"{key[0]}/{key[1]}")
    return True


def invalidate_check(tx: Tx, node: str, check_id: str) -> tuple[str, ...]:
    """Destroy every session bound to ``node``'s check ``check_id`` (it went critical or away)."""
    doomed = tx.session_checks.get(_binding(node, check_id), ())
    for session_id in doomed:
        destroy_session(tx, session_id)
    return doomed


def invalidate_node(tx: Tx, node: str) -> tuple[str, ...]:
    """Destroy every session on ``node`` (Consul's ``deleteNodeTxn`` does so when a node is deregistered)."""
    wanted = node_key(node)
    doomed = tuple(sorted(s.id for s in tx.sessions.values() if node_key(s.node) == wanted))
    for session_id in doomed:
        destroy_session(tx, session_id)
    return doomed
