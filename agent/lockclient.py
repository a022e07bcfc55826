"""Consul's client-side lock and semaphore (api/lock.go, api/semaphore.go) on plain threads, for `lock`.

The lock: create a session (TTL 15 s, behavior release, the agent's default lock-delay) and renew it every TTL/2;
read the lock key with blocking queries until no session holds it, then `?acquire=` it with the lock flag value;
once held, watch the key with consistent blocking queries and report the lock lost as soon as the key is gone or
names another session (invalidation, an operator's release, a failed agent).  Releasing is `?release=` then
destroying the session; `destroy` removes the key only when nobody holds it.

The semaphore of N holders: a session of behavior delete acquires a contender key `PREFIX/<session>`; the
coordination key `PREFIX/.lock` holds `{"Limit": N, "Holders": {session: true}}`, changed only by CAS; a contender
whose session is gone no longer counts (its key was deleted with the session), so holders are pruned to the live
contenders before counting.  A slot is lost when our session is no longer a live holder.

Both have the same face (`acquire`, `lost`, `release`, `destroy`) for the command.  Two daemon threads per held
lock: the session renewer and the monitor; neither outlives the process, and both stop on their own once the
lock is released (their blocking reads return when the keys change).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.cli_client import AgentClient, ClientError
from agent.durations import parse_duration
from agent.kvapi import KV, LOCK_FLAG_VALUE, KVPair, QueryOptions, Sessions, go_path_join

DEFAULT_SESSION_NAME = "Consul API Lock"
DEFAULT_SEMAPHORE_SESSION_NAME = "Consul API Semaphore"
DEFAULT_SESSION_TTL = "15s"
DEFAULT_LOCK_WAIT = 15.0  # seconds one blocking read may wait while the lock is taken
DEFAULT_LOCK_RETRY = 5.0  # seconds between acquire attempts while a lock-delay is in effect
DEFAULT_MONITOR_RETRY_TIME = 2.0
MONITOR_WAIT = 300.0  # the agent's default blocking wait, asked for explicitly so our read timeout can cover it
RENEW_RETRY = 1.0  # seconds between renewals after a failed one (api.RenewPeriodic)
THREAD_JOIN = 10.0  # bound on waiting for the renewer to destroy the session at the end
SEMAPHORE_KEY = ".lock"  # api.DefaultSemaphoreKey; `consul lock` uses it for locks too, so the two conflict
#: api.SemaphoreFlagValue: the Flags of a semaphore's keys.
SEMAPHORE_FLAG_VALUE = 0xE0F69A2BAA414DE0


class LockError(Exception):
    """A lock operation failed; str(err) is the Go client's text (`failed to read lock: ...`)."""


class LockConflictError(LockError):
    """The key exists but is not used the way we use it (a lock where a semaphore is, or a plain key)."""


class LockInUseError(LockError):
    """`destroy` found a holder: the key stays."""


@dataclass(frozen=True)
class LockOptions:
    """api.LockOptions / api.SemaphoreOptions (the fields `consul lock` sets).

    ``key`` is the lock's key, or the semaphore's prefix when ``limit`` > 1.
    """

    key: str
    value: bytes = b""
    limit: int = 1
    session_name: str = ""
    session_ttl: str = DEFAULT_SESSION_TTL
    lock_delay: float | None = None  # seconds; None leaves the agent's default (15 s)
    monitor_retries: int = 0
    monitor_retry_time: float = DEFAULT_MONITOR_RETRY_TIME
    lock_wait_time: float = DEFAULT_LOCK_WAIT
    lock_try_once: bool = False


def retryable(err: ClientError) -> bool:
    """api.IsRetryableError: the agent answered 500, or the exchange itself failed."""
    return err.status is None or err.status == 500


