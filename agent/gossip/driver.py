"""The trio driver around the sans-IO gossip machine (protocol.Serf or protocol.Node).

The machine never touches a socket or a clock; this module owns both.  Every input (a datagram, the bytes of a
TCP stream, a timer, a command) is fed to the machine synchronously, then the *transmit pump* is kicked: it drains
``poll_transmit()`` (UDP sends, TCP dials) and ``poll_event()`` (subscribers, logging, join/leave waiters).
Because trio is cooperative and the machine is only ever called from synchronous code between checkpoints, the
machine needs no locking.

Task layout (all inside ``run``; cancelling ``run`` stops everything):

- probing nursery: the UDP receive loop, the timer loop, the transmit pump;
- anti-entropy nursery: the TCP listener (one handler task per connection) and the stream dialer tasks.

``now`` is ``trio.current_time()``: a machine given to the driver must use the same clock (build it inside
``trio.run``, or hand the driver a factory, see ``GossipDriver``).

``python -m agent.gossip`` runs a bare gossip node (agent/gossip/cli.py).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import socket
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import trio

from agent.connlimit import ACCEPT_CAPACITY_ERRNOS
from agent.gossip.driver_records import DriverStats, JoinWaiter, Subscriber
from agent.gossip.machine import Addr, Machine, MachineFactory
from agent.gossip.udp_send import UdpSender
from agent.hostport import is_wildcard, listen_error, parse_addr
from agent.loglevels import python_level
from protocol.node import Diagnostic, JoinResult, LeaveDone, StreamOpen
from protocol.serf import MemberEvent

log = logging.getLogger("triumvir.gossip")

#: memberlist's udpPacketBufSize: the largest datagram we read.
UDP_PACKET_BUF_SIZE = 65536
#: memberlist's udpRecvBufSize: what we ask the kernel for, so bursts of gossip are not dropped.
UDP_RECV_BUF_SIZE = 2 * 1024 * 1024
#: How much one read of a TCP stream takes at most: the loop yields between reads, so a large stream is fed to
#: the machine (which parses each byte once and bounds the stream: Config.stream_max_bytes) in slices.
STREAM_READ_SIZE = 65536
#: The most datagrams read at once, without waiting, before overdue timers run (_read_waiting_datagrams).
UDP_DRAIN_MAX = 256
#: How often we try to find a port free for both TCP and UDP when asked for port 0.
BIND_ATTEMPTS = 10
#: Errors from recvfrom() that an ICMP report or a peer can cause; never fatal for the loop.
_UDP_TRANSIENT_ERRNOS = {
    errno.ECONNREFUSED,
    errno.ECONNRESET,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.EMSGSIZE,
}



def _norm_addr(addr: Sequence[Any]) -> Addr:
    # IPv6 sockets report (host, port, flowinfo, scope_id); the machine wants (host, port).
    return (str(addr[0]), int(addr[1]))


class GossipDriver:
    """Runs a sans-IO gossip machine on real UDP/TCP sockets bound to one port.

    ``machine`` is either the machine itself or a factory ``f(bound_addr) -> machine``, called inside ``run``
    once the sockets are bound: that is how a node bound to port 0 learns the port it must advertise.
    ``tcp_timeout`` bounds each inbound connection (memberlist's TCPTimeout); outbound dials use the timeout
    carried by each ``StreamOpen``. The bytes of a stream are bounded by the machine (Config.stream_max_bytes).
    """

    def __init__(
        self,
        machine: Machine | MachineFactory,
        bind: Addr,
        *,
        tcp_timeout: float | None = None,
    ) -> None:
        if hasattr(machine, "handle_datagram"):
            self._machine: Machine | None = machine  # type: ignore[assignment]
            self._factory: MachineFactory | None = None
        else:
            self._machine = None
            self._factory = machine  # type: ignore[assignment]
        self._bind = _norm_addr(bind)
        self._tcp_timeout = tcp_timeout
        self.stats = DriverStats()
        self.address: Addr | None = None
        self._sender: UdpSender | None = None
        self._udp_nowait: socket.socket | None = None  # a duplicate of the UDP socket's fd, for reads that never wait
        self._subscribers: list[Subscriber] = []
        self._join_waiters: list[JoinWaiter] = []
        #: "addr: reason" for each address the last join() could not use (what an operator needs to see)
        self.last_join_errors: list[str] = []
        self._leave_done: trio.Event | None = None
        self._leave_timed_out = False
        self._pump_wake = trio.Event()
        self._timer_wake = trio.Event()
        self._dial_nursery: trio.Nursery | None = None
        self._running = False

    # ------------------------------------------------------------------ properties

    @property
    def machine(self) -> Machine:
        """The machine (built by the factory once ``run`` has bound the sockets)."""
        if self._machine is None:
            raise RuntimeError("the machine is built when run() has bound the sockets")
        return self._machine

    @property
    def tcp_timeout(self) -> float:
        """The bound on an inbound connection: the constructor's, else the machine config's, else 10 s."""
        if self._tcp_timeout is not None:
            return self._tcp_timeout
        config = getattr(self._machine, "config", None)
        return float(getattr(config, "tcp_timeout", 10.0))

    # ------------------------------------------------------------------ run

    async def run(self, *, task_status: trio.TaskStatus[Addr] = trio.TASK_STATUS_IGNORED) -> None:
        """Bind, report the bound (host, port) through ``task_status``, then serve until cancelled."""
        if self._running:
            raise RuntimeError("GossipDriver.run() is already running")
        tcp, udp, bound = await self._bind_sockets()
        try:
            self._udp_nowait = socket.socket(fileno=os.dup(udp.fileno()))
            self._udp_nowait.setblocking(False)
            self._sender = UdpSender(udp, self._udp_nowait, self.stats)
            self.address = bound
            if self._machine is None:
                assert self._factory is not None
                self._machine = self._factory(bound)
            self._running = True
            log.info("gossip listening on %s:%d (udp+tcp)", *bound)
            async with trio.open_nursery() as nursery:
                await nursery.start(self._anti_entropy, tcp)
                await nursery.start(self._probing)
                self._kick()  # whatever the machine queued before run() (e.g. set_tags) goes out now
                task_status.started(bound)
        finally:
            self._running = False
            self._dial_nursery = None
            self._sender = None
            if self._udp_nowait is not None:
                self._udp_nowait.close()
                self._udp_nowait = None
            udp.close()
            tcp.close()
            for sub in self._subscribers:
                sub.send.close()
            self._subscribers.clear()

    async def _bind_sockets(self) -> tuple[trio.socket.SocketType, trio.socket.SocketType, Addr]:
        # TCP first: with port 0 the kernel picks a port free for TCP, which we then try for UDP.
        host, port = self._bind
        family = trio.socket.AF_INET6 if ":" in host else trio.socket.AF_INET
        for _attempt in range(1 if port else BIND_ATTEMPTS):
            tcp = trio.socket.socket(family, trio.socket.SOCK_STREAM)
            try:
                tcp.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEADDR, 1)
                try:
                    await tcp.bind((host, port))
                except OSError as exc:
                    raise listen_error(exc, "tcp", host, port) from exc
                bound_port = tcp.getsockname()[1]
                udp = trio.socket.socket(family, trio.socket.SOCK_DGRAM)
                try:
                    await udp.bind((host, bound_port))
                except OSError as exc:
                    udp.close()
                    if port == 0 and exc.errno == errno.EADDRINUSE:
                        log.debug("udp port %d taken, trying another", bound_port)
                        tcp.close()
                        continue
                    raise listen_error(exc, "udp", host, bound_port) from exc
                with contextlib.suppress(OSError):  # a smaller buffer only costs dropped gossip under bursts
                    udp.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_RCVBUF, UDP_RECV_BUF_SIZE)
                tcp.listen(socket.SOMAXCONN)  # as Go's net.Listen: a join storm must not overflow it
                return tcp, udp, (host, bound_port)
            except BaseException:
                tcp.close()
                raise
        raise OSError(errno.EADDRINUSE, f"no port free for both TCP and UDP on {host} after {BIND_ATTEMPTS} tries")

    async def _probing(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """UDP loop, timer loop and transmit pump: what failure detection needs to be timely."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._udp_loop)
            nursery.start_soon(self._timer_loop)
            nursery.start_soon(self._pump_loop)
            task_status.started()

    async def _anti_entropy(
        self, tcp: trio.socket.SocketType, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """TCP listener and dialer tasks: push/pull, joins, user streams, TCP fallback pings."""
        async with trio.open_nursery() as nursery:
            self._dial_nursery = nursery
            nursery.start_soon(self._tcp_loop, tcp, nursery)
            task_status.started()

    # ------------------------------------------------------------------ inputs

    async def _udp_loop(self) -> None:
        """Wait until the socket is readable, then read and feed what is there in one synchronous go: a datagram
        taken off the socket reaches the machine before any other task runs (see _read_waiting_datagrams)."""
        sock = self._udp_nowait
        assert sock is not None
        while True:
            await trio.lowlevel.wait_readable(sock)
            self._read_waiting_datagrams()

    def _feed_datagram(self, data: bytes, from_: Any) -> None:
        self.stats.datagrams_in += 1
        addr = _norm_addr(from_)
        try:
            self.machine.handle_datagram(trio.current_time(), addr, data)
        except Exception:
            # One bad packet (or a machine bug it triggers) must not stop failure detection.
            self.stats.bad_datagrams += 1
            log.warning(
                "dropped a %d-byte datagram from %s:%d: the machine raised (first bytes %s)",
                len(data),
                *addr,
                data[:16].hex(),
                exc_info=True,
            )
        self._kick()

    def _read_waiting_datagrams(self) -> None:
        """Feed the machine the datagrams in the socket's buffer (at most UDP_DRAIN_MAX), without waiting.

        The UDP loop reads this way, and the timer loop calls it before it runs overdue timers.  After a stall (a
        process starved of CPU) the acks to our probes can be waiting in the buffer while the probes' timeouts are
        already due; trio runs woken tasks in either order, so a timer that ran first (or while a datagram was
        taken off the socket but not yet handed over, as trio's ``recvfrom`` does across a checkpoint) would
        suspect members that did answer, and the cluster would churn through suspicions and refutations exactly
        when it is short of CPU.
        """
        sock = self._udp_nowait
        if sock is None:
            return
        for _ in range(UDP_DRAIN_MAX):
            try:
                data, from_ = sock.recvfrom(UDP_PACKET_BUF_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno not in _UDP_TRANSIENT_ERRNOS:
                    log.warning("udp receive error: %s", exc)
                    return
                log.debug("udp receive error (ignored): %s", exc)
                continue
            self._feed_datagram(data, from_)

    async def _timer_loop(self) -> None:
        while True:
            wake = self._timer_wake = trio.Event()
            deadline = self.machine.poll_timeout()
            with trio.move_on_at(math.inf if deadline is None else deadline):
                await wake.wait()
            now = trio.current_time()
            if deadline is not None and now >= deadline:
                self._read_waiting_datagrams()
                self.machine.handle_timeout(trio.current_time())
                self._kick()

    async def _tcp_loop(self, tcp: trio.socket.SocketType, nursery: trio.Nursery) -> None:
        listener = trio.SocketListener(tcp)
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno in ACCEPT_CAPACITY_ERRNOS:
                    log.error("accept() failed, retrying in 100 ms: %s", exc)
                    await trio.sleep(0.1)
                    continue
                raise
            nursery.start_soon(self._serve_stream, stream)

    async def _serve_stream(self, stream: trio.SocketStream) -> None:
        """One inbound connection: feed everything read so far until the machine has a reply (or gives up)."""
        self.stats.streams_in += 1
        try:
            peer = _norm_addr(stream.socket.getpeername())
        except OSError:
            await stream.aclose()
            return
        problem = ""
        received = 0
        stream_id = self.machine.accept_stream(trio.current_time(), peer)
        with trio.move_on_after(self.tcp_timeout) as scope:
            try:
                async with stream:
                    reply: bytes | None = None

                    def feed(chunk: bytes) -> bool:
                        nonlocal reply, received
                        received += len(chunk)
                        reply = self.machine.handle_stream_data(trio.current_time(), stream_id, chunk)
                        return reply is not None

                    problem = await self._read_until_complete(stream, feed, f"stream from {peer[0]}:{peer[1]}")
                    if not problem and reply:
                        await stream.send_all(reply)
            except (OSError, trio.BrokenResourceError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            finally:
                self.machine.close_stream(stream_id)
        if scope.cancelled_caught:
            problem = f"cut after tcp_timeout={self.tcp_timeout}s with {received} bytes read"
        if problem:
            self.stats.streams_in_failed += 1
            log.debug("inbound stream from %s:%d: %s", *peer, problem)

    async def _dial(self, op: Any) -> None:
        """One outbound stream (a StreamOpen): connect, send, read the reply until the machine says complete."""
        self.stats.streams_out += 1
        addr = _norm_addr(op.addr)
        timeout = max(getattr(op, "timeout", None) or self.tcp_timeout, 0.0)  # trio refuses a negative one
        problem = ""
        received = 0
        with trio.move_on_after(timeout) as scope:
            try:
                stream = await self._connect(addr)
                async with stream:
                    await stream.send_all(op.data)
                    if op.expect_reply:

                        def feed(chunk: bytes) -> bool:
                            nonlocal received
                            received += len(chunk)
                            return self.machine.handle_stream_reply(trio.current_time(), op.stream_id, chunk)

                        problem = await self._read_until_complete(
                            stream, feed, f"reply of stream {op.stream_id} from {addr[0]}:{addr[1]}"
                        )
            except (OSError, trio.BrokenResourceError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
        if scope.cancelled_caught:
            problem = f"timed out after {timeout}s ({received} reply bytes read)"
        if problem:
            self.stats.streams_out_failed += 1
            log.debug("stream %s to %s:%d failed: %s", op.stream_id, *addr, problem)
            try:
                self.machine.handle_stream_error(trio.current_time(), op.stream_id, problem)
            except Exception:
                log.warning("stream %s: the machine raised in handle_stream_error", op.stream_id, exc_info=True)
            self._kick()

    async def _read_until_complete(self, stream: trio.SocketStream, feed: Callable[[bytes], bool], what: str) -> str:
        """Read chunk by chunk, handing the machine each new chunk, until `feed` says the message is complete.

        The machine keeps the partial message (each byte is parsed once) and bounds the stream's size; every
        read is a checkpoint, so the probe loop runs between chunks however large the stream. Returns "" when
        complete, else why not (closed early, the machine raised). A machine exception is contained here: one
        bad stream must not take the listener or the dialer down.
        """
        received = 0
        while True:
            chunk = await stream.receive_some(STREAM_READ_SIZE)
            if not chunk:
                return f"peer closed after {received} bytes, before a complete message"
            received += len(chunk)
            try:
                if feed(chunk):
                    return ""
            except Exception:
                log.warning(
                    "dropped the %s: the machine raised after %d bytes (this chunk starts %s)",
                    what,
                    received,
                    chunk[:16].hex(),
                    exc_info=True,
                )
                return "machine error"
            finally:
                self._kick()

    async def _connect(self, addr: Addr) -> trio.SocketStream:
        # Dial from our bind IP: on loopback (127.0.0.x per node) peers then see the address we advertise.
        family = trio.socket.AF_INET6 if ":" in addr[0] else trio.socket.AF_INET
        sock = trio.socket.socket(family, trio.socket.SOCK_STREAM)
        try:
            host = self._bind[0]
            if not is_wildcard(host) and (":" in host) == (family == trio.socket.AF_INET6):
                await sock.bind((host, 0))
            await sock.connect(addr)
        except BaseException:
            sock.close()
            raise
        return trio.SocketStream(sock)

    # ------------------------------------------------------------------ outputs

    def _kick(self) -> None:
        """Work was added: wake the pump (transmits, events) and the timer loop (the deadline may have moved)."""
        self._pump_wake.set()
        self._timer_wake.set()

    async def _pump_loop(self) -> None:
        while True:
            await self._pump_wake.wait()
            self._pump_wake = trio.Event()
            await self._flush()

    async def _flush(self) -> None:
        """Everything the machine queued goes out in one synchronous go while the socket takes it (udp_send.py)."""
        machine = self.machine
        sender = self._sender
        assert sender is not None
        self._drain_events()
        while (tx := machine.poll_transmit()) is not None:
            if isinstance(tx, StreamOpen):
                assert self._dial_nursery is not None
                self._dial_nursery.start_soon(self._dial, tx)
                continue
            addr = _norm_addr(tx.addr)
            if not sender.send_now(addr, tx.data):
                await sender.send(addr, tx.data)
        self._drain_events()

    def _drain_events(self) -> None:
        machine = self.machine
        while (ev := machine.poll_event()) is not None:
            if isinstance(ev, Diagnostic):
                self._log_diagnostic(ev)
                continue
            self.stats.events += 1
            if isinstance(ev, JoinResult):
                self._on_join_result(ev)
            elif isinstance(ev, LeaveDone) and self._leave_done is not None:
                self._leave_timed_out = ev.timed_out
                self._leave_done.set()
            elif isinstance(ev, MemberEvent):
                m = ev.member
                log.info("%s: %s %s:%s", ev.kind, m.name, m.addr, m.port)
            self._publish(ev)

    @staticmethod
    def _log_diagnostic(ev: Any) -> None:
        level = ev.level
        if isinstance(level, str):
            level = python_level(level)
        log.log(int(level), "%s", ev.message)

    def _publish(self, ev: Any) -> None:
        for sub in list(self._subscribers):
            try:
                sub.send.send_nowait(ev)
            except trio.WouldBlock:
                sub.dropped += 1
                self.stats.events_dropped += 1
                if sub.close_on_overflow:
                    log.warning("closing a subscriber that fell behind (buffer full)")
                    self.stats.subscribers_closed += 1
                    sub.send.close()
                    self._subscribers.remove(sub)
                elif sub.dropped == 1 or sub.dropped % 1000 == 0:
                    log.warning("a slow subscriber has dropped %d events", sub.dropped)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._subscribers.remove(sub)  # the subscriber closed its end: it is gone

    def _on_join_result(self, ev: Any) -> None:
        addr = _norm_addr(ev.addr)
        if not ev.ok:
            log.warning("join %s:%d failed: %s", *addr, ev.error)
        for waiter in self._join_waiters:  # oldest first: concurrent joins to one address each get one result
            if waiter.pending[addr] > 0:
                waiter.pending[addr] -= 1
                if ev.ok:
                    waiter.ok += 1
                else:
                    waiter.errors.append(f"{addr[0]}:{addr[1]}: {ev.error}")
                if not +waiter.pending:
                    waiter.done.set()
                return
        log.debug("JoinResult for %s:%d matched no join() call", *addr)

    # ------------------------------------------------------------------ commands

    def subscribe(self, max_buffer: int = 1024, *, close_on_overflow: bool = False) -> trio.MemoryReceiveChannel[Any]:
        """Events from now on, on a bounded channel; the driver never blocks on a slow subscriber.

        When the buffer is full, further events are dropped (counted in ``stats.events_dropped``) or, with
        ``close_on_overflow``, the channel is closed, so the subscriber sees the end of the stream and knows it
        missed events.  Close the receive end to unsubscribe.  Diagnostics go to logging, not here.
        """
        send, receive = trio.open_memory_channel[Any](max_buffer)
        self._subscribers.append(Subscriber(send, close_on_overflow))
        return receive

    async def join(self, addrs: Iterable[Addr | str], *, ignore_old: bool = False) -> int:
        """Join through each address (push/pull); return how many succeeded.  Hostnames are resolved here.

        Waits for the machine's JoinResult for every address; the machine bounds each by its TCP timeout.
        """
        if not self._running:
            raise RuntimeError("join() needs the driver running")
        resolved = [await self._resolve(a) for a in addrs]
        if not resolved:
            return 0
        waiter = JoinWaiter(Counter(resolved))
        self._join_waiters.append(waiter)
        try:
            if ignore_old:
                self.machine.join(trio.current_time(), resolved, ignore_old=True)  # type: ignore[call-arg]
            else:
                self.machine.join(trio.current_time(), resolved)
            self._kick()
            await waiter.done.wait()
        finally:
            self._join_waiters.remove(waiter)
            self.last_join_errors = list(waiter.errors)
        log.info("joined %d of %d addresses", waiter.ok, len(resolved))
        return waiter.ok

    async def _resolve(self, addr: Addr | str) -> Addr:
        host, port = parse_addr(addr) if isinstance(addr, str) else _norm_addr(addr)
        family = trio.socket.AF_INET6 if ":" in self._bind[0] else trio.socket.AF_INET
        infos = await trio.socket.getaddrinfo(host, port, family, trio.socket.SOCK_DGRAM)
        if not infos:
            raise OSError(f"cannot resolve {host!r}")
        return _norm_addr(infos[0][4])

    async def leave(self) -> bool:
        """Leave gracefully; wait for LeaveDone (bounded by the machine's broadcast timeouts).

        Returns False when the bound ran out first or the machine says it gave up waiting for the broadcast;
        the caller may shut down either way.
        """
        if not self._running:
            raise RuntimeError("leave() needs the driver running")
        done = self._leave_done = trio.Event()
        self._leave_timed_out = False
        self.machine.leave(trio.current_time())
        self._kick()
        with trio.move_on_after(self._leave_bound()):
            await done.wait()
            if self._leave_timed_out:
                log.warning("left the cluster, but the leave broadcast was not confirmed sent")
                return False
            log.info("left the cluster")
            return True
        log.warning("leave not confirmed within %.1fs", self._leave_bound())
        return False

    def _leave_bound(self) -> float:
        # serf.Leave waits BroadcastTimeout for the intent, memberlist.Leave as long again, then the propagate
        # delay; a little slack on top.
        config = getattr(self._machine, "config", None)
        broadcast = float(getattr(config, "broadcast_timeout", 5.0))
        propagate = float(getattr(config, "leave_propagate_delay", 1.0))
        return 2 * broadcast + propagate + 1.0

    def set_tags(self, tags: dict[str, str]) -> None:
        """Replace our tags (Serf only); the update is gossiped."""
        self.machine.set_tags(trio.current_time(), dict(tags))  # type: ignore[attr-defined]
        self._kick()

    def force_leave(self, name: str, *, prune: bool = False) -> None:
        """Mark a failed member left at once (Serf's RemoveFailedNode); with `prune`, forget it too."""
        self.machine.force_leave(trio.current_time(), name, prune)  # type: ignore[attr-defined]
        self._kick()

    def user_event(self, name: str, payload: bytes = b"", *, coalesce: bool = True) -> None:
        """Broadcast a Serf user event (Serf only)."""
        self.machine.user_event(trio.current_time(), name, payload, coalesce)  # type: ignore[attr-defined]
        self._kick()

    def key_query(self, operation: str, key: str = "", relay_factor: int = 0) -> int:
        """Start a Serf key query (install-key, use-key, remove-key, list-keys); a KeyQueryDone event with the
        returned handle follows. A malformed key raises protocol.keyring.KeyringError."""
        handle = self.machine.key_query(trio.current_time(), operation, key, relay_factor)  # type: ignore[attr-defined]
        self._kick()
        return int(handle)

    def send_app_message(self, node_name: str, payload: bytes) -> None:
        """Send an application message to one member over TCP (Serf only; subscribers get ``AppMessage``).

        Raises KeyError for an unknown member; a failed dial is only logged (callers retry on their own clock).
        """
        self.machine.send_app_message(trio.current_time(), node_name, payload)  # type: ignore[attr-defined]
        self._kick()

    def members(self) -> list[Any]:
        """The machine's current member list."""
        return self.machine.members()
