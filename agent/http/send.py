"""Writing a response's head and body without copying them together.

A memoized answer (agent/http/memo.py) is one shared ``bytes``: thousands of blocking queries woken by one change
would otherwise each allocate, and page-fault in, their own ``head + body`` copy of it at the same moment (issue 14:
most of a 5,000-waiter wake-up's CPU went there).  A large body goes out with its head in one ``sendmsg``; what the
socket did not take then follows through the stream, the body as a view, not a copy.
"""

from __future__ import annotations

import trio

__all__ = ["GATHER_MIN", "send_head_and_body"]

GATHER_MIN = 16 * 1024  # smaller bodies are copied onto the head: one plain send, and the copy costs nothing


async def send_head_and_body(stream: trio.abc.SendStream, head: bytes, body: bytes) -> None:
    """``head + body`` on ``stream``; by ``sendmsg`` on its socket (``stream.socket``, a trio SocketStream's) when
    the body is large.  Errors as ``send_all``'s: a broken connection is ``trio.BrokenResourceError``."""
    sock = getattr(stream, "socket", None)
    if len(body) < GATHER_MIN or sock is None or not hasattr(sock, "sendmsg"):
        await stream.send_all(head + body if body else head)
        return
    try:
        sent = await sock.sendmsg([head, body])
    except OSError as exc:
        raise trio.BrokenResourceError(exc) from exc
    if sent < len(head):
        await stream.send_all(head[sent:])
        sent = len(head)
    if sent < len(head) + len(body):
        await stream.send_all(memoryview(body)[sent - len(head) :])
