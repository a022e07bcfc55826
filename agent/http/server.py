"""The HTTP/1.1 server: h11 state machines on trio streams, one task per connection, all in one nursery.

Rules (each one is a test in tests/test_http_server.py or tests/test_http_starvation.py):

- one request at a time per connection, responses in order (keep-alive and pipelining both work);
- a request's head must arrive within ``header_timeout``, counted from the connection's start for its first
  request and from the first byte for the next ones (Go's ReadHeaderTimeout: whatever trickles in, the deadline
  does not move), and its body within ``body_timeout``; a keep-alive connection with no next request is closed
  after ``idle_timeout`` (Go's IdleTimeout);
- a head above ``max_header_bytes`` is a 431, a body above ``max_request_bytes`` a 413; malformed requests get
  Go's ``400 Bad Request`` and the connection is closed; nothing a client sends affects another connection;
- while a handler runs (a blocking query may park for ten minutes) nothing more is read from its connection but
  one byte, as Go's background read does: end-of-file then cancels the handler (Go cancels the request context);
  anything else (a pipelined request, garbage) stays in the kernel until the response is out, and the
  connection is only checked for a hang-up (``hangup_check_interval``).  So a parked query costs the same
  whatever its client sends after it;
- ``max_connections`` in all and ``max_connections_per_client`` from one IP (agent/connlimit.py): at either cap,
  the connection that has waited longest for a request (idle keep-alive, silent, slowloris) is closed to make
  room; only when every one has a request in progress does a newcomer get a 429, closed at once;
- ``Host`` (agent/http/hosts.py): with ``http_config.allowed_hosts`` set, any other Host is a 403; the stream and
  the page, which browsers reach, refuse a Host that is not this agent's own name or address even without it;
- a response already computed when the server is cancelled (``PUT /v1/agent/leave`` shuts the agent down) still
  goes out, within ``shutdown_grace``;
- a ``GET`` with ``Upgrade: websocket`` to a socket route (``/v1/stream/members``) leaves h11 once its head is read:
  the route validates it (a refusal is a plain HTTP answer), then the connection, with the head replayed in front,
  goes to trio-websocket, which does the handshake; the connection still counts against the caps while it lives.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import resource
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import attrs
import h11
import trio
import trio_websocket

from agent.connlimit import ACCEPT_CAPACITY_ERRNOS, ConnectionSlots, Slot
from agent.hostport import listen_error
from agent.http.endpoints import default_router
from agent.http.errors import HTTPError
from agent.http.handler_watch import HandlerWatch
from agent.http.hosts import HostPolicy
from agent.http.options import HttpOptions
from agent.http.request import BadTarget, Query, Request, keep_alive, parse_target
from agent.http.response import Response, reason_phrase, response_head, wire_headers
from agent.http.routes import Ctx, Router, SocketRoute
from agent.http.send import send_head_and_body
from agent.http.ws_gate import WsGate
from agent.http.ws_handoff import Replayed, check_handshake, head_bytes, wants_websocket
from agent.peer import peer_hung_up, peer_text

if TYPE_CHECKING:
    from agent.api import AgentAPI

__all__ = ["HttpServer", "serve_http"]

log = logging.getLogger("agent.http")

_RECEIVE_SIZE = 64 * 1024
_NO_BODY = (204, 304)  # statuses whose response has no body whatever its headers say: h11 writes them
_TOO_MANY = (
    b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: 0\r\nConnection: close\r\n\r\n"
)


def _raw_error(status: int) -> bytes:
    """Go's answer to a request it cannot parse: ``400 Bad Request`` as a plain-text body, then close."""
    if status not in _REASONS:
        status = 400
    reason = _REASONS[status]
    body = f"{status} {reason}".encode()
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


_REASONS = {
    301: "Moved Permanently",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Request Entity Too Large",
    426: "Upgrade Required",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
}


class _Close(Exception):
    """Stop serving this connection (timeout, peer gone, protocol error already answered)."""


