"""triumvir's gossip library: memberlist and Serf, wire-compatible, sans-IO.

Nothing in this package touches a socket, a clock or trio: time and randomness come in as arguments.
"""

from protocol.node import (
    Datagram,
    Delegate,
    Diagnostic,
    JoinResult,
    LeaveDone,
    Node,
    NodeEvent,
    NodeJoin,
    NodeLeave,
    NodeUpdate,
    StreamOpen,
    Transmit,
)
from protocol.state import NodeState, NodeStateType

__all__ = [
    "Datagram",
    "Delegate",
    "Diagnostic",
    "JoinResult",
    "LeaveDone",
    "Node",
    "NodeEvent",
    "NodeJoin",
    "NodeLeave",
    "NodeState",
    "NodeStateType",
    "NodeUpdate",
    "StreamOpen",
    "Transmit",
]
