"""agent.server.driver (a skeleton): the order persist -> send -> apply -> advance, with a real RaftStore and
real transports on loopback, driven by a trivial scripted node (the real core is another module's)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio

from agent.server.driver import Driver, StateMachine
from agent.server.hardstate import HardStateFile
from agent.server.raftstore import RaftStore
from agent.server.transport import Transport
from protocol.raft.types import Entry, HardState, Message, MsgType, Ready

DEADLINE = 15.0


class ScriptedNode:
    """Each proposal becomes one Ready: persist the entry and a hard state, send it to b, apply it."""

    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.pending: list[Ready] = []
        self.ticks = 0
        self.stepped: list[Message] = []
        self.index = 0

    def tick(self) -> None:
        self.ticks += 1

    def step(self, msg: Message) -> None:
        self.stepped.append(msg)

    def propose(self, data: bytes) -> None:
        self.index += 1
        e = Entry(self.index, 1, data=data)
        self.pending.append(Ready(
            entries=(e,), hard_state=HardState(1, "a", self.index), must_sync=True, committed_entries=(e,),
            messages=(Message(type=MsgType.APPEND, to="b", from_="a", term=1, index=self.index - 1, entries=(e,)),),
        ))

    def has_ready(self) -> bool:
        return bool(self.pending)

    def ready(self) -> Ready:
        return self.pending[0]

    def advance(self) -> None:
        self.pending.pop(0)
        self.events.append("advance")


class RecordingStore(RaftStore):
    events: list[str]

    def sync(self) -> None:
        super().sync()
        self.events.append("sync")


class RecordingTransport(Transport):
    def __init__(self, *args: Any, store_dir: Path, events: list[str], **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.store_dir = store_dir
        self.events = events

    def send_all(self, msgs: Sequence[Message]) -> None:
        on_disk = HardStateFile(self.store_dir / "hardstate").load()  # what a restart would read now
        self.events.append(f"send (hard state on disk: commit {on_disk.commit})")
        super().send_all(msgs)


def test_a_ready_is_persisted_then_sent_then_applied_then_advanced(tmp_path: Path) -> None:
    async def main() -> None:
        events: list[str] = []
        store = RecordingStore.open(tmp_path, "c")
        store.events = events
        node = ScriptedNode(events)
        a = RecordingTransport("a", "c", port=0, store_dir=tmp_path / "raft", events=events)
        b = Transport("b", "c", port=0)
        applied: list[Entry] = []

        def apply(entries: Sequence[Entry]) -> None:
            applied.extend(entries)
            events.append("apply")

        driver = Driver(node, store, a, StateMachine(apply), tick_interval=0.01)
        async with trio.open_nursery() as nursery:
            await nursery.start(a.run)
            baddr = await nursery.start(b.run)
            a.add_peer("b", f"{baddr[0]}:{baddr[1]}")
            b.add_peer("a", None)
            await nursery.start(driver.run)
            for i in range(1, 4):
                await driver.propose(b"cmd%d" % i)
            with trio.fail_after(DEADLINE):
                got = [await b.inbox.receive() for _ in range(3)]
            assert [m.entries[0].data for m in got] == [b"cmd1", b"cmd2", b"cmd3"]
            with trio.fail_after(DEADLINE):
                while len(applied) < 3:
                    await trio.sleep(0.01)
            assert events == [
                step for i in range(1, 4)
                for step in ("sync", f"send (hard state on disk: commit {i})", "apply", "advance")
            ]
            b.send(Message(type=MsgType.HEARTBEAT, to="a", from_="b", term=1))
            with trio.fail_after(DEADLINE):
                while not node.stepped or node.ticks < 3:
                    await trio.sleep(0.01)
            assert node.stepped[0].type is MsgType.HEARTBEAT
            nursery.cancel_scope.cancel()
        store.close()
        reopened = RaftStore.open(tmp_path, "c")
        assert [e.data for e in reopened.entries(1, 4)] == [b"cmd1", b"cmd2", b"cmd3"]
        reopened.close()

    trio.run(functools.partial(main))
