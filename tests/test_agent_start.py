"""The agent's start-up joins (agent/agent_joins.py) and signal handling (agent/agent_signals.py), on trio's
MockClock: no process, no socket; the config is a stand-in with only the keys these read."""

from __future__ import annotations

import signal
from types import SimpleNamespace
from typing import Any

import trio
import trio.testing

from agent.agent_joins import initial_joins, retry_join
from agent.agent_signals import GRACEFUL_LEAVE_LIMIT, handle_signals
from agent.api import JoinError


def run(main: Any) -> None:
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def join_config(**over: Any) -> Any:
    keys = {"start_join": [], "retry_join": [], "retry_max": 0, "retry_interval": 30.0, "rejoin_after_leave": False}
    return SimpleNamespace(**{**keys, **over})


class Joins:
    """Agent.join's stand-in: fails until ``answer_on`` (1-based), then reports one member answered."""

    def __init__(self, answer_on: int | None = None) -> None:
        self.calls: list[tuple[float, list[str]]] = []
        self.answer_on = answer_on

    async def __call__(self, addrs: list[str]) -> int:
        self.calls.append((trio.current_time(), list(addrs)))
        if self.answer_on is None or len(self.calls) < self.answer_on:
            raise JoinError("no address answered")
        return 1


class FakeDataDir:
    def __init__(self, peers: list[str], left: bool) -> None:
        self.peers, self._left = peers, left

    def read_peers(self) -> list[str]:
        return self.peers

    def left(self) -> bool:
        return self._left

    def mark_left(self, left: bool) -> None:
        self._left = left


def test_retry_join_waits_its_interval_and_stops_the_agent_after_retry_max() -> None:
    async def main() -> None:
        joins, failed = Joins(), []
        await retry_join(join_config(retry_max=3, retry_interval=10.0), joins, ["10.0.0.1"], lambda: failed.append(1))
        assert [t for t, _ in joins.calls] == [0.0, 10.0, 20.0] and failed == [1]

        joins = Joins(answer_on=2)
        await retry_join(join_config(retry_interval=10.0), joins, ["10.0.0.1"], lambda: failed.append(2))
        assert len(joins.calls) == 2 and failed == [1]  # joined on the second attempt: nothing stops

    run(main)


def test_a_failed_start_join_stops_the_agent_and_known_peers_are_rejoined_unless_it_left() -> None:
    async def main() -> None:
        failed: list[int] = []
        async with trio.open_nursery() as nursery:
            config = join_config(start_join=["10.0.0.9"])
            await initial_joins(config, Joins(), None, "", nursery, lambda: failed.append(1))
        assert failed == [1]

        for left, rejoin_after_leave, rejoined in ((False, False, True), (True, False, False), (True, True, True)):
            joins, datadir = Joins(answer_on=1), FakeDataDir(["10.0.0.1:8301", "10.0.0.5:8301"], left)
            async with trio.open_nursery() as nursery:
                await initial_joins(join_config(rejoin_after_leave=rejoin_after_leave), joins, datadir,
                                    "10.0.0.5:8301", nursery, lambda: failed.append(2))
            assert joins.calls == ([(0.0, ["10.0.0.1:8301"])] if rejoined else []), (left, rejoin_after_leave)
            assert datadir.left() is False  # this start is not a graceful leave any more
        assert failed == [1]

    run(main)


def signal_config(**over: Any) -> Any:
    return SimpleNamespace(**{"skip_leave_on_interrupt": False, "leave_on_terminate": False, **over})


def test_sighup_reloads_sigint_leaves_and_sigterm_exits_1_without_leaving() -> None:
    async def main() -> None:
        calls: list[str] = []

        async def reload() -> None:
            calls.append("reload")

        async def leave() -> None:
            calls.append("leave")

        send, receive = trio.open_memory_channel[int](10)
        for signum in (signal.SIGHUP, signal.SIGHUP, signal.SIGINT):
            send.send_nowait(signum)
        assert await handle_signals(receive, signal_config(), reload, leave) == 0
        assert calls == ["reload", "reload", "leave"]

        send.send_nowait(signal.SIGTERM)  # leave_on_terminate is off
        assert await handle_signals(receive, signal_config(), reload, leave) == 1
        send.send_nowait(signal.SIGINT)
        assert await handle_signals(receive, signal_config(skip_leave_on_interrupt=True), reload, leave) == 1
        assert calls == ["reload", "reload", "leave"]

    run(main)


def test_a_graceful_leave_ends_with_exit_1_on_a_second_signal_or_after_its_limit() -> None:
    async def main() -> None:
        async def stuck_leave() -> None:
            await trio.sleep_forever()

        send, receive = trio.open_memory_channel[int](10)
        send.send_nowait(signal.SIGINT)
        started = trio.current_time()
        assert await handle_signals(receive, signal_config(), stuck_leave, stuck_leave) == 1
        assert trio.current_time() - started == GRACEFUL_LEAVE_LIMIT

        async with trio.open_nursery() as nursery:

            async def second_signal() -> None:
                await trio.sleep(1.0)
                send.send_nowait(signal.SIGINT)

            nursery.start_soon(second_signal)
            send.send_nowait(signal.SIGTERM)
            started = trio.current_time()
            assert await handle_signals(receive, signal_config(leave_on_terminate=True), stuck_leave, stuck_leave) == 1
            assert trio.current_time() - started == 1.0

    run(main)
