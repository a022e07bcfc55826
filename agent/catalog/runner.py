"""The trio side of catalog replication: gossip events in, app messages and tag updates out, snapshots swapped.

It subscribes to the gossip driver on its own (bounded) channel, feeds member events and app messages to the
sans-IO :class:`Replicator`, runs its timers, sends what it asks for, announces our version in the ``tcv`` tag,
and applies record changes to the member table (``apply_catalog``: the same counter as membership;
blocking reads of the records changed are woken).
Our version is persisted in the data dir so it keeps growing across restarts even if the clock steps back.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import trio

from agent.catalog.indexed import apply_changes
from agent.catalog.record import MAX_VERSION, Announcement, CheckRecord, ServiceRecord
from agent.catalog.replication import Replicator, ReplicatorConfig

if TYPE_CHECKING:
    from agent.datadir import DataDir
    from agent.gossip import GossipDriver
    from agent.members import MemberTable

__all__ = ["TAG", "CatalogRunner"]

log = logging.getLogger("agent.catalog")

TAG = "tcv"  # triumvir catalog version: short, node meta is capped at 512 bytes
VERSION_FILE = "catalog/version"
REAP = "member-reap"
NOTES_WINDOW = 10.0
NOTES_PER_WINDOW = 20


def announced(tags: Mapping[str, str]) -> Announcement | None:
    """The ``tcv`` tag (``version:digest``); None when absent or malformed (not a catalog peer)."""
    return Announcement.parse(tags.get(TAG))


class CatalogRunner:
    def __init__(
        self,
        driver: GossipDriver,
        table: MemberTable,
        name: str,
        *,
        config: ReplicatorConfig,
        datadir: DataDir | None = None,
        node_meta: Mapping[str, str] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.driver = driver
        self.table = table
        self.name = name
        self.config = config
        self.datadir = datadir
        self.node_meta = dict(node_meta or {})
        self.rng = rng or random.Random()
        self.replicator: Replicator | None = None
        self._pending: tuple[tuple[ServiceRecord, ...], tuple[CheckRecord, ...]] = ((), ())
        self._wake = trio.Event()
        self._notes_window_end = -float("inf")
        self._notes_logged = self._notes_suppressed = 0

    # ------------------------------------------------------------------ local record

    def publish_local(self, services: tuple[ServiceRecord, ...], checks: tuple[CheckRecord, ...]) -> None:
        """Our services/checks changed (ServiceManager's publish callback): version, announce, replicate."""
        self._pending = (services, checks)
        if self.replicator is not None:
            self._set_local()
            self._flush()

    def set_node_meta(self, meta: Mapping[str, str]) -> None:
        self.node_meta = dict(meta)
        if self.replicator is not None:
            self._set_local()
            self._flush()

    def _set_local(self) -> None:
        assert self.replicator is not None
        self.replicator.set_local(trio.current_time(), int(time.time() * 1000), *self._pending, self.node_meta)

    def _read_floor(self) -> int:
        if self.datadir is None:
            return 0
        try:
            floor = int((self.datadir.path / VERSION_FILE).read_text().strip())
        except (OSError, ValueError):
            return 0
        return floor if 0 <= floor <= MAX_VERSION // 2 else 0

    # ------------------------------------------------------------------ run

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        events = self.driver.subscribe(4096)
        self.replicator = Replicator(
            self.name, rng=self.rng, now=trio.current_time(), config=self.config, version_floor=self._read_floor()
        )
        for member in self.driver.members():
            self._on_member(member.name, int(member.status), member.tags)
        self._set_local()
        self._flush()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._events, events)
            nursery.start_soon(self._timers)
            task_status.started()

    async def _events(self, events: trio.MemoryReceiveChannel[Any]) -> None:
        from protocol.serf import AppMessage, MemberEvent  # the runner is gossip's peer, as the supervisor is

        assert self.replicator is not None
        async with events:
            async for ev in events:
                if isinstance(ev, MemberEvent):
                    if str(ev.kind) == REAP:
                        self.replicator.member_gone(ev.member.name)
                    else:
                        self._on_member(ev.member.name, int(ev.member.status), ev.member.tags)
                elif isinstance(ev, AppMessage):
                    self.replicator.handle_message(trio.current_time(), ev.from_node, ev.payload)
                else:
                    continue
                self._flush()

    def _on_member(self, name: str, status: int, tags: Mapping[str, str]) -> None:
        assert self.replicator is not None
        self.replicator.member(trio.current_time(), name, status, announced(tags))

    async def _timers(self) -> None:
        assert self.replicator is not None
        while True:
            deadline = self.replicator.poll_timeout()
            with trio.move_on_at(deadline if deadline is not None else float("inf")):
                await self._wake.wait()
            self._wake = trio.Event()
            self.replicator.handle_timeout(trio.current_time())
            self._flush(wake=False)

    # ------------------------------------------------------------------ outputs

    def _flush(self, *, wake: bool = True) -> None:
        """Send, apply and announce whatever the replicator produced; ``wake`` the timer loop (its deadline may
        have moved) unless it is the caller."""
        replicator = self.replicator
        assert replicator is not None
        while (out := replicator.poll_send()) is not None:
            node, payload = out
            try:
                self.driver.send_app_message(node, payload)
            except KeyError:
                log.debug("catalog: %s is no longer a member; message dropped", node)
        self._log_notes(replicator.poll_notes())
        changes = replicator.poll_changes()
        if changes:
            self.table.apply_catalog(lambda catalog, index: apply_changes(catalog, changes, index), changes)
        announcement = replicator.poll_announce(trio.current_time())
        if announcement is not None:
            self._announce(announcement)
        if wake:
            self._wake.set()

    def _log_notes(self, notes: list[str]) -> None:
        """Refusals and drops, at most NOTES_PER_WINDOW lines per NOTES_WINDOW seconds (a flood of forged
        messages must not flood the log); the rest are counted and summed up when the window ends."""
        now = trio.current_time()
        if now >= self._notes_window_end:
            if self._notes_suppressed:
                log.warning("catalog: %d more refused or malformed messages not logged", self._notes_suppressed)
            self._notes_window_end, self._notes_logged, self._notes_suppressed = now + NOTES_WINDOW, 0, 0
        for note in notes:
            if self._notes_logged < NOTES_PER_WINDOW:
                self._notes_logged += 1
                log.warning("catalog: %s", note)
            else:
                self._notes_suppressed += 1

    def _announce(self, announcement: Announcement) -> None:
        version = announcement.version
        tags = dict(self.driver.machine.tags)  # type: ignore[attr-defined]
        tags[TAG] = announcement.tag()
        try:
            self.driver.set_tags(tags)
        except ValueError as exc:
            log.error("catalog: cannot announce version %d: %s", version, exc)
        if self.datadir is not None:
            try:
                self.datadir.atomic_write(VERSION_FILE, str(version).encode())
            except OSError as exc:
                log.warning("catalog: cannot persist version %d: %s", version, exc)

    def statistics(self) -> Any:
        return self.replicator.stats if self.replicator is not None else None
