"""Request/response RPC on the server port, beside Raft's messages (Consul's net/rpc on 8300, in our framing).

A connection opens with ``{"hello": 1, "rpc": 1}`` (no answer to it; a server calling another adds its
``"cluster"`` id, and a server of another cluster refuses the connection); then each request is one frame
``{"seq": n, "method": "Status.Leader", "args": {...}}`` and each answer one frame ``{"seq": n, "result": ...}`` or
``{"seq": n, "error": "text"}``, in order.  A client agent asks a server ``Status.Leader`` and ``Status.Peers``
this way, and KV writes and reads go to the leader the same way (``Store.Apply``, ``Store.Query``).  Methods are
plain async callables ``args -> result`` of msgpack-able values, registered by name; an unknown method or a
handler's `RPCError` is an error answer and the connection carries on; a frame that is not a request closes it.

`call` makes one request on a fresh connection.  `RPCPool` keeps a few idle connections per server and makes
each call on one of them, one call at a time per connection (a blocking query holds its connection; the
others stay free).  A connection goes back to the pool only after a whole answer was read; a call that is
cancelled, times out or fails closes its connection, so no late answer can ever be read as another call's.
A pooled connection the server closed (a restart) is seen before use and dropped.  If one still fails, the
call is made once more on a fresh connection only when that cannot apply a write twice: the request did not
leave whole (the send failed, so the server cannot have decoded it), or the method is idempotent.  A call that
found no connection to make (refused, or not made within `CONNECT_TIMEOUT`) or could not send its request whole
on a fresh one is `RPCNotSent`: the server did nothing, and a forwarder may take the call to the next leader
(`call` says so too).
"""

from __future__ import annotations

import logging
import select
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import trio

from agent.hostport import parse_addr

from .frames import HELLO_VERSION, FrameDecoder, FrameError, encode_frame
from .transport import DEFAULT_PORT, RECEIVE_CHUNK

log = logging.getLogger("triumvir.raft.rpc")

Handler = Callable[[Mapping[str, Any]], Awaitable[Any]]
RPC_HELLO = {"hello": HELLO_VERSION, "rpc": 1}
#: methods that change nothing, or change it the same however many times they run: a pooled call of one of
#: these whose connection broke after the request left may be made again (Store.Apply may not)
IDEMPOTENT = frozenset({"Status.Leader", "Status.Peers", "Store.Query", "Session.Renew"})
POOL_MAX_IDLE = 8  # idle connections kept per server
#: a connection not made within this long is given up (a server cut off drops the SYN: no refusal ever comes)
CONNECT_TIMEOUT = 3.0


class RPCError(Exception):
    """An error answer (the server's text), or a failure to reach the server."""


class RPCNotSent(RPCError):
    """No connection could be made, or the request did not leave whole on a fresh one: the server did nothing
    (a write may go to another server)."""


class RPCServer:
    """Serves the RPC connections the transport hands over (`Transport(rpc_handler=server.serve)`)."""

    def __init__(self, handlers: Mapping[str, Handler] | None = None) -> None:
        self.handlers: dict[str, Handler] = dict(handlers or {})

    async def serve(self, stream: trio.SocketStream, decoder: FrameDecoder, pending: list[Any]) -> None:
        frames = pending
        try:
            while True:
                for raw in frames:
                    await stream.send_all(encode_frame(await self._answer(raw)))
                data = await stream.receive_some(RECEIVE_CHUNK)
                if not data:
                    return
                frames = decoder.feed(data)
        except FrameError as err:
            log.warning("rpc: closing a connection: %s", err)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            return

    async def _answer(self, raw: Any) -> dict[str, Any]:
        if not isinstance(raw, dict) or not isinstance(raw.get("seq"), int) or not isinstance(raw.get("method"), str):
            raise FrameError(f"expected an RPC request {{seq, method, args}}, got {raw!r:.60}")
        seq, method, args = raw["seq"], raw["method"], raw.get("args") or {}
        handler = self.handlers.get(method)
        if handler is None:
            return {"seq": seq, "error": f"rpc: can't find method {method}"}
        if not isinstance(args, dict):
            return {"seq": seq, "error": f"rpc: {method}: args must be a map"}
        try:
            return {"seq": seq, "result": await handler(args)}
        except RPCError as err:
            return {"seq": seq, "error": str(err)}


