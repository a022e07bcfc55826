"""The stream a websocket connection is built on, with a side door: whole frames written straight to the socket.

The server hands trio-websocket a `WsGate` (not the socket) when it upgrades a connection, so everything
trio-websocket writes (messages, pings, pongs, the close) goes through `WsGate.send_all`, one call per frame or
batch of whole frames, under the gate's own lock.  The stream fan-out (agent/http/stream.py) uses the side door,
`write_now`: one non-blocking ``os.write`` of a finished frame, only while no ``send_all`` is under way, so frames
never interleave.  If the socket takes only part of the frame, the rest is kept and goes out first in the next
``send_all`` (`finish` sends it alone).

This relies only on trio-websocket's public contract (it reads and writes the stream it was given) plus one
behaviour of its: each write is whole frames.  tests/test_ws_gate.py checks that behaviour against the installed
trio-websocket, so an upgrade that breaks it fails a test rather than a client.
"""

from __future__ import annotations

import enum
import math
import os
from collections.abc import Callable
from typing import Any

import trio

__all__ = ["Written", "WsGate"]


class Written(enum.Enum):
    """What `WsGate.write_now` did with a frame."""

    WHOLE = "whole"  # all of it is on the socket
    BEGUN = "begun"  # part of it: the rest is kept for the next send_all (`finish`)
    REFUSED = "refused"  # none of it: the socket is full, a send_all is under way, a rest is pending, or no fd
    BROKEN = "broken"  # the socket failed (reset, closed): the ordinary path will find out; no side door after it


def _fd(sock: Any) -> int:
    try:
        fd = sock.fileno() if sock is not None else -1
    except (AttributeError, OSError):
        return -1
    return fd if isinstance(fd, int) and fd >= 0 else -1


class WsGate(trio.abc.Stream):
    """``inner`` (the connection's stream) with `write_now` on ``sock`` (its socket; None: no side door)."""

    def __init__(self, inner: trio.abc.Stream, sock: Any = None) -> None:
        self.inner = inner
        self.fd = _fd(sock)
        self.rest = b""  # the unwritten tail of a frame `write_now` began
        self.closed = False  # set before the socket closes (or once a write failed): no side-door write after it
        self.heard = -math.inf  # trio.current_time() when the client last sent anything
        self.on_close: Callable[[], None] | None = None
        self._lock = trio.StrictFIFOLock()
        self._writing = False  # inside send_all, past the lock: set before its first byte, cleared after its last

    @property
    def direct(self) -> bool:
        """Whether `write_now` can ever write (there is a socket to write to)."""
        return self.fd >= 0

    @property
    def busy(self) -> bool:
        """A send_all is under way (or waiting): a side-door write now could cut into its frame."""
        return self._lock.locked()

    def write_now(self, frame: bytes) -> Written:
        """Write ``frame`` without waiting, if nothing else is being written (see `Written`)."""
        # Not `_lock.locked()`: between taking the lock and writing, send_all yields once; a whole frame written
        # then is harmless, and a begun one's rest goes first (send_all looks at ``rest`` only after that yield).
        if self._writing or self.rest or self.closed or self.fd < 0:
            return Written.REFUSED
        try:
            written = os.write(self.fd, frame)
        except BlockingIOError:
            return Written.REFUSED
        except OSError:
            self.closed = True  # reset or gone: trio-websocket's own next write will find out and close
            return Written.BROKEN
        if written == len(frame):
            return Written.WHOLE
        if written <= 0:
            return Written.REFUSED
        self.rest = frame[written:]
        return Written.BEGUN

    async def finish(self) -> None:
        """Write the rest of a frame `write_now` began (nothing if none)."""
        await self.send_all(b"")

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        async with self._lock:
            self._writing = True
            try:
                if self.rest:
                    await self.inner.send_all(self.rest)
                    self.rest = b""
                if data:
                    await self.inner.send_all(data)
            except BaseException:
                self.closed = True  # a frame may be cut short on the socket: never write after it
                raise
            finally:
                self._writing = False

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        data = await self.inner.receive_some(max_bytes)
        if data:
            self.heard = trio.current_time()
        return data

    async def aclose(self) -> None:
        """Close (trio-websocket may call this more than once: ``on_close`` runs at the first)."""
        self.closed = True
        on_close, self.on_close = self.on_close, None
        if on_close is not None:
            on_close()
        await self.inner.aclose()
