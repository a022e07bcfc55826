"""The server port's framing, sans-IO: ``length(4, big-endian) | msgpack body``, a hello first.

A connection starts with one hello frame each way, ``{"hello": 1, "id": <server id>, "cluster": <cluster id>}``;
then every frame is one Raft message in `protocol.raft.types.to_wire` form.  A connection whose first frame is
``{"hello": 1, "rpc": 1}`` is a request/response connection instead (agent/server/rpc.py: a client agent asking
``Status.Leader``), answered by the RPC side and never carrying Raft messages.  `FrameDecoder` is fed whatever the
socket returned and hands back whole bodies, refusing a length beyond ``max_frame`` as soon as the 4 length bytes
are in (so a hostile or corrupt length never makes us buffer gigabytes).
"""

from __future__ import annotations

from typing import Any

import attrs
import msgpack

LENGTH_SIZE = 4
DEFAULT_MAX_FRAME = 64 * 1024 * 1024  # room for an InstallSnapshot of a sizeable state store
HELLO_VERSION = 1


class FrameError(ValueError):
    """A frame that breaks the framing or the hello; the connection carrying it is closed."""


def encode_frame(obj: Any, max_frame: int = DEFAULT_MAX_FRAME) -> bytes:
    body = msgpack.packb(obj, use_bin_type=True)
    if len(body) > max_frame:
        raise FrameError(f"frame of {len(body)} bytes exceeds the maximum {max_frame}")
    return len(body).to_bytes(LENGTH_SIZE, "big") + body


class FrameDecoder:
    """Bytes in, decoded msgpack bodies out."""

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        self._buf += data
        out = []
        while len(self._buf) >= LENGTH_SIZE:
            length = int.from_bytes(self._buf[:LENGTH_SIZE], "big")
            if length > self.max_frame:
                raise FrameError(f"frame of {length} bytes exceeds the maximum {self.max_frame}")
            if len(self._buf) < LENGTH_SIZE + length:
                break
            body = bytes(self._buf[LENGTH_SIZE : LENGTH_SIZE + length])
            del self._buf[: LENGTH_SIZE + length]
            try:
                out.append(msgpack.unpackb(body, raw=False))
            except Exception as exc:
                raise FrameError(f"frame of {length} bytes is not msgpack ({type(exc).__name__}: {exc})") from None
        return out

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held."""
        return len(self._buf)


@attrs.frozen
class Hello:
    server_id: str
    cluster_id: str


def hello_to_wire(hello: Hello) -> dict[str, Any]:
    return {"hello": HELLO_VERSION, "id": hello.server_id, "cluster": hello.cluster_id}


def is_rpc_hello(raw: Any) -> bool:
    """The first frame of a request/response connection (agent/server/rpc.py), not a server's hello."""
    return isinstance(raw, dict) and raw.get("hello") == HELLO_VERSION and raw.get("rpc") == 1


def hello_from_wire(raw: Any) -> Hello:
    if not isinstance(raw, dict) or raw.get("hello") != HELLO_VERSION:
        raise FrameError(f"expected a hello (version {HELLO_VERSION}) first, got {raw!r:.60}")
    server_id, cluster_id = raw.get("id"), raw.get("cluster")
    if not isinstance(server_id, str) or not server_id or not isinstance(cluster_id, str):
        raise FrameError(f"hello: expected a server id and a cluster id, got {raw!r:.80}")
    return Hello(server_id, cluster_id)
