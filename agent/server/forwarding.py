"""A client agent's `access.StoreAccess`: every call goes to a server over the server port.

Consul's clients hold no state: their RPCs go to a server, which forwards to the leader when it must.  Ours
send writes, default and consistent reads, and renewals to the leader the member table knows (a client learns
it from a server, `follow.LeaderFollower`); a ``?stale`` read goes to any server, in turn, so stale reads
spread over the servers as Consul's do.  A request that finds no leader, or cannot reach the one it knows (it
just died: the request never left, `access.LeaderUnreachable`), is held for the next leader as Consul's RPC hold
holds it (``hold_timeout``, 7 s), then answered ``No cluster leader``; one that reached a server and broke
after is `access.StoreUnavailable` (a write's outcome is unknown, so it is never sent again).

The answer forms of the server's ``Store.*`` methods are read back here (`unwrap_apply`, `remote_error`), used
by a follower forwarding to the leader too.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, Protocol

from . import rpc
from .access import (
    NOT_THE_LEADER,
    RPC_HOLD_TIMEOUT,
    CommandFailed,
    HoldForLeader,
    LeaderUnreachable,
    NoLeader,
    QueryResult,
    ReadMode,
    StoreUnavailable,
    held_for_leader,
)
from .queries import QueryError
from .rpc import RPCError, RPCNotSent, RPCPool
from .state.commands import Command, encode

__all__ = ["FORWARD_SLACK", "ForwardAccess", "LeaderHere", "forward_call", "held_call", "leader_call", "leader_rpc",
           "remote_error", "unwrap_apply"]

#: Extra time a forwarded call may take beyond its own wait (Consul's RPC hold timeout is 7 s).
FORWARD_SLACK = 7.0


def unwrap_apply(reply: Any) -> Any:
    """A ``Store.Apply`` answer as the caller's result, or its exception."""
    if not isinstance(reply, dict):
        raise StoreUnavailable(f"malformed Store.Apply answer {reply!r:.60}")
    if "ok" in reply:
        return reply["ok"]
    if "failed" in reply:
        raise CommandFailed(str(reply["failed"]))
    if reply.get("no_leader"):
        raise NoLeader()
    raise StoreUnavailable(str(reply.get("unavailable", "malformed Store.Apply answer")))


def remote_error(text: str) -> Exception:
    """An RPC error text from a server as the exception the caller would have seen locally."""
    if text == str(NoLeader()):
        return NoLeader()
    if text.startswith(("Store.Query: unknown query", "Store.Query: query argument")):
        return QueryError(text.removeprefix("Store.Query: "))
    return StoreUnavailable(text)


async def forward_call(pool: RPCPool, address: str, method: str, args: dict[str, Any], timeout: float) -> Any:
    """One ``Store.*`` call to the server at ``address`` on one of the pool's connections, allowed ``timeout``
    plus the RPC hold slack; its error text as the exception the caller would have seen locally."""
    try:
        return await pool.call(address, method, args, timeout=timeout + FORWARD_SLACK)
    except RPCNotSent as err:
        raise LeaderUnreachable(str(err)) from None
    except RPCError as err:
        raise remote_error(str(err)) from None


async def leader_call(address: str, method: str, args: dict[str, Any], timeout: float) -> Any:
    """One call of a method only the leader answers (the operator's) on a fresh connection.  One that never left
    (`RPCNotSent`), or that the server refused because it does not lead, did nothing there: it is
    `LeaderUnreachable`, which `held_call` holds for the next leader.  Any other error is the server's
    `RPCError` (one that left and lost its answer is never sent again)."""
    try:
        return await rpc.call(address, method, args, timeout=timeout)
    except RPCNotSent as err:
        raise LeaderUnreachable(str(err)) from None
    except RPCError as err:
        if str(err) in (NOT_THE_LEADER, str(NoLeader())):
            raise LeaderUnreachable(str(err)) from None
        raise


async def held_call(pick: Callable[[], str], call: Callable[[str], Awaitable[Any]], hold_timeout: float) -> Any:
    """``call(address)`` on the server ``pick()`` names, held (`access.held_for_leader`) while there is none
    (``""``) or it cannot be reached (`LeaderUnreachable`: the request never left); then `NoLeader`."""

    async def attempt() -> Any:
        address = pick()
        if not address:
            raise HoldForLeader(NoLeader())
        try:
            return await call(address)
        except LeaderUnreachable:
            raise HoldForLeader(NoLeader()) from None

    return await held_for_leader(attempt, hold_timeout)


