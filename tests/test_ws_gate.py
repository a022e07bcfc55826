"""agent/http/ws_gate.py: the stream the server builds trio-websocket on, and its side door for whole frames.

The first test is a contract test against the installed trio-websocket: the fan-out's direct writes are only
safe if trio-websocket reads and writes the stream it was given and writes whole frames per ``send_all``.  If an
upgrade of trio-websocket changes either, it fails here (and the fan-out must be revisited) rather than
interleaving frames on a client's socket.
"""

from __future__ import annotations

import socket
import struct

import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed, wrap_client_stream, wrap_server_stream

from agent.http.stream import text_frame
from agent.http.ws_gate import Written, WsGate


def whole_frames(chunk: bytes) -> list[int]:
    """The opcodes of the frames ``chunk`` holds; AssertionError unless it is whole frames and nothing else."""
    opcodes, at = [], 0
    while at < len(chunk):
        assert len(chunk) - at >= 2, f"a frame head cut short: {chunk[at:]!r}"
        opcode, masked, length = chunk[at] & 0x0F, chunk[at + 1] & 0x80, chunk[at + 1] & 0x7F
        assert chunk[at] & 0x80, "a fragmented frame (FIN unset)"
        at += 2
        if length == 126:
            (length,), at = struct.unpack("!H", chunk[at : at + 2]), at + 2
        elif length == 127:
            (length,), at = struct.unpack("!Q", chunk[at : at + 8]), at + 8
        at += 4 if masked else 0
        assert at + length <= len(chunk), f"a frame cut short: {length} bytes announced, {len(chunk) - at} there"
        at += length
        opcodes.append(opcode)
    return opcodes


class Recording(trio.abc.Stream):
    """A stream that records every ``send_all`` and counts every ``receive_some``."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner
        self.sent: list[bytes] = []
        self.reads = 0

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self.sent.append(bytes(data))
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        self.reads += 1
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_trio_websocket_reads_and_writes_the_given_stream_in_whole_frames() -> None:
    """Messages of each length form, a ping, a pong it answers, the close: every write trio-websocket makes on
    the server side is one ``send_all`` of whole frames, through the gate (which sees the client's bytes)."""

    async def main() -> None:
        server_side, client_side = trio.testing.memory_stream_pair()
        recording = Recording(server_side)
        gate = WsGate(recording)
        closed: list[bool] = []
        gate.on_close = lambda: closed.append(True)
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                proposal_task: list[object] = []

                async def accept() -> None:
                    proposal = await wrap_server_stream(nursery, gate)
                    proposal_task.append(await proposal.accept())

                nursery.start_soon(accept)
                client = await wrap_client_stream(nursery, client_side, "localhost", "/v1/stream/members")
                while not proposal_task:
                    await trio.sleep(0)
                server = proposal_task[0]
                handshake = len(recording.sent)
                assert gate.heard > float("-inf"), "trio-websocket did not read through the gate"
                for size in (5, 300, 70000):
                    await server.send_message("x" * size)  # type: ignore[attr-defined]
                    assert await client.get_message() == "x" * size
                await server.ping(b"p")  # type: ignore[attr-defined]
                await client.ping(b"q")  # the server's reader answers with a pong
                await client.send_message("bye")
                assert await server.get_message() == "bye"  # type: ignore[attr-defined]
                await server.aclose()  # type: ignore[attr-defined]
                with pytest.raises(ConnectionClosed):
                    await client.get_message()
                nursery.cancel_scope.cancel()
        frames = [whole_frames(chunk) for chunk in recording.sent[handshake:]]
        kinds = {op for ops in frames for op in ops}
        assert {0x1, 0x9, 0xA, 0x8} <= kinds, frames  # text, ping, pong, close: each checked whole
        assert recording.sent[0].startswith(b"HTTP/1.1 101 ")
        assert closed == [True] and gate.closed

    trio.run(main)


def test_the_rest_of_a_begun_frame_goes_before_anything_else() -> None:
    """The side door may leave half a frame on the socket; whatever trio-websocket writes next (a ping, a
    message, the close) must come after its rest, or the client would read garbage."""

    async def main() -> None:
        left, right = trio.testing.memory_stream_pair()
        gate = WsGate(left)
        assert not gate.direct and gate.write_now(b"\x89\x00") is Written.REFUSED  # no socket: no side door
        frame = text_frame(b'{"Index":7}')
        gate.rest = frame[3:]  # as if write_now had written frame[:3]
        await gate.send_all(b"\x89\x00")  # a ping
        await gate.finish()  # nothing left: writes nothing
        got = b""
        while len(got) < len(frame) - 3 + 2:
            got += await right.receive_some()
        assert got == frame[3:] + b"\x89\x00" and gate.rest == b""

    trio.run(main)


async def _pair() -> tuple[WsGate, trio.socket.SocketType, trio.SocketStream]:
    a, b = trio.socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return WsGate(trio.SocketStream(a), a), b, trio.SocketStream(b)


async def _read(stream: trio.SocketStream, size: int) -> bytes:
    got = b""
    while len(got) < size:
        got += await stream.receive_some(1 << 16)
    return got


def test_write_now_whole_begun_refused_and_finished() -> None:
    async def main() -> None:
        gate, _, peer = await _pair()
        with trio.fail_after(10):
            assert gate.direct
            small = text_frame(b"hello")
            assert gate.write_now(small) is Written.WHOLE
            assert await _read(peer, len(small)) == small
            big = text_frame(b"z" * 1_000_000)  # more than the socket buffers hold
            assert gate.write_now(big) is Written.BEGUN and 0 < len(gate.rest) < len(big)
            assert gate.write_now(small) is Written.REFUSED  # a rest is pending: nothing may cut in
            async with trio.open_nursery() as nursery:
                nursery.start_soon(gate.send_all, small)  # the rest first, then this
                got = await _read(peer, len(big) + len(small))
            assert got == big + small and gate.rest == b""

    trio.run(main)


def test_write_now_is_refused_while_a_send_all_is_under_way() -> None:
    async def main() -> None:
        gate, _, peer = await _pair()
        with trio.fail_after(10):
            big = b"\x82\x7f" + (2_000_000).to_bytes(8, "big") + b"b" * 2_000_000  # one binary frame
            async with trio.open_nursery() as nursery:
                nursery.start_soon(gate.send_all, big)
                await trio.testing.wait_all_tasks_blocked()  # the socket is full mid-frame
                assert gate.busy and gate.write_now(b"\x89\x00") is Written.REFUSED
                got = await _read(peer, len(big))
            assert got == big and not gate.busy
            assert gate.write_now(b"\x89\x00") is Written.WHOLE

    trio.run(main)


def test_a_broken_or_closed_socket_is_never_written_again() -> None:
    async def main() -> None:
        gate, raw_peer, peer = await _pair()
        closed: list[bool] = []
        gate.on_close = lambda: closed.append(True)
        await peer.aclose()
        outcomes = {gate.write_now(text_frame(b"x" * 100)) for _ in range(3)}
        assert Written.BROKEN in outcomes, outcomes  # the peer is gone: EPIPE / ECONNRESET
        assert gate.closed and gate.write_now(b"\x89\x00") is Written.REFUSED  # and never written again
        await gate.aclose()
        assert closed == [True] and gate.closed
        assert gate.write_now(b"\x89\x00") is Written.REFUSED  # its fd may be another socket's by now
        del raw_peer

    trio.run(main)