class _Held:
    """What a lock and a semaphore share: the session and its renewer, the monitor thread, the `lost` event."""

    def __init__(self, client: AgentClient, options: LockOptions) -> None:
        parse_duration(options.session_ttl)  # ValueError with Go's text, before anything is created
        self.options = options
        self.kv = KV(client)
        self.sessions = Sessions(client)
        self.session = ""
        self.held = False
        self.lost = threading.Event()
        self._renew_done: threading.Event | None = None
        self._renewer: threading.Thread | None = None

    def acquire(self, stop: threading.Event, on_lost: Callable[[], None] | None = None) -> bool:
        """Block until ours (True) or ``stop`` is set / the one-shot wait ran out (False); raises LockError.

        Once held, ``self.lost`` is set (and ``on_lost`` called) when it is lost.
        """
        if self.held:
            raise LockError(self._already_held)
        try:
            self.session = self.sessions.create(self._session_name(), self.options.session_ttl,
                                                self.options.lock_delay, self._behavior)  # fmt: skip
        except ClientError as err:
            raise LockError(f"failed to create session: {err}") from None
        done = threading.Event()
        self._renew_done = done
        self._renewer = threading.Thread(target=self._renew, args=(self.session, done), daemon=True)
        self._renewer.start()
        try:
            self.held = self._acquire(stop)
        finally:
            if not self.held:
                self._stop_renewing()
        if self.held:
            threading.Thread(target=self._monitor, args=(on_lost,), name="lock-monitor", daemon=True).start()
        return self.held

    # ---- for the subclasses

    _already_held = "Lock already held"
    _behavior = ""

    def _session_name(self) -> str:
        return self.options.session_name or DEFAULT_SESSION_NAME

    def _acquire(self, stop: threading.Event) -> bool:
        raise NotImplementedError

    def _still_held(self, index: int) -> tuple[bool, int]:
        """One consistent blocking read: are we still a holder, and the index to wait on next."""
        raise NotImplementedError

    # ---- shared machinery

    def _deadline_wait(self, start: float, attempts: int) -> float | None:
        """The one-shot mode: how long the next read may block, or None once the wait has run out."""
        if not (self.options.lock_try_once and attempts > 0):
            return self.options.lock_wait_time
        elapsed = time.monotonic() - start
        return None if elapsed > self.options.lock_wait_time else self.options.lock_wait_time - elapsed

    def _monitor(self, on_lost: Callable[[], None] | None) -> None:
        """monitorLock: consistent blocking reads while we are a holder; then `lost`."""
        retries, index = self.options.monitor_retries, 0
        while self.held:
            try:
                still, index = self._still_held(index)
            except ClientError as err:
                if retries > 0 and retryable(err):
                    time.sleep(self.options.monitor_retry_time)
                    retries, index = retries - 1, 0
                    continue
                break
            if not still:
                break
            retries, index = self.options.monitor_retries, max(index, 1)
        self.lost.set()
        if on_lost is not None:
            on_lost()

    def _renew(self, session: str, done: threading.Event) -> None:
        """RenewPeriodic: renew every TTL/2 (1 s after a failure) until done, then destroy the session.

        Gives up when renewals have failed for a whole TTL or the agent no longer knows the session: the agent
        has invalidated it by then, and the monitor sees the lock go.
        """
        ttl = parse_duration(self.options.session_ttl)
        wait, last_renewed = ttl / 2, time.monotonic()
        while time.monotonic() - last_renewed <= ttl:
            if done.wait(wait):
                with contextlib.suppress(ClientError):  # else it expires on its own after its TTL
                    self.sessions.destroy(session)
                return
            try:
                entry = self.sessions.renew(session)
            except ClientError:
                wait = RENEW_RETRY
                continue
            if entry is None:
                return
            with contextlib.suppress(ValueError):  # the agent may shorten or lengthen the TTL
                ttl = parse_duration(str(entry.get("TTL") or self.options.session_ttl))
            wait, last_renewed = ttl / 2, time.monotonic()

    def _stop_renewing(self) -> None:
        """Stop the renewer and wait (bounded) for it to destroy the session, so an exit right after is clean."""
        if self._renew_done is not None and self._renewer is not None:
            self._renew_done.set()
            self._renewer.join(THREAD_JOIN)
        self._renew_done = self._renewer = None

    def _read_key(self, options: QueryOptions) -> tuple[KVPair | None, int]:
        try:
            return self.kv.get(self.options.key, options)
        except ClientError as err:
            raise LockError(f"failed to read lock: {err}") from None


