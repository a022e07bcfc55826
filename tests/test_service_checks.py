"""Check runners (agent.services.checks) and the manager's bookkeeping (agent.services.manager).

Rules: loopback only, port 0; real HTTP/TCP servers in the test's own nursery; `fail_after` around real I/O;
trio's MockClock (autojump) where only time passes (TTL, intervals); scripts are real processes, bounded.
"""

from __future__ import annotations

import functools
import random
import sys
from pathlib import Path

import trio
import trio.testing

from agent.config import AgentConfig
from agent.datadir import DataDir
from agent.services.checks import TtlTimer, http_once, run_check, script_once, tcp_once
from agent.services.definitions import parse_check
from agent.services.manager import ServiceManager


def check(**raw: object):  # type: ignore[no-untyped-def]
    return parse_check({"name": "c", **raw}, api=True)


async def _http_server(nursery: trio.Nursery, status: int, *, hang: bool = False) -> int:
    async def handler(stream: trio.SocketStream) -> None:
        await stream.receive_some(65536)
        if hang:
            await trio.sleep_forever()
        body = b"body text"
        await stream.send_all(b"HTTP/1.1 %d Whatever\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body))
        await stream.aclose()

    listeners = await nursery.start(functools.partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    return listeners[0].socket.getsockname()[1]


def test_http_2xx_passing_429_warning_else_critical_output_kept() -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            results = {}
            for status in (200, 429, 503):
                port = await _http_server(nursery, status)
                with trio.fail_after(5):
                    results[status] = await http_once(check(http=f"http://127.0.0.1:{port}/h", interval="1s"))
            nursery.cancel_scope.cancel()
        assert results[200][0] == "passing"
        assert results[200][1].endswith("/h: 200 Whatever Output: body text")
        assert results[200][1].startswith("HTTP GET http://127.0.0.1:")
        assert results[429][0] == "warning"
        assert results[503][0] == "critical" and results[503][1].endswith("503 Whatever Output: body text")

    trio.run(main)


async def _redirecting_server(nursery: trio.Nursery, seen: list[bytes]) -> int:
    """``/loop`` redirects to itself forever; ``/post`` answers 303 to ``/ok``; ``/ok`` answers 200."""

    async def handler(stream: trio.SocketStream) -> None:
        head = await stream.receive_some(65536)
        seen.append(head.split(b"\r\n", 1)[0])
        path = head.split(b" ")[1]
        if path == b"/ok":
            reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        else:
            where = b"/loop" if path == b"/loop" else b"/ok"
            reply = b"HTTP/1.1 %s\r\nLocation: %s\r\nContent-Length: 0\r\n\r\n" % (
                b"301 Moved Permanently" if path == b"/loop" else b"303 See Other", where)
        await stream.send_all(reply)
        await stream.aclose()

    listeners = await nursery.start(functools.partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    return listeners[0].socket.getsockname()[1]


def test_http_redirects_are_followed_as_gos_client_follows_them() -> None:
    """Consul's CheckHTTP uses Go's http.Client: a redirect is followed (a check of an agent's own ``/``, which
    answers 301 to /ui/, passes), a 303 goes on as GET without the body, and the 11th redirect is an error."""

    async def main() -> None:
        seen: list[bytes] = []
        async with trio.open_nursery() as nursery:
            port = await _redirecting_server(nursery, seen)
            with trio.fail_after(10):
                passed = await http_once(check(http=f"http://127.0.0.1:{port}/post", method="POST", body="x",
                                               interval="1s"))  # fmt: skip
                looped = await http_once(check(http=f"http://127.0.0.1:{port}/loop", interval="1s"))
            nursery.cancel_scope.cancel()
        assert passed == ("passing", f"HTTP POST http://127.0.0.1:{port}/post: 200 OK Output: ok")
        assert seen[:2] == [b"POST /post HTTP/1.1", b"GET /ok HTTP/1.1"]
        assert looped == ("critical", f'Get "http://127.0.0.1:{port}/loop": stopped after 10 redirects')
        assert len(seen) == 2 + 11

    trio.run(main)


def test_http_hang_is_cut_at_the_timeout_and_refused_is_critical() -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            port = await _http_server(nursery, 200, hang=True)
            with trio.fail_after(5):
                status, output = await http_once(check(http=f"http://127.0.0.1:{port}/", interval="1s",
                                                       timeout="300ms"))  # fmt: skip
            assert status == "critical" and "deadline exceeded" in output
            nursery.cancel_scope.cancel()
        # A port nobody listens on (we just closed the listener).
        with trio.fail_after(5):
            status, output = await http_once(check(http=f"http://127.0.0.1:{port}/", interval="1s"))
        assert status == "critical" and output.startswith(f'Get "http://127.0.0.1:{port}/":')

    trio.run(main)


def test_tcp_connect() -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            port = await _http_server(nursery, 200)
            with trio.fail_after(5):
                assert await tcp_once(check(tcp=f"127.0.0.1:{port}", interval="1s")) == (
                    "passing", f"TCP connect 127.0.0.1:{port}: Success")  # fmt: skip
            nursery.cancel_scope.cancel()
        with trio.fail_after(5):
            status, output = await tcp_once(check(tcp=f"127.0.0.1:{port}", interval="1s"))
        assert status == "critical" and output.startswith(f"dial tcp 127.0.0.1:{port}:")

    trio.run(main)


def test_script_exit_codes_and_a_hanging_script_is_killed_with_its_children() -> None:
    async def main() -> None:
        py = sys.executable
        for code, status in ((0, "passing"), (1, "warning"), (2, "critical")):
            got = await script_once(check(args=[py, "-c", f"print('out'); raise SystemExit({code})"],
                                          interval="1s"))  # fmt: skip
            assert got == (status, "out\n")
        start = trio.current_time()
        with trio.fail_after(10):
            got = await script_once(check(args=["sh", "-c", "sleep 30; echo never"], interval="1s",
                                          timeout="500ms"))  # fmt: skip
        assert got == ("critical", "Timed out (0.5s) running check")
        assert trio.current_time() - start < 5
        assert (await script_once(check(args=["/nonexistent/x"], interval="1s")))[0] == "critical"

    trio.run(main)


def test_ttl_expires_unless_refreshed() -> None:
    async def main() -> None:
        reports: list[tuple[float, str, str]] = []
        timer = TtlTimer()
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            def report(status: str, output: str) -> None:
                reports.append((trio.current_time() - start, status, output))

            nursery.start_soon(functools.partial(run_check, check(ttl="10s"), report, rng=random.Random(1), ttl=timer))
            await trio.sleep(6)
            timer.refresh("ok")
            await trio.sleep(6)
            assert reports == []
            await trio.sleep(5)
            assert reports == [(16.0, "critical", "TTL expired (last output before timeout follows): ok")]
            timer.refresh("")
            await trio.sleep(30)
            assert len(reports) == 2  # expired again after the refresh, and only once
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_checks_run_independently_on_their_interval() -> None:
    async def main() -> None:
        counts = {"a": 0, "b": 0}
        async with trio.open_nursery() as nursery:
            port = await _http_server(nursery, 200, hang=True)
            hanging = check(http=f"http://127.0.0.1:{port}/", interval="1s", timeout="2s")
            closed = check(tcp="127.0.0.1:1", interval="1s")
            def counter(key: str):  # type: ignore[no-untyped-def]
                return lambda status, output: counts.__setitem__(key, counts[key] + 1)

            nursery.start_soon(functools.partial(run_check, hanging, counter("a"), rng=random.Random(1)))
            nursery.start_soon(functools.partial(run_check, closed, counter("b"), rng=random.Random(2)))
            await trio.sleep(3.5)
            nursery.cancel_scope.cancel()
        assert counts["b"] >= 3 and counts["a"] <= 2

    trio.run(main)


def test_manager_registers_persists_restores_and_publishes(tmp_path: Path) -> None:
    published: list[tuple] = []

    async def lifetime(body: dict | None, expect: set[str]) -> None:
        datadir = DataDir(tmp_path / "data")
        manager = ServiceManager(AgentConfig(), datadir, lambda s, c: published.append((s, c)))
        async with trio.open_nursery() as nursery:
            await nursery.start(manager.run)
            if body is not None:
                manager.register_service(body)
                manager.update_ttl("service:cache", "passing", "fine")
            assert set(manager.local.services) == expect
            assert manager.local.checks["service:cache"].status == "passing"
            nursery.cancel_scope.cancel()

    trio.run(lifetime, {"name": "cache", "port": 1, "check": {"ttl": "1h"}}, {"cache"})
    services, checks = published[-1]
    assert [s.id for s in services] == ["cache"] and [(c.id, c.status) for c in checks] == [("service:cache",
                                                                                            "passing")]
    published.clear()
    trio.run(lifetime, None, {"cache"})  # restored from the data dir, TTL status included
    assert [c.status for c in published[0][1]] == ["passing"]


def test_manager_reap_deregisters_services_critical_too_long() -> None:
    async def main() -> None:
        manager = ServiceManager(AgentConfig(), None, lambda s, c: None)
        async with trio.open_nursery() as nursery:
            await nursery.start(manager.run)
            manager.register_service({"name": "w", "check": {"ttl": "1h", "DeregisterCriticalServiceAfter": "1m"}})
            now = trio.current_time()
            assert manager.reap(now + 30) == []
            assert manager.reap(now + 61) == ["w"]
            assert manager.local.services == {} and manager.local.checks == {}
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
