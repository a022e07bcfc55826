"""UDP and TCP servers around one ``Responder`` (consul-compat §3.1: both transports on client_addr:ports.dns).

Why the UDP loop reads the socket itself instead of ``await sock.recvfrom()``: trio's socket methods yield to the
scheduler twice per call, which costs more than answering a cached query.  The loop drains the non-blocking socket
until it is empty and only then parks in ``wait_readable``; under a flood it still checkpoints every
``UDP_BATCH`` datagrams, so cancellation and the agent's other tasks (gossip!) are never starved.  Queries for the
recursors leave the loop as tasks, bounded in number.

TCP (RFC 7766): length-prefixed messages, pipelined (several queries may be in flight on one connection and are
answered as they finish).  Deadlines as miekg/dns has them: the first query must arrive whole within
``tcp_read_timeout`` of the connection's start, each next one within ``tcp_idle`` of the one before; bytes that
trickle in never move a deadline.  At the cap on open connections (agent/connlimit.py) the connection that has
waited longest for a query is closed to make room (what it has in flight still gets its answers); a newcomer is
closed at once only when every connection is busy writing answers.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
from collections.abc import Callable
from typing import Any

import attrs
import trio

from agent.connlimit import ConnectionSlots, Slot
from agent.dns.cache import Forward, Responder
from agent.dns.recursor import forward, servfail
from agent.dns.settings import DnsSettings
from agent.hostport import listen_error

__all__ = ["DnsLimits", "serve_dns"]

log = logging.getLogger("agent.dns")

UDP_BATCH = 64
MAX_DATAGRAM = 65535


@attrs.frozen
class DnsLimits:
    """Server-side bounds (not Consul config: miekg's defaults are close to these)."""

    tcp_read_timeout: float = 2.0  # a TCP connection's first query must arrive whole within this (miekg: 2 s)
    tcp_idle: float = 8.0  # each next query within this of the one before; also a write's bound (miekg: 8 s)
    tcp_connections: int = 256  # concurrent TCP connections; at the cap the longest-idle one makes room
    forwards: int = 256  # concurrent queries out at the recursors; more get SERVFAIL


async def serve_dns(
    table: Any,
    config: Any,
    host: str,
    port: int,
    *,
    limits: DnsLimits = DnsLimits(),
    metrics: Any = None,
    acl: Callable[[], Any] | None = None,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve DNS for ``table`` on ``host:port`` (UDP and TCP; port 0 picks one free for both) until cancelled.

    Reports ``(host, port)`` as bound.  Bad ``dns_config`` raises ConfigError before anything binds.  With
    ``metrics`` (agent/metrics.py), every query is timed as Consul's ``consul.dns.domain_query`` or, for a reverse
    name (``in-addr.arpa``/``ip6.arpa``), ``consul.dns.ptr_query``.
    """
    settings = DnsSettings.from_config(config)
    responder = Responder(table, settings, metrics=metrics, metric_labels={"node": getattr(config, "node_name", "")},
                          acl=acl)
    udp, tcp = _bind_pair(host, port)
    listener = trio.SocketListener(tcp)
    bound = udp.getsockname()[1]
    async with trio.open_nursery() as nursery:
        server = _Server(responder, settings, limits, nursery)
        nursery.start_soon(server.udp_loop, udp)
        nursery.start_soon(server.tcp_loop, listener)
        log.info("dns: serving on %s:%d (udp and tcp)", host, bound)
        task_status.started((host, bound))


def _bind_pair(host: str, port: int) -> tuple[socket.socket, trio.socket.SocketType]:
    """A UDP socket and a listening TCP socket on the same port (retrying when port 0 picked one taken for TCP)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50 if port == 0 else 1):
        udp = socket.socket(family, socket.SOCK_DGRAM)
        try:
            try:
                udp.bind((host, port))
            except OSError as exc:
                raise listen_error(exc, "udp", host, port) from exc
            udp.setblocking(False)
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            tcp = socket.socket(family, socket.SOCK_STREAM)
            try:
                tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                tcp.bind((host, udp.getsockname()[1]))
                tcp.listen(128)
            except OSError as exc:
                tcp.close()
                if port == 0 and exc.errno == errno.EADDRINUSE:
                    udp.close()
                    continue
                raise listen_error(exc, "tcp", host, udp.getsockname()[1]) from exc
        except BaseException:
            udp.close()
            raise
        return udp, trio.socket.from_stdlib_socket(tcp)
    raise OSError(errno.EADDRINUSE, f"no port free for both UDP and TCP on {host}")


@attrs.define
class _Server:
    responder: Responder
    settings: DnsSettings
    limits: DnsLimits
    nursery: trio.Nursery
    forwarding: int = 0
    slots: ConnectionSlots = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.slots = ConnectionSlots(self.limits.tcp_connections)

    # -------------------------------------------------------------------------------------------- UDP

    async def udp_loop(self, sock: socket.socket) -> None:
        with sock:
            recvfrom = sock.recvfrom
            respond = self.responder.respond
            batch = 0
            while True:
                try:
                    data, addr = recvfrom(MAX_DATAGRAM)
                except BlockingIOError:
                    batch = 0
                    await trio.lowlevel.wait_readable(sock)
                    continue
                except OSError:  # e.g. ICMP port unreachable from an earlier reply
                    continue
                reply = respond(data, False)
                if type(reply) is bytes:
                    await self._udp_send(sock, reply, addr)
                elif reply is not None:
                    assert isinstance(reply, Forward)
                    self._start_forward(reply, self._udp_reply(sock, addr))
                batch += 1
                if batch >= UDP_BATCH:
                    batch = 0
                    await trio.lowlevel.checkpoint()

    @staticmethod
    async def _udp_send(sock: socket.socket, data: bytes, addr: Any) -> None:
        try:
            sock.sendto(data, addr)
        except BlockingIOError:
            await trio.lowlevel.wait_writable(sock)
            with contextlib.suppress(OSError):
                sock.sendto(data, addr)
        except OSError as exc:
            log.debug("dns: reply to %s not sent: %s", addr, exc)

    def _udp_reply(self, sock: socket.socket, addr: Any) -> Any:
        async def send(data: bytes) -> None:
            await self._udp_send(sock, data, addr)

        return send

    def _start_forward(self, request: Forward, send: Any, *, tcp: bool = False,
                       nursery: trio.Nursery | None = None) -> None:
        """Hand a query to the recursors in its own task; past the cap it gets SERVFAIL at once."""
        nursery = nursery or self.nursery
        if self.forwarding >= self.limits.forwards:
            nursery.start_soon(send, servfail(request.query, self.settings, tcp=tcp))
            return
        self.forwarding += 1

        async def run() -> None:
            try:
                await send(await forward(request, self.settings, tcp=tcp))
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass  # the client went away
            except Exception:
                log.exception("dns: forwarding failed")
            finally:
                self.forwarding -= 1

        nursery.start_soon(run)

    # -------------------------------------------------------------------------------------------- TCP

    async def tcp_loop(self, listener: trio.SocketListener) -> None:
        async with listener:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:  # EMFILE and friends: back off rather than spin
                    log.warning("dns: accept failed: %s", exc)
                    await trio.sleep(0.1)
                    continue
                slot = self.slots.admit("")  # no per-client cap: the key does not matter
                if slot is None:
                    await trio.aclose_forcefully(stream)
                    continue
                self.nursery.start_soon(self._tcp_connection, stream, slot)

    async def _tcp_connection(self, stream: trio.SocketStream, slot: Slot) -> None:
        try:
            async with stream, trio.open_nursery() as inflight:
                lock = trio.Lock()

                async def send(data: bytes) -> None:
                    async with lock:
                        with trio.move_on_after(self.limits.tcp_idle) as scope:
                            await stream.send_all(len(data).to_bytes(2, "big") + data)
                    if scope.cancelled_caught:
                        inflight.cancel_scope.cancel()  # a reader that stopped reading: drop it

                buf = bytearray()
                due = trio.current_time() + self.limits.tcp_read_timeout  # the next query, whole
                while True:
                    chunk = None
                    scope = trio.CancelScope(deadline=due)
                    with scope, self.slots.idle(slot, scope):
                        chunk = await stream.receive_some(65536)
                    if chunk is None and slot.evicted:
                        break  # its slot went to a new client: answer what is in flight, then close
                    if chunk is None:
                        inflight.cancel_scope.cancel()  # no whole query in time: close, whatever is pending
                        break
                    if not chunk:
                        break  # the client is done sending: finish what is in flight, then close
                    buf += chunk
                    while len(buf) >= 2:
                        size = (buf[0] << 8) | buf[1]
                        if len(buf) < 2 + size:
                            break
                        message = bytes(buf[2:2 + size])
                        del buf[:2 + size]
                        due = trio.current_time() + self.limits.tcp_idle
                        reply = self.responder.respond(message, True)
                        if type(reply) is bytes:
                            await send(reply)
                        elif reply is not None:
                            assert isinstance(reply, Forward)
                            self._start_forward(reply, send, tcp=True, nursery=inflight)
        except* (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # the client went away mid-write
        except* Exception:
            log.exception("dns: TCP connection failed")  # contained: one connection, never the server
        finally:
            self.slots.release(slot)