class Lock(_Held):
    """One lock on ``options.key``: ``acquire``, then ``release``, then optionally ``destroy``."""

    def _acquire(self, stop: threading.Event) -> bool:
        opts = self.options
        start, wait_index, attempts = time.monotonic(), 0, 0
        while not stop.is_set():
            wait_time = self._deadline_wait(start, attempts)
            if wait_time is None:
                return False
            attempts += 1
            pair, index = self._read_key(QueryOptions(index=wait_index, wait=wait_time))
            if pair is not None and pair.flags != LOCK_FLAG_VALUE:
                raise LockConflictError("Existing key does not match lock use")
            if pair is not None and pair.session == self.session:
                return True
            if pair is not None and pair.session:
                wait_index = max(index, 1)
                continue
            try:
                if self.kv.acquire(opts.key, opts.value, LOCK_FLAG_VALUE, self.session):
                    return True
            except ClientError as err:
                raise LockError(f"failed to acquire lock: {err}") from None
            # Refused: either someone took it first (wait on them) or a lock-delay is in effect (timed retry).
            pair, index = self._read_key(QueryOptions(wait=wait_time))
            if pair is not None and pair.session:
                wait_index = max(index, 1)
                continue
            wait_index = 0
            if stop.wait(DEFAULT_LOCK_RETRY):
                return False
        return False

    def _still_held(self, index: int) -> tuple[bool, int]:
        pair, index = self.kv.get(self.options.key, QueryOptions(consistent=True, index=index, wait=MONITOR_WAIT))
        return pair is not None and pair.session == self.session, index

    def release(self) -> None:
        """Unlock: `?release=` our session, then destroy the session.  Raises LockError."""
        if not self.held:
            raise LockError("Lock not held")
        self.held = False
        try:
            self.kv.release(self.options.key, self.options.value, LOCK_FLAG_VALUE, self.session)
        except ClientError as err:
            raise LockError(f"failed to release lock: {err}") from None
        finally:
            self.session = ""
            self._stop_renewing()

    def destroy(self) -> None:
        """Remove the lock key if nobody holds it (LockInUseError if someone does)."""
        if self.held:
            raise LockError("Lock already held")
        pair, _index = self._read_key(QueryOptions())
        if pair is None:
            return
        if pair.flags != LOCK_FLAG_VALUE:
            raise LockConflictError("Existing key does not match lock use")
        if pair.session:
            raise LockInUseError("Lock in use")
        try:
            removed = self.kv.delete_cas(self.options.key, pair.modify_index)
        except ClientError as err:
            raise LockError(f"failed to remove lock: {err}") from None
        if not removed:
            raise LockInUseError("Lock in use")


