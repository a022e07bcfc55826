"""A server's `access.StoreAccess`: writes through Raft on the leader, reads by Consul's consistency modes.

* **Writes** go to the leader.  The leader stamps its clock into the command (the only time an apply sees),
  chooses a new session's ID and checks its node and checks against the merged catalog (Consul's
  ``sessionCreateTxn`` reads its catalog; ours is partly gossip, which an apply may not read), then proposes it
  and waits for the apply.  A follower forwards the command to the leader over the server port.  A write that
  finds leadership moving (a transfer in progress, a leader just deposed, none elected yet) waits for the next
  leader, up to ``hold_timeout`` (Consul's RPC hold, 7 s), and goes there; only refusals that prove the command
  was not appended (the core refused the proposal, no leader was known, or the leader could not be reached so
  nothing was sent) are tried again, so no write is applied twice.  Reads and renewals a follower forwards are
  held the same way.
* **Reads**: ``default`` is answered by the leader from its own state once it has applied an entry of its own
  term (so a new leader never answers from before its predecessor's last commit); ``consistent`` first confirms
  leadership with a ReadIndex round and waits until that index is applied; ``stale`` is answered by any server
  from its own state (``max_stale``: a follower whose last contact with the leader is older forwards instead).
  A follower forwards default and consistent reads to the leader, blocking ones included.

`Replica` is what this needs of the Raft side (`cluster.RaftServer` provides it); a test can give it a
single-replica stand-in that applies straight to the store.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import attrs
import trio

from protocol.raft.errors import NotLeader, ProposalDropped, RaftError

from . import queries
from .access import (
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
from .duties import ACLInit, LeaderDuties
from .forwarding import forward_call, held_call, unwrap_apply
from .rpc import RPCError, RPCPool, RPCServer
from .state.apply import Failed
from .state.commands import Command, CommandError, SessionCreate, SessionDestroy, decode, encode
from .state.leader import SessionTimers, session_create_error
from .state.store import StateStore
from .state.txn import TxnOutcome
from .state.views import session_json, txn_json
from .state.wait import wait_past

__all__ = ["RPC_HOLD_TIMEOUT", "AgentNodes", "Replica", "StoreService"]

#: lower-cased node name -> {check ID: status} for the nodes the gossip catalog holds (serfHealth included).
AgentNodes = Callable[[], Mapping[str, Mapping[str, str]]]


class Replica(Protocol):
    """The Raft side, as the store's service sees it."""

    def is_leader(self) -> bool: ...

    def leader_address(self) -> str:
        """The leader's server address (``IP:port``), ``""`` when none is known."""
        ...

    def leader_ready(self) -> bool:
        """We lead and have applied an entry of our own term (default reads may be served)."""
        ...

    def last_contact(self) -> float:
        """Seconds since the leader was last heard from (0 on the leader; inf if never)."""
        ...

    async def propose(self, data: bytes, timeout: float) -> Any:
        """The state machine's result once applied; NotLeader, ProposalLost, trio.TooSlowError."""
        ...

    async def read_index(self, timeout: float) -> None:
        """Return once a ReadIndex round confirmed our leadership and its index is applied."""
        ...


