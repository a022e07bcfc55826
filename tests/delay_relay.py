"""A delaying UDP+TCP relay on loopback: netem's `delay` in user space, for kernels without the netem qdisc.

A relay listens on ``listen_ip`` at the ports it is given and forwards to ``target_ip`` at the same port, holding
every packet (UDP) or chunk (TCP) bound *for the target* ``delay`` seconds, in order. An agent that advertises
``listen_ip`` (memberlist/Serf ``-advertise``, Consul's ``advertise_addr``) while bound to ``target_ip`` then
receives everything its peers send it ``delay`` late; as a peer acks a ping at the pinger's advertised address
(memberlist's SourceAddr), a probe from A to B crosses B's relay and the ack A's, so the round trip is
``delay_A + delay_B`` plus the processing.  What the target sends back to a relayed source address (a UDP reply to
the packet's source, a TCP stream's answers) is passed through at once: the delay is per direction, towards the
target.

It runs trio in a thread of its own, so synchronous tests can use it: ``DelayRelay.start(...)`` returns once the
sockets are bound, ``close()`` cancels everything and joins the thread.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterable

import trio

BUFFER = 65536


class DelayRelay:
    """One relay: ``listen_ip:port`` -> ``target_ip:port`` for each port, UDP and TCP, ``delay`` s towards it."""

    def __init__(self, listen_ip: str, target_ip: str, delay: float) -> None:
        self.listen_ip, self.target_ip, self.delay = listen_ip, target_ip, delay
        self.forwarded = 0  # packets and chunks delivered to the target (read from the test's thread)
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"relay {listen_ip}->{target_ip}", daemon=True)
        self._error: BaseException | None = None

    @classmethod
    def start(cls, listen_ip: str, target_ip: str, delay: float, *, udp: Iterable[int] = (),
              tcp: Iterable[int] = ()) -> DelayRelay:
        relay = cls(listen_ip, target_ip, delay)
        relay._thread.start()
        if not relay._ready.wait(10):
            raise RuntimeError(f"relay {listen_ip} did not start: {relay._error!r}")
        relay.forward(udp=udp, tcp=tcp)
        return relay

    def forward(self, *, udp: Iterable[int] = (), tcp: Iterable[int] = ()) -> None:
        """Relay more ports; returns once they are bound (a bind error is raised here)."""
        async def bind_all() -> None:
            assert self._nursery is not None
            for port in udp:
                await self._nursery.start(self._udp, port)
            for port in tcp:
                await self._nursery.start(self._tcp, port)

        trio.from_thread.run(bind_all, trio_token=self._token)

    def close(self) -> None:
        if self._nursery is not None and self._thread.is_alive():
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(self._nursery.cancel_scope.cancel, trio_token=self._token)
        self._thread.join(10)

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # reported by start() or ignored at close
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._ready.set()
            await trio.sleep_forever()

    async def _delayed(self, receive: trio.MemoryReceiveChannel, send) -> None:
        """Deliver (due, data) items in order, each no sooner than its due time."""
        async for due, data in receive:
            await trio.sleep_until(due)
            await send(data)
            self.forwarded += 1

    async def _udp(self, port: int, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listener = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        await listener.bind((self.listen_ip, port))
        upstreams: dict[tuple[str, int], trio.MemorySendChannel] = {}
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                try:
                    data, source = await listener.recvfrom(BUFFER)
                except OSError:  # an ICMP error for an earlier reply (the source went away): UDP goes on
                    continue
                if source not in upstreams:
                    upstreams[source] = await nursery.start(self._udp_upstream, listener, source, port)
                upstreams[source].send_nowait((trio.current_time() + self.delay, data))

    async def _udp_upstream(self, listener: trio.socket.SocketType, source: tuple[str, int], port: int, *,
                            task_status: trio.TaskStatus[trio.MemorySendChannel]) -> None:
        """One socket per source (as a NAT keeps one mapping): delayed towards the target, replies back at once."""
        upstream = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        await upstream.bind((self.listen_ip, 0))
        send, receive = trio.open_memory_channel[tuple[float, bytes]](math.inf)

        async def to_target(data: bytes) -> None:
            with contextlib.suppress(OSError):
                await upstream.sendto(data, (self.target_ip, port))

        async def replies() -> None:
            while True:
                try:
                    data, _ = await upstream.recvfrom(BUFFER)
                    await listener.sendto(data, source)
                except OSError:  # the target is not listening (yet, or any more): drop, as a network would
                    continue

        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._delayed, receive, to_target)
            nursery.start_soon(replies)
            task_status.started(send)

    async def _tcp(self, port: int, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(port, host=self.listen_ip)
        task_status.started()
        await trio.serve_listeners(self._tcp_connection_for(port), listeners)

    def _tcp_connection_for(self, port: int):
        async def connection(client: trio.SocketStream) -> None:
            try:
                target = await trio.open_tcp_stream(self.target_ip, port)
            except OSError:
                await client.aclose()
                return
            send, receive = trio.open_memory_channel[tuple[float, bytes]](math.inf)

            async def client_to_target() -> None:  # read as it comes, hand over each chunk `delay` later
                async with send:
                    async for chunk in client:
                        send.send_nowait((trio.current_time() + self.delay, chunk))

            async def target_to_client(nursery: trio.Nursery) -> None:
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    async for chunk in target:
                        await client.send_all(chunk)
                nursery.cancel_scope.cancel()  # the target is done: so is the connection

            async def delivered() -> None:
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await self._delayed(receive, target.send_all)
                    await target.send_eof()

            async with client, target, trio.open_nursery() as nursery:
                nursery.start_soon(client_to_target)
                nursery.start_soon(delivered)
                nursery.start_soon(target_to_client, nursery)

        async def guarded(client: trio.SocketStream) -> None:
            with contextlib.suppress(OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                await connection(client)

        return guarded
