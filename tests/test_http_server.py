"""agent/http/server.py: keep-alive, pipelining, limits, timeouts and isolation between clients.

Rules of this file: real-socket tests bind 127.0.0.1 port 0 and are bounded by ``trio.fail_after``; tests where
time must pass (timeouts, ten-minute blocking queries) drive ``HttpServer.serve_connection`` over in-memory
streams under ``MockClock(autojump_threshold=0)``, so minutes of virtual time take milliseconds and no test
depends on how fast the machine is.
"""

from __future__ import annotations

import contextlib
import random
from typing import Any

import trio
import trio.testing
from http_fakes import FakeAgent, Reply, member, read_replies, request_bytes, run, server_config, serving

from agent.durations import go_duration, parse_duration
from agent.http.blocking import block_time
from agent.http.endpoints import default_router
from agent.http.options import HttpOptions
from agent.http.server import HttpServer

TIMEOUT = 10


def cluster() -> FakeAgent:
    api = FakeAgent(config=server_config())
    api.add_self()
    api.apply("member-join", member("web-2", "10.0.0.13"))
    return api


async def connect(addr: tuple[str, int]) -> trio.SocketStream:
    return await trio.open_tcp_stream(*addr)


async def read_until_closed(stream: trio.abc.ReceiveStream) -> bytes:
    data = bytearray()
    while chunk := await stream.receive_some(65536):
        data += chunk
    return bytes(data)


# ---------------------------------------------------------------------- keep-alive and pipelining


def test_keep_alive_serves_several_requests_on_one_connection() -> None:
    async def main() -> None:
        with trio.fail_after(TIMEOUT):
            async with serving(cluster()) as addr, await connect(addr) as stream:
                for target in ("/v1/status/leader", "/v1/agent/members", "/v1/catalog/nodes"):
                    await stream.send_all(request_bytes("GET", target))
                    (reply,) = await read_replies(stream, 1)
                    assert reply.status == 200 and reply.header("Connection") is None

    run(main)


def test_pipelined_requests_are_answered_in_order() -> None:
    async def main() -> None:
        with trio.fail_after(TIMEOUT):
            async with serving(cluster()) as addr, await connect(addr) as stream:
                burst = b"".join(
                    request_bytes("GET", t)
                    for t in ("/v1/status/leader", "/v1/nope", "/v1/catalog/datacenters", "/v1/status/peers")
                )
                await stream.send_all(burst)
                replies = await read_replies(stream, 4)
                assert [r.status for r in replies] == [200, 404, 200, 200]
                assert [r.body for r in replies] == [
                    b'"10.0.0.11:8300"',
                    b"Invalid URL path: not a recognized HTTP API endpoint\n",
                    b'["dc1"]',
                    b'["10.0.0.11:8300"]',
                ]

    run(main)


def test_http10_without_keep_alive_is_closed_after_the_response() -> None:
    async def main() -> None:
        with trio.fail_after(TIMEOUT):
            async with serving(cluster()) as addr, await connect(addr) as stream:
                await stream.send_all(b"GET /v1/status/leader HTTP/1.0\r\n\r\n")
                raw = await read_until_closed(stream)
                assert raw.startswith(b"HTTP/1.1 200 ") and raw.endswith(b'"10.0.0.11:8300"')

    run(main)


# ---------------------------------------------------------------------- bad and oversized requests