class Semaphore(_Held):
    """A semaphore of ``options.limit`` holders under the prefix ``options.key``."""

    _already_held = "Semaphore already held"
    _behavior = "delete"  # our contender key goes with our session

    def _session_name(self) -> str:
        return self.options.session_name or DEFAULT_SEMAPHORE_SESSION_NAME

    @property
    def lock_key(self) -> str:
        return go_path_join(self.options.key, SEMAPHORE_KEY)

    def _acquire(self, stop: threading.Event) -> bool:
        opts = self.options
        contender = go_path_join(opts.key, self.session)
        try:
            made = self.kv.acquire(contender, opts.value, SEMAPHORE_FLAG_VALUE, self.session)
        except ClientError as err:
            raise LockError(f"failed to make contender entry: {err}") from None
        if not made:
            raise LockError("failed to make contender entry: <nil>")
        start, wait_index, attempts = time.monotonic(), 0, 0
        while not stop.is_set():
            wait_time = self._deadline_wait(start, attempts)
            if wait_time is None:
                return False
            attempts += 1
            pairs, index = self._list(QueryOptions(index=wait_index, wait=wait_time))
            lock_pair = self._find_lock(pairs)
            if lock_pair.flags != SEMAPHORE_FLAG_VALUE:
                raise LockConflictError("Existing key does not match semaphore use")
            state = self._decode(lock_pair)
            if state["Limit"] != opts.limit:
                raise LockError(f"semaphore limit conflict (lock: {state['Limit']}, local: {opts.limit})")
            holders = self._live(state, pairs)
            if len(holders) >= state["Limit"]:
                wait_index = max(index, 1)
                continue
            try:
                if self._cas(state["Limit"], {*holders, self.session}, lock_pair.modify_index):
                    return True
            except ClientError as err:
                raise LockError(f"failed to update lock: {err}") from None
            wait_index = 0  # lost a race with another contender: look again at once
        return False

    def _still_held(self, index: int) -> tuple[bool, int]:
        pairs, index = self.kv.list(self.options.key, QueryOptions(consistent=True, index=index, wait=MONITOR_WAIT))
        try:
            state = self._decode(self._find_lock(pairs))
        except LockError:
            return False, index
        return self.session in self._live(state, pairs), index

    def release(self) -> None:
        """Leave the holders (CAS, retried on a race), delete our contender key, destroy the session."""
        if not self.held:
            raise LockError("Semaphore not held")
        self.held = False
        session, self.session = self.session, ""
        try:
            while True:
                try:
                    pair, _index = self.kv.get(self.lock_key)
                except ClientError as err:
                    raise LockError(str(err)) from None
                pair = pair or KVPair(self.lock_key)
                state = self._decode(pair)
                if session not in state["Holders"]:
                    break
                try:
                    if self._cas(state["Limit"], set(state["Holders"]) - {session}, pair.modify_index):
                        break
                except ClientError as err:
                    raise LockError(f"failed to update lock: {err}") from None
            try:
                self.kv.delete(go_path_join(self.options.key, session))
            except ClientError as err:
                raise LockError(str(err)) from None
        finally:
            self._stop_renewing()

    def destroy(self) -> None:
        """Remove the coordination key if no live holder is left (LockInUseError otherwise)."""
        if self.held:
            raise LockError("Semaphore already held")
        pairs, _index = self._list(QueryOptions())
        lock_pair = self._find_lock(pairs)
        if lock_pair.modify_index == 0:
            return
        if lock_pair.flags != SEMAPHORE_FLAG_VALUE:
            raise LockConflictError("Existing key does not match semaphore use")
        if self._live(self._decode(lock_pair), pairs):
            raise LockInUseError("Semaphore in use")
        try:
            removed = self.kv.delete_cas(self.lock_key, lock_pair.modify_index)
        except ClientError as err:
            raise LockError(f"failed to remove semaphore: {err}") from None
        if not removed:
            raise LockInUseError("Semaphore in use")

    # ---- the coordination key

    def _list(self, options: QueryOptions) -> tuple[list[KVPair], int]:
        try:
            return self.kv.list(self.options.key, options)
        except ClientError as err:
            raise LockError(f"failed to read prefix: {err}") from None

    def _find_lock(self, pairs: list[KVPair]) -> KVPair:
        """The coordination pair, or an empty one (index 0) that carries our flag when there is none yet."""
        return next((p for p in pairs if p.key == self.lock_key), KVPair(self.lock_key, flags=SEMAPHORE_FLAG_VALUE))

    def _decode(self, pair: KVPair) -> dict[str, Any]:
        """semaphoreLock from the pair's JSON (Go's decoder: field names case-insensitive); a fresh one if empty."""
        if not pair.value:
            return {"Limit": self.options.limit, "Holders": {}}
        try:
            raw = json.loads(pair.value)
            fields = {k.lower(): v for k, v in raw.items()}
            limit, holders = fields.get("limit", 0), fields.get("holders") or {}
            if isinstance(limit, bool) or not isinstance(limit, int) or not isinstance(holders, dict):
                raise ValueError("json: cannot unmarshal into Go value of type api.semaphoreLock")
        except (ValueError, AttributeError) as err:
            raise LockError(f"lock decoding failed: {err}") from None
        return {"Limit": limit, "Holders": holders}

    @staticmethod
    def _live(state: dict[str, Any], pairs: list[KVPair]) -> set[str]:
        """pruneDeadHolders: the holders that still have a key with their session under the prefix."""
        alive = {p.session for p in pairs if p.session}
        return {h for h in state["Holders"] if h in alive}

    def _cas(self, limit: int, holders: set[str], modify_index: int) -> bool:
        """encodeLock + CAS: Go's json.Marshal of {Limit, Holders} (map keys sorted, compact)."""
        body = json.dumps({"Limit": limit, "Holders": dict.fromkeys(sorted(holders), True)}, separators=(",", ":"))
        return self.kv.cas(self.lock_key, body.encode(), SEMAPHORE_FLAG_VALUE, modify_index)
