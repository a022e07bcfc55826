"""memberlist's scaling formulas (util.go) and the Lifeguard suspicion timer (suspicion.go), sans-IO.

Go computes these with integer nanosecond `time.Duration`s and its own `math.Log`, and the results are
truncated, floored or ceiled; we mirror both so every timeout equals the Go peer's to the nanosecond.
"""

from __future__ import annotations

import functools
import math
import random

# --- Go's math.Log / Log10 / Log2 -------------------------------------------------------------------------
# Go's Log (pure Go and the amd64 assembly alike) is FreeBSD's e_log.c; libm's differs by one ulp on about
# 1% of inputs, and a one-ulp difference can move a floor or ceil below.

_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_L1 = 6.666666666666735130e-01
_L2 = 3.999999999940941908e-01
_L3 = 2.857142874366239149e-01
_L4 = 2.222219843214978396e-01
_L5 = 1.818357216161805012e-01
_L6 = 1.531383769920937332e-01
_L7 = 1.479819860511658591e-01
_HALF_SQRT2 = 7.07106781186547524401e-01
# Go folds 1/Ln10 and 1/Ln2 exactly at compile time; these are those constants correctly rounded.
_INV_LN10 = float.fromhex("0x1.bcb7b1526e50ep-2")
_INV_LN2 = float.fromhex("0x1.71547652b82fep+0")


def go_log(x: float) -> float:
    """Go's math.Log, operation for operation."""
    if math.isnan(x) or x == math.inf:
        return x
    if x < 0:
        return math.nan
    if x == 0:
        return -math.inf
    f1, ki = math.frexp(x)
    if f1 < _HALF_SQRT2:
        f1 *= 2
        ki -= 1
    f = f1 - 1
    k = float(ki)
    s = f / (2 + f)
    s2 = s * s
    s4 = s2 * s2
    t1 = s2 * (_L1 + s4 * (_L3 + s4 * (_L5 + s4 * _L7)))
    t2 = s4 * (_L2 + s4 * (_L4 + s4 * _L6))
    r = t1 + t2
    hfsq = 0.5 * f * f
    return k * _LN2_HI - ((hfsq - (s * (hfsq + r) + k * _LN2_LO)) - f)


def go_log10(x: float) -> float:
    """Go's math.Log10: Log(x) * (1/Ln10)."""
    return go_log(x) * _INV_LN10


def go_log2(x: float) -> float:
    """Go's math.Log2, exact on powers of two."""
    frac, exp = math.frexp(x)
    if frac == 0.5:
        return float(exp - 1)
    return go_log(frac) * _INV_LN2 + float(exp)


# --- durations ----------------------------------------------------------------------------------------------

_NS = 1_000_000_000
_MS = 1_000_000


def _to_ns(seconds: float) -> int:
    """Float seconds to a Go time.Duration (nanoseconds)."""
    return round(seconds * _NS)


def _go_seconds(ns: int) -> float:
    """Go's Duration.Seconds(), which splits whole and fractional seconds before converting."""
    sec, nsec = divmod(abs(ns), _NS)
    value = float(sec) + float(nsec) / 1e9
    return -value if ns < 0 else value


# --- util.go ------------------------------------------------------------------------------------------------

PUSH_PULL_SCALE_THRESHOLD = 32


def suspicion_timeout(mult: int, n: int, interval: float) -> float:
    """How long a suspect has to refute before it is declared dead: mult * max(1, log10(n)) * interval."""
    node_scale = max(1.0, go_log10(max(1.0, float(n))))
    # Go keeps three decimals of node_scale, then multiplies Durations as integers.
    ns = mult * int(node_scale * 1000) * _to_ns(interval) // 1000
    return ns / _NS


@functools.lru_cache(maxsize=1024)
def retransmit_limit(mult: int, n: int) -> int:
    """How many times a broadcast is sent before it retires: mult * ceil(log10(n + 1)).

    Cached: it is asked on every outgoing packet, and go_log10 is pure Python."""
    return mult * math.ceil(go_log10(float(n + 1)))


def push_pull_scale(interval: float, n: int) -> float:
    """Stretch the push/pull interval once the cluster passes 32 nodes: x2 at 33, x3 at 65, ..."""
    if n <= PUSH_PULL_SCALE_THRESHOLD:
        return interval
    multiplier = math.ceil(go_log2(float(n)) - go_log2(float(PUSH_PULL_SCALE_THRESHOLD))) + 1
    return multiplier * _to_ns(interval) / _NS


def random_offset(rng: random.Random, n: int) -> int:
    """A random index in [0, n), 0 when n is 0, drawn as Go does (a uint32 modulo n)."""
    if n == 0:
        return 0
    return rng.getrandbits(32) % n


# --- suspicion.go -------------------------------------------------------------------------------------------


def remaining_suspicion_time(n: int, k: int, elapsed: float, min_timeout: float, max_timeout: float) -> float:
    """Time left on a suspicion with n of k confirmations after `elapsed`; negative once overdue.

    The timeout falls from max towards min as log(n+1)/log(k+1), floored to the millisecond.
    """
    min_ns, max_ns = _to_ns(min_timeout), _to_ns(max_timeout)
    frac = go_log(float(n) + 1.0) / go_log(float(k) + 1.0)
    raw = _go_seconds(max_ns) - frac * (_go_seconds(max_ns) - _go_seconds(min_ns))
    timeout_ns = max(math.floor(1000.0 * raw) * _MS, min_ns)
    return (timeout_ns - _to_ns(elapsed)) / _NS


class Suspicion:
    """The Lifeguard suspicion timer for one suspect node, without the timer.

    It starts at `max_timeout` (or `min_timeout` when no confirmations are wanted, k < 1) and shrinks
    towards `min_timeout` as up to k distinct other nodes confirm the suspicion. The node that raised the
    suspicion does not count, since its own message may be gossiped back to us. The owner arms a timer at
    `deadline` and re-arms it whenever `confirm` returns True.
    """

    def __init__(self, now: float, from_node: str, k: int, min_timeout: float, max_timeout: float) -> None:
        self.start = now
        self.from_node = from_node
        self.k = k
        self.min_timeout = min_timeout
        self.max_timeout = max_timeout
        self._confirmers: list[str] = []
        self._seen = {from_node}
        self._timeout = max_timeout if k >= 1 else min_timeout

    @property
    def deadline(self) -> float:
        """Absolute time at which the suspect is to be declared dead; may already be past."""
        return self.start + self._timeout

    @property
    def confirmations(self) -> int:
        """How many independent confirmations have been counted (at most k)."""
        return len(self._confirmers)

    @property
    def confirmers(self) -> tuple[str, ...]:
        """The confirming nodes, in arrival order, for diagnostics."""
        return tuple(self._confirmers)

    def confirm(self, now: float, from_node: str) -> bool:
        """Count `from_node`'s confirmation; True if it was new and moved the deadline.

        Duplicates, the original suspecter and anything past k confirmations are ignored (False).
        `now` only matters to the caller: once `deadline <= now` the suspect is due.
        """
        if len(self._confirmers) >= self.k or from_node in self._seen:
            return False
        self._seen.add(from_node)
        self._confirmers.append(from_node)
        self._timeout = remaining_suspicion_time(len(self._confirmers), self.k, 0.0, self.min_timeout, self.max_timeout)
        return True

    def expired(self, now: float) -> bool:
        """True once the deadline has been reached."""
        return now >= self.deadline

    def remaining(self, now: float) -> float:
        """Time until the deadline; negative when overdue."""
        return self.deadline - now
