"""What every part of a Serf shares: identity, config, tags, the member clock, the lifecycle and the outbox.

protocol.Serf builds one SerfCore and hands it to each of its parts (the member table, user events, queries,
coordinates, the graceful leave, the Node's delegate), so that they share these without reaching into one
another or into the Serf itself. The Node is not in it: only the parts that send through the Node get it, as a
NodeGetter.
"""

from __future__ import annotations

import enum
import random
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from protocol.config import Config
from protocol.keyring import Keyring
from protocol.lamport import LamportClock
from protocol.node import Diagnostic
from protocol.serf_events import EventKind, Member, MemberEvent

if TYPE_CHECKING:
    from protocol.node import Node

#: How a Serf's parts reach its Node. The Node takes the Serf as its delegate and calls it while it is built (our
#: meta, our own join), so it is built after the parts; a part that sends through it (queries, the graceful
#: leave) is handed this getter and calls it when it sends, never while it is being built.
NodeGetter = Callable[[], "Node"]

LEVEL_DEBUG = "debug"
LEVEL_INFO = "info"
LEVEL_WARN = "warning"
LEVEL_ERROR = "error"


class SerfState(enum.IntEnum):
    """The local instance's lifecycle (serf's SerfState)."""

    ALIVE = 0
    LEAVING = 1
    LEFT = 2
    SHUTDOWN = 3


@attrs.define(eq=False)
class SerfCore:
    """The state every part of one Serf reads, and the one outbox they all write events to."""

    config: Config
    name: str
    rng: random.Random
    now: float
    #: our tags, and their encoded node meta (checked against the 512-byte limit whenever they are set)
    tags: dict[str, str]
    meta: bytes
    #: gossip encryption keys, shared with the Node; the key queries change it in place
    keyring: Keyring | None = None
    state: SerfState = SerfState.ALIVE
    # serf starts each clock at 1 so the zero LTime of a default message never wins.
    clock: LamportClock = attrs.field(factory=lambda: LamportClock(1))
    events: deque[Any] = attrs.field(factory=deque)
    #: Serf messages dropped as unreadable (not in Serf.stats(): that mirrors serf's own keys)
    malformed: int = 0

    def emit(self, kind: EventKind, member: Member) -> None:
        """Report a membership change; `member` must be a snapshot of its own (MemberState.snapshot())."""
        self.events.append(MemberEvent(kind, member))

    def diag(self, level: str, message: str, kind: str = "serf") -> None:
        self.events.append(Diagnostic(level, message, kind))

    def drop_malformed(self, level: str, message: str) -> None:
        """A Serf message (or push/pull state, or tags) we cannot read: dropped, counted and logged."""
        self.malformed += 1
        self.diag(level, message, "serf-malformed")


@attrs.define(eq=False)
class LTimeWindow:
    """A Lamport clock and the LTimes its dedupe buffer still covers (serf's eventClock and eventBuffer, or
    queryClock and queryBuffer): user events and queries admit a message by the same rule, kept here once."""

    core: SerfCore
    #: how many LTimes the buffer keeps (config.event_buffer or config.query_buffer)
    size: int
    #: what the buffer holds, for the warning about a message older than it ("event", "query")
    what: str
    clock: LamportClock = attrs.field(factory=lambda: LamportClock(1))  # started at 1 as the member clock
    #: messages older than this are ignored (a join with ignore_old moves the event window's)
    min_time: int = 0

    def admit(self, ltime: int, name: str) -> int | None:
        """Witness ``ltime``; the buffer slot of a message inside the window, None (dropped) for one older than
        min_time or than the buffer reaches back (that one is reported, as serf does)."""
        self.clock.witness(ltime)
        if ltime < self.min_time:
            return None
        cur = self.clock.time()
        if cur > self.size and ltime < cur - self.size:
            self.core.diag(LEVEL_WARN, f"serf: received old {self.what} {name} from time {ltime} (current {cur})")
            return None
        return ltime % self.size
