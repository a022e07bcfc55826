"""Gossip's member events into the agent's member table: one new snapshot per event, then the leader and the
peers file follow.

The feed is the gossip side's only writer of members into ``MemberTable`` (agent/members.py).  After each change
it calls ``on_change`` (the supervisor re-reads the server pool for Raft, the leader follower and the leader's
duties) and marks the peers file dirty; ``save_peers_loop`` rewrites ``<data_dir>/peers.json`` at most once a
second with the alive peers, for a rejoin after restart.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import immutables
import trio

from agent import telemetry
from agent.datadir import DataDir
from agent.members import STATUS_ALIVE, Member, MemberTable
from agent.metrics import Metrics
from protocol.serf import MemberEvent, MemberStatusChanged

__all__ = ["PEER_SAVE_DELAY", "MemberFeed", "to_member"]

#: Coalesce bursts of membership events into one write of the peers file.
PEER_SAVE_DELAY = 1.0


def to_member(m: Any) -> Member:
    """A protocol.serf.Member as the agent's immutable record (agent/http never sees protocol types)."""
    return Member(
        name=m.name,
        addr=m.addr,
        port=m.port,
        tags=immutables.Map(m.tags),
        status=int(m.status),
        protocol_min=m.protocol_min,
        protocol_max=m.protocol_max,
        protocol_cur=m.protocol_cur,
        delegate_min=m.delegate_min,
        delegate_max=m.delegate_max,
        delegate_cur=m.delegate_cur,
    )


class MemberFeed:
    """Member events (``protocol.serf.MemberEvent`` and ``MemberStatusChanged``) to snapshots, the leader hook and
    the peers file."""

    def __init__(
        self,
        table: MemberTable,
        metrics: Metrics,
        node_name: str,
        on_change: Callable[[], None],
        datadir: DataDir | None = None,
    ) -> None:
        self.table = table
        self.metrics = metrics
        self.node_name = node_name
        self.on_change = on_change
        self.datadir = datadir
        self._peers_dirty = trio.Event()

    def add_local(self, member: Any) -> None:
        """The agent's own member, before any event: the table is never without it."""
        self.table.apply("member-join", to_member(member))
        self.on_change()

    def apply(self, event: MemberEvent | MemberStatusChanged) -> None:
        """One member event: counted, a new snapshot, the leader hook, the peers file marked for a rewrite.

        A status changed by an intent alone (a force-leave of a live member, its refutation) is no Serf event:
        it updates the member's status without a history entry or a Serf event metric."""
        if isinstance(event, MemberStatusChanged):
            self.table.set_status(event.member.name, int(event.member.status))
        else:
            telemetry.count_member_event(self.metrics, str(event.kind))
            self.table.apply(str(event.kind), to_member(event.member))
        self.on_change()
        self._peers_dirty.set()

    async def save_peers_loop(self) -> None:
        """Rewrite the peers file after changes, at most once per ``PEER_SAVE_DELAY`` (none without a data dir)."""
        if self.datadir is None:
            return
        while True:
            await self._peers_dirty.wait()
            self._peers_dirty = trio.Event()
            await trio.sleep(PEER_SAVE_DELAY)
            self.save_peers()

    def save_peers(self) -> None:
        assert self.datadir is not None
        peers = sorted(
            f"{m.addr}:{m.port}"
            for m in self.table.current.members.values()
            if m.name != self.node_name and m.status == STATUS_ALIVE
        )
        if peers:
            self.datadir.write_peers(peers)
