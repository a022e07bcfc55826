"""Hang-up watches for slow handlers only, started by one task per server instead of one per request.

Go reads a connection in the background while its handler runs, and a hang-up cancels the handler.  Nearly
every request is answered within a millisecond, and for those a watch of its own (a task, a scope, a timer, a
cancellation) cost more than the answer.  So a connection only says when its handler starts and ends (two dict
operations); this one task sleeps until the oldest running handler has run ``after`` seconds and only then
starts that connection's watch, in its own nursery.  A handler that parks (a blocking query) is watched from
``after`` to ``2 * after`` after it started, as before.
"""

from __future__ import annotations

import logging
from typing import Protocol

import trio

__all__ = ["WATCH_AFTER", "HandlerWatch", "Watched"]

log = logging.getLogger("agent.http")

#: A handler is watched for a hang-up once it has run this long.
WATCH_AFTER = 0.02


class Watched(Protocol):
    """A connection whose handler may be watched: ``watch_peer`` runs until cancelled or the peer is gone."""

    async def watch_peer(self) -> None: ...


class HandlerWatch:
    """``started(conn)`` / ``finished(conn)`` around a handler; ``run`` starts the watches that are due."""

    def __init__(self, after: float = WATCH_AFTER) -> None:
        self.after = after
        self._running: dict[Watched, float] = {}  # handler start times, oldest first (insertion order)
        self._watching: dict[Watched, tuple[trio.CancelScope, trio.Event]] = {}
        self._wake: trio.Event | None = None  # set when a handler starts while none was running
        self._nursery: trio.Nursery | None = None

    @property
    def active(self) -> bool:
        """Is ``run`` running (else a connection must bring its own)?"""
        return self._nursery is not None

    def started(self, conn: Watched) -> None:
        self._running[conn] = trio.current_time()
        if self._wake is not None:
            self._wake.set()
            self._wake = None

    def finished(self, conn: Watched) -> trio.Event | None:
        """The handler is done: its watch (if one started) is cancelled; wait on the returned event before the
        connection reads again (the watch may be inside a receive)."""
        if self._running.pop(conn, None) is not None:
            return None
        watching = self._watching.pop(conn, None)
        if watching is None:
            return None
        watching[0].cancel()
        return watching[1]

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            try:
                await self._loop(nursery)
            finally:
                self._nursery = None

    async def _loop(self, nursery: trio.Nursery) -> None:
        while True:
            if not self._running:
                self._wake = trio.Event()
                await self._wake.wait()
                continue
            conn, since = next(iter(self._running.items()))
            due = since + self.after
            if due > trio.current_time():
                await trio.sleep_until(due)
                continue
            del self._running[conn]
            scope, done = trio.CancelScope(), trio.Event()
            self._watching[conn] = (scope, done)
            nursery.start_soon(self._watch, conn, scope, done)

    async def _watch(self, conn: Watched, scope: trio.CancelScope, done: trio.Event) -> None:
        try:
            with scope:
                await conn.watch_peer()
        except Exception:  # one connection's failure must not end every other's watch
            log.exception("http: the hang-up watch of a connection failed")
        finally:
            done.set()