class HttpServer:
    """Shared state of one listening server: the agent, the router, the options and the connection slots."""

    def __init__(self, api: AgentAPI, options: HttpOptions, router: Router, rng: random.Random) -> None:
        self.api = api
        self.options = options
        self.router = router
        self.rng = rng
        self.slots = ConnectionSlots(options.max_connections, options.max_connections_per_client)
        self.watch = HandlerWatch()  # run by serve_http; a connection served without it brings its own
        self._hosts: HostPolicy | None = None

    def host_policy(self) -> HostPolicy:
        """The Host rules of the agent's current config (rebuilt after a reload)."""
        config = self.api.config
        if self._hosts is None or self._hosts.config is not config:
            self._hosts = HostPolicy(config)
        return self._hosts

    async def accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        """Accept forever; every connection is its own task in ``nursery`` (a failure in one stays there)."""
        async with listener:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:
                    if exc.errno not in ACCEPT_CAPACITY_ERRNOS:
                        raise
                    log.error("http: accept failed (%s); retrying in 100 ms", exc)
                    await trio.sleep(0.1)
                    continue
                remote = peer_text(stream)
                slot = self.slots.admit(remote.rsplit(":", 1)[0])
                if slot is None:
                    nursery.start_soon(self._reject, stream, remote)
                    continue
                nursery.start_soon(self._serve_connection, stream, remote, slot)

    async def _reject(self, stream: trio.SocketStream, remote: str) -> None:
        """Every slot holds a request in progress: 429 (in its own task: the accept loop never waits on a client)."""
        log.warning("http: connection limit reached, every connection busy: refusing %s", remote)
        with trio.move_on_after(0.05):
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                await stream.send_all(_TOO_MANY)
        await trio.aclose_forcefully(stream)

    async def serve_connection(self, stream: trio.abc.Stream, remote: str = "memory", slot: Slot | None = None) -> None:
        """Serve one accepted stream until it closes (tests drive this over in-memory streams, virtual clock)."""
        slot = slot or Slot(remote, released=True)  # uncounted
        if self.watch.active:
            await _Connection(self, self.watch, stream, remote, slot).run()
            return
        watch = HandlerWatch()  # no server loop runs the shared one (a test): this connection's own
        async with trio.open_nursery() as nursery:
            await nursery.start(watch.run)
            await _Connection(self, watch, stream, remote, slot).run()
            nursery.cancel_scope.cancel()

    async def _serve_connection(self, stream: trio.SocketStream, remote: str, slot: Slot) -> None:
        try:
            await self.serve_connection(stream, remote, slot)
        except Exception:
            log.exception("http: connection from %s failed", remote)
        finally:
            self.slots.release(slot)
            await trio.aclose_forcefully(stream)


