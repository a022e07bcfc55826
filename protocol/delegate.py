"""protocol.Node's hooks into the application: memberlist's delegate.go, event_delegate.go, ping_delegate.go,
conflict_delegate.go, alive_delegate.go and merge_delegate.go as one class with do-nothing defaults."""

from __future__ import annotations

from protocol.state import NodeState

__all__ = ["Delegate"]


class Delegate:
    """Hooks into the node, all optional (memberlist's Delegate, EventDelegate, PingDelegate,
    ConflictDelegate, AliveDelegate and MergeDelegate rolled into one). Override what you need."""

    def node_meta(self, limit: int) -> bytes:
        return b""

    def notify_msg(self, now: float, payload: bytes) -> None:
        pass

    def get_broadcasts(self, overhead: int, limit: int) -> list[bytes]:
        return []

    def has_broadcasts(self) -> bool:
        """Whether get_broadcasts may return something now. The node's gossip ticker sleeps while neither its
        own queue nor this has anything to send, so a delegate that overrides get_broadcasts should override
        this too; the default says "maybe" whenever get_broadcasts is overridden."""
        return type(self).get_broadcasts is not Delegate.get_broadcasts

    def local_state(self, join: bool) -> bytes:
        return b""

    def merge_remote_state(self, now: float, buf: bytes, join: bool) -> None:
        pass

    def ack_payload(self) -> bytes:
        return b""

    def notify_ping_complete(self, node: NodeState, rtt: float, payload: bytes) -> None:
        pass

    def notify_conflict(self, existing: NodeState, other: NodeState) -> None:
        pass

    def notify_join(self, now: float, node: NodeState) -> None:
        pass

    def notify_leave(self, now: float, node: NodeState) -> None:
        pass

    def notify_update(self, now: float, node: NodeState) -> None:
        pass

    def notify_alive(self, node: NodeState) -> str | None:
        """Return an error text to ignore an alive message (memberlist AliveDelegate)."""
        return None

    def notify_merge(self, nodes: list[NodeState]) -> str | None:
        """Return an error text to refuse a join's push/pull (memberlist MergeDelegate)."""
        return None