def test_malformed_request_is_400_and_the_server_keeps_serving() -> None:
    async def main() -> None:
        with trio.fail_after(TIMEOUT):
            async with serving(cluster()) as addr:
                for garbage in (b"HELLO\r\n\r\n", b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", b"GET /x HTTP/1.1\r\n\r\n"):
                    async with await connect(addr) as bad:
                        await bad.send_all(garbage)
                        raw = await read_until_closed(bad)
                        assert raw.startswith(b"HTTP/1.1 400 Bad Request\r\n"), raw
                        assert raw.endswith(b"\r\n\r\n400 Bad Request")
                async with await connect(addr) as good:
                    await good.send_all(request_bytes("GET", "/v1/status/leader"))
                    assert (await read_replies(good, 1))[0].status == 200

    run(main)


def test_bad_escape_in_path_is_400() -> None:
    async def main() -> None:
        with trio.fail_after(TIMEOUT):
            async with serving(cluster()) as addr, await connect(addr) as stream:
                await stream.send_all(request_bytes("GET", "/v1/catalog/node/%zz"))
                assert (await read_until_closed(stream)).startswith(b"HTTP/1.1 400 ")

    run(main)


def test_oversized_body_is_413_and_closed() -> None:
    async def main() -> None:
        with trio.fail_after(TIMEOUT):
            async with serving(cluster(), max_request_bytes=1 << 20) as addr:
                async with await connect(addr) as stream:
                    head = request_bytes("PUT", "/v1/agent/reload", headers={"Content-Length": str(2 << 20)})
                    await stream.send_all(head)
                    (reply,) = await read_replies(stream, 1, method=b"PUT")
                    assert reply.status == 413 and reply.header("Connection") == "close"
                    assert reply.body == b"Request body too large, max size: 1048576 bytes"
                # Chunked: no length up front, cut off once the cap is passed.
                async with await connect(addr) as stream:
                    head = (
                        b"PUT /v1/agent/reload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                        + (b"10000\r\n" + b"x" * 0x10000 + b"\r\n") * 20
                    )
                    with trio.move_on_after(2), contextlib.suppress(trio.BrokenResourceError):
                        await stream.send_all(head)
                    (reply,) = await read_replies(stream, 1, method=b"PUT")
                    assert reply.status == 413
                # A body under the cap is fine.
                async with await connect(addr) as stream:
                    await stream.send_all(request_bytes("PUT", "/v1/agent/reload", b"{}" * 1000))
                    assert (await read_replies(stream, 1, method=b"PUT"))[0].status == 200

    run(main)


def test_oversized_head_is_431() -> None:
    async def main() -> None:
        with trio.fail_after(TIMEOUT):
            async with serving(cluster(), max_header_bytes=4096) as addr, await connect(addr) as stream:
                await stream.send_all(request_bytes("GET", "/v1/status/leader", headers={"X-Big": "y" * 8000}))
                raw = await read_until_closed(stream)
                assert raw.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")

    run(main)


def test_expect_100_continue() -> None:
    async def main() -> None:
        with trio.fail_after(TIMEOUT):
            async with serving(cluster()) as addr, await connect(addr) as stream:
                await stream.send_all(
                    b"PUT /v1/agent/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"
                )
                assert (await stream.receive_some(100)).startswith(b"HTTP/1.1 100 ")
                await stream.send_all(b"{}")
                assert (await read_replies(stream, 1, method=b"PUT"))[0].status == 200

    run(main)


# ---------------------------------------------------------------------- slow clients, connection caps


def test_a_slow_client_does_not_block_another() -> None:
    async def main() -> None:
        with trio.fail_after(TIMEOUT):
            async with serving(cluster(), header_timeout=1.0) as addr, await connect(addr) as slow:
                await slow.send_all(b"GET /v1/catalog/nodes HTTP/1.1\r\nHost: x\r\n")  # half a head
                async with await connect(addr) as fast:
                    await fast.send_all(request_bytes("GET", "/v1/status/leader"))
                    with trio.fail_after(0.5):
                        assert (await read_replies(fast, 1))[0].status == 200
                # The slow one is dropped at its header deadline, without a response.
                with trio.fail_after(3):
                    assert await read_until_closed(slow) == b""

    run(main)


def test_connection_cap_answers_429_only_when_every_connection_is_busy() -> None:
    api = cluster()
    index = api.table.current.index

    async def main() -> None:
        with trio.fail_after(TIMEOUT):
            async with serving(api, max_connections=2) as addr:
                a, b = await connect(addr), await connect(addr)
                async with a, b:
                    for s in (a, b):  # both park a blocking query: busy
                        await s.send_all(request_bytes("GET", f"/v1/catalog/nodes?index={index}&wait=1m"))
                    while api.table.statistics().waiters < 2:
                        await trio.sleep(0.01)
                    async with await connect(addr) as c:
                        raw = await read_until_closed(c)
                        assert raw.startswith(b"HTTP/1.1 429 Too Many Requests\r\n")
                    api.apply("member-join", member("late", "10.0.0.50"))
                    for s in (a, b):
                        assert (await read_replies(s, 1))[0].status == 200
                    # Now both are idle keep-alive connections: a newcomer takes the longest-idle one's slot
                    # (a's or b's: their responses went out in the same instant, so either may be the older).
                    async with await connect(addr) as d:
                        await d.send_all(request_bytes("GET", "/v1/status/leader"))
                        assert (await read_replies(d, 1))[0].status == 200
                    closed: list[bytes] = []
                    async with trio.open_nursery() as nursery:
                        async def first_closed(s: trio.SocketStream) -> None:
                            closed.append(await read_until_closed(s))
                            nursery.cancel_scope.cancel()

                        for s in (a, b):
                            nursery.start_soon(first_closed, s)
                    assert closed == [b""]

    run(main)


def test_leave_response_is_delivered_although_it_shuts_the_server_down() -> None:
    api = cluster()

    async def main() -> None:
        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as outer:
                api.on_leave = outer.cancel_scope.cancel  # as the supervisor cancels its root nursery
                async with serving(api) as addr:
                    stream = await connect(addr)
                    await stream.send_all(request_bytes("PUT", "/v1/agent/leave"))
                    with trio.CancelScope(shield=True):
                        reply = (await read_replies(stream, 1, method=b"PUT"))[0]
                    assert reply.status == 200
                    await stream.aclose()

    run(main)
    assert api.leaves == 1


# ---------------------------------------------------------------------- virtual time: memory streams


class Harness:
    """One HttpServer connection over an in-memory stream pair; the client end is ``self.client``."""

    def __init__(self, api: FakeAgent, nursery: trio.Nursery, **options: Any) -> None:
        self.server = HttpServer(api, HttpOptions(**options), default_router(), random.Random(7))
        self.client, server_end = trio.testing.memory_stream_pair()
        self.closed = trio.Event()

        async def serve() -> None:
            await self.server.serve_connection(server_end)
            await server_end.aclose()
            self.closed.set()

        nursery.start_soon(serve)

    async def request(self, target: str, method: str = "GET") -> tuple[Reply, float]:
        start = trio.current_time()
        await self.client.send_all(request_bytes(method, target))
        (reply,) = await read_replies(self.client, 1, method=method.encode())
        return reply, trio.current_time() - start


def run_virtual(fn: Any) -> None:
    run(fn, mock_clock=True)


def test_blocking_query_waits_the_full_wait_plus_at_most_a_sixteenth() -> None:
    api = cluster()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            h = Harness(api, nursery)
            index = api.table.current.index
            for wait, expected in (("10m", 600.0), ("20m", 600.0), ("", 300.0), ("0s", 300.0), ("2s", 2.0)):
                query = f"index={index}" + (f"&wait={wait}" if wait else "")
                reply, elapsed = await h.request(f"/v1/catalog/nodes?{query}")
                assert reply.status == 200 and reply.header("X-Consul-Index") == str(index)
                assert expected <= elapsed <= expected * (1 + 1 / 16), (wait, elapsed)
            # An index ahead of the table (a reset cluster) also waits the whole time, then returns the smaller one.
            reply, elapsed = await h.request(f"/v1/catalog/nodes?index={index + 100}&wait=1m")
            assert 60 <= elapsed <= 60 * 17 / 16 and reply.header("X-Consul-Index") == str(index)
            nursery.cancel_scope.cancel()

    run_virtual(main)


def test_blocking_query_returns_as_soon_as_the_table_moves() -> None:
    api = cluster()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            h = Harness(api, nursery)
            index = api.table.current.index

            async def change_later() -> None:
                await trio.sleep(42)
                api.apply("member-join", member("late", "10.0.0.50"))

            nursery.start_soon(change_later)
            reply, elapsed = await h.request(f"/v1/catalog/nodes?index={index}&wait=10m")
            assert 42 <= elapsed < 43
            assert int(reply.header("X-Consul-Index") or 0) > index
            assert b'"late"' in reply.body
            # index=0 or an old index never blocks.
            for query in ("index=0&wait=10m", f"index={index}&wait=10m"):
                _, elapsed = await h.request(f"/v1/catalog/nodes?{query}")
                assert elapsed < 1
            nursery.cancel_scope.cancel()

    run_virtual(main)


def test_client_going_away_cancels_its_blocking_query() -> None:
    api = cluster()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            h = Harness(api, nursery)
            await h.client.send_all(request_bytes("GET", f"/v1/catalog/nodes?index={api.table.current.index}"))
            await trio.sleep(5)
            assert api.table.statistics().waiters == 1
            await h.client.aclose()
            await h.closed.wait()
            assert trio.current_time() < 6
            assert api.table.statistics().waiters == 0

    run_virtual(main)


def test_idle_and_header_timeouts() -> None:
    api = cluster()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            # Idle keep-alive connection: closed after idle_timeout.
            h = Harness(api, nursery, idle_timeout=90, header_timeout=10)
            await h.request("/v1/status/leader")
            start = trio.current_time()
            await h.closed.wait()
            assert 90 <= trio.current_time() - start < 91
            # Slowloris: a byte every second keeps arriving, but the head is due 10 s after its first byte.
            h = Harness(api, nursery, idle_timeout=90, header_timeout=10)
            start = trio.current_time()

            async def trickle() -> None:
                for byte in b"GET /v1/status/leader HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000:
                    try:
                        await h.client.send_all(bytes([byte]))
                    except trio.BrokenResourceError:
                        return  # the server hung up on us, as it should
                    await trio.sleep(1)

            nursery.start_soon(trickle)
            await h.closed.wait()
            assert 10 <= trio.current_time() - start < 11
            nursery.cancel_scope.cancel()

    run_virtual(main)


def test_body_timeout() -> None:
    api = cluster()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            h = Harness(api, nursery, body_timeout=30)
            await h.client.send_all(request_bytes("PUT", "/v1/agent/reload", headers={"Content-Length": "10"}))
            start = trio.current_time()
            await h.closed.wait()
            assert 30 <= trio.current_time() - start < 31
            assert api.reloads == 0

    run_virtual(main)


# ---------------------------------------------------------------------- pure helpers


def test_go_duration_strings_as_go_prints_them() -> None:
    seconds = (0, 0.25, 30, 90, 72 * 3600, -2)
    assert [go_duration(s) for s in seconds] == ["0s", "250ms", "30s", "1m30s", "72h0m0s", "-2s"]


def test_go_durations_and_block_time() -> None:
    assert parse_duration("1m30s") == 90
    assert parse_duration("250ms") == 0.25
    assert parse_duration("1.5h") == 5400
    assert parse_duration("0") == 0
    assert parse_duration("-2s") == -2
    for bad in ("", "10", "s", "1x", "1h-5m", ".s", "+"):
        try:
            parse_duration(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} should be invalid")
    rng = random.Random(1)
    for _ in range(200):
        assert 600 <= block_time(3600, rng) < 637.5
        assert 300 <= block_time(-5, rng) < 318.75
        assert 16 <= block_time(16, rng) < 17


def test_the_connection_cap_is_what_the_raised_descriptor_limit_leaves() -> None:
    """As Go does, the agent raises its soft RLIMIT_NOFILE to the hard limit; the HTTP cap is what that leaves
    after FD_RESERVE (at least the 1,024 default), so thousands of blocking queries can park.  In a child process:
    the limit is the process's."""
    import subprocess
    import sys

    code = (
        "import resource\n"
        "from agent.http.server import FD_RESERVE, connection_cap\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (min(512, hard), hard))\n"
        "cap = connection_cap()\n"
        "now = resource.getrlimit(resource.RLIMIT_NOFILE)[0]\n"
        "top = 1 << 20 if hard == resource.RLIM_INFINITY else hard\n"
        "assert now == top, (now, hard)\n"
        "assert cap == max(1024, top - FD_RESERVE), cap\n"
        "print('ok', cap)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("ok"), out.stderr
