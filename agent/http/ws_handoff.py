"""The websocket hand-off: when an HTTP request asks to become a websocket, what is checked before trio-websocket
takes the connection, and the stream that replays the request head h11 already consumed (hypercorn keeps this
apart from the connection too)."""

from __future__ import annotations

import trio

from agent.http.errors import HTTPError
from agent.http.request import Request, header_tokens

__all__ = ["Replayed", "check_handshake", "head_bytes", "wants_websocket"]


def wants_websocket(request: Request) -> bool:
    """RFC 6455 4.2.1: a GET whose ``Connection`` lists ``upgrade`` and whose ``Upgrade`` lists ``websocket``."""
    if request.method != "GET" or not request.header("upgrade"):
        return False
    connection, upgrade = header_tokens(request.header("connection")), header_tokens(request.header("upgrade"))
    return "upgrade" in connection and "websocket" in upgrade


def check_handshake(request: Request) -> None:
    """What wsproto would refuse without a word, refused here with a reason."""
    if request.header("sec-websocket-version").strip() != "13":
        raise HTTPError(426, "websocket version 13 required (Sec-WebSocket-Version: 13)")
    if not request.header("sec-websocket-key").strip():
        raise HTTPError(400, "websocket handshake without a Sec-WebSocket-Key")


def head_bytes(request: Request) -> bytes:
    """The request head again, as trio-websocket (wsproto) reads it off the wire to do the handshake."""
    lines = [f"{request.method} {request.target} HTTP/1.1", *(f"{k}: {v}" for k, v in request.headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class Replayed(trio.abc.Stream):
    """A stream that first yields bytes already read (the upgrade request h11 consumed), then the socket's."""

    def __init__(self, stream: trio.abc.Stream, prefix: bytes) -> None:
        self._stream = stream
        self._prefix = prefix

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._prefix:
            await trio.lowlevel.checkpoint()
            n = max_bytes or len(self._prefix)
            data, self._prefix = self._prefix[:n], self._prefix[n:]
            return data
        return await self._stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self._stream.aclose()
