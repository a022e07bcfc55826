"""The far end of an accepted connection as ``host:port`` text, for logs and per-client caps."""

from __future__ import annotations

import trio


def peer_text(stream: trio.SocketStream) -> str:
    """``host:port`` of the peer, or ``?`` once the socket can no longer say (it was reset before we asked)."""
    try:
        host, port = stream.socket.getpeername()[:2]
    except OSError:
        return "?"
    return f"{host}:{port}"
