"""Every agent's copy of the registered (external) nodes: the store followed by a blocking query, published into
the member table so that HTTP, DNS and streams read them from the same snapshot as everything else.

Registrations live in the servers' Raft store; reads of the catalog must not make a round trip to a server each
(DNS answers from the snapshot in microseconds), so each agent, server or client, runs one `RegisteredMirror`:
it asks ``catalog.registered`` (`agent.server.queries`) through its `StoreAccess` as a blocking query at the
last index it saw, and on each answer publishes an `agent.catalog.registered.Registered` with
``MemberTable.set_registered`` (a new snapshot, its index one higher, every blocking catalog reader woken).

Mode ``stale``: any server answers from its own state, with or without a leader, so the mirrors of a large
cluster spread over the servers (Consul's DNS reads stale by default too).  An index that goes backwards (a
server whose store was restored, or a lagging one after a timeout) is taken as it comes and the next query starts
from it, as Consul tells its clients to reset.  Errors (no server known, no leader to forward to, a server that
does not answer, an answer that does not decode) keep the last published copy, are logged once per outage, and
retry after a bounded exponential backoff that is cut short when the table's leader or servers change.
"""

from __future__ import annotations

import logging

import trio

from agent.catalog.registered import WireDecoder
from agent.members import MemberTable

from .access import NoLeader, ReadMode, StoreAccess, StoreUnavailable

__all__ = ["QUERY", "RegisteredMirror"]

log = logging.getLogger("triumvir.mirror")

QUERY = "catalog.registered"
WAIT = 60.0  # seconds a blocking query parks on the server (short enough to notice a silently dead server)
MIN_BACKOFF = 0.2
MAX_BACKOFF = 10.0


class RegisteredMirror:
    """``run`` follows the store until cancelled; ``answers``/``errors`` count for tests and statistics."""

    def __init__(self, access: StoreAccess, table: MemberTable, *, wait: float = WAIT,
                 min_backoff: float = MIN_BACKOFF, max_backoff: float = MAX_BACKOFF) -> None:  # fmt: skip
        self.access = access
        self.table = table
        self.wait = wait
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.index = 0
        self.decoder = WireDecoder()  # decodes only the nodes that changed since the last answer
        self.answers = 0
        self.errors = 0

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        delay = self.min_backoff
        failing = False
        while True:
            try:
                result = await self.access.query(QUERY, {}, ReadMode("stale", index=self.index, wait=self.wait))
                registered = self.decoder.decode(result.index, result.value)
            except (NoLeader, StoreUnavailable, ValueError) as err:
                self.errors += 1
                if not failing:
                    log.warning("mirror: cannot read the registered nodes (keeping the last copy, %d nodes): %s",
                                self._published(), err or type(err).__name__)
                failing = True
                await self._back_off(delay)
                delay = min(2 * delay, self.max_backoff)
                continue
            if failing:
                log.info("mirror: reading the registered nodes again (%d nodes)", len(registered.nodes))
            failing = False
            delay = self.min_backoff
            self.answers += 1
            self.index = result.index
            self.table.set_registered(registered)

    def _published(self) -> int:
        registered = self.table.current.registered
        return 0 if registered is None else len(registered.nodes)

    async def _back_off(self, delay: float) -> None:
        """Sleep ``delay``, or less once the table's leader or servers change (a client just learned of a
        server; a new leader was elected): retrying then is what can succeed.  At least ``min_backoff``."""
        snapshot = self.table.current  # as it was when the query failed: a change during the sleep counts too
        seen = (snapshot.leader, snapshot.servers)
        await trio.sleep(self.min_backoff)
        with trio.move_on_after(max(0.0, delay - self.min_backoff)):
            while (snapshot.leader, snapshot.servers) == seen:
                snapshot = await self.table.wait_past(snapshot.index)
