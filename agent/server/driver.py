"""A SKELETON of the Raft driver: runs a node of the core's shape against `RaftStore` and `Transport`.

Every Ready is handled in the order the core requires (docs/raft.md): persist (snapshot, entries, hard state;
fsync when the core says so), then send, then apply, then advance.  Persisting is blocking file IO, so it runs
in a worker thread (`trio.to_thread`); the node itself is only ever called from this task, between awaits, so
it needs no lock, and no input is fed to it while a Ready is in flight.

Left for the integration with the real core: leadership transfer on leave, read-index plumbing to HTTP,
snapshot triggering (when to call `RaftStore.create_snapshot` + `compact`), peer addresses from the gossip pool,
metrics.  This module exists so the order is written once and tested; it is not wired into the agent yet.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import attrs
import trio

from protocol.raft.types import Entry, Message, ReadState, Ready, Snapshot, SoftState

from .raftstore import RaftStore
from .transport import Transport


class RaftNode(Protocol):
    """The core's RawNode shape, as far as the driver uses it."""

    def tick(self) -> None: ...

    def step(self, msg: Message) -> None: ...

    def propose(self, data: bytes) -> None: ...

    def has_ready(self) -> bool: ...

    def ready(self) -> Ready: ...

    def advance(self) -> None: ...


@attrs.define
class StateMachine:
    """What the driver calls once entries are committed: the state store's side."""

    apply: Callable[[Sequence[Entry]], None]
    restore: Callable[[Snapshot], None] = lambda _snap: None
    read_ready: Callable[[Sequence[ReadState]], None] = lambda _states: None


@attrs.frozen
class _Tick:
    pass


@attrs.frozen
class _Propose:
    data: bytes


class Driver:
    def __init__(
        self,
        node: RaftNode,
        store: RaftStore,
        transport: Transport,
        machine: StateMachine,
        *,
        tick_interval: float,
        max_batch: int = 256,
    ) -> None:
        self.node = node
        self.store = store
        self.transport = transport
        self.machine = machine
        self.tick_interval = tick_interval
        self.max_batch = max_batch
        self.soft_state = SoftState()
        self._events_send, self._events = trio.open_memory_channel[Message | _Tick | _Propose](1024)

    async def propose(self, data: bytes) -> None:
        await self._events_send.send(_Propose(data))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._ticker)
            nursery.start_soon(self._forward_inbox)
            task_status.started()
            await self._loop()

    async def _ticker(self) -> None:
        while True:
            await trio.sleep(self.tick_interval)
            await self._events_send.send(_Tick())

    async def _forward_inbox(self) -> None:
        async for msg in self.transport.inbox:
            await self._events_send.send(msg)

    async def _loop(self) -> None:
        while True:
            batch = [await self._events.receive()]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._events.receive_nowait())
                except trio.WouldBlock:
                    break
            for event in batch:
                self._feed(event)
            while self.node.has_ready():
                await self._handle(self.node.ready())

    def _feed(self, event: Message | _Tick | _Propose) -> None:
        if isinstance(event, _Tick):
            self.node.tick()
        elif isinstance(event, _Propose):
            self.node.propose(event.data)
        else:
            self.node.step(event)

    async def _handle(self, rd: Ready) -> None:
        """persist -> send -> apply -> advance."""
        if rd.soft_state is not None:
            self.soft_state = rd.soft_state
        if rd.snapshot is not None or rd.entries or rd.hard_state is not None:
            await trio.to_thread.run_sync(self._persist, rd)
        self.transport.send_all(rd.messages)
        if rd.snapshot is not None:
            self.machine.restore(rd.snapshot)
        if rd.committed_entries:
            self.machine.apply(rd.committed_entries)
        if rd.read_states:
            self.machine.read_ready(rd.read_states)
        self.node.advance()

    def _persist(self, rd: Ready) -> None:
        """In a worker thread: the only code touching the store while a Ready is in flight."""
        if rd.snapshot is not None:
            self.store.apply_snapshot(rd.snapshot)
        if rd.entries:
            self.store.append(rd.entries)
        if rd.hard_state is not None:
            self.store.set_hard_state(rd.hard_state)
        if rd.must_sync:
            self.store.sync()