class StoreService:
    def __init__(self, store: StateStore, replica: Replica, *, agent_nodes: AgentNodes,
                 write_timeout: float = 10.0, hold_timeout: float = RPC_HOLD_TIMEOUT,
                 acl: ACLInit | None = None) -> None:
        self.store = store
        self.replica = replica
        self.agent_nodes = agent_nodes
        self.write_timeout = write_timeout
        self.hold_timeout = hold_timeout
        self.held_writes = 0  # writes that waited for a leader at least once
        self.pool = RPCPool()  # connections to the leader, for what a follower forwards
        self.timers = SessionTimers()
        self.duties = LeaderDuties(self, acl=acl)  # acl: initialise ACLs on taking office (None: don't)
        #: Told of every command this leader applied and how long it took (the agent's metrics set it).
        self.on_applied: Callable[[Command, float], None] = lambda command, seconds: None

    def close(self) -> None:
        """At shutdown: close the idle connections to the leader (the server sees them end now, not at exit)."""
        self.pool.close()

    # ---------------------------------------------------------------- StoreAccess

    async def apply(self, command: Command) -> Any:
        async def attempt() -> Any:
            if self.replica.is_leader():
                try:
                    return await self._apply_here(command)
                except _Refused as err:  # after the hold: why, unless no leader is known by then
                    refusal = err.error
                    raise HoldForLeader(StoreUnavailable(str(refusal) or type(refusal).__name__)
                                        if self.replica.leader_address() else NoLeader()) from None
            if not self.replica.leader_address():
                raise HoldForLeader(NoLeader())
            try:
                return unwrap_apply(await self._forward("Store.Apply", {"data": encode(command)},
                                                        self.write_timeout))
            except LeaderUnreachable:  # it never reached the leader (just died?): as if none known
                raise HoldForLeader(NoLeader()) from None

        return await held_for_leader(attempt, self.hold_timeout, on_hold=self._count_held)

    def _count_held(self) -> None:
        self.held_writes += 1

    async def query(self, name: str, args: dict[str, Any], mode: ReadMode) -> QueryResult:
        read = queries.reader(name, args)
        while True:
            if mode.consistency == "stale" and not self.replica.is_leader():
                contact = self.replica.last_contact()
                if mode.max_stale is None or contact <= mode.max_stale or not self.replica.leader_address():
                    answer = await self._read_here(read, mode)
                    return QueryResult(answer.index, answer.value, bool(self.replica.leader_address()),
                                       _ms(contact))
            if self.replica.is_leader():
                if mode.consistency == "consistent" or not self.replica.leader_ready():
                    await self._confirm_leadership()
                answer = await self._read_here(read, mode)
                return QueryResult(answer.index, answer.value, True, 0)
            try:
                wire = {"name": name, "args": args, "mode": mode.to_wire()}
                reply = await self._forward_held("Store.Query", wire, mode.wait + self.write_timeout)
            except _BecameLeader:
                continue
            return QueryResult.from_wire(reply)

    async def renew_session(self, session_id: str) -> Any:
        if not self.replica.is_leader():
            try:
                return await self._forward_held("Session.Renew", {"id": session_id}, self.write_timeout)
            except _BecameLeader:
                pass
        state = self.store.current
        if not self.timers.renew(state, session_id, time.time_ns()):
            return None
        self.duties.timers_changed()
        return [session_json(state.sessions[session_id])]

    # ---------------------------------------------------------------- the leader

    async def _apply_here(self, command: Command) -> Any:
        now = time.time_ns()
        command = attrs.evolve(command, now=now)
        if isinstance(command, SessionCreate):
            if not command.id:
                command = attrs.evolve(command, id=self._new_session_id())
            problem = session_create_error(self.store.current, command, self.agent_nodes())
            if problem is not None:
                raise CommandFailed(problem)
        started = time.perf_counter()
        result = await self._propose(encode(command))
        self.on_applied(command, time.perf_counter() - started)
        if isinstance(result, Failed):
            raise CommandFailed(result.error)
        if isinstance(command, SessionCreate):
            self.timers.renew(self.store.current, command.id, now)
            self.duties.timers_changed()
        if isinstance(command, SessionDestroy):
            self.timers.clear(command.id)
        if isinstance(result, TxnOutcome):
            return txn_json(result)
        return result

    async def _propose(self, data: bytes) -> Any:
        try:
            return await self.replica.propose(data, self.write_timeout)
        except (NotLeader, ProposalDropped) as err:  # refused by the core: nothing was appended
            raise _Refused(err) from None
        except trio.TooSlowError:
            raise StoreUnavailable(f"timed out after {self.write_timeout:g}s waiting for the write to commit") \
                from None
        except RaftError as err:
            if not self.replica.leader_address():
                raise NoLeader() from None
            raise StoreUnavailable(str(err) or type(err).__name__) from None

    def _new_session_id(self) -> str:
        sessions = self.store.current.sessions
        while True:
            candidate = str(uuid.uuid4())
            if candidate not in sessions:
                return candidate

    async def _confirm_leadership(self) -> None:
        try:
            await self.replica.read_index(self.write_timeout)
        except (RaftError, trio.TooSlowError):
            raise NoLeader() from None

    async def _read_here(self, read: Callable[[Any], queries.Read[Any]], mode: ReadMode) -> queries.Read[Any]:
        if mode.index <= 0 or mode.wait <= 0:
            return read(self.store.current)
        with trio.move_on_after(mode.wait):
            return await wait_past(self.store, read, mode.index)
        return read(self.store.current)

    # ---------------------------------------------------------------- forwarding

    async def _forward(self, method: str, args: dict[str, Any], timeout: float) -> Any:
        leader = self.replica.leader_address()
        if not leader:
            raise NoLeader()
        return await forward_call(self.pool, leader, method, args, timeout)

    async def _forward_held(self, method: str, args: dict[str, Any], timeout: float) -> Any:
        """A read or a renewal for the leader: held while none is known or it cannot be reached (the request
        never left), as writes are; a server that becomes the leader meanwhile is asked to answer itself, by
        the caller once `_BecameLeader` says so."""

        def pick() -> str:
            if self.replica.is_leader():
                raise _BecameLeader()
            return self.replica.leader_address()

        return await held_call(pick, lambda address: forward_call(self.pool, address, method, args, timeout),
                               self.hold_timeout)

    # ---------------------------------------------------------------- the server port

    def register(self, rpc: RPCServer) -> None:
        """Answer other agents' forwarded calls (``Store.Apply``, ``Store.Query``, ``Session.Renew``)."""
        rpc.handlers.update({"Store.Apply": self._rpc_apply, "Store.Query": self._rpc_query,
                             "Session.Renew": self._rpc_renew})

    async def _rpc_apply(self, args: Mapping[str, Any]) -> Any:
        data = args.get("data")
        if not isinstance(data, bytes):
            raise RPCError("Store.Apply: expected {data: bytes}")
        try:
            command = decode(data)
        except CommandError as err:
            raise RPCError(f"Store.Apply: {err}") from None
        try:
            return {"ok": await self.apply(command)}
        except CommandFailed as err:
            return {"failed": str(err)}
        except NoLeader:
            return {"no_leader": True}
        except StoreUnavailable as err:
            return {"unavailable": str(err)}

    async def _rpc_query(self, args: Mapping[str, Any]) -> Any:
        name, qargs = args.get("name"), args.get("args")
        if not isinstance(name, str) or not isinstance(qargs, dict):
            raise RPCError("Store.Query: expected {name, args, mode}")
        try:
            mode = ReadMode.from_wire(args.get("mode"))
            return (await self.query(name, qargs, mode)).to_wire()
        except (ValueError, TypeError) as err:
            raise RPCError(f"Store.Query: {err}") from None
        except (NoLeader, StoreUnavailable) as err:  # their texts are what the caller maps back (remote_error)
            raise RPCError(str(err)) from None

    async def _rpc_renew(self, args: Mapping[str, Any]) -> Any:
        session_id = args.get("id")
        if not isinstance(session_id, str):
            raise RPCError("Session.Renew: expected {id}")
        try:
            return await self.renew_session(session_id)
        except (NoLeader, StoreUnavailable) as err:  # their texts are what the caller maps back (remote_error)
            raise RPCError(str(err)) from None


class _BecameLeader(Exception):
    """A held read found this server leading: it answers itself."""


class _Refused(Exception):
    """The core refused a proposal (not the leader, a transfer in progress): it was not appended."""

    def __init__(self, error: RaftError) -> None:
        super().__init__(str(error))
        self.error = error


def _ms(seconds: float) -> int:
    return 0 if seconds == float("inf") else round(seconds * 1000)
