"""GossipDriver against a fake machine with the same IO surface as protocol.Serf.

Timer tests run on trio's MockClock (autojump): virtual seconds pass instantly, and a timer that fires at the
wrong virtual instant is caught exactly.  Socket tests run on the real clock with short bounds, because
autojump would also skip virtual time while a task waits on real IO.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import json
import os
import signal
import socket
import subprocess
import sys
from collections import deque
from collections.abc import Awaitable, Callable
from enum import IntEnum
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from conftest import next_loopback_ip
from procs import free_port, wait_for

from agent.gossip import GossipDriver, parse_addr
from agent.gossip.cli import build_arg_parser, node_config
from agent.gossip.members_file import member_record, status_word, write_members_file
from protocol.config import Config
from protocol.node import Datagram, Diagnostic, JoinResult, LeaveDone, StreamOpen

Addr = tuple[str, int]


def trio_test(*, mock_clock: bool) -> Callable[[Callable[..., Awaitable[None]]], Callable[..., None]]:
    """Run an async test under trio.run (pytest-trio is not a dependency)."""

    def deco(fn: Callable[..., Awaitable[None]]) -> Callable[..., None]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> None:
            clock = trio.testing.MockClock(autojump_threshold=0) if mock_clock else None
            trio.run(functools.partial(fn, *args, **kwargs), clock=clock)

        return wrapper

    return deco


# --------------------------------------------------------------------------- the fake machine


@attrs.frozen
class Tick:
    label: str
    at: float


@attrs.frozen
class Got:
    addr: Addr
    data: bytes


class FakeMachine:
    """A toy protocol with the driver-facing surface of protocol.Serf.

    UDP: ``boom`` raises (a malformed packet), ``ping:X`` is answered with ``pong:X``; every accepted datagram is
    an event ``Got``.  TCP in: chunks are collected per accepted stream (as protocol.Node's reader does); a message
    is complete at a newline, the reply is ``echo:`` + message; more than ``max_stream`` bytes gets ``too big``.
    join: dials each address with ``hello\\n`` and expects a newline-terminated reply, and pings it over UDP.  Timers:
    ``schedule(at, label)`` gives a ``Tick`` at ``at``.
    """

    def __init__(
        self, now: float, *, dial_timeout: float = 1.0, leave_delay: float | None = 1.0, max_stream: int = 1 << 20
    ) -> None:
        self.now0 = now
        self.max_stream = max_stream
        self._in: dict[int, tuple[Addr, bytearray]] = {}
        self._in_seq = 0
        self.closed_streams: list[int] = []
        self._replies: dict[int, bytearray] = {}
        self.dial_timeout = dial_timeout
        self.leave_delay = leave_delay
        self._timers: list[tuple[float, int, str]] = []
        self._seq = 0
        self._tx: deque[Any] = deque()
        self._ev: deque[Any] = deque()
        self._dials: dict[int, Addr] = {}
        self.inbound: list[tuple[Addr, bytes]] = []
        self.stream_errors: list[tuple[int, str]] = []
        self.timeouts: list[float] = []
        self.tags: dict[str, str] = {}

    def schedule(self, at: float, label: str) -> None:
        self._seq += 1
        heapq.heappush(self._timers, (at, self._seq, label))

    # inputs
    def handle_datagram(self, now: float, addr: Addr, data: bytes) -> None:
        if data == b"boom":
            raise ValueError("malformed packet")
        if data.startswith(b"ping:"):
            self._tx.append(Datagram(addr, b"pong:" + data[5:]))
        if data == b"bad-dest":  # a machine asked to send where no socket can (port beyond 16 bits)
            self._tx.append(Datagram((addr[0], 1 << 20), b"x"))
        self._ev.append(Got(addr, data))

    def accept_stream(self, now: float, addr: Addr) -> int:
        self._in_seq += 1
        self._in[self._in_seq] = (addr, bytearray())
        return self._in_seq

    def handle_stream_data(self, now: float, stream_id: int, chunk: bytes) -> bytes | None:
        addr, buf = self._in[stream_id]
        buf += chunk
        self.inbound.append((addr, bytes(chunk)))
        if len(buf) > self.max_stream:
            return b"too big"
        if buf == b"crash\n":
            raise RuntimeError("machine bug on a stream")
        if buf.endswith(b"\n"):
            return b"echo:" + bytes(buf)
        return None

    def close_stream(self, stream_id: int) -> None:
        self.closed_streams.append(stream_id)
        del self._in[stream_id]

    def handle_stream_reply(self, now: float, stream_id: int, chunk: bytes) -> bool:
        data = self._replies.setdefault(stream_id, bytearray())
        data += chunk
        if not data.endswith(b"\n"):
            return False
        del self._replies[stream_id]
        data = bytes(data)
        addr = self._dials.pop(stream_id)
        self._ev.append(JoinResult(addr, data == b"echo:hello\n", "" if data == b"echo:hello\n" else repr(data)))
        return True

    def handle_stream_error(self, now: float, stream_id: int, reason: str) -> None:
        self.stream_errors.append((stream_id, reason))
        addr = self._dials.pop(stream_id)
        self._ev.append(JoinResult(addr, False, reason))

    def handle_timeout(self, now: float) -> None:
        self.timeouts.append(now)
        while self._timers and self._timers[0][0] <= now:
            at, _, label = heapq.heappop(self._timers)
            assert at <= now
            self._ev.append(LeaveDone() if label == "leave" else Tick(label, now))

    # commands
    def join(self, now: float, addrs: list[Addr]) -> None:
        for a in addrs:
            self._seq += 1
            self._dials[self._seq] = a
            self._tx.append(StreamOpen(self._seq, a, b"hello\n", True, self.dial_timeout))
            self._tx.append(Datagram(a, b"ping:join"))

    def leave(self, now: float) -> None:
        self._ev.append(Diagnostic("info", "leaving"))
        if self.leave_delay is not None:
            self.schedule(now + self.leave_delay, "leave")

    def set_tags(self, now: float, tags: dict[str, str]) -> None:
        self.tags = tags
        self.schedule(now + 1.0, "tags")

    def members(self) -> list[Any]:
        return []

    # outputs
    def poll_transmit(self) -> Any:
        return self._tx.popleft() if self._tx else None

    def poll_event(self) -> Any:
        return self._ev.popleft() if self._ev else None

    def poll_timeout(self) -> float | None:
        return self._timers[0][0] if self._timers else None


async def start_driver(nursery: trio.Nursery, machine: Any, **kw: Any) -> GossipDriver:
    driver = GossipDriver(machine, ("127.0.0.1", 0), **kw)
    await nursery.start(driver.run)
    return driver


# --------------------------------------------------------------------------- timers (virtual time)


@trio_test(mock_clock=True)
async def test_timers_fire_at_their_virtual_deadline() -> None:
    t0 = trio.current_time()
    fake = FakeMachine(t0)
    for dt, label in [(5.0, "a"), (10.0, "b"), (3600.0, "c")]:
        fake.schedule(t0 + dt, label)
    async with trio.open_nursery() as nursery:
        driver = GossipDriver(fake, ("127.0.0.1", 0))
        events = driver.subscribe()
        await nursery.start(driver.run)
        ticks = [await events.receive() for _ in range(3)]
        assert ticks == [Tick("a", t0 + 5.0), Tick("b", t0 + 10.0), Tick("c", t0 + 3600.0)]
        assert fake.timeouts == [t0 + 5.0, t0 + 10.0, t0 + 3600.0]  # no early or spurious wake-ups
        nursery.cancel_scope.cancel()


@trio_test(mock_clock=True)
async def test_command_wakes_the_timer_loop_early() -> None:
    t0 = trio.current_time()
    fake = FakeMachine(t0)
    fake.schedule(t0 + 100.0, "late")
    async with trio.open_nursery() as nursery:
        driver = GossipDriver(fake, ("127.0.0.1", 0))
        events = driver.subscribe()
        await nursery.start(driver.run)
        await trio.sleep(3.0)
        driver.set_tags({"role": "x"})  # the fake schedules a timer at now + 1: earlier than "late"
        assert await events.receive() == Tick("tags", t0 + 4.0)
        assert await events.receive() == Tick("late", t0 + 100.0)
        nursery.cancel_scope.cancel()


@trio_test(mock_clock=True)
async def test_leave_waits_for_leave_done_and_is_bounded() -> None:
    t0 = trio.current_time()
    async with trio.open_nursery() as nursery:
        driver = await start_driver(nursery, FakeMachine(t0, leave_delay=2.0))
        assert await driver.leave() is True
        assert trio.current_time() == t0 + 2.0
        nursery.cancel_scope.cancel()

    t1 = trio.current_time()
    async with trio.open_nursery() as nursery:
        driver = await start_driver(nursery, FakeMachine(t1, leave_delay=None))  # never says LeaveDone
        assert await driver.leave() is False
        assert trio.current_time() - t1 == pytest.approx(driver._leave_bound())
        nursery.cancel_scope.cancel()


@trio_test(mock_clock=True)
async def test_subscribers_are_bounded_and_never_block_the_driver() -> None:
    t0 = trio.current_time()
    fake = FakeMachine(t0)
    for i in range(50):
        fake.schedule(t0 + 1.0 + i, f"t{i}")
    async with trio.open_nursery() as nursery:
        driver = GossipDriver(fake, ("127.0.0.1", 0))
        stuck = driver.subscribe(4)  # never read
        closing = driver.subscribe(4, close_on_overflow=True)  # never read until the end
        gone = driver.subscribe(4)
        await gone.aclose()  # unsubscribed: must not count as a drop nor break anything
        reader = driver.subscribe(100)
        await nursery.start(driver.run)
        got = [await reader.receive() for _ in range(50)]
        assert [t.label for t in got] == [f"t{i}" for i in range(50)]
        assert trio.current_time() == t0 + 50.0  # the stuck subscribers did not slow the timers down
        # The stuck subscriber kept the first 4 and lost 46; the closing one was closed at the 5th event.
        assert [stuck.receive_nowait().label for _ in range(4)] == ["t0", "t1", "t2", "t3"]
        with pytest.raises(trio.WouldBlock):
            stuck.receive_nowait()
        assert [t.label async for t in closing] == ["t0", "t1", "t2", "t3"]
        assert driver.stats.events_dropped == 46 + 1
        assert driver.stats.subscribers_closed == 1
        nursery.cancel_scope.cancel()


# --------------------------------------------------------------------------- real sockets


async def udp_client() -> trio.socket.SocketType:
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await sock.bind(("127.0.0.1", 0))
    return sock


@trio_test(mock_clock=False)
async def test_a_bad_datagram_does_not_kill_the_udp_loop() -> None:
    fake = FakeMachine(trio.current_time())
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            driver = await start_driver(nursery, fake)
            assert driver.address is not None
            events = driver.subscribe()
            client = await udp_client()
            with client:
                await client.sendto(b"boom", driver.address)
                await client.sendto(b"bad-dest", driver.address)
                await client.sendto(b"ping:1", driver.address)
                data, from_ = await client.recvfrom(1500)
                assert (data, from_) == (b"pong:1", driver.address)
                assert await events.receive() == Got(client.getsockname(), b"bad-dest")
                assert await events.receive() == Got(client.getsockname(), b"ping:1")
            assert driver.stats.bad_datagrams == 1
            assert driver.stats.datagrams_in == 3
            assert driver.stats.send_errors == 1
            nursery.cancel_scope.cancel()


def test_datagrams_waiting_after_a_stall_are_read_before_overdue_timers() -> None:
    """A stalled process wakes with acks in its socket and their probe timeouts due: the acks reach the machine
    first, every time (trio may run the timer task before the UDP task, which takes one datagram per turn)."""

    async def scenario(clock: trio.testing.MockClock) -> list[Any]:
        t0 = trio.current_time()
        fake = FakeMachine(t0)
        fake.schedule(t0 + 1.0, "probe-timeout")
        async with trio.open_nursery() as nursery:
            driver = await start_driver(nursery, fake)
            assert driver.address is not None
            events = driver.subscribe()
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:  # sync: no checkpoint in between
                for i in range(3):
                    peer.sendto(b"ack:%d" % i, driver.address)
            clock.jump(5.0)  # the stall: the timer is overdue by the time the loop runs again
            got = [await events.receive() for _ in range(4)]
            nursery.cancel_scope.cancel()
        return got

    for _ in range(20):  # trio orders the woken tasks at random: one run would pass by luck half the time
        clock = trio.testing.MockClock()  # no autojump: time moves only when the scenario says so
        got = trio.run(scenario, clock, clock=clock)
        assert [type(e).__name__ for e in got] == ["Got", "Got", "Got", "Tick"], got


@trio_test(mock_clock=True)
async def test_inbound_stream_is_cut_at_tcp_timeout() -> None:
    fake = FakeMachine(trio.current_time())
    async with trio.open_nursery() as nursery:
        driver = await start_driver(nursery, fake, tcp_timeout=7.0)
        assert driver.address is not None
        stream = await trio.open_tcp_stream(*driver.address)
        local = stream.socket.getsockname()
        async with stream:
            await stream.send_all(b"partial")  # never completed
            t_sent = trio.current_time()
            assert await stream.receive_some(100) == b""  # the driver closed it...
            assert trio.current_time() - t_sent == pytest.approx(7.0)  # ...exactly at tcp_timeout
        assert fake.inbound == [(local, b"partial")]
        await wait_until(lambda: driver.stats.streams_in_failed == 1)
        nursery.cancel_scope.cancel()


@trio_test(mock_clock=False)
async def test_inbound_stream_is_fed_incrementally_then_answered() -> None:
    fake = FakeMachine(trio.current_time())
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            driver = await start_driver(nursery, fake, tcp_timeout=3.0)
            assert driver.address is not None
            stream = await trio.open_tcp_stream(*driver.address)
            async with stream:
                await stream.send_all(b"hel")
                await wait_until(lambda: len(fake.inbound) == 1)
                await stream.send_all(b"lo\n")
                reply = b""
                while chunk := await stream.receive_some(100):
                    reply += chunk
            assert reply == b"echo:hello\n"
            assert [d for _, d in fake.inbound] == [b"hel", b"lo\n"]  # each chunk once: the machine keeps the rest
            assert fake.closed_streams == [1]
            nursery.cancel_scope.cancel()


@trio_test(mock_clock=False)
async def test_inbound_stream_size_is_capped_and_machine_errors_contained() -> None:
    fake = FakeMachine(trio.current_time())
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            driver = await start_driver(nursery, fake, tcp_timeout=30.0)
            fake.max_stream = 1000
            assert driver.address is not None
            stream = await trio.open_tcp_stream(*driver.address)
            async with stream:  # the machine's bound: its answer, then the driver closes
                with contextlib.suppress(trio.BrokenResourceError):  # it may close before we finish
                    await stream.send_all(b"x" * 5000)
                assert await stream.receive_some(100) == b"too big"
            stream = await trio.open_tcp_stream(*driver.address)
            async with stream:
                with contextlib.suppress(trio.BrokenResourceError):
                    await stream.send_all(b"crash\n")
                assert await stream.receive_some(100) == b""  # closed long before tcp_timeout
            await wait_until(lambda: driver.stats.streams_in_failed == 1)
            # still serving
            stream = await trio.open_tcp_stream(*driver.address)
            async with stream:
                await stream.send_all(b"ok\n")
                assert await stream.receive_some(100) == b"echo:ok\n"
            nursery.cancel_scope.cancel()


async def wait_until(cond: Callable[[], bool]) -> None:
    while not cond():
        await trio.sleep(0.005)


@trio_test(mock_clock=False)
async def test_two_drivers_over_loopback() -> None:
    """A joins B: a TCP stream both ways through the drivers, and UDP ping/pong; a dead address fails."""
    fa, fb = FakeMachine(trio.current_time()), FakeMachine(trio.current_time())
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            a = await start_driver(nursery, fa)
            b = await start_driver(nursery, fb)
            assert a.address is not None and b.address is not None
            events_a = a.subscribe()
            dead = ("127.0.0.1", free_port("127.0.0.1"))
            assert await a.join([b.address, dead]) == 1
            assert [d for _, d in fb.inbound] == [b"hello\n"]
            assert fb.inbound[0][0][0] == "127.0.0.1"
            assert [reason for _, reason in fa.stream_errors] and "refused" in fa.stream_errors[0][1].lower()
            # B answered the UDP ping to the port its TCP listener is on: one port for both.
            got = []
            while not any(isinstance(e, Got) for e in got):
                got.append(await events_a.receive())
            assert Got(b.address, b"pong:join") in got
            assert a.stats.streams_out == 2 and a.stats.streams_out_failed == 1
            nursery.cancel_scope.cancel()


@trio_test(mock_clock=False)
async def test_dial_timeout_reports_stream_error() -> None:
    """A peer that accepts and never answers: the dial is cut at the StreamOpen's timeout."""
    fake = FakeMachine(trio.current_time(), dial_timeout=0.3)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            silent = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
            nursery.start_soon(trio.serve_listeners, lambda s: trio.sleep_forever(), [silent])
            silent_addr = silent.socket.getsockname()
            driver = await start_driver(nursery, fake)
            t = trio.current_time()
            assert await driver.join([silent_addr]) == 0
            assert 0.3 <= trio.current_time() - t < 2.0
            assert "timed out" in fake.stream_errors[0][1]
            nursery.cancel_scope.cancel()


@trio_test(mock_clock=False)
async def test_a_dial_whose_time_is_already_up_fails_without_killing_the_driver() -> None:
    """A StreamOpen with a negative timeout (a machine's deadline passed while the process was stalled) is a dial
    that times out at once, reported to the machine: trio's move_on_after refuses negative seconds, and that
    ValueError used to take the whole agent down."""
    fake = FakeMachine(trio.current_time(), dial_timeout=-1.0)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            silent = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
            nursery.start_soon(trio.serve_listeners, lambda s: trio.sleep_forever(), [silent])
            driver = await start_driver(nursery, fake)
            assert await driver.join([silent.socket.getsockname()]) == 0
            assert "timed out" in fake.stream_errors[0][1]
            nursery.cancel_scope.cancel()


@trio_test(mock_clock=False)
async def test_cancellation_releases_the_port_and_factory_gets_bound_addr() -> None:
    built: list[Addr] = []

    def factory(addr: Addr) -> FakeMachine:
        built.append(addr)
        return FakeMachine(trio.current_time())

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            driver = GossipDriver(factory, ("127.0.0.1", 0))
            bound = await nursery.start(driver.run)
            assert built == [bound] and bound[1] != 0
            nursery.cancel_scope.cancel()
        # both sockets closed: the same port binds again, TCP and UDP
        again = GossipDriver(FakeMachine(trio.current_time()), bound)
        async with trio.open_nursery() as nursery:
            assert await nursery.start(again.run) == bound
            nursery.cancel_scope.cancel()


@trio_test(mock_clock=False)
async def test_join_needs_a_running_driver_and_resolves_names() -> None:
    driver = GossipDriver(FakeMachine(trio.current_time()), ("127.0.0.1", 0))
    with pytest.raises(RuntimeError):
        await driver.join(["127.0.0.1:1"])
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            b = await start_driver(nursery, FakeMachine(trio.current_time()))
            a = await start_driver(nursery, FakeMachine(trio.current_time()))
            assert b.address is not None
            assert await a.join([f"localhost:{b.address[1]}"]) == 1
            assert await a.join([]) == 0
            nursery.cancel_scope.cancel()


# --------------------------------------------------------------------------- CLI helpers


def test_parse_addr() -> None:
    assert parse_addr("10.0.0.1:7000") == ("10.0.0.1", 7000)
    assert parse_addr("10.0.0.1") == ("10.0.0.1", 7946)
    assert parse_addr("[::1]:7000") == ("::1", 7000)
    assert parse_addr("::1") == ("::1", 7946)


def test_cli_sends_plain_packets_unless_told_to_compress() -> None:
    parser = build_arg_parser()
    plain = node_config(parser.parse_args(["--name", "a"]))
    packed = node_config(parser.parse_args(["--name", "a", "--profile", "local", "--compress-packets"]))
    assert plain == Config.lan() and not plain.compress_packets
    assert packed == attrs.evolve(Config.local(), compress_packets=True)


class _Status(IntEnum):
    NONE = 0
    ALIVE = 1
    LEAVING = 2
    LEFT = 3
    FAILED = 4


@attrs.frozen
class _Member:
    name: str
    addr: str
    port: int
    tags: dict[str, str]
    status: _Status


def test_members_file_is_json_with_serf_status_words(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    members = [_Member("b", "127.0.0.2", 7946, {"role": "x"}, _Status.FAILED), _Member("a", "127.0.0.1", 1, {}, 1)]
    write_members_file(str(path), members)
    assert json.loads(path.read_text()) == [
        {"Name": "a", "Addr": "127.0.0.1", "Port": 1, "Tags": {}, "Status": "alive"},
        {"Name": "b", "Addr": "127.0.0.2", "Port": 7946, "Tags": {"role": "x"}, "Status": "failed"},
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]  # no temp file left behind
    assert status_word(_Status.LEAVING) == "leaving" and status_word(3) == "left"
    assert member_record(members[0])["Status"] == "failed"


def test_cli_two_nodes_join_and_leave_on_sigterm(agents: Any) -> None:
    """Two `python -m agent.gossip` processes: join, see each other alive, SIGTERM -> left, exit 0."""
    pytest.importorskip("protocol.serf", reason="protocol/serf.py has not landed yet")
    a = agents.triumvir("cli-a", tags={"role": "a"})
    b = agents.triumvir("cli-b", join=[a.addr])
    for x, y in ((a, b), (b, a)):
        wait_for(
            lambda x=x, y=y: x.status_of(y.name) == "alive",
            timeout=10,
            what=f"{x.name} sees {y.name} alive",
            diagnostics=agents.diagnostics,
        )
    assert b.members()["cli-a"]["Tags"] == {"role": "a"}
    b.proc.send_signal(signal.SIGTERM)
    wait_for(
        lambda: a.status_of("cli-b") == "left", timeout=15, what="cli-a sees cli-b left", diagnostics=agents.diagnostics
    )
    assert b.proc.wait(15) == 0, agents.diagnostics()


def test_cli_retry_join_waits_for_a_seed_that_starts_later(agents: Any) -> None:
    """--retry-join: a node whose seed is not up yet stays up and joins once the seed is there (serf's
    -retry-join); a 100-agent bench starts seeds too busy to answer within the TCP timeout."""
    ip = next_loopback_ip()
    seed_at = SimpleNamespace(ip=ip, port=free_port(ip))
    b = agents.triumvir("rj-b", args=[f"--retry-join={ip}:{seed_at.port}", "--retry-interval=0.2"])
    wait_for(lambda: "join attempt 2 failed" in b.proc.log_path.read_text(errors="replace"), timeout=15,
             what="rj-b retried", diagnostics=agents.diagnostics)  # fmt: skip
    a = agents.triumvir("rj-a", reuse=seed_at)
    for x, y in ((a, b), (b, a)):
        wait_for(lambda x=x, y=y: x.status_of(y.name) == "alive", timeout=15, what=f"{x.name} sees {y.name}",
                 diagnostics=agents.diagnostics)  # fmt: skip
    assert b.proc.alive()


def test_cli_retry_join_gives_up_after_retry_max(tmp_path: Path) -> None:
    port, dead = free_port("127.0.0.1"), free_port("127.0.0.1")
    argv = [sys.executable, "-m", "agent.gossip", "--name=x", f"--bind=127.0.0.1:{port}", "--profile=local",
            f"--retry-join=127.0.0.1:{dead}", "--retry-interval=0.1", "--retry-max=2"]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    r = subprocess.run(argv, capture_output=True, timeout=30, env=env)
    assert r.returncode == 1, r.stderr.decode()[-2000:]
    assert b"after 2 attempts" in r.stderr and b"join attempt 1 failed" in r.stderr


def test_cli_exits_nonzero_when_join_fails(tmp_path: Path) -> None:
    pytest.importorskip("protocol.serf", reason="protocol/serf.py has not landed yet")

    port = free_port("127.0.0.1")
    dead = free_port("127.0.0.1")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "agent.gossip",
            "--name=x",
            f"--bind=127.0.0.1:{port}",
            "--profile=local",
            f"--join=127.0.0.1:{dead}",
        ],
        capture_output=True,
        timeout=30,
        env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent)),
    )
    assert r.returncode == 1, r.stderr.decode()[-2000:]
    assert b"could not join" in r.stderr
