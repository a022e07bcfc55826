"""The driver's small records: its counters, a subscriber's channel, a pending ``join()``."""

from __future__ import annotations

from collections import Counter
from typing import Any

import attrs
import trio

from agent.gossip.machine import Addr

__all__ = ["DriverStats", "JoinWaiter", "Subscriber"]


@attrs.define
class DriverStats:
    """Counters for tests and benchmarks; plain ints, never reset."""

    datagrams_in: int = 0
    datagrams_out: int = 0
    bad_datagrams: int = 0
    send_errors: int = 0
    streams_in: int = 0
    streams_in_failed: int = 0
    streams_out: int = 0
    streams_out_failed: int = 0
    events: int = 0
    events_dropped: int = 0
    subscribers_closed: int = 0


@attrs.define(eq=False)
class Subscriber:
    send: trio.MemorySendChannel[Any]
    close_on_overflow: bool
    dropped: int = 0


@attrs.define(eq=False)
class JoinWaiter:
    """One ``join()`` call: which addresses still owe a JoinResult, and how many were ok."""

    pending: Counter[Addr]
    done: trio.Event = attrs.field(factory=trio.Event)
    ok: int = 0
    errors: list[str] = attrs.field(factory=list)
