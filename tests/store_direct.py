"""A single-replica `service.Replica` for tests of the store's service and the HTTP endpoints over it.

It is the real `StateStore` and the real `StoreService`; only replication is absent: a proposal is applied at
the next index at once, as a one-server Raft cluster would after its fsync.  Leadership can be taken away
(``leader = ""``) to exercise the no-leader paths.
"""

from __future__ import annotations

from typing import Any

import trio

from agent.server.service import StoreService
from agent.server.state.store import StateStore
from protocol.raft.errors import NotLeader
from protocol.raft.types import Entry, EntryKind


class DirectReplica:
    def __init__(self, store: StateStore, address: str = "127.0.0.1:8300") -> None:
        self.store = store
        self.leader = address
        self.address = address
        self.index = store.current.applied
        self.term = 1
        self.proposals = 0
        self.read_indexes = 0

    def is_leader(self) -> bool:
        return self.leader == self.address

    def leader_address(self) -> str:
        return self.leader

    def leader_ready(self) -> bool:
        return self.is_leader()

    def last_contact(self) -> float:
        return 0.0

    async def propose(self, data: bytes, timeout: float) -> Any:
        if not self.is_leader():
            raise NotLeader("", "proposal")
        await trio.lowlevel.checkpoint()
        self.index += 1
        self.proposals += 1
        return self.store.apply(Entry(self.index, self.term, EntryKind.NORMAL, data))

    async def read_index(self, timeout: float) -> None:
        if not self.is_leader():
            raise NotLeader("", "read index")
        self.read_indexes += 1
        await trio.lowlevel.checkpoint()


def direct_service(agent_nodes: dict[str, dict[str, str]] | None = None, *,
                   hold_timeout: float = 0.0) -> tuple[StoreService, DirectReplica]:
    """A StoreService over a fresh store; ``agent_nodes`` as the gossip catalog would give them (default: the
    node ``node1`` with a passing serfHealth).  Writes are not held for a leader unless ``hold_timeout`` says
    so (a replica whose leader is taken away never gets one back)."""
    store = StateStore()
    replica = DirectReplica(store)
    nodes = agent_nodes if agent_nodes is not None else {"node1": {"serfHealth": "passing"}}
    return StoreService(store, replica, agent_nodes=lambda: nodes, hold_timeout=hold_timeout), replica


def store_agent(config: Any = None,
                agent_nodes: dict[str, dict[str, str]] | None = None) -> tuple[Any, StoreService, DirectReplica]:
    """An `http_fakes.FakeAgent` whose endpoints reach a `direct_service()`: (agent, service, replica).  A
    client's member table holds one alive server (without one, Consul's client answers `No known Consul
    servers`)."""
    from http_fakes import FakeAgent, member

    service, replica = direct_service(agent_nodes)
    agent = FakeAgent(store_access=service) if config is None else FakeAgent(config=config, store_access=service)
    if not agent.config.server:  # a client reaches the store through a server it knows in the member table
        agent.apply("member-join", member("server1", "10.0.0.10", server=True))
    return agent, service, replica


def tables(service: StoreService) -> tuple[Any, ...]:
    """What a refused request must leave as it was (a command the state refuses still takes a Raft index)."""
    s = service.store.current
    return (s.kvs, s.tombstones, s.sessions, s.session_checks, s.nodes, s.services, s.checks, s.indexes)
