"""The far end of an accepted connection: as ``host:port`` text, for logs and per-client caps; gone or not."""

from __future__ import annotations

import select

import trio


def peer_text(stream: trio.SocketStream) -> str:
    """``host:port`` of the peer, or ``?`` once the socket can no longer say (it was reset before we asked)."""
    try:
        host, port = stream.socket.getpeername()[:2]
    except OSError:
        return "?"
    return f"{host}:{port}"


def peer_hung_up(sock: trio.socket.SocketType) -> bool:
    """Has the peer closed its side (or reset), even with unread data before the end?  Linux's POLLRDHUP."""
    poller = select.poll()
    try:
        poller.register(sock.fileno(), _HANGUP)
        events = poller.poll(0)
    except (OSError, ValueError):
        return True
    return any(mask & _HANGUP for _, mask in events)


_HANGUP = getattr(select, "POLLRDHUP", 0) | select.POLLHUP | select.POLLERR
