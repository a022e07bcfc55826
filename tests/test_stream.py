"""``/v1/stream/members`` (agent/http/stream.py) and ``/ui/`` (agent/http/ui.py), with trio-websocket clients.

Rules of this file (trio-websocket's own test habits): loopback only, port 0; every test that does I/O runs under
``trio.fail_after``; a wait is a condition with a deadline, never a bare sleep.  In-process tests serve the real
HTTP server on a ``FakeAgent`` (the real MemberTable, changed with its own ``apply``); the cluster tests start
real ``python -m agent`` processes (tests/test_guide.py's Cluster) and stop them by PID.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from http_fakes import FakeAgent, member, read_replies, request_bytes, run, server_config, serving
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket

from agent.http import stream
from agent.members import STATUS_FAILED, STATUS_LEFT, MemberTable

TIMEOUT = 20
PATH = "/v1/stream/members"
#: a websocket upgrade's headers but its version (the tests of a refused upgrade vary or leave it out)
UPGRADE = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}


def cluster_api(table: MemberTable | None = None, **config: Any) -> FakeAgent:
    api = FakeAgent(config=server_config(**config), table=table or MemberTable())
    api.add_self()
    return api


async def next_json(ws: WebSocketConnection, timeout: float = 5) -> dict[str, Any]:
    with trio.fail_after(timeout):
        return json.loads(await ws.get_message())


async def wait_until(probe: Callable[[], bool], what: str, timeout: float = 5) -> None:
    """Poll a condition on the trio clock; fail with ``what`` at the deadline."""
    with trio.move_on_after(timeout):
        while not probe():
            await trio.sleep(0.01)
        return
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def events(kinds_names: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(m["Type"], m["Member"]["Name"]) for m in kinds_names]


async def raw_subscribe(raw: trio.abc.Stream) -> bytearray:
    """Subscribe over a bare TCP connection, with no websocket library to read (or answer) for the test: the
    upgrade must be accepted (101); returns what came after the response head, the first frames' bytes."""
    await raw.send_all(request_bytes("GET", PATH, headers={**UPGRADE, "Sec-WebSocket-Version": "13"}))
    head = bytearray()
    while b"\r\n\r\n" not in head:
        head += await raw.receive_some(65536)
    assert head.startswith(b"HTTP/1.1 101 ")
    return bytearray(head.partition(b"\r\n\r\n")[2])


# ---------------------------------------------------------------------- protocol, in process


def test_snapshot_then_every_change_in_index_order() -> None:
    async def main() -> None:
        api = cluster_api()
        with trio.fail_after(TIMEOUT):
            async with serving(api) as (host, port), open_websocket(host, port, PATH, use_ssl=False) as ws:
                snap = await next_json(ws)
                assert snap["Type"] == "snapshot"
                assert snap["Index"] == api.table.current.index
                assert [m["Name"] for m in snap["Members"]] == ["node1"]
                assert set(snap["Members"][0]) >= {"Name", "Addr", "Port", "Tags", "Status", "ProtocolCur"}
                web = member("web-1", "10.0.0.21")
                api.apply("member-join", web)
                api.apply("member-update", member("web-1", "10.0.0.21", build="1.21.0:abc"))
                api.apply("member-failed", member("web-1", "10.0.0.21", status=STATUS_FAILED))
                api.apply("member-join", member("db-1", "10.0.0.22"))
                api.apply("member-leave", member("db-1", "10.0.0.22", status=STATUS_LEFT))
                api.apply("member-reap", member("web-1", "10.0.0.21", status=STATUS_FAILED))
                got = [await next_json(ws) for _ in range(6)]
        assert events(got) == [
            ("member-join", "web-1"),
            ("member-update", "web-1"),
            ("member-failed", "web-1"),
            ("member-join", "db-1"),
            ("member-leave", "db-1"),
            ("member-reap", "web-1"),
        ]
        indexes = [m["Index"] for m in got]
        assert indexes == sorted(indexes) and indexes[0] > snap["Index"]
        assert got[1]["Member"]["Tags"]["build"] == "1.21.0:abc"
        assert got[2]["Member"]["Status"] == STATUS_FAILED

    run(main)


