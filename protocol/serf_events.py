"""What Serf reports: members, their statuses, and the events a driver polls (serf's event.go and Member).

These are the public types of protocol.Serf (re-exported there); the parts of a Serf build and hand out copies.
"""

from __future__ import annotations

import enum

import attrs

from protocol.serf_status import MemberStatus

#: The first byte of an application message (docs/wire.md): far above Serf's types (0-9), which real serf nodes
#: answer with "Received message of unknown type" in their log and otherwise ignore.
APP_MESSAGE_TYPE = 0x80


class EventKind(enum.StrEnum):
    MEMBER_JOIN = "member-join"
    MEMBER_UPDATE = "member-update"
    MEMBER_LEAVE = "member-leave"
    MEMBER_FAILED = "member-failed"
    MEMBER_REAP = "member-reap"


@attrs.define
class Member:
    """One member as Serf reports it (serf.Member); copies are handed out, never our live record."""

    name: str
    addr: str
    port: int
    tags: dict[str, str] = attrs.field(factory=dict)
    status: MemberStatus = MemberStatus.NONE
    protocol_min: int = 0
    protocol_max: int = 0
    protocol_cur: int = 0
    delegate_min: int = 0
    delegate_max: int = 0
    delegate_cur: int = 0

    def copy(self) -> Member:
        return attrs.evolve(self, tags=dict(self.tags))


@attrs.frozen
class MemberEvent:
    """A membership change: ``kind`` is one of EventKind (a str), ``member`` a snapshot at that moment."""

    kind: EventKind
    member: Member


@attrs.frozen
class MemberStatusChanged:
    """A member's status changed by an intent alone: alive -> leaving on a leave intent (a force-leave of a live
    member), leaving -> alive when the member refutes it.  serf emits no event for these (``serf members`` reads
    them from its member map); we report them so that whoever follows the events alone sees the same statuses."""

    member: Member


@attrs.frozen
class AppMessage:
    """An application message from another member (type APP_MESSAGE_TYPE, our own, outside Serf's range).

    ``from_node`` is the sender's member name as it wrote it; ``payload`` is opaque to Serf.  Real serf nodes
    log and ignore the type, and the agent only sends these to members that advertise support in a tag.
    """

    from_node: str
    payload: bytes


@attrs.frozen
class UserEvent:
    """A Serf user event seen for the first time (serf.UserEvent); added to the contract's event set."""

    ltime: int
    name: str
    payload: bytes
    coalesce: bool
