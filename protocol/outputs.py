"""What a protocol.Node hands its driver: transmits to perform and events to act on (the sans-IO outputs).

memberlist does these as calls (transport.WriteTo, EventDelegate callbacks); here they are records the driver polls
(`Node.poll_transmit`, `Node.poll_event`). Every collaborator of the Node produces them, so they live below all of
them; protocol.node re-exports them with the Node.
"""

from __future__ import annotations

import attrs

from protocol.state import Addr, NodeState


@attrs.frozen
class Datagram:
    """Send `data` as one UDP packet to `addr`."""

    addr: Addr
    data: bytes


@attrs.frozen
class StreamOpen:
    """Dial `addr` over TCP and write `data`; with `expect_reply`, feed the reply to handle_stream_reply."""

    stream_id: int
    addr: Addr
    data: bytes
    expect_reply: bool
    timeout: float


Transmit = Datagram | StreamOpen


@attrs.frozen
class NodeJoin:
    node: NodeState


@attrs.frozen
class NodeLeave:
    """A member died or left; `node.state` says which."""

    node: NodeState


@attrs.frozen
class NodeUpdate:
    node: NodeState


@attrs.frozen
class JoinResult:
    addr: Addr
    ok: bool
    error: str = ""


@attrs.frozen
class LeaveDone:
    """The leave broadcast went out (or there was nobody to tell); `timed_out` if we gave up waiting."""

    timed_out: bool = False


@attrs.frozen
class Diagnostic:
    """A log line. `kind` is a stable tag for tests and metrics (e.g. "suspect", "udp-blocked")."""

    level: str  # debug, info, warning, error
    message: str
    kind: str = ""


NodeEvent = NodeJoin | NodeLeave | NodeUpdate | JoinResult | LeaveDone | Diagnostic