class _Connection:
    """One client connection: read a request, run it, write the response, repeat while keep-alive holds.

    One task does it all, under one cancel scope for the whole connection: every timeout, an eviction and a
    hang-up during a handler end the connection anyway, so instead of a scope per wait the scope's deadline
    moves with the phase (``self.phase`` says which one expired), a handler runs in this task with no task or
    scope of its own (a slow one is watched by the server's `HandlerWatch`), and a response with a known length
    is written without h11 (`response_head`); h11 parses, and is replaced by a fresh one for the next request.
    """

    def __init__(self, server: HttpServer, watch: HandlerWatch, stream: trio.abc.Stream, remote: str,
                 slot: Slot) -> None:
        self.server = server
        self.watch = watch
        self.options = server.options
        self.stream = stream
        self.remote = remote
        self.slot = slot
        self.conn = self._h11()
        self.started = trio.current_time()
        self.scope = trio.CancelScope(deadline=self.started + self.options.header_timeout)
        self.phase = "head"  # what the connection is doing: the log line when its deadline passes
        self.request: Request | None = None  # the one being handled (a hang-up's log line)
        self.gone = False  # the peer hung up while a handler ran (the watch cancelled the scope)
        self.served = 0  # requests answered on this connection
        self._pending = False  # bytes of a next request arrived with the previous one (pipelining)
        self._local: str | None = None  # the address the connection came in on, asked of the socket once

    def _h11(self) -> h11.Connection:
        return h11.Connection(h11.SERVER, max_incomplete_event_size=self.options.max_header_bytes)

    async def run(self) -> None:
        with self.scope, contextlib.suppress(_Close, trio.BrokenResourceError, trio.ClosedResourceError):
            await self._serve()
        if self.scope.cancelled_caught:
            log.debug("http: %s %s", self.remote, self._why_cancelled())

    def _why_cancelled(self) -> str:
        if self.slot.evicted:
            return "evicted while waiting for a request: its slot went to a new client"
        if self.gone and self.request is not None:
            return f"went away during {self.request.method} {self.request.path}"
        return {"head": "timed out waiting for a request head", "body": "timed out sending a request body",
                "write": "did not read its response in time"}.get(self.phase, f"cancelled ({self.phase})")

    async def _serve(self) -> None:
        while True:
            request = await self._read_request()
            if request is None:
                return
            self.served += 1
            refusal = self.server.host_policy().refusal(request.header("host"), request.path, self._local_ip())
            if refusal is not None:
                log.warning("http: %s %s from %s refused: %s", request.method, request.path, self.remote, refusal)
                response = Response.text(403, refusal)
            else:
                socket_route = self.server.router.socket(request.path) if wants_websocket(request) else None
                if socket_route is not None:
                    await self._upgrade(socket_route, request)
                    return
                response = await self._handle(request)
            if not await self._write(response, request):
                return
            self._next_cycle()

    def _next_cycle(self) -> None:
        """A fresh h11 state machine for the next request, holding what arrived after this one."""
        data, closed = self.conn.trailing_data
        self.conn = self._h11()
        if data:
            self.conn.receive_data(data)
        if closed:
            self.conn.receive_data(b"")
        self._pending = bool(data)

    # ------------------------------------------------------------------ reading

    async def _receive(self, max_bytes: int = _RECEIVE_SIZE) -> bytes:
        try:
            return await self.stream.receive_some(max_bytes)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return b""

    def _local_ip(self) -> str:
        if self._local is None:
            sock = getattr(self.stream, "socket", None)
            try:
                self._local = str(sock.getsockname()[0]) if sock is not None else ""
            except OSError:
                self._local = ""
        return self._local

    def _event(self) -> object:
        """h11's next event, or the protocol error it raised."""
        try:
            return self.conn.next_event()
        except h11.RemoteProtocolError as exc:
            return exc

    async def _next_event(self) -> object:
        """The next h11 event, reading as needed; protocol errors are answered (400/431) and end the connection."""
        while (event := self._event()) is h11.NEED_DATA:
            self.conn.receive_data(await self._receive())
        if isinstance(event, h11.RemoteProtocolError):
            await self._refuse(event.error_status_hint)
            raise _Close
        return event

    async def _read_request(self) -> Request | None:
        """The next request, or None (closed, or refused with an error answer).

        The first request's head is due ``header_timeout`` after the connection started; a later one
        ``idle_timeout`` after the previous answer for its first byte, then ``header_timeout`` for the rest.
        Bytes trickling in never move a deadline.  The whole wait is idle time: the slot may be evicted.
        """
        opts = self.options
        event = self._event()
        if event is h11.NEED_DATA:
            event = await self._wait_head(opts)
        if isinstance(event, h11.RemoteProtocolError):
            await self._refuse(event.error_status_hint)
            return None
        if not isinstance(event, h11.Request):
            return None  # ConnectionClosed (or nothing more will come)
        method = event.method.decode("ascii", errors="replace")
        target = event.target.decode("utf-8", errors="replace")
        headers = tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers)
        if len(event.target) + sum(len(k) + len(v) + 4 for k, v in event.headers) > opts.max_header_bytes:
            # h11 only limits incomplete heads; a complete one that is too big is refused here.
            await self._refuse(431)
            return None
        try:
            path, raw_query = parse_target(target)
        except BadTarget:
            await self._refuse(400)
            return None
        body = await self._read_body(event, headers)
        if body is None:
            return None
        return Request(method, target, path, raw_query, Query.parse(raw_query), headers, body, self.remote)

    async def _wait_head(self, opts: HttpOptions) -> object:
        """Read until h11 has a request head (or an error, or the end), under the head or idle deadline."""
        scope, slots = self.scope, self.server.slots
        started = self.served == 0 or self._pending
        if self.served:
            scope.deadline = trio.current_time() + (opts.header_timeout if started else opts.idle_timeout)
        self.phase = "head"
        slots.waiting(self.slot, scope)
        try:
            while True:
                data = await self._receive()
                self.conn.receive_data(data)
                if (event := self._event()) is not h11.NEED_DATA:
                    return event  # usually the whole head in one read: no head deadline to set (it moves per phase)
                if data and not started:
                    started = True
                    scope.deadline = trio.current_time() + opts.header_timeout
        finally:
            slots.working(self.slot)

    async def _read_body(self, event: h11.Request, headers: tuple[tuple[str, str], ...]) -> bytes | None:
        cap = self.options.max_request_bytes
        declared = next((v for k, v in headers if k == "content-length"), None)
        if declared is not None and int(declared) > cap:
            await self._too_large(event)
            return None
        if self.conn.they_are_waiting_for_100_continue:
            await self._send(self.conn.send(h11.InformationalResponse(status_code=100, headers=[])))
        elif declared in (None, "0") and not any(k == "transfer-encoding" for k, _ in headers):
            # No body (a GET): h11 has the end of the message already, no deadline is needed to wait for it.
            if isinstance(self.conn.next_event(), h11.EndOfMessage):
                return b""
            return None  # not reached: h11 ends a message without a length or a transfer coding at once
        self.scope.deadline = trio.current_time() + self.options.body_timeout
        self.phase = "body"
        body = bytearray()
        while True:
            ev = await self._next_event()
            if isinstance(ev, h11.Data):
                body += ev.data
                if len(body) > cap:
                    await self._too_large(event)
                    return None
            elif isinstance(ev, h11.EndOfMessage):
                return bytes(body)
            else:
                return None  # the client closed mid-body

    async def _too_large(self, event: h11.Request) -> None:
        cap = self.options.max_request_bytes
        response = Response.text(413, f"Request body too large, max size: {cap} bytes")
        response.close = True
        await self._write_h11(response, head=event.method == b"HEAD")
        await self._linger()

    async def _linger(self) -> None:
        """Close our side, then drain what the client is still sending for a moment (Go's closeWriteAndWait):
        closing with unread data would reset the connection and could destroy the response we just sent."""
        with trio.move_on_after(self.options.linger_time):
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError, AttributeError):
                await self.stream.send_eof()  # type: ignore[attr-defined]
            budget = self.options.max_request_bytes
            while budget > 0 and (data := await self._receive()):
                budget -= len(data)

    # ------------------------------------------------------------------ handling

    async def _handle(self, request: Request) -> Response:
        """Run the request in this task; a hang-up meanwhile cancels it (Go cancels the request context) and
        ends the connection: the watch (only for a handler still running after `WATCH_AFTER`) cancels
        ``self.scope``.  A response computed when the server is cancelled (``PUT /v1/agent/leave``) still goes
        out: `_send` shields it."""
        self.scope.deadline = math.inf
        self.phase = "handler"
        self.request = request
        s = self.server
        self.watch.started(self)
        try:
            response = await s.router.dispatch(s.api, request, self.options, s.rng)
        finally:
            watched = self.watch.finished(self)
        if watched is not None:
            with trio.CancelScope(shield=True):  # the watch may be inside a receive: let it leave first
                await watched.wait()
        self.request = None
        return response

    async def watch_peer(self) -> None:
        """`HandlerWatch` runs this once the handler has run `WATCH_AFTER`: a hang-up cancels the connection."""
        await self._watch_peer(self._hung_up)

    def _hung_up(self) -> None:
        self.gone = True
        self.scope.cancel()

    async def _watch_peer(self, on_hangup: Callable[[], None]) -> None:
        """While the handler runs, read one byte at most (Go's background read): EOF calls ``on_hangup``.

        A byte means the client sent more (a pipelined request, garbage): it goes to h11 and the rest waits in
        the kernel until the response is out (TCP backpressure), so a parked query costs nothing more whatever
        its client sends.  From then on the socket is only polled for a hang-up now and then.
        """
        sock = getattr(self.stream, "socket", None)
        if sock is not None:
            # Parked on the descriptor itself: a parked blocking query's watch is cancelled when it is answered,
            # and cancelling a bare wait is far cheaper than unwinding a stream receive (thousands are woken at
            # once by one change).  Readable: the receive below returns at once.
            try:
                await trio.lowlevel.wait_readable(sock)
            except (trio.ClosedResourceError, OSError):
                return  # the connection is being closed: nothing left to watch
        data = await self._receive(1)
        if not data:
            on_hangup()
            return
        self.conn.receive_data(data)
        if sock is None:
            await trio.sleep_forever()
        while True:
            await trio.sleep(self.options.hangup_check_interval)
            if peer_hung_up(sock):
                on_hangup()
                return

    # ------------------------------------------------------------------ websocket hand-off

    async def _upgrade(self, route: SocketRoute, request: Request) -> None:
        """Validate, then give the connection to trio-websocket and run the route's session on it."""
        s = self.server
        self.scope.deadline = math.inf
        self.phase = "websocket"
        try:
            check_handshake(request)
            session = await s.router.open_socket(route, Ctx(s.api, request, self.options, s.rng))
        except HTTPError as exc:
            response = Response.text(exc.status, exc.reason)
            if exc.status == 426:
                response.headers["Sec-Websocket-Version"] = "13"
            response.close = True
            await self._write_h11(response, head=False)
            return
        # trio-websocket reads and writes through a gate: a session may write whole frames straight to the socket.
        stream = WsGate(Replayed(self.stream, head_bytes(request) + self.conn.trailing_data[0]),
                        getattr(self.stream, "socket", None))
        async with trio.open_nursery() as nursery:
            ws: trio_websocket.WebSocketConnection | None = None
            with trio.move_on_after(self.options.header_timeout):
                proposal = await trio_websocket.wrap_server_stream(
                    nursery, stream, message_queue_size=1, max_message_size=self.options.stream_max_message_bytes
                )
                ws = await proposal.accept()
            if ws is not None:
                log.debug("http: %s upgraded %s to a websocket", self.remote, request.path)  # no query: tokens
                await session.run(ws, stream)
            nursery.cancel_scope.cancel()  # trio-websocket's reader task

    # ------------------------------------------------------------------ writing

    async def _write(self, response: Response, request: Request) -> bool:
        """Send the response; False: the connection closes after it (the response's or the client's choice)."""
        head_only = request.method == "HEAD"
        version = self.conn.their_http_version
        close = response.close or not keep_alive(request, version)
        status = response.status
        if response.stream is None and version == b"1.1" and status >= 200 and status not in _NO_BODY:
            head = response_head(response, close=close)
            if head is not None:
                await self._send(head, b"" if head_only else response.body)
                return not close
        await self._write_h11(response, head=head_only)
        return not (response.close or self.conn.our_state is h11.MUST_CLOSE)

    async def _write_h11(self, response: Response, *, head: bool) -> None:
        """Through h11: streamed bodies, HTTP/1.0 clients, bodiless statuses, and a header h11 must refuse."""
        conn = self.conn
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in wire_headers(response)]
        reason = reason_phrase(response.status).encode()
        data = conn.send(h11.Response(status_code=response.status, headers=headers, reason=reason))
        if response.stream is not None and not head:
            await self._send(data)
            await self._write_stream(response.stream)
            return
        parts = [data]  # joined once: a large body is copied once, not at each concatenation
        if response.body and not head:
            parts += conn.send_with_data_passthrough(h11.Data(data=response.body)) or ()
        parts += conn.send_with_data_passthrough(h11.EndOfMessage()) or ()
        await self._send(b"".join(parts))

    async def _write_stream(self, stream: Callable[[Callable[[bytes], Awaitable[None]]], Awaitable[None]]) -> None:
        """A streamed body, chunk by chunk, until ``stream`` returns or the client hangs up (then we close)."""

        async def send(chunk: bytes) -> None:
            if chunk:
                await self._send(self.conn.send(h11.Data(data=chunk)))

        gone = False
        async with trio.open_nursery() as nursery:

            def hung_up() -> None:
                nonlocal gone
                gone = True
                nursery.cancel_scope.cancel()

            nursery.start_soon(self._watch_peer, hung_up)
            try:
                await stream(send)
            except (_Close, trio.BrokenResourceError, trio.ClosedResourceError):
                gone = True  # the client stopped reading (write timeout) or the connection broke
            nursery.cancel_scope.cancel()
        if gone:
            log.debug("http: %s went away during a streamed response", self.remote)
            raise _Close
        await self._send(self.conn.send(h11.EndOfMessage()))

    async def _send(self, data: bytes, body: bytes = b"") -> None:
        """Write ``data`` then ``body`` within ``write_timeout``; if the server is already cancelled, within
        ``shutdown_grace``, shielded."""
        if trio.current_effective_deadline() == -math.inf:
            with trio.CancelScope(shield=True, deadline=trio.current_time() + self.options.shutdown_grace):
                await send_head_and_body(self.stream, data, body)
            return
        self.scope.deadline = trio.current_time() + self.options.write_timeout
        self.phase = "write"
        await send_head_and_body(self.stream, data, body)

    async def _refuse(self, status: int) -> None:
        """Answer a request we cannot serve with Go's bare error page, then close gracefully."""
        self.scope.deadline = math.inf  # both steps have their own
        await self._send_raw(_raw_error(status))
        await self._linger()

    async def _send_raw(self, data: bytes) -> None:
        with trio.move_on_after(self.options.write_timeout):
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await self.stream.send_all(data)


