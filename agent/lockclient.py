"""Consul's client-side lock (api/lock.go) on plain threads, for `lock`.

The protocol: create a session (TTL 15 s, behavior release, the agent's default lock-delay) and renew it every
TTL/2; read the lock key with blocking queries until no session holds it, then `?acquire=` it with the lock flag
value; once held, watch the key with consistent blocking queries and report the lock lost as soon as the key is
gone or names another session (invalidation, an operator's release, a failed agent).  Releasing is `?release=`
then destroying the session; `destroy` removes the key only when nobody holds it.

Two daemon threads per held lock: the renewer and the monitor.  Neither can outlive the process, and both stop
on their own when the lock is released (their blocking reads return when the key changes).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from agent.cli import AgentClient, ClientError
from agent.durations import parse_duration
from agent.kvapi import KV, LOCK_FLAG_VALUE, KVPair, QueryOptions, Sessions

DEFAULT_SESSION_NAME = "Consul API Lock"
DEFAULT_SESSION_TTL = "15s"
DEFAULT_LOCK_WAIT = 15.0  # seconds one blocking read of the lock key may wait while the lock is taken
DEFAULT_LOCK_RETRY = 5.0  # seconds between acquire attempts while a lock-delay is in effect
DEFAULT_MONITOR_RETRY_TIME = 2.0
MONITOR_WAIT = 300.0  # the agent's default blocking wait, asked for explicitly so our read timeout can cover it
RENEW_RETRY = 1.0  # seconds between renewals after a failed one (api.RenewPeriodic)
THREAD_JOIN = 10.0  # bound on waiting for the renewer to destroy the session at the end


class LockError(Exception):
    """A lock operation failed; str(err) is the Go client's text (`failed to read lock: ...`)."""


class LockConflictError(LockError):
    def __init__(self) -> None:
        super().__init__("Existing key does not match lock use")


class LockInUseError(LockError):
    def __init__(self) -> None:
        super().__init__("Lock in use")


@dataclass(frozen=True)
class LockOptions:
    """api.LockOptions (the fields `consul lock` sets)."""

    key: str
    value: bytes = b""
    session_name: str = DEFAULT_SESSION_NAME
    session_ttl: str = DEFAULT_SESSION_TTL
    lock_delay: float | None = None  # seconds; None leaves the agent's default (15 s)
    monitor_retries: int = 0
    monitor_retry_time: float = DEFAULT_MONITOR_RETRY_TIME
    lock_wait_time: float = DEFAULT_LOCK_WAIT
    lock_try_once: bool = False


def retryable(err: ClientError) -> bool:
    """api.IsRetryableError: the agent answered 500, or the exchange itself failed."""
    return err.status is None or err.status == 500


class Lock:
    """One lock on ``options.key``: ``acquire``, then ``release``, then optionally ``destroy``."""

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

    # ---- acquire

    def acquire(self, stop: threading.Event, on_lost: Callable[[], None] | None = None) -> bool:
        """Block until the lock is ours (True) or ``stop`` is set / the one-shot wait ran out (False).

        Once held, ``self.lost`` is set (and ``on_lost`` called) when the lock is lost.  Raises LockError.
        """
        if self.held:
            raise LockError("Lock already held")
        try:
            self.session = self.sessions.create(
                self.options.session_name, self.options.session_ttl, self.options.lock_delay
            )
        except ClientError as err:
            raise LockError(f"failed to create session: {err}") from None
        self._start_renewing()
        try:
            self.held = self._acquire_loop(stop)
        finally:
            if not self.held:
                self._stop_renewing()
        if self.held:
            threading.Thread(target=self._monitor, args=(on_lost,), name="lock-monitor", daemon=True).start()
        return self.held

    def _acquire_loop(self, stop: threading.Event) -> bool:
        opts = self.options
        start = time.monotonic()
        wait_time, wait_index, attempts = opts.lock_wait_time, 0, 0
        while not stop.is_set():
            if opts.lock_try_once and attempts > 0:
                elapsed = time.monotonic() - start
                if elapsed > opts.lock_wait_time:
                    return False
                wait_time = opts.lock_wait_time - elapsed  # a read never outwaits the one-shot deadline
            attempts += 1
            pair, index = self._read(QueryOptions(index=wait_index, wait=wait_time))
            if pair is not None and pair.flags != LOCK_FLAG_VALUE:
                raise LockConflictError()
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
            pair, index = self._read(QueryOptions(wait=wait_time))
            if pair is not None and pair.session:
                wait_index = max(index, 1)
                continue
            wait_index = 0
            if stop.wait(DEFAULT_LOCK_RETRY):
                return False
        return False

    def _read(self, options: QueryOptions) -> tuple[KVPair | None, int]:
        try:
            return self.kv.get(self.options.key, options)
        except ClientError as err:
            raise LockError(f"failed to read lock: {err}") from None

    # ---- holding

    def _monitor(self, on_lost: Callable[[], None] | None) -> None:
        """monitorLock: consistent blocking reads until the key is gone or names another session."""
        opts, index = self.options, 0
        retries = opts.monitor_retries
        while self.held:
            try:
                pair, index = self.kv.get(opts.key, QueryOptions(consistent=True, index=index, wait=MONITOR_WAIT))
            except ClientError as err:
                if retries > 0 and retryable(err):
                    time.sleep(opts.monitor_retry_time)
                    retries -= 1
                    index = 0
                    continue
                break
            if pair is None or pair.session != self.session:
                break
            retries = opts.monitor_retries
            index = max(index, 1)
        self.lost.set()
        if on_lost is not None:
            on_lost()

    def _start_renewing(self) -> None:
        done = threading.Event()
        self._renew_done = done
        self._renewer = threading.Thread(
            target=self._renew, args=(self.session, done), name="lock-session-renew", daemon=True
        )
        self._renewer.start()

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

    # ---- release and clean-up

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
        pair, _index = self._read(QueryOptions())
        if pair is None:
            return
        if pair.flags != LOCK_FLAG_VALUE:
            raise LockConflictError()
        if pair.session:
            raise LockInUseError()
        try:
            removed = self.kv.delete_cas(self.options.key, pair.modify_index)
        except ClientError as err:
            raise LockError(f"failed to remove lock: {err}") from None
        if not removed:
            raise LockInUseError()
