"""The ring of the last 256 user events an agent answers ``/v1/event/list`` from (Consul's eventBuf), and a trio
event that wakes blocking lists; the events themselves are agent/events.py's."""

from __future__ import annotations

import trio

from agent.events import BUFFER_SIZE, UserEvent, uuid_to_uint64

__all__ = ["EventLog"]


class EventLog:
    """The last BUFFER_SIZE accepted events, oldest first, and a way to wait for the next one."""

    def __init__(self, size: int = BUFFER_SIZE) -> None:
        self._events: list[UserEvent] = []
        self._size = size
        self._changed = trio.Event()

    def add(self, event: UserEvent) -> None:
        """ingestUserEvent: append, dropping the oldest beyond the ring's size, and wake the waiters."""
        self._events.append(event)
        if len(self._events) > self._size:
            del self._events[: len(self._events) - self._size]
        self._changed.set()
        self._changed = trio.Event()

    def events(self, name: str = "") -> list[UserEvent]:
        """UserEvents(), optionally only those called ``name``."""
        return [e for e in self._events if not name or e.name == name]

    def has(self, event_id: str) -> bool:
        """Whether the ring holds the event with this ID (a sender waits for its own, see Agent.fire_event)."""
        return any(e.id == event_id for e in reversed(self._events))

    async def wait_for(self, event_id: str) -> None:
        """Until the event with this ID is in the ring; the caller bounds the wait."""
        while True:
            changed = self._changed
            if self.has(event_id):
                return
            await changed.wait()

    def changed(self) -> trio.Event:
        """An event set at the next ``add``: take it before reading, so nothing slips between read and wait."""
        return self._changed

    @staticmethod
    def index(events: list[UserEvent]) -> int:
        """The X-Consul-Index of a list: uuidToUint64 of its last event, 1 when empty (no hot watch loop)."""
        return uuid_to_uint64(events[-1].id) if events else 1
