"""Serf's user events: the event clock, the LTime-indexed buffer that dedupes them, and their broadcast queue.

A user event is a named payload gossiped to every member once (serf.UserEvent, handleUserEvent). The buffer
keeps the events of the last ``event_buffer`` LTimes so a rebroadcast is recognised, and travels in push/pull
so a joining member catches up on recent ones.
"""

from __future__ import annotations

import attrs

from protocol.broadcast import BroadcastQueue
from protocol.go_msgpack import go_bytes
from protocol.serf_core import LTimeWindow, SerfCore
from protocol.serf_events import UserEvent
from protocol.serf_messages import UserEventMessage, UserEventRecord, UserEventsAt, encode_message


class UserEvents:
    """The user events one Serf has seen and still gossips."""

    def __init__(self, core: SerfCore) -> None:
        self._core = core
        self.window = LTimeWindow(core, core.config.event_buffer, "event")
        self.clock = self.window.clock  # serf's eventClock
        self.buffer: dict[int, UserEventsAt] = {}  # slot -> the events at one LTime
        self.broadcasts = BroadcastQueue(core.config.retransmit_mult)

    def send(self, name: str, payload: bytes, coalesce: bool) -> None:
        """Broadcast a user event (serf.UserEvent); raises ValueError beyond user_event_size_limit."""
        limit = self._core.config.user_event_size_limit
        if len(go_bytes(name)) + len(payload) > limit:
            raise ValueError(f"user event exceeds the configured limit of {limit} bytes")
        msg = UserEventMessage(self.clock.time(), name, payload, coalesce)
        raw = encode_message(msg)
        if len(raw) > limit:
            raise ValueError(f"encoded user event exceeds the configured limit of {limit} bytes")
        self.clock.increment()
        self.handle(msg)
        self.broadcasts.queue(None, raw)

    def handle(self, msg: UserEventMessage) -> bool:
        """serf's handleUserEvent: dedupe in the LTime-indexed buffer; True (rebroadcast) for news."""
        slot = self.window.admit(msg.ltime, msg.name)
        if slot is None:
            return False
        seen = self.buffer.get(slot)
        record = UserEventRecord(msg.name, msg.payload)
        if seen is not None and seen.ltime == msg.ltime:
            if record in seen.events:
                return False
            seen = attrs.evolve(seen, events=(*seen.events, record))
        else:
            seen = UserEventsAt(msg.ltime, (record,))
        self.buffer[slot] = seen
        self._core.events.append(UserEvent(msg.ltime, msg.name, msg.payload, msg.cc))
        return True

    def recent(self) -> tuple[UserEventsAt, ...]:
        """The buffered events, oldest first, as push/pull carries them."""
        return tuple(sorted(self.buffer.values(), key=lambda e: e.ltime))