def test_resume_with_index_replays_exactly_the_missed_events_and_no_snapshot() -> None:
    async def main() -> None:
        api = cluster_api()
        with trio.fail_after(TIMEOUT):
            async with serving(api) as (host, port), open_websocket(host, port, PATH, use_ssl=False) as watcher:
                await next_json(watcher)
                async with open_websocket(host, port, PATH, use_ssl=False) as first:
                    last = (await next_json(first))["Index"]
                # Disconnected: these happen while nobody listens on the second subscriber.
                for i in range(5):
                    api.apply("member-join", member(f"web-{i}", f"10.0.1.{i}"))
                api.apply("member-failed", member("web-0", "10.0.1.0", status=STATUS_FAILED))
                seen = [await next_json(watcher) for _ in range(6)]
                async with open_websocket(host, port, f"{PATH}?index={last}", use_ssl=False) as resumed:
                    replay = [await next_json(resumed) for _ in range(6)]
                    api.apply("member-join", member("web-9", "10.0.1.9"))
                    after = await next_json(resumed)
        assert replay == seen  # byte for byte what a subscriber that never left saw, no snapshot first
        assert (after["Type"], after["Member"]["Name"]) == ("member-join", "web-9")

    run(main)


def test_too_old_or_future_index_gets_a_fresh_snapshot() -> None:
    async def main() -> None:
        api = cluster_api(MemberTable(history_limit=4))
        for i in range(10):
            api.apply("member-join", member(f"web-{i}", f"10.0.1.{i}"))
        with trio.fail_after(TIMEOUT):
            async with serving(api) as (host, port):
                for index in (1, 10**9):  # older than the history; ahead of the table (the agent restarted)
                    async with open_websocket(host, port, f"{PATH}?index={index}", use_ssl=False) as ws:
                        snap = await next_json(ws)
                        assert snap["Type"] == "snapshot" and snap["Index"] == api.table.current.index
                        assert len(snap["Members"]) == 11
                # Still inside the history: replay only.
                floor = api.table.statistics().history_floor
                async with open_websocket(host, port, f"{PATH}?index={floor}", use_ssl=False) as ws:
                    first = await next_json(ws)
                    assert first["Type"] == "member-join" and first["Index"] > floor

    run(main)


def test_status_and_dc_filters() -> None:
    async def main() -> None:
        api = cluster_api()
        api.apply("member-join", member("web-1", "10.0.0.21"))
        api.apply("member-join", member("far-1", "10.9.0.1", dc="dc2"))
        with trio.fail_after(TIMEOUT):
            async with serving(api) as (host, port):
                url = f"{PATH}?status=^alive$&dc=dc1"
                async with open_websocket(host, port, url, use_ssl=False) as ws:
                    snap = await next_json(ws)
                    assert [m["Name"] for m in snap["Members"]] == ["node1", "web-1"]
                    api.apply("member-join", member("far-2", "10.9.0.2", dc="dc2"))  # other dc: not sent
                    api.apply("member-failed", member("web-1", "10.0.0.21", status=STATUS_FAILED))  # its way out
                    api.apply("member-reap", member("web-1", "10.0.0.21", status=STATUS_FAILED))  # gone: not sent
                    api.apply("member-join", member("web-2", "10.0.0.22"))
                    got = [await next_json(ws) for _ in range(2)]
                    assert events(got) == [("member-failed", "web-1"), ("member-join", "web-2")]
                async with open_websocket(host, port, f"{PATH}?status=fail", use_ssl=False) as ws:
                    assert (await next_json(ws))["Members"] == []

    run(main)


def test_plain_get_and_bad_requests_are_plain_http_errors_with_a_reason() -> None:
    async def main() -> None:
        api = cluster_api()
        cases = [
            (f"{PATH}", {}, 400, "websocket"),
            (f"{PATH}?status=(", {**UPGRADE, "Sec-WebSocket-Version": "13"}, 400, "Invalid status regexp"),
            (f"{PATH}?index=x", {**UPGRADE, "Sec-WebSocket-Version": "13"}, 400, "Invalid index"),
            (f"{PATH}", {**UPGRADE, "Sec-WebSocket-Version": "8"}, 426, "version 13"),
            (f"{PATH}", {**UPGRADE, "Sec-WebSocket-Version": "13", "Origin": "http://evil.example"}, 403, "Origin"),
        ]
        with trio.fail_after(TIMEOUT):
            async with serving(api) as addr:
                for target, headers, status, text in cases:
                    async with await trio.open_tcp_stream(*addr) as s:
                        await s.send_all(request_bytes("GET", target, headers=headers))
                        (reply,) = await read_replies(s, 1)
                    assert (reply.status, text in reply.body.decode()) == (status, True), (target, reply)

    run(main)


