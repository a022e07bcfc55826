"""Servers talk to each other on the server port (Consul's 8300): TCP, length-prefixed msgpack frames.

One connection per pair of servers: the one with the smaller server id dials (and redials, with jittered
exponential backoff), the other accepts; both directions share it.  Each connection starts with a hello each way
naming the server and its cluster (another cluster's server is refused).  Sending never blocks the Raft driver:
`Transport.send` puts the message on the peer's bounded queue, dropping the oldest when full (Raft resends what
matters; the freshest heartbeat and commit index are worth more than stale ones) and counting the drop.  Whatever
arrives goes to one bounded channel, `Transport.inbox`, that the driver reads; a full inbox slows the readers,
not the driver.  A frame that breaks the framing, the hello or `from_wire` closes that connection only, with a
warning naming the peer and the reason.

Task layout: `run` opens the one nursery; in it the accept loop (one task per inbound connection) and one dialer
task per peer we dial.  Each connection is a nursery of a reader and a writer; the connection ends when either
ends, and a newer connection with the same peer replaces an older one (a restarted peer's first dial wins over
the half-open socket of its previous life).
"""

from __future__ import annotations

import contextlib
import logging
import random
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs
import trio

from agent.hostport import listen_error, parse_addr
from agent.peer import peer_text
from protocol.raft.types import Message, WireError, from_wire, to_wire

from .frames import (
    DEFAULT_MAX_FRAME,
    FrameDecoder,
    FrameError,
    Hello,
    encode_frame,
    hello_from_wire,
    hello_to_wire,
    is_rpc_hello,
)

log = logging.getLogger("triumvir.raft.transport")

DEFAULT_PORT = 8300
RECEIVE_CHUNK = 256 * 1024
WRITE_COALESCE_BYTES = 256 * 1024  # queued frames written together, up to this much


@attrs.define
class TransportStats:
    dropped_queue_full: int = 0  # oldest messages dropped from a full peer queue
    dropped_unknown_peer: int = 0  # messages to a server we have no link to
    dropped_oversize: int = 0  # messages whose frame would exceed max_frame
    refused_connections: int = 0  # bad hello, another cluster, handshake timeout
    bad_frames: int = 0  # connections closed for a bad frame after the hello
    connections: int = 0  # connections established (both directions)


@attrs.define(eq=False)
class _Peer:
    id: str
    address: str | None  # "IP:port" of its server port; None: we only accept from it
    queue_send: trio.MemorySendChannel[Message]
    queue_recv: trio.MemoryReceiveChannel[Message]
    learned: bool = False  # known only from its hello: forgotten when its connection ends
    cluster: str = ""  # the cluster id its last hello named ("": a new server that has not joined one yet)
    dropped: int = 0
    dialer: trio.CancelScope | None = None
    conn: trio.CancelScope | None = None  # the live connection, if any