def _in_turn(servers: Sequence[str], turn: Iterator[int]) -> str:
    """The next of ``servers`` in a fixed order, ``turn`` counting the calls (so stale reads and stale operator
    calls spread over the servers, and one that cannot be reached is followed by another); "" with none."""
    ordered = sorted(servers)
    return ordered[next(turn) % len(ordered)] if ordered else ""


class LeaderHere(Protocol):
    """This agent's own Raft server, when it is one: what `leader_rpc` needs of it."""

    def is_leader(self) -> bool: ...

    async def local_rpc(self, method: str, args: dict[str, Any]) -> Any: ...


_HERE = "(this server)"  # what `leader_rpc`'s pick names when this server leads: answered in-process


async def leader_rpc(method: str, args: dict[str, Any], *, here: LeaderHere | None, leader: Callable[[], str],
                     servers: Callable[[], Sequence[str]], timeout: float,
                     hold_timeout: float = RPC_HOLD_TIMEOUT, stale: bool = False) -> Any:
    """A call only the leader answers (``Operator.*``), from any agent: in-process when ``here`` leads, else to
    the ``leader()`` this agent knows (`leader_call`, each try bounded by ``timeout``).  Held (`held_call`) while
    there is none, or it cannot be reached or no longer leads (just died, or an election is under way), then
    `NoLeader`; at once on a client that knows no server at all (``servers()`` empty), as `ForwardAccess` does.

    ``stale`` (Consul's AllowStale, the operator's ``-stale``): any server answers from its own state, so a
    server answers in-process and a client asks its servers in turn, moving on from one it cannot reach.  This
    is how an operator sees the configuration of a cluster that has lost its quorum."""
    if stale:
        args = {**args, "stale": True}
    turn = itertools.count(random.randrange(1 << 16))

    def pick() -> str:
        if here is not None and (stale or here.is_leader()):
            return _HERE
        anyone = _in_turn(servers(), turn) if stale else ""
        if anyone:
            return anyone
        known = leader()
        if not known and here is None and not servers():  # a client that knows no server: nothing to wait for
            raise NoLeader()
        return known

    async def ask(address: str) -> Any:
        if address == _HERE and here is not None:
            return await here.local_rpc(method, args)
        return await leader_call(address, method, args, timeout)

    return await held_call(pick, ask, hold_timeout)


class ForwardAccess:
    """``leader()``: the leader's server address or ``""``; ``servers()``: every known server's address."""

    def __init__(self, leader: Callable[[], str], servers: Callable[[], Sequence[str]], *,
                 write_timeout: float = 10.0, hold_timeout: float = RPC_HOLD_TIMEOUT) -> None:
        self.leader = leader
        self.servers = servers
        self.write_timeout = write_timeout
        self.hold_timeout = hold_timeout
        self.pool = RPCPool()
        self._turn = itertools.count()

    def close(self) -> None:
        """At shutdown: close the idle connections to the servers."""
        self.pool.close()

    async def apply(self, command: Command) -> Any:
        return unwrap_apply(await self._call(self._leader, "Store.Apply", {"data": encode(command)},
                                             self.write_timeout))

    async def query(self, name: str, args: dict[str, Any], mode: ReadMode) -> QueryResult:
        pick = self._leader if mode.consistency != "stale" else self._any_server
        reply = await self._call(pick, "Store.Query", {"name": name, "args": args, "mode": mode.to_wire()},
                                 mode.wait + self.write_timeout)
        try:
            return QueryResult.from_wire(reply)
        except (ValueError, TypeError) as err:
            raise StoreUnavailable(f"malformed Store.Query answer: {err}") from None

    async def renew_session(self, session_id: str) -> Any:
        return await self._call(self._leader, "Session.Renew", {"id": session_id}, self.write_timeout)

    async def _call(self, pick: Callable[[], str], method: str, args: dict[str, Any], timeout: float) -> Any:
        return await held_call(pick, lambda address: forward_call(self.pool, address, method, args, timeout),
                               self.hold_timeout)

    def _leader(self) -> str:
        leader = self.leader()
        if not leader and not self.servers():  # no server known at all: no leader to wait for (Consul's client
            raise NoLeader()  # fails at once too, and the HTTP layer answers "No known Consul servers" first)
        return leader

    def _any_server(self) -> str:
        return _in_turn(self.servers(), self._turn) or self._leader()