class _Connection:
    """One RPC connection: requests and answers in turn, numbered; the hello goes out with the first request."""

    def __init__(self, stream: trio.SocketStream, cluster: str) -> None:
        self.stream = stream
        self.decoder = FrameDecoder()
        self.seq = 0
        self._hello: bytes = encode_frame({**RPC_HELLO, "cluster": cluster} if cluster else RPC_HELLO)

    @classmethod
    async def open(cls, address: str, cluster: str) -> _Connection:
        host, port = parse_addr(address, DEFAULT_PORT)
        return cls(await trio.open_tcp_stream(host, port), cluster)

    async def send(self, method: str, args: Mapping[str, Any]) -> None:
        self.seq += 1
        frame = encode_frame({"seq": self.seq, "method": method, "args": dict(args)})
        hello, self._hello = self._hello, b""
        await self.stream.send_all(hello + frame)

    async def receive(self) -> dict[str, Any]:
        while True:
            data = await self.stream.receive_some(RECEIVE_CHUNK)
            if not data:
                raise trio.BrokenResourceError("connection closed")
            frames = self.decoder.feed(data)
            if frames:
                break
        answer = frames[0]
        if len(frames) > 1 or self.decoder.pending or not isinstance(answer, dict) or answer.get("seq") != self.seq:
            raise FrameError(f"malformed answer {answer!r:.60}")
        return answer

    def peer_closed(self) -> bool:
        """An idle connection never has anything to read: readable means the server closed (or broke) it."""
        try:
            poller = select.poll()
            poller.register(self.stream.socket.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
            return bool(poller.poll(0))
        except (OSError, ValueError):
            return True

    def close(self) -> None:
        self.stream.socket.close()


def _answer_result(answer: dict[str, Any]) -> Any:
    if "error" in answer:
        raise RPCError(str(answer["error"]))
    return answer.get("result")


_BROKEN = (OSError, trio.BrokenResourceError, trio.ClosedResourceError, FrameError)


class RPCPool:
    """A few idle RPC connections per server address, for callers that make many calls (a client agent's and a
    follower's forwarded KV requests): no connect and hello per call.  Lives in one trio run; `close` at the end."""

    def __init__(self, *, cluster: str = "", max_idle: int = POOL_MAX_IDLE) -> None:
        self.cluster = cluster
        self.max_idle = max_idle
        self._idle: dict[str, list[_Connection]] = {}
        self.calls = 0
        self.opened = 0  # connections made (for tests and measurements)
        self.retries = 0  # calls made a second time on a fresh connection

    async def call(self, address: str, method: str, args: Mapping[str, Any] | None = None, *,
                   timeout: float = 2.0) -> Any:
        """As `call`, on a pooled connection; RPCError on any failure (or the server's error answer)."""
        args = dict(args or {})
        self.calls += 1
        try:
            with trio.fail_after(timeout):
                conn = self._take(address)
                if conn is not None:
                    try:
                        return await self._exchange(conn, address, method, args, reused=True)
                    except _Retry:
                        self.retries += 1
                try:
                    with trio.fail_after(min(timeout, CONNECT_TIMEOUT)):
                        conn = await self._open(address)
                except (OSError, trio.TooSlowError) as err:
                    raise _NotSent(str(err) or type(err).__name__) from None
                return await self._exchange(conn, address, method, args, reused=False)
        except _NotSent as err:
            raise RPCNotSent(f"rpc {method} to {address}: {err}") from None
        except (*_BROKEN, trio.TooSlowError) as err:
            raise RPCError(f"rpc {method} to {address}: {str(err) or type(err).__name__}") from None

    async def _exchange(self, conn: _Connection, address: str, method: str, args: dict[str, Any], *,
                        reused: bool) -> Any:
        """One request and its answer; the connection goes back to the pool only after a whole answer."""
        try:
            try:
                await conn.send(method, args)
            except _BROKEN as err:  # it did not leave whole: the server cannot have decoded, let alone run, it
                if reused:
                    raise _Retry() from None
                raise _NotSent(str(err) or type(err).__name__) from None
            try:
                answer = await conn.receive()
            except _BROKEN:
                if reused and method in IDEMPOTENT:
                    raise _Retry() from None
                raise
        except BaseException:
            conn.close()  # cancelled, timed out or broken: an answer may still come, never to be read as another's
            raise
        self._give_back(address, conn)
        return _answer_result(answer)

    def _take(self, address: str) -> _Connection | None:
        idle = self._idle.get(address)
        while idle:
            conn = idle.pop()
            if not conn.peer_closed():
                return conn
            conn.close()
        return None

    async def _open(self, address: str) -> _Connection:
        conn = await _Connection.open(address, self.cluster)
        self.opened += 1
        return conn

    def _give_back(self, address: str, conn: _Connection) -> None:
        idle = self._idle.setdefault(address, [])
        if len(idle) < self.max_idle:
            idle.append(conn)
        else:
            conn.close()

    def idle(self, address: str) -> int:
        return len(self._idle.get(address, ()))

    def close(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()


class _Retry(Exception):
    """A pooled connection failed in a way that allows the call once more on a fresh one."""


class _NotSent(Exception):
    """A fresh connection could not be made or did not take the request whole."""


async def call(address: str, method: str, args: Mapping[str, Any] | None = None, *, timeout: float = 2.0,
               cluster: str = "") -> Any:
    """One request on a fresh connection to the server at ``address`` (``IP:port``); RPCError on any failure,
    `RPCNotSent` when the request cannot have reached the server (no connection made, or it did not leave whole).
    ``cluster``: the caller's Raft cluster id, if it has one; a server of another cluster refuses the connection
    (a server's own calls to its cluster say it; a client agent, which has none, sends none)."""
    sent = False
    try:
        with trio.fail_after(timeout):
            conn = await _Connection.open(address, cluster)
            try:
                await conn.send(method, dict(args or {}))
                sent = True
                answer = await conn.receive()
            finally:
                conn.close()
    except (*_BROKEN, trio.TooSlowError) as err:
        error = RPCError if sent else RPCNotSent
        raise error(f"rpc {method} to {address}: {str(err) or type(err).__name__}") from None
    return _answer_result(answer)