def test_a_thousand_subscribers_all_receive_a_join() -> None:
    n = 1000

    async def main() -> None:
        api = cluster_api()
        got: dict[int, dict[str, Any]] = {}
        applied = trio.Event()
        # The whole run may take 2 minutes on a loaded machine (a thousand handshakes one after another); each
        # subscriber's 30 s for the join start when it is applied, not while the others connect.
        with trio.fail_after(120):
            async with (
                serving(api, max_connections=n + 10, max_connections_per_client=n + 10) as (host, port),
                trio.open_nursery() as nursery,
            ):

                async def subscriber(i: int, ready: trio.Event) -> None:
                    async with open_websocket(host, port, PATH, use_ssl=False) as ws:
                        await next_json(ws, timeout=30)
                        ready.set()
                        await applied.wait()
                        got[i] = await next_json(ws, timeout=30)

                for i in range(n):
                    ready = trio.Event()
                    nursery.start_soon(subscriber, i, ready)
                    await ready.wait()  # connect one after another: the accept backlog is not under test
                assert stream.statistics(api.table).subscribers == n
                await wait_until(lambda: stream.statistics(api.table).parked == n, "every subscriber parked")
                before = stream.statistics(api.table)
                api.apply("member-join", member("web-1", "10.0.0.21"))
                applied.set()
        assert len(got) == n
        # Issue 14: one task wrote the event to every socket (the frame encoded once), no subscriber task did.
        after = stream.statistics(api.table)
        assert after.fanned_out - before.fanned_out == n, (before, after)
        assert after.messages - before.messages == n
        assert {(m["Type"], m["Member"]["Name"]) for m in got.values()} == {("member-join", "web-1")}

    run(main)