class Transport:
    def __init__(
        self,
        server_id: str,
        cluster_id: str,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        queue_size: int = 1024,
        inbox_size: int = 1024,
        max_frame: int = DEFAULT_MAX_FRAME,
        backoff_base: float = 0.05,
        backoff_max: float = 5.0,
        handshake_timeout: float = 5.0,
        rng: random.Random | None = None,
        rpc_handler: Callable[[trio.SocketStream, FrameDecoder, list[Any]], Awaitable[None]] | None = None,
    ) -> None:
        if not server_id:
            raise ValueError("transport: a server id is required")
        self.server_id = server_id
        self.cluster_id = cluster_id
        self.host = host
        self.port = port
        self.queue_size = queue_size
        self.max_frame = max_frame
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.handshake_timeout = handshake_timeout
        self.rpc_handler = rpc_handler  # serves connections that open with the RPC hello
        self.stats = TransportStats()
        self._rng = rng or random.Random()
        self._peers: dict[str, _Peer] = {}
        self._nursery: trio.Nursery | None = None
        self._inbox_send, self.inbox = trio.open_memory_channel[Message](inbox_size)
        self.address: tuple[str, int] | None = None

    # ---------------------------------------------------------------- peers

    def add_peer(self, server_id: str, address: str | None) -> None:
        """Know a server (``address`` its ``IP:port`` server port).  We dial it if our id is the smaller."""
        if server_id == self.server_id:
            return
        peer = self._peers.get(server_id)
        if peer is None:
            peer = self._new_peer(server_id, address)
        else:
            peer.learned = False
            if address is not None:
                peer.address = address  # the dialer uses it from its next attempt
        if self._dials(server_id) and peer.dialer is None and self._nursery is not None:
            self._start_dialer(self._nursery, peer)

    def remove_peer(self, server_id: str) -> None:
        peer = self._peers.pop(server_id, None)
        if peer is None:
            return
        for scope in (peer.dialer, peer.conn):
            if scope is not None:
                scope.cancel()
        peer.queue_send.close()

    def peers(self) -> dict[str, str | None]:
        return {p.id: p.address for p in self._peers.values()}

    def connected(self) -> frozenset[str]:
        """The servers we have a live connection with."""
        return frozenset(p.id for p in self._peers.values() if p.conn is not None)

    def set_cluster(self, cluster_id: str) -> None:
        """We joined or bootstrapped ``cluster_id``: connections made while we had none, with servers of another
        cluster, are closed (their redial is refused by the hello check)."""
        self.cluster_id = cluster_id
        for peer in self._peers.values():
            if peer.conn is not None and self._in_another_cluster(peer):
                peer.conn.cancel()

    def _in_another_cluster(self, peer: _Peer) -> bool:
        """True (and logged) when the peer's hello named a cluster other than ours.  Checked again when a
        connection goes live, because we may have bootstrapped or joined while its handshake was under way."""
        if not (peer.cluster and self.cluster_id and peer.cluster != self.cluster_id):
            return False
        log.warning("raft transport: closing the connection with %s: it is in cluster %s, we are now in %s",
                    peer.id, peer.cluster, self.cluster_id)
        return True

    def peer_cluster(self, server_id: str) -> str:
        """The cluster id the peer's last hello named ("" unknown)."""
        peer = self._peers.get(server_id)
        return peer.cluster if peer else ""

    def dropped(self, server_id: str) -> int:
        peer = self._peers.get(server_id)
        return peer.dropped if peer else 0

    def _new_peer(self, server_id: str, address: str | None) -> _Peer:
        send, recv = trio.open_memory_channel[Message](self.queue_size)
        peer = self._peers[server_id] = _Peer(server_id, address, send, recv)
        return peer

    def _dials(self, server_id: str) -> bool:
        return self.server_id < server_id

    # ---------------------------------------------------------------- sending

    def send(self, msg: Message) -> bool:
        """Queue ``msg`` for ``msg.to`` without blocking; False if it was dropped (no such peer)."""
        peer = self._peers.get(msg.to)
        if peer is None:
            self.stats.dropped_unknown_peer += 1
            log.debug("raft transport: no link to %s, dropping a %s", msg.to, msg.type.name)
            return False
        try:
            peer.queue_send.send_nowait(msg)
        except trio.WouldBlock:
            with contextlib.suppress(trio.WouldBlock):  # the writer may have taken it meanwhile
                peer.queue_recv.receive_nowait()
            peer.dropped += 1
            self.stats.dropped_queue_full += 1
            peer.queue_send.send_nowait(msg)
        return True

    def send_all(self, msgs: Sequence[Message]) -> None:
        for m in msgs:
            self.send(m)

    # ---------------------------------------------------------------- running

    async def run(self, *, task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen on (host, port) (port 0: any), report the bound address, dial and serve until cancelled."""
        try:
            listeners = await trio.open_tcp_listeners(self.port, host=self.host)
        except OSError as exc:
            raise listen_error(exc, "tcp", self.host, self.port) from exc
        sockname = listeners[0].socket.getsockname()
        self.address = (str(sockname[0]), int(sockname[1]))
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for peer in self._peers.values():
                    if self._dials(peer.id) and peer.dialer is None:
                        self._start_dialer(nursery, peer)
                nursery.start_soon(trio.serve_listeners, self._accepted, listeners)
                log.info("raft transport: server %s listening on %s:%d", self.server_id, *self.address)
                task_status.started(self.address)
        finally:
            self._nursery = None
            for peer in self._peers.values():
                peer.dialer = peer.conn = None

    def _start_dialer(self, nursery: trio.Nursery, peer: _Peer) -> None:
        """The peer's one dial loop.  Its scope is made here, before the task first runs, so a second `add_peer`
        in the same moment (a burst of gossip updates) sees it and starts no second loop: two loops would each
        replace the other's connection, forever."""
        peer.dialer = trio.CancelScope()
        nursery.start_soon(self._dial_loop, peer, peer.dialer)

    async def _dial_loop(self, peer: _Peer, scope: trio.CancelScope) -> None:
        with scope:
            failures = 0
            while True:
                if peer.address is not None:
                    try:
                        stream, decoder, pending = await self._dial(peer, peer.address)
                    except (OSError, trio.TooSlowError, trio.BrokenResourceError, FrameError) as err:
                        failures += 1
                        log.log(logging.INFO if failures == 1 else logging.DEBUG,
                                "raft transport: cannot reach %s at %s: %s", peer.id, peer.address, err or type(err))
                    else:
                        failures = 0
                        await self._serve(peer, stream, decoder, pending, peer.address)
                await trio.sleep(self._backoff(failures))

    def _backoff(self, failures: int) -> float:
        """Full-range jitter over an exponential ceiling: restarted servers don't redial in lockstep."""
        ceiling = min(self.backoff_max, self.backoff_base * 2 ** min(failures, 30))
        return ceiling * (0.5 + 0.5 * self._rng.random())

    async def _dial(self, peer: _Peer, address: str) -> tuple[trio.SocketStream, FrameDecoder, list[Any]]:
        host, port = parse_addr(address, DEFAULT_PORT)
        with trio.fail_after(self.handshake_timeout):
            stream = await trio.open_tcp_stream(host, port)
            try:
                await stream.send_all(self._hello())
                decoder = FrameDecoder(self.max_frame)
                raw, pending = await self._read_first(stream, decoder)
                hello = self._check_hello(raw)
                if hello.server_id != peer.id:
                    raise FrameError(f"dialed {peer.id} but {hello.server_id} answered")
                peer.cluster = hello.cluster_id
            except BaseException:
                await trio.aclose_forcefully(stream)
                raise
        return stream, decoder, pending

    async def _accepted(self, stream: trio.SocketStream) -> None:
        remote = peer_text(stream)
        decoder = FrameDecoder(self.max_frame)
        try:
            with trio.fail_after(self.handshake_timeout):
                raw, pending = await self._read_first(stream, decoder)
                if is_rpc_hello(raw) and self.rpc_handler is not None:
                    rpc = True
                    theirs = raw.get("cluster") or ""
                    if theirs and self.cluster_id and theirs != self.cluster_id:
                        raise FrameError(f"an RPC client of cluster {theirs!s:.40}, we are in {self.cluster_id}")
                else:
                    rpc = False
                    hello = self._check_hello(raw)
                if not rpc and hello.server_id == self.server_id:
                    raise FrameError(f"the hello names our own server id {hello.server_id}")
                if not rpc:
                    await stream.send_all(self._hello())
        except (OSError, trio.TooSlowError, trio.BrokenResourceError, FrameError) as err:
            self.stats.refused_connections += 1
            log.warning("raft transport: refusing connection from %s: %s", remote, err or "handshake timed out")
            await trio.aclose_forcefully(stream)
            return
        if rpc:
            assert self.rpc_handler is not None
            try:
                await self.rpc_handler(stream, decoder, pending)
            finally:
                await trio.aclose_forcefully(stream)
            return
        peer = self._peers.get(hello.server_id)
        if peer is None:
            peer = self._new_peer(hello.server_id, None)
            peer.learned = True
        peer.cluster = hello.cluster_id
        await self._serve(peer, stream, decoder, pending, remote)
        if peer.learned and peer.conn is None and self._peers.get(peer.id) is peer:
            self.remove_peer(peer.id)  # nobody told us of it and we cannot reach it: don't keep its queue

    def _hello(self) -> bytes:
        return encode_frame(hello_to_wire(Hello(self.server_id, self.cluster_id)), self.max_frame)

    async def _read_first(self, stream: trio.SocketStream, decoder: FrameDecoder) -> tuple[Any, list[Any]]:
        while True:
            data = await stream.receive_some(RECEIVE_CHUNK)
            if not data:
                raise FrameError("connection closed before the hello")
            frames = decoder.feed(data)
            if frames:
                return frames[0], frames[1:]

    def _check_hello(self, raw: Any) -> Hello:
        """A server's hello; another cluster's is refused.  An empty cluster id on either side is a new server that
        has not joined a cluster yet: it is let in, and adopts the cluster of the leader that replicates to it."""
        hello = hello_from_wire(raw)
        if hello.cluster_id and self.cluster_id and hello.cluster_id != self.cluster_id:
            raise FrameError(
                f"server {hello.server_id} is in cluster {hello.cluster_id}, we are in {self.cluster_id} (a data dir "
                f"from another cluster: one of the two must remove its raft data to join the other)")
        return hello

    # ---------------------------------------------------------------- a live connection

    async def _serve(
        self, peer: _Peer, stream: trio.SocketStream, decoder: FrameDecoder, pending: list[Any], remote: str
    ) -> None:
        if self._in_another_cluster(peer):
            self.stats.refused_connections += 1
            await trio.aclose_forcefully(stream)
            return
        if peer.conn is not None:
            log.info("raft transport: a new connection with %s (%s) replaces the old one", peer.id, remote)
            peer.conn.cancel()
        self.stats.connections += 1
        with contextlib.suppress(OSError):  # notice a peer that vanished without a FIN (power loss, partition)
            stream.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        outcome: list[str] = []
        async with trio.open_nursery() as nursery:
            peer.conn = nursery.cancel_scope
            try:
                nursery.start_soon(self._writer, peer, stream, outcome, nursery.cancel_scope)
                await self._reader(peer, stream, decoder, pending, outcome)
                nursery.cancel_scope.cancel()
            finally:
                if peer.conn is nursery.cancel_scope:
                    peer.conn = None
                await trio.aclose_forcefully(stream)
        if outcome:
            log.log(logging.WARNING if outcome[0].startswith("bad frame") else logging.INFO,
                    "raft transport: connection with %s (%s) closed: %s", peer.id, remote, outcome[0])

    async def _reader(
        self, peer: _Peer, stream: trio.SocketStream, decoder: FrameDecoder, pending: list[Any], outcome: list[str]
    ) -> None:
        try:
            frames = pending
            while True:
                for raw in frames:
                    msg = from_wire(raw)
                    if msg.from_ != peer.id or msg.to != self.server_id:
                        raise WireError(f"message from {msg.from_} to {msg.to} on the connection with {peer.id}")
                    await self._inbox_send.send(msg)
                data = await stream.receive_some(RECEIVE_CHUNK)
                if not data:
                    outcome.append("closed by the peer")
                    return
                frames = decoder.feed(data)
        except (FrameError, WireError) as err:
            self.stats.bad_frames += 1
            outcome.append(f"bad frame: {err}")
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as err:
            outcome.append(f"receive failed: {err or type(err).__name__}")

    async def _writer(
        self, peer: _Peer, stream: trio.SocketStream, outcome: list[str], scope: trio.CancelScope
    ) -> None:
        try:
            while True:
                frames: list[bytes] = []
                size = 0
                msg = await peer.queue_recv.receive()
                while True:  # coalesce what is queued into one write
                    frame = self._encode(peer, msg)
                    if frame is not None:
                        frames.append(frame)
                        size += len(frame)
                    if size >= WRITE_COALESCE_BYTES:
                        break
                    try:
                        msg = peer.queue_recv.receive_nowait()
                    except trio.WouldBlock:
                        break
                if frames:
                    await stream.send_all(b"".join(frames))
        except (trio.EndOfChannel, trio.ClosedResourceError):
            outcome.append("peer removed")
        except (OSError, trio.BrokenResourceError) as err:
            outcome.append(f"send failed: {err or type(err).__name__}")
        scope.cancel()

    def _encode(self, peer: _Peer, msg: Message) -> bytes | None:
        try:
            return encode_frame(to_wire(msg), self.max_frame)
        except FrameError as err:
            self.stats.dropped_oversize += 1
            log.error("raft transport: not sending a %s to %s: %s", msg.type.name, peer.id, err)
            return None


