"""The HTTP server's per-request machinery outside h11: response heads written directly (agent/http/response.py
``response_head``) and hang-up watches started only for slow handlers (agent/http/handler_watch.py)."""

from __future__ import annotations

import h11
import trio
import trio.testing

from agent.http.handler_watch import HandlerWatch
from agent.http.response import Response, reason_phrase, response_head, wire_headers


def h11_bytes(response: Response, *, method: bytes = b"GET", connection: bytes | None = None) -> bytes:
    """What h11 writes for ``response`` to a request of ``method`` (with that ``Connection`` header)."""
    conn = h11.Connection(h11.SERVER)
    head = [(b"Host", b"x")] + ([(b"Connection", connection)] if connection else [])
    conn.receive_data(h11.Connection(h11.CLIENT).send(h11.Request(method=method, target="/", headers=head)))
    assert isinstance(conn.next_event(), h11.Request)
    headers = [(k.encode(), v.encode()) for k, v in wire_headers(response)]
    out = conn.send(h11.Response(status_code=response.status, headers=headers,
                                 reason=reason_phrase(response.status).encode()))
    if method != b"HEAD":
        out += conn.send(h11.Data(data=response.body)) or b""
    return out + (conn.send(h11.EndOfMessage()) or b"")


def test_a_response_head_is_byte_for_byte_what_h11_writes() -> None:
    ok = Response(200, {"X-Consul-Index": "42", "Content-Type": "application/json", "Vary": "Accept-Encoding"},
                  b'[{"Node":"a"}]')
    assert response_head(ok, close=False) + ok.body == h11_bytes(ok)
    assert response_head(ok, close=False) == h11_bytes(ok, method=b"HEAD")  # HEAD: the GET's headers, no body
    missing = Response.text(404, "nope")
    assert response_head(missing, close=False) + missing.body == h11_bytes(missing)
    # The client asked to close: h11 appends the header, we sort it in with the others; the same set either way.
    closing = response_head(ok, close=True)
    assert closing is not None and b"\r\nConnection: close\r\n" in closing
    assert sorted(closing.split(b"\r\n")) == sorted(h11_bytes(ok, connection=b"close")[: len(closing)].split(b"\r\n"))
    assert response_head(Response(599, {}, b""), close=False).startswith(b"HTTP/1.1 599 \r\n")  # type: ignore[union-attr]


def test_a_header_value_with_a_line_break_or_nul_is_left_to_h11_which_refuses_it() -> None:
    for value in ("a\r\nSet-Cookie: x=1", "a\nb", "a\rb", "a\0b"):
        response = Response(200, {"Location": value}, b"")
        assert response_head(response, close=False) is None, value
        try:
            h11_bytes(response)
        except h11.LocalProtocolError:
            continue
        raise AssertionError(f"h11 wrote {value!r}")


class Handler:
    """A connection as HandlerWatch sees it: counts its watches, which run until cancelled."""

    def __init__(self) -> None:
        self.watched = 0
        self.cancelled = 0

    async def watch_peer(self) -> None:
        self.watched += 1
        try:
            await trio.sleep_forever()
        finally:
            self.cancelled += 1


def test_only_a_handler_that_outlasts_after_is_watched_and_its_watch_ends_with_it() -> None:
    async def main() -> None:
        watch = HandlerWatch(after=0.02)
        fast, slow = Handler(), Handler()
        async with trio.open_nursery() as nursery:
            await nursery.start(watch.run)
            assert watch.active
            for _ in range(100):  # answered within 5 ms: never watched
                watch.started(fast)
                await trio.sleep(0.005)
                assert watch.finished(fast) is None
            watch.started(slow)
            started = trio.current_time()
            while not slow.watched:
                await trio.sleep(0.001)
            assert 0.02 <= trio.current_time() - started < 0.022
            await trio.sleep(600)  # a parked blocking query: one watch, however long
            done = watch.finished(slow)
            assert done is not None
            await done.wait()
            assert (slow.watched, slow.cancelled) == (1, 1)
            assert fast.watched == 0
            nursery.cancel_scope.cancel()
        assert not watch.active

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
