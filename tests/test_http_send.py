"""agent/http/send.py: a response's head and a large body go out by one ``sendmsg`` (no copy of the two together),
and whatever the socket does not take at once follows, in order, whatever the sizes."""

from __future__ import annotations

import socket

import pytest
import trio
import trio.testing

from agent.http.send import GATHER_MIN, send_head_and_body


async def _read(stream: trio.SocketStream, size: int) -> bytes:
    got = bytearray()
    while len(got) < size:
        chunk = await stream.receive_some(1 << 16)
        assert chunk, "the connection closed early"
        got += chunk
    return bytes(got)


@pytest.mark.parametrize("body_size", [0, 100, GATHER_MIN - 1, GATHER_MIN, 3_000_000])
def test_head_and_body_arrive_whole_and_in_order_even_when_the_socket_fills(body_size: int) -> None:
    """3 MB is far more than the socket buffers hold: sendmsg takes part, the rest follows as a view."""

    async def main() -> None:
        a, b = trio.socket.socketpair()
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sender, receiver = trio.SocketStream(a), trio.SocketStream(b)
        head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % body_size
        body = bytes(i % 251 for i in range(body_size))
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(send_head_and_body, sender, head, body)
                await trio.testing.wait_all_tasks_blocked()
                got = await _read(receiver, len(head) + body_size)
            await send_head_and_body(sender, b"", b"")  # nothing at all: writes nothing
            await send_head_and_body(sender, b"!", b"")
            assert await _read(receiver, 1) == b"!"
        assert got == head + body

    trio.run(main)


def test_a_stream_without_a_socket_gets_one_send_all() -> None:
    async def main() -> None:
        left, right = trio.testing.memory_stream_pair()
        body = b"x" * (GATHER_MIN * 2)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_head_and_body, left, b"HEAD", body)
            got = b""
            while len(got) < 4 + len(body):
                got += await right.receive_some()
        assert got == b"HEAD" + body

    trio.run(main)


def test_a_peer_that_is_gone_is_a_broken_resource() -> None:
    async def main() -> None:
        a, b = trio.socket.socketpair()
        b.close()
        with pytest.raises(trio.BrokenResourceError):
            await send_head_and_body(trio.SocketStream(a), b"HEAD", b"y" * (GATHER_MIN * 4))

    trio.run(main)
