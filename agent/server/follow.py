"""A client agent's leader: asked of a live server (`Status.Leader`, `Status.Peers` on the server port).

Clients run no Raft; as Consul's clients forward `/v1/status/leader` to a server, ours keeps the answer in the
member table (so every read sees it without a round trip), asking every ``interval`` and at once when the pool
changes (`poke`).  A server that does not answer is skipped for the next one, in turn.
"""

from __future__ import annotations

import logging

import trio

from agent.members import STATUS_ALIVE, MemberTable

from . import rpc
from .pool import pool_servers

log = logging.getLogger("triumvir.raft.follow")


class LeaderFollower:
    def __init__(self, table: MemberTable, datacenter: str, interval: float) -> None:
        self.table = table
        self.datacenter = datacenter
        self.interval = interval
        self._wake = trio.Event()

    def poke(self) -> None:
        """The pool changed: ask again now."""
        self._wake.set()

    async def run(self) -> None:
        turn = 0
        while True:
            servers = sorted(p.address for p in pool_servers(self.table.current.members.values(),
                                                             self.datacenter).values() if p.status == STATUS_ALIVE)
            leader, peers = "", ()
            if servers:
                start = turn % len(servers)
                for address in servers[start:] + servers[:start]:
                    try:
                        leader = str(await rpc.call(address, "Status.Leader", timeout=self.interval * 2) or "")
                        peers = tuple(await rpc.call(address, "Status.Peers", timeout=self.interval * 2))
                        break
                    except rpc.RPCError as err:
                        log.debug("agent: cannot ask %s for the leader: %s", address, err)
                        leader, peers = "", ()
                        turn += 1
            self.table.set_leader(leader, peers)
            with trio.move_on_after(self.interval):
                await self._wake.wait()
            self._wake = trio.Event()
