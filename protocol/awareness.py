"""Lifeguard local health awareness (memberlist awareness.go).

A node that misses acks, or is told it is suspect, is likelier to be the slow one itself; it then stretches
its own probe interval and timeouts rather than accusing healthy peers.
"""

from __future__ import annotations


class Awareness:
    """The local health score: 0 is healthy, `max_multiplier - 1` the worst; timeouts scale by score + 1."""

    def __init__(self, max_multiplier: int) -> None:
        if max_multiplier < 1:
            # Go would clamp the score to -1 and scale every timeout to zero.
            raise ValueError(f"awareness max_multiplier must be >= 1, got {max_multiplier}")
        self.max_multiplier = max_multiplier
        self._score = 0

    @property
    def score(self) -> int:
        """The current health score (memberlist GetHealthScore)."""
        return self._score

    def apply_delta(self, delta: int) -> int:
        """Move the score by `delta`, railed to [0, max_multiplier - 1]; returns the new score."""
        self._score = min(max(self._score + delta, 0), self.max_multiplier - 1)
        return self._score

    def scale_timeout(self, timeout: float) -> float:
        """`timeout` stretched for the current health: timeout * (score + 1)."""
        return timeout * (self._score + 1)