def test_a_subscriber_that_never_reads_is_closed_with_1013_and_the_others_keep_receiving() -> None:
    # Big tags make each message ~8 KB, so the events fill the stalled client's socket buffers and it falls
    # behind by more than its window; the reader keeps up all the while.
    big = {"blob": "x" * 8000}
    count, window = 1500, 200

    async def main() -> None:
        api = cluster_api()
        received: list[int] = []
        with trio.fail_after(60):
            async with (
                serving(api, stream_window=window, stream_send_timeout=30) as (host, port),
                open_websocket(host, port, PATH, use_ssl=False) as reader,
                open_websocket(host, port, PATH, use_ssl=False, message_queue_size=1) as stalled,
                trio.open_nursery() as nursery,
            ):
                await next_json(reader)

                async def read_all() -> None:
                    while len(received) < count:
                        received.append((await next_json(reader))["Index"])

                nursery.start_soon(read_all)
                for i in range(count):
                    m = member(f"web-{i % 50}", "10.0.2.1")
                    api.apply("member-update", attrs.evolve(m, tags={**m.tags, **big}))
                    # A healthy client keeps up: this one shares our CPU, so pace the events to it.
                    await wait_until(lambda i=i: len(received) > i - window // 2, "the reader to keep up")
                await wait_until(lambda: len(received) == count, "the reader to get every event", timeout=30)
                assert received == sorted(received)
                # Now the stalled client reads: what was in flight, then the close.
                with pytest.raises(ConnectionClosed) as closed:
                    while True:
                        await next_json(stalled, timeout=30)
                assert stalled.closed is not None
                assert closed.value.reason is not None
                assert closed.value.reason.code == stream.OVERFLOW_CODE
                assert "?index=" in (closed.value.reason.reason or "")
                assert stream.statistics(api.table).overflowed == 1
                # The reader is still served.
                api.apply("member-join", member("late", "10.0.0.99"))
                assert (await next_json(reader))["Member"]["Name"] == "late"

    run(main)


def _frames(buf: bytearray) -> list[tuple[int, bytes]]:
    """Whole server frames (unmasked, unfragmented) off the front of ``buf``: (opcode, payload)."""
    out = []
    while len(buf) >= 2:
        assert buf[0] & 0x80, f"a fragmented or corrupt frame header {bytes(buf[:2])!r}"
        opcode, size, at = buf[0] & 0x0F, buf[1] & 0x7F, 2
        assert not buf[1] & 0x80, "a server frame is never masked"
        if size == 126:
            size, at = int.from_bytes(buf[2:4], "big"), 4
        elif size == 127:
            size, at = int.from_bytes(buf[2:10], "big"), 10
        if len(buf) < at + size:
            break
        out.append((opcode, bytes(buf[at : at + size])))
        del buf[: at + size]
    return out


def test_a_full_socket_gets_whole_frames_in_order_even_with_pings_between() -> None:
    """Issue 14: the pump writes to parked sockets directly.  A client that stops reading fills its socket, so
    the pump is refused (or can only begin a frame) and the subscriber's own task takes over; the rest of a
    begun frame, the catch-up and the keep-alive pings trio-websocket sends meanwhile must still reach the client
    as whole frames, every change once, in index order."""
    big = {"blob": "y" * 20000}
    count = 400

    async def main() -> None:
        api = cluster_api()
        opts = {"stream_ping_interval": 0.05, "stream_ping_timeout": 20, "stream_send_timeout": 20}
        with trio.fail_after(60):
            async with serving(api, **opts) as addr, await trio.open_tcp_stream(*addr) as raw:
                buf = await raw_subscribe(raw)
                await wait_until(lambda: stream.statistics(api.table).parked == 1, "the subscriber to park")
                first = api.table.current.index + 1

                for i in range(count):  # ~8 MB the client does not read for now
                    m = member(f"web-{i % 20}", "10.0.3.1")
                    api.apply("member-update", attrs.evolve(m, tags={**m.tags, **big}))
                    await trio.sleep(0)
                last = api.table.current.index
                await wait_until(lambda: stream.statistics(api.table).parked == 0, "the full socket to leave the park")
                indexes, pings = [], 0
                while not indexes or indexes[-1] < last:
                    buf += await raw.receive_some(1 << 20)
                    for opcode, payload in _frames(buf):
                        if opcode == 0x9:
                            pings += 1
                        elif opcode == 0x1:
                            msg = json.loads(payload)
                            if msg["Type"] != "snapshot":
                                indexes.append(msg["Index"])
                        else:
                            raise AssertionError(f"unexpected opcode {opcode}")
                assert indexes == list(range(first, last + 1))
                assert pings >= 1
                stats = stream.statistics(api.table)
                # The subscriber's task wrote at least the frames the full socket refused the pump. (Whether the
                # pump wrote any first depends on timing: it defers whenever trio-websocket holds its write lock.)
                assert stats.fanned_out < stats.messages, stats
                assert stats.timed_out == 0 and stats.overflowed == 0

    run(main)


def test_text_frames_use_the_three_length_forms() -> None:
    forms = ((125, b"\x81\x7d"), (126, b"\x81\x7e\x00\x7e"), (70000, b"\x81\x7f" + (70000).to_bytes(8, "big")))
    for size, head in forms:
        frame = stream.text_frame(b"a" * size)
        assert frame.startswith(head) and len(frame) == len(head) + size


def test_a_client_that_stops_answering_pings_is_dropped() -> None:
    async def main() -> None:
        api = cluster_api()
        opts = {"stream_ping_interval": 0.1, "stream_ping_timeout": 0.3}
        with trio.fail_after(TIMEOUT):
            async with serving(api, **opts) as addr, await trio.open_tcp_stream(*addr) as raw:
                await raw_subscribe(raw)
                await wait_until(lambda: stream.statistics(api.table).subscribers == 1, "the subscriber")
                # Never answer: the server pings, waits, drops the connection.
                await wait_until(lambda: stream.statistics(api.table).timed_out == 1, "the drop", timeout=5)
                assert stream.statistics(api.table).subscribers == 0
                while await raw.receive_some(65536):  # then the socket is closed (EOF), not left open
                    pass

    run(main)


def test_a_client_that_answers_pings_stays_however_many_pings_go_straight_to_its_socket() -> None:
    """The keep-alive writes its ping frame to the socket itself and counts any byte back as the answer (issue
    14: no task waits on each pong)."""

    async def main() -> None:
        api = cluster_api()
        opts = {"stream_ping_interval": 0.1, "stream_ping_timeout": 0.08}
        with trio.fail_after(TIMEOUT):
            async with serving(api, **opts) as addr, await trio.open_tcp_stream(*addr) as raw:
                buf = await raw_subscribe(raw)
                pings = 0
                while pings < 8:
                    buf += await raw.receive_some(65536)
                    for opcode, payload in _frames(buf):
                        if opcode == 0x9:
                            pings += 1
                            await raw.send_all(bytes([0x8A, 0x80 | len(payload)]) + b"\0\0\0\0" + payload)
                stats = stream.statistics(api.table)
                assert stats.subscribers == 1 and stats.timed_out == 0, stats

    run(main)


# ---------------------------------------------------------------------- /ui/ and /


def test_ui_page_and_root_redirect_when_enabled_and_not_when_disabled() -> None:
    async def get(addr: tuple[str, int], target: str) -> Any:
        async with await trio.open_tcp_stream(*addr) as s:
            await s.send_all(request_bytes("GET", target))
            (reply,) = await read_replies(s, 1)
            return reply

    async def main() -> None:
        with trio.fail_after(TIMEOUT):
            async with serving(cluster_api(ui=True)) as addr:
                root = await get(addr, "/")
                assert (root.status, root.header("Location")) == (301, "/ui/")
                page = await get(addr, "/ui/")
                assert page.status == 200 and page.header("Content-Type") == "text/html; charset=utf-8"
                html = page.body.decode()
                assert PATH in html and "<script" in html
                # nothing from the internet (SVG's namespace is a name, never fetched)
                html = html.replace("http://www.w3.org/2000/svg", "")
                assert "http://" not in html and "https://" not in html
                assert "connect-src 'self'" in (page.header("Content-Security-Policy") or "")
                assert (await get(addr, "/ui/nope.js")).status == 404
            async with serving(cluster_api(ui=False)) as addr:
                assert (await get(addr, "/")).body.startswith(b"Consul Agent: UI disabled")
                assert (await get(addr, "/ui/")).status == 404

    run(main)


# ---------------------------------------------------------------------- real agents


def test_stream_follows_real_agents_joining_leaving_and_killed(tmp_path: Path) -> None:
    from consul_agents import Cluster

    cluster = Cluster(tmp_path)
    try:
        _follow_real_agents(cluster)
    except BaseException:
        print(cluster.diagnostics())
        raise
    finally:
        cluster.close()


def _follow_real_agents(cluster: Any) -> None:
    server = cluster.start("st1", server=True, extra={"ui": True})
    host, port = server.ip, server.http_port

    async def main() -> None:
        def sync(fn: Callable[..., Any], *args: Any) -> Any:
            return trio.to_thread.run_sync(fn, *args)

        async def join(name: str) -> Any:
            agent = await sync(lambda: cluster.start(name))
            out = await sync(agent.cli, "join", server.serf_addr)
            assert out.returncode == 0, out.stderr
            return agent

        async def expect(ws: WebSocketConnection, kind: str, name: str, log: list[dict[str, Any]]) -> None:
            """Read until ``name``'s ``kind`` event (a leave may be preceded by an update)."""
            while True:
                msg = await next_json(ws, timeout=30)
                log.append(msg)
                if (msg["Type"], msg["Member"]["Name"]) == (kind, name):
                    return

        seen: list[dict[str, Any]] = []
        with trio.fail_after(120):
            async with open_websocket(host, port, PATH, use_ssl=False) as ws:
                snap = await next_json(ws)
                assert snap["Type"] == "snapshot" and [m["Name"] for m in snap["Members"]] == ["st1"]
                async with open_websocket(host, port, PATH, use_ssl=False) as early:
                    resume_at = (await next_json(early))["Index"]
                c2 = await join("st2")
                await expect(ws, "member-join", "st2", seen)
                c3 = await join("st3")
                await expect(ws, "member-join", "st3", seen)
                await sync(c2.proc.stop, signal.SIGINT)  # a client leaves on interrupt
                await expect(ws, "member-leave", "st2", seen)
                started = time.monotonic()
                await sync(c3.proc.kill)
                await expect(ws, "member-failed", "st3", seen)
                detection = time.monotonic() - started
                # A subscriber that left right after its snapshot resumes and gets exactly what it missed: the
                # events after its snapshot's index (an event, such as the server's own catalog-tag update, may
                # fall between the two snapshots and is then already in the resumed subscriber's snapshot).
                missed = [m for m in seen if m["Index"] > resume_at]
                async with open_websocket(host, port, f"{PATH}?index={resume_at}", use_ssl=False) as back:
                    replay = [await next_json(back) for _ in missed]
        indexes = [m["Index"] for m in seen]
        assert indexes == sorted(set(indexes)) and indexes[0] > snap["Index"]
        assert [m["Type"] for m in missed][-4:] == ["member-join", "member-join", "member-leave", "member-failed"]
        assert replay == missed
        print(f"stream events: {events(seen)}; kill detected in {detection:.1f}s")

    trio.run(main)
