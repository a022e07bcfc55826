"""Request/response RPC on the server port, beside Raft's messages (Consul's net/rpc on 8300, in our framing).

A connection opens with ``{"hello": 1, "rpc": 1}`` (no answer to it; a server calling another adds its
``"cluster"`` id, and a server of another cluster refuses the connection); then each request is one frame
``{"seq": n, "method": "Status.Leader", "args": {...}}`` and each answer one frame ``{"seq": n, "result": ...}`` or
``{"seq": n, "error": "text"}``, in order.  A client agent asks a server ``Status.Leader`` and ``Status.Peers``
this way, and KV writes and reads go to the leader the same way (``Store.Apply``, ``Store.Query``).  Methods are
plain async callables ``args -> result`` of msgpack-able values, registered by name; an unknown method or a
handler's `RPCError` is an error answer and the connection carries on; a frame that is not a request closes it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import trio

from agent.gossip import parse_addr

from .frames import HELLO_VERSION, FrameDecoder, FrameError, encode_frame
from .transport import DEFAULT_PORT, RECEIVE_CHUNK

log = logging.getLogger("triumvir.raft.rpc")

Handler = Callable[[Mapping[str, Any]], Awaitable[Any]]
RPC_HELLO = {"hello": HELLO_VERSION, "rpc": 1}


class RPCError(Exception):
    """An error answer (the server's text), or a failure to reach the server."""


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


async def call(address: str, method: str, args: Mapping[str, Any] | None = None, *, timeout: float = 2.0,
               cluster: str = "") -> Any:
    """One request on a fresh connection to the server at ``address`` (``IP:port``); RPCError on any failure.
    ``cluster``: the caller's Raft cluster id, if it has one; a server of another cluster refuses the connection
    (a server's own calls to its cluster say it; a client agent, which has none, sends none)."""
    host, port = parse_addr(address, DEFAULT_PORT)
    try:
        with trio.fail_after(timeout):
            stream = await trio.open_tcp_stream(host, port)
            async with stream:
                hello = {**RPC_HELLO, "cluster": cluster} if cluster else RPC_HELLO
                await stream.send_all(encode_frame(hello) + encode_frame({"seq": 1, "method": method,
                                                                             "args": dict(args or {})}))
                decoder = FrameDecoder()
                while True:
                    data = await stream.receive_some(RECEIVE_CHUNK)
                    if not data:
                        raise RPCError(f"rpc {method} to {address}: connection closed")
                    frames = decoder.feed(data)
                    if frames:
                        break
    except (OSError, trio.TooSlowError, trio.BrokenResourceError, FrameError) as err:
        raise RPCError(f"rpc {method} to {address}: {err or type(err).__name__}") from None
    answer = frames[0]
    if not isinstance(answer, dict) or answer.get("seq") != 1:
        raise RPCError(f"rpc {method} to {address}: malformed answer {answer!r:.60}")
    if "error" in answer:
        raise RPCError(str(answer["error"]))
    return answer.get("result")
