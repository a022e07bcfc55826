"""The seam between the HTTP endpoints and the servers' state store: what an endpoint may ask, on any agent.

An endpoint builds a `commands.Command` (a write) or names a query from `queries.QUERIES` (a read) and hands
it to the agent's `StoreAccess`.  On a server that is `service.StoreService` (the leader proposes to Raft; a
follower forwards to the leader, or answers a ``?stale`` read itself); on a client it is `forward.ForwardAccess`
(every call goes over the server port to a server, as Consul's clients forward their RPCs).  Either way the
endpoint sees the same results and the same errors, so the HTTP layer is written once.

Results cross the server port, so they are plain msgpack-able values: a write's result is the state machine's
(``True``/``False``, a session ID, a transaction's Consul JSON); a read's value is already Consul's JSON.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import attrs
import trio

from .state.commands import Command

__all__ = [
    "CONSISTENCY_MODES",
    "HOLD_POLL",
    "NOT_THE_LEADER",
    "RPC_HOLD_TIMEOUT",
    "CommandFailed",
    "HoldForLeader",
    "LeaderUnreachable",
    "NoLeader",
    "QueryResult",
    "ReadMode",
    "StoreAccess",
    "StoreUnavailable",
    "held_for_leader",
]

T = TypeVar("T")

CONSISTENCY_MODES = ("default", "consistent", "stale")

#: Consul's rpc_hold_timeout: how long a request waits for a (reachable) leader before "No cluster leader".
RPC_HOLD_TIMEOUT = 7.0
HOLD_POLL = 0.02  # seconds between looks for the next leader while a request is held
#: A server's refusal of a call only the leader takes (the operator's), when it knows another leader: it did
#: nothing, so the call may go to the next leader (with no leader known it refuses with `NoLeader`'s text).
NOT_THE_LEADER = "not the leader"


class NoLeader(Exception):
    """There is no Raft leader to answer (the endpoint's 500 ``No cluster leader``)."""

    def __init__(self) -> None:
        super().__init__("No cluster leader")


class CommandFailed(Exception):
    """The state machine refused the command (`apply.Failed`), or the leader's pre-checks did (a session's
    node or checks); the text is Consul's and the endpoint answers 500 with it."""


class StoreUnavailable(Exception):
    """The server could not be reached or did not answer in time; nothing is known of a write's outcome."""


class LeaderUnreachable(StoreUnavailable):
    """No connection could be made to the leader (it died, or is cut off): the request never reached it, so
    it did nothing there and may go to the next leader.  The forwarders hold it for one, as for no leader."""


class HoldForLeader(Exception):
    """An attempt that did nothing for want of a leader to take it (none known, the known one unreachable or no
    longer leading, a proposal refused): the request may wait for the next one.  ``final`` is what the caller
    is told if the hold runs out first."""

    def __init__(self, final: Exception) -> None:
        super().__init__(str(final))
        self.final = final


async def held_for_leader(attempt: Callable[[], Awaitable[T]], hold_timeout: float, *,
                          on_hold: Callable[[], None] = lambda: None) -> T:
    """Consul's RPC hold, once for every forwarder: ``attempt()`` again every `HOLD_POLL` while it raises
    `HoldForLeader`, for up to ``hold_timeout``, then the last one's ``final``; any other outcome is the caller's,
    at once.  ``on_hold`` is told once, when the request first has to wait."""
    deadline = trio.current_time() + hold_timeout
    held = False
    while True:
        try:
            return await attempt()
        except HoldForLeader as wait:
            if trio.current_time() >= deadline:
                raise wait.final from None
        if not held:
            held = True
            on_hold()
        await trio.sleep(min(HOLD_POLL, max(0.0, deadline - trio.current_time())))


@attrs.frozen
class ReadMode:
    """How a read is served (Consul's QueryOptions): ``consistency`` one of `CONSISTENCY_MODES`; ``max_stale``
    seconds (``?stale&max_stale=``: a follower further behind forwards to the leader; None: any);
    ``index``/``wait``: a blocking query (``wait`` already capped and jittered by the caller; 0: no blocking)."""

    consistency: str = "default"
    max_stale: float | None = None
    index: int = 0
    wait: float = 0.0

    def __attrs_post_init__(self) -> None:
        if self.consistency not in CONSISTENCY_MODES:
            raise ValueError(f"unknown consistency mode {self.consistency!r}")

    def to_wire(self) -> dict[str, Any]:
        return {"c": self.consistency, "ms": self.max_stale, "i": self.index, "w": self.wait}

    @classmethod
    def from_wire(cls, raw: Any) -> ReadMode:
        if not isinstance(raw, dict):
            raise ValueError("read mode: expected a map")
        max_stale = raw.get("ms")
        return cls(str(raw.get("c", "default")), None if max_stale is None else float(max_stale),
                   int(raw.get("i", 0)), float(raw.get("w", 0.0)))


@attrs.frozen
class QueryResult:
    """A read's answer and Consul's query metadata: ``index`` (X-Consul-Index), ``known_leader``
    (X-Consul-KnownLeader), ``last_contact_ms`` (X-Consul-LastContact: 0 on the leader)."""

    index: int
    value: Any
    known_leader: bool = True
    last_contact_ms: int = 0

    def to_wire(self) -> list[Any]:
        return [self.index, self.value, self.known_leader, self.last_contact_ms]

    @classmethod
    def from_wire(cls, raw: Any) -> QueryResult:
        if not isinstance(raw, list) or len(raw) != 4:
            raise ValueError("query result: expected [index, value, known_leader, last_contact_ms]")
        return cls(int(raw[0]), raw[1], bool(raw[2]), int(raw[3]))


class StoreAccess(Protocol):
    async def apply(self, command: Command) -> Any:
        """Commit ``command`` through the leader and return the state machine's result.  The leader stamps its
        clock into it (and, for a session create with no ID, chooses the ID).  Raises NoLeader, CommandFailed,
        StoreUnavailable."""
        ...

    async def query(self, name: str, args: dict[str, Any], mode: ReadMode) -> QueryResult:
        """Run the read ``queries.QUERIES[name]`` with ``args`` as ``mode`` asks (blocking included).  Raises
        NoLeader, StoreUnavailable, and ValueError for an unknown query or bad arguments."""
        ...

    async def renew_session(self, session_id: str) -> Any:
        """``/v1/session/renew``: the session's JSON after the leader re-armed its TTL, or None if it is
        unknown (the endpoint's 404).  Raises NoLeader, StoreUnavailable."""
        ...