#: File descriptors kept for everything but HTTP connections (gossip, Raft, DNS, the data dir, logs).
FD_RESERVE = 256


def connection_cap(default: int = attrs.fields(HttpOptions).max_connections.default) -> int:
    """How many HTTP connections the agent may hold: what its file-descriptor limit leaves, at least ``default``.

    Go (and so Consul) raises the soft RLIMIT_NOFILE to the hard one at start and has no cap of its own; a
    blocking query holds its connection while it waits, so thousands of watchers need thousands of descriptors.
    The soft limit is raised the same way, and the cap is what it leaves after ``FD_RESERVE``."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or hard > soft:
            target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    except (OSError, ValueError):
        return default
    return max(default, soft - FD_RESERVE)


async def serve_http(
    api: AgentAPI,
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
    options: HttpOptions | None = None,
    router: Router | None = None,
    rng: random.Random | None = None,
) -> None:
    """Serve the Consul HTTP API on ``host:port`` (0 picks a port); reports the bound ``(host, port)``."""
    try:
        listeners = await trio.open_tcp_listeners(port, host=host or None)
    except OSError as exc:
        raise listen_error(exc, "tcp", host, port) from exc
    sockname = listeners[0].socket.getsockname()
    bound = (sockname[0], sockname[1])
    if options is None:
        options = HttpOptions(max_connections_per_client=api.config.http_max_conns_per_client,
                              max_connections=connection_cap())
    server = HttpServer(api, options, router or default_router(), rng or random.Random())
    log.info("http: serving the HTTP API on %s:%d", *bound)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.watch.run)
        for listener in listeners:
            nursery.start_soon(server.accept_loop, listener, nursery)
        task_status.started(bound)
