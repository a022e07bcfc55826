"""Lamport clocks, as serf's lamport.go: Serf orders intents and events cluster-wide with them."""

from __future__ import annotations

import attrs

# Go's LamportTime is a uint64; values travel as msgpack unsigned ints.
LTIME_MAX = (1 << 64) - 1


@attrs.define
class LamportClock:
    """A Lamport clock. Serf starts every clock at 1 so that the zero LTime of an old peer never wins."""

    counter: int = 0

    def time(self) -> int:
        """The current value, without ticking: the LTime stamped on the next message."""
        return self.counter

    def increment(self) -> int:
        """Tick once and return the new value (serf ticks after stamping a message it originates)."""
        self.counter = min(self.counter + 1, LTIME_MAX)  # never past what a uint64 holds: it must still encode
        return self.counter

    def witness(self, value: int) -> None:
        """Move past a time seen on the wire so that our next message orders after it."""
        if value < self.counter:
            return
        self.counter = min(value + 1, LTIME_MAX)
